//! Scrubbing: what a removed file held must not stay readable in the image. Every
//! block an edit frees is zeroed in the overlay (so the commit writes zeros over it);
//! a freed inode's inline data (in `i_block` and its in-inode xattr area) is zeroed in
//! the inode; and, the first time anything is scrubbed, the journal's log is zeroed,
//! since a jbd2 journal holds old copies of inode table blocks (inline data) and, in
//! `data=journal` mode, of data blocks, and whether the guest mounts with
//! `data=journal` is not written in the filesystem.
//!
//! Zeroing the log is safe only because edits refuse a journal needing recovery: a
//! clean journal's log is dead (a mount starts a new log at `s_first`), which is also
//! checked here on the journal superblock itself (`s_start == 0`). Owns the policy
//! switch ([`Ext4::set_scrub`], on by default) and the count of scrubbed blocks. Must
//! not: write to the disk (zeroed blocks are runs in the overlay, costing no memory
//! per block).

use super::super::blockmap;
use super::super::inode::{flags, Inode};
use super::super::journal::header::JournalSuperblock;
use super::super::superblock::compat;
use super::super::Ext4;
use super::inode_out::RawInode;
use crate::guest::native::bytes::{le16, le32};
use crate::guest::native::error::{NativeError, Result};

/// `s_journal_inum` in the ext4 superblock.
const S_JOURNAL_INUM: usize = 0xe0;
/// `i_extra_isize`, and where the inode's base part ends.
const EXTRA_ISIZE: usize = 0x80;
const GOOD_OLD_SIZE: usize = 128;
const BLOCK: std::ops::Range<usize> = 0x28..0x28 + 60;

/// The scrub policy of one filesystem and what it did.
#[derive(Debug, Clone, Copy)]
pub struct Scrub {
    /// Whether freed blocks and inline data are zeroed.
    pub enabled: bool,
    /// Whether the journal's log was zeroed already.
    journal_done: bool,
    /// Blocks of freed data zeroed (the journal not counted).
    pub blocks: u64,
    /// Journal blocks zeroed.
    pub journal_blocks: u64,
}

impl Default for Scrub {
    fn default() -> Self {
        Self {
            enabled: true,
            journal_done: false,
            blocks: 0,
            journal_blocks: 0,
        }
    }
}

impl Ext4 {
    /// Turns scrubbing on (the default) or off for the edits that follow.
    pub fn set_scrub(&mut self, enabled: bool) {
        self.scrub.enabled = enabled;
    }

    /// What scrubbing did so far.
    pub fn scrubbed(&self) -> Scrub {
        self.scrub
    }

    /// Zeroes blocks `[start, start + len)`, just freed (checked inside the
    /// filesystem by the caller).
    pub(super) fn scrub_freed(&mut self, start: u64, len: u64) -> Result<()> {
        if !self.scrub.enabled {
            return Ok(());
        }
        self.scrub_journal()?;
        self.store.zero_blocks(start, len)?;
        self.scrub.blocks += len;
        Ok(())
    }

    /// Zeroes the inline data of `raw`, an inode being freed: `i_block` and the
    /// in-inode xattr area (where `system.data` keeps the rest of the data).
    pub(super) fn scrub_inline(&mut self, inode: &Inode, raw: &mut RawInode) -> Result<()> {
        if !self.scrub.enabled || !inode.has_flag(flags::INLINE_DATA) {
            return Ok(());
        }
        self.scrub_journal()?;
        raw.bytes[BLOCK].fill(0);
        if raw.bytes.len() > GOOD_OLD_SIZE {
            let extra = usize::from(le16(&raw.bytes, EXTRA_ISIZE));
            if let Some(area) = raw.bytes.get_mut(GOOD_OLD_SIZE + extra..) {
                area.fill(0);
            }
        }
        Ok(())
    }

    /// Zeroes every block of the journal's log (all but its superblock), once.
    fn scrub_journal(&mut self) -> Result<()> {
        if self.scrub.journal_done || self.sb.feature_compat & compat::HAS_JOURNAL == 0 {
            return Ok(());
        }
        self.scrub.journal_done = true;
        let number = le32(&self.raw_superblock()?, S_JOURNAL_INUM);
        if number == 0 {
            // An external journal is another device: its log is not in this image.
            return Ok(());
        }
        let inode = self.inode(number)?;
        let blocks = inode.size / u64::from(self.sb.block_size);
        let runs = blockmap::map(self, &inode, blocks)?;
        let Some(first) = runs.first().filter(|r| r.logical == 0) else {
            return Err(NativeError::malformed(
                "jbd2 journal",
                0,
                format!("the journal (inode {number}) has no block 0"),
            ));
        };
        let raw = self.read_block(first.physical, "jbd2 superblock")?;
        let jsb = JournalSuperblock::parse(&raw, blocks, self.sb.block_size)?;
        if jsb.start != 0 {
            return Err(NativeError::unsupported(
                "jbd2 journal",
                "the journal holds transactions not yet in place; its log cannot be scrubbed",
            ));
        }
        for run in runs {
            let (mut physical, mut len) = (run.physical, run.len);
            if run.logical == 0 {
                (physical, len) = (physical + 1, len - 1);
            }
            self.store.zero_blocks(physical, len)?;
            self.scrub.journal_blocks += len;
        }
        Ok(())
    }
}
