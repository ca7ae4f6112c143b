//! The two checksums of the structures this backend reads: CRC-32 (IEEE, as GPT
//! stores it) and CRC-32C in the raw form ext4 and jbd2 chain (no pre- or
//! post-inversion: `ext4_chksum(seed, data)` in the kernel).
//!
//! Owns only the arithmetic; which bytes are covered is the caller's business.

/// Standard CRC-32 (IEEE 802.3), as GPT headers and entry arrays store it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(data);
    hasher.finalize()
}

/// The kernel's `crc32c_le(seed, data)`: CRC-32C continued from `seed` without the
/// usual inversions, so `raw(raw(s, a), b) == raw(s, a ++ b)`.
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        // Standard CRC-32C check value, expressed through the raw form.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xe306_9283);
        let chained = crc32c_raw(crc32c_raw(!0, b"1234"), b"56789");
        assert_eq!(chained, crc32c_raw(!0, b"123456789"));
    }
}
