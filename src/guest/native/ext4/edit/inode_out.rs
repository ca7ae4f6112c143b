//! Writing inodes back: field setters on an inode's raw bytes, and
//! [`Ext4::store_inode`], which recomputes the checksum (metadata_csum) and puts the
//! inode into its slot of the inode table through the overlay.
//!
//! Owns the raw offsets of the fields edits change. Must not: decide what the fields
//! should be (see [`super::ops`] and [`super::content`]).

use super::super::inode::{self, flags, Inode};
use super::super::superblock::incompat;
use super::super::Ext4;
use crate::guest::native::bytes::{le16, le32, put_le16, put_le32};
use crate::guest::native::error::{NativeError, Result};

const MODE: usize = 0x00;
const SIZE_LO: usize = 0x04;
const ATIME: usize = 0x08;
const CTIME: usize = 0x0c;
const MTIME: usize = 0x10;
const DTIME: usize = 0x14;
const LINKS: usize = 0x1a;
const BLOCKS_LO: usize = 0x1c;
const FLAGS: usize = 0x20;
const BLOCK: usize = 0x28;
const GENERATION: usize = 0x64;
const FILE_ACL_LO: usize = 0x68;
const SIZE_HI: usize = 0x6c;
const BLOCKS_HI: usize = 0x74;
const FILE_ACL_HI: usize = 0x76;
const EXTRA_ISIZE: usize = 0x80;
const CTIME_EXTRA: usize = 0x84;
const MTIME_EXTRA: usize = 0x88;
const ATIME_EXTRA: usize = 0x8c;
const CRTIME: usize = 0x90;

/// Room in `i_extra_isize` new inodes get (the kernel's and mke2fs's default).
pub const NEW_EXTRA_ISIZE: u16 = 32;

/// An inode's raw bytes being edited.
#[derive(Debug, Clone)]
pub struct RawInode {
    pub number: u32,
    pub bytes: Vec<u8>,
}

impl RawInode {
    /// The raw bytes of a read inode.
    pub fn of(inode: &Inode) -> Self {
        Self {
            number: inode.number,
            bytes: inode.raw.clone(),
        }
    }

    /// A zeroed inode of `size` bytes with `mode`, one link, times `now`, and an
    /// empty extent tree when `extents`.
    pub fn new(number: u32, size: u16, mode: u16, now: u32, extents: bool) -> Self {
        let mut raw = Self {
            number,
            bytes: vec![0; usize::from(size)],
        };
        put_le16(&mut raw.bytes, MODE, mode);
        put_le16(&mut raw.bytes, LINKS, 1);
        for field in [ATIME, CTIME, MTIME] {
            put_le32(&mut raw.bytes, field, now);
        }
        if size >= 128 + NEW_EXTRA_ISIZE {
            put_le16(&mut raw.bytes, EXTRA_ISIZE, NEW_EXTRA_ISIZE);
            put_le32(&mut raw.bytes, CRTIME, now);
        }
        if extents {
            raw.set_flags(flags::EXTENTS);
            raw.set_block(&super::content::empty_extent_root());
        }
        raw
    }

    pub fn links(&self) -> u16 {
        le16(&self.bytes, LINKS)
    }

    pub fn set_links(&mut self, links: u16) {
        put_le16(&mut self.bytes, LINKS, links);
    }

    pub fn flags(&self) -> u32 {
        le32(&self.bytes, FLAGS)
    }

    pub fn set_flags(&mut self, value: u32) {
        put_le32(&mut self.bytes, FLAGS, value);
    }

    pub fn set_size(&mut self, size: u64) {
        put_le32(&mut self.bytes, SIZE_LO, size as u32);
        put_le32(&mut self.bytes, SIZE_HI, (size >> 32) as u32);
    }

    /// Sets `i_blocks` from a count of filesystem blocks (in 512-byte units, so the
    /// huge_file flag is cleared).
    pub fn set_fs_blocks(&mut self, blocks: u64, block_size: u32) {
        let sectors = blocks.saturating_mul(u64::from(block_size / 512));
        put_le32(&mut self.bytes, BLOCKS_LO, sectors as u32);
        put_le16(&mut self.bytes, BLOCKS_HI, (sectors >> 32) as u16);
        let flags = self.flags() & !flags::HUGE_FILE;
        self.set_flags(flags);
    }

    /// Adds `blocks` filesystem blocks to `i_blocks`; fails for a huge_file inode
    /// (counted in filesystem blocks), which is never a small directory.
    pub fn add_fs_blocks(&mut self, blocks: u64, block_size: u32) -> Result<()> {
        if self.flags() & flags::HUGE_FILE != 0 {
            return Err(NativeError::unsupported(
                "ext4 inode",
                format!("inode {} counts its blocks in huge_file units", self.number),
            ));
        }
        let sectors =
            u64::from(le32(&self.bytes, BLOCKS_LO)) | u64::from(le16(&self.bytes, BLOCKS_HI)) << 32;
        let sectors = sectors.saturating_add(blocks.saturating_mul(u64::from(block_size / 512)));
        put_le32(&mut self.bytes, BLOCKS_LO, sectors as u32);
        put_le16(&mut self.bytes, BLOCKS_HI, (sectors >> 32) as u16);
        Ok(())
    }

    /// `i_block`: the extent root, block pointers or inline bytes.
    pub fn block(&self) -> [u8; 60] {
        let mut block = [0; 60];
        block.copy_from_slice(&self.bytes[BLOCK..BLOCK + 60]);
        block
    }

    pub fn set_block(&mut self, block: &[u8; 60]) {
        self.bytes[BLOCK..BLOCK + 60].copy_from_slice(block);
    }

    /// The external extended-attribute block (0 when none).
    pub fn file_acl(&self) -> u64 {
        u64::from(le32(&self.bytes, FILE_ACL_LO)) | u64::from(le16(&self.bytes, FILE_ACL_HI)) << 32
    }

    pub fn generation(&self) -> u32 {
        le32(&self.bytes, GENERATION)
    }

    /// Sets the change and modification times (the nanosecond fields to zero).
    pub fn touch(&mut self, now: u32) {
        put_le32(&mut self.bytes, CTIME, now);
        put_le32(&mut self.bytes, MTIME, now);
        if self.has_extra(MTIME_EXTRA + 4) {
            put_le32(&mut self.bytes, CTIME_EXTRA, 0);
            put_le32(&mut self.bytes, MTIME_EXTRA, 0);
        }
        if self.has_extra(ATIME_EXTRA + 4) {
            put_le32(&mut self.bytes, ATIME_EXTRA, 0);
        }
    }

    /// Marks the inode deleted at `now` (links and size zero).
    pub fn delete(&mut self, now: u32) {
        self.set_links(0);
        self.set_size(0);
        put_le32(&mut self.bytes, DTIME, now);
        put_le32(&mut self.bytes, CTIME, now);
        if self.has_extra(CTIME_EXTRA + 4) {
            put_le32(&mut self.bytes, CTIME_EXTRA, 0);
        }
    }

    fn has_extra(&self, end: usize) -> bool {
        self.bytes.len() > 128 && 128 + usize::from(le16(&self.bytes, EXTRA_ISIZE)) >= end
    }
}

impl Ext4 {
    /// Writes `raw` into its slot with a fresh checksum and returns it decoded.
    pub fn store_inode(&mut self, mut raw: RawInode) -> Result<Inode> {
        if raw.bytes.len() != usize::from(self.sb.inode_size) {
            return Err(NativeError::malformed(
                "ext4 inode",
                0,
                format!("inode {} of {} bytes", raw.number, raw.bytes.len()),
            ));
        }
        let seed = inode::inode_seed(self.sb.csum_seed, raw.number, raw.generation());
        if self.sb.has_metadata_csum() {
            inode::set_checksum(seed, &mut raw.bytes);
        }
        let offset = self.inode_offset(raw.number)?;
        self.write_bytes(offset, &raw.bytes, "ext4 inode")?;
        self.log.inodes.insert(raw.number);
        Inode::parse(&self.sb, raw.number, raw.bytes, offset)
    }

    /// Whether new files get extent trees.
    pub(super) fn uses_extents(&self) -> bool {
        self.sb.has_incompat(incompat::EXTENTS)
    }
}
