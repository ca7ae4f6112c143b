//! Which filesystems a disk holds, named as libguestfs names them (`/dev/sda1` for
//! partition 1, `/dev/sda` for a whole-disk filesystem, `/dev/VG/LV` for a logical
//! volume), so both backends report the same roots and mountpoints.
//!
//! Owns: recognising LVM physical volumes among the partitions and mapping their
//! linear logical volumes ([`super::lvm`]), opening every other partition and every
//! LV as ext2/3/4 and recovering it as a mount would (journal replay, orphans: in
//! memory, see [`Ext4::recover`]), and recording, for the rest, why the native
//! backend cannot use them (XFS, btrfs, swap, a thin or RAID LV, a damaged ext4...).
//! Must not: read files (see [`super::inspect`]).

use std::sync::Arc;

use super::error::{NativeError, Result};
use super::ext4::journal::Recovery;
use super::ext4::Ext4;
use super::lvm::{self, PhysicalVolume, VolumeGroup};
use super::partition::read_partition_table;
use super::Volume;
use crate::disk::VirtualDisk;

/// An ext2/3/4 filesystem found on the disk.
#[derive(Debug)]
pub struct Filesystem {
    /// `/dev/sdaN` or `/dev/sda`.
    pub device: String,
    pub fs: Ext4,
    /// What recovery did, or why it could not be done (then the content read may be
    /// stale and the filesystem must not be used).
    pub recovery: std::result::Result<Option<Recovery>, String>,
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
    /// The LVM physical volumes, by device.
    pub physical_volumes: Vec<PhysicalVolume>,
    /// The volume groups they hold, by name, with their visible LVs.
    pub volume_groups: Vec<VolumeGroup>,
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
    let mut candidates = Vec::new();
    for (device, volume) in volumes {
        let volume = match volume {
            Ok(volume) => volume,
            Err(err) => {
                found.unreadable.push(unreadable(device, &err));
                continue;
            }
        };
        match lvm::read_pv(&volume, &device) {
            Ok(Some(pv)) => found.physical_volumes.push(pv),
            Ok(None) => candidates.push((device, volume)),
            Err(err) => found.unreadable.push(unreadable(device, &err)),
        }
    }
    found.volume_groups = lvm::volume_groups(&found.physical_volumes);
    for lv in found.volume_groups.iter().flat_map(|vg| &vg.lvs) {
        match &lv.volume {
            Ok(volume) => candidates.push((lv.device.clone(), volume.clone())),
            Err(reason) => found.unreadable.push(Unreadable {
                device: lv.device.clone(),
                reason: format!("unsupported LVM logical volume: {reason}"),
            }),
        }
    }
    for (device, volume) in candidates {
        match Ext4::open(volume) {
            Ok(mut fs) => {
                let recovery = fs.recover().map_err(|e| e.to_string());
                found.filesystems.push(Filesystem {
                    device,
                    fs,
                    recovery,
                });
            }
            Err(err) => found.unreadable.push(unreadable(device, &err)),
        }
    }
    Ok(found)
}

fn unreadable(device: String, err: &NativeError) -> Unreadable {
    Unreadable {
        device,
        reason: err.to_string(),
    }
}
