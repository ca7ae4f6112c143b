//! Directory entries: removing one (merged into the entry before it, as the kernel
//! does, or marked unused when it is first in its block) and inserting one (into the
//! slack of an entry, into an unused entry, or — for a linear directory — into a new
//! block appended to it), with the leaf block's checksum tail recomputed.
//!
//! An indexed (htree) directory gets a new name only in the leaf its hash selects
//! ([`super::htree`]); when that leaf is full the insert fails with
//! [`NativeError::Unsupported`] instead of splitting it. Inline directories are not
//! edited. Must not: change link counts or inodes other than the directory's own
//! (size, blocks, times).

use super::super::blockmap::{self, Run};
use super::super::dir::MAX_DIR_BYTES;
use super::super::inode::{flags, Inode};
use super::super::superblock::{compat, incompat};
use super::super::Ext4;
use super::inode_out::RawInode;
use crate::guest::native::bytes::{byte, le16, le32, put_byte, put_le16, put_le32};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};

const HEADER: usize = 8;
const TAIL: usize = 12;
const TAIL_FILE_TYPE: u8 = 0xde;
/// Longest name an entry holds.
pub const MAX_NAME: usize = 255;

/// `file_type` values of directory entries.
pub mod file_type {
    pub const REGULAR: u8 = 1;
    pub const DIRECTORY: u8 = 2;
    pub const SYMLINK: u8 = 7;
}

/// One entry of a block: where it is, its record length, inode and name length.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: usize,
    rec_len: usize,
    inode: u32,
    name_len: usize,
}

fn entry_len(name_len: usize) -> usize {
    (HEADER + name_len).div_ceil(4) * 4
}

fn rec_len(data: &[u8], at: usize) -> usize {
    match le16(data, at + 4) {
        0 | 0xffff if data.len() == 65536 => 65536,
        len => usize::from(len),
    }
}

fn put_rec_len(data: &mut [u8], at: usize, len: usize) {
    put_le16(data, at + 4, if len >= 65536 { 0xffff } else { len as u16 });
}

impl Ext4 {
    fn has_filetype(&self) -> bool {
        self.sb.has_incompat(incompat::FILETYPE)
    }

    /// Bytes of a leaf block that hold entries (the rest is the checksum tail).
    fn entries_len(&self) -> usize {
        let size = self.sb.block_size as usize;
        if self.sb.has_metadata_csum() {
            size - TAIL
        } else {
            size
        }
    }

    /// The entries of a leaf block, checked to tile its entry area exactly.
    fn slots(&self, data: &[u8], block: u64) -> Result<Vec<Slot>> {
        let end = self.entries_len();
        let mut slots = Vec::new();
        let mut at = 0;
        while at < end {
            let len = rec_len(data, at);
            let name_len = if self.has_filetype() {
                usize::from(byte(data, at + 6))
            } else {
                usize::from(le16(data, at + 6))
            };
            let fits = len >= HEADER && len.is_multiple_of(4) && at + len <= end;
            if !fits || (le32(data, at) != 0 && entry_len(name_len) > len) {
                return Err(NativeError::malformed(
                    "ext4 directory entry",
                    block.saturating_mul(data.len() as u64) + at as u64,
                    format!("record length {len}, name length {name_len}"),
                ));
            }
            slots.push(Slot {
                at,
                rec_len: len,
                inode: le32(data, at),
                name_len,
            });
            at += len;
        }
        Ok(slots)
    }

    /// The blocks of directory `dir`: `(logical, physical)`.
    fn dir_blocks(&self, dir: &Inode) -> Result<Vec<(u64, u64)>> {
        if dir.has_flag(flags::INLINE_DATA) {
            return Err(NativeError::unsupported(
                "ext4 directory",
                "inline directories are not edited natively",
            ));
        }
        NativeError::check_limit("ext4 directory bytes", dir.size, MAX_DIR_BYTES)?;
        let blocks = dir.size.div_ceil(u64::from(self.sb.block_size));
        let mut found = Vec::new();
        for Run {
            logical,
            physical,
            len,
        } in blockmap::map(self, dir, blocks)?
        {
            found.extend((0..len).map(|i| (logical + i, physical + i)));
        }
        Ok(found)
    }

    /// Leaf `logical` of `dir` read, or `None` for an htree root or interior node.
    fn leaf(&self, dir: &Inode, logical: u64, physical: u64) -> Result<Option<Vec<u8>>> {
        let data = self.read_block(physical, "ext4 directory block")?;
        let indexed = dir.has_flag(flags::INDEX);
        let dx_root = indexed && logical == 0;
        let dx_node = indexed && le32(&data, 0) == 0 && rec_len(&data, 0) == data.len();
        Ok((!dx_root && !dx_node).then_some(data))
    }

    /// Stores a leaf block of `dir` with its checksum tail.
    fn store_leaf(&mut self, dir: &Inode, block: u64, mut data: Vec<u8>) -> Result<()> {
        if self.sb.has_metadata_csum() {
            let tail = data.len() - TAIL;
            let crc = crc32c_raw(dir.csum_seed, &data[..tail]);
            put_le32(&mut data, tail + 8, crc);
        }
        self.log.directories.insert(dir.number);
        self.write_block(block, &data, "ext4 directory block")
    }

    /// Removes the entry `name` from `dir`; returns the inode it named, `None` when
    /// there is no such entry.
    pub fn remove_entry(&mut self, dir: &Inode, name: &[u8]) -> Result<Option<u32>> {
        if name == b"." || name == b".." {
            return Err(NativeError::malformed(
                "ext4 directory entry",
                0,
                "cannot remove . or ..",
            ));
        }
        for (logical, block) in self.dir_blocks(dir)? {
            let Some(mut data) = self.leaf(dir, logical, block)? else {
                continue;
            };
            let slots = self.slots(&data, block)?;
            let found = slots.iter().position(|s| {
                s.inode != 0 && data.get(s.at + HEADER..s.at + HEADER + s.name_len) == Some(name)
            });
            let Some(index) = found else { continue };
            let slot = slots[index];
            // The entry's bytes are cleared so the name does not linger in the image.
            data[slot.at..slot.at + HEADER + slot.name_len].fill(0);
            match index.checked_sub(1).map(|i| slots[i]) {
                Some(prev) => put_rec_len(&mut data, prev.at, prev.rec_len + slot.rec_len),
                None => put_rec_len(&mut data, slot.at, slot.rec_len),
            }
            self.store_leaf(dir, block, data)?;
            self.touch_dir(dir)?;
            return Ok(Some(slot.inode));
        }
        Ok(None)
    }

    /// Sets the directory's change and modification times.
    fn touch_dir(&mut self, dir: &Inode) -> Result<Inode> {
        let current = self.inode(dir.number)?;
        let mut raw = RawInode::of(&current);
        raw.touch(super::now());
        self.store_inode(raw)
    }

    /// Adds the entry `name` → `inode` of `kind` (a [`file_type`] value) to `dir`.
    pub fn insert_entry(&mut self, dir: &Inode, name: &[u8], inode: u32, kind: u8) -> Result<()> {
        if name.is_empty() || name.len() > MAX_NAME || name.contains(&b'/') || name.contains(&0) {
            return Err(NativeError::malformed(
                "ext4 directory entry",
                0,
                format!("{:?} is not a valid name", String::from_utf8_lossy(name)),
            ));
        }
        let needed = entry_len(name.len());
        let indexed = dir.has_flag(flags::INDEX);
        if indexed && self.sb.feature_compat & compat::DIR_INDEX == 0 {
            return Err(NativeError::unsupported(
                "ext4 directory",
                "an indexed directory without dir_index",
            ));
        }
        let target = if indexed {
            Some(self.htree_leaf(dir, name)?)
        } else {
            None
        };
        for (logical, block) in self.dir_blocks(dir)? {
            if target.is_some_and(|t| t != logical) {
                continue;
            }
            let Some(mut data) = self.leaf(dir, logical, block)? else {
                continue;
            };
            for slot in self.slots(&data, block)? {
                let used = if slot.inode == 0 {
                    0
                } else {
                    entry_len(slot.name_len)
                };
                if slot.rec_len < used + needed {
                    continue;
                }
                let at = if used == 0 {
                    slot.at
                } else {
                    put_rec_len(&mut data, slot.at, used);
                    slot.at + used
                };
                self.put_entry(&mut data, at, slot.rec_len - used, name, inode, kind);
                self.store_leaf(dir, block, data)?;
                self.touch_dir(dir)?;
                return Ok(());
            }
        }
        if indexed {
            return Err(NativeError::unsupported(
                "ext4 directory",
                format!("the htree leaf of directory {} for this name is full (splitting is not implemented)", dir.number),
            ));
        }
        self.append_leaf(dir, name, inode, kind)
    }

    fn put_entry(&self, data: &mut [u8], at: usize, len: usize, name: &[u8], inode: u32, kind: u8) {
        data[at..at + len].fill(0);
        put_le32(data, at, inode);
        put_rec_len(data, at, len);
        if self.has_filetype() {
            put_byte(data, at + 6, name.len() as u8);
            put_byte(data, at + 7, kind);
        } else {
            put_le16(data, at + 6, name.len() as u16);
        }
        data[at + HEADER..at + HEADER + name.len()].copy_from_slice(name);
    }

    /// Appends a block holding only the new entry to linear directory `dir`.
    fn append_leaf(&mut self, dir: &Inode, name: &[u8], inode: u32, kind: u8) -> Result<()> {
        let size = self.sb.block_size as usize;
        let mut data = vec![0u8; size];
        self.put_entry(&mut data, 0, self.entries_len(), name, inode, kind);
        if self.sb.has_metadata_csum() {
            let tail = size - TAIL;
            put_rec_len(&mut data, tail, TAIL);
            put_byte(&mut data, tail + 7, TAIL_FILE_TYPE);
        }
        let block = self.append_block(dir)?;
        let dir = self.inode(dir.number)?;
        self.store_leaf(&dir, block, data)?;
        self.touch_dir(&dir)?;
        Ok(())
    }
}
