//! The ext2/3/4 superblock: geometry, features and the checksum seed.
//!
//! Owns the superblock layout, its validation against the volume size and the named
//! limits below, the metadata_csum check of the superblock itself, and the decision
//! whether a feature set can be read at all. Must not: read anything but the
//! superblock.

use crate::guest::native::bytes::{byte, bytes16, le16, le32};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};
use crate::guest::native::Volume;

/// Where the primary superblock sits in the volume, and its size.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const SUPERBLOCK_SIZE: usize = 1024;
/// ext4 allows 1 KiB to 64 KiB blocks.
pub const MAX_LOG_BLOCK_SIZE: u32 = 6;
/// Inodes from 128 bytes up to a block; more than 1 KiB is never made by mke2fs and
/// would only let a hostile image size buffers.
pub const MAX_INODE_SIZE: u16 = 1024;
/// Block groups accepted (a 128 TiB filesystem of 4 KiB blocks has 1 Mi groups).
pub const MAX_GROUPS: u64 = 1 << 20;

const MAGIC: u16 = 0xef53;

/// `s_feature_incompat` bits.
pub mod incompat {
    pub const COMPRESSION: u32 = 0x1;
    pub const FILETYPE: u32 = 0x2;
    pub const RECOVER: u32 = 0x4;
    pub const JOURNAL_DEV: u32 = 0x8;
    pub const META_BG: u32 = 0x10;
    pub const EXTENTS: u32 = 0x40;
    pub const BIT64: u32 = 0x80;
    pub const MMP: u32 = 0x100;
    pub const FLEX_BG: u32 = 0x200;
    pub const EA_INODE: u32 = 0x400;
    pub const DIRDATA: u32 = 0x1000;
    pub const CSUM_SEED: u32 = 0x2000;
    pub const LARGEDIR: u32 = 0x4000;
    pub const INLINE_DATA: u32 = 0x8000;
    pub const ENCRYPT: u32 = 0x10000;
    pub const CASEFOLD: u32 = 0x20000;
    /// What the reader understands; anything else (compression, journal device,
    /// meta_bg, dirdata, encryption, unknown bits) is refused.
    pub const READABLE: u32 = FILETYPE
        | RECOVER
        | EXTENTS
        | BIT64
        | MMP
        | FLEX_BG
        | EA_INODE
        | CSUM_SEED
        | LARGEDIR
        | INLINE_DATA
        | CASEFOLD;
    /// Names for messages.
    pub const NAMES: [(u32, &str); 5] = [
        (COMPRESSION, "compression"),
        (JOURNAL_DEV, "journal_dev"),
        (META_BG, "meta_bg"),
        (DIRDATA, "dirdata"),
        (ENCRYPT, "encrypt"),
    ];
}

/// `s_feature_ro_compat` bits.
pub mod ro_compat {
    pub const GDT_CSUM: u32 = 0x10;
    pub const METADATA_CSUM: u32 = 0x400;
}

/// `s_feature_compat` bits.
pub mod compat {
    pub const HAS_JOURNAL: u32 = 0x4;
    pub const DIR_INDEX: u32 = 0x20;
    pub const EXCLUDE_BITMAP: u32 = 0x100;
}

/// The facts of a validated superblock.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub first_data_block: u32,
    pub block_size: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub inode_size: u16,
    pub first_ino: u32,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
    pub uuid: [u8; 16],
    pub label: String,
    /// Group descriptor size: 32, or `s_desc_size` with the 64bit feature.
    pub desc_size: u16,
    pub groups: u32,
    /// The seed of every metadata checksum (`s_checksum_seed` or crc32c of the UUID).
    pub csum_seed: u32,
}

impl Superblock {
    /// Reads and validates the primary superblock of `volume`.
    pub fn read(volume: &Volume) -> Result<Self> {
        let raw = volume.read_vec(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, "ext4 superblock")?;
        Self::parse(&raw, volume.len())
    }

    /// Validates the 1024 superblock bytes of a volume of `volume_len` bytes.
    pub fn parse(raw: &[u8], volume_len: u64) -> Result<Self> {
        let bad =
            |detail: String| NativeError::malformed("ext4 superblock", SUPERBLOCK_OFFSET, detail);
        if le16(raw, 0x38) != MAGIC {
            return Err(NativeError::unsupported("filesystem", "no ext2/3/4 magic"));
        }
        let feature_incompat = le32(raw, 0x60);
        let feature_ro_compat = le32(raw, 0x64);
        if feature_ro_compat & ro_compat::METADATA_CSUM != 0 {
            if byte(raw, 0x175) != 1 {
                return Err(bad(format!(
                    "checksum type {} is not crc32c",
                    byte(raw, 0x175)
                )));
            }
            let stored = le32(raw, 0x3fc);
            let computed = crc32c_raw(!0, &raw[..0x3fc]);
            if stored != computed {
                return Err(NativeError::Checksum {
                    structure: "ext4 superblock",
                    offset: SUPERBLOCK_OFFSET,
                    stored,
                    computed,
                });
            }
        }
        let unknown = feature_incompat & !incompat::READABLE;
        if unknown != 0 {
            let names: Vec<&str> = incompat::NAMES
                .iter()
                .filter(|(bit, _)| unknown & bit != 0)
                .map(|(_, name)| *name)
                .collect();
            return Err(NativeError::unsupported(
                "ext4 feature",
                format!("incompatible features {unknown:#x} ({})", names.join(", ")),
            ));
        }
        let log_block_size = le32(raw, 0x18);
        if log_block_size > MAX_LOG_BLOCK_SIZE {
            return Err(bad(format!(
                "log block size {log_block_size} is over 6 (64 KiB)"
            )));
        }
        let block_size = 1024u32 << log_block_size;
        let bit64 = feature_incompat & incompat::BIT64 != 0;
        let blocks_hi = if bit64 {
            u64::from(le32(raw, 0x150))
        } else {
            0
        };
        let blocks_count = u64::from(le32(raw, 0x4)) | blocks_hi << 32;
        let first_data_block = le32(raw, 0x14);
        let blocks_per_group = le32(raw, 0x20);
        let inodes_per_group = le32(raw, 0x28);
        let inodes_count = le32(raw, 0x0);
        // The volume must hold every block the filesystem claims.
        let fs_bytes = blocks_count.checked_mul(u64::from(block_size));
        if fs_bytes.is_none_or(|bytes| bytes > volume_len) {
            return Err(bad(format!(
                "{blocks_count} blocks of {block_size} bytes do not fit the {volume_len}-byte volume"
            )));
        }
        let expected_first = u32::from(block_size == 1024);
        if first_data_block != expected_first {
            return Err(bad(format!(
                "first data block {first_data_block}, expected {expected_first}"
            )));
        }
        if blocks_per_group == 0 || blocks_per_group > block_size * 8 {
            return Err(bad(format!("{blocks_per_group} blocks per group")));
        }
        if inodes_per_group == 0 || inodes_per_group > block_size * 8 {
            return Err(bad(format!("{inodes_per_group} inodes per group")));
        }
        let data_blocks = blocks_count.saturating_sub(u64::from(first_data_block));
        let groups = data_blocks.div_ceil(u64::from(blocks_per_group));
        NativeError::check_limit("ext4 block groups", groups, MAX_GROUPS)?;
        if u64::from(inodes_count) > groups * u64::from(inodes_per_group) || groups == 0 {
            return Err(bad(format!(
                "{inodes_count} inodes in {groups} groups of {inodes_per_group}"
            )));
        }
        let (inode_size, first_ino) = if le32(raw, 0x4c) == 0 {
            (128, 11) // revision 0: fixed values
        } else {
            (le16(raw, 0x58), le32(raw, 0x54))
        };
        if inode_size < 128
            || !inode_size.is_power_of_two()
            || inode_size > MAX_INODE_SIZE
            || u32::from(inode_size) > block_size
        {
            return Err(bad(format!("inode size {inode_size}")));
        }
        let desc_size = if bit64 { le16(raw, 0xfe) } else { 32 };
        if !(32..=1024).contains(&desc_size)
            || !desc_size.is_power_of_two()
            || (bit64 && desc_size < 64)
        {
            return Err(bad(format!("group descriptor size {desc_size}")));
        }
        let uuid = bytes16(raw, 0x68);
        let csum_seed = if feature_incompat & incompat::CSUM_SEED != 0 {
            le32(raw, 0x270)
        } else {
            crc32c_raw(!0, &uuid)
        };
        let label_bytes = &raw[0x78..0x88];
        let label_len = label_bytes.iter().position(|&b| b == 0).unwrap_or(16);
        Ok(Self {
            inodes_count,
            blocks_count,
            first_data_block,
            block_size,
            blocks_per_group,
            inodes_per_group,
            inode_size,
            first_ino,
            feature_compat: le32(raw, 0x5c),
            feature_incompat,
            feature_ro_compat,
            uuid,
            label: String::from_utf8_lossy(&label_bytes[..label_len]).into_owned(),
            desc_size,
            groups: groups as u32, // <= MAX_GROUPS
            csum_seed,
        })
    }

    /// Whether metadata_csum (crc32c on every metadata block) is on.
    pub fn has_metadata_csum(&self) -> bool {
        self.feature_ro_compat & ro_compat::METADATA_CSUM != 0
    }

    /// Whether the older group-descriptor-only checksum (crc16) is on.
    pub fn has_gdt_csum(&self) -> bool {
        self.feature_ro_compat & ro_compat::GDT_CSUM != 0
    }

    /// Whether an incompat feature bit is set.
    pub fn has_incompat(&self, bit: u32) -> bool {
        self.feature_incompat & bit != 0
    }

    /// Whether the journal must be replayed before the content is current.
    pub fn needs_recovery(&self) -> bool {
        self.has_incompat(incompat::RECOVER)
    }

    /// The UUID in its usual text form.
    pub fn uuid_text(&self) -> String {
        crate::guest::native::blockid::uuid_text(&self.uuid)
    }
}
