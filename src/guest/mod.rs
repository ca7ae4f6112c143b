//! Guest filesystems: the backend-neutral [`GuestFs`] trait, confined path resolution
//! and the backends that implement it.
//!
//! Owns: what "a path inside the guest" means and how it is resolved ([`path`],
//! [`confine`]), the operating-system description found by inspection ([`os`]), and the
//! backends (`libguestfs`; [`native`], reading partition tables and ext2/3/4 directly, in progress).
//! Must not: know about sysprep operations, OpenStack, or print anything. Only
//! `guest::libguestfs` may touch the libguestfs library, so `sysprep` stays
//! backend-neutral.
//!
//! The split that keeps every backend confined: backends implement the primitives of
//! [`GuestFs`], which take a [`Resolved`] path — a value only [`confine`] can make, whose
//! every parent component is a real directory of the guest. Callers go through
//! [`GuestFsExt`] (resolve, stat, glob, walk), implemented once here on top of
//! `lstat`/`readlink`, so `..` and absolute symlinks are resolved inside the guest by
//! the same code whatever the backend.

pub mod cache;
pub mod confine;
mod error;
pub mod glob;
pub mod libguestfs;
#[cfg(test)]
pub(crate) mod memory;
pub mod native;
pub mod os;
pub mod path;
pub mod probe;

pub use confine::{Follow, GuestFsExt};
pub use error::{GuestError, Result};
pub use os::{Family, OsInfo};
pub use path::Resolved;

/// What kind of object a guest path names (never following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    /// Device nodes, FIFOs, sockets.
    Other,
}

impl FileKind {
    /// A short name for messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Directory => "directory",
            Self::Symlink => "symlink",
            Self::Other => "special file",
        }
    }
}

/// The few facts about a guest file that sysprep needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    /// Size in bytes (for symlinks: the length of the target).
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// A filesystem from an OS root's fstab that could not be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedMount {
    pub mountpoint: String,
    pub device: String,
    pub reason: String,
}

/// What a block-level identity belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum BlockKind {
    /// A filesystem (or swap area) of this type (`ext4`, `xfs`, `swap`, `vfat`, ...).
    Filesystem { fstype: String },
    /// An LVM physical volume.
    PhysicalVolume,
    /// An LVM volume group (its `device` is the VG name).
    VolumeGroup,
}

/// A UUID found on the disk: a filesystem's, an LVM PV's or an LVM VG's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockId {
    #[serde(flatten)]
    pub kind: BlockKind,
    /// The backend's device name (`/dev/sda1`, `/dev/rhel/root`), or the VG name.
    pub device: String,
    /// As the tools print it: dashed lowercase hex for filesystems, LVM's 38-character
    /// form for PVs and VGs; empty when the object has none.
    pub uuid: String,
}

/// A guest whose filesystems can be inspected, mounted, read and changed.
///
/// Backends implement these primitives. Every path argument is a [`Resolved`] path:
/// absolute, normalised, and with no symlink among its parents, so a backend must not
/// resolve anything itself and must never follow a symlink in the final component
/// unless the method says so. Use [`GuestFsExt`] to get from a user's path to a
/// [`Resolved`] one.
pub trait GuestFs {
    /// Finds the operating systems on the disk.
    fn inspect(&mut self) -> Result<Vec<OsInfo>>;
    /// Mounts `os`'s filesystems per its fstab (root first). A filesystem other than
    /// the root that cannot be mounted is reported back, not an error.
    fn mount_os(&mut self, os: &OsInfo) -> Result<Vec<SkippedMount>>;
    /// Unmounts everything mounted by [`GuestFs::mount_os`].
    fn unmount_all(&mut self) -> Result<()>;
    /// Metadata of `path` itself; `None` when it does not exist.
    fn lstat(&mut self, path: &Resolved) -> Result<Option<Metadata>>;
    /// The target of the symlink `path`, as stored.
    fn read_link(&mut self, path: &Resolved) -> Result<String>;
    /// The names in directory `path` (without `.` and `..`), sorted.
    fn list_dir(&mut self, path: &Resolved) -> Result<Vec<String>>;
    /// The names in directory `path` with their metadata (symlinks not followed),
    /// sorted by name. Backends answer this in as few calls as they can: directory
    /// walks are built on it.
    fn read_dir(&mut self, path: &Resolved) -> Result<Vec<(String, Metadata)>>;
    /// The content of regular file `path`; fails when it is larger than `limit` bytes.
    fn read(&mut self, path: &Resolved, limit: u64) -> Result<Vec<u8>>;
    /// Replaces the content of `path` (creating a regular file if missing).
    fn write(&mut self, path: &Resolved, content: &[u8]) -> Result<()>;
    /// Truncates regular file `path` to zero bytes.
    fn truncate(&mut self, path: &Resolved) -> Result<()>;
    /// Removes `path`, which is not a directory (a symlink is removed, not followed).
    fn remove_file(&mut self, path: &Resolved) -> Result<()>;
    /// Removes directory `path` and everything below it (symlinks are not followed).
    fn remove_tree(&mut self, path: &Resolved) -> Result<()>;
    /// Creates directory `path` (its parent must exist).
    fn mkdir(&mut self, path: &Resolved) -> Result<()>;
    /// Creates a symlink `path` pointing at `target` (stored as given).
    fn symlink(&mut self, target: &str, path: &Resolved) -> Result<()>;

    // --- block-level identity (fs-uuids, lvm-uuids). A backend that cannot do these
    // keeps the defaults, which refuse: an operation must never silently do nothing.

    /// Every filesystem, LVM PV and LVM VG on the disk with its UUID (works whether or
    /// not anything is mounted).
    fn block_ids(&mut self) -> Result<Vec<BlockId>> {
        Err(GuestError::Unsupported {
            what: "listing filesystem and LVM UUIDs",
        })
    }
    /// Gives the filesystem on `device` the UUID `uuid`. Nothing may be mounted.
    fn set_fs_uuid(&mut self, device: &str, uuid: &str) -> Result<()> {
        let _ = (device, uuid);
        Err(GuestError::Unsupported {
            what: "changing filesystem UUIDs",
        })
    }
    /// Gives every LVM PV and VG a new random UUID (LVM cannot be told which). Nothing
    /// may be mounted.
    fn renew_lvm_uuids(&mut self) -> Result<()> {
        Err(GuestError::Unsupported {
            what: "changing LVM UUIDs",
        })
    }
}
