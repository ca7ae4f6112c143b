//! [`NativeError`]: what can go wrong reading a guest disk directly.
//!
//! Every variant says which on-disk structure it concerns and where it sits (a byte
//! offset on the virtual disk or in the volume), so a damaged or hostile image can be
//! told from a bug. Must not: carry backend-neutral guest errors (the trait
//! implementation converts), or print anything.

use crate::disk::DiskError;

/// Shorthand for results of the native backend.
pub type Result<T, E = NativeError> = std::result::Result<T, E>;

/// Errors of the native guest backend.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// Reading the virtual disk failed.
    #[error("cannot read the virtual disk")]
    Disk(#[from] DiskError),
    /// An on-disk structure violates its format.
    #[error("malformed {structure} at byte {offset}: {detail}")]
    Malformed {
        structure: &'static str,
        offset: u64,
        detail: String,
    },
    /// A stored checksum does not match the content it covers.
    #[error(
        "{structure} at byte {offset}: checksum {stored:#010x} stored, {computed:#010x} computed"
    )]
    Checksum {
        structure: &'static str,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    /// The structure is valid but uses a feature this backend does not handle.
    #[error("unsupported {structure}: {detail}")]
    Unsupported {
        structure: &'static str,
        detail: String,
    },
    /// A count or size read from the disk exceeds what the backend accepts to handle.
    #[error("{structure}: {value} exceeds the limit of {limit}")]
    Limit {
        structure: &'static str,
        value: u64,
        limit: u64,
    },
}

impl NativeError {
    /// A [`NativeError::Malformed`] with a formatted detail.
    pub fn malformed(structure: &'static str, offset: u64, detail: impl Into<String>) -> Self {
        Self::Malformed {
            structure,
            offset,
            detail: detail.into(),
        }
    }

    /// A [`NativeError::Unsupported`] with a formatted detail.
    pub fn unsupported(structure: &'static str, detail: impl Into<String>) -> Self {
        Self::Unsupported {
            structure,
            detail: detail.into(),
        }
    }

    /// Fails with [`NativeError::Limit`] when `value` is over `limit`.
    pub fn check_limit(structure: &'static str, value: u64, limit: u64) -> Result<()> {
        if value > limit {
            return Err(Self::Limit {
                structure,
                value,
                limit,
            });
        }
        Ok(())
    }
}
