//! Inline data: small files and directories stored in `i_block` (60 bytes) and, beyond
//! that, in the value of the in-inode extended attribute `system.data`.
//!
//! Owns the walk of the in-inode xattr area to find `system.data`. Must not: read
//! xattr blocks (inline data never lives there).

use super::inode::Inode;
use crate::guest::native::bytes::{byte, le16, le32};
use crate::guest::native::error::{NativeError, Result};

const XATTR_MAGIC: u32 = 0xea02_0000;
const ENTRY_HEADER: usize = 16;
/// `e_name_index` of the `system.` namespace.
const SYSTEM_INDEX: u8 = 7;

/// The value of `system.data` in `inode`'s in-inode xattr area, if any.
pub fn system_data(inode: &Inode) -> Result<Option<Vec<u8>>> {
    let area = inode.xattr_area();
    if area.len() < 4 || le32(area, 0) != XATTR_MAGIC {
        return Ok(None);
    }
    let entries = &area[4..];
    let bad = |detail: String| {
        NativeError::malformed(
            "ext4 in-inode xattr",
            0,
            format!("inode {}: {detail}", inode.number),
        )
    };
    let mut at = 0usize;
    while at + 4 <= entries.len() && le32(entries, at) != 0 {
        let name_len = usize::from(byte(entries, at));
        let index = byte(entries, at + 1);
        let value_offset = usize::from(le16(entries, at + 2));
        let value_inode = le32(entries, at + 4);
        let value_size = le32(entries, at + 8) as usize;
        let name_end = at + ENTRY_HEADER + name_len;
        let Some(name) = entries.get(at + ENTRY_HEADER..name_end) else {
            return Err(bad(format!("entry at {at} runs past the inode")));
        };
        if index == SYSTEM_INDEX && name == b"data" {
            if value_inode != 0 {
                return Err(bad("system.data stored in an EA inode".into()));
            }
            let value = value_offset
                .checked_add(value_size)
                .and_then(|end| entries.get(value_offset..end))
                .ok_or_else(|| bad(format!("value of {value_size} bytes at {value_offset}")))?;
            return Ok(Some(value.to_vec()));
        }
        at = name_end.div_ceil(4) * 4;
    }
    Ok(None)
}

/// The whole inline content of `inode`: `i_block` then `system.data`, cut to `i_size`.
pub fn content(inode: &Inode) -> Result<Vec<u8>> {
    let mut data = inode.block.to_vec();
    if let Some(more) = system_data(inode)? {
        data.extend_from_slice(&more);
    }
    if inode.size > data.len() as u64 {
        return Err(NativeError::malformed(
            "ext4 inline data",
            0,
            format!(
                "inode {}: size {} but {} inline bytes",
                inode.number,
                inode.size,
                data.len()
            ),
        ));
    }
    data.truncate(inode.size as usize);
    Ok(data)
}
