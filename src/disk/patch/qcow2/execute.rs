//! Carrying out a qcow2 patch plan, in qcow2's crash-safe order.
//!
//! 1. Guest data and metadata nothing points at yet: new clusters (old content read and
//!    inflated here, so a damaged compressed cluster stops the patch before anything
//!    visible changed), filled preallocated clusters, new and copied L2 tables, new
//!    refcount blocks, a new refcount table; then, last, the in-place overwrites (the
//!    first writes a reader of the image can see); sync.
//! 2. Refcounts: the new clusters' refcounts in existing blocks, then the new blocks
//!    linked into the refcount table, or the header switched to the new table in one
//!    12-byte write; sync.
//! 3. References: changed L2 entries, then L1 entries of new and copied tables; sync.
//! 4. Releases: refcounts of what the old mappings held (clusters a snapshot shares,
//!    compressed clusters, copied L2 tables, the old refcount table) decremented; sync.
//!
//! A crash after 1 leaves unreferenced clusters with refcount 0; after 2 or 3, leaked
//! clusters; each guest cluster reads old or new. Must not decide anything: the plan did.

use std::path::Path;

use super::alloc::RefcountPlan;
use super::plan::{Action, ClusterStep, OldContent, Plan, TableKind, TableStep};
use crate::disk::patch::writes::ClusterPatch;
use crate::disk::patch::PatchReport;
use crate::disk::qcow2::amend::writes::ImageWriter;
use crate::disk::qcow2::entries::L1Entry;
use crate::disk::qcow2::layout::read_l2_table;
use crate::disk::qcow2::refcount::{read_block, set_refcount, RefcountTable};
use crate::disk::qcow2::{Header, Qcow2Image};
use crate::disk::{DiskError, LocalFile, ReadAt, Result, VirtualDisk};

/// The open image a plan is carried out on.
pub struct Target<'a, 'w> {
    pub writer: &'a mut ImageWriter<'w>,
    /// The file as it was before the patch (its recorded size is the old one).
    pub source: &'a dyn ReadAt,
    pub reader: &'a Qcow2Image,
    pub path: &'a Path,
    pub header: &'a Header,
    pub table: &'a RefcountTable,
}

/// Carries out `plan` and `refcounts`, filling in `report`.
pub fn execute(
    target: &mut Target<'_, '_>,
    plan: &Plan<'_>,
    refcounts: &RefcountPlan,
    report: &mut PatchReport,
) -> Result<()> {
    let in_place = |step: &&ClusterStep<'_>| matches!(step.action, Action::InPlace { .. });
    for step in plan.clusters.iter().filter(|step| !in_place(step)) {
        write_cluster(target, step, report)?;
    }
    for table in &plan.tables {
        write_unlinked_table(target, table, report)?;
    }
    write_new_refcount_structures(target, refcounts)?;
    for step in plan.clusters.iter().filter(in_place) {
        write_cluster(target, step, report)?;
    }
    target.writer.sync()?;
    write_refcounts(target, refcounts)?;
    target.writer.sync()?;
    for table in &plan.tables {
        link_table(target, table)?;
    }
    target.writer.sync()?;
    release(target, plan, refcounts, report)
}

fn write_cluster(
    target: &mut Target<'_, '_>,
    step: &ClusterStep<'_>,
    report: &mut PatchReport,
) -> Result<()> {
    let header = target.header;
    let cluster_size = header.cluster_size() as usize;
    let patch = &step.patch;
    match step.action {
        Action::InPlace { host } => {
            let (start, end) = patch.span();
            let mut buf = vec![0u8; end - start];
            if !patch.covers(start, end) {
                target
                    .source
                    .read_exact_at(&mut buf, host + start as u64)
                    .map_err(|e| DiskError::io("read", target.path, e))?;
            }
            patch.lay_over(&mut buf, start);
            target
                .writer
                .write_at(&buf, host + start as u64, "guest data")?;
            report.clusters_in_place += 1;
        }
        Action::FillPreallocated { host } => {
            let mut buf = vec![0u8; cluster_size];
            patch.lay_over(&mut buf, 0);
            target.writer.write_at(&buf, host, "guest data")?;
            report.preallocated_filled += 1;
        }
        Action::Allocate { cluster, old } => {
            let mut buf = vec![0u8; cluster_size];
            if old != OldContent::Zeros {
                read_old_content(target.reader, header, patch, &mut buf)?;
            }
            patch.lay_over(&mut buf, 0);
            target
                .writer
                .write_at(&buf, cluster << header.cluster_bits, "guest data")?;
            report.clusters_allocated += 1;
        }
    }
    Ok(())
}

/// Fills `buf` (one cluster) with the guest cluster's current content, unless the patch
/// overwrites all of it.
pub fn read_old_content(
    reader: &Qcow2Image,
    header: &Header,
    patch: &ClusterPatch<'_>,
    buf: &mut [u8],
) -> Result<()> {
    let guest_start = patch.cluster << header.cluster_bits;
    // The last cluster of a disk whose size is not a multiple of the cluster size is
    // only partly inside the disk.
    let inside = (header.size - guest_start).min(buf.len() as u64) as usize;
    if patch.covers(0, inside) {
        return Ok(());
    }
    reader.read_at(&mut buf[..inside], guest_start)
}

/// Writes a new or copied L2 table to its new cluster (nothing points at it yet).
fn write_unlinked_table(
    target: &mut Target<'_, '_>,
    step: &TableStep,
    report: &mut PatchReport,
) -> Result<()> {
    let header = target.header;
    let (mut table, cluster) = match step.kind {
        TableKind::InPlace { .. } => return Ok(()),
        TableKind::New { cluster } => {
            report.l2_tables_allocated += 1;
            (vec![0u64; header.l2_entries() as usize], cluster)
        }
        TableKind::Copy { old, cluster } => {
            report.l2_tables_copied += 1;
            let table = read_l2_table(target.source, target.path, header, old)?;
            (table, cluster)
        }
    };
    set_entries(&mut table, &step.entries);
    target.writer.write_at(
        &to_bytes(&table),
        cluster << header.cluster_bits,
        "L2 table",
    )
}

fn write_new_refcount_structures(target: &mut Target<'_, '_>, plan: &RefcountPlan) -> Result<()> {
    let geometry = target.table.geometry();
    let per_block = geometry.entries_per_block();
    let bits = target.header.cluster_bits;
    for (&index, &block_cluster) in &plan.new_blocks {
        let mut block = vec![0u8; geometry.cluster_size() as usize];
        let first = index * per_block;
        for &cluster in in_range(&plan.allocated, first, first + per_block) {
            set_refcount(&mut block, (cluster - first) as usize, geometry.order(), 1);
        }
        target
            .writer
            .write_at(&block, block_cluster << bits, "refcount block")?;
    }
    if let Some(new) = plan.new_table {
        let entries = new.clusters * geometry.cluster_size() / 8;
        let mut table: Vec<u64> = (0..entries)
            .map(|index| target.table.entry(index).map_or(0, |(offset, _)| offset))
            .collect();
        for (&index, &block_cluster) in &plan.new_blocks {
            if let Some(entry) = table.get_mut(index as usize) {
                *entry = block_cluster << bits;
            }
        }
        target.writer.write_at(
            &to_bytes(&table),
            new.first_cluster << bits,
            "refcount table",
        )?;
    }
    Ok(())
}

/// Sets the new clusters' refcounts in existing blocks, then links the new blocks.
fn write_refcounts(target: &mut Target<'_, '_>, plan: &RefcountPlan) -> Result<()> {
    let geometry = target.table.geometry();
    let per_block = geometry.entries_per_block();
    let bits = target.header.cluster_bits;
    let mut rest = &plan.allocated[..];
    while let Some(&first) = rest.first() {
        let index = first / per_block;
        let in_block = in_range(rest, index * per_block, (index + 1) * per_block);
        rest = &rest[in_block.len()..];
        if plan.new_blocks.contains_key(&index) {
            continue;
        }
        let Ok(Some((block_offset, _))) = target.table.block_for(first) else {
            return Err(DiskError::malformed(
                target.path,
                "qcow2",
                format!("refcount block {index} vanished while patching"),
            ));
        };
        let old = read_block(
            target.source,
            target.path,
            block_offset,
            geometry.cluster_size(),
        )?;
        let mut block = old.clone();
        for &cluster in in_block {
            set_refcount(
                &mut block,
                (cluster % per_block) as usize,
                geometry.order(),
                1,
            );
        }
        target
            .writer
            .write_changes(&old, &block, block_offset, "refcount block")?;
    }
    if let Some(new) = plan.new_table {
        let mut fields = [0u8; 12];
        fields[..8].copy_from_slice(&(new.first_cluster << bits).to_be_bytes());
        let clusters = u32::try_from(new.clusters).map_err(|_| {
            DiskError::InvalidRequest("refcount table cluster count overflows".to_owned())
        })?;
        fields[8..].copy_from_slice(&clusters.to_be_bytes());
        return target
            .writer
            .write_at(&fields, 48, "header (refcount table)");
    }
    for (&index, &block_cluster) in &plan.new_blocks {
        let at = target.header.refcount_table_offset + index * 8;
        target.writer.write_at(
            &(block_cluster << bits).to_be_bytes(),
            at,
            "refcount table entry",
        )?;
    }
    Ok(())
}

/// Points the image at the new entries: in-place L2 entries, L1 entries of new tables.
fn link_table(target: &mut Target<'_, '_>, step: &TableStep) -> Result<()> {
    let header = target.header;
    let new_cluster = match step.kind {
        TableKind::InPlace { offset } => {
            let old = read_l2_table(target.source, target.path, header, offset)?;
            let mut table = old.clone();
            set_entries(&mut table, &step.entries);
            return target.writer.write_changes(
                &to_bytes(&old),
                &to_bytes(&table),
                offset,
                "L2 table",
            );
        }
        TableKind::New { cluster } | TableKind::Copy { cluster, .. } => cluster,
    };
    let entry = L1Entry::encode(new_cluster << header.cluster_bits, true);
    target.writer.write_at(
        &entry.to_be_bytes(),
        header.l1_table_offset + step.l1_index * 8,
        "L1 entry",
    )
}

/// Drops the references the old mappings held, with the refcount table as it is now.
fn release(
    target: &mut Target<'_, '_>,
    plan: &Plan<'_>,
    refcounts: &RefcountPlan,
    report: &mut PatchReport,
) -> Result<()> {
    let mut decrements: Vec<(u64, u64)> = plan.releases.iter().map(|(&c, &by)| (c, by)).collect();
    if refcounts.new_table.is_some() {
        let header = target.header;
        let first = header.refcount_table_offset >> header.cluster_bits;
        decrements
            .extend((first..first + u64::from(header.refcount_table_clusters)).map(|c| (c, 1)));
    }
    if decrements.is_empty() {
        return Ok(());
    }
    // Reopened: the file grew and the refcount table may have moved.
    let now = LocalFile::open(target.path).map_err(|e| DiskError::io("open", target.path, e))?;
    let header = Header::read(&now, target.path)?;
    let table = RefcountTable::read(&now, target.path, &header)?;
    report.clusters_freed = target
        .writer
        .apply_decrements(&now, &table, &mut decrements)?;
    Ok(())
}

fn set_entries(table: &mut [u64], entries: &[(usize, u64)]) {
    for &(index, raw) in entries {
        if let Some(entry) = table.get_mut(index) {
            *entry = raw;
        }
    }
}

fn to_bytes(table: &[u64]) -> Vec<u8> {
    table.iter().flat_map(|entry| entry.to_be_bytes()).collect()
}

/// The part of sorted `clusters` in `[start, end)`.
fn in_range(clusters: &[u64], start: u64, end: u64) -> &[u64] {
    let from = clusters.partition_point(|&c| c < start);
    let to = clusters.partition_point(|&c| c < end);
    &clusters[from..to]
}
