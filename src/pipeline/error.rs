//! [`PipelineError`]: why a migrate/template run stopped, with what the operator can do.
//!
//! Wraps the lower layers' errors unchanged (their context is already complete) and adds
//! the pipeline's own: source images that cannot be migrated, a work dir too small or
//! holding another run's state, a verification mismatch. Must not carry secrets.

use std::path::PathBuf;

use crate::exit::ExitCode;

/// Shorthand for results of the pipeline layer.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Errors of the pipeline layer.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    #[error(transparent)]
    Hash(#[from] crate::hash::HashError),
    #[error(transparent)]
    Cloud(#[from] crate::cloud::CloudError),
    #[error(transparent)]
    Transfer(#[from] crate::transfer::TransferError),
    #[error(transparent)]
    Guest(#[from] crate::guest::GuestError),
    #[error(transparent)]
    Remote(#[from] crate::transfer::remote::RemoteError),
    #[error(transparent)]
    Sysprep(#[from] crate::sysprep::SysprepError),
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("property {key:?}: {problem}")]
    InvalidProperty { key: String, problem: String },
    #[error(
        "the target would have {count} properties, more than Glance's default limit of {limit}"
    )]
    TooManyProperties { count: usize, limit: usize },
    #[error("state file {} is unreadable: {problem}", path.display())]
    StateUnreadable { path: PathBuf, problem: String },
    #[error("work dir {} holds the state of a different request (source, target or options differ)", path.display())]
    StateOfAnotherRequest { path: PathBuf },
    #[error(
        "work dir {} has {available} bytes free, the run needs {needed} ({detail})",
        path.display()
    )]
    NotEnoughSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
        detail: String,
    },
    #[error("source image {id} is {status}, not active")]
    SourceNotActive { id: String, status: String },
    #[error(
        "source image {id} is volume-backed (size 0, block_device_mapping): its data is in \
         Cinder snapshot(s) {}",
        if snapshots.is_empty() { "(none named)".to_owned() } else { snapshots.join(", ") }
    )]
    VolumeBacked { id: String, snapshots: Vec<String> },
    #[error("source image {id} has no os_hash_value, and --require-hash was given")]
    MissingHash { id: String },
    #[error("{what}: expected {expected}, got {actual}")]
    HashMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    #[error("stopped after stage {stage} (test hook)")]
    TestStop { stage: &'static str },
    #[error("volume-backed snapshot {id} has an unusable block_device_mapping: {problem}")]
    InvalidMapping { id: String, problem: String },
    #[error("Cinder snapshot {id} ({device}) is not visible to project {project}")]
    SnapshotNotVisible {
        id: String,
        device: String,
        project: String,
    },
    #[error("Cinder snapshot {id} ({device}) is {status}, not available")]
    SnapshotNotUsable {
        id: String,
        device: String,
        status: String,
    },
    #[error(
        "project {project} has room for {room} more {resource} (limit {limit}), the run needs {needed}"
    )]
    QuotaTooSmall {
        project: String,
        resource: &'static str,
        needed: u64,
        room: u64,
        limit: i64,
    },
    #[error("{what} is still {status} after {seconds} s")]
    WaitTimedOut {
        what: String,
        status: String,
        seconds: u64,
    },
    #[error("volume or snapshot {id} went to status {status}")]
    VolumeFailed { id: String, status: String },
    #[error("Cinder's upload into image {image} failed: the image is {status}")]
    VolumeUploadFailed { image: String, status: String },
}

impl PipelineError {
    /// An I/O error naming its path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Disk(e) => e.exit_code(),
            Self::Hash(e) => e.exit_code(),
            Self::Cloud(e) => e.exit_code(),
            Self::Transfer(e) => e.exit_code(),
            Self::Guest(e) => e.exit_code(),
            Self::Sysprep(e) => e.exit_code(),
            Self::InvalidProperty { .. } => ExitCode::Usage,
            Self::HashMismatch { .. } => ExitCode::VerificationFailed,
            Self::Interrupted(_) => ExitCode::Interrupted,
            _ => ExitCode::Failure,
        }
    }

    /// What the user might do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Disk(e) => e.hint(),
            Self::Cloud(e) => e.hint(),
            Self::Transfer(e) => e.hint(),
            Self::Guest(e) => e.hint(),
            Self::Sysprep(e) => e.hint(),
            Self::TooManyProperties { .. } => {
                Some("leave some out with --drop-property KEY (a trailing * drops a prefix)".into())
            }
            Self::StateOfAnotherRequest { .. } => Some(
                "re-run with exactly the same arguments to resume, add --restart to start this \
                 request over in that work dir, or choose another --work-dir"
                    .into(),
            ),
            Self::StateUnreadable { .. } => Some("--restart discards it".into()),
            Self::NotEnoughSpace { .. } => {
                Some("free space there or point --work-dir at a larger filesystem".into())
            }
            Self::SourceNotActive { status, .. } if status == "deactivated" => {
                Some("an admin can reactivate it: openstack image set --activate IMAGE".into())
            }
            Self::SourceNotActive { .. } => {
                Some("wait until it is active (openstack image show), or pick another".into())
            }
            Self::VolumeBacked { .. } => Some(
                "migrate or template it from a cloud (not --from-file/--to-file): its disks are read through Cinder"
                    .into(),
            ),
            Self::InvalidMapping { .. } => Some(
                "it was not written by Nova's snapshot of a boot-from-volume server; migrate its volumes' snapshots one by one"
                    .into(),
            ),
            Self::SnapshotNotVisible { .. } => Some(
                "run as the project that owns the snapshots (--from a cloud scoped to it)".into(),
            ),
            Self::SnapshotNotUsable { .. } => Some(
                "wait until the snapshot is available (openstack volume snapshot show), or take a new instance snapshot"
                    .into(),
            ),
            Self::QuotaTooSmall { .. } => Some(
                "nothing was created; raise the quota (openstack quota set --volumes/--gigabytes/--snapshots) or free space in that project"
                    .into(),
            ),
            Self::WaitTimedOut { .. } => Some(
                "the cloud is slow or stuck; re-run the same command to continue where it stopped".into(),
            ),
            Self::VolumeUploadFailed { .. } => Some(
                "see cinder-volume's log; a volume that still has snapshots cannot be uploaded by file-based drivers"
                    .into(),
            ),
            Self::MissingHash { .. } => Some(
                "drop --require-hash to continue with the digest imgferry computes on download"
                    .into(),
            ),
            Self::HashMismatch { .. } => {
                Some("the data changed in transit or at rest; re-run to fetch it again".into())
            }
            _ => None,
        }
    }
}
