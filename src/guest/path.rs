//! [`Resolved`]: a guest path that went through confined resolution.
//!
//! Owns the path value type and the rules for a single file name. Must not: resolve
//! anything (that is [`super::confine`]) or talk to a backend. A `Resolved` can only be
//! made inside `guest`, which is what lets backends trust it.

use std::fmt;

/// Longest guest path accepted, in bytes (Linux `PATH_MAX`): bounds the work of
/// resolving a path from a hostile image.
pub const MAX_PATH_BYTES: usize = 4096;

/// An absolute, normalised path inside the guest (no `.`, `..` or empty components)
/// whose every parent component was, when it was resolved, a real directory — not a
/// symlink. The final component may be anything, or missing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resolved(String);

impl Resolved {
    /// The guest's root directory.
    pub(crate) fn root() -> Self {
        Self("/".to_owned())
    }

    /// `self/name`, for a `name` that passed [`is_valid_name`] and a `self` that is a
    /// directory (not a symlink). Only `confine` calls this, after checking both.
    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0 == "/" {
            Self(format!("/{name}"))
        } else {
            Self(format!("{}/{name}", self.0))
        }
    }

    /// The path as text, e.g. `/etc/machine-id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The last component (`None` for `/`).
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// The directory containing this path (`None` for `/`). Still resolved: it is one
    /// of the parents, which were all directories.
    pub fn parent(&self) -> Option<Resolved> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/')?;
        Some(if cut == 0 {
            Self::root()
        } else {
            Self(self.0[..cut].to_owned())
        })
    }

    /// Whether `self` is `ancestor` or lies below it (component-wise).
    pub fn is_within(&self, ancestor: &Resolved) -> bool {
        ancestor.is_root()
            || self.0 == ancestor.0
            || (self.0.starts_with(&ancestor.0)
                && self.0.as_bytes().get(ancestor.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` can be one component of a guest path.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_and_name() {
        let etc = Resolved::root().child("etc");
        let file = etc.child("machine-id");
        assert_eq!(file.as_str(), "/etc/machine-id");
        assert_eq!(file.file_name(), Some("machine-id"));
        assert_eq!(file.parent(), Some(etc.clone()));
        assert_eq!(etc.parent(), Some(Resolved::root()));
        assert_eq!(Resolved::root().parent(), None);
        assert_eq!(Resolved::root().file_name(), None);
    }

    #[test]
    fn within_is_component_wise() {
        let etc = Resolved::root().child("etc");
        let etcx = Resolved::root().child("etcx");
        assert!(etc.child("a").is_within(&etc));
        assert!(etc.is_within(&etc));
        assert!(!etcx.is_within(&etc));
        assert!(etcx.is_within(&Resolved::root()));
    }

    #[test]
    fn names() {
        assert!(is_valid_name("ssh_host_rsa_key"));
        for bad in ["", ".", "..", "a/b", "nul\0"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
