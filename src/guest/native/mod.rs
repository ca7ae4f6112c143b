//! The native guest backend: reads and edits partition tables and ext2/3/4
//! filesystems directly through the disk layer's [`VirtualDisk`], in memory-safe Rust,
//! so no appliance is booted and raw and qcow2 images are handled alike.
//!
//! Built bottom-up, one concern per file: [`bytes`] and [`crc`] decode fields and
//! checksums, [`volume`] is a bounds-checked byte range of the disk (or a list of
//! them), [`partition`] finds the volumes, [`lvm`] maps linear LVM logical volumes
//! onto them, [`ext4`] reads ext2/3/4 filesystems on them, [`discover`] names
//! them as libguestfs does, and [`NativeGuest`] is the `GuestFs` implementation
//! (inspection, mounts, reads and the edits sysprep makes: they collect in each
//! filesystem's [`overlay`] and reach the image only through [`commit`], after a
//! self-check; [`blockid`] names what each volume holds). Every number read from the disk is
//! untrusted: it is checked with checked arithmetic against a named limit before it
//! sizes a buffer or a loop.
//! Must not: use libguestfs, print, or write to the image before a whole set of edits
//! has been checked.
//!
//! [`VirtualDisk`]: crate::disk::VirtualDisk

pub mod blockid;
pub mod bytes;
pub mod commit;
pub mod crc;
pub mod discover;
mod error;
pub mod ext4;
pub mod fuzzing;
mod guest;
mod inspect;
pub mod lvm;
mod lvm_uuids;
pub mod overlay;
pub mod partition;
pub mod volume;
mod write;

pub use error::{NativeError, Result};
pub use guest::NativeGuest;
pub use volume::Volume;
