//! [`DiskError`]: everything that can go wrong reading, writing or changing an image.
//!
//! Each variant names the file it concerns; `Malformed` also says where in the file and
//! what was wrong, so an operator can tell a damaged image from a bug.

use std::io;
use std::path::PathBuf;

use crate::exit::ExitCode;

/// Shorthand for results of the disk layer.
pub type Result<T, E = DiskError> = std::result::Result<T, E>;

/// Errors of the disk layer.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// An I/O call failed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The image violates its format: a bad magic, an offset out of range, ...
    #[error("{path} is not a valid {format} image: {detail}")]
    Malformed {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    /// The image is valid but uses something imgferry does not handle.
    #[error("{path}: {detail}")]
    Unsupported {
        path: PathBuf,
        detail: String,
        hint: Option<String>,
    },
    /// The requested change would damage the image or lose data, so it was not made.
    #[error("refusing to change {path}: {detail}")]
    Refused {
        path: PathBuf,
        detail: String,
        hint: Option<String>,
    },
    /// SIGINT or SIGTERM asked the work to stop.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// A caller asked for something impossible (a range outside the disk, ...).
    #[error("{0}")]
    InvalidRequest(String),
}

impl DiskError {
    /// An I/O error on `path` while trying to `action` it.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A format violation in `path`.
    pub fn malformed(
        path: impl Into<PathBuf>,
        format: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::Malformed {
            path: path.into(),
            format,
            detail: detail.into(),
        }
    }

    /// A valid but unsupported feature of `path`.
    pub fn unsupported(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::Unsupported {
            path: path.into(),
            detail: detail.into(),
            hint: None,
        }
    }

    /// A valid but unsupported feature of `path`, with what the user can do instead.
    pub fn unsupported_with_hint(
        path: impl Into<PathBuf>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self::Unsupported {
            path: path.into(),
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    /// The exit code a command failing with this error returns.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Interrupted(_) => ExitCode::Interrupted,
            _ => ExitCode::Failure,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Malformed { .. } => {
                Some("the file is damaged or truncated; `qemu-img check` may tell more".to_owned())
            }
            Self::Refused { hint, .. } | Self::Unsupported { hint, .. } => hint.clone(),
            Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Some("check the path".to_owned())
            }
            Self::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                Some("free some space or choose another destination".to_owned())
            }
            _ => None,
        }
    }
}
