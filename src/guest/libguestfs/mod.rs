//! The libguestfs backend: one appliance launch per image, all writes into a qcow2
//! overlay that reaches the image only on [`Session::commit`].
//!
//! Owns: the libguestfs handle (through [`ffi`], the only place in imgferry that loads
//! libguestfs, at run time), the accelerator choice ([`launch`]), the write overlay
//! ([`overlay`]), inspection ([`inspect`]) and scrubbing ([`scrub`]). Must not: know about sysprep operations;
//! resolve guest paths itself (it receives [`Resolved`](super::Resolved) paths).
//!
//! All-or-nothing: the image is opened by qemu only as the read-only backing file of a
//! fresh overlay in the image's directory. Dropping a `Session` discards the overlay,
//! so an error anywhere leaves the image byte-identical; only `commit` — after the
//! appliance has shut down cleanly — merges the overlay into the image with
//! `qemu-img commit`. A dry run adds the image read-only and never writes a byte.

mod blockid;
pub mod ffi;
mod fs;
mod fscheck;
mod inspect;
pub mod launch;
mod overlay;
mod scrub;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{GuestError, Result};
pub use fscheck::FsCheck;
pub use launch::Accelerator;
use overlay::Overlay;

/// How a session opens its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Changes may be committed to the image (through an overlay).
    ReadWrite,
    /// Nothing can reach the image: the drive is added read-only and libguestfs
    /// keeps any write in a throwaway overlay of its own.
    DryRun,
}

/// One launched appliance with one image attached.
pub struct Session {
    handle: ffi::Handle,
    image: PathBuf,
    overlay: Option<Overlay>,
    accelerator: Accelerator,
    launch_time: Duration,
    /// `inspect_os` costs seconds (it mounts every filesystem): done once per session.
    inspected: Option<Vec<super::OsInfo>>,
    /// `list_filesystems` probes every device (~2.5 s under TCG): asked once per session.
    /// Nothing we do changes the answer: new UUIDs keep device names and types.
    filesystems: Option<Vec<(String, String)>>,
    /// Whether file content is zeroed before it is removed, truncated or replaced
    /// (see [`scrub`]), and how many bytes were.
    scrub: bool,
    scrubbed: u64,
    /// Mounted filesystems: mountpoint and whether it is copy-on-write (btrfs), where
    /// overwriting in place is impossible; and the paths left unscrubbed there.
    mount_kinds: Vec<(String, bool)>,
    unscrubbed: Vec<String>,
}

impl Session {
    /// Attaches `image` (raw or qcow2, judged by content) and launches the appliance:
    /// KVM first when usable, TCG when that launch fails (see [`launch`]).
    pub fn open(image: &Path, access: Access) -> Result<Self> {
        let format = overlay::image_format(image)?;
        let overlay = match access {
            Access::ReadWrite => Some(Overlay::create(image, format)?),
            Access::DryRun => None,
        };
        let drive = match &overlay {
            Some(overlay) => launch::Drive {
                path: overlay.path().to_path_buf(),
                format: "qcow2",
                readonly: false,
            },
            None => launch::Drive {
                path: image.to_path_buf(),
                format,
                readonly: true,
            },
        };
        let launched = launch::launch(image, &drive)?;
        Ok(Self {
            handle: launched.handle,
            image: image.to_path_buf(),
            overlay,
            accelerator: launched.accelerator,
            launch_time: launched.elapsed,
            inspected: None,
            filesystems: None,
            scrub: true,
            scrubbed: 0,
            mount_kinds: Vec::new(),
            unscrubbed: Vec::new(),
        })
    }

    /// Every filesystem on the disk as `(device, type)`, sorted by device, as
    /// `list_filesystems` reports it (asked once per session).
    fn filesystems(&mut self) -> Result<Vec<(String, String)>> {
        if let Some(found) = &self.filesystems {
            return Ok(found.clone());
        }
        let mut found: Vec<(String, String)> =
            call("list_filesystems", "/", self.handle.list_filesystems())?
                .into_iter()
                .collect();
        found.sort();
        self.filesystems = Some(found.clone());
        Ok(found)
    }

    /// How the appliance was accelerated.
    pub fn accelerator(&self) -> &Accelerator {
        &self.accelerator
    }

    /// How long the appliance took to launch (including a failed KVM attempt).
    pub fn launch_time(&self) -> Duration {
        self.launch_time
    }

    /// Shuts the appliance down cleanly and merges every change into the image.
    /// Consumes the session: on error the image is unchanged unless the failure was in
    /// the merge itself (reported as [`GuestError::Overlay`] with action `commit`).
    pub fn commit(self) -> Result<()> {
        let Self {
            handle,
            image,
            overlay,
            ..
        } = self;
        call("umount_all", "/", handle.umount_all())?;
        call("shutdown", image.display().to_string(), handle.shutdown())?;
        drop(handle);
        match overlay {
            Some(overlay) => overlay.commit(),
            None => Err(GuestError::Overlay {
                action: "commit",
                path: image,
                message: "the session was opened for a dry run".to_owned(),
            }),
        }
    }
}

/// Turns a libguestfs result into ours, naming the operation and the path.
fn call<T>(
    operation: &'static str,
    path: impl Into<String>,
    result: std::result::Result<T, ffi::Error>,
) -> Result<T> {
    result.map_err(|error| GuestError::Backend {
        operation,
        path: path.into(),
        message: error.to_string(),
    })
}
