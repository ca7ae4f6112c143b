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
        let pv = pvs
            .iter()
            .find(|pv| pv.label.uuid == entry.uuid)
            .ok_or_else(|| {
                format!(
                    "its PV {} ({}) is not on this disk",
                    run.pv,
                    label::dashed_uuid(&entry.uuid)
                )
            })?;
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

/// The `/dev/VG/LV` name of a device-mapper name `VG-LV` (`/dev/mapper/VG-LV` in an
/// fstab), where a `-` inside either name is written `--`; `None` without a single
/// `-` separator.
pub fn lv_of_mapper_name(mapped: &str) -> Option<String> {
    let bytes = mapped.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let (vg, lv) = (&mapped[..i], &mapped[i + 1..]);
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some(format!(
                "/dev/{}/{}",
                vg.replace("--", "-"),
                lv.replace("--", "-")
            ));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::lv_of_mapper_name;

    #[test]
    fn mapper_names_map_to_vg_and_lv() {
        assert_eq!(
            lv_of_mapper_name("centos-root").as_deref(),
            Some("/dev/centos/root")
        );
        assert_eq!(
            lv_of_mapper_name("my--vg-lv--1").as_deref(),
            Some("/dev/my-vg/lv-1")
        );
        assert_eq!(
            lv_of_mapper_name("centos-data--1").as_deref(),
            Some("/dev/centos/data-1")
        );
        assert_eq!(lv_of_mapper_name("novg"), None);
        assert_eq!(lv_of_mapper_name("-root"), None);
        assert_eq!(lv_of_mapper_name("vg-"), None);
    }
}
