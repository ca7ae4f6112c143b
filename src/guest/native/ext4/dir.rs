//! ext4 directories: linear directory blocks, htree (dx) root and node blocks, and
//! inline directories, read as one flat list of entries.
//!
//! A hashed (htree) directory is read linearly like the kernel's `readdir`: its root
//! and interior blocks look like blocks holding only empty entries, so every leaf is
//! visited once. Owns the entry layout (`rec_len`, `name_len`, file type), the leaf
//! tail checksum and the dx tail checksum under metadata_csum. Must not: look up by
//! hash (a linear scan is exact, and the walk is bounded by [`MAX_DIR_BYTES`]).

use super::inode::{flags, Inode, InodeKind};
use super::superblock::incompat;
use super::{blockmap, inline, Ext4};
use crate::guest::native::bytes::{byte, le16, le32};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};

/// Largest directory read (a directory of a million 40-byte names is ~48 MiB).
pub const MAX_DIR_BYTES: u64 = 128 << 20;

const ENTRY_HEADER: usize = 8;
const TAIL: usize = 12;
const TAIL_FILE_TYPE: u8 = 0xde;

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub inode: u32,
    /// The `file_type` byte (0 when the filesystem lacks the filetype feature).
    pub file_type: u8,
}

/// The entries of `dir` other than `.` and `..`, in on-disk order.
pub fn read_dir(fs: &Ext4, dir: &Inode) -> Result<Vec<DirEntry>> {
    if dir.kind() != InodeKind::Directory {
        return Err(NativeError::malformed(
            "ext4 directory",
            0,
            format!("inode {} is not a directory", dir.number),
        ));
    }
    NativeError::check_limit("ext4 directory bytes", dir.size, MAX_DIR_BYTES)?;
    let mut entries = Vec::new();
    if dir.has_flag(flags::INLINE_DATA) {
        // i_block: the parent's inode number, then entries; the rest in system.data.
        parse_entries(fs, &dir.block[4..], 0, &mut entries)?;
        if let Some(more) = inline::system_data(dir)? {
            parse_entries(fs, &more, 0, &mut entries)?;
        }
    } else {
        let block_size = u64::from(fs.sb.block_size);
        let blocks = dir.size.div_ceil(block_size);
        for run in blockmap::map(fs, dir, blocks)? {
            for i in 0..run.len {
                let block = run.physical + i;
                let data = fs.read_block(block, "ext4 directory block")?;
                let index_root = run.logical + i == 0 && dir.has_flag(flags::INDEX);
                let region = checked_region(fs, dir, &data, block * block_size, index_root)?;
                parse_entries(fs, region, block * block_size, &mut entries)?;
            }
        }
    }
    entries.retain(|e| e.name != b"." && e.name != b"..");
    Ok(entries)
}

/// Verifies a directory block's checksum and returns the part holding entries.
fn checked_region<'a>(
    fs: &Ext4,
    dir: &Inode,
    data: &'a [u8],
    offset: u64,
    index_root: bool,
) -> Result<&'a [u8]> {
    let size = data.len();
    let dx_node = le32(data, 0) == 0 && rec_len(data, 0, size) == size;
    if index_root || dx_node {
        if fs.sb.has_metadata_csum() {
            let count_offset = if index_root { 32 } else { 8 };
            verify_dx(dir, data, count_offset, offset)?;
        }
        // dx blocks hold no names but the root's "." and "..", which are not listed.
        return Ok(&data[..0]);
    }
    if !fs.sb.has_metadata_csum() {
        return Ok(data);
    }
    let tail = size - TAIL;
    let is_tail = le32(data, tail) == 0
        && le16(data, tail + 4) == TAIL as u16
        && byte(data, tail + 7) == TAIL_FILE_TYPE;
    if !is_tail {
        return Err(NativeError::malformed(
            "ext4 directory block",
            offset,
            "no checksum tail",
        ));
    }
    let computed = crc32c_raw(dir.csum_seed, &data[..tail]);
    let stored = le32(data, tail + 8);
    if stored != computed {
        return Err(NativeError::Checksum {
            structure: "ext4 directory block",
            offset,
            stored,
            computed,
        });
    }
    Ok(&data[..tail])
}

/// Checks the dx tail of an htree root or node whose count/limit pair is at
/// `count_offset`.
fn verify_dx(dir: &Inode, data: &[u8], count_offset: usize, offset: u64) -> Result<()> {
    let (limit, count) = (
        usize::from(le16(data, count_offset)),
        usize::from(le16(data, count_offset + 2)),
    );
    let tail = count_offset + limit * 8;
    if count > limit || tail + 8 > data.len() {
        return Err(NativeError::malformed(
            "ext4 htree block",
            offset,
            format!("count {count}, limit {limit}"),
        ));
    }
    let crc = crc32c_raw(dir.csum_seed, &data[..count_offset + count * 8]);
    let crc = crc32c_raw(crc, &data[tail..tail + 4]);
    let computed = crc32c_raw(crc, &[0; 4]);
    let stored = le32(data, tail + 4);
    if stored != computed {
        return Err(NativeError::Checksum {
            structure: "ext4 htree block",
            offset,
            stored,
            computed,
        });
    }
    Ok(())
}

/// `rec_len` of the entry at `at` (64 KiB blocks store 65536 as 0 or 65535).
fn rec_len(data: &[u8], at: usize, block_size: usize) -> usize {
    match le16(data, at + 4) {
        0 | 0xffff if block_size == 65536 => 65536,
        len => usize::from(len),
    }
}

/// Appends the live entries of `region` (a run of entries filling it exactly).
fn parse_entries(fs: &Ext4, region: &[u8], offset: u64, out: &mut Vec<DirEntry>) -> Result<()> {
    let has_type = fs.sb.has_incompat(incompat::FILETYPE);
    let mut at = 0usize;
    while at < region.len() {
        let bad = |detail: String| {
            NativeError::malformed("ext4 directory entry", offset + at as u64, detail)
        };
        let len = rec_len(region, at, fs.sb.block_size as usize);
        let name_len = if has_type {
            usize::from(byte(region, at + 6))
        } else {
            usize::from(le16(region, at + 6))
        };
        let end = at.checked_add(len).filter(|&end| end <= region.len());
        let Some(end) = end.filter(|_| len >= ENTRY_HEADER && len.is_multiple_of(4)) else {
            return Err(bad(format!(
                "record length {len} at {at} of {}",
                region.len()
            )));
        };
        let inode = le32(region, at);
        if inode != 0 {
            if ENTRY_HEADER + name_len > len || name_len == 0 {
                return Err(bad(format!(
                    "name of {name_len} bytes in a {len}-byte record"
                )));
            }
            if inode > fs.sb.inodes_count {
                return Err(bad(format!("inode {inode} of {}", fs.sb.inodes_count)));
            }
            NativeError::check_limit(
                "ext4 directory entries",
                out.len() as u64 + 1,
                MAX_DIR_BYTES / 12,
            )?;
            out.push(DirEntry {
                name: region[at + ENTRY_HEADER..at + ENTRY_HEADER + name_len].to_vec(),
                inode,
                file_type: if has_type { byte(region, at + 7) } else { 0 },
            });
        }
        at = end;
    }
    Ok(())
}
