//! Block-level identity without an appliance: what each volume of the disk is
//! (ext2/3/4 by its superblock's features, as blkid names them; swap, XFS, btrfs,
//! vfat and LUKS by their signatures) and its UUID, as libguestfs's `vfs_type` and
//! `vfs_uuid` report them.
//!
//! The PVs, VGs and LVs that discovery read ([`super::lvm`]) are listed by the
//! caller; a PV label met here is one whose metadata could not be read, so it is
//! refused ([`NativeError::Unsupported`]): its volume group and the filesystems on
//! its logical volumes are not visible natively, and a list without them would let
//! lvm-uuids and fs-uuids silently skip them. A volume with no
//! signature known here is left out, as libguestfs leaves out what blkid calls
//! "unknown". Must not: change anything.

use super::bytes::{byte, bytes16, le32};
use super::error::{NativeError, Result};
use super::ext4::superblock::{compat, incompat};
use super::Volume;

/// What a volume holds, when this module recognises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// blkid's type name (`ext4`, `swap`, `xfs`, `btrfs`, `vfat`, `crypto_LUKS`).
    pub fstype: String,
    /// As `vfs_uuid` prints it (empty when the volume has none).
    pub uuid: String,
}

/// The dashed lowercase text of a 16-byte UUID.
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// blkid's name for an ext filesystem with these features.
pub fn ext_type(
    feature_compat: u32,
    feature_incompat: u32,
    feature_ro_compat: u32,
) -> &'static str {
    // What ext3 knows: filetype, recover, meta_bg; sparse_super, large_file, btree_dir.
    const EXT3_INCOMPAT: u32 = incompat::FILETYPE | incompat::RECOVER | incompat::META_BG;
    const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;
    if feature_incompat & !EXT3_INCOMPAT != 0 || feature_ro_compat & !EXT3_RO_COMPAT != 0 {
        "ext4"
    } else if feature_compat & compat::HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    }
}

fn read(volume: &Volume, offset: u64, len: usize) -> Option<Vec<u8>> {
    let end = offset.checked_add(len as u64)?;
    (end <= volume.len())
        .then(|| volume.read_vec(offset, len, "signature").ok())
        .flatten()
}

/// Recognises the volume's content; `Ok(None)` when no known signature is there.
pub fn probe(volume: &Volume, device: &str) -> Result<Option<Signature>> {
    let found = |fstype: &str, uuid: String| {
        Ok(Some(Signature {
            fstype: fstype.to_owned(),
            uuid,
        }))
    };
    for sector in 0..4u64 {
        if let Some(label) = read(volume, sector * 512, 32) {
            if &label[..8] == b"LABELONE" && &label[24..32] == b"LVM2 001" {
                return Err(NativeError::unsupported(
                    "LVM",
                    format!("{device} is an LVM physical volume: its volume group and logical volumes are not read natively"),
                ));
            }
        }
    }
    if let Some(sb) = read(volume, 1024, 1024) {
        if sb[0x38..0x3a] == [0x53, 0xef] {
            let kind = ext_type(le32(&sb, 0x5c), le32(&sb, 0x60), le32(&sb, 0x64));
            return found(kind, uuid_text(&bytes16(&sb, 0x68)));
        }
    }
    if let Some(head) = read(volume, 0, 4096) {
        if &head[..4] == b"XFSB" {
            return found("xfs", uuid_text(&bytes16(&head, 32)));
        }
        if &head[..6] == b"LUKS\xba\xbe" {
            let text = &head[168..168 + 40];
            let len = text.iter().position(|&b| b == 0).unwrap_or(40);
            return found(
                "crypto_LUKS",
                String::from_utf8_lossy(&text[..len]).into_owned(),
            );
        }
        if &head[4086..] == b"SWAPSPACE2" || &head[4086..] == b"SWAP-SPACE" {
            return found("swap", uuid_text(&bytes16(&head, 1024 + 12)));
        }
        let fat = &head[0x36..0x39] == b"FAT" || &head[0x52..0x57] == b"FAT32";
        if head[510..512] == [0x55, 0xaa] && fat {
            let at = if &head[0x52..0x57] == b"FAT32" {
                0x43
            } else {
                0x27
            };
            let id: Vec<u8> = (0..4).map(|i| byte(&head, at + i)).collect();
            return found(
                "vfat",
                format!("{:02X}{:02X}-{:02X}{:02X}", id[3], id[2], id[1], id[0]),
            );
        }
    }
    if let Some(btrfs) = read(volume, 65536, 4096) {
        if &btrfs[64..72] == b"_BHRfS_M" {
            return found("btrfs", uuid_text(&bytes16(&btrfs, 32)));
        }
    }
    Ok(None)
}
