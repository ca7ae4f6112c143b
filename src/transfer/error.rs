//! [`TransferError`]: what can go wrong moving image data to or from Glance.
//!
//! Each variant names the image (id), the file and, for verification, the digest that
//! differed with both values. A verification failure (digest or size) maps to exit code 3,
//! an interruption (SIGINT, SIGTERM) to 130, everything else to 1. No variant carries a token or a password: cloud errors come from
//! the `cloud` layer, which strips them.

use std::path::PathBuf;
use std::time::Duration;

use crate::cloud::CloudError;
use crate::exit::ExitCode;

/// Errors of the transfer layer.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image {image} has no data{}", volume_note(*volume_backed))]
    NoData { image: String, volume_backed: bool },
    #[error("image {image} is `{status}`, not `active`: it has no data to download yet")]
    NotActive { image: String, status: String },
    #[error("download of image {image} failed verification: {algorithm} is {actual}, Glance recorded {expected}")]
    DigestMismatch {
        image: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("download of image {image} failed verification: received {actual} bytes, expected {expected}")]
    SizeMismatch {
        image: String,
        expected: u64,
        actual: u64,
    },
    #[error("image {image} records neither a checksum nor an os_hash_value: the download cannot be verified")]
    Unverifiable { image: String },
    #[error("reading image {image} failed after {attempts} attempts at byte {offset}: {last}")]
    RetriesExhausted {
        image: String,
        attempts: u32,
        offset: u64,
        last: String,
    },
    #[error("{} holds a {detected} image, not the {declared} declared", path.display())]
    FormatMismatch {
        path: PathBuf,
        declared: String,
        detected: &'static str,
    },
    #[error("upload of {} to image {image} failed after {attempts} attempts: {last}", path.display())]
    UploadFailed {
        path: PathBuf,
        image: String,
        attempts: u32,
        last: String,
    },
    #[error(
        "this cloud does not offer the `{method}` import method (it offers: {})",
        offered_list(offered)
    )]
    ImportNotOffered {
        method: &'static str,
        offered: Vec<String>,
    },
    #[error("image {image} went to `{status}` instead of `active`")]
    ImageFailed { image: String, status: String },
    #[error("image {image} is still `{status}` after {}s", waited.as_secs())]
    ActiveTimeout {
        image: String,
        status: String,
        waited: Duration,
    },
    #[error(
        "image {image} does not match what was sent: Glance's {field} is {theirs}, ours is {ours}"
    )]
    UploadMismatch {
        image: String,
        field: &'static str,
        theirs: String,
        ours: String,
    },
    /// SIGINT or SIGTERM during a download: the bytes received stay in the part file.
    #[error("download of image {image} interrupted (SIGINT or SIGTERM) after {bytes} bytes; {} keeps them", part.display())]
    DownloadInterrupted {
        image: String,
        part: PathBuf,
        bytes: u64,
    },
    /// SIGINT or SIGTERM with nothing to keep (an upload; a download before any byte).
    #[error("interrupted (SIGINT or SIGTERM)")]
    Interrupted(#[from] crate::interrupt::Interrupted),
    #[error(transparent)]
    Hash(#[from] crate::hash::HashError),
}

fn volume_note(volume_backed: bool) -> &'static str {
    if volume_backed {
        " (a volume-backed snapshot: its data is in a Cinder volume snapshot, not in Glance)"
    } else {
        ""
    }
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "none".to_owned()
    } else {
        offered.join(", ")
    }
}

impl TransferError {
    /// An I/O error on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether the data did not match what Glance recorded (or what was sent).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Self::DigestMismatch { .. }
                | Self::SizeMismatch { .. }
                | Self::Unverifiable { .. }
                | Self::UploadMismatch { .. }
        )
    }

    /// 3 for a verification failure, otherwise the underlying layer's code (1).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            _ if self.is_verification_failure() => ExitCode::VerificationFailed,
            Self::Cloud(e) => e.exit_code(),
            Self::Hash(e) => e.exit_code(),
            Self::DownloadInterrupted { .. } | Self::Interrupted(_) => ExitCode::Interrupted,
            _ => ExitCode::Failure,
        }
    }

    /// What the user might do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Cloud(e) => e.hint(),
            Self::DigestMismatch { .. } | Self::SizeMismatch { .. } => Some(
                "nothing was kept; try again, and if it fails the same way the image in Glance may be damaged".into(),
            ),
            Self::Unverifiable { .. } => Some(
                "images created by location (e.g. Ceph-backed snapshots) may have no hash; drop --require-hash to accept it unverified".into(),
            ),
            Self::NoData { volume_backed: true, .. } => {
                Some("create an image from the volume (`openstack image create --volume`) and download that".into())
            }
            Self::NotActive { .. } => Some("wait until the image is active".into()),
            Self::RetriesExhausted { .. } | Self::UploadFailed { .. } => {
                Some("the connection or the server kept failing; try again later (a download resumes from FILE.part)".into())
            }
            Self::FormatMismatch { .. } => Some(
                "declare the format the file really holds (--disk-format), or convert it first (`imgferry convert`)".into(),
            ),
            Self::ImportNotOffered { .. } => Some("use --method put".into()),
            Self::DownloadInterrupted { .. } => Some(
                "`imgferry download --resume` continues from the part file (a re-run of `migrate` does so by itself); delete it to start over".into(),
            ),
            Self::ImageFailed { .. } | Self::ActiveTimeout { .. } | Self::UploadMismatch { .. } => {
                Some("the half-created image was deleted unless --keep-failed was given".into())
            }
            _ => None,
        }
    }
}
