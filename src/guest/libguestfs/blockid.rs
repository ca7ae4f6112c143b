//! Block-level identity through libguestfs: list filesystem, PV and VG UUIDs, give a
//! filesystem a chosen UUID (`set_uuid`: tune2fs, xfs_admin, btrfstune, mkswap in the
//! appliance) and LVM new random ones (`pvchange -u`, `vgchange -u`).
//!
//! Owns: those calls. Must not: decide which UUIDs change (sysprep does) or touch
//! files inside the guest.

use super::{call, Session};
use crate::guest::{BlockId, BlockKind, Result};

impl Session {
    /// Every filesystem (btrfs subvolumes and unknown contents left out), PV and VG.
    pub(super) fn list_block_ids(&mut self) -> Result<Vec<BlockId>> {
        let mut found = Vec::new();
        let filesystems = self
            .filesystems()?
            .into_iter()
            .filter(|(device, fstype)| fstype != "unknown" && !device.starts_with("btrfsvol:"));
        for (device, fstype) in filesystems {
            let uuid = call("vfs_uuid", device.clone(), self.handle.vfs_uuid(&device))?;
            found.push(BlockId {
                kind: BlockKind::Filesystem { fstype },
                device,
                uuid,
            });
        }
        if !self.has_lvm()? {
            return Ok(found);
        }
        let mut pvs = call("pvs", "/", self.handle.pvs())?;
        pvs.sort();
        for device in pvs {
            let uuid = call("pvuuid", device.clone(), self.handle.pvuuid(&device))?;
            found.push(BlockId {
                kind: BlockKind::PhysicalVolume,
                device,
                uuid,
            });
        }
        let mut vgs = call("vgs", "/", self.handle.vgs())?;
        vgs.sort();
        for name in vgs {
            let uuid = call("vguuid", name.clone(), self.handle.vguuid(&name))?;
            found.push(BlockId {
                kind: BlockKind::VolumeGroup,
                device: name,
                uuid,
            });
        }
        Ok(found)
    }

    /// `set_uuid` on an unmounted filesystem. ext2/3/4 get `e2fsck -f -p` first:
    /// tune2fs refuses to rewrite the metadata checksums (which derive from the UUID)
    /// of a filesystem mounted since its last check, and `-p` repairs nothing a
    /// clean filesystem would need (a damaged one fails the run instead).
    pub(super) fn set_uuid_of(&mut self, device: &str, uuid: &str) -> Result<()> {
        call("umount_all", "/", self.handle.umount_all())?;
        let fstype = call("vfs_type", device, self.handle.vfs_type(device))?;
        if matches!(fstype.as_str(), "ext2" | "ext3" | "ext4") {
            call("e2fsck -f -p", device, self.handle.e2fsck_f(device))?;
        }
        call("set_uuid", device, self.handle.set_uuid(device, uuid))
    }

    /// New random PV and VG UUIDs, with every VG deactivated meanwhile.
    pub(super) fn renew_lvm(&mut self) -> Result<()> {
        if !self.has_lvm()? {
            return Ok(());
        }
        let (pvs, vgs) = (
            call("pvs", "/", self.handle.pvs())?,
            call("vgs", "/", self.handle.vgs())?,
        );
        if pvs.is_empty() && vgs.is_empty() {
            return Ok(());
        }
        call("umount_all", "/", self.handle.umount_all())?;
        call(
            "vg_activate_all",
            "false",
            self.handle.vg_activate_all(false),
        )?;
        if !pvs.is_empty() {
            call("pvchange_uuid_all", "/", self.handle.pvchange_uuid_all())?;
        }
        if !vgs.is_empty() {
            call("vgchange_uuid_all", "/", self.handle.vgchange_uuid_all())?;
        }
        call("vg_activate_all", "true", self.handle.vg_activate_all(true))
    }

    fn has_lvm(&mut self) -> Result<bool> {
        call(
            "feature_available",
            "lvm2",
            self.handle.feature_available(&["lvm2"]),
        )
    }
}
