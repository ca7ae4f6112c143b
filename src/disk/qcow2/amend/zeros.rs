//! Finding and expanding v3 zero clusters for a downgrade to compat 0.10.
//!
//! Owns the scan of every L2 table reachable from the active and snapshot L1 tables
//! (counting zero and compressed entries) and the rewrite that turns each zero entry
//! into an unallocated one. That keeps the guest content identical only when there is
//! no backing file, which the caller guarantees. A preallocated zero cluster's host
//! cluster loses one reference per L1 entry that reaches its L2 table; those
//! decrements are applied after the L2 writes are durable, so a crash in between only
//! leaks clusters. Never touches the header.

use std::collections::HashMap;
use std::path::Path;

use super::writes::{ImageWriter, DECREMENT_BATCH};
use crate::disk::qcow2::entries::{L1Entry, L2Entry, L2Mapping};
use crate::disk::qcow2::layout::{read_l1_table, read_l2_table};
use crate::disk::qcow2::refcount::{read_be_u64s, RefcountTable};
use crate::disk::qcow2::snapshot::SnapshotTable;
use crate::disk::qcow2::Header;
use crate::disk::{ReadAt, Result};

/// What the scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// L2 tables holding zero entries: (host offset, L1 entries pointing at it), by offset.
    pub tables_with_zeros: Vec<(u64, u64)>,
    /// Zero entries, counted once per L2 table.
    pub zero_entries: u64,
    /// Compressed entries, counted once per L2 table.
    pub compressed_entries: u64,
}

/// What the expansion changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Expansion {
    pub zero_clusters: u64,
    pub tables_rewritten: u64,
    pub preallocated_clusters_freed: u64,
}

/// Scans every L2 table reachable from the active L1 table and the snapshots' (whose
/// positions `check` has already validated).
pub fn scan(
    source: &dyn ReadAt,
    path: &Path,
    header: &Header,
    snapshots: &SnapshotTable,
) -> Result<Scan> {
    let mut refs: HashMap<u64, u64> = HashMap::new();
    let mut count_l2_refs = |l1: Vec<u64>| {
        for raw in l1 {
            let l2_offset = L1Entry::decode(raw).l2_offset;
            if l2_offset != 0 {
                *refs.entry(l2_offset).or_default() += 1;
            }
        }
    };
    // One L1 table in memory at a time.
    count_l2_refs(read_l1_table(source, path, header)?);
    for snapshot in &snapshots.snapshots {
        let entries = u64::from(snapshot.l1_size);
        let offset = snapshot.l1_table_offset;
        count_l2_refs(read_be_u64s(
            source,
            path,
            offset,
            entries,
            "snapshot L1 table",
        )?);
    }
    let mut tables: Vec<(u64, u64)> = refs.into_iter().collect();
    tables.sort_unstable();
    let mut scan = Scan::default();
    for (offset, count) in tables {
        let table = read_l2_table(source, path, header, offset)?;
        let mut zeros = 0;
        for &raw in &table {
            match decode(raw, header).mapping {
                L2Mapping::Zero { .. } => zeros += 1,
                L2Mapping::Compressed { .. } => scan.compressed_entries += 1,
                _ => {}
            }
        }
        if zeros > 0 {
            scan.zero_entries += zeros;
            scan.tables_with_zeros.push((offset, count));
        }
    }
    Ok(scan)
}

/// Rewrites each L2 table of `tables` (from [`scan`]) with its zero entries made
/// unallocated, one write per table spanning the changed entries, then frees the preallocated host clusters.
/// Every write leaves a valid v3 image with the same content (no backing file).
pub fn expand(
    writer: &mut ImageWriter<'_>,
    source: &dyn ReadAt,
    path: &Path,
    header: &Header,
    refcounts: &RefcountTable,
    tables: &[(u64, u64)],
) -> Result<Expansion> {
    let mut done = Expansion::default();
    let mut decrements: Vec<(u64, u64)> = Vec::new();
    for &(offset, l1_refs) in tables {
        let old = read_l2_table(source, path, header, offset)?;
        let mut table = old.clone();
        let mut changed = false;
        for raw in table.iter_mut() {
            if let L2Mapping::Zero { preallocated } = decode(*raw, header).mapping {
                if let Some(host) = preallocated {
                    decrements.push((host >> header.cluster_bits, l1_refs));
                }
                *raw = 0;
                done.zero_clusters += 1;
                changed = true;
            }
        }
        if !changed {
            continue;
        }
        let bytes = |t: &[u64]| -> Vec<u8> { t.iter().flat_map(|e| e.to_be_bytes()).collect() };
        writer.write_changes(&bytes(&old), &bytes(&table), offset, "L2 table")?;
        done.tables_rewritten += 1;
        if decrements.len() >= DECREMENT_BATCH {
            writer.sync()?;
            done.preallocated_clusters_freed +=
                writer.apply_decrements(source, refcounts, &mut decrements)?;
        }
    }
    writer.sync()?;
    if !decrements.is_empty() {
        done.preallocated_clusters_freed +=
            writer.apply_decrements(source, refcounts, &mut decrements)?;
    }
    Ok(done)
}

fn decode(raw: u64, header: &Header) -> L2Entry {
    L2Entry::decode(raw, header.cluster_bits, header.version)
}
