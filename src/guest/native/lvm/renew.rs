//! New random PV and VG UUIDs, written as `pvchange -u` and `vgchange -u` leave them:
//! each PV label gets its new UUID (label CRC recomputed), and each VG's metadata a
//! new version — the old text with the old UUIDs replaced and `seqno` one higher —
//! written into every metadata area of its PVs after the current text in the ring
//! (wrapping after the area's end, never over the current text), with the area
//! header pointing at it (text checksum, header CRC).
//!
//! Owns: computing those writes and checking the new text reads back as the VG with
//! its new UUIDs. Must not: write to the disk (the guest commits the writes with the
//! rest), or renew anything when one PV or VG cannot be (nothing is returned then).

use super::super::bytes::{put_le32, put_le64};
use super::super::crc::{lvm_crc, LVM_INITIAL_CRC};
use super::super::error::{NativeError, Result};
use super::label::{dashed_uuid, LABEL_SIZE};
use super::mda::MDA_HEADER_SIZE;
use super::{text, vg, PhysicalVolume};

/// One write: disk byte offset and bytes.
pub type DiskWrite = (u64, Vec<u8>);

/// Where LVM aligns each new metadata text in the ring.
const TEXT_ALIGN: u64 = 512;

/// What a renewal changes: the writes, and the PVs as they read afterwards.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub writes: Vec<DiskWrite>,
    pub pvs: Vec<PhysicalVolume>,
}

fn unsupported(detail: String) -> NativeError {
    NativeError::unsupported("LVM UUID renewal", detail)
}

/// A new LVM UUID: 32 letters and digits (LVM's alphabet) from `random`.
fn new_uuid(random: &mut dyn FnMut(&mut [u8])) -> String {
    const ALPHABET: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; 32];
    random(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The writes giving every PV in `pvs` and every VG they hold new UUIDs drawn from
/// `random`.
pub fn renew(pvs: &[PhysicalVolume], random: &mut dyn FnMut(&mut [u8])) -> Result<Renewal> {
    let mut writes = Vec::new();
    let mut renewed: Vec<PhysicalVolume> = pvs.to_vec();
    let mut renames: Vec<(String, String)> = Vec::new(); // dashed old → dashed new
    for pv in &mut renewed {
        let new = new_uuid(random);
        renames.push((pv.label.uuid_text(), dashed_uuid(&new)));
        writes.push(label_write(pv, &new)?);
        pv.label.uuid = new;
    }
    // The newest text of each VG, as every PV of it will carry it.
    let mut newest: Vec<(&vg::VgMetadata, &[u8])> = Vec::new();
    for (metadata, text) in pvs.iter().filter_map(|pv| pv.metadata.as_ref()) {
        match newest.iter_mut().find(|(m, _)| m.uuid == metadata.uuid) {
            Some(known) if known.0.seqno >= metadata.seqno => {}
            Some(known) => *known = (metadata, text),
            None => newest.push((metadata, text)),
        }
    }
    for (metadata, old_text) in newest {
        let missing = metadata
            .pvs
            .iter()
            .find(|entry| !pvs.iter().any(|pv| pv.label.uuid == entry.uuid));
        if let Some(entry) = missing {
            return Err(unsupported(format!(
                "VG {} has a PV ({}) that is not on this disk",
                metadata.name, entry.key
            )));
        }
        let new_vg = dashed_uuid(&new_uuid(random));
        let (new_metadata, new_text) = renewed_text(old_text, metadata, &renames, &new_vg)?;
        for pv in renewed
            .iter_mut()
            .filter(|pv| pv.vg().is_some_and(|m| m.uuid == metadata.uuid))
        {
            for index in 0..pv.areas.len() {
                let Some(offset) = text_writes(pv, index, &new_text, &mut writes)? else {
                    continue;
                };
                pv.areas[index].current = Some((offset, new_text.clone()));
            }
            pv.metadata = Some((new_metadata.clone(), new_text.clone()));
        }
    }
    Ok(Renewal {
        writes,
        pvs: renewed,
    })
}

/// The label sector with the PV's new UUID and CRC.
fn label_write(pv: &PhysicalVolume, new: &str) -> Result<DiskWrite> {
    let at = pv.label.sector * LABEL_SIZE as u64;
    let mut sector = pv.volume.read_vec(at, LABEL_SIZE, "LVM label")?;
    // parse() checked the header offset leaves room for the 32 UUID bytes.
    let header = super::super::bytes::le32(&sector, 20) as usize;
    sector[header..header + 32].copy_from_slice(new.as_bytes());
    let crc = lvm_crc(LVM_INITIAL_CRC, &sector[20..]);
    put_le32(&mut sector, 16, crc);
    Ok((disk_offset(pv, at, LABEL_SIZE)?, sector))
}

/// The disk offset of the `len` PV bytes at `at`, which must be one run of the disk.
fn disk_offset(pv: &PhysicalVolume, at: u64, len: usize) -> Result<u64> {
    match pv.volume.disk_ranges(at, len as u64, "LVM PV")?.as_slice() {
        [(offset, _)] => Ok(*offset),
        _ => Err(NativeError::malformed(
            "LVM PV",
            at,
            "a metadata write is not one range of the disk",
        )),
    }
}

/// `old` with every old UUID replaced and `seqno` one higher, checked by reading it
/// back; with the VG it describes.
fn renewed_text(
    old: &[u8],
    metadata: &vg::VgMetadata,
    renames: &[(String, String)],
    new_vg: &str,
) -> Result<(vg::VgMetadata, Vec<u8>)> {
    let nul = old.last() == Some(&0);
    let body = old.strip_suffix(&[0]).unwrap_or(old);
    let mut text = String::from_utf8(body.to_vec())
        .map_err(|_| unsupported("the metadata text is not UTF-8".to_owned()))?;
    let quoted = |uuid: &str| format!("\"{uuid}\"");
    text = text.replace(&quoted(&metadata.uuid), &quoted(new_vg));
    for (from, to) in renames {
        text = text.replace(&quoted(from), &quoted(to));
    }
    let seqno = format!("seqno = {}\n", metadata.seqno);
    let next = metadata
        .seqno
        .checked_add(1)
        .ok_or_else(|| unsupported(format!("VG {}'s seqno cannot grow", metadata.name)))?;
    text = text.replacen(&seqno, &format!("seqno = {next}\n"), 1);
    let mut bytes = text.into_bytes();
    if nul {
        bytes.push(0);
    }
    let check = vg::from_text(&text::parse(&bytes)?)?;
    let renamed = |old_uuid: &str| {
        renames
            .iter()
            .any(|(_, to)| to.replace('-', "") == old_uuid)
    };
    if check.uuid != new_vg
        || check.seqno != next
        || check.lvs != metadata.lvs
        || !check.pvs.iter().all(|pv| renamed(&pv.uuid))
    {
        return Err(unsupported(format!(
            "VG {}'s metadata text does not read back as the renamed VG",
            metadata.name
        )));
    }
    Ok((check, bytes))
}

/// Adds to `writes` those putting `text` after the current text of the PV's metadata
/// area `index` and the header pointing at it; returns the text's offset in the area
/// (`None` when the area holds no current text).
fn text_writes(
    pv: &PhysicalVolume,
    index: usize,
    text: &[u8],
    writes: &mut Vec<DiskWrite>,
) -> Result<Option<u64>> {
    let Some(area) = pv.areas.get(index) else {
        return Ok(None);
    };
    let Some((offset, current)) = &area.current else {
        return Ok(None);
    };
    let size = area.area.size;
    let ring = size - MDA_HEADER_SIZE; // parse_header: size > header
    let len = text.len() as u64;
    // The old text stays whole until the header is switched: both must fit.
    let needed = (current.len() as u64)
        .checked_add(len)
        .and_then(|n| n.checked_add(2 * TEXT_ALIGN));
    if needed.is_none_or(|n| n > ring) {
        return Err(unsupported(format!(
            "the {size}-byte metadata area of {} has no room for a new text of {len} bytes",
            pv.device
        )));
    }
    let end = offset + current.len() as u64; // may run past `size`: it wrapped
    let mut new_offset = end.div_ceil(TEXT_ALIGN) * TEXT_ALIGN;
    if new_offset >= size {
        new_offset = new_offset - size + MDA_HEADER_SIZE;
    }
    let first = len.min(size - new_offset) as usize;
    let start = area.area.offset;
    let (head, tail) = text.split_at(first);
    writes.push((disk_offset(pv, start + new_offset, first)?, head.to_vec()));
    if !tail.is_empty() {
        let at = disk_offset(pv, start + MDA_HEADER_SIZE, tail.len())?;
        writes.push((at, tail.to_vec()));
    }
    let mut header = area.header.clone();
    put_le64(&mut header, 40, new_offset);
    put_le64(&mut header, 48, len);
    put_le32(&mut header, 56, lvm_crc(LVM_INITIAL_CRC, text));
    put_le32(&mut header, 60, 0);
    let crc = lvm_crc(LVM_INITIAL_CRC, &header[4..]);
    put_le32(&mut header, 0, crc);
    writes.push((disk_offset(pv, start, header.len())?, header));
    Ok(Some(new_offset))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::super::read_pv;
    use super::*;
    use crate::disk::{MemorySource, RawImage, VirtualDisk};
    use crate::guest::native::Volume;

    fn pv_of(bytes: Vec<u8>) -> PhysicalVolume {
        let source = Arc::new(MemorySource::new(bytes, "pv.img"));
        let disk: Arc<dyn VirtualDisk> = Arc::new(RawImage::new(source, Path::new("pv.img")));
        read_pv(&Volume::whole(disk), "/dev/sda2").unwrap().unwrap()
    }

    #[test]
    fn renewed_uuids_read_back_and_the_old_text_stays_intact() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/lvm_pv/lvm-ext4-pv.img"
        );
        let mut bytes = std::fs::read(path).unwrap();
        let before = pv_of(bytes.clone());
        let (old_vg, old_text) = before.metadata.clone().unwrap();
        let mut counter = 0u8;
        let renewal = renew(std::slice::from_ref(&before), &mut |buf: &mut [u8]| {
            for b in buf {
                counter = counter.wrapping_add(7);
                *b = counter;
            }
        })
        .unwrap();
        let (old_offset, _) = before.areas[0].current.clone().unwrap();
        for (at, data) in &renewal.writes {
            let at = *at as usize;
            // Nothing lands on the current text until the header points elsewhere.
            let text = 4096 + old_offset as usize..4096 + old_offset as usize + old_text.len();
            assert!(at + data.len() <= text.start || at >= text.end || at == 4096);
            bytes[at..at + data.len()].copy_from_slice(data);
        }
        let after = pv_of(bytes);
        let (new_vg, _) = after.metadata.clone().unwrap();
        assert_ne!(after.label.uuid, before.label.uuid);
        assert_eq!(after.label.uuid, renewal.pvs[0].label.uuid);
        assert_ne!(new_vg.uuid, old_vg.uuid);
        assert_eq!(new_vg.seqno, old_vg.seqno + 1);
        assert_eq!(new_vg.lvs, old_vg.lvs);
        assert_eq!(new_vg.pvs[0].uuid, after.label.uuid);
        assert_eq!(Some(&new_vg), renewal.pvs[0].vg());
        assert_eq!(new_vg.name, old_vg.name);
    }

    #[test]
    fn a_vg_with_a_pv_missing_from_the_disk_is_not_renewed() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/lvm_pv/lvm-ext4-pv.img"
        );
        let mut pv = pv_of(std::fs::read(path).unwrap());
        if let Some((vg, _)) = &mut pv.metadata {
            vg.pvs[0].uuid = "someotherpv".to_owned();
        }
        let err = renew(&[pv], &mut |buf: &mut [u8]| buf.fill(1)).unwrap_err();
        assert!(err.to_string().contains("not on this disk"), "{err}");
    }
}
