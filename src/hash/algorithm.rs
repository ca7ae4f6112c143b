//! The digest algorithms imgferry computes, their names, and hex encoding.
//!
//! Two families: [`Algorithm`] for whole-file digests (the ones Glance records: md5
//! `checksum`, and `os_hash_value` under the `hashing_algorithm` Glance is configured
//! with, sha512 by default), and [`ChunkAlgorithm`] for per-chunk manifests. This module
//! owns only the algorithm identities and one-thread hashing state (OpenSSL's through
//! [`super::libcrypto`] when the system has it, else the Rust crates'); it does no I/O
//! and starts no threads.

use std::fmt;
use std::str::FromStr;

use md5::Digest as _;

use super::libcrypto::Evp;

/// A whole-file digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Md5,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    /// Every supported algorithm, in display order.
    pub const ALL: [Algorithm; 4] = [Self::Md5, Self::Sha256, Self::Sha384, Self::Sha512];

    /// The lower-case name, as Glance writes it in `os_hash_algo` (Python hashlib names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Parses a hex digest of this algorithm (case-insensitive, surrounding blanks ignored).
    pub fn parse_hex(self, text: &str) -> Result<Digest, String> {
        let bytes = decode_hex(text.trim())?;
        if bytes.len() != self.output_len() {
            return Err(format!(
                "a {} digest has {} hex digits, got {}",
                self.name(),
                2 * self.output_len(),
                2 * bytes.len()
            ));
        }
        Ok(Digest {
            algorithm: self,
            bytes,
        })
    }

    /// A hashing state: OpenSSL's when the system has it (faster), else the Rust crate's.
    pub(crate) fn hasher(self) -> WholeHasher {
        let openssl_name = match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        };
        if let Some(evp) = Evp::new(openssl_name) {
            return WholeHasher::OpenSsl(self, evp);
        }
        self.rust_hasher()
    }

    /// The pure-Rust hashing state.
    fn rust_hasher(self) -> WholeHasher {
        match self {
            Self::Md5 => WholeHasher::Md5(md5::Md5::new()),
            Self::Sha256 => WholeHasher::Sha256(sha2::Sha256::new()),
            Self::Sha384 => WholeHasher::Sha384(sha2::Sha384::new()),
            Self::Sha512 => WholeHasher::Sha512(sha2::Sha512::new()),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown digest algorithm {name:?} (supported: md5, sha256, sha384, sha512)"
                )
            })
    }
}

/// A computed or expected whole-file digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub algorithm: Algorithm,
    pub bytes: Vec<u8>,
}

impl Digest {
    /// Lower-case hex, like `sha512sum` prints it.
    pub fn hex(&self) -> String {
        encode_hex(&self.bytes)
    }
}

/// The one-thread hashing state of a whole-file algorithm.
pub(crate) enum WholeHasher {
    OpenSsl(Algorithm, Evp),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl WholeHasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Self::OpenSsl(_, h) => h.update(data),
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    pub(crate) fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            Self::OpenSsl(algorithm, h) => (algorithm, h.finish()),
            Self::Md5(h) => (Algorithm::Md5, h.finalize().to_vec()),
            Self::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Self::Sha384(h) => (Algorithm::Sha384, h.finalize().to_vec()),
            Self::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest { algorithm, bytes }
    }
}

/// The digest of one manifest chunk: both chunk algorithms produce 32 bytes.
pub type ChunkDigest = [u8; 32];

/// A per-chunk manifest algorithm. See the `manifest` module doc for why BLAKE3 is the
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkAlgorithm {
    #[default]
    Blake3,
    Sha256,
}

impl ChunkAlgorithm {
    /// The name used in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blake3 => "blake3",
            Self::Sha256 => "sha256",
        }
    }

    pub(crate) fn hasher(self) -> ChunkHasher {
        match self {
            Self::Blake3 => ChunkHasher::Blake3(Box::new(blake3::Hasher::new())),
            Self::Sha256 => ChunkHasher::Sha256(sha2::Sha256::new()),
        }
    }
}

impl fmt::Display for ChunkAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChunkAlgorithm {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "blake3" => Ok(Self::Blake3),
            "sha256" => Ok(Self::Sha256),
            _ => Err(format!(
                "unknown chunk algorithm {name:?} (supported: blake3, sha256)"
            )),
        }
    }
}

/// The one-thread hashing state of a chunk algorithm (restartable per chunk).
pub(crate) enum ChunkHasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

impl ChunkHasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Self::Blake3(h) => {
                h.update(data);
            }
            Self::Sha256(h) => h.update(data),
        }
    }

    /// The digest of everything fed since the last call; the state starts over.
    pub(crate) fn finish_chunk(&mut self) -> ChunkDigest {
        match self {
            Self::Blake3(h) => {
                let digest = *h.finalize().as_bytes();
                h.reset();
                digest
            }
            Self::Sha256(h) => h.finalize_reset().into(),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Decodes hex (either case). The caller bounds the input length.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let raw = text.as_bytes();
    if !raw.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", raw.len()));
    }
    raw.chunks_exact(2)
        .map(|pair| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => Ok(high << 4 | low),
            _ => Err(format!("not a hex digest: {:?}", truncate(text))),
        })
        .collect()
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        assert_eq!(encode_hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode_hex("00ABff"), Ok(vec![0x00, 0xab, 0xff]));
        assert!(decode_hex("abc").is_err());
        assert!(decode_hex("zz").is_err());
    }

    #[test]
    fn parse_hex_checks_length_per_algorithm() {
        let md5_empty = "d41d8cd98f00b204e9800998ecf8427e";
        assert!(Algorithm::Md5.parse_hex(md5_empty).is_ok());
        let err = Algorithm::Sha256.parse_hex(md5_empty).unwrap_err();
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn empty_input_digests_are_the_known_values() {
        let empty = |a: Algorithm| a.hasher().finish().hex();
        assert_eq!(empty(Algorithm::Md5), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            empty(Algorithm::Sha256),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn openssl_and_rust_hashers_agree_and_the_system_has_openssl() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        for algorithm in Algorithm::ALL {
            let mut fast = algorithm.hasher();
            assert!(
                matches!(fast, WholeHasher::OpenSsl(..)),
                "{algorithm}: libcrypto.so.3 not used"
            );
            let mut rust = algorithm.rust_hasher();
            fast.update(&data);
            rust.update(&data);
            assert_eq!(fast.finish(), rust.finish(), "{algorithm}");
        }
    }

    #[test]
    fn chunk_hasher_restarts_after_each_chunk() {
        for algorithm in [ChunkAlgorithm::Blake3, ChunkAlgorithm::Sha256] {
            let mut hasher = algorithm.hasher();
            hasher.update(b"abc");
            let first = hasher.finish_chunk();
            hasher.update(b"abc");
            assert_eq!(hasher.finish_chunk(), first, "{algorithm}");
        }
    }

    #[test]
    fn names_parse_back() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>(), Ok(a));
        }
        assert!("sha1".parse::<Algorithm>().is_err());
        assert_eq!("BLAKE3".parse(), Ok(ChunkAlgorithm::Blake3));
    }
}
