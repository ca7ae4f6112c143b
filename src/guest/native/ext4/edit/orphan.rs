//! The orphan list: inodes whose last name was removed while a process still had them
//! open, chained from the superblock's `s_last_orphan` through each inode's deletion
//! time field. A mount releases them; so does recovery here, through the same
//! freeing code as every removal.
//!
//! Owns the walk of the chain (bounded by the inode count, a loop is an error) and
//! the reset of `s_last_orphan`. An orphan that still has links is a truncate the
//! kernel interrupted: finishing it (freeing blocks past `i_size`) is not done here,
//! nor is the orphan file of newer kernels; both are refused as unsupported. Must
//! not: free an inode that is not marked in use.

use std::collections::BTreeSet;

use super::super::Ext4;
use crate::guest::native::bytes::{le32, put_le32};
use crate::guest::native::error::{NativeError, Result};

/// `s_last_orphan` in the superblock; the chain continues in each inode's `i_dtime`.
const S_LAST_ORPHAN: usize = 0xe8;
const I_DTIME: usize = 0x14;
/// `ro_compat` bit: the orphan file (kernel 5.15+) holds orphans.
const ORPHAN_PRESENT: u32 = 0x10000;

impl Ext4 {
    /// The first inode of the orphan list (0: none).
    pub fn last_orphan(&self) -> Result<u32> {
        Ok(le32(&self.raw_superblock()?, S_LAST_ORPHAN))
    }

    /// Frees every inode on the orphan list and empties it; returns how many.
    pub(in crate::guest::native::ext4) fn release_orphans(&mut self) -> Result<usize> {
        if self.sb.feature_ro_compat & ORPHAN_PRESENT != 0 {
            return Err(NativeError::unsupported(
                "ext4 orphan file",
                "orphans held in the orphan file are not released natively",
            ));
        }
        let mut next = self.last_orphan()?;
        if next == 0 {
            return Ok(0);
        }
        self.check_writable()?;
        let mut seen = BTreeSet::new();
        while next != 0 {
            let malformed = |detail: String| NativeError::malformed("ext4 orphan list", 0, detail);
            if next < self.sb.first_ino || next > self.sb.inodes_count {
                return Err(malformed(format!("inode {next} cannot be an orphan")));
            }
            if !seen.insert(next) {
                return Err(malformed(format!("the list reaches inode {next} twice")));
            }
            let inode = self.inode(next)?;
            if inode.links != 0 {
                return Err(NativeError::unsupported(
                    "ext4 orphan list",
                    format!(
                        "orphan inode {next} still has {} links (an interrupted truncate, \
                         which is not finished natively)",
                        inode.links
                    ),
                ));
            }
            if !self.inode_in_use(next)? {
                return Err(malformed(format!("orphan inode {next} is marked free")));
            }
            let following = le32(&inode.raw, I_DTIME);
            self.free_file(&inode)?;
            next = following;
        }
        let mut raw = self.raw_superblock()?;
        put_le32(&mut raw, S_LAST_ORPHAN, 0);
        self.store_superblock(raw)?;
        Ok(seen.len())
    }
}
