//! Where a file's blocks are: [`Run`]s of logical → physical blocks, from an extent
//! tree ([`super::extent`]) or from the direct and indirect block pointers of ext2/3
//! (here).
//!
//! Owns the indirect-block walk and the check that every physical block lies inside
//! the filesystem ([`BlockRange`]). The walk stops at `max_blocks` logical blocks, which
//! callers bound by what they are willing to read, so a hostile `i_size` cannot make it
//! long. Holes are simply absent from the result.

use super::inode::{flags, Inode};
use super::{extent, Ext4};
use crate::guest::native::bytes::le32;
use crate::guest::native::error::{NativeError, Result};

/// `len` blocks of a file from logical block `logical` stored at `physical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
}

/// A range of filesystem blocks checked to lie inside the filesystem.
#[derive(Debug, Clone, Copy)]
pub struct BlockRange {
    pub start: u64,
    pub len: u64,
}

impl BlockRange {
    /// Checks `[start, start + len)` against the filesystem; `at` is where the pointer
    /// was read, for the error.
    pub fn new(fs: &Ext4, start: u64, len: u64, at: u64) -> Result<Self> {
        let inside = start >= u64::from(fs.sb.first_data_block)
            && start
                .checked_add(len)
                .is_some_and(|end| end <= fs.sb.blocks_count);
        if !inside {
            return Err(NativeError::malformed(
                "ext4 block pointer",
                at,
                format!(
                    "blocks {start}+{len} lie outside the {} blocks",
                    fs.sb.blocks_count
                ),
            ));
        }
        Ok(Self { start, len })
    }
}

/// The runs of `inode`'s first `max_blocks` logical blocks, in logical order.
pub fn map(fs: &Ext4, inode: &Inode, max_blocks: u64) -> Result<Vec<Run>> {
    if inode.has_flag(flags::EXTENTS) {
        let mut runs = extent::map(fs, inode, max_blocks)?;
        runs.sort_by_key(|r| r.logical);
        return Ok(runs);
    }
    let mut walk = Indirect {
        fs,
        max_blocks,
        runs: Vec::new(),
    };
    let pointers: Vec<u32> = (0..15).map(|i| le32(&inode.block, i * 4)).collect();
    for (logical, &block) in (0u64..).zip(&pointers[..12]) {
        walk.leaf(logical, block, 0)?;
    }
    let per_block = u64::from(fs.sb.block_size / 4);
    let mut first = 12u64;
    for (level, &block) in (1u32..).zip(&pointers[12..]) {
        walk.indirect(block, level, first)?;
        first = first.saturating_add(per_block.saturating_pow(level));
    }
    Ok(walk.runs)
}

struct Indirect<'a> {
    fs: &'a Ext4,
    max_blocks: u64,
    runs: Vec<Run>,
}

impl Indirect<'_> {
    fn leaf(&mut self, logical: u64, block: u32, at: u64) -> Result<()> {
        if block == 0 || logical >= self.max_blocks {
            return Ok(());
        }
        let range = BlockRange::new(self.fs, block.into(), 1, at)?;
        match self.runs.last_mut() {
            Some(run)
                if run.logical + run.len == logical && run.physical + run.len == range.start =>
            {
                run.len += 1
            }
            _ => self.runs.push(Run {
                logical,
                physical: range.start,
                len: 1,
            }),
        }
        Ok(())
    }

    /// The indirect block `block` of `level` (1 single, 2 double, 3 triple) mapping
    /// logical blocks from `first`.
    fn indirect(&mut self, block: u32, level: u32, first: u64) -> Result<()> {
        if block == 0 || first >= self.max_blocks {
            return Ok(());
        }
        let range = BlockRange::new(self.fs, block.into(), 1, 0)?;
        let data = self.fs.read_block(range.start, "ext4 indirect block")?;
        let at = range.start * u64::from(self.fs.sb.block_size);
        let per_block = u64::from(self.fs.sb.block_size / 4);
        let span = per_block.saturating_pow(level - 1);
        for (index, pointer) in (0u64..).zip(data.chunks_exact(4)) {
            let child = le32(pointer, 0);
            let logical = first.saturating_add(index.saturating_mul(span));
            if level == 1 {
                self.leaf(logical, child, at + index * 4)?;
            } else {
                self.indirect(child, level - 1, logical)?;
            }
        }
        Ok(())
    }
}
