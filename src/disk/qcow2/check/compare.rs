//! The last two stages of `check`: counting the refcount blocks themselves, then comparing
//! every stored refcount with the computed one.
//!
//! Owns the verdict per host cluster: stored below computed is a corruption, above is a
//! leak, a cluster used for two different things is a corruption even when the numbers
//! happen to agree, and an unusable refcount block makes its clusters uncheckable. Reads
//! one refcount block at a time; never writes.

use std::path::Path;

use super::claims::{Claims, Use};
use super::report::{CheckReport, Severity};
use crate::disk::qcow2::refcount::{get_refcount, read_block, RefcountTable};
use crate::disk::{ReadAt, Result};

/// Counts each refcount block the table points at, after every other reference was
/// counted, so a block sharing its cluster with anything else shows a count above one.
pub fn claim_refcount_blocks(table: &RefcountTable, claims: &mut Claims, report: &mut CheckReport) {
    let cluster_size = table.geometry().cluster_size();
    let file_clusters = claims.file_clusters();
    for index in 0..table.len() {
        let Some((offset, reserved)) = table.entry(index) else {
            break;
        };
        if reserved != 0 {
            report.corruption(|| {
                format!("refcount table entry {index} has reserved bits set ({reserved:#x})")
            });
        }
        if offset == 0 {
            continue;
        }
        if !offset.is_multiple_of(cluster_size) {
            report.corruption(|| {
                format!("refcount block {index} at {offset:#x} is not cluster-aligned; the refcount table entry is corrupted")
            });
            continue;
        }
        let cluster = offset / cluster_size;
        if cluster >= file_clusters {
            report.corruption(|| {
                format!("refcount block {index} at {offset:#x} is outside the file")
            });
            continue;
        }
        claims.claim(offset, cluster_size, Use::RefcountBlock, report);
        let count = claims.count(cluster);
        if count != 1 {
            report.corruption(|| {
                format!(
                    "refcount block {index} at {offset:#x} is referenced {count} times{}",
                    overlap_note(claims, cluster)
                )
            });
        }
    }
}

/// How the stored refcounts of one refcount block's range can be had.
enum Stored {
    /// No block allocated: every refcount is 0.
    Zeros,
    Block(Vec<u8>),
    /// The block offset is unusable, for this reason.
    Unusable(String),
}

/// Compares the stored refcount of every tracked host cluster with the computed one and
/// sets the report's image end offset.
pub fn compare_refcounts(
    source: &dyn ReadAt,
    path: &Path,
    table: &RefcountTable,
    claims: &Claims,
    report: &mut CheckReport,
) -> Result<()> {
    let geometry = table.geometry();
    let cluster_size = geometry.cluster_size();
    let per_block = geometry.entries_per_block();
    let total = claims.tracked_clusters();
    let mut highest = 0u64;
    for block_index in 0..total.div_ceil(per_block) {
        let first = block_index * per_block;
        let stored = match table.block_for(first) {
            Ok(None) => Stored::Zeros,
            Ok(Some((offset, _))) => Stored::Block(read_block(source, path, offset, cluster_size)?),
            Err(reason) => Stored::Unusable(reason),
        };
        for cluster in first..(first + per_block).min(total) {
            let computed = claims.count(cluster);
            let stored = match &stored {
                Stored::Zeros => 0,
                Stored::Block(block) => {
                    get_refcount(block, (cluster - first) as usize, geometry.order())
                }
                Stored::Unusable(reason) => {
                    report.record(Severity::CheckError, || {
                        format!("cannot get the refcount of cluster {cluster}: {reason}")
                    });
                    continue;
                }
            };
            if stored > 0 || computed > 0 {
                highest = cluster;
            }
            judge(cluster, stored, computed, claims, report);
        }
    }
    report.image_end_offset = (highest + 1) * cluster_size;
    Ok(())
}

fn judge(cluster: u64, stored: u64, computed: u64, claims: &Claims, report: &mut CheckReport) {
    let what = || {
        claims
            .use_of(cluster)
            .map_or(String::new(), |u| format!(" ({})", u.name()))
    };
    if stored < computed {
        report.corruption(|| {
            format!(
                "cluster {cluster}{} refcount={stored} reference={computed}{}",
                what(),
                overlap_note(claims, cluster)
            )
        });
    } else if stored > computed {
        report.record(Severity::Leak, || {
            format!(
                "leaked cluster {cluster}{} refcount={stored} reference={computed}",
                what()
            )
        });
    } else if claims.overlapped(cluster) {
        report.corruption(|| {
            format!(
                "cluster {cluster} refcount={stored}{}",
                overlap_note(claims, cluster)
            )
        });
    }
}

/// ", used as both X and Y" for an overlapped cluster, empty otherwise.
fn overlap_note(claims: &Claims, cluster: u64) -> String {
    if !claims.overlapped(cluster) {
        return String::new();
    }
    match claims.overlap(cluster) {
        Some(o) => format!(
            ": overlapping metadata, used as both {} and {}",
            o.first.name(),
            o.second.name()
        ),
        None => ": overlapping metadata, used for more than one purpose".to_owned(),
    }
}
