//! ext2/3/4 access: [`Ext4::open`] a volume, then look up paths, list directories,
//! read files and symlinks — and, through [`edit`], make the changes sysprep needs.
//!
//! One concern per file: [`superblock`] (geometry, features, seed), [`group`] (group
//! descriptors), [`inode`] (inodes and their checksum), [`blockmap`] and [`extent`]
//! (where a file's blocks are), [`dir`] (directory entries, htree blocks), [`inline`]
//! (inline data), [`journal`] (recovery: journal replay and orphans), [`edit`] (the
//! edits). Every read goes through the filesystem's [`Overlay`], so it sees the
//! recovery and the edits made so far; every metadata block read is checksum-verified
//! when the filesystem has metadata_csum. Must not: write to the disk (recovery and
//! edits stay in the overlay until the guest layer commits them), or follow symlinks
//! (path resolution belongs to `guest::confine`). A filesystem that needs recovery is
//! readable before [`Ext4::recover`], but its content may be stale and edits refuse
//! it.

pub mod blockmap;
pub mod dir;
pub mod edit;
pub mod extent;
pub mod group;
pub mod inline;
pub mod inode;
pub mod journal;
pub mod superblock;

use dir::DirEntry;
use group::GroupDesc;
use inode::{flags, Inode, InodeKind, ROOT_INO};
use superblock::Superblock;

use super::error::{NativeError, Result};
use super::overlay::Overlay;
use super::Volume;

/// Longest symlink target read (Linux's PATH_MAX).
pub const MAX_SYMLINK: u64 = 4096;

/// An open ext2/3/4 filesystem.
#[derive(Debug)]
pub struct Ext4 {
    /// The volume with this filesystem's pending edits laid over it: every read below
    /// goes through it.
    store: Overlay,
    pub sb: Superblock,
    groups: Vec<GroupDesc>,
    /// What the edits touched (empty until the first edit).
    log: edit::EditLog,
    /// Whether freed data is zeroed, and how much was.
    scrub: edit::scrub::Scrub,
}

impl Ext4 {
    /// Reads and validates the superblock and group descriptors of `volume`.
    pub fn open(volume: Volume) -> Result<Self> {
        let sb = Superblock::read(&volume)?;
        let store = Overlay::new(volume, sb.block_size);
        let groups = group::read_table(&store, &sb)?;
        Ok(Self {
            store,
            sb,
            groups,
            log: edit::EditLog::default(),
            scrub: edit::scrub::Scrub::default(),
        })
    }

    /// The volume and the edits not yet committed.
    pub fn overlay(&self) -> &Overlay {
        &self.store
    }

    /// Whether the journal holds changes not yet in place (see the module comment).
    pub fn needs_recovery(&self) -> bool {
        self.sb.needs_recovery()
    }

    /// The group descriptors.
    pub fn groups(&self) -> &[GroupDesc] {
        &self.groups
    }

    /// Reads filesystem block `block`, which must lie inside the filesystem.
    pub fn read_block(&self, block: u64, structure: &'static str) -> Result<Vec<u8>> {
        let size = u64::from(self.sb.block_size);
        if block >= self.sb.blocks_count {
            return Err(NativeError::malformed(
                structure,
                block.saturating_mul(size),
                format!("block {block} is past the {} blocks", self.sb.blocks_count),
            ));
        }
        self.store.read_vec(block * size, size as usize, structure)
    }

    /// Volume byte offset of inode `number`'s slot (inside the inode table, whose
    /// extent `group::read_table` checked).
    pub(crate) fn inode_offset(&self, number: u32) -> Result<u64> {
        if number == 0 || number > self.sb.inodes_count {
            return Err(NativeError::malformed(
                "ext4 inode",
                0,
                format!(
                    "inode number {number} is not in 1..={}",
                    self.sb.inodes_count
                ),
            ));
        }
        let index = number - 1;
        let group = &self.groups[(index / self.sb.inodes_per_group) as usize];
        let within = u64::from(index % self.sb.inodes_per_group);
        Ok(group.inode_table * u64::from(self.sb.block_size)
            + within * u64::from(self.sb.inode_size))
    }

    /// Reads and verifies inode `number`.
    pub fn inode(&self, number: u32) -> Result<Inode> {
        let offset = self.inode_offset(number)?;
        let raw = self
            .store
            .read_vec(offset, usize::from(self.sb.inode_size), "ext4 inode")?;
        Inode::parse(&self.sb, number, raw, offset)
    }

    /// The root directory's inode.
    pub fn root(&self) -> Result<Inode> {
        self.inode(ROOT_INO)
    }

    /// The entries of directory `dir` (without `.` and `..`), in on-disk order.
    pub fn read_dir(&self, dir: &Inode) -> Result<Vec<DirEntry>> {
        dir::read_dir(self, dir)
    }

    /// Finds `name` in directory `dir`.
    pub fn find(&self, dir: &Inode, name: &[u8]) -> Result<Option<u32>> {
        Ok(self
            .read_dir(dir)?
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.inode))
    }

    /// The inode at absolute `path` (components separated by `/`), following no
    /// symlink; `None` when a component is missing. A component below a
    /// non-directory is an error.
    pub fn lookup(&self, path: &[u8]) -> Result<Option<Inode>> {
        let mut current = self.root()?;
        for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if current.kind() != InodeKind::Directory {
                return Err(NativeError::malformed(
                    "ext4 path",
                    0,
                    format!(
                        "{}: a parent is not a directory",
                        String::from_utf8_lossy(path)
                    ),
                ));
            }
            match self.find(&current, component)? {
                Some(number) => current = self.inode(number)?,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// The content of `inode` (a regular file or a symlink); fails with
    /// [`NativeError::Limit`] when it is over `limit` bytes.
    pub fn read_file(&self, inode: &Inode, limit: u64) -> Result<Vec<u8>> {
        NativeError::check_limit("file size", inode.size, limit)?;
        if inode.has_flag(flags::INLINE_DATA) {
            return inline::content(inode);
        }
        let size = inode.size as usize; // <= limit, which the caller sized to memory
        let block_size = u64::from(self.sb.block_size);
        let blocks = inode.size.div_ceil(block_size);
        let mut data = vec![0u8; size];
        for run in blockmap::map(self, inode, blocks)? {
            for i in 0..run.len {
                let logical = run.logical + i;
                if logical >= blocks {
                    break;
                }
                let start = (logical * block_size) as usize; // < size
                let end = (start + block_size as usize).min(size);
                let block = self.read_block(run.physical + i, "ext4 file block")?;
                data[start..end].copy_from_slice(&block[..end - start]);
            }
        }
        Ok(data)
    }

    /// The target of symlink `inode`, as stored.
    pub fn read_link(&self, inode: &Inode) -> Result<Vec<u8>> {
        if inode.kind() != InodeKind::Symlink {
            return Err(NativeError::malformed(
                "ext4 symlink",
                0,
                format!("inode {} is not a symlink", inode.number),
            ));
        }
        let fast = !inode.has_flag(flags::INLINE_DATA)
            && !inode.has_flag(flags::EXTENTS)
            && inode.size < inode.block.len() as u64;
        if fast {
            return Ok(inode.block[..inode.size as usize].to_vec());
        }
        self.read_file(inode, MAX_SYMLINK)
    }
}
