//! A file's content: releasing every block it owns (truncate to zero), giving it new
//! content in freshly allocated blocks, and appending one block to a directory.
//!
//! New content is mapped the simplest way that stays valid: with extents, at most four
//! extents in the inode itself (no tree blocks); without, the twelve direct pointers
//! and one indirect block. Content that would need more is
//! [`NativeError::Unsupported`] (sysprep writes small configuration files). Must not:
//! touch directory entries or link counts.

use super::super::inode::{flags, Inode, InodeKind};
use super::super::Ext4;
use super::bitmap::Blocks;
use super::inode_out::RawInode;
use super::owned::owned_blocks;
use crate::guest::native::bytes::{le16, le32, put_le16, put_le32};
use crate::guest::native::error::{NativeError, Result};

const EXTENT_MAGIC: u16 = 0xf30a;
/// Extents that fit in `i_block` after the header.
const ROOT_EXTENTS: usize = 4;
const DIRECT: usize = 12;

/// An extent tree root with no extents.
pub fn empty_extent_root() -> [u8; 60] {
    let mut root = [0u8; 60];
    put_le16(&mut root, 0, EXTENT_MAGIC);
    put_le16(&mut root, 4, ROOT_EXTENTS as u16);
    root
}

/// A depth-0 extent root mapping `runs` one after the other from logical block 0.
fn extent_root(runs: &[Blocks]) -> [u8; 60] {
    let mut root = empty_extent_root();
    let mut logical = 0u64;
    for (i, run) in runs.iter().enumerate() {
        let at = 12 + i * 12;
        put_le32(&mut root, at, logical as u32);
        put_le16(&mut root, at + 4, run.len as u16);
        put_le16(&mut root, at + 6, (run.start >> 32) as u16);
        put_le32(&mut root, at + 8, run.start as u32);
        logical += run.len;
    }
    put_le16(&mut root, 2, runs.len() as u16);
    root
}

impl Ext4 {
    fn group_of_inode(&self, number: u32) -> u32 {
        number.saturating_sub(1) / self.sb.inodes_per_group
    }

    /// Frees every block `inode` owns through `i_block`.
    pub fn release_blocks(&mut self, inode: &Inode) -> Result<()> {
        for run in owned_blocks(self, inode)? {
            self.free_blocks(run.start, run.len)?;
        }
        Ok(())
    }

    /// Replaces the content of regular file `inode` with `data` (empty: truncate).
    pub fn set_content(&mut self, inode: &Inode, data: &[u8]) -> Result<Inode> {
        if inode.kind() != InodeKind::File {
            return Err(NativeError::malformed(
                "ext4 file",
                0,
                format!("inode {} is not a regular file", inode.number),
            ));
        }
        if inode.has_flag(flags::INLINE_DATA) {
            return Err(NativeError::unsupported(
                "ext4 file",
                "inline-data files are not rewritten natively",
            ));
        }
        let size = u64::from(self.sb.block_size);
        let blocks = (data.len() as u64).div_ceil(size);
        self.release_blocks(inode)?;
        let goal = self.group_of_inode(inode.number);
        let mut raw = RawInode::of(inode);
        let extents = inode.has_flag(flags::EXTENTS);
        let (pointers, mut owned) = if extents {
            let runs = self.alloc_blocks(goal, blocks, ROOT_EXTENTS)?;
            raw.set_block(&extent_root(&runs));
            (runs, blocks)
        } else {
            let per_block = size / 4;
            if blocks > DIRECT as u64 + per_block {
                return Err(NativeError::unsupported(
                    "ext4 file",
                    format!("{} bytes need a double indirect block", data.len()),
                ));
            }
            let runs = self.alloc_blocks(goal, blocks, usize::MAX)?;
            let mut flat = runs.iter().flat_map(|r| r.start..r.start + r.len);
            let mut block = [0u8; 60];
            for (i, physical) in flat.by_ref().take(DIRECT).enumerate() {
                put_le32(&mut block, i * 4, physical as u32);
            }
            let rest: Vec<u64> = flat.collect();
            let mut owned = blocks;
            if !rest.is_empty() {
                let indirect = self.alloc_blocks(goal, 1, 1)?[0].start;
                let mut table = vec![0u8; size as usize];
                for (i, physical) in rest.iter().enumerate() {
                    put_le32(&mut table, i * 4, *physical as u32);
                }
                self.write_block(indirect, &table, "ext4 indirect block")?;
                put_le32(&mut block, DIRECT * 4, indirect as u32);
                owned += 1;
            }
            raw.set_block(&block);
            (runs, owned)
        };
        let mut chunks = data.chunks(size as usize);
        for physical in pointers.iter().flat_map(|r| r.start..r.start + r.len) {
            let mut content = chunks.next().unwrap_or_default().to_vec();
            content.resize(size as usize, 0);
            self.write_block(physical, &content, "ext4 file block")?;
        }
        if raw.file_acl() != 0 {
            owned += 1;
        }
        raw.set_size(data.len() as u64);
        raw.set_fs_blocks(owned, self.sb.block_size);
        raw.touch(super::now());
        self.store_inode(raw)
    }

    /// Maps a newly allocated block at the end of directory `dir` (its size grows by
    /// a block); returns the block.
    pub fn append_block(&mut self, dir: &Inode) -> Result<u64> {
        let size = u64::from(self.sb.block_size);
        if !dir.size.is_multiple_of(size) {
            return Err(NativeError::malformed(
                "ext4 directory",
                0,
                format!("directory {} has size {}", dir.number, dir.size),
            ));
        }
        let logical = dir.size / size;
        let block = self.alloc_blocks(self.group_of_inode(dir.number), 1, 1)?[0].start;
        let mut raw = RawInode::of(dir);
        let mut root = raw.block();
        let full = || {
            NativeError::unsupported(
                "ext4 directory",
                format!(
                    "directory {} cannot grow without a deeper mapping",
                    dir.number
                ),
            )
        };
        if dir.has_flag(flags::EXTENTS) {
            let (entries, max, depth) = (
                usize::from(le16(&root, 2)),
                usize::from(le16(&root, 4)),
                le16(&root, 6),
            );
            if depth != 0 || entries > ROOT_EXTENTS || max > ROOT_EXTENTS {
                return Err(full());
            }
            let last = entries.checked_sub(1).map(|i| 12 + i * 12);
            let extend = last.filter(|&at| {
                let len = u64::from(le16(&root, at + 4));
                let start = u64::from(le16(&root, at + 6)) << 32 | u64::from(le32(&root, at + 8));
                u64::from(le32(&root, at)) + len == logical && start + len == block && len < 32768
            });
            if let Some(at) = extend {
                let len = le16(&root, at + 4);
                put_le16(&mut root, at + 4, len + 1);
            } else if entries < max {
                let at = 12 + entries * 12;
                put_le32(&mut root, at, logical as u32);
                put_le16(&mut root, at + 4, 1);
                put_le16(&mut root, at + 6, (block >> 32) as u16);
                put_le32(&mut root, at + 8, block as u32);
                put_le16(&mut root, 2, entries as u16 + 1);
            } else {
                return Err(full());
            }
        } else if logical < DIRECT as u64 {
            put_le32(&mut root, logical as usize * 4, block as u32);
        } else {
            return Err(full());
        }
        raw.set_block(&root);
        raw.set_size(dir.size + size);
        raw.add_fs_blocks(1, self.sb.block_size)?;
        self.store_inode(raw)?;
        Ok(block)
    }
}
