//! The operations sysprep makes, on paths inside one filesystem: remove a file, remove
//! a directory tree, truncate a file, write a small file (replacing or creating it).
//!
//! Owns what each operation does to links, inodes, blocks and entries: a removed name
//! drops one link; the last link frees the inode (deletion time set, blocks and its
//! extended-attribute block released, bitmap bit cleared). A tree is removed
//! depth-first with every directory visited at most once (a directory reached twice is
//! a damaged or hostile filesystem: an error). Must not: resolve symlinks (paths come
//! resolved) or write to the disk.

use std::collections::BTreeSet;

use super::super::dir::DirEntry;
use super::super::inode::{flags, Inode, InodeKind};
use super::super::Ext4;
use super::content::empty_extent_root;
use super::dirent::file_type;
use super::inode_out::RawInode;
use crate::guest::native::bytes::{le32, put_le32};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};

/// Permission and type of files created by [`Ext4::write_file`] (as libguestfs: 0644).
const NEW_FILE_MODE: u16 = 0o100_644;
const XATTR_MAGIC: u32 = 0xea02_0000;
const XATTR_CHECKSUM: usize = 0x10;

/// `path` split into its parent directory and last component.
fn split(path: &[u8]) -> Result<(&[u8], &[u8])> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(slash) if slash + 1 < trimmed.len() => {
            Ok((&trimmed[..slash.max(1)], &trimmed[slash + 1..]))
        }
        _ => Err(NativeError::malformed(
            "ext4 path",
            0,
            format!("{:?} names no file", String::from_utf8_lossy(path)),
        )),
    }
}

fn not_found(path: &[u8]) -> NativeError {
    NativeError::malformed(
        "ext4 path",
        0,
        format!(
            "{}: No such file or directory",
            String::from_utf8_lossy(path)
        ),
    )
}

impl Ext4 {
    /// The parent directory of `path` and the entry's name.
    fn parent_of<'p>(&self, path: &'p [u8]) -> Result<(Inode, &'p [u8])> {
        let (parent, name) = split(path)?;
        let dir = self.lookup(parent)?.ok_or_else(|| not_found(parent))?;
        if dir.kind() != InodeKind::Directory {
            return Err(NativeError::malformed(
                "ext4 path",
                0,
                format!("{}: not a directory", String::from_utf8_lossy(parent)),
            ));
        }
        Ok((dir, name))
    }

    /// Removes the non-directory at `path`.
    pub fn unlink(&mut self, path: &[u8]) -> Result<()> {
        self.check_writable()?;
        let (dir, name) = self.parent_of(path)?;
        let number = self.find(&dir, name)?.ok_or_else(|| not_found(path))?;
        let inode = self.inode(number)?;
        if inode.kind() == InodeKind::Directory {
            return Err(NativeError::malformed(
                "ext4 path",
                0,
                format!("{}: is a directory", String::from_utf8_lossy(path)),
            ));
        }
        self.remove_entry(&dir, name)?;
        self.drop_link(number)
    }

    /// Drops one link of non-directory `number`, freeing it with the last.
    fn drop_link(&mut self, number: u32) -> Result<()> {
        let inode = self.inode(number)?;
        let mut raw = RawInode::of(&inode);
        if inode.links > 1 {
            raw.set_links(inode.links - 1);
            raw.touch(super::now());
            self.store_inode(raw)?;
            return Ok(());
        }
        self.free_file(&inode)
    }

    /// Frees `inode` (any kind): its blocks, its xattr block, its bitmap bit.
    pub(super) fn free_file(&mut self, inode: &Inode) -> Result<()> {
        if inode.number < self.sb.first_ino {
            return Err(NativeError::malformed(
                "ext4 inode",
                0,
                format!("reserved inode {} would be freed", inode.number),
            ));
        }
        self.release_blocks(inode)?;
        let mut raw = RawInode::of(inode);
        self.release_xattr_block(&raw)?;
        self.scrub_inline(inode, &mut raw)?;
        raw.delete(super::now());
        raw.set_fs_blocks(0, self.sb.block_size);
        put_le32(&mut raw.bytes, 0x68, 0);
        put_le32(&mut raw.bytes, 0x76, 0);
        if !inode.has_flag(flags::INLINE_DATA) {
            let block = if inode.has_flag(flags::EXTENTS) {
                empty_extent_root()
            } else {
                [0; 60]
            };
            raw.set_block(&block);
        }
        self.store_inode(raw)?;
        self.free_inode(inode.number, inode.kind() == InodeKind::Directory)
    }

    /// Drops the inode's reference to its external xattr block, freeing the block
    /// when it was the last.
    fn release_xattr_block(&mut self, raw: &RawInode) -> Result<()> {
        let block = raw.file_acl();
        if block == 0 {
            return Ok(());
        }
        let mut data = self.read_block(block, "ext4 xattr block")?;
        if le32(&data, 0) != XATTR_MAGIC || le32(&data, 8) != 1 {
            return Err(NativeError::malformed(
                "ext4 xattr block",
                block,
                format!("inode {}: bad xattr block header", raw.number),
            ));
        }
        let refcount = le32(&data, 4);
        if refcount <= 1 {
            return self.free_blocks(block, 1);
        }
        put_le32(&mut data, 4, refcount - 1);
        if self.sb.has_metadata_csum() {
            put_le32(&mut data, XATTR_CHECKSUM, 0);
            let crc = crc32c_raw(self.sb.csum_seed, &block.to_le_bytes());
            let crc = crc32c_raw(crc, &data);
            put_le32(&mut data, XATTR_CHECKSUM, crc);
        }
        self.write_block(block, &data, "ext4 xattr block")
    }

    /// Truncates regular file `path` to zero bytes.
    pub fn truncate_file(&mut self, path: &[u8]) -> Result<()> {
        self.write_file(path, &[], false)
    }

    /// Replaces the content of `path` with `data`; creates a regular file (mode 0644,
    /// owner root) when `create` and it is missing.
    pub fn write_file(&mut self, path: &[u8], data: &[u8], create: bool) -> Result<()> {
        self.check_writable()?;
        let (dir, name) = self.parent_of(path)?;
        match self.find(&dir, name)? {
            Some(number) => {
                let inode = self.inode(number)?;
                self.set_content(&inode, data)?;
            }
            None if create => {
                let goal = (dir.number - 1) / self.sb.inodes_per_group;
                let number = self.alloc_inode(goal, false)?;
                let now = super::now();
                let mut raw = RawInode::new(
                    number,
                    self.sb.inode_size,
                    NEW_FILE_MODE,
                    now,
                    self.uses_extents(),
                );
                let generation = crc32c_raw(now, &number.to_le_bytes());
                put_le32(&mut raw.bytes, 0x64, generation);
                let inode = self.store_inode(raw)?;
                self.set_content(&inode, data)?;
                self.insert_entry(&dir, name, number, file_type::REGULAR)?;
            }
            None => return Err(not_found(path)),
        }
        Ok(())
    }

    /// Removes `path` and, when it is a directory, everything below it.
    pub fn remove_tree(&mut self, path: &[u8]) -> Result<()> {
        self.check_writable()?;
        let (dir, name) = self.parent_of(path)?;
        let number = self.find(&dir, name)?.ok_or_else(|| not_found(path))?;
        let top = self.inode(number)?;
        if top.kind() != InodeKind::Directory {
            return self.unlink(path);
        }
        // The directory and every ancestor: an entry leading back to one of them is a
        // loop, never something to remove.
        let mut visited = BTreeSet::from([number, super::super::inode::ROOT_INO]);
        let mut prefix = Vec::new();
        for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            prefix.push(b'/');
            prefix.extend_from_slice(component);
            if let Some(ancestor) = self.lookup(&prefix)? {
                visited.insert(ancestor.number);
            }
        }
        // Depth-first: a directory is freed after its entries (post-order).
        let mut stack: Vec<(Inode, Option<Vec<DirEntry>>)> = vec![(top, None)];
        while let Some((current, entries)) = stack.pop() {
            let Some(mut entries) = entries else {
                let listed = self.read_dir(&current)?;
                stack.push((current, Some(listed)));
                continue;
            };
            let Some(entry) = entries.pop() else {
                self.free_file(&current)?;
                continue;
            };
            stack.push((current, Some(entries)));
            let child = self.inode(entry.inode)?;
            if child.kind() == InodeKind::Directory {
                if !visited.insert(child.number) {
                    return Err(NativeError::malformed(
                        "ext4 directory",
                        0,
                        format!(
                            "directory inode {} is reached twice below {}",
                            child.number,
                            String::from_utf8_lossy(path)
                        ),
                    ));
                }
                stack.push((child, None));
            } else {
                self.drop_link(child.number)?;
            }
        }
        self.remove_entry(&dir, name)?;
        let parent = self.inode(dir.number)?;
        if parent.links > 2 {
            let mut raw = RawInode::of(&parent);
            raw.set_links(parent.links - 1);
            self.store_inode(raw)?;
        }
        Ok(())
    }
}
