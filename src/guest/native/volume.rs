//! [`Volume`]: a byte range of a virtual disk (a partition, or the whole disk) that a
//! filesystem is read from.
//!
//! Owns the translation from volume offsets to disk offsets and the check that every
//! read stays inside the range. Must not: cache or interpret content.

use std::sync::Arc;

use super::error::{NativeError, Result};
use crate::disk::VirtualDisk;

/// A contiguous range `[start, start + len)` of a virtual disk.
#[derive(Clone)]
pub struct Volume {
    disk: Arc<dyn VirtualDisk>,
    start: u64,
    len: u64,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl Volume {
    /// The whole of `disk`.
    pub fn whole(disk: Arc<dyn VirtualDisk>) -> Self {
        let len = disk.virtual_size();
        Self {
            disk,
            start: 0,
            len,
        }
    }

    /// The range `[start, start + len)` of `disk`; fails when it does not lie inside
    /// the disk (a partition table pointing past the end).
    pub fn range(disk: Arc<dyn VirtualDisk>, start: u64, len: u64) -> Result<Self> {
        match start.checked_add(len) {
            Some(end) if end <= disk.virtual_size() => Ok(Self { disk, start, len }),
            _ => Err(NativeError::malformed(
                "volume",
                start,
                format!(
                    "{len} bytes at {start} extend past the end of the {}-byte disk",
                    disk.virtual_size()
                ),
            )),
        }
    }

    /// Where the volume starts on the disk.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The volume's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the volume has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `buf` from volume offset `offset`; `structure` names what is being read
    /// for the error when the range falls outside the volume.
    pub fn read_at(&self, buf: &mut [u8], offset: u64, structure: &'static str) -> Result<()> {
        let len = buf.len() as u64;
        let inside = offset.checked_add(len).is_some_and(|end| end <= self.len);
        if !inside {
            return Err(NativeError::malformed(
                structure,
                offset,
                format!(
                    "{len} bytes at {offset} lie outside the {}-byte volume",
                    self.len
                ),
            ));
        }
        // Cannot overflow: offset + len <= self.len and start + self.len <= disk size.
        self.disk.read_at(buf, self.start + offset)?;
        Ok(())
    }

    /// Reads `len` bytes at `offset` into a new buffer; `len` must already be bounded
    /// by the caller's named limit.
    pub fn read_vec(&self, offset: u64, len: usize, structure: &'static str) -> Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.read_at(&mut buf, offset, structure)?;
        Ok(buf)
    }
}
