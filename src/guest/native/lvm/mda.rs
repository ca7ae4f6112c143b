//! An LVM2 metadata area: its header (`mda_header`: CRC, magic ` LVM2 x[5A%r0N*>`,
//! version 1, where the area lies) and the location of the current metadata text
//! (`raw_locn` 0), read out of the area's circular buffer — wrapping from the end of
//! the area back to just after its header — with the text's checksum checked.
//!
//! Owns those structures. Must not: parse the text (see [`super::text`]).

use super::super::bytes::{le32, le64};
use super::super::crc::{lvm_crc, LVM_INITIAL_CRC};
use super::super::error::{NativeError, Result};
use super::super::Volume;
use super::label::Area;

/// Bytes of the metadata area header.
pub const MDA_HEADER_SIZE: u64 = 512;
/// The header's magic.
pub const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// Largest metadata text read: LVM's default area holds about 1 MiB and a VG of
/// thousands of LVs stays well under this; the text is held in memory whole.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;
/// `raw_locn` flag: this PV's copy of the metadata is to be ignored.
const RAW_LOCN_IGNORED: u32 = 1;

/// A metadata area as read: where it lies, its header, and its current text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataArea {
    pub area: Area,
    /// The [`MDA_HEADER_SIZE`] bytes of its header.
    pub header: Vec<u8>,
    /// The current text and its offset in the area (`None`: none, or ignored).
    pub current: Option<(u64, Vec<u8>)>,
}

/// Reads the metadata area at `area` of the PV `volume`.
pub fn read_area(volume: &Volume, area: Area) -> Result<MetadataArea> {
    let header = volume.read_vec(area.offset, MDA_HEADER_SIZE as usize, "LVM metadata area")?;
    let (start, size, locn) = parse_header(&header, area)?;
    let current = match locn {
        Some(locn) => Some((locn.0, read_text(volume, start, size, locn)?)),
        None => None,
    };
    Ok(MetadataArea {
        area,
        header,
        current,
    })
}

/// Where the text lies: `(offset in the area, length, checksum)`.
type Location = (u64, u64, u32);

/// Validates the header of the area at `area`; returns the area's start and size
/// and the current metadata's location (`None` when there is none or it is ignored).
pub fn parse_header(raw: &[u8], area: Area) -> Result<(u64, u64, Option<Location>)> {
    let at = area.offset;
    if raw.len() != MDA_HEADER_SIZE as usize || &raw[4..20] != MDA_MAGIC {
        return Err(NativeError::malformed(
            "LVM metadata area",
            at,
            "no LVM2 metadata area magic",
        ));
    }
    let stored = le32(raw, 0);
    let computed = lvm_crc(LVM_INITIAL_CRC, &raw[4..]);
    if stored != computed {
        return Err(NativeError::Checksum {
            structure: "LVM metadata area header",
            offset: at,
            stored,
            computed,
        });
    }
    if le32(raw, 20) != 1 {
        return Err(NativeError::unsupported(
            "LVM metadata area",
            format!("version {} (only 1 is read)", le32(raw, 20)),
        ));
    }
    let (start, size) = (le64(raw, 24), le64(raw, 32));
    if start != at || size != area.size || size <= MDA_HEADER_SIZE {
        return Err(NativeError::malformed(
            "LVM metadata area",
            at,
            format!(
                "the header says {size} bytes at {start}, the PV header {} bytes at {at}",
                area.size
            ),
        ));
    }
    // raw_locn[0]: offset, size, checksum, flags.
    let (offset, len, checksum, flags) =
        (le64(raw, 40), le64(raw, 48), le32(raw, 56), le32(raw, 60));
    if offset == 0 || len == 0 || flags & RAW_LOCN_IGNORED != 0 {
        return Ok((start, size, None));
    }
    NativeError::check_limit("LVM metadata text bytes", len, MAX_METADATA_BYTES)?;
    let ring = size - MDA_HEADER_SIZE;
    if offset < MDA_HEADER_SIZE || offset >= size || len > ring {
        return Err(NativeError::malformed(
            "LVM metadata area",
            at,
            format!("metadata of {len} bytes at {offset} does not fit the {size}-byte area"),
        ));
    }
    Ok((start, size, Some((offset, len, checksum))))
}

/// Reads the text at `locn` of the area `[start, start + size)`, wrapping at the end
/// of the area to just after its header, and checks its checksum.
fn read_text(volume: &Volume, start: u64, size: u64, locn: Location) -> Result<Vec<u8>> {
    let (offset, len, checksum) = locn;
    // parse_header checked offset < size and len <= size - header, so no overflow.
    let first = len.min(size - offset);
    let mut text = volume.read_vec(start + offset, first as usize, "LVM metadata text")?;
    if first < len {
        let rest = volume.read_vec(
            start + MDA_HEADER_SIZE,
            (len - first) as usize,
            "LVM metadata text",
        )?;
        text.extend_from_slice(&rest);
    }
    let computed = lvm_crc(LVM_INITIAL_CRC, &text);
    if computed != checksum {
        return Err(NativeError::Checksum {
            structure: "LVM metadata text",
            offset: start + offset,
            stored: checksum,
            computed,
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::disk::{MemorySource, RawImage, VirtualDisk};
    use crate::guest::native::bytes::{put_le32, put_le64};

    /// A 4 KiB area at 512 whose text `text` starts at area offset `offset`.
    fn area_with(text: &[u8], offset: u64) -> (Volume, Area) {
        let area = Area {
            offset: 512,
            size: 4096,
        };
        let mut disk = vec![0u8; 512 + 4096];
        let mut header = vec![0u8; 512];
        header[4..20].copy_from_slice(MDA_MAGIC);
        put_le32(&mut header, 20, 1);
        put_le64(&mut header, 24, 512);
        put_le64(&mut header, 32, 4096);
        put_le64(&mut header, 40, offset);
        put_le64(&mut header, 48, text.len() as u64);
        put_le32(&mut header, 56, lvm_crc(LVM_INITIAL_CRC, text));
        let crc = lvm_crc(LVM_INITIAL_CRC, &header[4..]);
        put_le32(&mut header, 0, crc);
        disk[512..1024].copy_from_slice(&header);
        for (i, &b) in text.iter().enumerate() {
            let mut at = offset + i as u64;
            if at >= 4096 {
                at = at - 4096 + 512;
            }
            disk[512 + at as usize] = b;
        }
        let source = Arc::new(MemorySource::new(disk, "mem.img"));
        let disk: Arc<dyn VirtualDisk> = Arc::new(RawImage::new(source, Path::new("mem.img")));
        (Volume::whole(disk), area)
    }

    #[test]
    fn text_is_read_across_the_wrap() {
        let text: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        let (volume, area) = area_with(&text, 512);
        assert_eq!(read_area(&volume, area).unwrap().current.unwrap().1, text);
        let (volume, area) = area_with(&text, 4000);
        assert_eq!(read_area(&volume, area).unwrap().current.unwrap().1, text);
    }

    #[test]
    fn a_bad_checksum_or_location_is_refused() {
        let text = b"vg { }".to_vec();
        let (volume, area) = area_with(&text, 600);
        // The same area with one byte of the text flipped.
        let mut bytes = volume.read_vec(0, 4608, "test").unwrap();
        bytes[512 + 600] ^= 1;
        let source = Arc::new(MemorySource::new(bytes, "mem.img"));
        let disk: Arc<dyn VirtualDisk> = Arc::new(RawImage::new(source, Path::new("mem.img")));
        let err = read_area(&Volume::whole(disk), area).unwrap_err();
        assert!(matches!(err, NativeError::Checksum { .. }), "{err}");
        // A location past the area.
        let header = volume.read_vec(512, 512, "test").unwrap();
        let mut bad = header.clone();
        put_le64(&mut bad, 40, 5000);
        let crc = lvm_crc(LVM_INITIAL_CRC, &bad[4..]);
        put_le32(&mut bad, 0, crc);
        assert!(parse_header(&bad, area).is_err());
        assert!(parse_header(
            &header,
            Area {
                offset: 512,
                size: 8192
            }
        )
        .is_err());
    }
}
