//! The write side of [`NativeGuest`]: each edit primitive runs on the filesystem a
//! path is mounted from, into that filesystem's overlay; [`NativeGuest::commit`] runs
//! every edited filesystem's self-check and only then hands the writes to the one
//! commit seam ([`super::commit::apply`]). Also the block-level identity primitives
//! (`block_ids`, `set_fs_uuid`).
//!
//! All-or-nothing: an edit that fails leaves the guest poisoned — every later edit and
//! the commit fail — so a half-made change can never reach the image. What the native
//! backend does not handle is reported as [`GuestError::NativeUnsupported`], so a
//! caller may run the same operations with libguestfs on the untouched image. Must
//! not: write to the image anywhere but in `commit`.

use super::blockid::{ext_type, probe};
use super::commit;
use super::error::NativeError;
use super::ext4::edit::uuid::parse_uuid;
use super::ext4::Ext4;
use super::guest::{backend_error, NativeGuest};
use super::overlay::DiskWrites;
use super::partition::{read_partition_table, PartitionType};
use super::Volume;
use crate::disk::patch::PatchReport;
use crate::guest::{BlockId, BlockKind, GuestError, Resolved, Result};

impl NativeGuest {
    /// Runs `edit` on the filesystem `path` lives on, with the path inside it.
    pub(super) fn edit(
        &mut self,
        operation: &'static str,
        path: &Resolved,
        edit: impl FnOnce(&mut Ext4, &[u8]) -> Result<(), NativeError>,
    ) -> Result<()> {
        self.check_not_poisoned(operation, path.as_str())?;
        let (index, inside) = self.locate(path.as_str())?;
        let inside = if inside.is_empty() { "/" } else { inside }.to_owned();
        let fs = &mut self.found.filesystems[index].fs;
        edit(fs, inside.as_bytes()).map_err(|err| {
            self.poisoned = Some(format!("{operation} {path}: {err}"));
            backend_error(operation, path.as_str(), err)
        })
    }

    fn check_not_poisoned(&self, operation: &'static str, path: &str) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(GuestError::Backend {
                operation,
                path: path.to_owned(),
                message: format!("an earlier edit failed ({reason}); nothing will be committed"),
            }),
            None => Ok(()),
        }
    }

    /// The error of a primitive the native backend does not implement.
    pub(super) fn not_native(&self, operation: &'static str, path: &Resolved) -> GuestError {
        GuestError::NativeUnsupported {
            operation,
            path: path.to_string(),
            reason: "sysprep never needs it, so the native backend does not do it".to_owned(),
        }
    }

    /// Fails when another filesystem is mounted below `path` (removing the tree would
    /// have to cross into it).
    pub(super) fn check_no_mount_below(&self, path: &Resolved) -> Result<()> {
        let prefix = format!("{}/", path.as_str().trim_end_matches('/'));
        let below = self.mounts.iter().map(|(m, _)| m);
        let fenced = self.fenced.iter().map(|(m, _)| m);
        match below.chain(fenced).find(|m| m.starts_with(&prefix)) {
            Some(mountpoint) => Err(GuestError::NativeUnsupported {
                operation: "rm-rf",
                path: path.to_string(),
                reason: format!("{mountpoint} is mounted below it"),
            }),
            None => Ok(()),
        }
    }

    /// The writes the pending edits amount to, after every edited filesystem passed
    /// its self-check.
    pub fn pending_writes(&self) -> Result<DiskWrites> {
        self.check_not_poisoned("commit", &self.image.display().to_string())?;
        let mut writes = DiskWrites::default();
        for found in &self.found.filesystems {
            if found.fs.overlay().is_empty() {
                continue;
            }
            let check = |e| backend_error("check the edits of", &found.device, e);
            found.fs.self_check().map_err(check)?;
            writes.extend(
                found
                    .fs
                    .overlay()
                    .disk_writes(self.disk.as_ref())
                    .map_err(check)?,
            );
        }
        writes.data.extend(self.lvm_writes.iter().cloned());
        Ok(writes)
    }

    /// Turns scrubbing (zeroing what edits free, see `ext4::edit::scrub`) on, the
    /// default, or off, on every filesystem, for the edits that follow.
    pub fn set_scrub(&mut self, enabled: bool) {
        for found in &mut self.found.filesystems {
            found.fs.set_scrub(enabled);
        }
    }

    /// Bytes of freed data and of journal log zeroed so far, over every filesystem.
    pub fn scrubbed_bytes(&self) -> (u64, u64) {
        self.found
            .filesystems
            .iter()
            .fold((0, 0), |(data, log), f| {
                let done = f.fs.scrubbed();
                let size = u64::from(f.fs.sb.block_size);
                (data + done.blocks * size, log + done.journal_blocks * size)
            })
    }

    /// Writes every pending edit into the image (see the module comment). The guest's
    /// own handle on the image is closed first: the patch locks the file.
    pub fn commit(self) -> Result<PatchReport> {
        let writes = self.pending_writes()?;
        let image = self.image.clone();
        drop(self);
        if writes.is_empty() {
            return Ok(PatchReport::default());
        }
        commit::apply(&image, &writes)
    }
}

/// Every filesystem the disk holds with its UUID (see [`super::blockid`]).
pub fn block_ids(guest: &NativeGuest) -> Result<Vec<BlockId>> {
    let disk = &guest.disk;
    let fail = |e| backend_error("list filesystems of", "/dev/sda", e);
    let table = read_partition_table(disk.as_ref()).map_err(fail)?;
    let mut volumes = Vec::new();
    if table.partitions.is_empty() {
        volumes.push(("/dev/sda".to_owned(), Some((0, disk.virtual_size()))));
    }
    for partition in &table.partitions {
        if matches!(partition.kind, PartitionType::Mbr(0x05 | 0x0f | 0x85)) {
            continue; // an extended partition only holds logical ones
        }
        let range = partition.start_byte().zip(partition.size_bytes());
        volumes.push((format!("/dev/sda{}", partition.number), range));
    }
    let mut ids = Vec::new();
    for pv in &guest.found.physical_volumes {
        ids.push(BlockId {
            kind: BlockKind::PhysicalVolume,
            device: pv.device.clone(),
            uuid: pv.label.uuid_text(),
        });
    }
    volumes.retain(|(device, _)| !ids.iter().any(|id| id.device == *device));
    let mut logical = Vec::new();
    for vg in &guest.found.volume_groups {
        ids.push(BlockId {
            kind: BlockKind::VolumeGroup,
            device: vg.name.clone(),
            uuid: vg.uuid.clone(),
        });
        for lv in &vg.lvs {
            // An LV read nowhere would make fs-uuids skip its filesystem silently.
            let volume = lv
                .volume
                .clone()
                .map_err(|reason| GuestError::NativeUnsupported {
                    operation: "list the filesystems of",
                    path: lv.device.clone(),
                    reason,
                })?;
            logical.push((lv.device.clone(), volume));
        }
    }
    let partitions = volumes.into_iter().map(|(device, range)| {
        let volume = range.map(|(start, len)| Volume::range(disk.clone(), start, len));
        (device, volume)
    });
    let all = partitions.chain(logical.into_iter().map(|(d, v)| (d, Some(Ok(v)))));
    for (device, volume) in all {
        if let Some(found) = guest.found.filesystems.iter().find(|f| f.device == device) {
            let sb = &found.fs.sb;
            ids.push(BlockId {
                kind: BlockKind::Filesystem {
                    fstype: ext_type(sb.feature_compat, sb.feature_incompat, sb.feature_ro_compat)
                        .to_owned(),
                },
                device,
                uuid: sb.uuid_text(),
            });
            continue;
        }
        let Some(volume) = volume else { continue };
        let volume = volume.map_err(fail)?;
        if let Some(signature) =
            probe(&volume, &device).map_err(|e| backend_error("identify", &device, e))?
        {
            ids.push(BlockId {
                kind: BlockKind::Filesystem {
                    fstype: signature.fstype,
                },
                device,
                uuid: signature.uuid,
            });
        }
    }
    ids.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(ids)
}

/// Gives the ext2/3/4 filesystem on `device` the UUID `uuid`.
pub fn set_fs_uuid(guest: &mut NativeGuest, device: &str, uuid: &str) -> Result<()> {
    guest.check_not_poisoned("set the UUID of", device)?;
    let Some(index) = guest
        .found
        .filesystems
        .iter()
        .position(|f| f.device == device)
    else {
        return Err(GuestError::NativeUnsupported {
            operation: "set the UUID of",
            path: device.to_owned(),
            reason: "only ext2/3/4 UUIDs are set natively".to_owned(),
        });
    };
    let Some(bytes) = parse_uuid(uuid) else {
        return Err(GuestError::Backend {
            operation: "set the UUID of",
            path: device.to_owned(),
            message: format!("{uuid:?} is not a UUID"),
        });
    };
    let fs = &mut guest.found.filesystems[index].fs;
    fs.set_uuid(bytes).map_err(|err| {
        guest.poisoned = Some(format!("set the UUID of {device}: {err}"));
        backend_error("set the UUID of", device, err)
    })
}
