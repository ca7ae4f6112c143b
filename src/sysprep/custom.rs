//! What always applies, whatever the operation selection says: `--delete GLOB`,
//! `--truncate PATH`, `--hostname NAME` and virt-customize's `--write FILE:CONTENT`.
//!
//! (virt-sysprep ties these to its `customize` operation, so `--enable` silently drops
//! them: the CERN procedure kept /etc/krb5.keytab. Here they cannot be dropped.) Owns:
//! those four and the hostname places per distro. Must not: run programs in the guest.

use super::edit::{assigns, edit_lines, LineAction};
use super::plan::Planner;
use super::{Result, SysprepError};
use crate::guest::{FileKind, GuestError};

/// A hostname that passed [`Hostname::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(String);

impl Hostname {
    /// Accepts RFC 1123 names: labels of letters, digits and `-`, at most 63 bytes
    /// each, 253 in all, not starting or ending with `-`.
    pub fn parse(name: &str) -> Result<Self> {
        let bad = |reason| {
            Err(SysprepError::InvalidHostname {
                name: name.to_owned(),
                reason,
            })
        };
        if name.is_empty() || name.len() > 253 {
            return bad("must be 1 to 253 characters");
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return bad("each dot-separated label must be 1 to 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return bad("only letters, digits, '-' and '.' are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("a label cannot start or end with '-'");
            }
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first label.
    pub fn short(&self) -> &str {
        self.0.split('.').next().unwrap_or(&self.0)
    }
}

/// Plans `--delete`, `--truncate` and `--hostname`.
pub fn plan(planner: &mut Planner) -> Result<()> {
    let options = planner.options;
    planner.set_operation("delete");
    for pattern in &options.delete {
        let matches = planner.glob(pattern)?;
        if matches.is_empty() {
            planner.warn(format!("{pattern} matched nothing"));
        }
        for (path, meta) in matches {
            planner.remove(&path, meta)?;
        }
    }
    planner.set_operation("truncate");
    for path in &options.truncate {
        match planner.stat(path)? {
            None => planner.warn(format!("{path} does not exist")),
            Some((resolved, meta)) if meta.kind == FileKind::File => {
                planner.truncate(&resolved, meta)
            }
            Some((resolved, meta)) => {
                return Err(GuestError::NotARegularFile {
                    path: resolved.to_string(),
                    kind: meta.kind.name(),
                }
                .into())
            }
        }
    }
    if let Some(name) = &options.hostname {
        planner.set_operation("hostname");
        set_hostname(planner, name)?;
    }
    planner.set_operation("write");
    for (path, content) in &options.write {
        match planner.stat(path)? {
            Some((resolved, meta)) if meta.kind == FileKind::File => {
                planner.overwrite(&resolved, true, content.as_bytes());
            }
            Some((resolved, meta)) => {
                return Err(GuestError::NotARegularFile {
                    path: resolved.to_string(),
                    kind: meta.kind.name(),
                }
                .into())
            }
            None => {
                let resolved = planner.resolve_new(path)?;
                planner.overwrite(&resolved, false, content.as_bytes());
            }
        }
    }
    Ok(())
}

/// Parses virt-customize's `--write FILE:CONTENT` (split at the first `:`; FILE must
/// be absolute). The content is taken as given, without a newline added.
pub fn parse_write(value: &str) -> Result<(String, String)> {
    match value.split_once(':') {
        Some((path, content)) if path.starts_with('/') && path.len() > 1 => {
            Ok((path.to_owned(), content.to_owned()))
        }
        _ => Err(SysprepError::InvalidWrite {
            value: value.split(':').next().unwrap_or_default().to_owned(),
        }),
    }
}

/// `/etc/hostname`, SUSE's `/etc/HOSTNAME`, RHEL ≤ 6's `/etc/sysconfig/network`,
/// Debian's `127.0.1.1` line in `/etc/hosts`, and `/etc/mailname` when it named the
/// old host.
fn set_hostname(planner: &mut Planner, name: &Hostname) -> Result<()> {
    let mut old_names: Vec<String> = Vec::new();
    if !planner.os.hostname.is_empty() {
        old_names.push(planner.os.hostname.clone());
    }
    let line = format!("{}\n", name.as_str());
    for place in ["/etc/hostname", "/etc/HOSTNAME"] {
        match planner.stat(place)? {
            Some((path, meta)) if meta.kind == FileKind::File => {
                let old = planner.read(&path)?;
                let old_name = String::from_utf8_lossy(&old).trim().to_owned();
                if !old_name.is_empty() {
                    old_names.push(old_name);
                }
                planner.replace(&path, Some(&old), line.as_bytes());
            }
            Some(_) => {}
            None if place == "/etc/hostname" => {
                let path = planner.resolve_new(place)?;
                planner.replace(&path, None, line.as_bytes());
            }
            None => {}
        }
    }
    if let Some((path, FileKind::File)) = kind_of(planner, "/etc/sysconfig/network")? {
        let content = planner.read(&path)?;
        let replaced = format!("HOSTNAME={}", name.as_str());
        if let Some(edit) = edit_lines(&content, |l| {
            if assigns(l, "HOSTNAME").is_some() {
                LineAction::Replace(replaced.clone())
            } else {
                LineAction::Keep
            }
        }) {
            planner.edit(&path, edit);
        }
    }
    if let Some((path, FileKind::File)) = kind_of(planner, "/etc/hosts")? {
        let content = planner.read(&path)?;
        let names = if name.as_str() == name.short() {
            name.as_str().to_owned()
        } else {
            format!("{}\t{}", name.as_str(), name.short())
        };
        if let Some(edit) = edit_lines(&content, |l| {
            if l.split_whitespace().next() == Some("127.0.1.1") {
                LineAction::Replace(format!("127.0.1.1\t{names}"))
            } else {
                LineAction::Keep
            }
        }) {
            planner.edit(&path, edit);
        }
    }
    if let Some((path, FileKind::File)) = kind_of(planner, "/etc/mailname")? {
        let old = planner.read(&path)?;
        let text = String::from_utf8_lossy(&old).trim().to_owned();
        let short = text.split('.').next().unwrap_or_default();
        if old_names.iter().any(|n| n == &text || n == short) {
            planner.replace(&path, Some(&old), line.as_bytes());
        }
    }
    Ok(())
}

fn kind_of(
    planner: &mut Planner,
    path: &str,
) -> Result<Option<(crate::guest::Resolved, FileKind)>> {
    Ok(planner.stat(path)?.map(|(p, m)| (p, m.kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert_eq!(
            Hostname::parse("web-02.example.org").unwrap().short(),
            "web-02"
        );
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", &"x".repeat(64)] {
            assert!(Hostname::parse(bad).is_err(), "{bad:?}");
        }
    }
}
