//! lvm-uuids without an appliance: [`NativeGuest::renew_lvm`] gives every PV and VG
//! of the disk a new random UUID, as `pvchange -u` and `vgchange -u` do. The writes
//! ([`super::lvm::renew`]) wait with the filesystem edits for the commit, and the
//! guest's view of its PVs and VGs is updated at once, so `block_ids` lists the new
//! UUIDs.
//!
//! Must not: write to the image (see [`super::write`]), or change anything when one
//! PV or VG cannot be renewed.

use std::io::Read;

use super::guest::{backend_error, NativeGuest};
use super::lvm::{self, renew};
use crate::guest::{GuestError, Result};

impl NativeGuest {
    /// New random UUIDs for every PV and VG; a second renewal in one session is refused.
    pub(super) fn renew_lvm(&mut self) -> Result<()> {
        let device = self.image.display().to_string();
        if !self.lvm_writes.is_empty() {
            return Err(GuestError::NativeUnsupported {
                operation: "renew the LVM UUIDs of",
                path: device,
                reason: "they were renewed already in this session".to_owned(),
            });
        }
        let mut urandom = std::fs::File::open("/dev/urandom")
            .map_err(|e| GuestError::io("open", "/dev/urandom", e))?;
        let mut failure = None;
        let mut random = |buf: &mut [u8]| {
            if let Err(e) = urandom.read_exact(buf) {
                failure = Some(e);
            }
        };
        let renewal = renew::renew(&self.found.physical_volumes, &mut random)
            .map_err(|e| backend_error("renew the LVM UUIDs of", &device, e))?;
        if let Some(e) = failure {
            return Err(GuestError::io("read", "/dev/urandom", e));
        }
        self.found.volume_groups = lvm::volume_groups(&renewal.pvs);
        self.found.physical_volumes = renewal.pvs;
        self.lvm_writes = renewal.writes;
        Ok(())
    }
}
