//! ext4 edits, exactly what sysprep needs: remove a file or a directory tree, truncate
//! a file to zero, replace a small file's content, create a small file, and give the
//! filesystem a new UUID. Every edit goes into the filesystem's [`Overlay`], so later
//! reads see it and nothing reaches the disk until the guest layer commits.
//!
//! One concern per file: [`desc`] (group descriptor and superblock counters and their
//! checksums), [`bitmap`] (allocating and freeing blocks and inodes), [`inode_out`]
//! (writing inodes back with their checksum), [`owned`] (every block a file owns),
//! [`dirent`] (removing and inserting directory entries), [`htree`] (the hash that
//! picks an indexed directory's leaf), [`content`] (mapping new content to blocks),
//! [`ops`] (the path-level operations), [`orphan`] (releasing the orphan list),
//! [`check`] (the self-check before commit), [`scrub`] (zeroing what edits free), [`uuid`]. Features this code does not maintain (quotas, bigalloc, EA inodes, a
//! journal needing recovery, ...) refuse every edit up front with
//! [`NativeError::Unsupported`], so a caller can fall back to another backend.
//! Must not: write to the disk, or leave an edit half-made without failing (a failed
//! edit leaves the overlay unusable: the caller must discard it).
//!
//! [`Overlay`]: crate::guest::native::overlay::Overlay

pub mod bitmap;
pub mod check;
pub mod content;
pub mod desc;
pub mod dirent;
pub mod htree;
pub mod inode_out;
pub mod ops;
pub mod orphan;
pub mod owned;
pub mod scrub;
pub mod uuid;

use std::collections::{BTreeMap, BTreeSet};

use super::superblock::{compat, incompat, ro_compat};
use super::Ext4;
use crate::guest::native::error::{NativeError, Result};

/// `ro_compat` features edits keep consistent: sparse_super, large_file, btree_dir,
/// huge_file, gdt_csum, dir_nlink, extra_isize, metadata_csum.
const WRITABLE_RO_COMPAT: u32 =
    0x1 | 0x2 | 0x4 | 0x8 | ro_compat::GDT_CSUM | 0x20 | 0x40 | ro_compat::METADATA_CSUM;
/// `incompat` features edits keep consistent (inline data only as far as
/// [`ops`] says: such files can be removed, not rewritten).
const WRITABLE_INCOMPAT: u32 = incompat::FILETYPE
    | incompat::EXTENTS
    | incompat::BIT64
    | incompat::FLEX_BG
    | incompat::CSUM_SEED
    | incompat::LARGEDIR
    | incompat::INLINE_DATA;

/// What the edits touched, for the self-check before commit.
#[derive(Debug, Clone, Default)]
pub struct EditLog {
    /// Group → (free blocks, free inodes) when the group was first touched.
    pub groups: BTreeMap<u32, (u64, u64)>,
    /// Superblock (free blocks, free inodes) before the first edit.
    pub superblock: Option<(u64, u64)>,
    /// Inodes written.
    pub inodes: BTreeSet<u32>,
    /// Directories whose entries changed.
    pub directories: BTreeSet<u32>,
}

impl Ext4 {
    /// Fails with [`NativeError::Unsupported`] when this filesystem cannot be edited
    /// natively.
    pub fn check_writable(&self) -> Result<()> {
        let refuse = |detail: String| Err(NativeError::unsupported("ext4 edit", detail));
        if self.sb.needs_recovery() {
            return refuse(
                "the journal needs recovery (a snapshot of a running guest) and was not replayed"
                    .into(),
            );
        }
        let ro = self.sb.feature_ro_compat & !WRITABLE_RO_COMPAT;
        if ro != 0 {
            return refuse(format!(
                "read-only-compatible features {ro:#x} (quota, bigalloc, verity, orphan file, ...) are not maintained natively"
            ));
        }
        let inc = self.sb.feature_incompat & !WRITABLE_INCOMPAT;
        if inc != 0 {
            return refuse(format!(
                "incompatible features {inc:#x} (MMP, EA inodes, casefold, ...) are not maintained natively"
            ));
        }
        if self.sb.feature_compat & compat::EXCLUDE_BITMAP != 0 {
            return refuse("the exclude bitmap feature is not maintained natively".into());
        }
        Ok(())
    }

    /// Writes `data` at volume byte `offset` into the overlay.
    pub(super) fn write_bytes(
        &mut self,
        offset: u64,
        data: &[u8],
        structure: &'static str,
    ) -> Result<()> {
        self.store.write_at(offset, data, structure)
    }

    /// Replaces filesystem block `block` (which must lie inside the filesystem).
    pub(super) fn write_block(
        &mut self,
        block: u64,
        data: &[u8],
        structure: &'static str,
    ) -> Result<()> {
        let size = u64::from(self.sb.block_size);
        if block >= self.sb.blocks_count || data.len() as u64 != size {
            return Err(NativeError::malformed(
                structure,
                block.saturating_mul(size),
                format!(
                    "write of {} bytes to block {block} of {}",
                    data.len(),
                    self.sb.blocks_count
                ),
            ));
        }
        self.store.write_at(block * size, data, structure)
    }

    /// What the edits touched so far.
    pub fn edit_log(&self) -> &EditLog {
        &self.log
    }
}

/// Seconds since the epoch, as ext4 stores times (low 32 bits).
pub fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
