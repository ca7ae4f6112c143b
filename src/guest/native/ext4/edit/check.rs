//! The self-check run before edits may be committed: the filesystem as the overlay
//! now shows it must open (superblock and every group descriptor checksum), every
//! group touched must have bitmaps agreeing with its descriptor's counts, the
//! superblock's free counts must have moved exactly as the touched groups' did, every
//! inode written must decode with a valid checksum and, when in use, map only blocks
//! marked in use, and every directory changed must read back without duplicate names.
//!
//! Owns those checks. Must not: change anything.

use std::collections::BTreeSet;

use super::super::blockmap;
use super::super::group;
use super::super::inode::InodeKind;
use super::super::superblock::Superblock;
use super::super::Ext4;
use super::desc::{FREE_BLOCKS, FREE_INODES};
use super::owned::owned_blocks;
use crate::guest::native::error::{NativeError, Result};

fn failed(detail: String) -> NativeError {
    NativeError::malformed("ext4 self-check", 0, detail)
}

impl Ext4 {
    /// Checks the edited filesystem (see the module comment).
    pub fn self_check(&self) -> Result<()> {
        let raw = self.raw_superblock()?;
        let sb = Superblock::parse(&raw, self.store.volume().len())?;
        group::read_table(&self.store, &sb)?;
        let (mut blocks_delta, mut inodes_delta) = (0i128, 0i128);
        for (&number, &(blocks_before, inodes_before)) in &self.log.groups {
            let desc = self.raw_desc(number)?;
            let (blocks, inodes) = (
                u64::from(desc.get(FREE_BLOCKS)),
                u64::from(desc.get(FREE_INODES)),
            );
            let (counted_blocks, counted_inodes) = self.count_free(number)?;
            if counted_blocks.is_some_and(|c| c != blocks)
                || counted_inodes.is_some_and(|c| c != inodes)
            {
                return Err(failed(format!(
                    "group {number}: descriptor says {blocks} free blocks and {inodes} free inodes, bitmaps {counted_blocks:?} and {counted_inodes:?}"
                )));
            }
            blocks_delta += i128::from(blocks) - i128::from(blocks_before);
            inodes_delta += i128::from(inodes) - i128::from(inodes_before);
        }
        if let Some((blocks_before, inodes_before)) = self.log.superblock {
            let (blocks, inodes) = self.superblock_free()?;
            let moved = (
                i128::from(blocks) - i128::from(blocks_before),
                i128::from(inodes) - i128::from(inodes_before),
            );
            if moved != (blocks_delta, inodes_delta) {
                return Err(failed(format!(
                    "the superblock's free counts moved by {moved:?}, the groups' by {:?}",
                    (blocks_delta, inodes_delta)
                )));
            }
        }
        for &number in &self.log.inodes {
            let inode = self.inode(number)?;
            if inode.links == 0 {
                if self.inode_in_use(number)? {
                    return Err(failed(format!(
                        "inode {number} has no links but is marked in use"
                    )));
                }
                continue;
            }
            if !self.inode_in_use(number)? {
                return Err(failed(format!("inode {number} is linked but marked free")));
            }
            let blocks = inode.size.div_ceil(u64::from(self.sb.block_size));
            if inode.kind() != InodeKind::Other {
                blockmap::map(self, &inode, blocks)?;
            }
            for run in owned_blocks(self, &inode)? {
                if !self.blocks_in_use(run.start, run.len)? {
                    return Err(failed(format!(
                        "inode {number} owns blocks {}+{} not all marked in use",
                        run.start, run.len
                    )));
                }
            }
        }
        for &number in &self.log.directories {
            let dir = self.inode(number)?;
            // Removed since (its number may even be a new file's by now).
            if dir.links == 0 || dir.kind() != InodeKind::Directory {
                continue;
            }
            let mut names = BTreeSet::new();
            for entry in self.read_dir(&dir)? {
                if !names.insert(entry.name.clone()) {
                    return Err(failed(format!(
                        "directory {number} holds {:?} twice",
                        String::from_utf8_lossy(&entry.name)
                    )));
                }
            }
        }
        Ok(())
    }
}
