//! Persistent dirty bitmaps: the bitmaps header extension, the bitmap directory, and the
//! host clusters bitmap tables point at.
//!
//! Owns parsing and bounding these structures (QEMU's limits on count, names, granularity
//! and table sizes) and listing every host range they occupy, so `check` can count them
//! and `amend --drop-bitmaps` can free them. It never reads or interprets bitmap bits
//! and never writes.

use std::path::Path;

use super::header::extension;
use super::limits::{
    HOST_OFFSET_MASK, MAX_BITMAPS, MAX_BITMAP_DIRECTORY_BYTES, MAX_BITMAP_GRANULARITY_BITS,
    MAX_BITMAP_NAME, MAX_BITMAP_TABLE_ENTRIES, MIN_BITMAP_GRANULARITY_BITS,
};
use super::Header;
use crate::disk::{DiskError, ReadAt, Result};

/// Length of the bitmaps extension's data.
const EXTENSION_LEN: usize = 24;
/// Fixed part of a bitmap directory entry.
const ENTRY_FIXED_LEN: usize = 24;
/// Bitmap directory entry flags defined by the spec (in_use, auto, extra_data_compatible).
const KNOWN_FLAGS: u32 = 0b111;
/// The only bitmap type: dirty tracking.
const DIRTY_TRACKING: u8 = 1;
/// Reserved bits of a bitmap table entry (1-8 and 56-63).
const TABLE_ENTRY_RESERVED: u64 = 0xff00_0000_0000_01fe;

/// The bitmaps header extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitmapsExtension {
    pub nb_bitmaps: u32,
    pub directory_size: u64,
    pub directory_offset: u64,
}

impl BitmapsExtension {
    /// The bitmaps extension of `header`, if it has one, parsed.
    pub fn of(header: &Header) -> Option<std::result::Result<Self, String>> {
        let ext = header
            .extensions
            .iter()
            .find(|ext| ext.kind == extension::BITMAPS)?;
        Some(Self::parse(&ext.data))
    }

    fn parse(data: &[u8]) -> std::result::Result<Self, String> {
        if data.len() != EXTENSION_LEN {
            return Err(format!(
                "bitmaps extension of {} bytes (expected {EXTENSION_LEN})",
                data.len()
            ));
        }
        Ok(Self {
            nb_bitmaps: be32(data, 0),
            directory_size: be64(data, 8),
            directory_offset: be64(data, 16),
        })
    }
}

/// One bitmap of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    pub name: String,
    pub table_offset: u64,
    pub table_size: u32,
    pub flags: u32,
    pub granularity_bits: u8,
}

/// A host range used by bitmaps, as [`visit_bitmap_clusters`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BitmapRange {
    /// The bitmap directory itself.
    Directory { offset: u64, len: u64 },
    /// A bitmap's table.
    Table { offset: u64, len: u64 },
    /// One cluster of bitmap data.
    Data { offset: u64 },
    /// A bitmap table entry that is invalid (reserved bits, unaligned offset); its
    /// cluster is not reported.
    BadEntry { detail: String },
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn be64(buf: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(word)
}

/// Reads the bitmap directory `ext` describes. Structural problems are
/// [`DiskError::Malformed`].
pub fn read_directory(
    source: &dyn ReadAt,
    path: &Path,
    header: &Header,
    ext: &BitmapsExtension,
) -> Result<Vec<Bitmap>> {
    let bad = |detail: String| DiskError::malformed(path, "qcow2", detail);
    let cluster = header.cluster_size();
    if ext.nb_bitmaps == 0 || ext.nb_bitmaps > MAX_BITMAPS {
        return Err(bad(format!(
            "bitmaps extension lists {} bitmaps (allowed 1..={MAX_BITMAPS})",
            ext.nb_bitmaps
        )));
    }
    let (offset, size) = (ext.directory_offset, ext.directory_size);
    if size > MAX_BITMAP_DIRECTORY_BYTES || !offset.is_multiple_of(cluster) || offset == 0 {
        return Err(bad(format!(
            "bitmap directory at {offset:#x} ({size} bytes) is unaligned or larger than \
             {MAX_BITMAP_DIRECTORY_BYTES} bytes"
        )));
    }
    if offset
        .checked_add(size)
        .is_none_or(|end| end > source.size())
    {
        return Err(bad(format!(
            "bitmap directory at {offset:#x} ({size} bytes) lies beyond the end of the file"
        )));
    }
    let mut dir = vec![0u8; size as usize];
    source
        .read_exact_at(&mut dir, offset)
        .map_err(|e| DiskError::io("read the bitmap directory of", path, e))?;
    let mut bitmaps = Vec::new();
    let mut at = 0usize;
    for number in 0..ext.nb_bitmaps {
        let entry = parse_entry(&dir, at, header)
            .map_err(|detail| bad(format!("bitmap directory entry {number}: {detail}")))?;
        at = entry.1;
        bitmaps.push(entry.0);
    }
    if at != dir.len() {
        return Err(bad(format!(
            "bitmap directory is {} bytes but its {} entries use {at}",
            dir.len(),
            ext.nb_bitmaps
        )));
    }
    Ok(bitmaps)
}

/// Parses the directory entry at byte `at`; returns it and where the next one starts.
fn parse_entry(
    dir: &[u8],
    at: usize,
    header: &Header,
) -> std::result::Result<(Bitmap, usize), String> {
    let fixed_end = at + ENTRY_FIXED_LEN;
    if fixed_end > dir.len() {
        return Err("runs past the end of the directory".to_owned());
    }
    let name_len = usize::from(u16::from_be_bytes([dir[at + 18], dir[at + 19]]));
    let extra_len = be32(dir, at + 20) as usize; // u32 fits usize on supported targets
    let end = fixed_end
        .checked_add(extra_len)
        .and_then(|end| end.checked_add(name_len))
        .filter(|&end| end <= dir.len())
        .ok_or("name or extra data runs past the end of the directory")?;
    if name_len == 0 || name_len > usize::from(MAX_BITMAP_NAME) {
        return Err(format!("name of {name_len} bytes"));
    }
    let bitmap = Bitmap {
        table_offset: be64(dir, at),
        table_size: be32(dir, at + 8),
        flags: be32(dir, at + 12),
        granularity_bits: dir[at + 17],
        name: String::from_utf8_lossy(&dir[end - name_len..end]).into_owned(),
    };
    if dir[at + 16] != DIRTY_TRACKING {
        return Err(format!("unknown bitmap type {}", dir[at + 16]));
    }
    if bitmap.flags & !KNOWN_FLAGS != 0 {
        return Err(format!("reserved flags set ({:#x})", bitmap.flags));
    }
    if !(MIN_BITMAP_GRANULARITY_BITS..=MAX_BITMAP_GRANULARITY_BITS)
        .contains(&bitmap.granularity_bits)
    {
        return Err(format!("granularity bits {}", bitmap.granularity_bits));
    }
    let cluster = header.cluster_size();
    let bits = header.size.div_ceil(1u64 << bitmap.granularity_bits);
    let expected = bits.div_ceil(8).div_ceil(cluster);
    if u64::from(bitmap.table_size) != expected || bitmap.table_size > MAX_BITMAP_TABLE_ENTRIES {
        return Err(format!(
            "bitmap {:?} has a table of {} entries, but its granularity and the disk size \
             need {expected}",
            bitmap.name, bitmap.table_size
        ));
    }
    if !bitmap.table_offset.is_multiple_of(cluster) || bitmap.table_offset == 0 {
        return Err(format!(
            "bitmap {:?} has an unaligned table offset {:#x}",
            bitmap.name, bitmap.table_offset
        ));
    }
    Ok((bitmap, end.next_multiple_of(8)))
}

/// Reports every host range the bitmaps of `header` use: the directory, each table and
/// each allocated data cluster. Tables are read one cluster at a time, so memory stays
/// bounded whatever their size. Does nothing for an image without the extension.
pub fn visit_bitmap_clusters(
    source: &dyn ReadAt,
    path: &Path,
    header: &Header,
    visit: &mut dyn FnMut(BitmapRange),
) -> Result<()> {
    let Some(ext) = BitmapsExtension::of(header) else {
        return Ok(());
    };
    let ext = ext.map_err(|detail| DiskError::malformed(path, "qcow2", detail))?;
    let bitmaps = read_directory(source, path, header, &ext)?;
    visit(BitmapRange::Directory {
        offset: ext.directory_offset,
        len: ext.directory_size,
    });
    let cluster = header.cluster_size();
    for bitmap in &bitmaps {
        let len = u64::from(bitmap.table_size) * 8;
        visit(BitmapRange::Table {
            offset: bitmap.table_offset,
            len,
        });
        if bitmap
            .table_offset
            .checked_add(len)
            .is_none_or(|end| end > source.size())
        {
            continue; // the table's range is reported; the caller flags it as outside
        }
        let mut chunk = vec![0u8; cluster.min(len) as usize];
        let mut done = 0u64;
        while done < len {
            let take = (len - done).min(cluster) as usize;
            let buf = &mut chunk[..take];
            source
                .read_exact_at(buf, bitmap.table_offset + done)
                .map_err(|e| DiskError::io("read a bitmap table of", path, e))?;
            for (i, word) in buf.chunks_exact(8).enumerate() {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(word);
                let raw = u64::from_be_bytes(raw);
                let index = done / 8 + i as u64;
                if let Some(range) = classify_table_entry(raw, cluster, &bitmap.name, index) {
                    visit(range);
                }
            }
            done += take as u64;
        }
    }
    Ok(())
}

/// What one bitmap table entry uses: `None` for an unallocated entry (bit 0 says all
/// zeros or all ones; nothing is stored).
fn classify_table_entry(raw: u64, cluster: u64, name: &str, index: u64) -> Option<BitmapRange> {
    let offset = raw & HOST_OFFSET_MASK;
    if raw & TABLE_ENTRY_RESERVED != 0 || (offset != 0 && raw & 1 != 0) {
        return Some(BitmapRange::BadEntry {
            detail: format!("bitmap {name:?} table entry {index} has reserved bits set ({raw:#x})"),
        });
    }
    if !offset.is_multiple_of(cluster) {
        return Some(BitmapRange::BadEntry {
            detail: format!(
                "bitmap {name:?} table entry {index} points at unaligned offset {offset:#x}"
            ),
        });
    }
    (offset != 0).then_some(BitmapRange::Data { offset })
}
