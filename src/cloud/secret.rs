//! [`Secret`]: a password, application-credential secret or token that cannot leak.
//!
//! Owns the one place secret text is held. `Debug` and `Display` print `***`, and the type
//! deliberately implements neither `Serialize` nor `Deref<Target = str>`, so a secret can
//! only reach a wire or a header through an explicit [`Secret::expose`] call. It must not
//! gain a formatting or serialization path that shows the text.

use std::fmt;

/// A credential whose text must never appear in logs, errors or `--json` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret text, for building a request body or header. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (treated as absent by the config layer).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_text() {
        let secret = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(***)");
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }
}
