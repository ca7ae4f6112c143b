//! The LVM2 physical volume label: the `LABELONE` header in one of a volume's first
//! four sectors (its CRC checked, type `LVM2 001`) and the PV header after it — the
//! PV's UUID, the device size it was made for, and its data and metadata areas.
//!
//! Owns those two structures and their validation. Must not: read the metadata areas
//! (see [`super::mda`]) or decide anything about the volume group.

use super::super::bytes::{le32, le64};
use super::super::crc::{lvm_crc, LVM_INITIAL_CRC};
use super::super::error::{NativeError, Result};
use super::super::Volume;

/// Bytes of a label sector.
pub const LABEL_SIZE: usize = 512;
/// Sectors searched for the label (LVM's `LABEL_SCAN_SECTORS`).
pub const LABEL_SCAN_SECTORS: u64 = 4;
/// Most data or metadata areas listed in one PV header (LVM writes one data area and
/// at most two metadata areas; the list's end marker must come before this).
pub const MAX_AREAS: usize = 8;

/// A `(byte offset, size)` area of the PV, offsets from the PV's start; a size of 0
/// means "to the end of the device" for a data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub offset: u64,
    pub size: u64,
}

/// What the label and PV header say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLabel {
    /// The sector the label was found in.
    pub sector: u64,
    /// The 32 UUID characters as stored (no dashes).
    pub uuid: String,
    /// The device size recorded when the PV was made (bytes).
    pub device_size: u64,
    pub data_areas: Vec<Area>,
    pub metadata_areas: Vec<Area>,
}

impl PvLabel {
    /// The UUID as LVM prints it: 6-4-4-4-4-4-6 characters joined by dashes.
    pub fn uuid_text(&self) -> String {
        dashed_uuid(&self.uuid)
    }
}

/// LVM's 6-4-4-4-4-4-6 dashed form of a 32-character UUID (returned unchanged when it
/// does not have 32 characters).
pub fn dashed_uuid(uuid: &str) -> String {
    if uuid.len() != 32 || !uuid.is_ascii() {
        return uuid.to_owned();
    }
    let mut text = String::with_capacity(38);
    let mut at = 0;
    for (i, width) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            text.push('-');
        }
        text.push_str(&uuid[at..at + width]);
        at += width;
    }
    text
}

/// Looks for the label in the first [`LABEL_SCAN_SECTORS`] sectors of `volume`.
/// `Ok(None)` when no sector starts with `LABELONE`; an error when one does but the
/// label is damaged or not an LVM2 one.
pub fn find(volume: &Volume) -> Result<Option<PvLabel>> {
    for sector in 0..LABEL_SCAN_SECTORS {
        let offset = sector * LABEL_SIZE as u64;
        if offset + LABEL_SIZE as u64 > volume.len() {
            break;
        }
        let raw = volume.read_vec(offset, LABEL_SIZE, "LVM label")?;
        if &raw[..8] == b"LABELONE" {
            return parse(&raw, sector).map(Some);
        }
    }
    Ok(None)
}

/// Validates the label sector `raw` found in sector `sector`.
pub fn parse(raw: &[u8], sector: u64) -> Result<PvLabel> {
    let offset = sector * LABEL_SIZE as u64;
    if raw.len() != LABEL_SIZE || &raw[..8] != b"LABELONE" {
        return Err(NativeError::malformed(
            "LVM label",
            offset,
            "no LABELONE header",
        ));
    }
    if le64(raw, 8) != sector {
        return Err(NativeError::malformed(
            "LVM label",
            offset,
            format!("it says it sits in sector {}, not {sector}", le64(raw, 8)),
        ));
    }
    let stored = le32(raw, 16);
    let computed = lvm_crc(LVM_INITIAL_CRC, &raw[20..]);
    if stored != computed {
        return Err(NativeError::Checksum {
            structure: "LVM label",
            offset,
            stored,
            computed,
        });
    }
    if &raw[24..32] != b"LVM2 001" {
        return Err(NativeError::unsupported(
            "LVM label",
            format!(
                "label type {:?} (only LVM2 001 is read)",
                String::from_utf8_lossy(&raw[24..32])
            ),
        ));
    }
    // The PV header: uuid[32], device size, then two zero-terminated area lists.
    let header = le32(raw, 20) as usize;
    let uuid_end = header.checked_add(32).filter(|&end| end <= LABEL_SIZE);
    let Some(uuid_end) = uuid_end.filter(|_| header >= 32) else {
        return Err(NativeError::malformed(
            "LVM PV header",
            offset,
            format!("it starts at byte {header} of the label sector"),
        ));
    };
    let uuid = &raw[header..uuid_end];
    if !uuid.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(NativeError::malformed(
            "LVM PV header",
            offset,
            "the PV UUID is not 32 letters and digits",
        ));
    }
    let mut at = uuid_end + 8;
    let data_areas = areas(raw, &mut at, offset)?;
    let metadata_areas = areas(raw, &mut at, offset)?;
    Ok(PvLabel {
        sector,
        uuid: String::from_utf8_lossy(uuid).into_owned(),
        device_size: le64(raw, uuid_end),
        data_areas,
        metadata_areas,
    })
}

/// Reads one area list at `*at`, up to and past its zero entry.
fn areas(raw: &[u8], at: &mut usize, offset: u64) -> Result<Vec<Area>> {
    let mut list = Vec::new();
    loop {
        if *at + 16 > raw.len() {
            return Err(NativeError::malformed(
                "LVM PV header",
                offset,
                "an area list runs past the label sector",
            ));
        }
        let area = Area {
            offset: le64(raw, *at),
            size: le64(raw, *at + 8),
        };
        *at += 16;
        if area.offset == 0 {
            return Ok(list);
        }
        NativeError::check_limit(
            "LVM PV header areas",
            list.len() as u64 + 1,
            MAX_AREAS as u64,
        )?;
        list.push(area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::native::bytes::{put_le32, put_le64};

    /// A label sector as pvcreate writes it (one data area, one metadata area).
    fn label_sector(sector: u64) -> Vec<u8> {
        let mut raw = vec![0u8; LABEL_SIZE];
        raw[..8].copy_from_slice(b"LABELONE");
        put_le64(&mut raw, 8, sector);
        put_le32(&mut raw, 20, 32);
        raw[24..32].copy_from_slice(b"LVM2 001");
        raw[32..64].copy_from_slice(b"fqZMeSTKD9udUF5BGGJlQ71l0n7j4DKv");
        put_le64(&mut raw, 64, 256 << 20);
        put_le64(&mut raw, 72, 1 << 20);
        put_le64(&mut raw, 104, 4096);
        put_le64(&mut raw, 112, 1_044_480);
        let crc = lvm_crc(LVM_INITIAL_CRC, &raw[20..]);
        put_le32(&mut raw, 16, crc);
        raw
    }

    #[test]
    fn a_label_parses_and_its_uuid_prints_as_lvm_does() {
        let label = parse(&label_sector(1), 1).unwrap();
        assert_eq!(label.uuid_text(), "fqZMeS-TKD9-udUF-5BGG-JlQ7-1l0n-7j4DKv");
        assert_eq!(label.device_size, 256 << 20);
        assert_eq!(
            label.data_areas,
            [Area {
                offset: 1 << 20,
                size: 0
            }]
        );
        assert_eq!(label.metadata_areas[0].offset, 4096);
    }

    #[test]
    fn damaged_labels_are_refused() {
        let mut raw = label_sector(1);
        raw[40] ^= 1;
        assert!(matches!(parse(&raw, 1), Err(NativeError::Checksum { .. })));
        assert!(parse(&label_sector(1), 2).is_err());
        // Areas that never end.
        let mut raw = label_sector(0);
        for at in (72..LABEL_SIZE - 16).step_by(16) {
            put_le64(&mut raw, at, 4096);
        }
        let crc = lvm_crc(LVM_INITIAL_CRC, &raw[20..]);
        put_le32(&mut raw, 16, crc);
        assert!(parse(&raw, 0).is_err());
    }
}
