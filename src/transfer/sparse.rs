//! [`SparseWriter`]: positional writes that leave all-zero blocks as holes.
//!
//! The file is written at explicit offsets; a block of [`HOLE_BLOCK`] zero bytes is
//! skipped, and [`SparseWriter::finish`] sets the final length so trailing holes exist.
//! A raw disk image is mostly zeros: this keeps the download as sparse as the disk is.
//! Data reaches the file through a [`DirectWriter`], bypassing the page cache where the
//! file system allows (hand it an [`crate::disk::direct::AlignedBuffer`]'s bytes).
//! Owns only the write pattern, not the file's life cycle.

use std::fs::File;
use std::io;

use crate::disk::direct::DirectWriter;

/// Granularity of hole detection: a file-system block multiple, small enough to find
/// the holes of a real disk, large enough that the check costs little.
pub(crate) const HOLE_BLOCK: usize = 64 * 1024;

/// Writes at offsets, skipping zero blocks.
pub(crate) struct SparseWriter<'a> {
    file: &'a File,
    writer: DirectWriter<'a>,
}

impl<'a> SparseWriter<'a> {
    pub(crate) fn new(file: &'a File) -> Self {
        Self {
            file,
            writer: DirectWriter::new(file),
        }
    }

    /// Writes `data` at `offset`, leaving zero blocks unwritten. The region must not
    /// hold earlier data (the file was truncated there), or skipped zeros would not show.
    pub(crate) fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let mut at = offset;
        let mut pending: Option<(u64, usize, usize)> = None; // (file offset, start, end)
        let mut start = 0;
        for block in data.chunks(HOLE_BLOCK) {
            let end = start + block.len();
            if is_zero(block) {
                if let Some((o, s, e)) = pending.take() {
                    self.writer.write_all_at(&data[s..e], o)?;
                }
            } else {
                pending = Some(match pending {
                    Some((o, s, _)) => (o, s, end),
                    None => (at, start, end),
                });
            }
            at += block.len() as u64;
            start = end;
        }
        if let Some((o, s, e)) = pending {
            self.writer.write_all_at(&data[s..e], o)?;
        }
        Ok(())
    }

    /// Sets the file's length to `len` (creating the trailing hole, if any).
    pub(crate) fn finish(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

fn is_zero(block: &[u8]) -> bool {
    // OR-folding small pieces vectorises, unlike a short-circuiting `all`.
    block
        .chunks(4096)
        .all(|piece| piece.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn zero_blocks_become_holes_and_data_lands_where_it_should() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut data = vec![0u8; 8 * HOLE_BLOCK];
        data[HOLE_BLOCK + 5] = 1;
        data[5 * HOLE_BLOCK..6 * HOLE_BLOCK].fill(7);
        let writer = SparseWriter::new(&file);
        writer.write_at(&data[..3 * HOLE_BLOCK], 0).unwrap();
        writer
            .write_at(&data[3 * HOLE_BLOCK..], 3 * HOLE_BLOCK as u64)
            .unwrap();
        writer.finish(data.len() as u64).unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            allocated <= 4 * HOLE_BLOCK as u64,
            "{allocated} bytes allocated"
        );
    }
}
