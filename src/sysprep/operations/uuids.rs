//! fs-uuids and lvm-uuids: new filesystem UUIDs (chosen here, so the guest's references
//! to the old ones can be rewritten in the same run) and new LVM PV/VG UUIDs (LVM picks
//! them at random).
//!
//! A changed UUID is only safe when nothing still names the old one. fs-uuids rewrites
//! every reference in the files that name filesystems at boot ([`REFERENCE_GLOBS`]:
//! fstab, crypttab, GRUB's config and environment, BLS entries, the kernel command
//! line, initramfs-tools' resume) and warns about what it cannot rewrite (initramfs
//! images, which may carry a copy). lvm-uuids removes `/etc/lvm/devices/system.devices`
//! (its PVIDs name the old PVs: LVM would ignore the new ones; without the file LVM
//! uses every device, as for a freshly installed image). Owns: those rules and the
//! [`DevicePlan`] that runs after every root's files are done. Must not: run programs
//! in the guest (no `dracut`, no `update-initramfs`).

use std::collections::BTreeMap;
use std::io::Read;

use super::super::edit::{edit_lines, LineAction};
use super::super::plan::{Action, Change, Planner};
use super::super::{Options, Result};
use crate::guest::{BlockId, BlockKind, FileKind, GuestError, GuestFs};

/// Filesystem types whose UUID the backends can set (libguestfs: tune2fs, xfs_admin,
/// btrfstune, mkswap).
const SETTABLE: [&str; 6] = ["ext2", "ext3", "ext4", "xfs", "btrfs", "swap"];

/// Files that name filesystems by UUID at boot.
pub const REFERENCE_GLOBS: [&str; 12] = [
    "/etc/fstab",
    "/etc/crypttab",
    "/etc/default/grub",
    "/etc/default/grub.d/*.cfg",
    "/etc/kernel/cmdline",
    "/etc/initramfs-tools/conf.d/resume",
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/boot/grub/grubenv",
    "/boot/grub2/grubenv",
    "/boot/efi/EFI/*/grub.cfg",
    "/boot/loader/entries/*.conf",
];

/// Initramfs images: compressed archives imgferry does not rewrite.
const INITRAMFS_GLOBS: [&str; 3] = [
    "/boot/initramfs-*.img",
    "/boot/initrd.img-*",
    "/boot/initrd-*",
];

/// LVM's record of the PVs it may use (EL9): host identity naming the old PVIDs.
pub const LVM_DEVICES_FILE: &str = "/etc/lvm/devices/system.devices";

/// The block-level changes of a run, decided once for the whole disk.
#[derive(Debug, Default)]
pub struct DevicePlan {
    /// fs-uuids: (filesystem, its new UUID).
    pub filesystems: Vec<(BlockId, String)>,
    /// lvm-uuids: the PVs and VGs whose UUIDs LVM will replace.
    pub lvm: Vec<BlockId>,
    /// Filesystems fs-uuids leaves alone, with why.
    pub skipped: Vec<String>,
}

impl DevicePlan {
    /// Lists the disk's UUIDs when fs-uuids or lvm-uuids is selected, and picks the
    /// new filesystem UUIDs.
    pub fn new(guest: &mut dyn GuestFs, options: &Options) -> Result<Self> {
        let selected = |name: &str| options.operations.iter().any(|op| op.name == name);
        let (fs, lvm) = (selected("fs-uuids"), selected("lvm-uuids"));
        let mut plan = Self::default();
        if !fs && !lvm {
            return Ok(plan);
        }
        for id in guest.block_ids()? {
            match &id.kind {
                BlockKind::Filesystem { fstype } if fs => {
                    if SETTABLE.contains(&fstype.as_str()) && !id.uuid.is_empty() {
                        let new = random_uuid()?;
                        plan.filesystems.push((id, new));
                    } else {
                        plan.skipped.push(format!(
                            "{} ({fstype}) keeps its UUID: imgferry sets UUIDs of ext2/3/4, XFS, btrfs and swap",
                            id.device
                        ));
                    }
                }
                BlockKind::PhysicalVolume | BlockKind::VolumeGroup if lvm => plan.lvm.push(id),
                _ => {}
            }
        }
        Ok(plan)
    }

    /// Old UUID (lowercase) -> new, for rewriting references.
    fn renames(&self) -> BTreeMap<String, String> {
        self.filesystems
            .iter()
            .map(|(id, new)| (id.uuid.to_ascii_lowercase(), new.clone()))
            .collect()
    }

    /// Makes the changes (unless `dry_run`) and returns them, one per UUID. LVM's new
    /// UUIDs are read back after the change (unknown, so not shown, in a dry run).
    pub fn apply(&self, guest: &mut dyn GuestFs, dry_run: bool) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for (id, new) in &self.filesystems {
            if !dry_run {
                guest.set_fs_uuid(&id.device, new)?;
            }
            changes.push(uuid_change("fs-uuids", id, Some(new)));
        }
        if self.lvm.is_empty() {
            return Ok(changes);
        }
        if dry_run {
            changes.extend(self.lvm.iter().map(|id| uuid_change("lvm-uuids", id, None)));
            return Ok(changes);
        }
        guest.renew_lvm_uuids()?;
        let now = guest.block_ids()?;
        for id in &self.lvm {
            let new = now
                .iter()
                .find(|n| n.kind == id.kind && n.device == id.device)
                .map(|n| n.uuid.as_str());
            if new.is_none_or(|new| new == id.uuid) {
                return Err(GuestError::Backend {
                    operation: "change the LVM UUID of",
                    path: id.device.clone(),
                    message: format!("the UUID is still {:?} afterwards", id.uuid),
                }
                .into());
            }
            changes.push(uuid_change("lvm-uuids", id, new));
        }
        Ok(changes)
    }
}

fn uuid_change(operation: &'static str, id: &BlockId, new: Option<&str>) -> Change {
    Change {
        operation,
        path: id.device.clone(),
        action: Action::NewUuid,
        kind: match id.kind {
            BlockKind::Filesystem { .. } => "filesystem",
            BlockKind::PhysicalVolume => "lvm-pv",
            BlockKind::VolumeGroup => "lvm-vg",
        },
        removed_lines: vec![id.uuid.clone()],
        added_lines: new.map(|n| vec![n.to_owned()]).unwrap_or_default(),
    }
}

/// A random (version 4) UUID from the host's kernel.
fn random_uuid() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs_err::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| GuestError::io("read", "/dev/urandom", e))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// fs-uuids, file part: rewrite this root's references to the filesystems that get a
/// new UUID; warn about initramfs images.
pub fn fs_uuids(planner: &mut Planner) -> Result<()> {
    for skipped in planner.devices.skipped.clone() {
        planner.warn(skipped);
    }
    let renames = planner.devices.renames();
    if renames.is_empty() {
        return Ok(());
    }
    let mut rewrote = false;
    for glob in REFERENCE_GLOBS {
        for (matched, _) in planner.glob(glob)? {
            let Some((path, meta)) = planner.stat(matched.as_str())? else {
                continue;
            };
            if meta.kind != FileKind::File {
                continue;
            }
            let old = planner.read(&path)?;
            if let Some(edit) = edit_lines(&old, |line| match rename_in(line, &renames) {
                Some(new) => LineAction::Replace(new),
                None => LineAction::Keep,
            }) {
                planner.edit(&path, edit);
                rewrote = true;
            }
        }
    }
    if rewrote {
        let mut images = Vec::new();
        for glob in INITRAMFS_GLOBS {
            images.extend(planner.glob(glob)?.into_iter().map(|(p, _)| p.to_string()));
        }
        if !images.is_empty() {
            planner.warn(format!(
                "initramfs images may still name the old UUIDs (a copy of fstab or crypttab, resume=); imgferry does not rebuild them: if the guest does not boot, run dracut -f or update-initramfs -u in it ({})",
                images.join(", ")
            ));
        }
    }
    Ok(())
}

/// `line` with every whole-word occurrence of an old UUID (any case) replaced.
fn rename_in(line: &str, renames: &BTreeMap<String, String>) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    let mut changed = false;
    while at < line.len() {
        let found = renames.iter().find(|(old, _)| {
            lower[at..].starts_with(old.as_str())
                && !is_uuid_char(lower[..at].chars().next_back())
                && !is_uuid_char(lower[at + old.len()..].chars().next())
        });
        match found {
            Some((old, new)) => {
                out.push_str(new);
                at += old.len();
                changed = true;
            }
            None => {
                let c = line[at..].chars().next().unwrap_or(' ');
                out.push(c);
                at += c.len_utf8();
            }
        }
    }
    changed.then_some(out)
}

fn is_uuid_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_hexdigit() || c == '-')
}

/// lvm-uuids, file part: LVM's devices file goes when the disk has PVs.
pub fn lvm_uuids(planner: &mut Planner) -> Result<()> {
    let has_pvs = planner
        .devices
        .lvm
        .iter()
        .any(|id| id.kind == BlockKind::PhysicalVolume);
    if !has_pvs {
        return Ok(());
    }
    if let Some((path, meta)) = planner.lookup(LVM_DEVICES_FILE)? {
        if meta.kind != FileKind::Directory {
            planner.remove(&path, meta)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_whole_uuids_in_any_case_only() {
        let renames = BTreeMap::from([(
            "0a1b2c3d-0000-4000-8000-000000000001".to_owned(),
            "ffffffff-1111-4111-8111-111111111111".to_owned(),
        )]);
        assert_eq!(
            rename_in(
                "UUID=0A1B2C3D-0000-4000-8000-000000000001 / xfs defaults 0 0",
                &renames
            )
            .as_deref(),
            Some("UUID=ffffffff-1111-4111-8111-111111111111 / xfs defaults 0 0")
        );
        assert_eq!(
            rename_in(
                "search --fs-uuid --set=root 0a1b2c3d-0000-4000-8000-000000000001",
                &renames
            )
            .as_deref(),
            Some("search --fs-uuid --set=root ffffffff-1111-4111-8111-111111111111")
        );
        // Part of a longer hex string: not this UUID.
        assert_eq!(
            rename_in("a0a1b2c3d-0000-4000-8000-000000000001", &renames),
            None
        );
        assert_eq!(
            rename_in("0a1b2c3d-0000-4000-8000-0000000000012", &renames),
            None
        );
        assert_eq!(rename_in("UUID=other é", &renames), None);
    }

    #[test]
    fn random_uuids_are_version_4() {
        let a = random_uuid().unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, random_uuid().unwrap());
    }
}
