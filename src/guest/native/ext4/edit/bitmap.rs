//! Allocating and freeing blocks and inodes: the group's bitmap bit, the group
//! descriptor's counters (and, with metadata_csum, the bitmap checksum it stores) and
//! the superblock's free counts, always together.
//!
//! Allocation is the simplest correct one: a free run long enough in the goal group or
//! the groups after it, else first-fit pieces; groups whose bitmaps are not initialised
//! (`BLOCK_UNINIT`, `INODE_UNINIT`) are skipped rather than initialised. Freeing a block
//! or an inode that the bitmap already shows free is an inconsistent filesystem: an
//! error, never a silent double free. Must not: decide what a block is used for.

use super::super::Ext4;
use super::desc::{
    bg_flags, RawDesc, BLOCK_BITMAP_CSUM, FREE_BLOCKS, FREE_INODES, INODE_BITMAP_CSUM,
    ITABLE_UNUSED, USED_DIRS,
};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};

/// Longest run one extent can map (initialised extents hold at most 32768 blocks).
pub const MAX_RUN: u64 = 32768;

/// A run of filesystem blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    pub start: u64,
    pub len: u64,
}

fn bit(bitmap: &[u8], index: u64) -> bool {
    bitmap
        .get((index / 8) as usize)
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
}

fn set_bit(bitmap: &mut [u8], index: u64, value: bool) {
    if let Some(byte) = bitmap.get_mut((index / 8) as usize) {
        if value {
            *byte |= 1 << (index % 8);
        } else {
            *byte &= !(1 << (index % 8));
        }
    }
}

impl Ext4 {
    /// Whether group descriptors carry checksums and uninit flags.
    pub(super) fn has_group_csum(&self) -> bool {
        self.sb.has_metadata_csum() || self.sb.has_gdt_csum()
    }

    /// First block of group `group` and how many blocks it has.
    pub(super) fn group_blocks(&self, group: u32) -> (u64, u64) {
        let per = u64::from(self.sb.blocks_per_group);
        let first = u64::from(self.sb.first_data_block) + u64::from(group) * per;
        (first, per.min(self.sb.blocks_count.saturating_sub(first)))
    }

    /// The group holding block `block`.
    pub(super) fn group_of_block(&self, block: u64) -> u32 {
        let data = block.saturating_sub(u64::from(self.sb.first_data_block));
        (data / u64::from(self.sb.blocks_per_group)) as u32
    }

    fn flag_set(&self, desc: &RawDesc, flag: u16) -> bool {
        self.has_group_csum() && desc.flags() & flag != 0
    }

    /// Stores a bitmap and, with metadata_csum, its checksum (over `covered` bytes)
    /// in `desc` at `field`.
    fn store_bitmap(
        &mut self,
        desc: &mut RawDesc,
        block: u64,
        bitmap: &[u8],
        covered: usize,
        field: (usize, usize),
    ) -> Result<()> {
        if self.sb.has_metadata_csum() {
            desc.set(field, crc32c_raw(self.sb.csum_seed, &bitmap[..covered]));
        }
        self.write_block(block, bitmap, "ext4 bitmap")
    }

    fn block_bitmap(&self, group: u32) -> Result<(RawDesc, u64, Vec<u8>)> {
        let desc = self.raw_desc(group)?;
        let block = self.groups[group as usize].block_bitmap;
        let bitmap = self.read_block(block, "ext4 block bitmap")?;
        Ok((desc, block, bitmap))
    }

    fn block_bitmap_bytes(&self) -> usize {
        (self.sb.blocks_per_group / 8) as usize
    }

    /// Marks `[start, start + len)` free, group by group.
    pub fn free_blocks(&mut self, start: u64, len: u64) -> Result<()> {
        let end = start
            .checked_add(len)
            .filter(|&end| {
                start >= u64::from(self.sb.first_data_block) && end <= self.sb.blocks_count
            })
            .ok_or_else(|| {
                NativeError::malformed(
                    "ext4 block pointer",
                    0,
                    format!("blocks {start}+{len} to free"),
                )
            })?;
        let mut at = start;
        while at < end {
            let group = self.group_of_block(at);
            let (first, count) = self.group_blocks(group);
            let stop = end.min(first + count);
            let (mut desc, block, mut bitmap) = self.block_bitmap(group)?;
            if self.flag_set(&desc, bg_flags::BLOCK_UNINIT) {
                return Err(NativeError::malformed(
                    "ext4 block bitmap",
                    block,
                    format!("block {at} is in use but its group {group} has no block bitmap"),
                ));
            }
            for b in at..stop {
                if !bit(&bitmap, b - first) {
                    return Err(NativeError::malformed(
                        "ext4 block bitmap",
                        block,
                        format!("block {b} is owned by a file but already free"),
                    ));
                }
                set_bit(&mut bitmap, b - first, false);
            }
            let freed = (stop - at) as u32;
            desc.set(FREE_BLOCKS, desc.get(FREE_BLOCKS).saturating_add(freed));
            let covered = self.block_bitmap_bytes();
            self.store_bitmap(&mut desc, block, &bitmap, covered, BLOCK_BITMAP_CSUM)?;
            self.store_desc(desc)?;
            self.add_superblock_free(i64::from(freed), 0)?;
            at = stop;
        }
        self.scrub_freed(start, len)
    }

    /// Allocates `count` blocks in at most `max_runs` runs, preferring one run in
    /// `goal` or the groups after it. Fails with [`NativeError::Unsupported`] when the
    /// free space is too fragmented or too small.
    pub fn alloc_blocks(&mut self, goal: u32, count: u64, max_runs: usize) -> Result<Vec<Blocks>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let groups = self.sb.groups;
        let order: Vec<u32> = (0..groups).map(|i| (goal % groups + i) % groups).collect();
        let mut plan: Vec<Blocks> = Vec::new();
        'whole: for &group in &order {
            for run in self.free_runs(group)? {
                if run.len >= count.min(MAX_RUN) && count <= MAX_RUN {
                    plan = vec![Blocks {
                        start: run.start,
                        len: count,
                    }];
                    break 'whole;
                }
            }
        }
        if plan.is_empty() {
            let mut missing = count;
            'pieces: for &group in &order {
                for run in self.free_runs(group)? {
                    let len = run.len.min(missing).min(MAX_RUN);
                    plan.push(Blocks {
                        start: run.start,
                        len,
                    });
                    missing -= len;
                    if missing == 0 || plan.len() >= max_runs {
                        break 'pieces;
                    }
                }
            }
            if missing > 0 {
                return Err(NativeError::unsupported(
                    "ext4 allocation",
                    format!("no room for {count} blocks in {max_runs} runs"),
                ));
            }
        }
        for run in &plan {
            self.mark_used(*run)?;
        }
        Ok(plan)
    }

    /// The free runs of `group` (none when its bitmap is uninitialised or it is full).
    fn free_runs(&self, group: u32) -> Result<Vec<Blocks>> {
        let (desc, _, bitmap) = self.block_bitmap(group)?;
        if self.flag_set(&desc, bg_flags::BLOCK_UNINIT) || desc.get(FREE_BLOCKS) == 0 {
            return Ok(Vec::new());
        }
        let (first, count) = self.group_blocks(group);
        let mut runs = Vec::new();
        let mut index = 0;
        while index < count {
            if bit(&bitmap, index) {
                index += 1;
                continue;
            }
            let start = index;
            while index < count && !bit(&bitmap, index) && index - start < MAX_RUN {
                index += 1;
            }
            runs.push(Blocks {
                start: first + start,
                len: index - start,
            });
        }
        Ok(runs)
    }

    /// Marks a run inside one group used.
    fn mark_used(&mut self, run: Blocks) -> Result<()> {
        let group = self.group_of_block(run.start);
        let (first, _) = self.group_blocks(group);
        let (mut desc, block, mut bitmap) = self.block_bitmap(group)?;
        for b in run.start..run.start + run.len {
            set_bit(&mut bitmap, b - first, true);
        }
        let used = run.len as u32;
        desc.set(FREE_BLOCKS, desc.get(FREE_BLOCKS).saturating_sub(used));
        let covered = self.block_bitmap_bytes();
        self.store_bitmap(&mut desc, block, &bitmap, covered, BLOCK_BITMAP_CSUM)?;
        self.store_desc(desc)?;
        self.add_superblock_free(-i64::from(used), 0)
    }

    fn inode_bitmap(&self, group: u32) -> Result<(RawDesc, u64, Vec<u8>)> {
        let desc = self.raw_desc(group)?;
        let block = self.groups[group as usize].inode_bitmap;
        let bitmap = self.read_block(block, "ext4 inode bitmap")?;
        Ok((desc, block, bitmap))
    }

    fn inode_bitmap_bytes(&self) -> usize {
        (self.sb.inodes_per_group / 8) as usize
    }

    /// Marks inode `number` free.
    pub fn free_inode(&mut self, number: u32, directory: bool) -> Result<()> {
        let index = number
            .checked_sub(1)
            .filter(|_| number <= self.sb.inodes_count);
        let Some(index) = index else {
            return Err(NativeError::malformed(
                "ext4 inode",
                0,
                format!("inode {number} to free"),
            ));
        };
        let group = index / self.sb.inodes_per_group;
        let within = u64::from(index % self.sb.inodes_per_group);
        let (mut desc, block, mut bitmap) = self.inode_bitmap(group)?;
        if self.flag_set(&desc, bg_flags::INODE_UNINIT) || !bit(&bitmap, within) {
            return Err(NativeError::malformed(
                "ext4 inode bitmap",
                block,
                format!("inode {number} is linked but marked free"),
            ));
        }
        set_bit(&mut bitmap, within, false);
        desc.set(FREE_INODES, desc.get(FREE_INODES).saturating_add(1));
        if directory {
            desc.set(USED_DIRS, desc.get(USED_DIRS).saturating_sub(1));
        }
        let covered = self.inode_bitmap_bytes();
        self.store_bitmap(&mut desc, block, &bitmap, covered, INODE_BITMAP_CSUM)?;
        self.store_desc(desc)?;
        self.add_superblock_free(0, 1)
    }

    /// Allocates an inode in `goal` or the groups after it.
    pub fn alloc_inode(&mut self, goal: u32, directory: bool) -> Result<u32> {
        let per = self.sb.inodes_per_group;
        for i in 0..self.sb.groups {
            let group = (goal % self.sb.groups + i) % self.sb.groups;
            let (mut desc, block, mut bitmap) = self.inode_bitmap(group)?;
            if self.flag_set(&desc, bg_flags::INODE_UNINIT) || desc.get(FREE_INODES) == 0 {
                continue;
            }
            let first_number = group * per + 1;
            let free = (0..per).find(|&within| {
                first_number + within >= self.sb.first_ino
                    && first_number + within <= self.sb.inodes_count
                    && !bit(&bitmap, u64::from(within))
            });
            let Some(within) = free else { continue };
            set_bit(&mut bitmap, u64::from(within), true);
            desc.set(FREE_INODES, desc.get(FREE_INODES).saturating_sub(1));
            if directory {
                desc.set(USED_DIRS, desc.get(USED_DIRS).saturating_add(1));
            }
            if self.has_group_csum() {
                let unused = desc.get(ITABLE_UNUSED);
                if within >= per.saturating_sub(unused) {
                    desc.set(ITABLE_UNUSED, per - within - 1);
                }
            }
            let covered = self.inode_bitmap_bytes();
            self.store_bitmap(&mut desc, block, &bitmap, covered, INODE_BITMAP_CSUM)?;
            self.store_desc(desc)?;
            self.add_superblock_free(0, -1)?;
            return Ok(first_number + within);
        }
        Err(NativeError::unsupported("ext4 allocation", "no free inode"))
    }

    /// Counts the free blocks and inodes the bitmaps of `group` show (for the
    /// self-check); `None` for a bitmap that is not initialised.
    pub fn count_free(&self, group: u32) -> Result<(Option<u64>, Option<u64>)> {
        let (desc, _, blocks) = self.block_bitmap(group)?;
        let (_, count) = self.group_blocks(group);
        let free_blocks = (!self.flag_set(&desc, bg_flags::BLOCK_UNINIT))
            .then(|| (0..count).filter(|&i| !bit(&blocks, i)).count() as u64);
        let (_, _, inodes) = self.inode_bitmap(group)?;
        let free_inodes = (!self.flag_set(&desc, bg_flags::INODE_UNINIT)).then(|| {
            (0..u64::from(self.sb.inodes_per_group))
                .filter(|&i| !bit(&inodes, i))
                .count() as u64
        });
        Ok((free_blocks, free_inodes))
    }

    /// Whether every block of `[start, start + len)` is marked used.
    pub fn blocks_in_use(&self, start: u64, len: u64) -> Result<bool> {
        let end = start.saturating_add(len);
        let mut at = start;
        while at < end {
            let group = self.group_of_block(at);
            let (first, count) = self.group_blocks(group);
            let stop = end.min(first + count);
            let (_, _, bitmap) = self.block_bitmap(group)?;
            if (at..stop).any(|b| !bit(&bitmap, b.saturating_sub(first))) {
                return Ok(false);
            }
            at = stop.max(at + 1);
        }
        Ok(true)
    }

    /// Whether inode `number` is marked used.
    pub fn inode_in_use(&self, number: u32) -> Result<bool> {
        let index = number.saturating_sub(1);
        let (_, _, bitmap) = self.inode_bitmap(index / self.sb.inodes_per_group)?;
        Ok(bit(&bitmap, u64::from(index % self.sb.inodes_per_group)))
    }
}
