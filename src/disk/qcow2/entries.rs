//! Decoding of the 64-bit table entries: L1, L2 (standard and compressed) and refcount
//! table entries.
//!
//! Owns the bit layouts from the spec and nothing else: callers fetch the tables,
//! decode entries here and decide what a mapping means for them. Decoding never fails
//! on reserved bits; it reports them so `check` can flag them and readers can refuse.

use super::limits::HOST_OFFSET_MASK;

/// Bit 63 of L1 and standard L2 entries: the cluster's refcount is exactly one.
pub const COPIED: u64 = 1 << 63;
/// Bit 62 of L2 entries: the cluster is compressed.
pub const COMPRESSED: u64 = 1 << 62;
/// Bit 0 of standard L2 entries (v3 only): the cluster reads as zeros.
pub const ZERO: u64 = 1;
/// Reserved bits of an L1 entry (1-8 and 56-62); they must be zero.
pub const L1_RESERVED: u64 = 0x7f00_0000_0000_01fe;
/// Reserved bits of a standard L2 entry (1-8 and 56-61); they must be zero.
pub const L2_STANDARD_RESERVED: u64 = 0x3f00_0000_0000_01fe;
/// Reserved bits of a refcount table entry (0-8).
pub const REFTABLE_RESERVED: u64 = 0x1ff;

/// A decoded L1 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1Entry {
    /// Host offset of the L2 table, or 0 when the whole range is unallocated.
    pub l2_offset: u64,
    /// The COPIED flag.
    pub copied: bool,
    /// Reserved bits that were set (0 in a valid image).
    pub reserved: u64,
}

impl L1Entry {
    /// Decodes a raw big-endian-decoded L1 entry.
    pub fn decode(raw: u64) -> Self {
        Self {
            l2_offset: raw & HOST_OFFSET_MASK,
            copied: raw & COPIED != 0,
            reserved: raw & L1_RESERVED,
        }
    }

    /// Encodes an entry pointing at `l2_offset`.
    pub fn encode(l2_offset: u64, copied: bool) -> u64 {
        (l2_offset & HOST_OFFSET_MASK) | if copied { COPIED } else { 0 }
    }
}

/// What one L2 entry says about its guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Mapping {
    /// No data here: reads as zeros (or from a backing file, which we do not support).
    Unallocated,
    /// Reads as zeros. `preallocated` is the host cluster kept reserved for it, if any.
    Zero { preallocated: Option<u64> },
    /// Data at a cluster-aligned host offset.
    Standard { host_offset: u64, copied: bool },
    /// zlib/zstd-compressed data of up to `max_len` bytes starting at `host_offset`.
    Compressed { host_offset: u64, max_len: u64 },
}

/// A decoded L2 entry with its reserved bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Entry {
    pub mapping: L2Mapping,
    /// Reserved bits that were set (0 in a valid image).
    pub reserved: u64,
}

impl L2Entry {
    /// Decodes a standard (64-bit) L2 entry of an image with `cluster_bits`; `version`
    /// decides whether bit 0 means "zero" (v3) or is reserved (v2).
    pub fn decode(raw: u64, cluster_bits: u32, version: u32) -> Self {
        if raw & COMPRESSED != 0 {
            // Bits 0..x-1 hold the offset, x..61 the number of extra 512-byte sectors.
            let x = 62 - (cluster_bits - 8);
            let host_offset = raw & ((1u64 << x) - 1);
            let extra_sectors = (raw >> x) & ((1u64 << (62 - x)) - 1);
            let max_len = (extra_sectors + 1) * 512 - (host_offset & 511);
            return Self {
                mapping: L2Mapping::Compressed {
                    host_offset,
                    max_len,
                },
                reserved: 0,
            };
        }
        let host_offset = raw & HOST_OFFSET_MASK;
        let copied = raw & COPIED != 0;
        let mut reserved = raw & L2_STANDARD_RESERVED;
        let zero = if version >= 3 {
            raw & ZERO != 0
        } else {
            reserved |= raw & ZERO;
            false
        };
        let mapping = match (zero, host_offset) {
            (true, 0) => L2Mapping::Zero { preallocated: None },
            (true, offset) => L2Mapping::Zero {
                preallocated: Some(offset),
            },
            (false, 0) => L2Mapping::Unallocated,
            (false, offset) => L2Mapping::Standard {
                host_offset: offset,
                copied,
            },
        };
        Self { mapping, reserved }
    }

    /// Encodes a standard data entry.
    pub fn encode_standard(host_offset: u64, copied: bool) -> u64 {
        (host_offset & HOST_OFFSET_MASK) | if copied { COPIED } else { 0 }
    }

    /// Encodes a v3 zero entry, optionally keeping a preallocated host cluster.
    pub fn encode_zero(preallocated: Option<u64>, copied: bool) -> u64 {
        let offset = preallocated.unwrap_or(0) & HOST_OFFSET_MASK;
        offset | ZERO | if copied && offset != 0 { COPIED } else { 0 }
    }

    /// Encodes a compressed entry for data of `len` bytes (1..=cluster size plus the
    /// slack the format allows) starting at `host_offset`. Returns `None` when the
    /// offset or length cannot be represented with `cluster_bits`.
    pub fn encode_compressed(host_offset: u64, len: u64, cluster_bits: u32) -> Option<u64> {
        let x = 62 - (cluster_bits - 8);
        if host_offset >= 1u64 << x || len == 0 {
            return None;
        }
        let end = host_offset.checked_add(len)?;
        let sectors = end.div_ceil(512) - host_offset / 512; // sectors the data touches
        let extra = sectors - 1;
        if extra >= 1u64 << (62 - x) {
            return None;
        }
        Some(COMPRESSED | (extra << x) | host_offset)
    }
}

/// Decodes a refcount table entry: the refcount block's host offset and reserved bits.
pub fn decode_reftable_entry(raw: u64) -> (u64, u64) {
    (raw & !REFTABLE_RESERVED, raw & REFTABLE_RESERVED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_entry_round_trips_for_every_cluster_size() {
        for bits in 9..=21u32 {
            let len = 1000.min((1u64 << bits) / 2);
            let entry = L2Entry::encode_compressed(0x12_3456, len, bits).expect("representable");
            let decoded = L2Entry::decode(entry, bits, 3);
            let L2Mapping::Compressed {
                host_offset,
                max_len,
            } = decoded.mapping
            else {
                panic!("not compressed: {decoded:?}");
            };
            assert_eq!(host_offset, 0x12_3456);
            assert!(
                max_len >= len,
                "{max_len} too short for cluster_bits {bits}"
            );
        }
    }

    #[test]
    fn v2_zero_bit_is_reserved_not_zero() {
        let decoded = L2Entry::decode(0x10000 | ZERO, 16, 2);
        assert_eq!(decoded.reserved, ZERO);
        assert!(matches!(decoded.mapping, L2Mapping::Standard { .. }));
    }

    #[test]
    fn v3_zero_with_offset_is_preallocated_zero() {
        let decoded = L2Entry::decode(0x20000 | ZERO, 16, 3);
        assert_eq!(
            decoded.mapping,
            L2Mapping::Zero {
                preallocated: Some(0x20000)
            }
        );
    }
}
