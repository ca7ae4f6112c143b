//! Every block a file owns, data and metadata alike: the leaves of its extent tree
//! (initialised or not) and the tree's index blocks, or its direct pointers and
//! indirect blocks — what must be freed when the file goes or is truncated.
//!
//! Owns that walk and its bounds: tree blocks at most [`MAX_TREE_BLOCKS`], runs at most
//! [`MAX_RUNS`], depth checked level by level (no cycles), every block inside the
//! filesystem. Must not: free anything (see [`super::bitmap`]); it only reads.

use super::super::blockmap::BlockRange;
use super::super::extent::MAX_DEPTH;
use super::super::inode::{flags, Inode, InodeKind};
use super::super::Ext4;
use super::bitmap::Blocks;
use crate::guest::native::bytes::{le16, le32};
use crate::guest::native::error::{NativeError, Result};

/// Tree (extent index or indirect) blocks read for one file.
pub const MAX_TREE_BLOCKS: u64 = 1 << 16;
/// Runs collected for one file (adjacent runs are merged).
pub const MAX_RUNS: usize = 1 << 20;

const EXTENT_MAGIC: u16 = 0xf30a;
const UNINIT_LEN: u16 = 32768;

/// The blocks `inode` owns through `i_block` (its xattr block is not among them).
/// Inline-data inodes and fast symlinks own none.
pub fn owned_blocks(fs: &Ext4, inode: &Inode) -> Result<Vec<Blocks>> {
    let mut walk = Owned {
        fs,
        ino: inode.number,
        tree_blocks: 0,
        runs: Vec::new(),
    };
    // A fast symlink keeps its target in i_block (e2fsprogs' rule: a symlink of 1 to
    // 59 bytes).
    let fast_symlink = inode.kind() == InodeKind::Symlink && inode.size > 0 && inode.size < 60;
    if inode.has_flag(flags::INLINE_DATA) || fast_symlink {
        return Ok(Vec::new());
    }
    if inode.has_flag(flags::EXTENTS) {
        walk.extent_node(&inode.block, None, 0)?;
    } else {
        for (index, pointer) in inode.block.chunks_exact(4).enumerate() {
            let level = index.saturating_sub(11) as u32; // 0 direct, 1..=3 indirect
            walk.pointer(le32(pointer, 0), level)?;
        }
    }
    Ok(walk.runs)
}

struct Owned<'a> {
    fs: &'a Ext4,
    ino: u32,
    tree_blocks: u64,
    runs: Vec<Blocks>,
}

impl Owned<'_> {
    fn add(&mut self, start: u64, len: u64, at: u64) -> Result<()> {
        let range = BlockRange::new(self.fs, start, len, at)?;
        if let Some(last) = self.runs.last_mut() {
            if last.start + last.len == range.start {
                last.len += range.len;
                return Ok(());
            }
        }
        NativeError::check_limit(
            "ext4 runs of one file",
            self.runs.len() as u64 + 1,
            MAX_RUNS as u64,
        )?;
        self.runs.push(Blocks {
            start: range.start,
            len: range.len,
        });
        Ok(())
    }

    fn tree_block(&mut self, block: u64, at: u64) -> Result<Vec<u8>> {
        self.tree_blocks += 1;
        NativeError::check_limit(
            "ext4 tree blocks of one file",
            self.tree_blocks,
            MAX_TREE_BLOCKS,
        )?;
        self.add(block, 1, at)?;
        self.fs.read_block(block, "ext4 tree block")
    }

    fn extent_node(&mut self, bytes: &[u8], expected_depth: Option<u16>, block: u64) -> Result<()> {
        let offset = block.saturating_mul(u64::from(self.fs.sb.block_size));
        let bad = |detail: String| {
            NativeError::malformed(
                "ext4 extent tree",
                offset,
                format!("inode {}: {detail}", self.ino),
            )
        };
        if le16(bytes, 0) != EXTENT_MAGIC {
            return Err(bad("no extent header magic".into()));
        }
        let (entries, max, depth) = (le16(bytes, 2), le16(bytes, 4), le16(bytes, 6));
        if usize::from(entries) > (bytes.len() - 12) / 12 || entries > max {
            return Err(bad(format!("{entries} entries, max {max}")));
        }
        match expected_depth {
            None if depth > MAX_DEPTH => return Err(bad(format!("depth {depth}"))),
            Some(expected) if depth != expected => {
                return Err(bad(format!("depth {depth}, expected {expected}")))
            }
            _ => {}
        }
        for index in 0..usize::from(entries) {
            let entry = &bytes[12 + index * 12..24 + index * 12];
            if depth == 0 {
                let raw_len = le16(entry, 4);
                let len = if raw_len > UNINIT_LEN {
                    raw_len - UNINIT_LEN
                } else {
                    raw_len
                };
                let physical = u64::from(le16(entry, 6)) << 32 | u64::from(le32(entry, 8));
                if len > 0 {
                    self.add(physical, u64::from(len), offset)?;
                }
            } else {
                let child = u64::from(le16(entry, 8)) << 32 | u64::from(le32(entry, 4));
                let data = self.tree_block(child, offset)?;
                self.extent_node(&data, Some(depth - 1), child)?;
            }
        }
        Ok(())
    }

    /// A block pointer of `level` (0 data, 1 single, 2 double, 3 triple indirect).
    fn pointer(&mut self, block: u32, level: u32) -> Result<()> {
        if block == 0 {
            return Ok(());
        }
        if level == 0 {
            return self.add(block.into(), 1, 0);
        }
        let data = self.tree_block(block.into(), 0)?;
        for pointer in data.chunks_exact(4) {
            self.pointer(le32(pointer, 0), level - 1)?;
        }
        Ok(())
    }
}
