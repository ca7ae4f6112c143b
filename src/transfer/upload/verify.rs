//! Whether Glance's record of an uploaded image matches what was sent: its size, its
//! `os_hash_value` (when of an algorithm we know) and its md5 `checksum` (when we have
//! one), and which digests a second local pass must add for an older Glance.
//!
//! Owns the comparison. Must not: do I/O or requests.

use super::TransferError;
use crate::cloud::glance::Image;
use crate::hash::{Algorithm, Digest};
use crate::report::Reporter;

/// Glance's size, checksum and os_hash_value against ours.
pub(super) fn compare(
    image: &Image,
    length: u64,
    digests: &[Digest],
    reporter: &dyn Reporter,
) -> Result<Vec<&'static str>, TransferError> {
    let mismatch = |field, theirs: String, ours: String| TransferError::UploadMismatch {
        image: image.id.clone(),
        field,
        theirs,
        ours,
    };
    let mut verified = Vec::new();
    match image.size {
        Some(size) if size == length => verified.push("size"),
        Some(size) => return Err(mismatch("size", size.to_string(), length.to_string())),
        None => {}
    }
    let ours = |algorithm: Algorithm| {
        digests
            .iter()
            .find(|d| d.algorithm == algorithm)
            .map(Digest::hex)
    };
    if let (Some(theirs), Some(ours)) = (&image.checksum, ours(Algorithm::Md5)) {
        if !theirs.eq_ignore_ascii_case(&ours) {
            return Err(mismatch("checksum", theirs.clone(), ours));
        }
        verified.push("checksum");
    }
    let algorithm = image
        .os_hash_algo
        .as_deref()
        .and_then(|a| a.parse::<Algorithm>().ok());
    if let (Some(theirs), Some(ours)) = (&image.os_hash_value, algorithm.and_then(ours)) {
        if !theirs.eq_ignore_ascii_case(&ours) {
            return Err(mismatch("os_hash_value", theirs.clone(), ours));
        }
        verified.push("os_hash_value");
    }
    if !verified.contains(&"checksum") && !verified.contains(&"os_hash_value") {
        reporter.warn(&format!(
            "image {} records no checksum or os_hash_value we can compare: only its size was checked",
            image.id
        ));
    }
    Ok(verified)
}

/// The digests the record holds that `computed` lacks and that we need for the check:
/// its `os_hash_value` algorithm when not sha512, and md5 when there is no comparable
/// `os_hash_value` but a `checksum`.
pub(super) fn missing_digests(image: &Image, computed: &[Digest]) -> Vec<Algorithm> {
    let has = |algorithm: Algorithm| computed.iter().any(|d| d.algorithm == algorithm);
    let os_hash = image
        .os_hash_value
        .as_ref()
        .and(image.os_hash_algo.as_deref())
        .and_then(|name| name.parse::<Algorithm>().ok());
    match os_hash {
        Some(algorithm) if has(algorithm) => Vec::new(),
        Some(algorithm) => vec![algorithm],
        None if image.checksum.is_some() && !has(Algorithm::Md5) => vec![Algorithm::Md5],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_second_pass_is_asked_only_for_what_the_record_has_and_we_lack() {
        let image = |fields: Value| -> Image {
            let mut record = serde_json::json!({"id": "i", "name": "n", "status": "active"});
            record
                .as_object_mut()
                .unwrap()
                .extend(fields.as_object().unwrap().clone());
            serde_json::from_value(record).unwrap()
        };
        let sha512 = [Digest {
            algorithm: Algorithm::Sha512,
            bytes: vec![0; 64],
        }];
        let modern = image(
            serde_json::json!({"checksum": "c", "os_hash_algo": "sha512", "os_hash_value": "v"}),
        );
        assert_eq!(missing_digests(&modern, &sha512), vec![]);
        let sha256 = image(
            serde_json::json!({"checksum": "c", "os_hash_algo": "sha256", "os_hash_value": "v"}),
        );
        assert_eq!(missing_digests(&sha256, &sha512), vec![Algorithm::Sha256]);
        let old = image(serde_json::json!({"checksum": "c"}));
        assert_eq!(missing_digests(&old, &sha512), vec![Algorithm::Md5]);
        let unknown = image(
            serde_json::json!({"checksum": "c", "os_hash_algo": "whirlpool", "os_hash_value": "v"}),
        );
        assert_eq!(missing_digests(&unknown, &sha512), vec![Algorithm::Md5]);
        let nothing = image(serde_json::json!({}));
        assert_eq!(missing_digests(&nothing, &sha512), vec![]);
    }
}
