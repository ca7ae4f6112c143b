//! Partition tables: which byte ranges of a virtual disk hold filesystems.
//!
//! Owns the choice between MBR ([`mbr`]), GPT ([`gpt`], behind a protective MBR) and a
//! whole-disk filesystem (no table), and the format-neutral [`Partition`] list. Must
//! not: look inside partitions. Sectors are 512 bytes, as on every virtual disk
//! imgferry moves.

pub mod gpt;
pub mod mbr;

use super::error::Result;
use crate::disk::VirtualDisk;

/// Bytes per logical sector.
pub const SECTOR: u64 = 512;

/// How the disk is divided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// An MS-DOS partition table; `disk_id` is the 32-bit signature at byte 440.
    Mbr { disk_id: u32 },
    /// A GUID partition table.
    Gpt(gpt::GptInfo),
    /// No partition table: the whole disk is one volume (a filesystem written straight
    /// onto the disk, or an empty disk).
    WholeDisk,
}

/// What a partition's type field says, per scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionType {
    /// The MBR system id byte (0x83 Linux, 0x8e LVM, ...).
    Mbr(u8),
    /// The GPT partition type GUID, as text (upper case, as sfdisk prints it).
    Gpt(String),
}

/// One partition, in disk bytes and in sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The number Linux gives it (`sda<number>`): MBR slots 1-4, logical ones from 5;
    /// GPT entry index + 1.
    pub number: u32,
    /// First sector.
    pub start_sector: u64,
    /// Length in sectors.
    pub sectors: u64,
    pub kind: PartitionType,
    /// MBR: the boot flag. GPT: the legacy BIOS bootable attribute (bit 2).
    pub bootable: bool,
    /// GPT only: the partition's unique GUID, as text.
    pub uuid: Option<String>,
    /// GPT only: the partition name (UTF-16LE on disk, up to 36 units), when not empty.
    pub name: Option<String>,
}

impl Partition {
    /// Byte offset of the partition on the disk (`None` when it overflows).
    pub fn start_byte(&self) -> Option<u64> {
        self.start_sector.checked_mul(SECTOR)
    }

    /// Size in bytes (`None` when it overflows).
    pub fn size_bytes(&self) -> Option<u64> {
        self.sectors.checked_mul(SECTOR)
    }
}

/// A disk's partition table: its scheme and its partitions, by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    pub scheme: Scheme,
    pub partitions: Vec<Partition>,
}

/// Reads the partition table of `disk`. An MBR whose only entry is a protective 0xEE
/// one leads to the GPT; a disk without the 0x55AA signature, or whose boot sector is
/// not a partition table, is [`Scheme::WholeDisk`].
pub fn read_partition_table(disk: &dyn VirtualDisk) -> Result<PartitionTable> {
    let Some(boot) = mbr::BootSector::read(disk)? else {
        return Ok(PartitionTable {
            scheme: Scheme::WholeDisk,
            partitions: Vec::new(),
        });
    };
    if boot.is_protective() {
        return gpt::read(disk);
    }
    mbr::read(disk, &boot)
}
