//! [`HashError`]: what can go wrong computing digests, reading or writing a manifest, or
//! verifying a file.
//!
//! Each variant names the file it concerns. A verification failure (a digest or a chunk
//! that differs) is its own variant so the CLI can map it to exit code 3; everything
//! else is an ordinary failure (exit 1).

use std::io;
use std::path::PathBuf;

use crate::exit::ExitCode;

/// Errors of the hash layer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// An I/O call failed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A manifest file is not a valid imgferry manifest.
    #[error("{path} is not a valid imgferry manifest: {detail}")]
    ManifestMalformed { path: PathBuf, detail: String },
    /// A caller asked for something the layer cannot do (a bad chunk size, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// A hashing thread died (a bug: hashing itself cannot fail).
    #[error("the {algorithm} hashing thread stopped unexpectedly")]
    WorkerFailed { algorithm: String },
    /// The file does not match what it was checked against.
    #[error("verification of {path} failed: {summary}")]
    VerificationFailed { path: PathBuf, summary: String },
}

impl HashError {
    /// An I/O error on `path` while trying to `action` it.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A manifest that cannot be trusted, with the reason.
    pub fn malformed(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::ManifestMalformed {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// The exit code a command failing with this error returns: 3 for a verification
    /// failure, 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::VerificationFailed { .. } => ExitCode::VerificationFailed,
            _ => ExitCode::Failure,
        }
    }
}
