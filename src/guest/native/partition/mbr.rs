//! MS-DOS (MBR) partition tables: the four primary entries of the boot sector and the
//! chain of extended boot records (EBRs) that holds logical partitions.
//!
//! Owns the boot sector and EBR layouts and the walk of the EBR chain, which is
//! bounded ([`MAX_LOGICAL`], [`MAX_EBRS`]) and refuses to visit an EBR twice, so a
//! chain that loops back ends with an error instead of a hang. Numbers follow Linux:
//! primaries keep their slot number 1-4, logical partitions count from 5 and empty
//! entries take no number.

use std::collections::BTreeSet;

use super::{Partition, PartitionTable, PartitionType, Scheme, SECTOR};
use crate::disk::VirtualDisk;
use crate::guest::native::bytes::{byte, le32};
use crate::guest::native::error::{NativeError, Result};

/// Linux gives a disk at most 256 partitions; 4 numbers go to the primaries.
pub const MAX_LOGICAL: usize = 252;
/// EBRs read before giving up, whether or not they hold a partition.
pub const MAX_EBRS: usize = 256;

const ENTRY_TABLE: usize = 446;
const ENTRY_SIZE: usize = 16;
const SIGNATURE: usize = 510;
const DISK_ID: usize = 440;
const PROTECTIVE_GPT: u8 = 0xee;

/// One 16-byte entry of a boot sector or EBR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    boot: u8,
    kind: u8,
    start: u32,
    sectors: u32,
}

impl Entry {
    fn is_used(&self) -> bool {
        self.kind != 0 && self.sectors != 0
    }

    fn is_extended(&self) -> bool {
        matches!(self.kind, 0x05 | 0x0f | 0x85)
    }
}

/// A sector with the 0x55AA signature, split into its four entries.
#[derive(Debug, Clone)]
pub struct BootSector {
    disk_id: u32,
    entries: [Entry; 4],
}

impl BootSector {
    fn parse(sector: &[u8]) -> Self {
        let entry = |i: usize| {
            let at = ENTRY_TABLE + i * ENTRY_SIZE;
            Entry {
                boot: byte(sector, at),
                kind: byte(sector, at + 4),
                start: le32(sector, at + 8),
                sectors: le32(sector, at + 12),
            }
        };
        Self {
            disk_id: le32(sector, DISK_ID),
            entries: [entry(0), entry(1), entry(2), entry(3)],
        }
    }

    fn has_signature(sector: &[u8]) -> bool {
        sector.get(SIGNATURE..SIGNATURE + 2) == Some(&[0x55, 0xaa][..])
    }

    /// Reads sector 0 of `disk`. `None` when it is not a partition table: the disk is
    /// shorter than a sector, the signature is missing, or a boot flag is neither 0 nor
    /// 0x80 (a FAT or other boot sector that merely ends in 0x55AA).
    pub fn read(disk: &dyn VirtualDisk) -> Result<Option<Self>> {
        if disk.virtual_size() < SECTOR {
            return Ok(None);
        }
        let mut sector = [0u8; SECTOR as usize];
        disk.read_at(&mut sector, 0)?;
        if !Self::has_signature(&sector) {
            return Ok(None);
        }
        let boot = Self::parse(&sector);
        if boot.entries.iter().any(|e| e.boot != 0 && e.boot != 0x80) {
            return Ok(None);
        }
        Ok(Some(boot))
    }

    /// Whether an entry is a GPT protective (0xEE) one, so the disk is GPT.
    pub fn is_protective(&self) -> bool {
        self.entries.iter().any(|e| e.kind == PROTECTIVE_GPT)
    }
}

fn partition(number: u32, entry: &Entry, base: u64) -> Result<Partition> {
    let start_sector = base
        .checked_add(u64::from(entry.start))
        .ok_or_else(|| NativeError::malformed("MBR entry", base, "start sector overflows"))?;
    Ok(Partition {
        number,
        start_sector,
        sectors: u64::from(entry.sectors),
        kind: PartitionType::Mbr(entry.kind),
        bootable: entry.boot == 0x80,
        uuid: None,
        name: None,
    })
}

/// The partitions of an MBR disk whose boot sector is `boot`: the used primaries, then
/// the logical partitions of the first extended partition.
pub fn read(disk: &dyn VirtualDisk, boot: &BootSector) -> Result<PartitionTable> {
    let mut partitions = Vec::new();
    for (slot, entry) in (1u32..).zip(boot.entries.iter()) {
        if entry.is_used() {
            partitions.push(partition(slot, entry, 0)?);
        }
    }
    if let Some(extended) = boot.entries.iter().find(|e| e.is_used() && e.is_extended()) {
        read_logical(disk, u64::from(extended.start), &mut partitions)?;
    }
    Ok(PartitionTable {
        scheme: Scheme::Mbr {
            disk_id: boot.disk_id,
        },
        partitions,
    })
}

/// Walks the EBR chain of the extended partition starting at sector `extended_start`.
fn read_logical(
    disk: &dyn VirtualDisk,
    extended_start: u64,
    partitions: &mut Vec<Partition>,
) -> Result<()> {
    let mut visited = BTreeSet::new();
    let mut ebr_sector = extended_start;
    let mut number = 5u32;
    loop {
        if !visited.insert(ebr_sector) {
            return Err(NativeError::malformed(
                "EBR chain",
                ebr_sector.saturating_mul(SECTOR),
                "the chain of extended boot records loops",
            ));
        }
        NativeError::check_limit("EBR chain length", visited.len() as u64, MAX_EBRS as u64)?;
        let offset = ebr_sector
            .checked_mul(SECTOR)
            .filter(|o| {
                o.checked_add(SECTOR)
                    .is_some_and(|end| end <= disk.virtual_size())
            })
            .ok_or_else(|| {
                NativeError::malformed(
                    "EBR",
                    ebr_sector.saturating_mul(SECTOR),
                    format!("sector {ebr_sector} lies outside the disk"),
                )
            })?;
        let mut sector = [0u8; SECTOR as usize];
        disk.read_at(&mut sector, offset)?;
        if !BootSector::has_signature(&sector) {
            return Err(NativeError::malformed("EBR", offset, "no 0x55AA signature"));
        }
        let ebr = BootSector::parse(&sector);
        let data = &ebr.entries[0];
        if data.is_used() && !data.is_extended() {
            // number - 4 is how many logical partitions there will be with this one.
            NativeError::check_limit(
                "logical partitions",
                u64::from(number - 4),
                MAX_LOGICAL as u64,
            )?;
            partitions.push(partition(number, data, ebr_sector)?);
            number += 1;
        }
        let link = &ebr.entries[1];
        if !(link.is_used() && link.is_extended()) {
            return Ok(());
        }
        ebr_sector = extended_start
            .checked_add(u64::from(link.start))
            .ok_or_else(|| NativeError::malformed("EBR", offset, "next EBR overflows"))?;
    }
}
