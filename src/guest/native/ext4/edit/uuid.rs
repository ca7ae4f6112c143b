//! A new filesystem UUID: in the primary superblock and every backup copy, with the
//! checksums that depend on it.
//!
//! Without metadata_csum only the group descriptors' crc16 (uninit_bg) is seeded by
//! the UUID: they are rewritten, primary and backup tables. With metadata_csum every
//! checksum is seeded by it unless the filesystem stores its seed (`csum_seed`): then
//! only the superblocks change; without a stored seed the change is
//! [`NativeError::Unsupported`] (tune2fs rewrites every checksum of the filesystem,
//! which this backend does not do). Must not: touch anything but superblocks and
//! descriptor tables.

use super::super::group::table_offset;
use super::super::superblock::incompat;
use super::super::Ext4;
use super::desc::set_superblock_checksum;
use crate::guest::native::bytes::{le32, put_le16};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};

const UUID: usize = 0x68;
const BLOCK_GROUP_NR: usize = 0x5a;
const BACKUP_BGS: usize = 0x24c;
const SPARSE_SUPER: u32 = 0x1;
const SPARSE_SUPER2: u32 = 0x200;

/// The 16 bytes of a UUID in its text form (`8-4-4-4-12` hex digits).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    let dashes = text.len() - hex.len();
    if hex.len() != 32 || dashes != 4 {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        uuid[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(uuid)
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    while n > 1 && n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

impl Ext4 {
    /// Whether group `group` holds a backup superblock and descriptor table.
    fn has_backup(&self, group: u32, raw_sb: &[u8]) -> bool {
        if group == 0 {
            return false;
        }
        if self.sb.feature_compat & SPARSE_SUPER2 != 0 {
            return group == le32(raw_sb, BACKUP_BGS) || group == le32(raw_sb, BACKUP_BGS + 4);
        }
        if group == 1 || self.sb.feature_ro_compat & SPARSE_SUPER == 0 {
            return true;
        }
        !group.is_multiple_of(2)
            && (is_power_of(group, 3) || is_power_of(group, 5) || is_power_of(group, 7))
    }

    /// Gives the filesystem the UUID `uuid`.
    pub fn set_uuid(&mut self, uuid: [u8; 16]) -> Result<()> {
        self.check_writable()?;
        if self.sb.has_metadata_csum() && !self.sb.has_incompat(incompat::CSUM_SEED) {
            return Err(NativeError::unsupported(
                "ext4 UUID change",
                "metadata_csum seeds every checksum with the UUID and this filesystem stores no separate seed (metadata_csum_seed): tune2fs rewrites every checksum, the native backend does not",
            ));
        }
        let mut raw = self.raw_superblock()?;
        raw[UUID..UUID + 16].copy_from_slice(&uuid);
        self.sb.uuid = uuid;
        if !self.sb.has_incompat(incompat::CSUM_SEED) {
            self.sb.csum_seed = crc32c_raw(!0, &uuid);
        }
        self.store_superblock(raw.clone())?;
        if self.sb.has_gdt_csum() && !self.sb.has_metadata_csum() {
            for group in 0..self.sb.groups {
                let desc = self.raw_desc(group)?;
                self.store_desc(desc)?;
            }
        }
        let table_len = u64::from(self.sb.groups) * u64::from(self.sb.desc_size);
        let table = self.overlay().read_vec(
            table_offset(&self.sb),
            table_len as usize,
            "ext4 group descriptors",
        )?;
        let size = u64::from(self.sb.block_size);
        for group in 1..self.sb.groups {
            if !self.has_backup(group, &raw) {
                continue;
            }
            let (first, _) = self.group_blocks(group);
            let mut copy = raw.clone();
            put_le16(&mut copy, BLOCK_GROUP_NR, group as u16);
            set_superblock_checksum(&self.sb, &mut copy);
            self.write_bytes(first * size, &copy, "ext4 backup superblock")?;
            // The backup table starts in the block after the backup superblock.
            self.write_bytes((first + 1) * size, &table, "ext4 backup group descriptors")?;
        }
        Ok(())
    }
}
