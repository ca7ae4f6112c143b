//! The qcow2 header and its extensions: parse, validate, encode.
//!
//! Owns the on-disk layout of the first cluster. Validation here is structural (every
//! field in range, every table inside the file and clear of the header); whether a valid
//! image uses features imgferry can handle is decided by the callers.

use std::path::Path;

use super::limits::*;
use crate::disk::{DiskError, ReadAt, Result};

/// `QFI\xfb`.
pub const MAGIC: u32 = 0x5146_49fb;

/// Incompatible feature bits (spec, "incompatible_features").
pub mod incompatible {
    pub const DIRTY: u64 = 1 << 0;
    pub const CORRUPT: u64 = 1 << 1;
    pub const EXTERNAL_DATA_FILE: u64 = 1 << 2;
    pub const COMPRESSION_TYPE: u64 = 1 << 3;
    pub const EXTENDED_L2: u64 = 1 << 4;
    /// Every bit the spec defines.
    pub const KNOWN: u64 = DIRTY | CORRUPT | EXTERNAL_DATA_FILE | COMPRESSION_TYPE | EXTENDED_L2;
}

/// Compatible feature bits.
pub mod compatible {
    pub const LAZY_REFCOUNTS: u64 = 1 << 0;
}

/// Autoclear feature bits.
pub mod autoclear {
    pub const BITMAPS: u64 = 1 << 0;
    pub const DATA_FILE_RAW: u64 = 1 << 1;
}

/// Header extension type codes (spec).
pub mod extension {
    pub const END: u32 = 0;
    pub const BACKING_FORMAT: u32 = 0xe279_2aca;
    pub const FEATURE_NAME_TABLE: u32 = 0x6803_f857;
    pub const BITMAPS: u32 = 0x2385_2875;
    pub const FULL_DISK_ENCRYPTION: u32 = 0x0537_be77;
    pub const EXTERNAL_DATA_FILE: u32 = 0x4441_5441;
}

/// How compressed clusters are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    Zlib,
    Zstd,
}

impl CompressionType {
    /// The name `qemu-img info` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zlib => "zlib",
            Self::Zstd => "zstd",
        }
    }
}

/// One header extension, kept verbatim so rewriting a header preserves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub kind: u32,
    pub data: Vec<u8>,
}

impl Extension {
    /// A human name for the extension type.
    pub fn name(&self) -> &'static str {
        match self.kind {
            extension::BACKING_FORMAT => "backing-format",
            extension::FEATURE_NAME_TABLE => "feature-name-table",
            extension::BITMAPS => "bitmaps",
            extension::FULL_DISK_ENCRYPTION => "full-disk-encryption",
            extension::EXTERNAL_DATA_FILE => "external-data-file",
            _ => "unknown",
        }
    }
}

/// A parsed, structurally valid qcow2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression_type: CompressionType,
    pub extensions: Vec<Extension>,
    pub backing_file: Option<String>,
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4-byte slice"))
}

fn be64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().expect("8-byte slice"))
}

impl Header {
    /// Reads and validates the header of the qcow2 image in `source`.
    pub fn read(source: &dyn ReadAt, path: &Path) -> Result<Self> {
        let file_size = source.size();
        let io = |e| DiskError::io("read", path, e);
        let bad = |detail: String| DiskError::malformed(path, "qcow2", detail);
        let first = file_size.min(V3_HEADER_WITH_COMPRESSION_LEN as u64) as usize;
        if first < V2_HEADER_LEN as usize {
            return Err(bad(format!(
                "the file is {file_size} bytes, shorter than a qcow2 header ({V2_HEADER_LEN} bytes)"
            )));
        }
        let mut head = vec![0u8; first];
        source.read_exact_at(&mut head, 0).map_err(io)?;
        let cluster_bits = be32(&head, 20);
        if be32(&head, 0) != MAGIC {
            return Err(bad("bad magic (expected QFI\\xfb)".to_owned()));
        }
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(bad(format!(
                "cluster_bits {cluster_bits} out of range {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}"
            )));
        }
        // Everything the header may reference directly lives in the first cluster.
        let cluster_len = (1u64 << cluster_bits).min(file_size) as usize;
        let mut cluster = vec![0u8; cluster_len];
        source.read_exact_at(&mut cluster, 0).map_err(io)?;
        Self::parse(&cluster, 1u64 << cluster_bits, file_size).map_err(bad)
    }

    /// Parses `first_cluster` (the first cluster of the file, or the whole file if it is
    /// shorter). Returns the reason as text when the header is invalid.
    pub fn parse(
        first_cluster: &[u8],
        cluster_size: u64,
        file_size: u64,
    ) -> std::result::Result<Self, String> {
        let buf = first_cluster;
        if buf.len() < V2_HEADER_LEN as usize {
            return Err("truncated header".to_owned());
        }
        if be32(buf, 0) != MAGIC {
            return Err("bad magic (expected QFI\\xfb)".to_owned());
        }
        let version = be32(buf, 4);
        match version {
            2 | 3 => {}
            1 => return Err("version 1 (the original qcow format) is not qcow2".to_owned()),
            v => return Err(format!("unknown version {v} (expected 2 or 3)")),
        }
        let cluster_bits = be32(buf, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits)
            || 1u64 << cluster_bits != cluster_size
        {
            return Err(format!("cluster_bits {cluster_bits} out of range"));
        }
        let mut header = Header {
            version,
            backing_file_offset: be64(buf, 8),
            backing_file_size: be32(buf, 16),
            cluster_bits,
            size: be64(buf, 24),
            crypt_method: be32(buf, 32),
            l1_size: be32(buf, 36),
            l1_table_offset: be64(buf, 40),
            refcount_table_offset: be64(buf, 48),
            refcount_table_clusters: be32(buf, 56),
            nb_snapshots: be32(buf, 60),
            snapshots_offset: be64(buf, 64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN,
            compression_type: CompressionType::Zlib,
            extensions: Vec::new(),
            backing_file: None,
        };
        if version == 3 {
            header.parse_v3_fields(buf, cluster_size)?;
        }
        header.validate(file_size)?;
        header.parse_extensions(buf)?;
        header.parse_backing_file(buf)?;
        Ok(header)
    }

    fn parse_v3_fields(
        &mut self,
        buf: &[u8],
        cluster_size: u64,
    ) -> std::result::Result<(), String> {
        if buf.len() < V3_MIN_HEADER_LEN as usize {
            return Err("truncated version 3 header".to_owned());
        }
        self.incompatible_features = be64(buf, 72);
        self.compatible_features = be64(buf, 80);
        self.autoclear_features = be64(buf, 88);
        self.refcount_order = be32(buf, 96);
        self.header_length = be32(buf, 100);
        if self.header_length < V3_MIN_HEADER_LEN || u64::from(self.header_length) > cluster_size {
            return Err(format!(
                "header_length {} outside {V3_MIN_HEADER_LEN}..={cluster_size}",
                self.header_length
            ));
        }
        if self.header_length as usize > buf.len() {
            return Err(format!(
                "header_length {} runs past the end of the file",
                self.header_length
            ));
        }
        let raw_type = if self.header_length > V3_MIN_HEADER_LEN {
            buf[104]
        } else {
            0
        };
        let flagged = self.incompatible_features & incompatible::COMPRESSION_TYPE != 0;
        self.compression_type = match (raw_type, flagged) {
            (0, _) => CompressionType::Zlib,
            (1, true) => CompressionType::Zstd,
            (1, false) => {
                return Err(
                    "compression type zstd without the compression-type feature bit".to_owned(),
                )
            }
            (other, _) => return Err(format!("unknown compression type {other}")),
        };
        Ok(())
    }

    /// Checks every field against the spec, the file size and [`super::limits`].
    fn validate(&self, file_size: u64) -> std::result::Result<(), String> {
        let cluster = self.cluster_size();
        if self.refcount_order > MAX_REFCOUNT_ORDER
            || (self.version == 2 && self.refcount_order != 4)
        {
            return Err(format!(
                "refcount_order {} out of range",
                self.refcount_order
            ));
        }
        if self.size > MAX_VIRTUAL_SIZE {
            return Err(format!(
                "virtual size {} exceeds the limit of {MAX_VIRTUAL_SIZE} bytes",
                self.size
            ));
        }
        let l1_bytes = u64::from(self.l1_size) * 8;
        if l1_bytes > MAX_L1_BYTES {
            return Err(format!(
                "L1 table of {} entries exceeds the limit of {MAX_L1_BYTES} bytes",
                self.l1_size
            ));
        }
        let needed = self.size.div_ceil(self.bytes_per_l1_entry());
        if u64::from(self.l1_size) < needed {
            return Err(format!(
                "L1 table has {} entries but the virtual size {} needs {needed}",
                self.l1_size, self.size
            ));
        }
        if self.l1_size > 0 {
            check_table(
                "L1 table",
                self.l1_table_offset,
                l1_bytes,
                cluster,
                file_size,
            )?;
        }
        let reftable_bytes = u64::from(self.refcount_table_clusters) * cluster;
        if self.refcount_table_clusters == 0 || reftable_bytes > MAX_REFCOUNT_TABLE_BYTES {
            return Err(format!(
                "refcount table of {} clusters is empty or exceeds {MAX_REFCOUNT_TABLE_BYTES} bytes",
                self.refcount_table_clusters
            ));
        }
        check_table(
            "refcount table",
            self.refcount_table_offset,
            reftable_bytes,
            cluster,
            file_size,
        )?;
        if self.nb_snapshots > MAX_SNAPSHOTS {
            return Err(format!(
                "{} snapshots exceed the limit of {MAX_SNAPSHOTS}",
                self.nb_snapshots
            ));
        }
        if self.nb_snapshots > 0 {
            // Each entry is at least 40 bytes; the exact length is known only when walked.
            let min_bytes = u64::from(self.nb_snapshots) * 40;
            check_table(
                "snapshot table",
                self.snapshots_offset,
                min_bytes,
                cluster,
                file_size,
            )?;
        }
        Ok(())
    }

    fn parse_extensions(&mut self, buf: &[u8]) -> std::result::Result<(), String> {
        // Extensions follow the fixed header and must end inside the first cluster,
        // before the backing file name if there is one.
        let limit = if self.backing_file_offset != 0 && self.backing_file_offset < buf.len() as u64
        {
            self.backing_file_offset as usize
        } else {
            buf.len()
        };
        let mut at = self.header_length as usize;
        loop {
            if at >= limit {
                return Ok(()); // the extensions fill the space exactly, as QEMU allows
            }
            if at + 8 > limit {
                return Err(format!(
                    "header extension at byte {at} runs past the first cluster"
                ));
            }
            let kind = be32(buf, at);
            let len = be32(buf, at + 4) as usize;
            if kind == extension::END {
                return Ok(());
            }
            let data_start = at + 8;
            let Some(data_end) = data_start.checked_add(len).filter(|&end| end <= limit) else {
                return Err(format!(
                    "header extension {kind:#010x} at byte {at} with length {len} runs past the first cluster"
                ));
            };
            self.extensions.push(Extension {
                kind,
                data: buf[data_start..data_end].to_vec(),
            });
            at = data_start + len.next_multiple_of(8);
        }
    }

    fn parse_backing_file(&mut self, buf: &[u8]) -> std::result::Result<(), String> {
        if self.backing_file_offset == 0 {
            return Ok(());
        }
        if self.backing_file_size > MAX_BACKING_FILE_NAME {
            return Err(format!(
                "backing file name of {} bytes exceeds {MAX_BACKING_FILE_NAME}",
                self.backing_file_size
            ));
        }
        let start = self.backing_file_offset;
        // Checked: a hostile offset near u64::MAX must not wrap around.
        let end = start
            .checked_add(u64::from(self.backing_file_size))
            .filter(|&end| end <= self.cluster_size() && end <= buf.len() as u64)
            .ok_or_else(|| {
                format!(
                    "backing file name at byte {start} ({} bytes) lies outside the first cluster",
                    self.backing_file_size
                )
            })?;
        let name = &buf[start as usize..end as usize];
        self.backing_file = Some(String::from_utf8_lossy(name).into_owned());
        Ok(())
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Whether L2 entries are 128-bit extended entries with subclusters.
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & incompatible::EXTENDED_L2 != 0
    }

    /// Entries in one L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / if self.extended_l2() { 16 } else { 8 }
    }

    /// Guest bytes mapped by one L1 entry.
    pub fn bytes_per_l1_entry(&self) -> u64 {
        self.cluster_size() * self.l2_entries()
    }

    /// Width of a refcount in bits.
    pub fn refcount_bits(&self) -> u32 {
        1 << self.refcount_order
    }

    /// The qcow2 compat string `qemu-img` uses: "0.10" for v2, "1.1" for v3.
    pub fn compat(&self) -> &'static str {
        if self.version == 2 {
            "0.10"
        } else {
            "1.1"
        }
    }

    /// Names of the set feature bits, as `qemu-img info` prints them.
    pub fn feature_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        let incompatible = [
            (incompatible::DIRTY, "dirty"),
            (incompatible::CORRUPT, "corrupt"),
            (incompatible::EXTERNAL_DATA_FILE, "external-data-file"),
            (incompatible::COMPRESSION_TYPE, "compression-type"),
            (incompatible::EXTENDED_L2, "extended-l2"),
        ];
        for (bit, name) in incompatible {
            if self.incompatible_features & bit != 0 {
                names.push(name);
            }
        }
        if self.compatible_features & compatible::LAZY_REFCOUNTS != 0 {
            names.push("lazy-refcounts");
        }
        if self.autoclear_features & autoclear::BITMAPS != 0 {
            names.push("bitmaps");
        }
        if self.autoclear_features & autoclear::DATA_FILE_RAW != 0 {
            names.push("data-file-raw");
        }
        names
    }

    /// Encodes the header, its extensions, an end marker and the backing file name into
    /// one cluster. Version 2 headers drop the v3-only fields; the caller decides whether
    /// that is allowed.
    pub fn encode(&self) -> std::result::Result<Vec<u8>, String> {
        let cluster = self.cluster_size() as usize;
        let mut out = vec![0u8; cluster];
        let header_length = if self.version == 2 {
            V2_HEADER_LEN
        } else {
            V3_HEADER_WITH_COMPRESSION_LEN
        } as usize;
        let mut at = header_length;
        for ext in &self.extensions {
            let padded = ext.data.len().next_multiple_of(8);
            if at + 8 + padded + 8 > cluster {
                return Err("header extensions do not fit in the first cluster".to_owned());
            }
            out[at..at + 4].copy_from_slice(&ext.kind.to_be_bytes());
            out[at + 4..at + 8].copy_from_slice(&(ext.data.len() as u32).to_be_bytes());
            out[at + 8..at + 8 + ext.data.len()].copy_from_slice(&ext.data);
            at += 8 + padded;
        }
        at += 8; // end-of-extensions marker: eight zero bytes
        let (backing_offset, backing_size) = match &self.backing_file {
            Some(name) => {
                if at + name.len() > cluster {
                    return Err("backing file name does not fit in the first cluster".to_owned());
                }
                out[at..at + name.len()].copy_from_slice(name.as_bytes());
                (at as u64, name.len() as u32)
            }
            None => (0, 0),
        };
        let fields: [(usize, &[u8]); 13] = [
            (0, &MAGIC.to_be_bytes()),
            (4, &self.version.to_be_bytes()),
            (8, &backing_offset.to_be_bytes()),
            (16, &backing_size.to_be_bytes()),
            (20, &self.cluster_bits.to_be_bytes()),
            (24, &self.size.to_be_bytes()),
            (32, &self.crypt_method.to_be_bytes()),
            (36, &self.l1_size.to_be_bytes()),
            (40, &self.l1_table_offset.to_be_bytes()),
            (48, &self.refcount_table_offset.to_be_bytes()),
            (56, &self.refcount_table_clusters.to_be_bytes()),
            (60, &self.nb_snapshots.to_be_bytes()),
            (64, &self.snapshots_offset.to_be_bytes()),
        ];
        for (offset, bytes) in fields {
            out[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        if self.version == 3 {
            out[72..80].copy_from_slice(&self.incompatible_features.to_be_bytes());
            out[80..88].copy_from_slice(&self.compatible_features.to_be_bytes());
            out[88..96].copy_from_slice(&self.autoclear_features.to_be_bytes());
            out[96..100].copy_from_slice(&self.refcount_order.to_be_bytes());
            out[100..104].copy_from_slice(&(header_length as u32).to_be_bytes());
            out[104] = match self.compression_type {
                CompressionType::Zlib => 0,
                CompressionType::Zstd => 1,
            };
        }
        Ok(out)
    }
}

/// Checks that a metadata table is cluster-aligned, inside the file and clear of the
/// header cluster.
fn check_table(
    what: &str,
    offset: u64,
    len: u64,
    cluster: u64,
    file_size: u64,
) -> std::result::Result<(), String> {
    if !offset.is_multiple_of(cluster) {
        return Err(format!("{what} offset {offset:#x} is not cluster-aligned"));
    }
    if offset == 0 {
        return Err(format!("{what} overlaps the header"));
    }
    match offset.checked_add(len) {
        Some(end) if end <= file_size => Ok(()),
        _ => Err(format!(
            "{what} at {offset:#x} ({len} bytes) lies beyond the end of the file ({file_size} bytes)"
        )),
    }
}
