//! The new header `amend` writes, and the single write that installs it.
//!
//! Owns what changes between a v2 and a v3 header (version, v3-only fields, which
//! extensions survive) and how much of the first cluster the final write covers. The
//! header is the switch: until this write the image is still the old version.

use std::path::Path;

use super::writes::ImageWriter;
use crate::disk::qcow2::header::extension;
use crate::disk::qcow2::limits::{V2_HEADER_LEN, V3_HEADER_WITH_COMPRESSION_LEN};
use crate::disk::qcow2::{CompressionType, Header};
use crate::disk::{DiskError, Result};

/// The v2 header for `header`: feature bits, refcount order and compression type go
/// (v2 has none of them), and so do the feature-name table (it names v3 feature bits)
/// and the bitmaps extension (v2 cannot keep bitmaps consistent). Other extensions, the
/// backing file name and every table position stay.
pub fn downgraded(header: &Header) -> Header {
    let mut new = reset_v3_fields(header);
    new.version = 2;
    new.header_length = V2_HEADER_LEN;
    new.extensions
        .retain(|ext| ext.kind != extension::FEATURE_NAME_TABLE && ext.kind != extension::BITMAPS);
    place_backing_name(new)
}

/// The v3 header for a v2 `header`: 112-byte header, 16-bit refcounts, no feature bits,
/// zlib compression; extensions and the backing file name stay.
pub fn upgraded(header: &Header) -> Header {
    let mut new = reset_v3_fields(header);
    new.version = 3;
    new.header_length = V3_HEADER_WITH_COMPRESSION_LEN;
    place_backing_name(new)
}

/// Moves the backing file name's offset to where [`Header::encode`] puts it: right
/// after the extensions' end marker.
fn place_backing_name(mut header: Header) -> Header {
    if header.backing_file.is_some() {
        header.backing_file_offset = extensions_end(&header);
    }
    header
}

fn reset_v3_fields(header: &Header) -> Header {
    let mut new = header.clone();
    new.incompatible_features = 0;
    new.compatible_features = 0;
    new.autoclear_features = 0;
    new.refcount_order = 4;
    new.compression_type = CompressionType::Zlib;
    new
}

/// Bytes of the first cluster a header uses: fixed part, extensions, end marker and the
/// backing file name wherever it sits.
fn used_len(header: &Header) -> u64 {
    let backing_end = match &header.backing_file {
        Some(name) => header.backing_file_offset + name.len() as u64,
        None => 0,
    };
    extensions_end(header).max(backing_end)
}

/// One past the end-of-extensions marker.
fn extensions_end(header: &Header) -> u64 {
    let extensions: u64 = header
        .extensions
        .iter()
        .map(|ext| 8 + (ext.data.len() as u64).next_multiple_of(8))
        .sum();
    u64::from(header.header_length) + extensions + 8
}

/// Replaces `old` by `new` with one write at offset 0 covering both headers' used bytes,
/// rounded up to 512-byte sectors (a few hundred bytes for QEMU's headers), then syncs.
/// A write of one or a few sectors at the start of a file is all-or-nothing on the
/// storage and file systems QEMU images live on; QEMU relies on the same when it
/// rewrites a header.
pub fn write_header(
    writer: &mut ImageWriter<'_>,
    path: &Path,
    old: &Header,
    new: &Header,
) -> Result<()> {
    let bytes = new.encode().map_err(|detail| {
        DiskError::unsupported(path, format!("cannot write the new header: {detail}"))
    })?;
    let len = used_len(old)
        .max(used_len(new))
        .next_multiple_of(512)
        .min(bytes.len() as u64) as usize;
    writer.sync()?;
    writer.write_at(&bytes[..len], 0, "header")?;
    writer.sync()
}
