//! Group descriptor and superblock counters: free blocks, free inodes, directories,
//! unused inode-table entries and the uninit flags, with the descriptor checksum
//! (crc32c or crc16) and the superblock checksum recomputed on every change.
//!
//! Owns the raw layouts of those counters. Must not: touch bitmaps (see
//! [`super::bitmap`]), which also owns the bitmap checksums stored in descriptors.

use super::super::group::{self, expected_checksum};
use super::super::superblock::{incompat, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use super::super::Ext4;
use crate::guest::native::bytes::{le16, le32, put_le16, put_le32};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::Result;

/// `bg_flags` bits.
pub mod bg_flags {
    pub const INODE_UNINIT: u16 = 0x1;
    pub const BLOCK_UNINIT: u16 = 0x2;
}

/// Field offsets in a group descriptor (`_hi` halves only in 64-byte descriptors).
pub const FREE_BLOCKS: (usize, usize) = (0x0c, 0x2c);
pub const FREE_INODES: (usize, usize) = (0x0e, 0x2e);
pub const USED_DIRS: (usize, usize) = (0x10, 0x30);
pub const ITABLE_UNUSED: (usize, usize) = (0x1c, 0x32);
pub const BLOCK_BITMAP_CSUM: (usize, usize) = (0x18, 0x38);
pub const INODE_BITMAP_CSUM: (usize, usize) = (0x1a, 0x3a);
const FLAGS: usize = 0x12;
const CHECKSUM: usize = 0x1e;

const SB_FREE_BLOCKS: (usize, usize) = (0x0c, 0x158);
const SB_FREE_INODES: usize = 0x10;
const SB_CHECKSUM: usize = 0x3fc;

/// One group descriptor's raw bytes, edited in memory and stored with
/// [`Ext4::store_desc`].
#[derive(Debug, Clone)]
pub struct RawDesc {
    pub group: u32,
    pub bytes: Vec<u8>,
}

impl RawDesc {
    fn wide(&self) -> bool {
        self.bytes.len() >= 64
    }

    /// A 16/32-bit counter (the high half only in 64-byte descriptors).
    pub fn get(&self, (lo, hi): (usize, usize)) -> u32 {
        let high = if self.wide() {
            u32::from(le16(&self.bytes, hi))
        } else {
            0
        };
        u32::from(le16(&self.bytes, lo)) | high << 16
    }

    /// Sets a counter; the value must fit (16 bits in 32-byte descriptors).
    pub fn set(&mut self, (lo, hi): (usize, usize), value: u32) {
        put_le16(&mut self.bytes, lo, value as u16);
        if self.wide() {
            put_le16(&mut self.bytes, hi, (value >> 16) as u16);
        }
    }

    pub fn flags(&self) -> u16 {
        le16(&self.bytes, FLAGS)
    }

    pub fn set_flags(&mut self, flags: u16) {
        put_le16(&mut self.bytes, FLAGS, flags);
    }
}

impl Ext4 {
    /// Volume byte offset of group `group`'s descriptor in the primary table.
    fn desc_offset(&self, group: u32) -> u64 {
        group::table_offset(&self.sb) + u64::from(group) * u64::from(self.sb.desc_size)
    }

    /// The raw descriptor of `group` (which must exist), through the overlay.
    pub fn raw_desc(&self, group: u32) -> Result<RawDesc> {
        let bytes = self.store.read_vec(
            self.desc_offset(group),
            usize::from(self.sb.desc_size),
            "ext4 group descriptor",
        )?;
        Ok(RawDesc { group, bytes })
    }

    /// Stores `desc` with its checksum, remembering the group's counts before its
    /// first change for the self-check.
    pub fn store_desc(&mut self, mut desc: RawDesc) -> Result<()> {
        if !self.log.groups.contains_key(&desc.group) {
            let before = self.raw_desc(desc.group)?;
            let counts = (
                u64::from(before.get(FREE_BLOCKS)),
                u64::from(before.get(FREE_INODES)),
            );
            self.log.groups.insert(desc.group, counts);
        }
        if let Some(crc) = expected_checksum(&self.sb, desc.group, &desc.bytes) {
            put_le16(&mut desc.bytes, CHECKSUM, crc);
        }
        let offset = self.desc_offset(desc.group);
        self.write_bytes(offset, &desc.bytes, "ext4 group descriptor")?;
        if let Some(cached) = self.groups.get_mut(desc.group as usize) {
            cached.flags = desc.flags();
        }
        Ok(())
    }

    /// The primary superblock's bytes, through the overlay.
    pub fn raw_superblock(&self) -> Result<Vec<u8>> {
        self.store
            .read_vec(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, "ext4 superblock")
    }

    /// Stores the primary superblock `raw` with its checksum.
    pub fn store_superblock(&mut self, mut raw: Vec<u8>) -> Result<()> {
        set_superblock_checksum(&self.sb, &mut raw);
        self.write_bytes(SUPERBLOCK_OFFSET, &raw, "ext4 superblock")
    }

    /// The superblock's (free blocks, free inodes).
    pub fn superblock_free(&self) -> Result<(u64, u64)> {
        let raw = self.raw_superblock()?;
        Ok(superblock_free(&self.sb, &raw))
    }

    /// Adds `blocks` and `inodes` (either may be negative) to the superblock's free
    /// counts.
    pub fn add_superblock_free(&mut self, blocks: i64, inodes: i64) -> Result<()> {
        let mut raw = self.raw_superblock()?;
        let (free_blocks, free_inodes) = superblock_free(&self.sb, &raw);
        if self.log.superblock.is_none() {
            self.log.superblock = Some((free_blocks, free_inodes));
        }
        // Saturating: a count the kernel left stale must not wrap around.
        let blocks = free_blocks
            .saturating_add_signed(blocks)
            .min(self.sb.blocks_count);
        let inodes = free_inodes
            .saturating_add_signed(inodes)
            .min(u64::from(self.sb.inodes_count));
        put_le32(&mut raw, SB_FREE_BLOCKS.0, blocks as u32);
        if self.sb.has_incompat(incompat::BIT64) {
            put_le32(&mut raw, SB_FREE_BLOCKS.1, (blocks >> 32) as u32);
        }
        put_le32(&mut raw, SB_FREE_INODES, inodes as u32);
        self.store_superblock(raw)
    }
}

fn superblock_free(sb: &super::super::superblock::Superblock, raw: &[u8]) -> (u64, u64) {
    let hi = if sb.has_incompat(incompat::BIT64) {
        u64::from(le32(raw, SB_FREE_BLOCKS.1))
    } else {
        0
    };
    (
        u64::from(le32(raw, SB_FREE_BLOCKS.0)) | hi << 32,
        u64::from(le32(raw, SB_FREE_INODES)),
    )
}

/// Stores the metadata_csum checksum of a superblock copy (nothing without it).
pub fn set_superblock_checksum(sb: &super::super::superblock::Superblock, raw: &mut [u8]) {
    if sb.has_metadata_csum() && raw.len() >= SUPERBLOCK_SIZE {
        let crc = crc32c_raw(!0, &raw[..SB_CHECKSUM]);
        put_le32(raw, SB_CHECKSUM, crc);
    }
}
