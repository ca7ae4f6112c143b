//! Inspection and mounting through libguestfs: `inspect_os`, the `inspect_get_*`
//! calls, and mounting an OS root's filesystems per its fstab.
//!
//! Owns: turning libguestfs's answers into [`OsInfo`]. Must not: change files.

use super::call;
use crate::guest::{Family, OsInfo, Result, SkippedMount};

/// Every OS root libguestfs finds on the attached disk.
pub fn inspect(handle: &guestfs::Handle) -> Result<Vec<OsInfo>> {
    let roots = call("inspect_os", "/", handle.inspect_os())?;
    let mut found = Vec::with_capacity(roots.len());
    for root in roots {
        let text = |value: std::result::Result<String, guestfs::Error>| value.unwrap_or_default();
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
pub fn mount(handle: &guestfs::Handle, os: &OsInfo) -> Result<Vec<SkippedMount>> {
    let mut skipped = Vec::new();
    for (mountpoint, device) in &os.mountpoints {
        let result = handle.mount(device, mountpoint);
        if mountpoint == "/" {
            call("mount", device.clone(), result)?;
        } else if let Err(error) = result {
            skipped.push(SkippedMount {
                mountpoint: mountpoint.clone(),
                device: device.clone(),
                reason: super::error_message(&error),
            });
        }
    }
    Ok(skipped)
}
