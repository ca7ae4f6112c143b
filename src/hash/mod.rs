//! Digests: whole-file multi-digest hashing from one read, and per-chunk manifests
//! written and verified in parallel.
//!
//! - [`algorithm`]: which digests exist (md5/sha256/sha384/sha512 whole-file, as Glance
//!   records them; blake3/sha256 per chunk) and hex encoding;
//! - [`multi`]: [`MultiHasher`], one thread per digest fed from one pass over the bytes,
//!   for a file or a network stream;
//! - [`chunked`]: chunk geometry, parallel chunk hashing with rayon, comparison;
//! - [`manifest`]: the manifest file format (untrusted on read, atomic on write);
//! - [`file`] and [`verify`]: the operations the CLI and the transfer layer call.
//!
//! A single SHA-512 (or MD5) is sequential and cannot be split across cores: different
//! digests run in parallel, and the per-chunk manifest is what spreads one file over all
//! cores. This layer knows nothing about clouds, never prints, and reads only the files
//! it is given.

pub mod algorithm;
pub mod chunked;
mod error;
pub mod file;
mod libcrypto;
pub mod manifest;
pub mod multi;
pub mod verify;

pub use algorithm::{Algorithm, ChunkAlgorithm, ChunkDigest, Digest};
pub use chunked::{ChunkCheck, ChunkFault, ChunkLayout, ChunkRun, DEFAULT_CHUNK_SIZE};
pub use error::HashError;
pub use file::{build_manifest, hash_file};
pub use manifest::Manifest;
pub use multi::{HashPlan, MultiHasher, StreamDigests};
pub use verify::{verify_file, DigestCheck, VerifyReport, VerifyRequest};
