//! What an image's record says its data must be: size, the digest to check
//! (`os_hash_value`, or the md5 `checksum` when that is the only hash) and so which
//! digests the download computes.
//!
//! Owns reading those fields (untrusted: malformed values are warned about and ignored)
//! and the final comparison. Must not: do I/O.

use super::TransferError;
use crate::cloud::glance::Image;
use crate::hash::{Algorithm, Digest, HashPlan};
use crate::report::Reporter;

/// What the record says the data must be.
pub(super) struct Expected {
    pub(super) size: Option<u64>,
    md5: Option<Digest>,
    os_hash: Option<Digest>,
    pub(super) plan: HashPlan,
}

impl Expected {
    pub(super) fn from_record(
        image: &Image,
        require_hash: bool,
        reporter: &dyn Reporter,
    ) -> Result<Self, TransferError> {
        let parse = |algorithm: Algorithm, field: &str, text: &Option<String>| {
            let text = text.as_deref().filter(|t| !t.trim().is_empty())?;
            match algorithm.parse_hex(text) {
                Ok(digest) => Some(digest),
                Err(problem) => {
                    reporter.warn(&format!(
                        "image {}: ignoring its {field}, which is not a {algorithm} digest ({problem})",
                        image.id
                    ));
                    None
                }
            }
        };
        let md5 = parse(Algorithm::Md5, "checksum", &image.checksum);
        let os_hash = match image.os_hash_algo.as_deref().filter(|a| !a.is_empty()) {
            None => None,
            Some(name) => match name.parse::<Algorithm>() {
                Ok(algorithm) => parse(algorithm, "os_hash_value", &image.os_hash_value),
                Err(_) => {
                    reporter.warn(&format!(
                        "image {}: os_hash_algo `{name}` is not supported; verifying its checksum only",
                        image.id
                    ));
                    None
                }
            },
        };
        if md5.is_none() && os_hash.is_none() {
            if require_hash {
                return Err(TransferError::Unverifiable {
                    image: image.id.clone(),
                });
            }
            reporter.warn(&format!(
                "image {} records no checksum and no os_hash_value: the download is unverifiable",
                image.id
            ));
        }
        // The record's strongest hash is the check: md5 is computed only when it is the
        // record's only hash (or there is none), sha512 always (provenance needs it).
        let mut whole = Vec::new();
        if os_hash.is_none() {
            whole.push(Algorithm::Md5);
        }
        whole.push(os_hash.as_ref().map_or(Algorithm::Sha512, |d| d.algorithm));
        Ok(Self {
            size: image.size.filter(|&s| s > 0),
            md5,
            os_hash,
            plan: HashPlan {
                whole,
                chunks: None,
            },
        })
    }

    /// The record fields that matched, or the first mismatch.
    pub(super) fn check(
        &self,
        image: &str,
        written: u64,
        computed: &[Digest],
    ) -> Result<Vec<&'static str>, TransferError> {
        if let Some(size) = self.size {
            if size != written {
                return Err(TransferError::SizeMismatch {
                    image: image.to_owned(),
                    expected: size,
                    actual: written,
                });
            }
        }
        // os_hash_value, when the record has one, makes the md5 checksum redundant.
        let (field, expected) = match (&self.os_hash, &self.md5) {
            (Some(os_hash), _) => ("os_hash_value", os_hash),
            (None, Some(md5)) => ("checksum", md5),
            (None, None) => return Ok(Vec::new()),
        };
        let actual = computed
            .iter()
            .find(|d| d.algorithm == expected.algorithm)
            .map(Digest::hex)
            .unwrap_or_default();
        if actual != expected.hex() {
            return Err(TransferError::DigestMismatch {
                image: image.to_owned(),
                algorithm: if field == "checksum" {
                    "md5 (checksum)"
                } else {
                    expected.algorithm.name()
                },
                expected: expected.hex(),
                actual,
            });
        }
        Ok(vec![field])
    }
}
