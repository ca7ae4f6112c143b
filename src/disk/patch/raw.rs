//! Patching a raw image: each write at its own offset, then one sync.
//!
//! A raw file has no metadata, so there is no ordering to keep: a crash leaves each
//! write either made or not (at the granularity the file system gives), and the file is
//! never resized. Must not: write outside the file (the writes were validated against
//! its size).

use std::path::Path;

use super::writes::GuestWrites;
use super::{PatchOptions, PatchReport};
use crate::disk::qcow2::amend::writes::ImageWriter;
use crate::disk::Result;

/// Writes `writes` into the raw image at `path` and syncs it.
pub fn apply(path: &Path, writes: &GuestWrites<'_>, options: &PatchOptions) -> Result<PatchReport> {
    let mut report = PatchReport {
        format: "raw",
        guest_bytes: writes.total_bytes(),
        ..PatchReport::default()
    };
    if writes.is_empty() {
        return Ok(report);
    }
    let mut writer = ImageWriter::open(path, options.stop_after_writes)?;
    for &(offset, data) in writes.sorted() {
        writer.write_at(data, offset, "guest data")?;
    }
    writer.sync()?;
    report.writes = writer.writes();
    Ok(report)
}
