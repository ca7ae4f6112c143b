//! `check`: qcow2 metadata consistency, like `qemu-img check` (without repair).
//!
//! Rebuilds every host cluster's refcount from the references to it (header, active and
//! snapshot L1 tables, L2 tables, data and compressed clusters, refcount table and
//! blocks, snapshot table, encryption header, persistent bitmaps), then compares with the
//! stored refcounts. Also flags unaligned and out-of-file offsets, reserved bits, wrong
//! COPIED flags and clusters used as two different things. Memory is bounded: 3 bytes
//! per host cluster of the file ([`MAX_CHECKED_CLUSTERS`]) plus one table at a time.
//!
//! This module orchestrates; `walk` counts mapping tables, `compare` judges refcounts,
//! `claims` holds the computed counts and `report` the findings. It never writes.

mod claims;
mod compare;
mod report;
mod walk;

use std::path::Path;

use self::claims::{Claims, Use};
use self::walk::{Table, Walk};
use super::bitmaps::{visit_bitmap_clusters, BitmapRange};
use super::header::{autoclear, extension};
#[cfg(doc)]
use super::limits::MAX_CHECKED_CLUSTERS;
use super::refcount::{RefcountTable, StoredRefcounts};
use super::snapshot::read_snapshot_table;
use super::Header;
use crate::disk::detect::{detect, Format};
use crate::disk::info::unsupported_format;
use crate::disk::{DiskError, LocalFile, ReadAt, Result};

pub use self::report::{CheckReport, Problem, Severity, Verdict, MAX_LISTED_PROBLEMS};

/// What checking a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedImage {
    /// A raw image: it has no metadata, so there is nothing to check.
    Raw,
    /// A qcow2 image and its report.
    Qcow2(CheckReport),
}

/// Opens `path`, detects its format from its content and checks it.
pub fn check_file(path: &Path) -> Result<CheckedImage> {
    let file = LocalFile::open(path).map_err(|e| DiskError::io("open", path, e))?;
    match detect(&file).map_err(|e| DiskError::io("read", path, e))? {
        Format::Raw => Ok(CheckedImage::Raw),
        Format::Qcow2 => Ok(CheckedImage::Qcow2(check_qcow2(&file, path)?)),
        Format::Unsupported(other) => Err(unsupported_format(path, other.name())),
    }
}

/// Checks the qcow2 image in `source` (`path` names it in messages). Errors mean the
/// check could not run at all (unreadable or structurally invalid header, snapshot table
/// or refcount table); everything else is reported in the [`CheckReport`].
pub fn check_qcow2(source: &dyn ReadAt, path: &Path) -> Result<CheckReport> {
    let header = Header::read(source, path)?;
    let file_size = source.size();
    let cluster = header.cluster_size();
    let table = RefcountTable::read(source, path, &header)?;
    let snapshots = read_snapshot_table(source, path, &header)?;
    let mut claims = Claims::new(&header, file_size, path)?;
    let mut report = CheckReport {
        version: header.version,
        total_clusters: header.size.div_ceil(cluster),
        ..CheckReport::default()
    };

    claims.claim(0, cluster, Use::Header, &mut report);
    {
        let stored = StoredRefcounts::new(source, path, &table);
        let mut walk = Walk::new(source, path, &header, stored, &mut claims, &mut report);
        walk.l1_table(header.l1_table_offset, header.l1_size, Table::Active)?;
        for snapshot in &snapshots.snapshots {
            match snapshot.l1_problem(cluster, file_size) {
                None => {
                    walk.l1_table(snapshot.l1_table_offset, snapshot.l1_size, Table::Snapshot)?
                }
                Some(problem) => walk.report().corruption(|| problem),
            }
        }
    }
    if header.nb_snapshots > 0 {
        claims.claim(
            header.snapshots_offset,
            snapshots.byte_len,
            Use::SnapshotTable,
            &mut report,
        );
    }
    let reftable_len = u64::from(header.refcount_table_clusters) * cluster;
    claims.claim(
        header.refcount_table_offset,
        reftable_len,
        Use::RefcountTable,
        &mut report,
    );
    claim_encryption_header(&header, &mut claims, &mut report);
    if header.version >= 3 && header.autoclear_features & autoclear::BITMAPS != 0 {
        claim_bitmaps(source, path, &header, &mut claims, &mut report)?;
    }
    compare::claim_refcount_blocks(&table, &mut claims, &mut report);
    compare::compare_refcounts(source, path, &table, &claims, &mut report)?;
    Ok(report)
}

/// The LUKS header of an encrypted image lives in clusters named by an extension.
fn claim_encryption_header(header: &Header, claims: &mut Claims, report: &mut CheckReport) {
    let Some(ext) = header
        .extensions
        .iter()
        .find(|ext| ext.kind == extension::FULL_DISK_ENCRYPTION)
    else {
        return;
    };
    if ext.data.len() != 16 {
        report.corruption(|| {
            format!(
                "encryption header extension of {} bytes (expected 16)",
                ext.data.len()
            )
        });
        return;
    }
    let offset = u64::from_be_bytes(ext.data[0..8].try_into().unwrap_or_default());
    let len = u64::from_be_bytes(ext.data[8..16].try_into().unwrap_or_default());
    claims.claim(offset, len, Use::EncryptionHeader, report);
}

/// Counts the bitmap directory, tables and data clusters. A structurally invalid
/// directory is a corruption (as in `qemu-img check`), not a failure of the check.
fn claim_bitmaps(
    source: &dyn ReadAt,
    path: &Path,
    header: &Header,
    claims: &mut Claims,
    report: &mut CheckReport,
) -> Result<()> {
    let cluster = header.cluster_size();
    let result = visit_bitmap_clusters(source, path, header, &mut |range| match range {
        BitmapRange::Directory { offset, len } => {
            claims.claim(offset, len, Use::BitmapDirectory, report);
        }
        BitmapRange::Table { offset, len } => {
            claims.claim(offset, len, Use::BitmapTable, report);
        }
        BitmapRange::Data { offset } => {
            claims.claim(offset, cluster, Use::BitmapData, report);
        }
        BitmapRange::BadEntry { detail } => report.corruption(|| detail),
    });
    match result {
        Err(DiskError::Malformed { detail, .. }) => {
            report.corruption(|| format!("persistent bitmaps: {detail}"));
            Ok(())
        }
        other => other,
    }
}
