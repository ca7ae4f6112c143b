//! Format detection from content, never from the file name.
//!
//! Owns the table of magic numbers. Formats imgferry cannot handle yet are recognised
//! so the user is told what the file is instead of having it treated as raw bytes.

use std::io;

use super::ReadAt;

/// What a file holds, judged by its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No known signature: a raw disk image.
    Raw,
    /// QEMU copy-on-write v2/v3 (`QFI\xfb`).
    Qcow2,
    /// A recognised format that imgferry does not support yet.
    Unsupported(UnsupportedFormat),
}

/// Formats recognised only to be refused with a clear message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedFormat {
    Vmdk,
    Vhd,
    Vhdx,
    Vdi,
    Iso,
    Luks,
    Qed,
    Parallels,
}

impl Format {
    /// The name used in messages, JSON output and Glance's `disk_format`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
            Self::Unsupported(other) => other.name(),
        }
    }
}

impl UnsupportedFormat {
    /// The conventional short name (as `qemu-img` and Glance spell it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Vmdk => "vmdk",
            Self::Vhd => "vhd",
            Self::Vhdx => "vhdx",
            Self::Vdi => "vdi",
            Self::Iso => "iso",
            Self::Luks => "luks",
            Self::Qed => "qed",
            Self::Parallels => "parallels",
        }
    }
}

/// Signatures at fixed offsets, checked in order.
const SIGNATURES: &[(u64, &[u8], Format)] = &[
    (0, b"QFI\xfb", Format::Qcow2),
    (0, b"KDMV", Format::Unsupported(UnsupportedFormat::Vmdk)),
    (
        0,
        b"# Disk DescriptorFile",
        Format::Unsupported(UnsupportedFormat::Vmdk),
    ),
    (0, b"vhdxfile", Format::Unsupported(UnsupportedFormat::Vhdx)),
    (0, b"conectix", Format::Unsupported(UnsupportedFormat::Vhd)),
    (
        0,
        b"LUKS\xba\xbe",
        Format::Unsupported(UnsupportedFormat::Luks),
    ),
    (0, b"QED\0", Format::Unsupported(UnsupportedFormat::Qed)),
    (
        0,
        b"WithoutFreeSpace",
        Format::Unsupported(UnsupportedFormat::Parallels),
    ),
    (
        0,
        b"WithouFreSpacExt",
        Format::Unsupported(UnsupportedFormat::Parallels),
    ),
    // VDI: little-endian 0xbeda107f after the 64-byte text banner.
    (
        0x40,
        b"\x7f\x10\xda\xbe",
        Format::Unsupported(UnsupportedFormat::Vdi),
    ),
    // ISO 9660: the primary volume descriptor's identifier in sector 16.
    (
        0x8001,
        b"CD001",
        Format::Unsupported(UnsupportedFormat::Iso),
    ),
];

/// A fixed VHD has its only signature in a 512-byte footer at the very end.
const VHD_FOOTER_LEN: u64 = 512;

/// Detects the format of `source` from its content.
pub fn detect(source: &dyn ReadAt) -> io::Result<Format> {
    let size = source.size();
    for &(offset, magic, format) in SIGNATURES {
        if matches_at(source, size, offset, magic)? {
            return Ok(format);
        }
    }
    if size >= VHD_FOOTER_LEN && matches_at(source, size, size - VHD_FOOTER_LEN, b"conectix")? {
        return Ok(Format::Unsupported(UnsupportedFormat::Vhd));
    }
    Ok(Format::Raw)
}

fn matches_at(source: &dyn ReadAt, size: u64, offset: u64, magic: &[u8]) -> io::Result<bool> {
    let Some(end) = offset.checked_add(magic.len() as u64) else {
        return Ok(false);
    };
    if end > size {
        return Ok(false);
    }
    let mut buf = vec![0u8; magic.len()];
    source.read_exact_at(&mut buf, offset)?;
    Ok(buf == magic)
}
