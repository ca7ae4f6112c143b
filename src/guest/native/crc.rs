//! The checksums of the structures this backend reads: CRC-32 (IEEE, as GPT stores
//! it), CRC-32C in the raw form ext4 and jbd2 chain (no pre- or post-inversion:
//! `ext4_chksum(seed, data)` in the kernel), and the CRC-16 of ext4's older
//! `uninit_bg` group descriptor checksum, and LVM2's CRC-32 (its label, metadata area
//! header and metadata text).
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

/// LVM2's `calc_crc(seed, data)`: the IEEE polynomial, bit-reflected, continued from
/// `seed` (LVM seeds every structure with [`LVM_INITIAL_CRC`]) with no inversions.
pub fn lvm_crc(seed: u32, data: &[u8]) -> u32 {
    // crc32fast keeps the inverted register: start it at !seed, read it back inverted.
    let mut hasher = crc32fast::Hasher::new_with_initial(!seed);
    hasher.update(data);
    !hasher.finalize()
}

/// The seed of every LVM2 checksum.
pub const LVM_INITIAL_CRC: u32 = 0xf597_a6cf;

/// The kernel's `crc16(seed, data)` (polynomial 0x8005, bit-reflected), which ext4
/// uses for group descriptors when `uninit_bg` is on and metadata_csum is off.
pub fn crc16(seed: u16, data: &[u8]) -> u16 {
    data.iter().fold(seed, |crc, &byte| {
        let mut crc = crc ^ u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xa001
            } else {
                crc >> 1
            };
        }
        crc
    })
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
        // CRC-16/ARC check value (seed 0); ext4 seeds with !0.
        assert_eq!(crc16(0, b"123456789"), 0xbb3d);
        // The raw IEEE register: standard CRC-32 is its inversion from an inverted seed.
        assert_eq!(!lvm_crc(!0, b"123456789"), 0xcbf4_3926);
        let chained = lvm_crc(lvm_crc(LVM_INITIAL_CRC, b"1234"), b"56789");
        assert_eq!(chained, lvm_crc(LVM_INITIAL_CRC, b"123456789"));
    }
}
