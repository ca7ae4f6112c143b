//! Host cluster allocation for a patch, and the refcount structures the new clusters
//! need: refcount blocks for parts of the file no block covers yet and, when the
//! refcount table is full, a larger table.
//!
//! Owns choosing where new clusters go (from the end of the file on, skipping any
//! cluster whose stored refcount is not zero) and the fixed point of "new refcount
//! blocks need refcounts too". Everything is planned before anything is written; this
//! module never writes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::disk::qcow2::limits::{HOST_OFFSET_MASK, MAX_REFCOUNT_TABLE_BYTES};
use crate::disk::qcow2::refcount::{RefcountTable, StoredRefcounts};
use crate::disk::{DiskError, Result};

/// Clusters with a non-zero refcount past the end of the file skipped at most while
/// allocating: a consistent image has none; this bounds the walk on a hostile one.
const MAX_SKIPPED_CLUSTERS: u64 = 1 << 20;
/// Attempts at sizing a new refcount table: each grows it; two suffice in practice
/// (the table's own clusters rarely need one more block).
const MAX_TABLE_ATTEMPTS: u32 = 8;

/// Hands out host clusters (as cluster indices) with a stored refcount of zero, in
/// ascending order from the end of the file.
#[derive(Debug, Clone, Copy)]
pub struct Allocator {
    next: u64,
    skipped: u64,
    cluster_bits: u32,
}

impl Allocator {
    /// Starts at the first whole cluster past `file_size`.
    pub fn new(file_size: u64, cluster_bits: u32) -> Self {
        Self {
            next: file_size.div_ceil(1 << cluster_bits),
            skipped: 0,
            cluster_bits,
        }
    }

    /// One free cluster.
    pub fn take(&mut self, stored: &mut StoredRefcounts<'_>, path: &Path) -> Result<u64> {
        self.take_run(stored, path, 1)
    }

    /// `count` contiguous free clusters; returns the first.
    pub fn take_run(
        &mut self,
        stored: &mut StoredRefcounts<'_>,
        path: &Path,
        count: u64,
    ) -> Result<u64> {
        let mut start = self.next;
        let mut cluster = start;
        while cluster - start < count {
            let end = cluster
                .checked_add(1)
                .and_then(|end| end.checked_mul(1 << self.cluster_bits))
                .filter(|&end| end - 1 <= HOST_OFFSET_MASK);
            if end.is_none() {
                return Err(DiskError::unsupported(
                    path,
                    "the image cannot grow further: host offsets would exceed what qcow2 can address",
                ));
            }
            let refcount = stored
                .get(cluster)?
                .map_err(|reason| DiskError::malformed(path, "qcow2", reason))?;
            if refcount != 0 {
                self.skipped += 1;
                if self.skipped > MAX_SKIPPED_CLUSTERS {
                    return Err(DiskError::Refused {
                        path: path.to_owned(),
                        detail: format!(
                            "more than {MAX_SKIPPED_CLUSTERS} clusters past the end of the file have a refcount"
                        ),
                        hint: Some("`qemu-img check -r leaks` repairs leaked clusters".to_owned()),
                    });
                }
                start = cluster + 1;
            }
            cluster += 1;
        }
        self.next = cluster;
        Ok(start)
    }
}

/// A larger refcount table replacing the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTable {
    pub first_cluster: u64,
    pub clusters: u64,
}

/// Every cluster the patch allocates and the refcount structures that cover them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefcountPlan {
    /// New refcount blocks: refcount table index -> host cluster index.
    pub new_blocks: BTreeMap<u64, u64>,
    /// The new refcount table, when the current one cannot point at every block.
    pub new_table: Option<NewTable>,
    /// Every cluster that gets a refcount of one (data, L2 tables, refcount blocks, the
    /// new table), sorted.
    pub allocated: Vec<u64>,
}

/// Plans the refcount blocks (and table) for `clusters`, already taken from `alloc`.
/// Blocks and table clusters are taken from `alloc` after them.
pub fn plan_refcounts(
    table: &RefcountTable,
    stored: &mut StoredRefcounts<'_>,
    path: &Path,
    alloc: Allocator,
    clusters: &[u64],
) -> Result<RefcountPlan> {
    let geometry = table.geometry();
    let per_block = geometry.entries_per_block();
    let cluster_size = geometry.cluster_size();
    let has_block = |index: u64| table.entry(index).is_some_and(|(offset, _)| offset != 0);
    let current_clusters = (table.len() * 8).div_ceil(cluster_size);
    let mut table_clusters: Option<u64> = None;
    for _ in 0..MAX_TABLE_ATTEMPTS {
        let mut alloc = alloc;
        let mut allocated = clusters.to_vec();
        let new_table = match table_clusters {
            Some(count) => {
                let first_cluster = alloc.take_run(stored, path, count)?;
                allocated.extend(first_cluster..first_cluster + count);
                Some(NewTable {
                    first_cluster,
                    clusters: count,
                })
            }
            None => None,
        };
        let mut new_blocks = BTreeMap::new();
        let mut next = 0;
        while let Some(&cluster) = allocated.get(next) {
            let index = cluster / per_block;
            if !has_block(index) && !new_blocks.contains_key(&index) {
                let block = alloc.take(stored, path)?;
                new_blocks.insert(index, block);
                allocated.push(block);
            }
            next += 1;
        }
        let needed = new_blocks.keys().next_back().map_or(0, |last| last + 1);
        let capacity = match new_table {
            Some(new) => new.clusters * cluster_size / 8,
            None => table.len(),
        };
        if needed <= capacity {
            allocated.sort_unstable();
            return Ok(RefcountPlan {
                new_blocks,
                new_table,
                allocated,
            });
        }
        // Room for every block needed now plus one more cluster of entries, for the
        // blocks that the new table's own clusters may need.
        let count = (needed * 8).div_ceil(cluster_size) + 1;
        let count = count.max(table_clusters.unwrap_or(current_clusters) + 1);
        if count * cluster_size > MAX_REFCOUNT_TABLE_BYTES {
            return Err(DiskError::unsupported(
                path,
                format!(
                    "the patch would need a refcount table of {} bytes, more than the \
                     {MAX_REFCOUNT_TABLE_BYTES} QEMU allows",
                    count * cluster_size
                ),
            ));
        }
        table_clusters = Some(count);
    }
    Err(DiskError::malformed(
        path,
        "qcow2",
        "could not size a refcount table for the new clusters",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::qcow2::refcount::set_refcount;
    use crate::disk::qcow2::{CompressionType, Header};
    use crate::disk::{MemorySource, ReadAt};

    /// 512-byte clusters, 64-bit refcounts (64 per block): header, a one-cluster
    /// refcount table (64 entries, so 4096 clusters) at 512, its only block at 1024.
    /// Clusters 0-2 are in use and the file ends there; cluster 5, past the end, has a
    /// stray refcount.
    fn image() -> (MemorySource, Header) {
        let mut bytes = vec![0u8; 1536];
        bytes[512..520].copy_from_slice(&1024u64.to_be_bytes());
        let mut block = vec![0u8; 512];
        for cluster in [0, 1, 2, 5] {
            set_refcount(&mut block, cluster, 6, 1);
        }
        bytes[1024..].copy_from_slice(&block);
        let header = Header {
            version: 3,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: 9,
            size: 1 << 20,
            crypt_method: 0,
            l1_size: 0,
            l1_table_offset: 0,
            refcount_table_offset: 512,
            refcount_table_clusters: 1,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 6,
            header_length: 112,
            compression_type: CompressionType::Zlib,
            extensions: Vec::new(),
            backing_file: None,
        };
        (MemorySource::new(bytes, "mem"), header)
    }

    #[test]
    fn allocation_starts_past_the_file_and_skips_clusters_in_use() {
        let (source, header) = image();
        let path = Path::new("mem");
        let table = RefcountTable::read(&source, path, &header).unwrap();
        let mut stored = StoredRefcounts::new(&source, path, &table);
        let mut alloc = Allocator::new(source.size(), 9);
        assert_eq!(alloc.take(&mut stored, path).unwrap(), 3);
        assert_eq!(
            alloc.take_run(&mut stored, path, 2).unwrap(),
            6,
            "5 is in use"
        );
        assert_eq!(alloc.take(&mut stored, path).unwrap(), 8);
    }

    #[test]
    fn new_blocks_cover_themselves_and_a_full_table_grows() {
        let (source, header) = image();
        let path = Path::new("mem");
        let table = RefcountTable::read(&source, path, &header).unwrap();
        let mut stored = StoredRefcounts::new(&source, path, &table);
        // Clusters 3..70 need block 1 (64..127), which lands at 70 and covers itself.
        let mut alloc = Allocator::new(source.size(), 9);
        let clusters: Vec<u64> = (0..66)
            .map(|_| alloc.take(&mut stored, path).unwrap())
            .collect();
        assert_eq!(clusters.last(), Some(&69), "5 skipped");
        let plan = plan_refcounts(&table, &mut stored, path, alloc, &clusters).unwrap();
        assert_eq!(plan.new_blocks, BTreeMap::from([(1, 70)]));
        assert_eq!(plan.new_table, None);
        assert_eq!(plan.allocated.len(), 67);
        // 4100 clusters run past what 64 table entries can point at (4096 clusters).
        let mut alloc = Allocator::new(source.size(), 9);
        let clusters: Vec<u64> = (0..4100)
            .map(|_| alloc.take(&mut stored, path).unwrap())
            .collect();
        let plan = plan_refcounts(&table, &mut stored, path, alloc, &clusters).unwrap();
        let new = plan.new_table.expect("the table grows");
        assert!(new.clusters >= 2, "{new:?}");
        let last = plan.allocated.last().copied().unwrap();
        let entries = new.clusters * 512 / 8;
        assert!(last / 64 < entries, "the new table points at every block");
        for cluster in &plan.allocated {
            let index = cluster / 64;
            assert!(
                index == 0 || plan.new_blocks.contains_key(&index),
                "{cluster} uncovered"
            );
        }
        let mut sorted = plan.allocated.clone();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            plan.allocated.len(),
            "no cluster allocated twice"
        );
    }
}
