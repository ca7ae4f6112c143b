//! Inspection and mounting: first the quick way (each candidate filesystem mounted
//! read-only and recognised by [`probe_root`] from its files, fstab mapped by UUID,
//! label, LVM or disk name), falling back to libguestfs's `inspect_os` whenever the
//! quick way is unsure (no root found, an fstab entry it cannot map, btrfs
//! subvolumes); then mounting an OS root's filesystems per its fstab.
//!
//! Owns: turning either answer into [`OsInfo`]. Must not: change files.

use std::collections::HashMap;

use super::{call, ffi, Session};
use crate::guest::probe::{device_named, probe_root, FstabEntry};
use crate::guest::{Family, OsInfo, Result, SkippedMount};

/// Filesystem types a Linux root can live on.
const ROOT_TYPES: [&str; 5] = ["ext2", "ext3", "ext4", "xfs", "btrfs"];

/// The OS roots found the quick way; `None` means "ask `inspect_os`".
pub fn quick_inspect(session: &mut Session) -> Result<Option<Vec<OsInfo>>> {
    let filesystems: HashMap<String, String> = session.filesystems()?.into_iter().collect();
    if filesystems.keys().any(|dev| dev.starts_with("btrfsvol:")) {
        return Ok(None);
    }
    let mut names = Names::default();
    for (device, fstype) in &filesystems {
        if fstype == "swap" || fstype == "unknown" {
            continue;
        }
        if let Ok(uuid) = session.handle.vfs_uuid(device) {
            names
                .by_uuid
                .insert(uuid.to_ascii_lowercase(), device.clone());
        }
        if let Ok(label) = session.handle.vfs_label(device) {
            names.by_label.insert(label, device.clone());
        }
    }
    let mut candidates: Vec<&String> = filesystems
        .iter()
        .filter(|(_, fstype)| ROOT_TYPES.contains(&fstype.as_str()))
        .map(|(device, _)| device)
        .collect();
    candidates.sort();
    let mut roots = Vec::new();
    for device in candidates {
        if session.handle.mount_ro(device, "/").is_err() {
            continue;
        }
        let facts = probe_root(session);
        call("umount_all", "/", session.handle.umount_all())?;
        let Some(facts) = facts? else {
            continue;
        };
        let mut mountpoints = vec![("/".to_owned(), device.clone())];
        for entry in &facts.fstab {
            if entry.mountpoint == "/" {
                continue;
            }
            match names.device_for(entry, &filesystems) {
                Some(target) => mountpoints.push((entry.mountpoint.clone(), target)),
                None => return Ok(None),
            }
        }
        mountpoints.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
        roots.push(OsInfo {
            root: device.clone(),
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
    Ok((!roots.is_empty()).then_some(roots))
}

/// Filesystem UUIDs and labels on the disk.
#[derive(Default)]
struct Names {
    by_uuid: HashMap<String, String>,
    by_label: HashMap<String, String>,
}

impl Names {
    /// The libguestfs device an fstab spec names, if it is on this disk.
    fn device_for(
        &self,
        entry: &FstabEntry,
        filesystems: &HashMap<String, String>,
    ) -> Option<String> {
        let spec = entry.spec.as_str();
        if let Some(uuid) = spec.strip_prefix("UUID=") {
            return self.by_uuid.get(&uuid.to_ascii_lowercase()).cloned();
        }
        if let Some(label) = spec.strip_prefix("LABEL=") {
            return self.by_label.get(label).cloned();
        }
        let candidate = device_named(spec)?;
        filesystems.contains_key(&candidate).then_some(candidate)
    }
}

/// Every OS root libguestfs finds on the attached disk.
pub fn inspect(handle: &ffi::Handle) -> Result<Vec<OsInfo>> {
    let roots = call("inspect_os", "/", handle.inspect_os())?;
    let mut found = Vec::with_capacity(roots.len());
    for root in roots {
        let text = |value: std::result::Result<String, ffi::Error>| value.unwrap_or_default();
        let distro = text(handle.inspect_get_distro(&root));
        let mut mountpoints: Vec<(String, String)> = call(
            "inspect_get_mountpoints",
            root.clone(),
            handle.inspect_get_mountpoints(&root),
        )?
        .into_iter()
        .collect();
        // Parents before children: "/" before "/boot" before "/boot/efi".
        mountpoints.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
        found.push(OsInfo {
            kind: text(handle.inspect_get_type(&root)),
            family: Family::of_distro(&distro),
            distro,
            major_version: handle.inspect_get_major_version(&root).unwrap_or(0),
            minor_version: handle.inspect_get_minor_version(&root).unwrap_or(0),
            product_name: text(handle.inspect_get_product_name(&root)),
            hostname: text(handle.inspect_get_hostname(&root)),
            mountpoints,
            root,
        });
    }
    found.sort_by(|a, b| a.root.cmp(&b.root));
    Ok(found)
}

/// Mounts `os`'s filesystems, parents first. The root must mount; any other that
/// does not is returned as skipped (virt-sysprep warns and goes on too).
pub fn mount(handle: &ffi::Handle, os: &OsInfo) -> Result<Vec<SkippedMount>> {
    let mut skipped = Vec::new();
    for (mountpoint, device) in &os.mountpoints {
        let result = handle.mount(device, mountpoint);
        if mountpoint == "/" {
            call("mount", device.clone(), result)?;
        } else if let Err(error) = result {
            skipped.push(SkippedMount {
                mountpoint: mountpoint.clone(),
                device: device.clone(),
                reason: error.to_string(),
            });
        }
    }
    Ok(skipped)
}
