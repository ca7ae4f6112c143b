//! `amend`: change a qcow2 image's compat level in place (0.10 = v2, 1.1 = v3), with
//! qemu-img's semantics and without its traps.
//!
//! Before anything is written the image is locked, checked (corruption refuses; leaks
//! are reported and kept), and every feature v2 cannot represent is refused by name:
//! refcount widths other than 16, external data files, extended L2 entries, zstd with
//! compressed clusters, dirty (lazy refcounts) or corrupt-marked images, encryption,
//! zero clusters with a backing file, and persistent bitmaps unless `drop_bitmaps`.
//!
//! Write order (crash safety): every write before the header leaves a valid image of the
//! OLD version with the same content, so the final header write is the switch.
//! Downgrade: (1) each L2 table holding zero clusters is rewritten in place with them
//! unallocated (same content without a backing file); sync; (2) preallocated host
//! clusters they held are freed (refcount blocks); sync; (3) the v2 header, one write;
//! sync; (4) with `drop_bitmaps`, the bitmap clusters are freed; sync. A crash between
//! (1) and (2), or after (3), leaves only leaked clusters, never a wrong refcount.
//! Upgrade is the header write alone.
//!
//! Test hook: [`AmendOptions::stop_after_writes`] makes amend fail, as if the process
//! died, once that many writes were made (the CLI's hidden `--test-stop-after-writes`);
//! tests use it to prove every intermediate state is readable.

mod downgrade;
mod header_update;
pub(crate) mod writes;
mod zeros;

use std::path::Path;

use serde::Serialize;

use self::writes::ImageWriter;
use super::check::check_qcow2;
use super::header::incompatible;
use super::limits::V3_MIN_SNAPSHOT_EXTRA_DATA;
use super::snapshot::read_snapshot_table;
use super::Header;
use crate::disk::detect::{detect, Format};
use crate::disk::info::unsupported_format;
use crate::disk::{DiskError, LocalFile, Result};
use crate::report::{Event, Reporter};

/// A qcow2 compat level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// "0.10": qcow2 version 2.
    V0_10,
    /// "1.1": qcow2 version 3.
    V1_1,
}

impl Compat {
    /// The name qemu-img uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::V0_10 => "0.10",
            Self::V1_1 => "1.1",
        }
    }

    fn version(self) -> u32 {
        match self {
            Self::V0_10 => 2,
            Self::V1_1 => 3,
        }
    }
}

/// What to change.
#[derive(Debug, Clone, Copy)]
pub struct AmendOptions {
    pub compat: Compat,
    /// Downgrade even with persistent bitmaps, deleting them and freeing their clusters.
    pub drop_bitmaps: bool,
    /// TEST HOOK, not for users: fail once this many writes were made, leaving the image
    /// as a crash at that point would. `None` in normal use.
    pub stop_after_writes: Option<u64>,
}

/// What amend did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AmendOutcome {
    /// Compat before.
    pub from: &'static str,
    /// Compat after.
    pub to: &'static str,
    /// Whether anything was written.
    pub changed: bool,
    pub zero_clusters_expanded: u64,
    pub l2_tables_rewritten: u64,
    pub preallocated_clusters_freed: u64,
    /// Names of the persistent bitmaps deleted.
    pub bitmaps_dropped: Vec<String>,
    pub bitmap_clusters_freed: u64,
    /// Leaked clusters the image had before (kept as they were).
    pub leaked_clusters: u64,
    pub writes: u64,
}

/// Amends the image at `path` in place.
pub fn amend(path: &Path, options: &AmendOptions, reporter: &dyn Reporter) -> Result<AmendOutcome> {
    let source = LocalFile::open(path).map_err(|e| DiskError::io("open", path, e))?;
    match detect(&source).map_err(|e| DiskError::io("read", path, e))? {
        Format::Qcow2 => {}
        Format::Raw => {
            return Err(refused(
                path,
                "it is a raw image; amend changes qcow2 images only",
                None,
            ))
        }
        Format::Unsupported(other) => return Err(unsupported_format(path, other.name())),
    }
    // Locked before the header is read, so nothing changes between reading and writing.
    let mut writer = ImageWriter::open(path, options.stop_after_writes)?;
    let header = Header::read(&source, path)?;
    let mut outcome = AmendOutcome {
        from: header.compat(),
        to: options.compat.name(),
        ..AmendOutcome::default()
    };
    if header.version == options.compat.version() {
        return Ok(outcome);
    }
    refuse_unsafe_state(path, &header)?;
    let report = check_qcow2(&source, path)?;
    if report.corruptions > 0 || report.check_errors > 0 {
        return Err(refused(
            path,
            &format!(
                "check found {} corruptions and {} errors; amending could spread the damage",
                report.corruptions, report.check_errors
            ),
            Some("run `imgferry check` for details; `qemu-img check -r all` may repair it"),
        ));
    }
    if report.leaks > 0 {
        reporter.warn(&format!(
            "{} leaked clusters (wasted space, no harm); amend keeps them",
            report.leaks
        ));
    }
    outcome.leaked_clusters = report.leaks;
    match options.compat {
        Compat::V0_10 => downgrade::downgrade(
            &source,
            &mut writer,
            path,
            &header,
            options,
            &mut outcome,
            reporter,
        )?,
        Compat::V1_1 => upgrade(&source, &mut writer, path, &header)?,
    }
    outcome.changed = true;
    outcome.writes = writer.writes();
    reporter.event(
        Event::new(
            "amend.done",
            format!("compat {} -> {}", outcome.from, outcome.to),
        )
        .with("from", outcome.from)
        .with("to", outcome.to),
    );
    Ok(outcome)
}

pub(crate) fn refused(path: &Path, detail: &str, hint: Option<&str>) -> DiskError {
    DiskError::Refused {
        path: path.to_owned(),
        detail: detail.to_owned(),
        hint: hint.map(str::to_owned),
    }
}

/// States in which no amend is safe, whatever the direction.
fn refuse_unsafe_state(path: &Path, header: &Header) -> Result<()> {
    let repair = Some("run `qemu-img check -r all` on it first");
    if header.incompatible_features & incompatible::CORRUPT != 0 {
        return Err(refused(path, "the image is marked corrupt", repair));
    }
    if header.incompatible_features & incompatible::DIRTY != 0 {
        return Err(refused(
            path,
            "the image is dirty (lazy refcounts not written back; it was not closed cleanly)",
            repair,
        ));
    }
    let unknown = header.incompatible_features & !incompatible::KNOWN;
    if unknown != 0 {
        return Err(refused(
            path,
            &format!("unknown incompatible features {unknown:#x}"),
            None,
        ));
    }
    if header.crypt_method != 0 {
        return Err(refused(
            path,
            "the image is encrypted, which imgferry does not support",
            None,
        ));
    }
    if header
        .backing_file
        .as_ref()
        .is_some_and(|name| name.len() as u64 != u64::from(header.backing_file_size))
    {
        return Err(refused(
            path,
            "the backing file name is not valid UTF-8",
            None,
        ));
    }
    Ok(())
}

fn upgrade(
    source: &LocalFile,
    writer: &mut ImageWriter<'_>,
    path: &Path,
    header: &Header,
) -> Result<()> {
    let snapshots = read_snapshot_table(source, path, header)?;
    if let Some(old) = snapshots
        .snapshots
        .iter()
        .find(|s| s.extra_data_size < V3_MIN_SNAPSHOT_EXTRA_DATA)
    {
        return Err(refused(
            path,
            &format!(
                "snapshot {:?} lacks the extra data compat 1.1 requires (rewriting the snapshot table is not supported)",
                old.name
            ),
            Some("`qemu-img amend -o compat=1.1` can upgrade it"),
        ));
    }
    header_update::write_header(writer, path, header, &header_update::upgraded(header))
}
