//! The manifest file: per-chunk digests of a file, as a small JSON document, read as
//! untrusted input and written atomically.
//!
//! Format (version 1; every field required except `digests`, unknown fields rejected):
//!
//! ```json
//! {
//!   "format": "imgferry-manifest",
//!   "version": 1,
//!   "algorithm": "blake3",
//!   "chunk_size": 67108864,
//!   "file_size": 1073741824,
//!   "chunks": ["<64 hex digits>", "..."],
//!   "digests": {"md5": "<hex>", "sha512": "<hex>"}
//! }
//! ```
//!
//! `chunks[i]` is the digest of bytes `[i * chunk_size, min((i + 1) * chunk_size,
//! file_size))`; there are exactly `ceil(file_size / chunk_size)` of them. `digests`
//! holds whole-file digests when they were computed in the same pass (informational:
//! the chunks already cover every byte).
//!
//! Why BLAKE3 is the default chunk algorithm: measured on this machine class (2 cores,
//! SHA-NI present), one thread hashes about 3.9 GB/s with BLAKE3 and 1.5 GB/s with
//! SHA-256, so a manifest pass over a page-cached image is bound by reading, not hashing,
//! only with BLAKE3 (docs/design/manifest-digest.md has the figures). Both are
//! 256-bit cryptographic digests; SHA-256 stays selectable (`algorithm: "sha256"`) for
//! sites that must stay within FIPS-approved algorithms.
//!
//! This module owns the format, its limits and the file I/O; it computes no digests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::algorithm::{decode_hex, encode_hex, Algorithm, ChunkDigest, Digest};
use super::chunked::{ChunkLayout, MAX_CHUNKS};
use super::error::HashError;

/// The value of the `format` field.
pub const FORMAT: &str = "imgferry-manifest";
/// The only version this build reads and writes.
pub const VERSION: u64 = 1;
/// The largest manifest file read: [`MAX_CHUNKS`] digests at ~70 bytes each, plus room.
pub const MAX_MANIFEST_BYTES: u64 = 80 << 20;
/// The largest file size a manifest may describe (file offsets are signed 64-bit).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Per-chunk digests of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub layout: ChunkLayout,
    pub file_size: u64,
    pub chunks: Vec<ChunkDigest>,
    /// Whole-file digests, one per algorithm, when they were computed.
    pub digests: Vec<Digest>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestJson {
    format: String,
    version: u64,
    algorithm: String,
    chunk_size: u64,
    file_size: u64,
    chunks: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    digests: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn read(path: &Path) -> Result<Self, HashError> {
        let file = std::fs::File::open(path).map_err(|e| HashError::io("open", path, e))?;
        let mut text = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| HashError::io("read", path, e))?;
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(HashError::malformed(
                path,
                format!("larger than {MAX_MANIFEST_BYTES} bytes"),
            ));
        }
        Self::parse(&text).map_err(|detail| HashError::malformed(path, detail))
    }

    /// Parses and validates manifest JSON.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let json: ManifestJson = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if json.format != FORMAT {
            return Err(format!("format is {:?}, expected {FORMAT:?}", json.format));
        }
        if json.version != VERSION {
            return Err(format!(
                "version {} is not supported (this imgferry reads version {VERSION})",
                json.version
            ));
        }
        let layout = ChunkLayout::new(json.algorithm.parse()?, json.chunk_size)?;
        if json.file_size > MAX_FILE_SIZE {
            return Err(format!("file_size {} is out of range", json.file_size));
        }
        let count = layout.chunk_count(json.file_size);
        if count > MAX_CHUNKS {
            return Err(format!(
                "{count} chunks is more than the limit of {MAX_CHUNKS}"
            ));
        }
        if json.chunks.len() as u64 != count {
            return Err(format!(
                "lists {} chunk digests, but a {}-byte file has {count} chunks of {} bytes",
                json.chunks.len(),
                json.file_size,
                layout.chunk_size
            ));
        }
        let chunks = json
            .chunks
            .iter()
            .enumerate()
            .map(|(index, hex)| parse_chunk_digest(hex).map_err(|e| format!("chunk {index}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let digests = json
            .digests
            .iter()
            .map(|(name, hex)| name.parse::<Algorithm>()?.parse_hex(hex))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            layout,
            file_size: json.file_size,
            chunks,
            digests,
        })
    }

    /// The manifest as JSON text (one chunk digest per line).
    pub fn to_json(&self) -> String {
        let json = ManifestJson {
            format: FORMAT.to_owned(),
            version: VERSION,
            algorithm: self.layout.algorithm.name().to_owned(),
            chunk_size: self.layout.chunk_size,
            file_size: self.file_size,
            chunks: self.chunks.iter().map(|c| encode_hex(c)).collect(),
            digests: self
                .digests
                .iter()
                .map(|d| (d.algorithm.name().to_owned(), d.hex()))
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the manifest to `path` atomically: a 0600 temporary file in the same
    /// directory, fsync, rename, fsync of the directory. Never leaves a partial file
    /// under `path`.
    pub fn write(&self, path: &Path) -> Result<(), HashError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| {
            HashError::InvalidRequest(format!("{} is not a file name", path.display()))
        })?;
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| HashError::io("create a temporary file in", dir, e))?;
        temp.write_all(self.to_json().as_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| HashError::io("write", temp.path(), e))?;
        temp.persist(path)
            .map_err(|e| HashError::io("rename the temporary file to", path, e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| HashError::io("sync directory", dir, e))
    }
}

fn parse_chunk_digest(hex: &str) -> Result<ChunkDigest, String> {
    if hex.len() != 64 {
        return Err(format!(
            "a chunk digest has 64 hex digits, got {}",
            hex.len()
        ));
    }
    let bytes = decode_hex(hex)?;
    ChunkDigest::try_from(bytes.as_slice()).map_err(|_| "not 32 bytes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::algorithm::ChunkAlgorithm;

    fn sample() -> Manifest {
        Manifest {
            layout: ChunkLayout::new(ChunkAlgorithm::Blake3, 4096).unwrap(),
            file_size: 5000,
            chunks: vec![[1; 32], [2; 32]],
            digests: vec![Algorithm::Md5.parse_hex(&"ab".repeat(16)).unwrap()],
        }
    }

    #[test]
    fn round_trip() {
        let manifest = sample();
        assert_eq!(Manifest::parse(manifest.to_json().as_bytes()), Ok(manifest));
    }

    fn edited(from: &str, to: &str) -> Result<Manifest, String> {
        let text = sample().to_json();
        assert!(text.contains(from), "{text}");
        Manifest::parse(text.replacen(from, to, 1).as_bytes())
    }

    #[test]
    fn rejects_bad_fields_with_a_reason() {
        let cases = [
            ("\"version\": 1", "\"version\": 2", "version 2"),
            ("imgferry-manifest", "other", "format"),
            ("\"blake3\"", "\"crc32\"", "unknown chunk algorithm"),
            ("\"chunk_size\": 4096", "\"chunk_size\": 100", "chunk size"),
            (
                "\"file_size\": 5000",
                "\"file_size\": 50000",
                "lists 2 chunk digests",
            ),
            (
                "\"file_size\": 5000",
                "\"file_size\": 9223372036854775808",
                "out of range",
            ),
            (
                "\"file_size\": 5000",
                "\"file_size\": 4398046511104",
                "limit",
            ),
            ("0101", "zz01", "not a hex digest"),
            ("\"md5\"", "\"crc\"", "unknown digest algorithm"),
            ("\"version\"", "\"extra\": 0, \"version\"", "unknown field"),
        ];
        for (from, to, reason) in cases {
            let err = edited(from, to).unwrap_err();
            assert!(err.contains(reason), "{from} -> {to}: {err}");
        }
        assert!(Manifest::parse(b"not json").is_err());
    }

    #[test]
    fn write_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        sample().write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), sample());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }
}
