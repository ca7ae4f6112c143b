//! ext4 block group descriptors (32-byte, or `s_desc_size` with 64bit), read as one
//! table and checked with crc32c (metadata_csum) or crc16 (uninit_bg).
//!
//! Owns the descriptor layout, its checksum, and the location of the table (the block
//! after the superblock; meta_bg is refused by the superblock). Must not: read the
//! bitmaps or inode tables it points to.

use super::superblock::Superblock;
use crate::guest::native::bytes::{le16, le32};
use crate::guest::native::crc::{crc16, crc32c_raw};
use crate::guest::native::error::{NativeError, Result};
use crate::guest::native::overlay::Overlay;

/// Largest descriptor table read into memory: 1 Mi groups of 64 bytes (128 TiB of
/// 4 KiB blocks).
pub const MAX_TABLE_BYTES: u64 = 64 << 20;

/// Offset of `bg_checksum` in a descriptor.
const CHECKSUM: usize = 0x1e;

/// The fields of one group descriptor the reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupDesc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub flags: u16,
}

/// The checksum a descriptor should carry (`None` when the filesystem has none).
pub fn expected_checksum(sb: &Superblock, group: u32, desc: &[u8]) -> Option<u16> {
    let group = group.to_le_bytes();
    let after = CHECKSUM + 2;
    if sb.has_metadata_csum() {
        let crc = crc32c_raw(sb.csum_seed, &group);
        let crc = crc32c_raw(crc, &desc[..CHECKSUM]);
        let crc = crc32c_raw(crc, &[0, 0]);
        let crc = crc32c_raw(crc, &desc[after..]);
        Some(crc as u16) // the low 16 bits are stored
    } else if sb.has_gdt_csum() {
        let crc = crc16(!0, &sb.uuid);
        let crc = crc16(crc, &group);
        let crc = crc16(crc, &desc[..CHECKSUM]);
        Some(crc16(crc, &desc[after..]))
    } else {
        None
    }
}

/// Volume byte offset of the descriptor table.
pub fn table_offset(sb: &Superblock) -> u64 {
    (u64::from(sb.first_data_block) + 1) * u64::from(sb.block_size)
}

/// Reads, checks and decodes every group descriptor.
pub fn read_table(volume: &Overlay, sb: &Superblock) -> Result<Vec<GroupDesc>> {
    let size = usize::from(sb.desc_size);
    let len = u64::from(sb.groups) * size as u64; // <= MAX_GROUPS * 1024
    NativeError::check_limit("ext4 group descriptor table bytes", len, MAX_TABLE_BYTES)?;
    let start = table_offset(sb);
    let table = volume.read_vec(start, len as usize, "ext4 group descriptors")?;
    let mut groups = Vec::with_capacity(sb.groups as usize);
    for (index, desc) in (0u32..).zip(table.chunks_exact(size)) {
        let offset = start + u64::from(index) * size as u64;
        if let Some(computed) = expected_checksum(sb, index, desc) {
            let stored = le16(desc, CHECKSUM);
            if stored != computed {
                return Err(NativeError::Checksum {
                    structure: "ext4 group descriptor",
                    offset,
                    stored: stored.into(),
                    computed: computed.into(),
                });
            }
        }
        let wide = |lo: usize, hi: usize| {
            let high = if size >= 64 {
                u64::from(le32(desc, hi))
            } else {
                0
            };
            u64::from(le32(desc, lo)) | high << 32
        };
        let desc = GroupDesc {
            block_bitmap: wide(0x0, 0x20),
            inode_bitmap: wide(0x4, 0x24),
            inode_table: wide(0x8, 0x28),
            flags: le16(desc, 0x12),
        };
        let table_blocks = (u64::from(sb.inodes_per_group) * u64::from(sb.inode_size))
            .div_ceil(u64::from(sb.block_size));
        let fits = |block: u64, blocks: u64| {
            block >= u64::from(sb.first_data_block)
                && block
                    .checked_add(blocks)
                    .is_some_and(|end| end <= sb.blocks_count)
        };
        if !fits(desc.inode_table, table_blocks)
            || !fits(desc.block_bitmap, 1)
            || !fits(desc.inode_bitmap, 1)
        {
            return Err(NativeError::malformed(
                "ext4 group descriptor",
                offset,
                format!("group {index} points outside the filesystem: {desc:?}"),
            ));
        }
        groups.push(desc);
    }
    Ok(groups)
}
