//! Patching a qcow2 image (version 2 or 3) in place.
//!
//! Refused, naming the reason, before anything is written: a backing file (the old
//! content of unallocated clusters would come from it), encryption, an external data
//! file, extended L2 entries, unknown incompatible or autoclear features, persistent
//! dirty bitmaps (a write would make them stale), a dirty (lazy refcounts) or
//! corrupt-marked image, and any image `check` finds corruption in. Leaked clusters are
//! kept. Refcounts of every width (1 to 64 bits) are handled.
//!
//! This module orchestrates: `plan` decides per cluster and per L2 table, `alloc` places
//! new clusters and plans refcount blocks and table growth, `execute` writes in the
//! crash-safe order.

mod alloc;
mod execute;
mod plan;

use std::path::Path;
use std::sync::Arc;

use self::alloc::{plan_refcounts, Allocator};
use self::execute::{execute, read_old_content, Target};
use self::plan::Context;
use super::writes::GuestWrites;
use super::{GuestWrite, PatchOptions, PatchReport, ZeroRun};
use crate::disk::qcow2::amend::writes::ImageWriter;
use crate::disk::qcow2::check::check_qcow2;
use crate::disk::qcow2::header::{autoclear, incompatible};
use crate::disk::qcow2::refcount::{RefcountTable, StoredRefcounts};
use crate::disk::qcow2::{Header, Qcow2Image};
use crate::disk::{DiskError, LocalFile, ReadAt, Result};

/// Applies `writes` and `zeros` to the qcow2 image at `path`, opened as `source`.
pub fn apply(
    path: &Path,
    source: LocalFile,
    writes: &[GuestWrite],
    zeros: &[ZeroRun],
    options: &PatchOptions,
) -> Result<PatchReport> {
    // Locked before the header is read, so nothing changes between reading and writing.
    let mut writer = ImageWriter::open(path, options.stop_after_writes)?;
    let source = Arc::new(source);
    let header = Header::read(source.as_ref(), path)?;
    refuse_unsupported(path, &header)?;
    let writes = GuestWrites::new(writes, zeros, header.size, path)?;
    let mut report = PatchReport {
        format: "qcow2",
        guest_bytes: writes.total_bytes(),
        ..PatchReport::default()
    };
    if writes.is_empty() {
        return Ok(report);
    }
    let check = check_qcow2(source.as_ref(), path)?;
    if check.corruptions > 0 || check.check_errors > 0 {
        return Err(refused(
            path,
            format!(
                "check found {} corruptions and {} errors; writing could spread the damage",
                check.corruptions, check.check_errors
            ),
            Some("run `imgferry check` for details; `qemu-img check -r all` may repair it"),
        ));
    }
    report.leaked_clusters_before = check.leaks;
    let reader = Qcow2Image::open(source.clone(), path)?;
    let table = RefcountTable::read(source.as_ref(), path, &header)?;
    let mut stored = StoredRefcounts::new(source.as_ref(), path, &table);
    let ctx = Context {
        source: source.as_ref(),
        path,
        header: &header,
    };
    let mut alloc = Allocator::new(source.size(), header.cluster_bits);
    let plan = plan::plan(
        &ctx,
        writes.by_cluster(header.cluster_bits),
        &mut stored,
        &mut alloc,
    )?;
    let refcounts = plan_refcounts(&table, &mut stored, path, alloc, &plan.allocated)?;
    inflate_compressed(&reader, &header, &plan)?;
    report.refcount_blocks_allocated = refcounts.new_blocks.len() as u64;
    report.refcount_table_grown = refcounts.new_table.is_some();
    let mut target = Target {
        writer: &mut writer,
        source: source.as_ref(),
        reader: &reader,
        path,
        header: &header,
        table: &table,
    };
    let done = execute(&mut target, &plan, &refcounts, &mut report);
    report.writes = writer.writes();
    done.map(|()| report)
}

/// Inflates every compressed cluster the patch replaces (and discards the result), so a
/// damaged one stops the patch before anything is written, not halfway.
fn inflate_compressed(reader: &Qcow2Image, header: &Header, plan: &plan::Plan<'_>) -> Result<()> {
    let mut buf = vec![0u8; header.cluster_size() as usize];
    for step in &plan.clusters {
        if let plan::Action::Allocate {
            old: plan::OldContent::Compressed,
            ..
        } = step.action
        {
            read_old_content(reader, header, &step.patch, &mut buf)?;
        }
    }
    Ok(())
}

/// Refuses images whose guest content or metadata a patch cannot keep correct.
pub(super) fn refuse_unsupported(path: &Path, header: &Header) -> Result<()> {
    let features = header.incompatible_features;
    let repair = Some("run `qemu-img check -r all` on it first");
    if features & incompatible::CORRUPT != 0 {
        return Err(refused(path, "the image is marked corrupt".into(), repair));
    }
    if features & incompatible::DIRTY != 0 {
        return Err(refused(
            path,
            "the image is dirty (lazy refcounts not written back; it was not closed cleanly)"
                .into(),
            repair,
        ));
    }
    let unsupported = |detail: &str| Err(DiskError::unsupported(path, detail.to_owned()));
    if let Some(name) = &header.backing_file {
        return Err(DiskError::unsupported_with_hint(
            path,
            format!("has a backing file {name}; patching images with a backing file is not supported"),
            "make it standalone first: `qemu-img rebase -b '' IMAGE` or `qemu-img convert -O qcow2`",
        ));
    }
    if header.crypt_method != 0 {
        return unsupported("is encrypted; patching encrypted images is not supported");
    }
    if features & incompatible::EXTERNAL_DATA_FILE != 0 {
        return unsupported(
            "keeps its data in an external data file, which patching does not support",
        );
    }
    if features & incompatible::EXTENDED_L2 != 0 {
        return unsupported(
            "uses extended L2 entries (subclusters), which patching does not support",
        );
    }
    if features & !incompatible::KNOWN != 0 {
        return unsupported(&format!(
            "uses unknown incompatible features {:#x}",
            features & !incompatible::KNOWN
        ));
    }
    if header.autoclear_features & autoclear::BITMAPS != 0 {
        return Err(refused(
            path,
            "it has persistent dirty bitmaps, which a write outside QEMU would make stale".into(),
            Some("remove them first (`qemu-img bitmap --remove`)"),
        ));
    }
    let unknown = header.autoclear_features & !(autoclear::BITMAPS | autoclear::DATA_FILE_RAW);
    if unknown != 0 {
        return unsupported(&format!("uses unknown autoclear features {unknown:#x}"));
    }
    Ok(())
}

fn refused(path: &Path, detail: String, hint: Option<&str>) -> DiskError {
    DiskError::Refused {
        path: path.to_owned(),
        detail,
        hint: hint.map(str::to_owned),
    }
}
