//! [`RawImage`]: a raw file (or any [`ReadAt`]) as a [`VirtualDisk`].
//!
//! Owns the trivial mapping of guest offset = file offset, and turns the source's known
//! holes into [`ExtentKind::Zero`] extents so copies skip them. It must not guess at
//! content: a source that cannot tell its holes is reported as all data.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DiskError, Extent, ExtentKind, ReadAt, Result, VirtualDisk};

/// A raw disk image: the file's bytes are the guest's bytes.
pub struct RawImage {
    source: Arc<dyn ReadAt>,
    path: PathBuf,
}

impl fmt::Debug for RawImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawImage")
            .field("path", &self.path)
            .field("size", &self.source.size())
            .finish()
    }
}

impl RawImage {
    /// Wraps `source`; `path` names it in messages.
    pub fn new(source: Arc<dyn ReadAt>, path: &Path) -> Self {
        Self {
            source,
            path: path.to_owned(),
        }
    }

    fn check_range(&self, start: u64, len: u64) -> Result<u64> {
        match start.checked_add(len) {
            Some(end) if end <= self.source.size() => Ok(end),
            _ => Err(DiskError::InvalidRequest(format!(
                "range of {len} bytes at {start} lies outside the raw image {} of {} bytes",
                self.path.display(),
                self.source.size()
            ))),
        }
    }
}

impl VirtualDisk for RawImage {
    fn virtual_size(&self) -> u64 {
        self.source.size()
    }

    fn extents(&self, start: u64, len: u64) -> Result<Vec<Extent>> {
        let end = self.check_range(start, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let ranges = self
            .source
            .data_ranges(start, end)
            .map_err(|e| DiskError::io("map the holes of", &self.path, e))?;
        let Some(ranges) = ranges else {
            return Ok(vec![Extent {
                start,
                len,
                kind: ExtentKind::Data,
            }]);
        };
        let mut extents = Vec::new();
        let mut pos = start;
        for (data_start, data_end) in ranges {
            // Clamp what the source says to the request and keep it in order.
            let data_start = data_start.clamp(pos, end);
            let data_end = data_end.clamp(data_start, end);
            push_merged(&mut extents, pos, data_start, ExtentKind::Zero);
            push_merged(&mut extents, data_start, data_end, ExtentKind::Data);
            pos = data_end;
        }
        push_merged(&mut extents, pos, end, ExtentKind::Zero);
        Ok(extents)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.source
            .read_exact_at(buf, offset)
            .map_err(|e| DiskError::io("read", &self.path, e))
    }
}

/// Appends `[start, end)` of `kind`, merging with the previous extent when it continues
/// it. Empty ranges are skipped.
fn push_merged(extents: &mut Vec<Extent>, start: u64, end: u64, kind: ExtentKind) {
    if end <= start {
        return;
    }
    match extents.last_mut() {
        Some(last) if last.kind == kind && last.end() == start => last.len += end - start,
        _ => extents.push(Extent {
            start,
            len: end - start,
            kind,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemorySource;

    #[test]
    fn a_source_without_hole_information_is_all_data() {
        let source = Arc::new(MemorySource::new(vec![7u8; 4096], "mem"));
        let image = RawImage::new(source, Path::new("mem"));
        let extents = image.extents(100, 1000).expect("in range");
        assert_eq!(
            extents,
            vec![Extent {
                start: 100,
                len: 1000,
                kind: ExtentKind::Data
            }]
        );
        assert!(image.extents(4000, 100).is_err());
        let mut buf = [0u8; 4];
        image.read_at(&mut buf, 4092).expect("last bytes");
        assert_eq!(buf, [7; 4]);
        assert!(image.read_at(&mut buf, 4093).is_err());
    }
}
