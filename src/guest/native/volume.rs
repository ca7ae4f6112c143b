//! [`Volume`]: the bytes of a virtual disk a filesystem is read from — a partition or
//! the whole disk (one contiguous range), or an LVM logical volume (a list of ranges,
//! one per segment, laid end to end).
//!
//! Owns the translation from volume offsets to disk offsets, for reads and for the
//! writes an overlay commits ([`Volume::disk_ranges`]), and the check that every read
//! stays inside the volume. Must not: cache or interpret content.

use std::sync::Arc;

use super::error::{NativeError, Result};
use crate::disk::VirtualDisk;

/// Most ranges one volume is made of: an LV of thousands of segments is not what
/// sysprep meets, and every read searches this list.
pub const MAX_PIECES: usize = 4096;

/// One contiguous run of the volume: volume bytes `[at, at + len)` are disk bytes
/// `[disk_offset, disk_offset + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    at: u64,
    disk_offset: u64,
    len: u64,
}

/// A byte range of a virtual disk, possibly made of several disjoint ranges.
#[derive(Clone)]
pub struct Volume {
    disk: Arc<dyn VirtualDisk>,
    pieces: Arc<[Piece]>,
    len: u64,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<(u64, u64)> = self.pieces.iter().map(|p| (p.disk_offset, p.len)).collect();
        f.debug_struct("Volume")
            .field("ranges", &ranges)
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
            pieces: Arc::new([Piece {
                at: 0,
                disk_offset: 0,
                len,
            }]),
            len,
        }
    }

    /// The range `[start, start + len)` of `disk`; fails when it does not lie inside
    /// the disk (a partition table pointing past the end).
    pub fn range(disk: Arc<dyn VirtualDisk>, start: u64, len: u64) -> Result<Self> {
        Self::mapped(disk, &[(start, len)])
    }

    /// The disk ranges `(start, len)` laid end to end, in this order: an LV's
    /// segments. Fails when one leaves the disk, when there are none or more than
    /// [`MAX_PIECES`], or when the total overflows.
    pub fn mapped(disk: Arc<dyn VirtualDisk>, ranges: &[(u64, u64)]) -> Result<Self> {
        NativeError::check_limit("volume ranges", ranges.len() as u64, MAX_PIECES as u64)?;
        let size = disk.virtual_size();
        let mut pieces = Vec::with_capacity(ranges.len());
        let mut at = 0u64;
        for &(start, len) in ranges {
            if start.checked_add(len).is_none_or(|end| end > size) {
                return Err(NativeError::malformed(
                    "volume",
                    start,
                    format!("{len} bytes at {start} extend past the end of the {size}-byte disk"),
                ));
            }
            if len > 0 {
                pieces.push(Piece {
                    at,
                    disk_offset: start,
                    len,
                });
            }
            at = at.checked_add(len).ok_or_else(|| {
                NativeError::malformed("volume", start, "the ranges' total size overflows")
            })?;
        }
        Ok(Self {
            disk,
            pieces: pieces.into(),
            len: at,
        })
    }

    /// The volume's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the volume has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check_inside(&self, offset: u64, len: u64, structure: &'static str) -> Result<()> {
        if offset.checked_add(len).is_some_and(|end| end <= self.len) {
            return Ok(());
        }
        Err(NativeError::malformed(
            structure,
            offset,
            format!(
                "{len} bytes at {offset} lie outside the {}-byte volume",
                self.len
            ),
        ))
    }

    /// Where volume bytes `[offset, offset + len)` lie on the disk: `(disk offset,
    /// length)` runs in volume order (one unless the range crosses a segment end).
    pub fn disk_ranges(
        &self,
        offset: u64,
        len: u64,
        structure: &'static str,
    ) -> Result<Vec<(u64, u64)>> {
        self.check_inside(offset, len, structure)?;
        let mut runs = Vec::new();
        let end = offset + len; // checked above
        let mut at = offset;
        // The first piece whose end lies beyond `at`.
        let mut index = self.pieces.partition_point(|p| p.at + p.len <= at);
        while at < end {
            let Some(piece) = self.pieces.get(index) else {
                break; // unreachable: the pieces cover [0, len)
            };
            let to = end.min(piece.at + piece.len);
            runs.push((piece.disk_offset + (at - piece.at), to - at));
            at = to;
            index += 1;
        }
        Ok(runs)
    }

    /// A volume over the same disk as this one, made of the disk ranges
    /// `(start, len)` laid end to end (see [`Volume::mapped`]).
    pub fn on_same_disk(&self, ranges: &[(u64, u64)]) -> Result<Volume> {
        Self::mapped(self.disk.clone(), ranges)
    }

    /// Fills `buf` from volume offset `offset`; `structure` names what is being read
    /// for the error when the range falls outside the volume.
    pub fn read_at(&self, buf: &mut [u8], offset: u64, structure: &'static str) -> Result<()> {
        let mut filled = 0usize;
        for (disk_offset, len) in self.disk_ranges(offset, buf.len() as u64, structure)? {
            // len <= buf.len(), so it fits usize.
            let part = &mut buf[filled..filled + len as usize];
            self.disk.read_at(part, disk_offset)?;
            filled += len as usize;
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::disk::{MemorySource, RawImage};

    fn disk() -> Arc<dyn VirtualDisk> {
        let bytes: Vec<u8> = (0..8192u32).map(|i| (i / 16) as u8).collect();
        let source = Arc::new(MemorySource::new(bytes, "mem.img"));
        Arc::new(RawImage::new(source, Path::new("mem.img")))
    }

    #[test]
    fn reads_cross_from_one_range_to_the_next() {
        let disk = disk();
        let volume = Volume::mapped(disk.clone(), &[(4096, 1024), (1024, 2048)]).unwrap();
        assert_eq!(volume.len(), 3072);
        assert_eq!(
            volume.disk_ranges(1000, 100, "test").unwrap(),
            [(5096, 24), (1024, 76)]
        );
        let got = volume.read_vec(1008, 32, "test").unwrap();
        let mut expected = vec![0u8; 32];
        disk.read_at(&mut expected[..16], 4096 + 1008).unwrap();
        disk.read_at(&mut expected[16..], 1024).unwrap();
        assert_eq!(got, expected);
        assert!(volume.read_vec(3070, 4, "test").is_err());
        assert!(volume.disk_ranges(u64::MAX, 2, "test").is_err());
        assert_eq!(volume.disk_ranges(3072, 0, "test").unwrap(), []);
    }

    #[test]
    fn ranges_outside_the_disk_or_overflowing_are_refused() {
        assert!(Volume::mapped(disk(), &[(0, 4096), (8000, 193)]).is_err());
        assert!(Volume::mapped(disk(), &[(u64::MAX, 2)]).is_err());
        assert!(Volume::range(disk(), 0, 8192).is_ok());
        let many = vec![(0u64, 1u64); MAX_PIECES + 1];
        assert!(Volume::mapped(disk(), &many).is_err());
    }
}
