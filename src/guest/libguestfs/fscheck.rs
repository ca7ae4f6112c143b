//! Filesystem checks inside the appliance, after everything is unmounted:
//! `xfs_repair -n`, `btrfs check` (no repair) and `e2fsck -fn` (through the
//! appliance's shell, since the libguestfs call has no `-n`).
//!
//! Owns: picking the checker per filesystem type. Must not: repair anything.

use super::{call, ffi, Session};
use crate::guest::Result;

/// One filesystem's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsCheck {
    pub device: String,
    pub fstype: String,
    /// `None` when no checker applies (swap, vfat, unknown).
    pub clean: Option<bool>,
    /// The checker's complaint when not clean.
    pub detail: String,
}

impl Session {
    /// Unmounts everything and checks every filesystem on the disk.
    pub fn check_filesystems(&mut self) -> Result<Vec<FsCheck>> {
        call("umount_all", "/", self.handle.umount_all())?;
        let filesystems = self.filesystems()?;
        let mut checks = Vec::with_capacity(filesystems.len());
        for (device, fstype) in filesystems {
            let verdict: Option<std::result::Result<(), String>> = match fstype.as_str() {
                "xfs" => {
                    let options = ffi::XfsRepairOptArgs {
                        nomodify: Some(true),
                    };
                    let code = call(
                        "xfs_repair",
                        device.clone(),
                        self.handle.xfs_repair(&device, options),
                    )?;
                    Some(if code == 0 {
                        Ok(())
                    } else {
                        Err(format!("xfs_repair -n exited {code}"))
                    })
                }
                "ext2" | "ext3" | "ext4" => Some(self.e2fsck_read_only(&device)?),
                "btrfs" => {
                    let options = ffi::BtrfsFsckOptArgs {
                        repair: Some(false),
                    };
                    Some(
                        self.handle
                            .btrfs_fsck(&device, options)
                            .map_err(|e| e.to_string()),
                    )
                }
                _ => None,
            };
            checks.push(FsCheck {
                device,
                fstype,
                clean: verdict.as_ref().map(std::result::Result::is_ok),
                detail: verdict
                    .and_then(std::result::Result::err)
                    .unwrap_or_default(),
            });
        }
        Ok(checks)
    }

    /// `e2fsck -fn` through the appliance's shell: the libguestfs call has no `-n`, and
    /// the shell sees the appliance's own device names, so the filesystem is found by
    /// UUID.
    fn e2fsck_read_only(&mut self, device: &str) -> Result<std::result::Result<(), String>> {
        let uuid = call("vfs_uuid", device.to_owned(), self.handle.vfs_uuid(device))?;
        if uuid.is_empty() || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Ok(Err(format!("no usable filesystem UUID ({uuid:?})")));
        }
        let script =
            format!("dev=$(blkid -U {uuid}) && e2fsck -fn \"$dev\" 2>&1; echo {EXIT_MARK}$?");
        let output = call(
            "debug sh",
            device.to_owned(),
            self.handle.debug("sh", &[&script]),
        )?;
        let code = output
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(EXIT_MARK))
            .map(str::trim);
        Ok(if code == Some("0") {
            Ok(())
        } else {
            Err(output)
        })
    }
}

/// Printed after the checker so its exit code can be read back from `debug sh`.
const EXIT_MARK: &str = "imgferry-fsck-exit=";
