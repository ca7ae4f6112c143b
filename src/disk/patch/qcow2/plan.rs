//! The plan of a qcow2 patch: what happens to each guest cluster and each L2 table,
//! which host clusters are allocated and which references are released afterwards.
//!
//! Owns the decisions, taken from the stored refcounts (not from the COPIED flags):
//! a data cluster with refcount 1 is overwritten in place; a preallocated zero cluster
//! with refcount 1 is filled in its reserved cluster; anything else (unallocated, zero,
//! compressed, or shared with a snapshot) gets a fresh cluster. An L2 table with
//! refcount 1 is changed in place; a missing one is created; a shared one is copied.
//! Reads metadata only (one L2 table at a time); never writes.

use std::collections::BTreeMap;
use std::path::Path;

use super::alloc::Allocator;
use crate::disk::patch::writes::ClusterPatch;
use crate::disk::qcow2::entries::{L2Entry, L2Mapping};
use crate::disk::qcow2::layout::{l2_offset_from_l1, read_l1_table, read_l2_table};
use crate::disk::qcow2::refcount::StoredRefcounts;
use crate::disk::qcow2::Header;
use crate::disk::{DiskError, ReadAt, Result};

/// What happens to one guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Overwrite the written bytes in the cluster's own host cluster (byte offset).
    InPlace { host: u64 },
    /// Write the whole cluster (zeros and the new bytes) into the host cluster a
    /// preallocated zero cluster reserves, then point the L2 entry at it as data.
    FillPreallocated { host: u64 },
    /// Write the whole cluster into a new host cluster (index), over its old content.
    Allocate { cluster: u64, old: OldContent },
}

/// Where the old content of a cluster given a new host cluster comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldContent {
    /// Unallocated or zero: nothing to read.
    Zeros,
    /// A data cluster (shared with a snapshot).
    Data,
    /// A compressed cluster, to be inflated.
    Compressed,
}

/// One guest cluster's patch and what to do with it.
#[derive(Debug)]
pub struct ClusterStep<'a> {
    pub patch: ClusterPatch<'a>,
    pub action: Action,
}

/// How an L2 table changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Entries rewritten in the table at `offset`.
    InPlace { offset: u64 },
    /// A new table in host cluster `cluster`, all other entries unallocated.
    New { cluster: u64 },
    /// A copy of the shared table at `old` in host cluster `cluster`.
    Copy { old: u64, cluster: u64 },
}

/// One L2 table's changes: (index in the table, new raw entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStep {
    pub l1_index: u64,
    pub kind: TableKind,
    pub entries: Vec<(usize, u64)>,
}

/// Everything the patch changes, before refcount structures are planned.
#[derive(Debug)]
pub struct Plan<'a> {
    pub clusters: Vec<ClusterStep<'a>>,
    pub tables: Vec<TableStep>,
    /// Host clusters (index) taken from the allocator, in order.
    pub allocated: Vec<u64>,
    /// References released once the new mappings are in place: cluster -> amount.
    pub releases: BTreeMap<u64, u64>,
}

/// The image being planned against.
pub struct Context<'a> {
    pub source: &'a dyn ReadAt,
    pub path: &'a Path,
    pub header: &'a Header,
}

/// Plans `patches` (sorted by guest cluster) against the image.
pub fn plan<'a>(
    ctx: &Context<'_>,
    patches: Vec<ClusterPatch<'a>>,
    stored: &mut StoredRefcounts<'_>,
    alloc: &mut Allocator,
) -> Result<Plan<'a>> {
    let header = ctx.header;
    let l1 = read_l1_table(ctx.source, ctx.path, header)?;
    let per_table = header.l2_entries();
    let mut plan = Plan {
        clusters: Vec::with_capacity(patches.len()),
        tables: Vec::new(),
        allocated: Vec::new(),
        releases: BTreeMap::new(),
    };
    let mut patches = patches.into_iter().peekable();
    while let Some(first) = patches.next() {
        let l1_index = first.cluster / per_table;
        let mut group = vec![first];
        while let Some(next) = patches.next_if(|p| p.cluster / per_table == l1_index) {
            group.push(next);
        }
        plan_table(ctx, &l1, l1_index, group, stored, alloc, &mut plan)?;
    }
    for (&cluster, &by) in &plan.releases {
        let refcount = refcount_of(ctx, stored, cluster)?;
        if refcount < by {
            return Err(bad(
                ctx,
                format!("host cluster {cluster} has refcount {refcount} but {by} references to it"),
            ));
        }
    }
    Ok(plan)
}

fn plan_table<'a>(
    ctx: &Context<'_>,
    l1: &[u64],
    l1_index: u64,
    group: Vec<ClusterPatch<'a>>,
    stored: &mut StoredRefcounts<'_>,
    alloc: &mut Allocator,
    plan: &mut Plan<'a>,
) -> Result<()> {
    let header = ctx.header;
    let bits = header.cluster_bits;
    let index = usize::try_from(l1_index).ok().filter(|&i| i < l1.len());
    let Some(index) = index else {
        return Err(bad(
            ctx,
            format!("L1 index {l1_index} outside the L1 table"),
        ));
    };
    let l2_offset = l2_offset_from_l1(ctx.path, header, ctx.source.size(), index, l1[index])?;
    let (kind, old_table) = match l2_offset {
        None => {
            let cluster = take(ctx, alloc, stored, plan)?;
            (TableKind::New { cluster }, None)
        }
        Some(offset) => {
            let table = read_l2_table(ctx.source, ctx.path, header, offset)?;
            match refcount_of(ctx, stored, offset >> bits)? {
                0 => return Err(bad(ctx, format!("L2 table at {offset:#x} has refcount 0"))),
                1 => (TableKind::InPlace { offset }, Some(table)),
                _ => {
                    *plan.releases.entry(offset >> bits).or_default() += 1;
                    let cluster = take(ctx, alloc, stored, plan)?;
                    (
                        TableKind::Copy {
                            old: offset,
                            cluster,
                        },
                        Some(table),
                    )
                }
            }
        }
    };
    let shared_table = matches!(kind, TableKind::Copy { .. });
    let mut entries = Vec::new();
    for patch in group {
        let l2_index = (patch.cluster % header.l2_entries()) as usize;
        let mapping = match &old_table {
            None => L2Mapping::Unallocated,
            Some(table) => {
                let raw = table.get(l2_index).copied().unwrap_or(0);
                L2Entry::decode(raw, bits, header.version).mapping
            }
        };
        let action = match mapping {
            L2Mapping::Standard { host_offset, .. } => {
                own_or_copy(ctx, stored, plan, host_offset, shared_table)?
                    .map(|host| Action::InPlace { host })
            }
            L2Mapping::Zero {
                preallocated: Some(host_offset),
            } => own_or_copy(ctx, stored, plan, host_offset, shared_table)?
                .map(|host| Action::FillPreallocated { host }),
            L2Mapping::Zero { preallocated: None } | L2Mapping::Unallocated => None,
            L2Mapping::Compressed {
                host_offset,
                max_len,
            } => {
                // Every host cluster the compressed sectors touch holds one reference,
                // as `qemu-img check` counts them.
                let start = host_offset & !511;
                let end = start
                    .checked_add(max_len + (host_offset & 511))
                    .ok_or_else(|| {
                        bad(ctx, "compressed cluster past the addressable range".into())
                    })?;
                for cluster in start >> bits..=(end - 1) >> bits {
                    *plan.releases.entry(cluster).or_default() += 1;
                }
                None
            }
        };
        let action = match action {
            Some(action) => action,
            None => {
                let old = match mapping {
                    L2Mapping::Standard { .. } => OldContent::Data,
                    L2Mapping::Compressed { .. } => OldContent::Compressed,
                    L2Mapping::Zero { .. } | L2Mapping::Unallocated => OldContent::Zeros,
                };
                let cluster = take(ctx, alloc, stored, plan)?;
                Action::Allocate { cluster, old }
            }
        };
        match action {
            Action::InPlace { .. } => {}
            Action::FillPreallocated { host } => {
                entries.push((l2_index, L2Entry::encode_standard(host, true)))
            }
            Action::Allocate { cluster, .. } => {
                entries.push((l2_index, L2Entry::encode_standard(cluster << bits, true)))
            }
        }
        plan.clusters.push(ClusterStep { patch, action });
    }
    if !entries.is_empty() || !matches!(kind, TableKind::InPlace { .. }) {
        plan.tables.push(TableStep {
            l1_index,
            kind,
            entries,
        });
    }
    Ok(())
}

/// `Some(host_offset)` when the host cluster may be written in place (refcount 1 in a
/// table no snapshot shares); `None` when the guest cluster needs a new one, the old one
/// then losing this reference.
fn own_or_copy(
    ctx: &Context<'_>,
    stored: &mut StoredRefcounts<'_>,
    plan: &mut Plan<'_>,
    host_offset: u64,
    shared_table: bool,
) -> Result<Option<u64>> {
    let bits = ctx.header.cluster_bits;
    if !host_offset.is_multiple_of(1 << bits) {
        return Err(bad(
            ctx,
            format!("host offset {host_offset:#x} is not cluster-aligned"),
        ));
    }
    if host_offset
        .checked_add(1 << bits)
        .is_none_or(|end| end > ctx.source.size())
    {
        return Err(bad(
            ctx,
            format!("host cluster at {host_offset:#x} lies past the end of the file"),
        ));
    }
    let refcount = refcount_of(ctx, stored, host_offset >> bits)?;
    match (refcount, shared_table) {
        (0, _) => Err(bad(ctx, format!("host cluster at {host_offset:#x} is in use but has refcount 0"))),
        (1, true) => Err(bad(
            ctx,
            format!("host cluster at {host_offset:#x} has refcount 1 but a shared L2 table refers to it"),
        )),
        (1, false) => Ok(Some(host_offset)),
        _ => {
            *plan.releases.entry(host_offset >> bits).or_default() += 1;
            Ok(None)
        }
    }
}

fn take(
    ctx: &Context<'_>,
    alloc: &mut Allocator,
    stored: &mut StoredRefcounts<'_>,
    plan: &mut Plan<'_>,
) -> Result<u64> {
    let cluster = alloc.take(stored, ctx.path)?;
    plan.allocated.push(cluster);
    Ok(cluster)
}

fn refcount_of(ctx: &Context<'_>, stored: &mut StoredRefcounts<'_>, cluster: u64) -> Result<u64> {
    stored.get(cluster)?.map_err(|reason| bad(ctx, reason))
}

fn bad(ctx: &Context<'_>, detail: String) -> DiskError {
    DiskError::malformed(ctx.path, "qcow2", detail)
}
