//! Layout planning for a qcow2 image whose allocation map is known before any data is
//! written: where the header, refcount table, refcount blocks, L1 table, L2 tables and
//! data clusters go, and the bytes of every metadata cluster.
//!
//! Pure computation: no I/O happens here, so the same plan drives a seekable file, a
//! pipe or an HTTP upload. The layout is dense (every host cluster up to the end of the
//! file is used exactly once), which makes every refcount 1 and lets each metadata
//! cluster be generated on demand in bounded memory instead of being held whole.

use std::ops::Range;
use std::sync::Arc;

use super::{checked_table_clusters, Qcow2Format};
use crate::disk::qcow2::entries::{L1Entry, L2Entry};
use crate::disk::qcow2::limits::{MAX_L1_BYTES, MAX_REFCOUNT_TABLE_BYTES};
use crate::disk::{DiskError, Result};

/// The guest clusters that will hold data, as ascending, disjoint, non-adjacent runs of
/// cluster indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationMap {
    runs: Vec<Range<u64>>,
    clusters: u64,
}

impl AllocationMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the clusters `run` (non-empty, strictly after everything added so far),
    /// merging it with the previous run when they touch.
    pub fn push_run(&mut self, run: Range<u64>) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        match self.runs.last_mut() {
            Some(last) if run.start < last.end => {
                return Err(DiskError::InvalidRequest(format!(
                    "allocation map: cluster run {run:?} is not after {last:?}"
                )))
            }
            Some(last) if run.start == last.end => last.end = run.end,
            _ => self.runs.push(run.clone()),
        }
        self.clusters += run.end - run.start;
        Ok(())
    }

    /// Appends one more map (whose runs all come after this one's).
    pub fn extend(&mut self, other: AllocationMap) -> Result<()> {
        other
            .runs
            .into_iter()
            .try_for_each(|run| self.push_run(run))
    }

    /// The runs, in guest order.
    pub fn runs(&self) -> &[Range<u64>] {
        &self.runs
    }

    /// How many clusters are allocated.
    pub fn allocated_clusters(&self) -> u64 {
        self.clusters
    }

    /// Indices of the L1 entries that need an L2 table, ascending, each once.
    fn l1_indices(&self, entries_per_l2: u64) -> impl Iterator<Item = u64> + '_ {
        let mut last: Option<u64> = None;
        self.runs.iter().flat_map(move |run| {
            let first = run.start / entries_per_l2;
            let first = match last {
                Some(seen) if seen >= first => seen + 1,
                _ => first,
            };
            let end = (run.end - 1) / entries_per_l2 + 1;
            if end > first {
                last = Some(end - 1);
            }
            first..end
        })
    }
}

/// Where everything goes in an image planned from an [`AllocationMap`]:
/// header, refcount table, refcount blocks, L1 table, L2 tables, then the data clusters
/// in guest order. Offsets are in bytes, counts in clusters.
#[derive(Debug, Clone)]
pub struct Layout {
    pub format: Qcow2Format,
    pub virtual_size: u64,
    pub l1_entries: u64,
    pub reftable_offset: u64,
    pub reftable_clusters: u64,
    pub refblocks_offset: u64,
    pub refblocks: u64,
    pub l1_offset: u64,
    pub l1_clusters: u64,
    pub l2_offset: u64,
    pub l2_tables: u64,
    pub data_offset: u64,
    pub total_clusters: u64,
    map: Arc<AllocationMap>,
}

impl Layout {
    /// Plans the image. Fails when `map` names a cluster beyond the virtual size or the
    /// image would exceed QEMU's limits on the L1 or refcount table.
    pub fn plan(format: Qcow2Format, virtual_size: u64, map: AllocationMap) -> Result<Self> {
        let cluster = format.cluster_size();
        let guest_clusters = virtual_size.div_ceil(cluster);
        if map.runs.last().is_some_and(|run| run.end > guest_clusters) {
            return Err(DiskError::InvalidRequest(format!(
                "allocation map reaches past the {guest_clusters} clusters of the disk"
            )));
        }
        let l1_entries = format.l1_entries(virtual_size)?;
        let l1_clusters = checked_table_clusters(l1_entries, cluster, MAX_L1_BYTES, "L1")?;
        let l2_tables = map.l1_indices(format.entries_per_l2()).count() as u64;
        // Refcount blocks and the refcount table count themselves: iterate to the fixed
        // point (it grows monotonically and settles within a few rounds).
        let fixed = 1 + l1_clusters + l2_tables + map.allocated_clusters();
        let (mut refblocks, mut reftable_clusters) = (0u64, 0u64);
        loop {
            let total = fixed + refblocks + reftable_clusters;
            let blocks = total.div_ceil(format.refcounts_per_block());
            let table =
                checked_table_clusters(blocks, cluster, MAX_REFCOUNT_TABLE_BYTES, "refcount")?;
            if (blocks, table) == (refblocks, reftable_clusters) {
                break;
            }
            (refblocks, reftable_clusters) = (blocks, table);
        }
        let reftable_offset = cluster;
        let refblocks_offset = reftable_offset + reftable_clusters * cluster;
        let l1_offset = refblocks_offset + refblocks * cluster;
        let l2_offset = l1_offset + l1_clusters * cluster;
        let data_offset = l2_offset + l2_tables * cluster;
        Ok(Self {
            format,
            virtual_size,
            l1_entries,
            reftable_offset,
            reftable_clusters,
            refblocks_offset,
            refblocks,
            l1_offset,
            l1_clusters,
            l2_offset,
            l2_tables,
            data_offset,
            total_clusters: fixed + refblocks + reftable_clusters,
            map: Arc::new(map),
        })
    }

    /// The allocation map the layout was planned from.
    pub fn map(&self) -> &AllocationMap {
        &self.map
    }

    /// The allocation map, shared: lets a reader thread walk the runs while the writer
    /// owns the layout, without copying a map that can be large.
    pub fn shared_map(&self) -> Arc<AllocationMap> {
        Arc::clone(&self.map)
    }

    /// Size of the finished file in bytes.
    pub fn file_size(&self) -> u64 {
        self.total_clusters * self.format.cluster_size()
    }

    /// Number of metadata clusters, which precede the data.
    pub fn metadata_clusters(&self) -> u64 {
        self.data_offset / self.format.cluster_size()
    }

    /// The header cluster.
    pub fn header_cluster(&self) -> Result<Vec<u8>> {
        let l1_offset = if self.l1_entries == 0 {
            0
        } else {
            self.l1_offset
        };
        self.format.header_cluster(
            self.virtual_size,
            self.l1_entries,
            l1_offset,
            self.reftable_offset,
            self.reftable_clusters,
        )
    }

    /// Calls `emit` with every metadata cluster in file order, from the header up to the
    /// first data cluster, reusing one cluster-sized buffer. Data clusters follow in
    /// guest order.
    pub fn emit_metadata(&self, emit: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut cursor = RunCursor::default();
        self.emit_metadata_with_slots(|guest| cursor.rank_of(&self.map.runs, guest), emit)
    }

    /// [`Self::emit_metadata`] for data clusters in another order: `slot_of(guest)` is
    /// the position of guest cluster `guest` among the data clusters (`None`: not
    /// allocated). It is asked about ascending guest clusters; the caller must give
    /// every allocated cluster of the map a distinct slot below its cluster count.
    pub fn emit_metadata_with_slots(
        &self,
        mut slot_of: impl FnMut(u64) -> Option<u64>,
        mut emit: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let cluster = self.format.cluster_size();
        emit(&self.header_cluster()?)?;
        let refblock_offsets = (0..self.refblocks).map(|i| self.refblocks_offset + i * cluster);
        emit_table(cluster, self.reftable_clusters, refblock_offsets, &mut emit)?;
        let per_block = self.format.refcounts_per_block();
        let mut block = vec![0u8; cluster as usize];
        for index in 0..self.refblocks {
            let used = self
                .total_clusters
                .saturating_sub(index * per_block)
                .min(per_block);
            block.fill(0);
            for entry in block.chunks_exact_mut(2).take(used as usize) {
                entry.copy_from_slice(&1u16.to_be_bytes());
            }
            emit(&block)?;
        }
        let entries_per_l2 = self.format.entries_per_l2();
        let mut tables = self.map.l1_indices(entries_per_l2).enumerate().peekable();
        let l1 = (0..self.l1_entries).map(|index| match tables.peek() {
            Some(&(rank, l1_index)) if l1_index == index => {
                tables.next();
                L1Entry::encode(self.l2_offset + rank as u64 * cluster, true)
            }
            _ => 0,
        });
        emit_table(cluster, self.l1_clusters, l1, &mut emit)?;
        for l1_index in self.map.l1_indices(entries_per_l2) {
            let first = l1_index * entries_per_l2;
            let entries = (first..first + entries_per_l2).map(|guest| {
                slot_of(guest).map_or(0, |rank| {
                    L2Entry::encode_standard(self.data_offset + rank * cluster, true)
                })
            });
            emit_table(cluster, 1, entries, &mut emit)?;
        }
        Ok(())
    }
}

/// Walks the runs of a map in ascending guest order, answering "is this cluster
/// allocated, and how many allocated clusters precede it".
#[derive(Debug, Default)]
struct RunCursor {
    run: usize,
    rank_before_run: u64,
}

impl RunCursor {
    /// The rank of `guest` among allocated clusters, or `None` when it is not allocated.
    /// Successive calls must ask for ascending clusters.
    fn rank_of(&mut self, runs: &[Range<u64>], guest: u64) -> Option<u64> {
        while let Some(run) = runs.get(self.run) {
            if guest < run.end {
                return (guest >= run.start).then(|| self.rank_before_run + guest - run.start);
            }
            self.rank_before_run += run.end - run.start;
            self.run += 1;
        }
        None
    }
}

/// Emits a table of big-endian u64 entries spanning `clusters` clusters, zero-padded.
fn emit_table(
    cluster: u64,
    clusters: u64,
    entries: impl Iterator<Item = u64>,
    emit: &mut impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut entries = entries.peekable();
    let mut buf = vec![0u8; cluster as usize];
    for _ in 0..clusters {
        buf.fill(0);
        for slot in buf.chunks_exact_mut(8) {
            match entries.next() {
                Some(entry) => slot.copy_from_slice(&entry.to_be_bytes()),
                None => break,
            }
        }
        emit(&buf)?;
    }
    match entries.peek() {
        None => Ok(()),
        Some(_) => Err(DiskError::InvalidRequest(
            "metadata table has more entries than its clusters hold".to_owned(),
        )),
    }
}
