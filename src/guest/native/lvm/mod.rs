//! LVM2 without device-mapper: find the physical volumes on the disk's volumes
//! ([`label`]), read each one's current VG metadata ([`mda`], parsed by [`text`] and
//! understood by [`vg`]), and map every visible linear logical volume onto the disk
//! as a [`Volume`] made of its segments, named `/dev/VG/LV` as libguestfs names it.
//!
//! Owns the assembly: the newest metadata (highest `seqno`) of each VG wins, each of
//! its PVs is matched by UUID to a PV found on this disk, and each LV either becomes
//! a volume or keeps the reason it cannot (thin, RAID, snapshot, a missing PV...).
//! [`renew`] computes the writes of new PV and VG UUIDs. Must not: write anything, or
//! decide whether an unreadable LV matters (the backend falls back only when sysprep
//! would need it).

pub mod label;
pub mod mda;
pub mod renew;
pub mod text;
pub mod vg;

use super::error::Result;
use super::partition::SECTOR;
use super::Volume;
use label::PvLabel;
use vg::VgMetadata;

/// A physical volume found on a volume of the disk.
#[derive(Debug, Clone)]
pub struct PhysicalVolume {
    /// `/dev/sda2`.
    pub device: String,
    pub volume: Volume,
    pub label: PvLabel,
    /// The VG metadata its metadata areas hold (`None`: no area, or none in use),
    /// and the text it was read from.
    pub metadata: Option<(VgMetadata, Vec<u8>)>,
    /// The metadata areas that could be read, with their current text.
    pub areas: Vec<mda::MetadataArea>,
}

impl PhysicalVolume {
    /// The VG metadata, when the PV holds some.
    pub fn vg(&self) -> Option<&VgMetadata> {
        self.metadata.as_ref().map(|(vg, _)| vg)
    }
}

/// Reads the PV on `volume`, if it is one: its label and its newest metadata.
/// `Ok(None)` when there is no LVM label; an error when the label or every metadata
/// area that holds metadata is damaged.
pub fn read_pv(volume: &Volume, device: &str) -> Result<Option<PhysicalVolume>> {
    let Some(label) = label::find(volume)? else {
        return Ok(None);
    };
    let mut metadata: Option<(VgMetadata, Vec<u8>)> = None;
    let mut areas = Vec::new();
    let mut failure = None;
    for &area in &label.metadata_areas {
        let read = match mda::read_area(volume, area) {
            Ok(read) => read,
            Err(err) => {
                failure = Some(err);
                continue;
            }
        };
        if let Some((_, text)) = &read.current {
            match text::parse(text).and_then(|top| vg::from_text(&top)) {
                Ok(vg) if metadata.as_ref().is_none_or(|(m, _)| vg.seqno > m.seqno) => {
                    metadata = Some((vg, text.clone()));
                }
                Ok(_) => {}
                Err(err) => failure = Some(err),
            }
        }
        areas.push(read);
    }
    if let (None, Some(err)) = (&metadata, failure) {
        return Err(err);
    }
    Ok(Some(PhysicalVolume {
        device: device.to_owned(),
        volume: volume.clone(),
        label,
        metadata,
        areas,
    }))
}

/// A logical volume: its `/dev/VG/LV` name and its bytes, or why they cannot be read.
#[derive(Debug, Clone)]
pub struct LogicalVolume {
    pub device: String,
    pub volume: std::result::Result<Volume, String>,
}

/// A volume group found on the disk.
#[derive(Debug, Clone)]
pub struct VolumeGroup {
    pub name: String,
    /// Dashed, as `vguuid` prints it.
    pub uuid: String,
    /// Its visible LVs, in metadata order.
    pub lvs: Vec<LogicalVolume>,
}

/// The VGs the PVs of this disk hold, each from its newest metadata, sorted by name.
pub fn volume_groups(pvs: &[PhysicalVolume]) -> Vec<VolumeGroup> {
    let mut newest: Vec<&VgMetadata> = Vec::new();
    for metadata in pvs.iter().filter_map(PhysicalVolume::vg) {
        match newest.iter_mut().find(|m| m.uuid == metadata.uuid) {
            Some(known) if known.seqno >= metadata.seqno => {}
            Some(known) => *known = metadata,
            None => newest.push(metadata),
        }
    }
    let mut groups: Vec<VolumeGroup> = newest
        .into_iter()
        .map(|metadata| VolumeGroup {
            name: metadata.name.clone(),
            uuid: metadata.uuid.clone(),
            lvs: metadata
                .lvs
                .iter()
                .filter(|lv| lv.visible)
                .map(|lv| LogicalVolume {
                    device: format!("/dev/{}/{}", metadata.name, lv.name),
                    volume: match (&metadata.refused, &lv.layout) {
                        (Some(reason), _) | (None, Err(reason)) => Err(reason.clone()),
                        (None, Ok(runs)) => map_runs(metadata, runs, pvs),
                    },
                })
                .collect(),
        })
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    groups
}

/// The LV's bytes: each run's extents inside its PV's data area.
fn map_runs(
    metadata: &VgMetadata,
    runs: &[vg::Run],
    pvs: &[PhysicalVolume],
) -> std::result::Result<Volume, String> {
    let extent_bytes = metadata.extent_size.saturating_mul(SECTOR);
    let mut pieces: Vec<(&PhysicalVolume, u64, u64)> = Vec::with_capacity(runs.len());
    for run in runs {
        let entry = metadata
            .pvs
            .iter()
            .find(|p| p.key == run.pv)
            .ok_or_else(|| format!("{} is not listed in the VG", run.pv))?;
        let mut holders = pvs.iter().filter(|pv| pv.label.uuid == entry.uuid);
        let uuid = label::dashed_uuid(&entry.uuid);
        let pv = match (holders.next(), holders.next()) {
            (Some(pv), None) => pv,
            (None, _) => return Err(format!("its PV {} ({uuid}) is not on this disk", run.pv)),
            // LVM itself picks one of duplicates; an edit through the other is lost.
            (Some(a), Some(b)) => {
                return Err(format!(
                    "its PV {} ({uuid}) is on {} and {} both",
                    run.pv, a.device, b.device
                ))
            }
        };
        let offset = run
            .pe
            .checked_mul(extent_bytes)
            .and_then(|b| b.checked_add(entry.pe_start.checked_mul(SECTOR)?));
        let len = run.extents.checked_mul(extent_bytes);
        let (Some(offset), Some(len)) = (offset, len) else {
            return Err(format!("a segment on {} overflows", pv.device));
        };
        pieces.push((pv, offset, len));
    }
    let mut ranges = Vec::with_capacity(pieces.len());
    for (pv, offset, len) in pieces {
        // Every PV is a range of the same disk: map through it to disk offsets.
        let on_disk = pv
            .volume
            .disk_ranges(offset, len, "LVM segment")
            .map_err(|e| format!("a segment does not fit {}: {e}", pv.device))?;
        ranges.extend(on_disk);
    }
    let first = pvs.first().ok_or("no PV")?;
    first
        .volume
        .on_same_disk(&ranges)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::disk::{MemorySource, RawImage, VirtualDisk};

    /// The lvm-ext4 fixture's PV (its first 64 KiB, from the fuzz corpus),
    /// copied to byte `start` of a disk image.
    fn pv_at(disk_bytes: &mut [u8], start: usize) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/lvm_pv/lvm-ext4-pv.img"
        );
        let pv = std::fs::read(path).unwrap();
        disk_bytes[start..start + pv.len()].copy_from_slice(&pv);
    }

    fn read(bytes: Vec<u8>, ranges: &[(&str, u64)]) -> Vec<PhysicalVolume> {
        let source = Arc::new(MemorySource::new(bytes, "disk.img"));
        let disk: Arc<dyn VirtualDisk> = Arc::new(RawImage::new(source, Path::new("disk.img")));
        ranges
            .iter()
            .map(|(device, start)| {
                let volume = Volume::range(disk.clone(), *start, 64 << 10).unwrap();
                read_pv(&volume, device).unwrap().unwrap()
            })
            .collect()
    }

    #[test]
    fn lvs_on_a_missing_or_duplicated_pv_keep_a_reason() {
        let mut bytes = vec![0u8; 256 << 10];
        pv_at(&mut bytes, 0);
        pv_at(&mut bytes, 128 << 10);
        let twice = read(bytes, &[("/dev/sda1", 0), ("/dev/sda2", 128 << 10)]);
        let groups = volume_groups(&twice);
        assert_eq!(groups.len(), 1);
        for lv in &groups[0].lvs {
            let reason = lv.volume.as_ref().unwrap_err();
            assert!(
                reason.contains("on /dev/sda1 and /dev/sda2 both"),
                "{reason}"
            );
        }
        let mut other = twice[0].clone();
        other.label.uuid = "x".repeat(32);
        let groups = volume_groups(&[other]);
        for lv in &groups[0].lvs {
            let reason = lv.volume.as_ref().unwrap_err();
            assert!(reason.contains("is not on this disk"), "{reason}");
        }
        // The 64 KiB PV holds no extent: the LVs lie past its end.
        let groups = volume_groups(&twice[..1]);
        let names: Vec<&str> = groups[0].lvs.iter().map(|lv| lv.device.as_str()).collect();
        assert_eq!(
            names,
            [
                "/dev/centos/root",
                "/dev/centos/data-1",
                "/dev/centos/filler"
            ]
        );
        for lv in &groups[0].lvs {
            let reason = lv.volume.as_ref().unwrap_err();
            assert!(reason.contains("does not fit"), "{reason}");
        }
    }
}
