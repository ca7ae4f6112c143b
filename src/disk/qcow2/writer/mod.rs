//! Writing new qcow2 images (version 2 or 3, 16-bit refcounts, no backing file).
//!
//! Two writers, for the two ways data can arrive:
//!
//! - [`StreamingWriter`] (uncompressed output): the allocation map is known before any
//!   data is written, so [`Layout::plan`] computes the whole image up front; the writer
//!   emits every metadata cluster first and then the data clusters in guest order. It
//!   only ever appends, so the sink can be any sequential [`std::io::Write`] (a file
//!   today, an upload stream for one-pass transfers later).
//! - [`AppendWriter`] (compressed output): compressed sizes are unknown until each
//!   cluster is compressed, so data is appended as it comes, each L2 table and refcount
//!   block is appended as soon as the range it covers is complete, and the L1 table, the
//!   last refcount blocks, the refcount table and finally the header are written at the
//!   end. It needs a seekable sink (the header is rewritten last).
//!
//! Both produce images `qemu-img check` finds clean: exact refcounts, COPIED set on
//! every L1 and standard L2 entry (all refcounts are 1) and never on compressed ones.
//! This module owns the on-disk image a writer produces; it never reads a source disk
//! and never decides which clusters are zero (the convert engine does).

mod append;
mod compress;
mod plan;
mod streaming;

pub use append::{AppendWriter, ClusterPayload};
pub use compress::ClusterCompressor;
pub use plan::{AllocationMap, Layout};
pub use streaming::StreamingWriter;

use super::header::{incompatible, Header};
use super::limits::{MAX_CLUSTER_BITS, MAX_VIRTUAL_SIZE, MIN_CLUSTER_BITS};
use super::CompressionType;
use crate::disk::{DiskError, Result};

/// The qcow2 compat level: `0.10` is version 2, `1.1` is version 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    V2,
    V3,
}

impl Compat {
    /// Parses the names `qemu-img` uses ("0.10", "1.1"; "v2"/"v3" are accepted too).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "0.10" | "v2" | "2" => Some(Self::V2),
            "1.1" | "v3" | "3" => Some(Self::V3),
            _ => None,
        }
    }

    /// The compat string `qemu-img info` shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::V2 => "0.10",
            Self::V3 => "1.1",
        }
    }

    /// The header version number.
    pub fn version(self) -> u32 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }
}

/// What kind of qcow2 image to write: compat level, cluster size, compression type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Format {
    compat: Compat,
    cluster_bits: u32,
    compression_type: CompressionType,
}

/// QEMU sees qcow2 images in 512-byte sectors and ignores a partial last sector, so
/// virtual sizes must be multiples of it (`qemu-img convert` rounds up to it).
pub const QCOW2_SIZE_ALIGN: u64 = 512;

/// The cluster size qemu-img uses by default.
pub const DEFAULT_CLUSTER_SIZE: u64 = 64 << 10;

impl Qcow2Format {
    /// Validates the combination: a power-of-two cluster size from 512 B to 2 MiB, and
    /// zstd only with compat 1.1 (version 2 headers cannot name a compression type).
    pub fn new(
        compat: Compat,
        cluster_size: u64,
        compression_type: CompressionType,
    ) -> Result<Self> {
        let bits = cluster_size.trailing_zeros();
        if !cluster_size.is_power_of_two() || !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&bits)
        {
            return Err(DiskError::InvalidRequest(format!(
                "cluster size {cluster_size} is not a power of two between {} and {} bytes",
                1u64 << MIN_CLUSTER_BITS,
                1u64 << MAX_CLUSTER_BITS
            )));
        }
        if compat == Compat::V2 && compression_type == CompressionType::Zstd {
            return Err(DiskError::InvalidRequest(
                "compression type zstd needs compat 1.1: a version 2 (compat 0.10) header \
                 cannot record it"
                    .to_owned(),
            ));
        }
        Ok(Self {
            compat,
            cluster_bits: bits,
            compression_type,
        })
    }

    /// The compat level.
    pub fn compat(&self) -> Compat {
        self.compat
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// log2 of the cluster size.
    pub fn cluster_bits(&self) -> u32 {
        self.cluster_bits
    }

    /// The compression type recorded in the header.
    pub fn compression_type(&self) -> CompressionType {
        self.compression_type
    }

    /// Entries in one (standard, 64-bit entry) L2 table.
    pub(crate) fn entries_per_l2(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// 16-bit refcounts in one refcount block.
    pub(crate) fn refcounts_per_block(&self) -> u64 {
        self.cluster_size() / 2
    }

    /// L1 entries needed for `virtual_size`, which must be a multiple of
    /// [`QCOW2_SIZE_ALIGN`] and not exceed the named limit.
    pub(crate) fn l1_entries(&self, virtual_size: u64) -> Result<u64> {
        if !virtual_size.is_multiple_of(QCOW2_SIZE_ALIGN) {
            return Err(DiskError::InvalidRequest(format!(
                "qcow2 virtual size {virtual_size} is not a multiple of {QCOW2_SIZE_ALIGN}"
            )));
        }
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(DiskError::InvalidRequest(format!(
                "virtual size {virtual_size} exceeds the qcow2 limit of {MAX_VIRTUAL_SIZE} bytes"
            )));
        }
        Ok(virtual_size.div_ceil(self.cluster_size() * self.entries_per_l2()))
    }

    /// Encodes the header cluster of an image with these tables.
    pub(crate) fn header_cluster(
        &self,
        virtual_size: u64,
        l1_entries: u64,
        l1_offset: u64,
        reftable_offset: u64,
        reftable_clusters: u64,
    ) -> Result<Vec<u8>> {
        let too_big = |what: &str| DiskError::InvalidRequest(format!("{what} too large"));
        let incompatible_features = match self.compression_type {
            CompressionType::Zstd => incompatible::COMPRESSION_TYPE,
            CompressionType::Zlib => 0,
        };
        let header = Header {
            version: self.compat.version(),
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: self.cluster_bits,
            size: virtual_size,
            crypt_method: 0,
            l1_size: u32::try_from(l1_entries).map_err(|_| too_big("L1 table"))?,
            l1_table_offset: l1_offset,
            refcount_table_offset: reftable_offset,
            refcount_table_clusters: u32::try_from(reftable_clusters)
                .map_err(|_| too_big("refcount table"))?,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: 0, // chosen by `encode` from the version
            compression_type: self.compression_type,
            extensions: Vec::new(),
            backing_file: None,
        };
        header.encode().map_err(DiskError::InvalidRequest)
    }
}

/// Clusters taken by a table of `entries` 8-byte entries, refusing tables larger than
/// `limit` bytes (QEMU would not open the image).
pub(crate) fn checked_table_clusters(
    entries: u64,
    cluster: u64,
    limit: u64,
    what: &str,
) -> Result<u64> {
    let bytes = entries.saturating_mul(8);
    if bytes > limit {
        return Err(DiskError::InvalidRequest(format!(
            "the {what} table would need {bytes} bytes, over QEMU's limit of {limit}; \
             choose a larger cluster size"
        )));
    }
    Ok(bytes.div_ceil(cluster))
}
