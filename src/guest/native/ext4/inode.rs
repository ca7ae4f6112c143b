//! ext4 inodes: locating one in its group's inode table, its metadata_csum check, and
//! the fields the reader uses.
//!
//! Owns the inode layout (128 bytes plus `i_extra_isize`) and its checksum, including
//! the per-inode checksum seed that extent, directory and xattr checksums chain from.
//! Must not: interpret `i_block` (see the extent, indirect and inline modules).

use super::superblock::Superblock;
use crate::guest::native::bytes::{le16, le32};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};

/// The root directory's inode number.
pub const ROOT_INO: u32 = 2;

/// `i_flags` bits.
pub mod flags {
    pub const INDEX: u32 = 0x1000;
    pub const HUGE_FILE: u32 = 0x40000;
    pub const EXTENTS: u32 = 0x80000;
    pub const INLINE_DATA: u32 = 0x1000_0000;
}

const GOOD_OLD_SIZE: usize = 128;
const CHECKSUM_LO: usize = 0x7c;
const EXTRA_ISIZE: usize = 0x80;
const CHECKSUM_HI: usize = 0x82;

/// Whether the inode stores the high 16 bits of its checksum (`i_extra_isize` covers
/// `i_checksum_hi`).
fn has_checksum_hi(raw: &[u8]) -> bool {
    raw.len() > GOOD_OLD_SIZE
        && GOOD_OLD_SIZE + usize::from(le16(raw, EXTRA_ISIZE)) >= CHECKSUM_HI + 2
}

/// The checksum stored in `raw` (16 bits when there is no `i_checksum_hi`).
fn stored_checksum(raw: &[u8]) -> u32 {
    let mut stored = u32::from(le16(raw, CHECKSUM_LO));
    if has_checksum_hi(raw) {
        stored |= u32::from(le16(raw, CHECKSUM_HI)) << 16;
    }
    stored
}

/// The metadata_csum checksum of the whole inode `raw` (its checksum fields counted
/// as zero) from the inode's seed; 16 bits when there is no `i_checksum_hi`.
pub fn checksum(inode_seed: u32, raw: &[u8]) -> u32 {
    let hi = has_checksum_hi(raw);
    let mut covered = raw.to_vec();
    covered[CHECKSUM_LO..CHECKSUM_LO + 2].fill(0);
    if hi {
        covered[CHECKSUM_HI..CHECKSUM_HI + 2].fill(0);
    }
    let crc = crc32c_raw(inode_seed, &covered);
    if hi {
        crc
    } else {
        crc & 0xffff
    }
}

/// Stores [`checksum`] in `raw` (which must be a whole inode of at least 128 bytes).
pub fn set_checksum(inode_seed: u32, raw: &mut [u8]) {
    let crc = checksum(inode_seed, raw);
    raw[CHECKSUM_LO..CHECKSUM_LO + 2].copy_from_slice(&(crc as u16).to_le_bytes());
    if has_checksum_hi(raw) {
        raw[CHECKSUM_HI..CHECKSUM_HI + 2].copy_from_slice(&((crc >> 16) as u16).to_le_bytes());
    }
}

/// The seed of an inode's checksums: the filesystem seed, the inode number, the
/// generation.
pub fn inode_seed(fs_seed: u32, number: u32, generation: u32) -> u32 {
    let seed = crc32c_raw(fs_seed, &number.to_le_bytes());
    crc32c_raw(seed, &generation.to_le_bytes())
}

/// The file type bits of `i_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InodeKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// A decoded, checksum-verified inode.
#[derive(Debug, Clone)]
pub struct Inode {
    pub number: u32,
    pub mode: u16,
    pub size: u64,
    pub links: u16,
    pub flags: u32,
    pub generation: u32,
    /// The 60 bytes of `i_block`: extent root, block pointers, or inline content.
    pub block: [u8; 60],
    /// Seed for the checksums of metadata owned by this inode.
    pub csum_seed: u32,
    /// The whole on-disk inode (for in-inode extended attributes).
    pub raw: Vec<u8>,
}

impl Inode {
    /// Decodes `raw` (the inode-size bytes of inode `number`) and checks its checksum.
    pub fn parse(sb: &Superblock, number: u32, raw: Vec<u8>, offset: u64) -> Result<Self> {
        let generation = le32(&raw, 0x64);
        let csum_seed = inode_seed(sb.csum_seed, number, generation);
        let extra = if raw.len() > GOOD_OLD_SIZE {
            usize::from(le16(&raw, EXTRA_ISIZE))
        } else {
            0
        };
        if GOOD_OLD_SIZE + extra > raw.len() {
            return Err(NativeError::malformed(
                "ext4 inode",
                offset,
                format!(
                    "inode {number}: extra size {extra} exceeds the inode size {}",
                    raw.len()
                ),
            ));
        }
        if sb.has_metadata_csum() {
            let stored = stored_checksum(&raw);
            let computed = checksum(csum_seed, &raw);
            if stored != computed {
                return Err(NativeError::Checksum {
                    structure: "ext4 inode",
                    offset,
                    stored,
                    computed,
                });
            }
        }
        let mut block = [0u8; 60];
        block.copy_from_slice(&raw[0x28..0x28 + 60]);
        Ok(Self {
            number,
            mode: le16(&raw, 0),
            size: u64::from(le32(&raw, 0x4)) | u64::from(le32(&raw, 0x6c)) << 32,
            links: le16(&raw, 0x1a),
            flags: le32(&raw, 0x20),
            generation,
            block,
            csum_seed,
            raw,
        })
    }

    /// The file type.
    pub fn kind(&self) -> InodeKind {
        match self.mode & 0o170_000 {
            0o100_000 => InodeKind::File,
            0o040_000 => InodeKind::Directory,
            0o120_000 => InodeKind::Symlink,
            _ => InodeKind::Other,
        }
    }

    /// Permission bits.
    pub fn permissions(&self) -> u32 {
        u32::from(self.mode & 0o7777)
    }

    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// The bytes after the 128-byte base and `i_extra_isize` (in-inode xattrs).
    pub fn xattr_area(&self) -> &[u8] {
        let extra = usize::from(le16(&self.raw, EXTRA_ISIZE));
        self.raw.get(GOOD_OLD_SIZE + extra..).unwrap_or_default()
    }
}
