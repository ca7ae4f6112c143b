//! Recovery, as a mount would do it before anything else: replay the jbd2 journal
//! into the overlay (a snapshot of a running guest has `needs_recovery` set and its
//! latest metadata only in the journal), mark the journal empty, clear
//! `needs_recovery`, then release the inodes on the orphan list (files deleted while
//! still open). Afterwards reads see what the guest saw and edits are allowed.
//!
//! One concern per file: [`header`] (the journal superblock and the journal's
//! checksums), [`scan`] (the walk of the log into a replay plan); this file finds the
//! journal (an inode of this filesystem: external journals are refused), writes the
//! plan into the overlay and resets the superblocks. Orphans are released by
//! `edit::orphan`. Must not: write to the disk (the replay stays in the overlay and
//! reaches the disk only when the guest layer commits), or leave a half replay behind
//! on failure (the overlay is discarded and the filesystem re-read).

pub mod header;
pub mod scan;

use header::{JournalSuperblock, MAGIC};

use super::blockmap::{self, Run};
use super::superblock::{compat, incompat, Superblock};
use super::{group, Ext4};
use crate::guest::native::bytes::{le32, put_be32, put_le32};
use crate::guest::native::error::{NativeError, Result};

/// `s_journal_inum` in the ext4 superblock.
const S_JOURNAL_INUM: usize = 0xe0;
/// `s_feature_incompat` in the ext4 superblock.
const S_FEATURE_INCOMPAT: usize = 0x60;

/// What recovery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Committed transactions replayed.
    pub transactions: u32,
    /// Blocks written from the journal.
    pub blocks: usize,
    /// Logged blocks skipped because a later transaction revoked them.
    pub revoked: usize,
    /// Inodes released from the orphan list.
    pub orphans: usize,
}

fn unsupported(detail: impl Into<String>) -> NativeError {
    NativeError::unsupported("jbd2 journal", detail)
}

impl Ext4 {
    /// Brings the filesystem to the state a mount would see (see the module
    /// comment); `None` when it is clean. On failure the overlay is left empty.
    pub fn recover(&mut self) -> Result<Option<Recovery>> {
        let orphans_waiting = self.last_orphan()? != 0;
        if !self.sb.needs_recovery() && !orphans_waiting {
            return Ok(None);
        }
        let mut report = Recovery::default();
        let result = self
            .replay_journal(&mut report)
            .and_then(|()| self.release_orphans())
            .map(|orphans| {
                report.orphans = orphans;
                report
            });
        if result.is_err() {
            self.store.discard();
            self.log = super::edit::EditLog::default();
            self.reload_metadata()?;
        }
        result.map(Some)
    }

    /// Re-reads the superblock and group descriptors through the overlay.
    pub(super) fn reload_metadata(&mut self) -> Result<()> {
        let raw = self.raw_superblock()?;
        self.sb = Superblock::parse(&raw, self.store.volume().len())?;
        self.groups = group::read_table(&self.store, &self.sb)?;
        Ok(())
    }

    fn replay_journal(&mut self, report: &mut Recovery) -> Result<()> {
        if !self.sb.needs_recovery() {
            return Ok(());
        }
        if self.sb.feature_compat & compat::HAS_JOURNAL == 0 {
            return Err(unsupported("needs_recovery is set but there is no journal"));
        }
        let number = le32(&self.raw_superblock()?, S_JOURNAL_INUM);
        if number == 0 {
            return Err(unsupported("the journal is on an external device"));
        }
        let inode = self.inode(number)?;
        let blocks = inode.size / u64::from(self.sb.block_size);
        let runs = blockmap::map(self, &inode, blocks)?;
        let locate = |n: u32| journal_block(&runs, n, number);
        let read = |n: u32| self.read_block(locate(n)?, "jbd2 journal block");
        let mut journal_sb = read(0)?;
        let jsb = JournalSuperblock::parse(&journal_sb, blocks, self.sb.block_size)?;
        let plan = scan::scan(&jsb, &read)?;
        let mut writes = Vec::with_capacity(plan.writes.len());
        for logged in &plan.writes {
            let mut data = read(logged.journal_block)?;
            if !jsb.data_ok(&data, logged.sequence, logged.checksum) {
                return Err(unsupported(format!(
                    "journal block {} (for block {} in transaction {}) fails its checksum: \
                     left to the kernel's recovery",
                    logged.journal_block, logged.target, logged.sequence
                )));
            }
            if logged.escaped {
                put_be32(&mut data, 0, MAGIC);
            }
            writes.push((logged.target, data));
        }
        header::mark_empty(&mut journal_sb, &jsb, plan.end.wrapping_add(1));
        let journal_sb_block = locate(0)?;
        for (target, data) in writes {
            self.write_block(target, &data, "jbd2 replay")?;
        }
        self.write_block(journal_sb_block, &journal_sb, "jbd2 superblock")?;
        *report = Recovery {
            transactions: plan.transactions,
            blocks: plan.writes.len(),
            revoked: plan.revoked,
            orphans: 0,
        };
        // The replay may have rewritten the superblock and the descriptors.
        self.reload_metadata()?;
        let mut raw = self.raw_superblock()?;
        let features = le32(&raw, S_FEATURE_INCOMPAT) & !incompat::RECOVER;
        put_le32(&mut raw, S_FEATURE_INCOMPAT, features);
        self.store_superblock(raw)?;
        self.reload_metadata()
    }
}

/// The filesystem block holding block `n` of the journal (inode `inode`), whose
/// `runs` are in logical order.
fn journal_block(runs: &[Run], n: u32, inode: u32) -> Result<u64> {
    let n = u64::from(n);
    let index = runs.partition_point(|r| r.logical + r.len <= n);
    match runs.get(index) {
        Some(run) if run.logical <= n => Ok(run.physical + (n - run.logical)),
        _ => Err(NativeError::malformed(
            "jbd2 journal",
            0,
            format!("block {n} of the journal (inode {inode}) is a hole"),
        )),
    }
}
