//! `patch`: apply a batch of writes to the guest content of an existing raw or qcow2
//! image, in place and crash-safe. This is how edits made without an appliance (the
//! native guest backend's overlay) reach the image.
//!
//! Everything is validated before the file is touched: every write must lie inside the
//! virtual disk and no two may overlap ([`PatchError`] otherwise); a qcow2 image must
//! pass the consistency check and use only features this module handles (see
//! [`qcow2`]), and the whole allocation plan is computed and bounded first. Zero-length
//! writes are ignored. Runs of zeros ([`ZeroRun`], what scrubbing freed blocks amounts
//! to) are written like data but held as lengths, not buffers, so zeroing gigabytes
//! costs no memory. The image is locked exclusively while it is written, as QEMU does.
//!
//! Raw images are written with positioned writes and one `fsync`. qcow2 images are
//! written in qcow2's own order (guest data, then refcounts, then the L2/L1 pointers,
//! then the release of what the old mappings held), with a sync between steps, so a
//! crash at any point leaves an image `qemu-img check` finds at worst leaking clusters,
//! each guest cluster holding its old or its new content.
//!
//! Must not: print, follow backing files, or write anything before the validation and
//! the plan succeeded.

mod qcow2;
mod raw;
mod writes;

use std::path::Path;

use serde::Serialize;

use self::writes::GuestWrites;
use super::detect::{detect, Format};
use super::info::unsupported_format;
use super::qcow2::Header;
use super::{DiskError, LocalFile, ReadAt, Result};

/// One write: the guest byte offset and the bytes to put there.
pub type GuestWrite = (u64, Vec<u8>);

/// A run of guest bytes to set to zero: the guest byte offset and the length.
pub type ZeroRun = (u64, u64);

/// How to apply a patch.
#[derive(Debug, Clone, Copy, Default)]
pub struct PatchOptions {
    /// TEST HOOK, not for users: fail once this many writes were made to the file,
    /// leaving it as a crash at that point would. `None` in normal use.
    pub stop_after_writes: Option<u64>,
}

/// What applying a patch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PatchReport {
    /// "raw" or "qcow2".
    pub format: &'static str,
    /// Guest bytes written (the sum of the write lengths).
    pub guest_bytes: u64,
    /// Guest clusters (qcow2) overwritten in their existing host cluster.
    pub clusters_in_place: u64,
    /// Preallocated zero clusters filled in their reserved host cluster.
    pub preallocated_filled: u64,
    /// Guest clusters given a fresh host cluster (unallocated, zero, compressed or
    /// shared with a snapshot before).
    pub clusters_allocated: u64,
    /// New L2 tables (for parts of the disk that had none).
    pub l2_tables_allocated: u64,
    /// L2 tables copied because a snapshot shared them.
    pub l2_tables_copied: u64,
    /// New refcount blocks.
    pub refcount_blocks_allocated: u64,
    /// Whether the refcount table was moved to a larger one.
    pub refcount_table_grown: bool,
    /// Host clusters whose refcount dropped to zero once the old mappings were released.
    pub clusters_freed: u64,
    /// Leaked clusters the image had before (kept as they were).
    pub leaked_clusters_before: u64,
    /// Write calls made to the file.
    pub writes: u64,
}

/// Applies `writes` to the image at `path` with default options.
pub fn apply(path: &Path, writes: &[GuestWrite]) -> Result<PatchReport> {
    apply_with(path, writes, &PatchOptions::default())
}

/// Applies `writes` and sets the runs `zeros` to zero, in one batch (no two may
/// overlap), with default options.
pub fn apply_zeroing(path: &Path, writes: &[GuestWrite], zeros: &[ZeroRun]) -> Result<PatchReport> {
    apply_batch(path, writes, zeros, &PatchOptions::default())
}

/// Applies `writes` to the image at `path` (raw or qcow2, judged by content).
pub fn apply_with(
    path: &Path,
    writes: &[GuestWrite],
    options: &PatchOptions,
) -> Result<PatchReport> {
    apply_batch(path, writes, &[], options)
}

fn apply_batch(
    path: &Path,
    writes: &[GuestWrite],
    zeros: &[ZeroRun],
    options: &PatchOptions,
) -> Result<PatchReport> {
    let source = LocalFile::open(path).map_err(|e| DiskError::io("open", path, e))?;
    match detect(&source).map_err(|e| DiskError::io("read", path, e))? {
        Format::Raw => {
            let writes = GuestWrites::new(writes, zeros, source.size(), path)?;
            raw::apply(path, &writes, options)
        }
        Format::Qcow2 => qcow2::apply(path, source, writes, zeros, options),
        Format::Unsupported(other) => Err(unsupported_format(path, other.name())),
    }
}

/// Checks, without writing anything, that the image at `path` can be patched: a raw or
/// qcow2 image that can be opened for writing and, for qcow2, uses no feature [`apply`]
/// refuses. Returns the format's name. Lets a caller choose another way to change the
/// image before doing any work; [`apply`] checks everything again.
pub fn preflight(path: &Path) -> Result<&'static str> {
    let source = LocalFile::open(path).map_err(|e| DiskError::io("open", path, e))?;
    let format = match detect(&source).map_err(|e| DiskError::io("read", path, e))? {
        Format::Raw => "raw",
        Format::Qcow2 => {
            qcow2::refuse_unsupported(path, &Header::read(&source, path)?)?;
            "qcow2"
        }
        Format::Unsupported(other) => return Err(unsupported_format(path, other.name())),
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| DiskError::io("open for writing", path, e))?;
    Ok(format)
}

/// Why a batch of writes was rejected before anything was written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// A write reaches past the end of the virtual disk.
    #[error(
        "write of {len} bytes at guest offset {offset} ends past the virtual disk of {size} bytes"
    )]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// Two writes cover the same bytes.
    #[error("writes at guest offsets {first} ({first_len} bytes) and {second} overlap")]
    Overlap {
        first: u64,
        first_len: u64,
        second: u64,
    },
}

impl PatchError {
    fn into_disk(self, path: &Path) -> DiskError {
        DiskError::InvalidRequest(format!("{}: {self}", path.display()))
    }
}
