//! Which filesystems a disk holds, named as libguestfs names them (`/dev/sda1` for
//! partition 1, `/dev/sda` for a whole-disk filesystem), so both backends report the
//! same roots and mountpoints.
//!
//! Owns: opening every partition as ext2/3/4 and recording, for the others, why the
//! native backend cannot use them (an LVM PV, XFS, btrfs, swap, a damaged ext4...).
//! Must not: read files (see [`super::inspect`]).

use std::sync::Arc;

use super::error::{NativeError, Result};
use super::ext4::Ext4;
use super::partition::read_partition_table;
use super::Volume;
use crate::disk::VirtualDisk;

/// An ext2/3/4 filesystem found on the disk.
#[derive(Debug)]
pub struct Filesystem {
    /// `/dev/sdaN` or `/dev/sda`.
    pub device: String,
    pub fs: Ext4,
}

/// A partition the native backend cannot read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub device: String,
    pub reason: String,
}

/// What a disk holds.
#[derive(Debug, Default)]
pub struct Discovered {
    pub filesystems: Vec<Filesystem>,
    pub unreadable: Vec<Unreadable>,
}

/// Opens every partition of `disk` (or the whole disk when it has no table) as
/// ext2/3/4.
pub fn discover(disk: &Arc<dyn VirtualDisk>) -> Result<Discovered> {
    let table = read_partition_table(disk.as_ref())?;
    let mut volumes = Vec::new();
    if table.partitions.is_empty() {
        volumes.push(("/dev/sda".to_owned(), Ok(Volume::whole(disk.clone()))));
    }
    for partition in &table.partitions {
        let device = format!("/dev/sda{}", partition.number);
        let volume = match (partition.start_byte(), partition.size_bytes()) {
            (Some(start), Some(len)) => Volume::range(disk.clone(), start, len),
            _ => Err(NativeError::malformed(
                "partition",
                0,
                format!("{device} overflows"),
            )),
        };
        volumes.push((device, volume));
    }
    let mut found = Discovered::default();
    for (device, volume) in volumes {
        match volume.and_then(Ext4::open) {
            Ok(fs) => found.filesystems.push(Filesystem { device, fs }),
            Err(err) => found.unreadable.push(Unreadable {
                device,
                reason: err.to_string(),
            }),
        }
    }
    Ok(found)
}
