//! GUID partition tables: the primary header at LBA 1, the backup header at the
//! disk's last LBA, and the partition entry array each points to.
//!
//! Owns the header and entry layouts and their validation: the header CRC-32 (over
//! `header_size` bytes with the CRC field zeroed), the entry array CRC-32, the
//! header's own LBA, and every size and LBA against [`MAX_ENTRY_SIZE`],
//! [`MAX_ENTRY_ARRAY`] and the disk size. The primary header is used when it is valid,
//! else the backup (as Linux and sfdisk do); [`GptInfo`] says which ones were valid.

use super::{Partition, PartitionTable, PartitionType, Scheme, SECTOR};
use crate::disk::VirtualDisk;
use crate::guest::native::bytes::{bytes16, le32, le64};
use crate::guest::native::crc::crc32;
use crate::guest::native::error::{NativeError, Result};

/// Largest entry size accepted (the spec allows 128 × 2^n; tools write 128).
pub const MAX_ENTRY_SIZE: u32 = 4096;
/// Largest entry array read into memory (128 entries of 128 bytes is the usual 16 KiB).
pub const MAX_ENTRY_ARRAY: u64 = 1 << 20;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: u32 = 92;
const MIN_ENTRY_SIZE: u32 = 128;
const NAME_UNITS: usize = 36;

/// Facts about a GPT disk besides its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptInfo {
    /// The disk GUID, as text.
    pub disk_guid: String,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    /// Whether the primary header and its entry array were valid.
    pub primary_valid: bool,
    /// Whether the backup header and its entry array were valid (and, when both are,
    /// agree with the primary's).
    pub backup_valid: bool,
}

/// A validated header.
#[derive(Debug, Clone)]
struct Header {
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: [u8; 16],
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

/// Formats a GUID stored in the mixed-endian GPT layout, upper case like sfdisk.
pub fn guid_text(raw: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
        u16::from_le_bytes([raw[4], raw[5]]),
        u16::from_le_bytes([raw[6], raw[7]]),
        raw[8],
        raw[9],
        raw[10..]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

fn disk_sectors(disk: &dyn VirtualDisk) -> u64 {
    disk.virtual_size() / SECTOR
}

/// Reads and validates the header at `lba`.
fn read_header(disk: &dyn VirtualDisk, lba: u64) -> Result<Header> {
    let offset = lba * SECTOR; // lba < disk_sectors, so this cannot overflow
    let bad = |detail: String| NativeError::malformed("GPT header", offset, detail);
    if lba == 0 || lba >= disk_sectors(disk) {
        return Err(bad(format!("LBA {lba} lies outside the disk")));
    }
    let mut sector = [0u8; SECTOR as usize];
    disk.read_at(&mut sector, offset)?;
    if &sector[..8] != SIGNATURE {
        return Err(bad("no \"EFI PART\" signature".into()));
    }
    let header_size = le32(&sector, 12);
    if !(MIN_HEADER_SIZE..=SECTOR as u32).contains(&header_size) {
        return Err(bad(format!("header size {header_size} is not in 92..=512")));
    }
    let stored = le32(&sector, 16);
    let mut covered = sector[..header_size as usize].to_vec();
    covered[16..20].fill(0);
    let computed = crc32(&covered);
    if stored != computed {
        return Err(NativeError::Checksum {
            structure: "GPT header",
            offset,
            stored,
            computed,
        });
    }
    let my_lba = le64(&sector, 24);
    if my_lba != lba {
        return Err(bad(format!("says it is at LBA {my_lba}, read at {lba}")));
    }
    let header = Header {
        alternate_lba: le64(&sector, 32),
        first_usable: le64(&sector, 40),
        last_usable: le64(&sector, 48),
        disk_guid: bytes16(&sector, 56),
        entries_lba: le64(&sector, 72),
        entry_count: le32(&sector, 80),
        entry_size: le32(&sector, 84),
        entries_crc: le32(&sector, 88),
    };
    let size = header.entry_size;
    if !(MIN_ENTRY_SIZE..=MAX_ENTRY_SIZE).contains(&size) || !size.is_multiple_of(8) {
        return Err(bad(format!(
            "entry size {size} is not a multiple of 8 in 128..=4096"
        )));
    }
    if header.first_usable > header.last_usable.saturating_add(1)
        || header.last_usable >= disk_sectors(disk)
    {
        return Err(bad(format!(
            "usable LBAs {}..={} do not fit the disk of {} sectors",
            header.first_usable,
            header.last_usable,
            disk_sectors(disk)
        )));
    }
    Ok(header)
}

/// Reads the entry array of `header` and checks its CRC.
fn read_entries(disk: &dyn VirtualDisk, header: &Header) -> Result<Vec<u8>> {
    let len = u64::from(header.entry_count) * u64::from(header.entry_size);
    NativeError::check_limit("GPT entry array bytes", len, MAX_ENTRY_ARRAY)?;
    let offset = header
        .entries_lba
        .checked_mul(SECTOR)
        .filter(|o| {
            o.checked_add(len)
                .is_some_and(|end| end <= disk.virtual_size())
        })
        .ok_or_else(|| {
            NativeError::malformed(
                "GPT entry array",
                header.entries_lba.saturating_mul(SECTOR),
                "lies outside the disk",
            )
        })?;
    let mut array = vec![0u8; len as usize];
    disk.read_at(&mut array, offset)?;
    let computed = crc32(&array);
    if computed != header.entries_crc {
        return Err(NativeError::Checksum {
            structure: "GPT entry array",
            offset,
            stored: header.entries_crc,
            computed,
        });
    }
    Ok(array)
}

/// Reads a header and its entries, both valid, or says why not.
fn read_table(disk: &dyn VirtualDisk, lba: u64) -> Result<(Header, Vec<u8>)> {
    let header = read_header(disk, lba)?;
    let entries = read_entries(disk, &header)?;
    Ok((header, entries))
}

fn parse_entries(header: &Header, array: &[u8], array_offset: u64) -> Result<Vec<Partition>> {
    let mut partitions = Vec::new();
    for (index, entry) in array.chunks_exact(header.entry_size as usize).enumerate() {
        let kind = bytes16(entry, 0);
        if kind == [0; 16] {
            continue;
        }
        let (first, last) = (le64(entry, 32), le64(entry, 40));
        let Some(sectors) = last.checked_sub(first).and_then(|n| n.checked_add(1)) else {
            // Inside the array, whose offset and length were checked against the disk.
            let at = array_offset + (index as u64) * u64::from(header.entry_size);
            return Err(NativeError::malformed(
                "GPT entry",
                at,
                format!("partition {} spans LBAs {first}..={last}", index + 1),
            ));
        };
        let units: Vec<u16> = entry[56..56 + 2 * NAME_UNITS]
            .chunks_exact(2)
            .map(|u| u16::from_le_bytes([u[0], u[1]]))
            .take_while(|&u| u != 0)
            .collect();
        partitions.push(Partition {
            number: index as u32 + 1, // index < entry_count, a u32
            start_sector: first,
            sectors,
            kind: PartitionType::Gpt(guid_text(&kind)),
            bootable: le64(entry, 48) & (1 << 2) != 0,
            uuid: Some(guid_text(&bytes16(entry, 16))),
            name: (!units.is_empty()).then(|| String::from_utf16_lossy(&units)),
        });
    }
    Ok(partitions)
}

/// Reads the GPT of `disk` (whose MBR is protective).
pub fn read(disk: &dyn VirtualDisk) -> Result<PartitionTable> {
    let last_lba = disk_sectors(disk).saturating_sub(1);
    let primary = read_table(disk, 1);
    let backup_lba = match &primary {
        Ok((header, _)) => header.alternate_lba,
        Err(_) => last_lba,
    };
    let backup = read_table(disk, backup_lba);
    let (primary_valid, mut backup_valid) = (primary.is_ok(), backup.is_ok());
    if let (Ok((p, p_entries)), Ok((b, b_entries))) = (&primary, &backup) {
        backup_valid = p.disk_guid == b.disk_guid && p_entries == b_entries;
    }
    let (header, entries) = match (primary, backup) {
        (Ok(table), _) | (Err(_), Ok(table)) => table,
        (Err(primary_error), Err(_)) => return Err(primary_error),
    };
    let array_offset = header.entries_lba.saturating_mul(SECTOR);
    let partitions = parse_entries(&header, &entries, array_offset)?;
    Ok(PartitionTable {
        scheme: Scheme::Gpt(GptInfo {
            disk_guid: guid_text(&header.disk_guid),
            first_usable_lba: header.first_usable,
            last_usable_lba: header.last_usable,
            primary_valid,
            backup_valid,
        }),
        partitions,
    })
}
