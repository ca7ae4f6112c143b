//! [`NativeGuest`]: the [`GuestFs`] implementation of the native backend.
//!
//! Owns the mount table (which ext2/3/4 filesystem answers for which guest path) and
//! the translation of ext4 inodes into [`Metadata`]; the write primitives and the
//! commit live in [`super::write`]. Every path it receives is a [`Resolved`] one, so
//! it follows no symlink itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::discover::{discover, Discovered};
use super::error::NativeError;
use super::ext4::inode::{Inode, InodeKind};
use super::ext4::journal::Recovery;
use super::ext4::Ext4;
use crate::disk::open::open_image;
use crate::disk::{DiskError, VirtualDisk};
use crate::guest::{
    BlockId, FileKind, GuestError, GuestFs, Metadata, OsInfo, Resolved, Result, SkippedMount,
};

/// A guest disk read natively.
pub struct NativeGuest {
    pub(super) image: PathBuf,
    pub(super) disk: Arc<dyn VirtualDisk>,
    pub(super) found: Discovered,
    /// `(mountpoint, index into found.filesystems)`, longest mountpoint first.
    pub(super) mounts: Vec<(String, usize)>,
    /// Why the pending edits must not be committed (an edit failed midway).
    pub(super) poisoned: Option<String>,
    /// The writes of renewed LVM UUIDs (see [`super::lvm_uuids`]), committed with
    /// the filesystems' edits.
    pub(super) lvm_writes: Vec<super::lvm::renew::DiskWrite>,
    /// Whether what this backend cannot see is a native limitation rather than
    /// something to skip (see [`NativeGuest::require_whole_guest`]).
    pub(super) whole_guest: bool,
    /// Mountpoints of filesystems it cannot read, with why: any path at or below one
    /// is a native limitation (only with `whole_guest`).
    pub(super) fenced: Vec<(String, String)>,
}

impl std::fmt::Debug for NativeGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeGuest")
            .field("image", &self.image)
            .finish()
    }
}

pub(super) fn backend_error(operation: &'static str, path: &str, err: NativeError) -> GuestError {
    match err {
        NativeError::Unsupported { .. } => GuestError::NativeUnsupported {
            operation,
            path: path.to_owned(),
            reason: err.to_string(),
        },
        _ => GuestError::Backend {
            operation,
            path: path.to_owned(),
            message: err.to_string(),
        },
    }
}

fn metadata(inode: &Inode) -> Metadata {
    Metadata {
        kind: match inode.kind() {
            InodeKind::File => FileKind::File,
            InodeKind::Directory => FileKind::Directory,
            InodeKind::Symlink => FileKind::Symlink,
            InodeKind::Other => FileKind::Other,
        },
        size: inode.size,
        mode: inode.permissions(),
    }
}

impl NativeGuest {
    /// Finds the filesystems of `disk`; `image` names it in messages.
    pub fn open(disk: Arc<dyn VirtualDisk>, image: &Path) -> Result<Self> {
        let found = discover(&disk).map_err(|e| backend_error("read partition table", "/", e))?;
        Ok(Self {
            image: image.to_owned(),
            disk,
            found,
            mounts: Vec::new(),
            poisoned: None,
            lvm_writes: Vec::new(),
            whole_guest: false,
            fenced: Vec::new(),
        })
    }

    /// Opens the raw or qcow2 image file at `image`. A format or qcow2 feature the disk
    /// layer cannot read is a native limitation.
    pub fn open_file(image: &Path) -> Result<Self> {
        let disk = open_image(image).map_err(|err| match err {
            DiskError::Io { action, source, .. } => GuestError::io(action, image, source),
            DiskError::Unsupported { .. } => GuestError::NativeUnsupported {
                operation: "open",
                path: image.display().to_string(),
                reason: err.to_string(),
            },
            other => GuestError::Backend {
                operation: "open",
                path: image.display().to_string(),
                message: other.to_string(),
            },
        })?;
        Self::open(Arc::new(disk), image)
    }

    /// From now on, a guest this backend cannot see entirely is refused as a native
    /// limitation (so a caller can hand it to libguestfs) instead of being edited in
    /// part: inspection that finds no OS while some partition is unreadable, and any
    /// path on an fstab filesystem `mount_os` could not mount (a vfat `/boot/efi`
    /// sysprep never looks into does not stop it).
    pub fn require_whole_guest(&mut self) {
        self.whole_guest = true;
    }

    /// The filesystems recovered at open (journal replayed, orphans released, in
    /// memory until a commit), by device.
    pub fn recoveries(&self) -> Vec<(&str, Recovery)> {
        self.found
            .filesystems
            .iter()
            .filter_map(|f| match &f.recovery {
                Ok(Some(done)) => Some((f.device.as_str(), *done)),
                _ => None,
            })
            .collect()
    }

    /// The image this guest was opened from.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// What the disk holds: the ext2/3/4 filesystems and the partitions it cannot read.
    pub fn discovered(&self) -> &Discovered {
        &self.found
    }

    /// Mounts the filesystem of `device` at `mountpoint` (for inspection and mount_os).
    pub(super) fn mount(&mut self, device: &str, mountpoint: &str) -> bool {
        let Some(index) = self
            .found
            .filesystems
            .iter()
            .position(|f| f.device == device)
        else {
            return false;
        };
        self.mounts.push((mountpoint.to_owned(), index));
        self.mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
        true
    }

    /// Forgets every mount.
    pub(super) fn unmount_all_mounts(&mut self) {
        self.mounts.clear();
        self.fenced.clear();
    }

    /// The filesystem (index) answering for `path` and the path inside it.
    pub(super) fn locate<'p>(&self, path: &'p str) -> Result<(usize, &'p str)> {
        for (mountpoint, reason) in &self.fenced {
            if below(path, mountpoint) {
                return Err(GuestError::NativeUnsupported {
                    operation: "look into",
                    path: path.to_owned(),
                    reason: format!("{mountpoint} is {reason}"),
                });
            }
        }
        for (mountpoint, fs) in &self.mounts {
            let inside = if mountpoint == "/" {
                Some(path)
            } else {
                path.strip_prefix(mountpoint.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            };
            if let Some(rest) = inside {
                return Ok((*fs, rest));
            }
        }
        Err(GuestError::Backend {
            operation: "lookup",
            path: path.to_owned(),
            message: "no filesystem is mounted there".to_owned(),
        })
    }

    /// The filesystem at `index` of the discovered ones.
    pub(super) fn fs(&self, index: usize) -> &Ext4 {
        &self.found.filesystems[index].fs
    }

    fn inode(&self, operation: &'static str, path: &Resolved) -> Result<Option<(&Ext4, Inode)>> {
        let (index, inside) = self.locate(path.as_str())?;
        let fs = self.fs(index);
        let inode = fs
            .lookup(inside.as_bytes())
            .map_err(|e| backend_error(operation, path.as_str(), e))?;
        Ok(inode.map(|inode| (fs, inode)))
    }

    fn existing(&self, operation: &'static str, path: &Resolved) -> Result<(&Ext4, Inode)> {
        self.inode(operation, path)?
            .ok_or_else(|| GuestError::Backend {
                operation,
                path: path.to_string(),
                message: "No such file or directory".to_owned(),
            })
    }
}

/// Whether `path` is `mountpoint` or below it.
fn below(path: &str, mountpoint: &str) -> bool {
    mountpoint == "/"
        || path
            .strip_prefix(mountpoint)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl GuestFs for NativeGuest {
    fn inspect(&mut self) -> Result<Vec<OsInfo>> {
        let roots = super::inspect::inspect(self)?;
        if roots.is_empty() && self.whole_guest && !self.found.unreadable.is_empty() {
            let unreadable: Vec<String> = self
                .found
                .unreadable
                .iter()
                .map(|u| format!("{} ({})", u.device, u.reason))
                .collect();
            return Err(GuestError::NativeUnsupported {
                operation: "inspect",
                path: self.image.display().to_string(),
                reason: format!(
                    "no OS root on an ext2/3/4 filesystem, and it cannot read {}",
                    unreadable.join(", ")
                ),
            });
        }
        if roots.is_empty() {
            return Err(GuestError::NoOperatingSystem {
                image: self.image.clone(),
            });
        }
        Ok(roots)
    }

    fn mount_os(&mut self, os: &OsInfo) -> Result<Vec<SkippedMount>> {
        let skipped = super::inspect::mount_os(self, os)?;
        if !self.whole_guest {
            return Ok(skipped);
        }
        // Its content may be stale until the journal is replayed: even a read-only
        // plan could be wrong.
        let unrecovered = self.mounts.iter().find_map(|(mountpoint, index)| {
            let found = &self.found.filesystems[*index];
            found.recovery.as_ref().err().map(|why| (mountpoint, why))
        });
        if let Some((mountpoint, why)) = unrecovered {
            return Err(GuestError::NativeUnsupported {
                operation: "mount",
                path: mountpoint.clone(),
                reason: format!(
                    "the filesystem needs recovery (it was not unmounted cleanly), \
                     which the native backend cannot do here: {why}"
                ),
            });
        }
        self.fenced = skipped
            .into_iter()
            .map(|s| (s.mountpoint, format!("{}: {}", s.device, s.reason)))
            .collect();
        Ok(Vec::new())
    }

    fn unmount_all(&mut self) -> Result<()> {
        self.unmount_all_mounts();
        Ok(())
    }

    fn lstat(&mut self, path: &Resolved) -> Result<Option<Metadata>> {
        Ok(self
            .inode("lstat", path)?
            .map(|(_, inode)| metadata(&inode)))
    }

    fn read_link(&mut self, path: &Resolved) -> Result<String> {
        let (fs, inode) = self.existing("readlink", path)?;
        let target = fs
            .read_link(&inode)
            .map_err(|e| backend_error("readlink", path.as_str(), e))?;
        String::from_utf8(target).map_err(|e| GuestError::Backend {
            operation: "readlink",
            path: path.to_string(),
            message: format!(
                "the target is not UTF-8: {:?}",
                String::from_utf8_lossy(e.as_bytes())
            ),
        })
    }

    fn list_dir(&mut self, path: &Resolved) -> Result<Vec<String>> {
        Ok(self
            .read_dir(path)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    fn read_dir(&mut self, path: &Resolved) -> Result<Vec<(String, Metadata)>> {
        let (fs, dir) = self.existing("readdir", path)?;
        let entries = fs
            .read_dir(&dir)
            .map_err(|e| backend_error("readdir", path.as_str(), e))?;
        let mut listing = Vec::with_capacity(entries.len());
        for entry in entries {
            // Like the libguestfs backend: a name that is not UTF-8 fails the listing
            // (and so the run) instead of being skipped or mangled.
            let name = String::from_utf8(entry.name).map_err(|e| GuestError::Backend {
                operation: "readdir",
                path: path.to_string(),
                message: format!(
                    "a name in this directory is not UTF-8: {:?}",
                    String::from_utf8_lossy(e.as_bytes())
                ),
            })?;
            let inode = fs
                .inode(entry.inode)
                .map_err(|e| backend_error("readdir", path.as_str(), e))?;
            listing.push((name, metadata(&inode)));
        }
        // A mountpoint shows the root of the filesystem mounted on it.
        let prefix = if path.is_root() {
            String::new()
        } else {
            path.to_string()
        };
        for (name, meta) in &mut listing {
            let child = format!("{prefix}/{name}");
            if let Some((_, mounted)) = self.mounts.iter().find(|(m, _)| *m == child) {
                let root = self
                    .fs(*mounted)
                    .root()
                    .map_err(|e| backend_error("readdir", &child, e))?;
                *meta = metadata(&root);
            }
        }
        listing.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listing)
    }

    fn read(&mut self, path: &Resolved, limit: u64) -> Result<Vec<u8>> {
        let (fs, inode) = self.existing("read", path)?;
        if inode.kind() != InodeKind::File {
            return Err(GuestError::NotARegularFile {
                path: path.to_string(),
                kind: metadata(&inode).kind.name(),
            });
        }
        if inode.size > limit {
            return Err(GuestError::TooLarge {
                path: path.to_string(),
                size: inode.size,
                limit,
            });
        }
        fs.read_file(&inode, limit)
            .map_err(|e| backend_error("read", path.as_str(), e))
    }

    fn write(&mut self, path: &Resolved, content: &[u8]) -> Result<()> {
        self.edit("write", path, |fs, inside| {
            fs.write_file(inside, content, true)
        })
    }

    fn truncate(&mut self, path: &Resolved) -> Result<()> {
        self.edit("truncate", path, |fs, inside| fs.truncate_file(inside))
    }

    fn remove_file(&mut self, path: &Resolved) -> Result<()> {
        self.edit("rm", path, |fs, inside| fs.unlink(inside))
    }

    fn remove_tree(&mut self, path: &Resolved) -> Result<()> {
        self.check_no_mount_below(path)?;
        self.edit("rm-rf", path, |fs, inside| fs.remove_tree(inside))
    }

    fn mkdir(&mut self, path: &Resolved) -> Result<()> {
        Err(self.not_native("mkdir", path))
    }

    fn symlink(&mut self, _target: &str, path: &Resolved) -> Result<()> {
        Err(self.not_native("ln -s", path))
    }

    fn block_ids(&mut self) -> Result<Vec<BlockId>> {
        super::write::block_ids(self)
    }

    fn set_fs_uuid(&mut self, device: &str, uuid: &str) -> Result<()> {
        super::write::set_fs_uuid(self, device, uuid)
    }

    fn renew_lvm_uuids(&mut self) -> Result<()> {
        self.renew_lvm()
    }
}
