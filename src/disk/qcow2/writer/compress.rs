//! [`ClusterCompressor`]: compresses one guest cluster the way QEMU stores it.
//!
//! zlib clusters are raw deflate streams (no zlib header) with a 4 KiB window, because
//! QEMU inflates them with window bits -12 and would reject back-references further
//! away; zstd clusters are one zstd frame each. As in QEMU, a cluster is stored
//! compressed only when the result is smaller than a cluster (at most `cluster - 1`
//! bytes); otherwise the caller stores it uncompressed. Owns the codec state only.

use flate2::{Compress, Compression, FlushCompress, Status};

use super::super::CompressionType;
use crate::disk::{DiskError, Result};

/// zlib level QEMU uses (Z_DEFAULT_COMPRESSION).
const ZLIB_LEVEL: u32 = 6;
/// Window bits QEMU's qcow2 deflate/inflate use: 2^12 = 4 KiB.
const ZLIB_WINDOW_BITS: u8 = 12;
/// zstd level QEMU uses (ZSTD_CLEVEL_DEFAULT).
const ZSTD_LEVEL: i32 = 3;

enum Codec {
    Zlib(Compress),
    Zstd(zstd::bulk::Compressor<'static>),
}

/// Reusable per-thread compression state for clusters of one size.
pub struct ClusterCompressor {
    codec: Codec,
    cluster_size: usize,
}

impl ClusterCompressor {
    /// A compressor for clusters of `cluster_size` bytes.
    pub fn new(kind: CompressionType, cluster_size: usize) -> Result<Self> {
        let codec = match kind {
            CompressionType::Zlib => Codec::Zlib(Compress::new_with_window_bits(
                Compression::new(ZLIB_LEVEL),
                false,
                ZLIB_WINDOW_BITS,
            )),
            CompressionType::Zstd => Codec::Zstd(
                zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| codec_error("zstd", e))?,
            ),
        };
        Ok(Self {
            codec,
            cluster_size,
        })
    }

    /// Compresses one whole cluster. Returns `None` when the result would not be smaller
    /// than the cluster, so it must be stored uncompressed.
    pub fn compress(&mut self, cluster: &[u8]) -> Result<Option<Vec<u8>>> {
        let limit = self.cluster_size - 1;
        match &mut self.codec {
            Codec::Zlib(deflate) => {
                deflate.reset();
                let mut out = Vec::with_capacity(limit);
                let status = deflate
                    .compress_vec(cluster, &mut out, FlushCompress::Finish)
                    .map_err(|e| codec_error("zlib", e))?;
                let done =
                    status == Status::StreamEnd && deflate.total_in() == cluster.len() as u64;
                Ok((done && out.len() <= limit).then_some(out))
            }
            Codec::Zstd(compressor) => {
                let out = compressor
                    .compress(cluster)
                    .map_err(|e| codec_error("zstd", e))?;
                Ok((out.len() <= limit).then_some(out))
            }
        }
    }
}

fn codec_error(codec: &str, error: impl std::fmt::Display) -> DiskError {
    DiskError::InvalidRequest(format!("{codec} compression failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::qcow2::decompress::decompress_cluster;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 7 % 251) as u8).collect()
    }

    #[test]
    fn compressed_clusters_inflate_back_with_the_reader() {
        for kind in [CompressionType::Zlib, CompressionType::Zstd] {
            for size in [512usize, 65536] {
                let input = sample(size);
                let mut compressor = ClusterCompressor::new(kind, size).expect("codec");
                let packed = compressor
                    .compress(&input)
                    .expect("compress")
                    .expect("fits");
                assert!(packed.len() < size);
                let mut out = vec![0u8; size];
                decompress_cluster(kind, &packed, &mut out).expect("inflate");
                assert_eq!(out, input, "{kind:?} {size}");
            }
        }
    }

    #[test]
    fn incompressible_cluster_is_stored_plain() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for kind in [CompressionType::Zlib, CompressionType::Zstd] {
            let mut compressor = ClusterCompressor::new(kind, 4096).expect("codec");
            assert_eq!(compressor.compress(&noise).expect("compress"), None);
        }
    }
}
