//! Refcount tables and refcount blocks of any width (1 to 64 bits): geometry, reading,
//! and changing single refcounts inside a block.
//!
//! Owns the refcount bit layout from the spec (sub-byte widths pack the least significant
//! bits first; 8 bits and wider are big-endian) and bounded reads of the refcount table
//! and blocks. It never decides what a refcount should be (that is `check`'s job) and
//! never writes to a file itself: callers write the blocks they changed.

use std::path::Path;

use super::entries::decode_reftable_entry;
use super::limits::{MAX_L1_BYTES, MAX_REFCOUNT_TABLE_BYTES};
use super::Header;
use crate::disk::{DiskError, ReadAt, Result};

/// Where the refcount of a host cluster lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefcountGeometry {
    cluster_bits: u32,
    refcount_order: u32,
}

impl RefcountGeometry {
    /// The geometry of the image `header` describes.
    pub fn new(header: &Header) -> Self {
        Self {
            cluster_bits: header.cluster_bits,
            refcount_order: header.refcount_order,
        }
    }

    /// Bytes per cluster (and per refcount block).
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// log2 of the refcount width in bits (0..=6).
    pub fn order(&self) -> u32 {
        self.refcount_order
    }

    /// Refcounts in one refcount block.
    pub fn entries_per_block(&self) -> u64 {
        (8u64 << self.cluster_bits) >> self.refcount_order
    }

    /// The largest refcount the width can hold.
    pub fn max_refcount(&self) -> u64 {
        u64::MAX >> (64 - (1u32 << self.refcount_order))
    }

    /// The refcount table index and the index inside its block of host cluster `cluster`.
    pub fn locate(&self, cluster: u64) -> (u64, usize) {
        let per_block = self.entries_per_block();
        // per_block <= 2^24, so the remainder fits in usize.
        (cluster / per_block, (cluster % per_block) as usize)
    }
}

/// Reads refcount number `index` of `block` (one cluster) with width `1 << order` bits.
/// `index` must be below the block's entry count.
pub fn get_refcount(block: &[u8], index: usize, order: u32) -> u64 {
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let per_byte = 8 / bits;
            let shift = (index % per_byte) * bits;
            u64::from((block[index / per_byte] >> shift) & ((1u8 << bits) - 1))
        }
        _ => {
            let bytes = 1usize << (order - 3);
            let start = index * bytes;
            block[start..start + bytes]
                .iter()
                .fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
        }
    }
}

/// Stores `value` as refcount number `index` of `block`. The value must fit the width
/// (see [`RefcountGeometry::max_refcount`]); higher bits are dropped.
pub fn set_refcount(block: &mut [u8], index: usize, order: u32, value: u64) {
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let per_byte = 8 / bits;
            let shift = (index % per_byte) * bits;
            let mask = ((1u8 << bits) - 1) << shift;
            let byte = &mut block[index / per_byte];
            *byte = (*byte & !mask) | (((value as u8) << shift) & mask);
        }
        _ => {
            let bytes = 1usize << (order - 3);
            let start = index * bytes;
            let be = value.to_be_bytes();
            block[start..start + bytes].copy_from_slice(&be[8 - bytes..]);
        }
    }
}

/// The refcount table: one entry per refcount block, raw as stored.
#[derive(Debug, Clone)]
pub struct RefcountTable {
    geometry: RefcountGeometry,
    raw: Vec<u64>,
}

impl RefcountTable {
    /// Reads the refcount table `header` names (its position was validated by
    /// [`Header::read`]; the size is checked again against the limit here).
    pub fn read(source: &dyn ReadAt, path: &Path, header: &Header) -> Result<Self> {
        let bytes = u64::from(header.refcount_table_clusters) * header.cluster_size();
        if bytes > MAX_REFCOUNT_TABLE_BYTES {
            return Err(DiskError::malformed(
                path,
                "qcow2",
                format!("refcount table of {bytes} bytes exceeds {MAX_REFCOUNT_TABLE_BYTES}"),
            ));
        }
        let raw = read_be_u64s(
            source,
            path,
            header.refcount_table_offset,
            bytes / 8,
            "refcount table",
        )?;
        Ok(Self {
            geometry: RefcountGeometry::new(header),
            raw,
        })
    }

    /// The geometry the table was read with.
    pub fn geometry(&self) -> RefcountGeometry {
        self.geometry
    }

    /// Number of entries (refcount blocks the table can point at).
    pub fn len(&self) -> u64 {
        self.raw.len() as u64
    }

    /// Whether the table has no entries (never true for a valid header).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Entry `index` decoded as (refcount block offset, reserved bits); `None` past the
    /// end of the table.
    pub fn entry(&self, index: u64) -> Option<(u64, u64)> {
        let raw = *self.raw.get(usize::try_from(index).ok()?)?;
        Some(decode_reftable_entry(raw))
    }

    /// The refcount block holding host cluster `cluster`'s refcount and the index in it:
    /// `Ok(None)` when no block is allocated for it (its refcount is 0), an error naming
    /// the entry when the block offset is unaligned. A block past the end of the file
    /// reads as zeros (see [`read_block`]), as QEMU reads it.
    pub fn block_for(&self, cluster: u64) -> std::result::Result<Option<(u64, usize)>, String> {
        let (table_index, index) = self.geometry.locate(cluster);
        let Some((offset, _)) = self.entry(table_index) else {
            return Ok(None);
        };
        if offset == 0 {
            return Ok(None);
        }
        if !offset.is_multiple_of(self.geometry.cluster_size()) {
            return Err(format!(
                "refcount block {table_index} at {offset:#x} is not cluster-aligned"
            ));
        }
        Ok(Some((offset, index)))
    }
}

/// Reads stored refcounts one at a time, keeping the last refcount block read, so a
/// walk in roughly ascending host order reads each block about once.
pub struct StoredRefcounts<'a> {
    source: &'a dyn ReadAt,
    path: &'a Path,
    table: &'a RefcountTable,
    cached: Option<(u64, Vec<u8>)>,
}

impl<'a> StoredRefcounts<'a> {
    /// A reader over `table` of the image in `source`.
    pub fn new(source: &'a dyn ReadAt, path: &'a Path, table: &'a RefcountTable) -> Self {
        Self {
            source,
            path,
            table,
            cached: None,
        }
    }

    /// The stored refcount of host cluster `cluster`; `Ok(Err(reason))` when its
    /// refcount block is unusable (unaligned).
    pub fn get(&mut self, cluster: u64) -> Result<std::result::Result<u64, String>> {
        let located = match self.table.block_for(cluster) {
            Ok(Some(located)) => located,
            Ok(None) => return Ok(Ok(0)),
            Err(reason) => return Ok(Err(reason)),
        };
        let (block_offset, index) = located;
        let order = self.table.geometry.order();
        if let Some((offset, block)) = &self.cached {
            if *offset == block_offset {
                return Ok(Ok(get_refcount(block, index, order)));
            }
        }
        let cluster_size = self.table.geometry.cluster_size();
        let block = read_block(self.source, self.path, block_offset, cluster_size)?;
        let value = get_refcount(&block, index, order);
        self.cached = Some((block_offset, block));
        Ok(Ok(value))
    }
}

/// Reads the refcount block at `offset`. Bytes past the end of the file read as zeros, as
/// QEMU reads them (the last cluster of a file may be only partly present).
pub fn read_block(
    source: &dyn ReadAt,
    path: &Path,
    offset: u64,
    cluster_size: u64,
) -> Result<Vec<u8>> {
    let present = source.size().saturating_sub(offset).min(cluster_size) as usize;
    let mut block = vec![0u8; cluster_size as usize];
    source
        .read_exact_at(&mut block[..present], offset)
        .map_err(|e| DiskError::io("read a refcount block of", path, e))?;
    Ok(block)
}

/// Reads `count` big-endian u64 entries of a metadata table (`what`, for messages) at
/// `offset`. The table must lie inside the file and be at most [`MAX_L1_BYTES`] long,
/// the largest single table qcow2 has.
pub fn read_be_u64s(
    source: &dyn ReadAt,
    path: &Path,
    offset: u64,
    count: u64,
    what: &str,
) -> Result<Vec<u64>> {
    let bad = |detail: String| DiskError::malformed(path, "qcow2", detail);
    let len = count
        .checked_mul(8)
        .filter(|&len| len <= MAX_L1_BYTES)
        .ok_or_else(|| {
            bad(format!(
                "{what} of {count} entries exceeds {MAX_L1_BYTES} bytes"
            ))
        })?;
    if offset
        .checked_add(len)
        .is_none_or(|end| end > source.size())
    {
        return Err(bad(format!(
            "{what} at {offset:#x} ({len} bytes) lies beyond the end of the file ({} bytes)",
            source.size()
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    source
        .read_exact_at(&mut bytes, offset)
        .map_err(|e| DiskError::io("read", path, e))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from_be_bytes(word)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_round_trips_without_touching_neighbours() {
        for order in 0..=6u32 {
            let bits = 1u32 << order;
            let max = u64::MAX >> (64 - bits);
            let mut block = vec![0u8; 512];
            let entries = 512 * 8 / bits as usize;
            for index in 0..entries {
                set_refcount(&mut block, index, order, (index as u64 * 7 + 3) & max);
            }
            for index in 0..entries {
                assert_eq!(
                    get_refcount(&block, index, order),
                    (index as u64 * 7 + 3) & max,
                    "order {order} index {index}"
                );
            }
            set_refcount(&mut block, 1, order, max);
            assert_eq!(get_refcount(&block, 1, order), max);
            assert_eq!(get_refcount(&block, 0, order), 3 & max);
            assert_eq!(get_refcount(&block, 2, order), 17 & max);
        }
    }

    #[test]
    fn sub_byte_widths_fill_the_least_significant_bits_first() {
        let mut block = vec![0u8; 512];
        set_refcount(&mut block, 0, 0, 1);
        assert_eq!(block[0], 0b0000_0001);
        set_refcount(&mut block, 1, 1, 3); // 2-bit refcount 1 sits in bits 2..=3
        assert_eq!(block[0], 0b0000_1101);
        let mut wide = vec![0u8; 512];
        set_refcount(&mut wide, 1, 4, 0x0102);
        assert_eq!(&wide[2..4], &[1, 2]);
    }

    #[test]
    fn geometry_matches_the_spec() {
        let geometry = RefcountGeometry {
            cluster_bits: 16,
            refcount_order: 4,
        };
        assert_eq!(geometry.entries_per_block(), 32768);
        assert_eq!(geometry.max_refcount(), 65535);
        assert_eq!(geometry.locate(32769), (1, 1));
        let one_bit = RefcountGeometry {
            cluster_bits: 9,
            refcount_order: 0,
        };
        assert_eq!(one_bit.entries_per_block(), 4096);
        assert_eq!(one_bit.max_refcount(), 1);
        let wide = RefcountGeometry {
            cluster_bits: 9,
            refcount_order: 6,
        };
        assert_eq!(wide.max_refcount(), u64::MAX);
    }
}
