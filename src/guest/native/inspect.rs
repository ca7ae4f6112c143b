//! Inspection without an appliance: each ext2/3/4 filesystem is mounted alone at `/`
//! and recognised by the backend-neutral [`probe_root`] (os-release and friends); the
//! root's fstab is then mapped to this disk's filesystems by `UUID=`, `LABEL=` or
//! device name (`/dev/vda2` → `/dev/sda2`, `/dev/mapper/VG-LV` → `/dev/VG/LV`, as
//! libguestfs names them).
//!
//! Owns: that mapping and mount_os. An fstab filesystem that is not ext2/3/4 on this
//! disk (XFS `/boot`, an LV, ...) is not in the OS's mountpoints; mount_os reports it
//! as skipped, so a caller can tell the native backend does not see all of the guest.
//! Must not: change anything.

use super::guest::NativeGuest;
use crate::guest::probe::{device_named, probe_root, FstabEntry};
use crate::guest::{Family, OsInfo, Result, SkippedMount};

/// The OS roots on the disk, by device name.
pub fn inspect(guest: &mut NativeGuest) -> Result<Vec<OsInfo>> {
    let devices: Vec<String> = guest
        .discovered()
        .filesystems
        .iter()
        .map(|f| f.device.clone())
        .collect();
    let mut roots = Vec::new();
    for device in devices {
        guest.unmount_all_mounts();
        guest.mount(&device, "/");
        let facts = probe_root(guest);
        guest.unmount_all_mounts();
        let Some(facts) = facts? else { continue };
        let mut mountpoints = vec![("/".to_owned(), device.clone())];
        for entry in facts.fstab.iter().filter(|e| e.mountpoint != "/") {
            if let Some(target) = device_for(guest, entry) {
                mountpoints.push((entry.mountpoint.clone(), target));
            }
        }
        mountpoints.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
        roots.push(OsInfo {
            root: device,
            kind: "linux".to_owned(),
            family: Family::of_distro(&facts.distro),
            distro: facts.distro,
            major_version: facts.major_version,
            minor_version: facts.minor_version,
            product_name: facts.product_name,
            hostname: facts.hostname,
            mountpoints,
        });
    }
    Ok(roots)
}

/// Mounts `os`'s filesystems; the fstab entries of its root that are not ext2/3/4 on
/// this disk are returned as skipped.
pub fn mount_os(guest: &mut NativeGuest, os: &OsInfo) -> Result<Vec<SkippedMount>> {
    guest.unmount_all_mounts();
    if !guest.mount(&os.root, "/") {
        return Err(crate::guest::GuestError::Backend {
            operation: "mount",
            path: "/".to_owned(),
            message: format!("{} is not an ext2/3/4 filesystem on this disk", os.root),
        });
    }
    for (mountpoint, device) in os.mountpoints.iter().filter(|(m, _)| m != "/") {
        guest.mount(device, mountpoint);
    }
    let facts = probe_root(guest)?;
    let mut skipped = Vec::new();
    for entry in facts
        .iter()
        .flat_map(|f| &f.fstab)
        .filter(|e| e.mountpoint != "/")
    {
        if !os.mountpoints.iter().any(|(m, _)| *m == entry.mountpoint) {
            let reason = unreadable_reason(guest, &entry.spec).unwrap_or_else(|| {
                "not an ext2/3/4 filesystem the native backend found on this disk".to_owned()
            });
            skipped.push(SkippedMount {
                mountpoint: entry.mountpoint.clone(),
                device: entry.spec.clone(),
                reason,
            });
        }
    }
    Ok(skipped)
}

/// The device an fstab spec names, when it is an ext2/3/4 filesystem of this disk.
fn device_for(guest: &NativeGuest, entry: &FstabEntry) -> Option<String> {
    let filesystems = &guest.discovered().filesystems;
    let spec = entry.spec.as_str();
    let found = if let Some(uuid) = spec.strip_prefix("UUID=") {
        filesystems
            .iter()
            .find(|f| f.fs.sb.uuid_text().eq_ignore_ascii_case(uuid))
    } else if let Some(label) = spec.strip_prefix("LABEL=") {
        filesystems.iter().find(|f| f.fs.sb.label == label)
    } else {
        let device = device_named(spec)?;
        filesystems.iter().find(|f| f.device == device)
    };
    found.map(|f| f.device.clone())
}

/// Why the native backend cannot read the volume an fstab spec names by device
/// (`/dev/mapper/VG-LV`, `/dev/VG/LV`, `/dev/vda3`), when discovery recorded it.
fn unreadable_reason(guest: &NativeGuest, spec: &str) -> Option<String> {
    let device = device_named(spec)?;
    let found = guest
        .discovered()
        .unreadable
        .iter()
        .find(|u| u.device == device)?;
    Some(format!("{}: {}", found.device, found.reason))
}
