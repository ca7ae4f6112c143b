//! The one seam through which the native backend's edits reach an image: a list of
//! `(disk byte offset, bytes)` writes and runs of zeros ([`DiskWrites`]), applied in place by the disk layer's
//! [`patch`](crate::disk::patch) (raw and qcow2, crash-safe) only after every operation
//! and the self-check succeeded.
//!
//! Owns the translation of the disk layer's answers into guest errors: an image the
//! patch refuses before writing anything (a qcow2 feature it does not handle, an
//! unsupported format) is a [`GuestError::NativeUnsupported`], so a caller may still
//! make the same edits with libguestfs. Must not: decide what to write.

use std::path::Path;

use crate::disk::patch::{self, PatchReport};
use crate::disk::DiskError;
use crate::guest::{GuestError, Result};

pub use super::overlay::DiskWrites;

/// Checks, before any work, that the image at `image` can take the native backend's
/// writes (see [`patch::preflight`]); returns the format's name.
pub fn preflight(image: &Path) -> Result<&'static str> {
    patch::preflight(image).map_err(|e| guest_error(image, e))
}

/// Applies `writes` (data and runs of zeros) to the image at `image`, which nothing
/// else may hold open for writing.
pub fn apply(image: &Path, writes: &DiskWrites) -> Result<PatchReport> {
    patch::apply_zeroing(image, &writes.data, &writes.zeros).map_err(|e| guest_error(image, e))
}

fn guest_error(image: &Path, err: DiskError) -> GuestError {
    let path = image.display().to_string();
    match err {
        DiskError::Unsupported { .. } | DiskError::Refused { .. } => {
            GuestError::NativeUnsupported {
                operation: "write into",
                path,
                reason: err.to_string(),
            }
        }
        DiskError::Io { action, source, .. } => GuestError::io(action, image, source),
        other => GuestError::Overlay {
            action: "commit native edits to",
            path: image.to_path_buf(),
            message: other.to_string(),
        },
    }
}
