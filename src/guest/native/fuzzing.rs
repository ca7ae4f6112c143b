//! Entry points shared by the cargo-fuzz targets of the native backend (`fuzz/`) and
//! their stable replay test (`tests/native_fuzz_corpus.rs`), so both run the same code.
//!
//! Owns only the choice of what to exercise per input. Must never panic itself and
//! must keep every run bounded (the parsers' own limits do that).

use std::path::Path;
use std::sync::Arc;

use super::bytes::{be32, put_be32};
use super::crc::crc32c_raw;
use super::ext4::inode::{InodeKind, ROOT_INO};
use super::ext4::journal::header::{self, features};
use super::ext4::Ext4;
use super::lvm;
use super::partition::read_partition_table;
use super::Volume;
use crate::disk::{MemorySource, RawImage};

/// Treats `input` as a whole raw disk and reads its partition table. Returns how many
/// partitions were found (`None` when the table was rejected), so a replay can tell
/// how deep its inputs reach.
pub fn partition_table(input: &[u8]) -> Option<usize> {
    let source = Arc::new(MemorySource::new(input.to_vec(), "fuzz-input.img"));
    let disk = RawImage::new(source, Path::new("fuzz-input.img"));
    read_partition_table(&disk).ok().map(|t| t.partitions.len())
}

/// Journal blocks after the journal superblock whose checksums [`ext4_recover`]
/// fixes up (the seeds' logs are a few blocks long).
const FIXED_LOG_BLOCKS: usize = 16;

/// Inodes visited by [`ext4_walk`] per input.
const WALK_INODES: usize = 256;
/// Bytes read per file by [`ext4_walk`].
const WALK_READ_LIMIT: u64 = 256 << 10;

/// Treats `input` as a whole-disk ext2/3/4 filesystem: opens it and walks its tree
/// from the root, listing directories and reading files and symlinks, visiting at
/// most [`WALK_INODES`] inodes. Returns whether the filesystem opened.
pub fn ext4_walk(input: &[u8]) -> bool {
    let Some(fs) = open_ext4(input.to_vec()) else {
        return false;
    };
    walk(&fs);
    true
}

/// Treats `input` as a whole-disk ext2/3/4 filesystem a crash left dirty: opens it,
/// recovers it (journal replay into the overlay, orphans), runs the edits'
/// self-check, and walks the recovered tree as [`ext4_walk`] does. The jbd2
/// checksums of the input's journal (superblock, descriptor and revoke tails, commit
/// blocks; not the logged data's) are recomputed first, so mutations reach the log
/// walk behind them. Returns whether recovery succeeded.
pub fn ext4_recover(input: &[u8]) -> bool {
    let mut bytes = input.to_vec();
    fix_jbd2_checksums(&mut bytes);
    let Some(mut fs) = open_ext4(bytes) else {
        return false;
    };
    let recovered = fs.recover().is_ok();
    if recovered {
        let _ = fs.self_check();
    }
    walk(&fs);
    recovered
}

fn open_ext4(input: Vec<u8>) -> Option<Ext4> {
    let source = Arc::new(MemorySource::new(input, "fuzz-input.img"));
    let disk = Arc::new(RawImage::new(source, Path::new("fuzz-input.img")));
    Ext4::open(Volume::whole(disk)).ok()
}

/// Lists directories and reads files and symlinks from the root, visiting at most
/// [`WALK_INODES`] inodes.
fn walk(fs: &Ext4) {
    let mut queue = vec![ROOT_INO];
    let mut visited = 0usize;
    while let Some(number) = queue.pop() {
        visited += 1;
        if visited > WALK_INODES {
            break;
        }
        let Ok(inode) = fs.inode(number) else {
            continue;
        };
        match inode.kind() {
            InodeKind::Directory => {
                if let Ok(entries) = fs.read_dir(&inode) {
                    queue.extend(entries.iter().map(|e| e.inode));
                }
            }
            InodeKind::File => {
                let _ = fs.read_file(&inode, WALK_READ_LIMIT);
            }
            InodeKind::Symlink => {
                let _ = fs.read_link(&inode);
            }
            InodeKind::Other => {}
        }
    }
}

/// Recomputes, in place, the v2/v3 checksums of the journal blocks of a seed-shaped
/// input (1 KiB blocks, the log right after the journal superblock): the journal
/// superblock, and the descriptor, revoke and commit blocks among the
/// [`FIXED_LOG_BLOCKS`] after it. The checksum seed comes from the journal
/// superblock, found by its magic and block type.
fn fix_jbd2_checksums(bytes: &mut [u8]) {
    const SIZE: usize = 1024;
    let magic = header::MAGIC.to_be_bytes();
    let Some(start) = (0..bytes.len() / SIZE)
        .map(|b| b * SIZE)
        .find(|&at| bytes[at..at + 4] == magic && be32(bytes, at + 4) == 4)
    else {
        return;
    };
    let block_size = be32(bytes, start + 0x0c) as usize;
    let csum = be32(bytes, start + 0x28) & (features::CSUM_V2 | features::CSUM_V3) != 0;
    if !csum || block_size != SIZE || start + SIZE > bytes.len() {
        return;
    }
    let sb = &mut bytes[start..start + SIZE];
    put_be32(sb, 0xfc, 0);
    let crc = crc32c_raw(!0, sb);
    put_be32(sb, 0xfc, crc);
    let seed = crc32c_raw(!0, &sb[0x30..0x40]);
    let end = bytes.len().min(start + (FIXED_LOG_BLOCKS + 1) * SIZE);
    let mut at = start + SIZE;
    while at + SIZE <= end {
        let block = &mut bytes[at..at + SIZE];
        let field = match be32(block, 4) {
            _ if block[..4] != magic => None,
            header::DESCRIPTOR | header::REVOKE => Some(SIZE - 4),
            header::COMMIT => Some(16),
            _ => None,
        };
        if let Some(field) = field {
            put_be32(block, field, 0);
            let crc = crc32c_raw(seed, block);
            put_be32(block, field, crc);
        }
        at += SIZE;
    }
}

/// Treats `input` as a whole raw disk holding an LVM physical volume: finds its label,
/// reads the current metadata of its metadata areas (wrapping in the ring) and maps
/// the LVs of its VG. The checksums the input carries (label CRC, metadata area
/// header CRC, metadata text checksum) are recomputed first, so mutations reach the
/// parsers behind them instead of stopping at a checksum. Returns whether a VG was
/// read.
pub fn lvm_pv(input: &[u8]) -> bool {
    let mut bytes = input.to_vec();
    fix_lvm_checksums(&mut bytes);
    let source = Arc::new(MemorySource::new(bytes, "fuzz-input.img"));
    let disk = Arc::new(RawImage::new(source, Path::new("fuzz-input.img")));
    let Ok(Some(pv)) = lvm::read_pv(&Volume::whole(disk), "/dev/sda") else {
        return false;
    };
    let groups = lvm::volume_groups(std::slice::from_ref(&pv));
    !groups.is_empty()
}

/// Parses `input` as an LVM metadata text and reads the VG it describes. Returns
/// whether the text parsed.
pub fn lvm_text(input: &[u8]) -> bool {
    match lvm::text::parse(input) {
        Ok(top) => {
            let _ = lvm::vg::from_text(&top);
            true
        }
        Err(_) => false,
    }
}

/// Rewrites the LVM checksums of a disk image in place (see [`lvm_pv`]).
fn fix_lvm_checksums(bytes: &mut [u8]) {
    use super::bytes::{le64, put_le32};
    use super::crc::{lvm_crc, LVM_INITIAL_CRC};
    use lvm::mda::MDA_HEADER_SIZE;

    let Some(sector) = (0..4usize).find(|s| bytes.get(s * 512..s * 512 + 8) == Some(b"LABELONE"))
    else {
        return;
    };
    let Some(label) = bytes.get_mut(sector * 512..sector * 512 + 512) else {
        return;
    };
    let crc = lvm_crc(LVM_INITIAL_CRC, &label[20..]);
    put_le32(label, 16, crc);
    let Ok(label) = lvm::label::parse(label, sector as u64) else {
        return;
    };
    for area in label.metadata_areas {
        let header_len = MDA_HEADER_SIZE as usize;
        let Some(start) = usize::try_from(area.offset).ok() else {
            continue;
        };
        let Some(header) = start
            .checked_add(header_len)
            .and_then(|end| bytes.get(start..end))
        else {
            continue;
        };
        let (size, offset, len) = (le64(header, 32), le64(header, 40), le64(header, 48));
        // The text, wrapping after the area's end to just past its header.
        let mut text = Vec::new();
        let ring = size.saturating_sub(MDA_HEADER_SIZE);
        if offset < size && len <= ring && len <= 1 << 20 {
            for i in 0..len {
                let mut at = offset + i;
                if at >= size {
                    at = at - size + MDA_HEADER_SIZE;
                }
                let Some(&byte) = usize::try_from(area.offset.saturating_add(at))
                    .ok()
                    .and_then(|at| bytes.get(at))
                else {
                    break;
                };
                text.push(byte);
            }
        }
        let header = &mut bytes[start..start + header_len];
        if text.len() as u64 == len && len > 0 {
            put_le32(header, 56, lvm_crc(LVM_INITIAL_CRC, &text));
        }
        let crc = lvm_crc(LVM_INITIAL_CRC, &header[4..]);
        put_le32(header, 0, crc);
    }
}
