//! Fixed-width field access on byte slices read from the disk: little-endian (ext4,
//! GPT, LVM) and big-endian (the jbd2 journal).
//!
//! Owns only the decoding of fixed-width integers. Callers read whole on-disk
//! structures into buffers of the structure's size first, so every field offset they
//! pass is inside the buffer; should one not be, the field reads as zero instead of
//! panicking (an out-of-range field is a bug here, never a crash on a hostile image).

/// The `N` bytes at `at`, or zeros when they are not all inside `bytes`.
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    at.checked_add(N)
        .and_then(|end| bytes.get(at..end))
        .and_then(|field| field.try_into().ok())
        .unwrap_or([0; N])
}

/// The little-endian `u16` at `at`.
pub fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array(bytes, at))
}

/// The little-endian `u32` at `at`.
pub fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(bytes, at))
}

/// The little-endian `u64` at `at`.
pub fn le64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(bytes, at))
}

/// The big-endian `u16` at `at`.
pub fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(bytes, at))
}

/// The big-endian `u32` at `at`.
pub fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(bytes, at))
}

/// The big-endian `u64` at `at`.
pub fn be64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array(bytes, at))
}

/// The byte at `at`.
pub fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

/// The 16 bytes at `at` (a UUID or GUID as stored).
pub fn bytes16(bytes: &[u8], at: usize) -> [u8; 16] {
    array(bytes, at)
}

/// Writes `value` little-endian at `at`; does nothing when the field is not inside
/// `bytes` (see the module comment).
pub fn put_le32(bytes: &mut [u8], at: usize, value: u32) {
    if let Some(field) = at.checked_add(4).and_then(|end| bytes.get_mut(at..end)) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes `value` little-endian at `at` (see [`put_le32`]).
pub fn put_le64(bytes: &mut [u8], at: usize, value: u64) {
    if let Some(field) = at.checked_add(8).and_then(|end| bytes.get_mut(at..end)) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes `value` little-endian at `at` (see [`put_le32`]).
pub fn put_le16(bytes: &mut [u8], at: usize, value: u16) {
    if let Some(field) = at.checked_add(2).and_then(|end| bytes.get_mut(at..end)) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes `value` big-endian at `at` (see [`put_le32`]).
pub fn put_be32(bytes: &mut [u8], at: usize, value: u32) {
    if let Some(field) = at.checked_add(4).and_then(|end| bytes.get_mut(at..end)) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

/// Writes `value` at `at` (see [`put_le32`]).
pub fn put_byte(bytes: &mut [u8], at: usize, value: u8) {
    if let Some(field) = bytes.get_mut(at) {
        *field = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_little_endian_and_out_of_range_reads_zero() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le16(&bytes, 0), 0x0201);
        assert_eq!(le32(&bytes, 4), 0x0807_0605);
        assert_eq!(le64(&bytes, 0), 0x0807_0605_0403_0201);
        assert_eq!(le32(&bytes, 6), 0);
        assert_eq!(be16(&bytes, 0), 0x0102);
        assert_eq!(be32(&bytes, 4), 0x0506_0708);
        assert_eq!(be64(&bytes, 0), 0x0102_0304_0506_0708);
        assert_eq!(be32(&bytes, 6), 0);
        let mut out = [0u8; 4];
        put_be32(&mut out, 0, 0xc03b_3998);
        assert_eq!(out, [0xc0, 0x3b, 0x39, 0x98]);
        assert_eq!(le32(&bytes, usize::MAX), 0);
        assert_eq!(byte(&bytes, 8), 0);
    }
}
