//! Identity operations with their own planners: machine-id, ssh-hostkeys, cloud-init,
//! systemd-credential-secret.
//!
//! Owns: the rules for those files. Must not: write a new identity into the image
//! (every clone of a template would share it).

use super::super::plan::Planner;
use super::super::{MachineIdMode, Result};
use crate::guest::FileKind;

/// systemd's first-boot marker: `ConditionFirstBoot=` units run and a new id is made.
const UNINITIALIZED: &[u8] = b"uninitialized\n";

/// `/etc/machine-id` per `--machine-id`, and a regular-file dbus copy removed (a
/// symlink to `/etc/machine-id` is left: it follows the new id).
pub fn machine_id(planner: &mut Planner) -> Result<()> {
    if let Some((path, meta)) = planner.lookup("/etc/machine-id")? {
        if meta.kind == FileKind::File {
            match planner.options.machine_id {
                MachineIdMode::Uninitialized => {
                    let old = planner.read(&path)?;
                    planner.replace(&path, Some(&old), UNINITIALIZED);
                }
                MachineIdMode::Empty => planner.truncate(&path, meta),
                MachineIdMode::Remove => planner.remove(&path, meta)?,
            }
        } else {
            planner.warn(format!("{path} is a {}, left alone", meta.kind.name()));
        }
    }
    if let Some((path, meta)) = planner.lookup("/var/lib/dbus/machine-id")? {
        if meta.kind == FileKind::File {
            planner.remove(&path, meta)?;
        }
    }
    Ok(())
}

/// `/etc/ssh/*_host_*`, regular files only: a directory that matches (old keys kept
/// by an admin) is no key, and virt-sysprep aborts on it.
pub fn ssh_hostkeys(planner: &mut Planner) -> Result<()> {
    for (path, meta) in planner.glob("/etc/ssh/*_host_*")? {
        if meta.kind == FileKind::File {
            planner.remove(&path, meta)?;
        }
    }
    Ok(())
}

/// Everything under `/var/lib/cloud` but `seed` (the NoCloud datasource the image may
/// need): instance state gone, cloud-init runs again and regenerates host keys.
pub fn cloud_init(planner: &mut Planner) -> Result<()> {
    for (path, meta) in planner.glob("/var/lib/cloud/*")? {
        if path.file_name() != Some("seed") {
            planner.remove(&path, meta)?;
        }
    }
    Ok(())
}

/// `/var/lib/systemd/credential.secret`; warns when host-encrypted credentials exist,
/// since they cannot be decrypted with the new secret.
pub fn credential_secret(planner: &mut Planner) -> Result<()> {
    let Some((path, meta)) = planner.lookup("/var/lib/systemd/credential.secret")? else {
        return Ok(());
    };
    if meta.kind != FileKind::File {
        return Ok(());
    }
    planner.remove(&path, meta)?;
    for store in [
        "/etc/credstore.encrypted/*",
        "/usr/lib/credstore.encrypted/*",
    ] {
        if let Some((found, _)) = planner.glob(store)?.into_iter().next() {
            planner.warn(format!(
                "{found} was encrypted with the removed host secret and will not decrypt on the new VM"
            ));
        }
    }
    Ok(())
}
