//! [`SysprepError`]: a bad operation selection, hostname or `--write`, or a guest error.
//!
//! Must not: hold backend types (guest errors are already backend-neutral).

use crate::exit::ExitCode;
use crate::guest::GuestError;

/// Shorthand for results of the sysprep layer.
pub type Result<T, E = SysprepError> = std::result::Result<T, E>;

/// Errors of the sysprep layer.
#[derive(Debug, thiserror::Error)]
pub enum SysprepError {
    /// Reading or changing the guest failed.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// An operation word that names no operation.
    #[error("unknown operation {name:?}")]
    UnknownOperation { name: String },
    /// A virt-sysprep operation imgferry does not do (yet).
    #[error("operation {name:?} is not implemented by imgferry: {reason}")]
    NotImplemented { name: String, reason: &'static str },
    /// `--hostname` got something that is not a hostname.
    #[error("invalid hostname {name:?}: {reason}")]
    InvalidHostname { name: String, reason: &'static str },
    /// `--write` without `FILE:` or with a relative FILE (the content is not repeated:
    /// it may be a secret).
    #[error("--write {value:?}...: expected FILE:CONTENT with an absolute FILE")]
    InvalidWrite { value: String },
}

impl SysprepError {
    /// The process exit code: usage errors for bad words, failure otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Guest(error) => error.exit_code(),
            Self::UnknownOperation { .. }
            | Self::NotImplemented { .. }
            | Self::InvalidHostname { .. }
            | Self::InvalidWrite { .. } => ExitCode::Usage,
        }
    }

    /// Whether the native guest backend reported it cannot handle this guest (nothing
    /// was changed; another backend may try).
    pub fn is_native_limitation(&self) -> bool {
        matches!(self, Self::Guest(error) if error.is_native_limitation())
    }

    /// What the user might do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Guest(error) => error.hint(),
            Self::UnknownOperation { .. } | Self::NotImplemented { .. } => {
                Some("imgferry sysprep --list-operations shows every operation".to_owned())
            }
            Self::InvalidHostname { .. } | Self::InvalidWrite { .. } => None,
        }
    }
}
