//! The one seam through which the native backend's edits reach an image: a list of
//! `(disk byte offset, bytes)` writes, applied in place only after every operation and
//! the self-check succeeded.
//!
//! The signature is that of the disk layer's `patch::apply` (in-place, crash-safe
//! writes into raw and qcow2 images, being built as `crate::disk::patch`); until it
//! lands this module writes raw images itself (positioned writes, then one `fsync`)
//! and refuses qcow2 images with [`GuestError::NativeUnsupported`] before touching
//! them. Must not: decide what to write, or write anything when the batch is invalid
//! (out of the disk, overlapping).

use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;

use crate::disk::detect::{detect, Format};
use crate::disk::{LocalFile, ReadAt};
use crate::guest::{GuestError, Result};

/// One write: the guest byte offset and the bytes to put there.
pub type DiskWrite = (u64, Vec<u8>);

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommitReport {
    /// "raw" (or "qcow2" once the disk layer's patch lands).
    pub format: &'static str,
    /// Writes made and the bytes they carried.
    pub writes: u64,
    pub bytes: u64,
}

/// Applies `writes` to the image at `image`.
pub fn apply(image: &Path, writes: &[DiskWrite]) -> Result<CommitReport> {
    let source = LocalFile::open(image).map_err(|e| GuestError::io("open", image, e))?;
    match detect(&source).map_err(|e| GuestError::io("read", image, e))? {
        Format::Raw => {}
        Format::Qcow2 => {
            return Err(GuestError::NativeUnsupported {
                operation: "write into",
                path: image.display().to_string(),
                reason: "committing into qcow2 images waits for the disk layer's in-place patch"
                    .to_owned(),
            })
        }
        Format::Unsupported(other) => {
            return Err(GuestError::NativeUnsupported {
                operation: "write into",
                path: image.display().to_string(),
                reason: format!("{} images are not supported", other.name()),
            })
        }
    }
    let size = source.size();
    let mut sorted: Vec<(u64, &[u8])> = writes
        .iter()
        .filter(|(_, data)| !data.is_empty())
        .map(|(offset, data)| (*offset, data.as_slice()))
        .collect();
    sorted.sort_unstable_by_key(|(offset, _)| *offset);
    let mut end_of_previous = 0u64;
    for &(offset, data) in &sorted {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= size);
        let Some(end) = end.filter(|_| offset >= end_of_previous) else {
            return Err(GuestError::Overlay {
                action: "commit native edits to",
                path: image.to_path_buf(),
                message: format!(
                    "a write of {} bytes at {offset} overlaps another or leaves the {size}-byte disk",
                    data.len()
                ),
            });
        };
        end_of_previous = end;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(|e| GuestError::io("open for writing", image, e))?;
    let mut report = CommitReport {
        format: "raw",
        ..CommitReport::default()
    };
    for (offset, data) in sorted {
        file.write_all_at(data, offset)
            .map_err(|e| GuestError::io("write", image, e))?;
        report.writes += 1;
        report.bytes += data.len() as u64;
    }
    file.sync_all()
        .map_err(|e| GuestError::io("sync", image, e))?;
    Ok(report)
}
