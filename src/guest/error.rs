//! [`GuestError`]: what can go wrong inspecting, mounting, reading or changing a guest.
//!
//! Every variant names the guest path or the image it concerns. Must not: carry
//! backend-specific types (the libguestfs error is flattened to its message).

use std::path::PathBuf;

use crate::exit::ExitCode;

/// Shorthand for results of the guest layer.
pub type Result<T, E = GuestError> = std::result::Result<T, E>;

/// Errors of the guest layer.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// A backend call on a guest path failed.
    #[error("{operation} {path}: {message}")]
    Backend {
        operation: &'static str,
        path: String,
        message: String,
    },
    /// A path component that must be a directory is missing.
    #[error("{path}: no such directory in the guest")]
    NotFound { path: String },
    /// A path component that must be a directory is something else.
    #[error("{path}: not a directory in the guest")]
    NotADirectory { path: String },
    /// The operation needs a regular file.
    #[error("{path}: is a {kind}, not a regular file")]
    NotARegularFile { path: String, kind: &'static str },
    /// Resolving a path followed too many symlinks (a loop, or a hostile image).
    #[error("{path}: too many levels of symbolic links (more than {limit})")]
    SymlinkLoop { path: String, limit: usize },
    /// A path or pattern is not acceptable (relative, too long, NUL byte, ...).
    #[error("invalid guest path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// A file is larger than the caller accepts to hold in memory.
    #[error("{path}: {size} bytes is more than the {limit} bytes imgferry reads")]
    TooLarge { path: String, size: u64, limit: u64 },
    /// A directory walk met more entries than the limit.
    #[error("{path}: more than {limit} entries below it")]
    TooManyEntries { path: String, limit: usize },
    /// No operating system was found in the image.
    #[error("{image}: no operating system found (inspection found no root filesystem)")]
    NoOperatingSystem { image: PathBuf },
    /// libguestfs is not installed (it is loaded at run time, only by sysprep).
    #[error("libguestfs is not available: {message}")]
    LibguestfsMissing { message: String },
    /// The appliance (or whatever the backend runs) could not be started.
    #[error("cannot start the libguestfs appliance for {image}: {message}")]
    Launch { image: PathBuf, message: String },
    /// Creating, committing or removing the write overlay failed.
    #[error("cannot {action} {path}: {message}")]
    Overlay {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
    /// The backend cannot do this.
    #[error("this guest backend does not support {what}")]
    Unsupported { what: &'static str },
    /// The native backend does not handle this guest (a feature, a layout or an
    /// operation it leaves to libguestfs); nothing was changed.
    #[error("the native backend cannot {operation} {path}: {reason}")]
    NativeUnsupported {
        operation: &'static str,
        path: String,
        reason: String,
    },
    /// An I/O call on a host file failed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GuestError {
    /// A host I/O error on `path` while trying to `action` it.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether the error says the native backend cannot handle this guest, so another
    /// backend may try (the image was not changed).
    pub fn is_native_limitation(&self) -> bool {
        matches!(self, Self::NativeUnsupported { .. })
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Failure
    }

    /// What the user might do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Launch { .. } => Some(
                "install libguestfs with scripts/install-deps --guestfs; run \
                 libguestfs-test-tool to see why the appliance does not boot; \
                 LIBGUESTFS_BACKEND_SETTINGS=force_tcg forces software emulation"
                    .to_owned(),
            ),
            Self::LibguestfsMissing { .. } => Some(
                "install libguestfs-tools (apt-get install libguestfs-tools, or \
                 scripts/install-deps --guestfs); only sysprep needs it"
                    .to_owned(),
            ),
            Self::NoOperatingSystem { .. } => {
                Some("is this a disk image of a Linux VM (not a data volume or an ISO)?".to_owned())
            }
            Self::NativeUnsupported { .. } => Some(
                "use --backend libguestfs (or --backend auto, which falls back to it)".to_owned(),
            ),
            Self::Overlay { .. } => Some(
                "the image itself was not changed; check free space and that qemu-img is installed"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}
