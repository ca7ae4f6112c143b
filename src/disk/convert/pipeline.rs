//! The moving parts every conversion shares: which guest ranges hold data
//! ([`DataRanges`]), a read-ahead thread that overlaps reading with the caller's
//! zero-detection and writing ([`read_ahead`]), and the zero test itself ([`is_zero`]).
//!
//! Owns the reader thread and its bounded pool of buffers (memory is `BUFFERS` chunks
//! whatever the image size; aligned, so writes can go past the page cache straight from
//! them), and stops between chunks once [`crate::interrupt`] says so. Knows nothing of
//! output formats.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::mpsc::sync_channel;

use crate::disk::buffers::{BufferPool, SharedBuffer};
use crate::disk::{DiskError, ExtentKind, Result, VirtualDisk};
use crate::report::{Progress, Reporter};

/// Bytes read and handed over at a time: large enough that per-call overheads vanish,
/// small enough that a chunk is still in the CPU caches when it is written out (the
/// copy into the page cache then runs several times faster than from memory).
pub const CHUNK_BYTES: u64 = 2 << 20;
/// Buffers in flight between the reader thread, the consumer and the writes it started:
/// deep enough that each can run for a whole time slice on a busy machine without
/// waiting for the others.
const BUFFERS: usize = 8;
/// Guest bytes whose extents are asked for at once, bounding the extent list even for
/// a maximally fragmented image with 512-byte clusters.
const EXTENT_WINDOW: u64 = 256 << 20;
/// Zero detection granularity (qemu-img's default `-S 4k`).
pub const ZERO_BLOCK: u64 = 4096;

/// The ranges of a disk that hold data (extents of kind `Data`), widened to multiples
/// of `align` (which may reach past the end of the disk, up to the aligned size) and
/// merged when they touch. Zero and unallocated extents are skipped.
pub struct DataRanges<'a> {
    disk: &'a dyn VirtualDisk,
    align: u64,
    next_query: u64,
    queued: VecDeque<Range<u64>>,
    pending: Option<Range<u64>>,
}

impl<'a> DataRanges<'a> {
    /// Walks the whole of `disk`. `align` must be a power of two.
    pub fn new(disk: &'a dyn VirtualDisk, align: u64) -> Self {
        Self {
            disk,
            align,
            next_query: 0,
            queued: VecDeque::new(),
            pending: None,
        }
    }

    /// The next aligned data range, unmerged.
    fn next_aligned(&mut self) -> Result<Option<Range<u64>>> {
        let size = self.disk.virtual_size();
        while self.queued.is_empty() && self.next_query < size {
            let len = EXTENT_WINDOW.min(size - self.next_query);
            let extents = self.disk.extents(self.next_query, len)?;
            self.next_query += len;
            self.queued.extend(
                extents
                    .iter()
                    .filter(|extent| extent.kind == ExtentKind::Data)
                    .map(|extent| {
                        let start = extent.start - extent.start % self.align;
                        start..extent.end().next_multiple_of(self.align)
                    }),
            );
        }
        Ok(self.queued.pop_front())
    }
}

impl Iterator for DataRanges<'_> {
    type Item = Result<Range<u64>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_aligned() {
                Err(error) => return Some(Err(error)),
                Ok(None) => return self.pending.take().map(Ok),
                Ok(Some(range)) => match &mut self.pending {
                    Some(pending) if range.start <= pending.end => {
                        pending.end = pending.end.max(range.end);
                    }
                    Some(_) => return self.pending.replace(range).map(Ok),
                    None => self.pending = Some(range),
                },
            }
        }
    }
}

/// A piece of the disk read ahead: the guest bytes from `offset`, in a pooled buffer a
/// consumer may keep (clone `data`) until it has written them.
pub struct Chunk {
    pub offset: u64,
    pub data: SharedBuffer,
}

/// Reads every range from `ranges` in pieces of at most `chunk` bytes on a separate
/// thread and calls `consume` for each, in order, on the calling thread. Bytes past the
/// end of the disk read as zeros (so aligned ranges can cover a partial last cluster).
/// The reader waits for a free buffer while `BUFFERS` are held (by the queue between the
/// threads, or by writes the consumer started). Returns the number of bytes read from
/// the disk.
pub fn read_ahead<I, F>(
    disk: &dyn VirtualDisk,
    ranges: I,
    chunk: u64,
    mut consume: F,
) -> Result<u64>
where
    I: Iterator<Item = Result<Range<u64>>> + Send,
    F: FnMut(&Chunk) -> Result<()>,
{
    let size = disk.virtual_size();
    let (full_tx, full_rx) = sync_channel::<Result<Chunk>>(BUFFERS - 1);
    let pool = BufferPool::new(BUFFERS, chunk as usize);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut bytes_read = 0u64;
            for range in ranges {
                let range = match range {
                    Ok(range) => range,
                    Err(error) => {
                        let _ = full_tx.send(Err(error));
                        return bytes_read;
                    }
                };
                let mut pos = range.start;
                while pos < range.end {
                    let len = chunk.min(range.end - pos) as usize;
                    let mut buf = pool.take();
                    let inside = size.saturating_sub(pos).min(len as u64) as usize;
                    buf.as_mut_slice()[inside..len].fill(0);
                    let read = match inside {
                        0 => Ok(()),
                        _ => disk.read_at(&mut buf.as_mut_slice()[..inside], pos),
                    };
                    bytes_read += inside as u64;
                    let failed = read.is_err();
                    let item = read.map(|()| Chunk {
                        offset: pos,
                        data: buf.share(len),
                    });
                    if full_tx.send(item).is_err() || failed {
                        return bytes_read; // the consumer stopped, or the read failed
                    }
                    pos += len as u64;
                }
            }
            bytes_read
        });
        let mut outcome = Ok(());
        while let Ok(item) = full_rx.recv() {
            let consumed = item.and_then(|chunk| {
                crate::interrupt::check()?;
                consume(&chunk)
            });
            if let Err(error) = consumed {
                outcome = Err(error);
                break;
            }
        }
        drop(full_rx); // drops the chunks still queued, so the reader gets its buffers
        let bytes_read = reader
            .join()
            .map_err(|_| DiskError::InvalidRequest("the reader thread panicked".to_owned()))?;
        outcome.map(|()| bytes_read)
    })
}

/// Whether every byte of `bytes` is zero.
pub fn is_zero(bytes: &[u8]) -> bool {
    // OR-folding fixed-size blocks vectorises; the early exit is per block.
    let mut blocks = bytes.chunks_exact(256);
    blocks
        .by_ref()
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
        && blocks.remainder().iter().all(|&b| b == 0)
}

/// A progress indicator driven by guest positions: skipped ranges count as done too.
pub struct ProgressTracker {
    progress: Box<dyn Progress>,
    size: u64,
    done: u64,
}

impl ProgressTracker {
    /// Starts the indicator `label` for a disk of `size` bytes.
    pub fn start(reporter: &dyn Reporter, label: &str, size: u64) -> Self {
        Self {
            progress: reporter.start_progress(label, Some(size)),
            size,
            done: 0,
        }
    }

    /// Everything before guest offset `position` has been handled.
    pub fn reached(&mut self, position: u64) {
        let position = position.min(self.size);
        self.progress.advance(position.saturating_sub(self.done));
        self.done = self.done.max(position);
    }

    /// The whole disk has been handled.
    pub fn finish(mut self) {
        self.reached(self.size);
        self.progress.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{MemorySource, RawImage};
    use std::path::Path;
    use std::sync::Arc;

    #[test]
    fn zero_test_sees_a_single_byte_anywhere() {
        let mut buf = vec![0u8; 10_000];
        assert!(is_zero(&buf));
        for at in [0, 255, 256, 9_000, 9_999] {
            buf[at] = 1;
            assert!(!is_zero(&buf), "byte {at}");
            buf[at] = 0;
        }
    }

    #[test]
    fn read_ahead_delivers_every_range_in_order_with_zero_padding() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8 + 1).collect();
        let disk = RawImage::new(
            Arc::new(MemorySource::new(bytes.clone(), "mem")),
            Path::new("mem"),
        );
        let ranges = vec![Ok(0..3000), Ok(4096..12288)];
        let mut seen = Vec::new();
        let read = read_ahead(&disk, ranges.into_iter(), 1024, |chunk| {
            seen.push((chunk.offset, chunk.data.to_vec()));
            Ok(())
        })
        .expect("read");
        assert_eq!(read, 3000 + (10_000 - 4096));
        let mut expected_offset = 0;
        for (offset, data) in &seen {
            if expected_offset == 3000 {
                expected_offset = 4096;
            }
            assert_eq!(*offset, expected_offset);
            for (i, byte) in data.iter().enumerate() {
                let at = *offset as usize + i;
                assert_eq!(*byte, bytes.get(at).copied().unwrap_or(0), "byte {at}");
            }
            expected_offset += data.len() as u64;
        }
        assert_eq!(expected_offset, 12288);
    }

    #[test]
    fn consumer_error_stops_the_reader() {
        let disk = RawImage::new(
            Arc::new(MemorySource::new(vec![1u8; 1 << 20], "mem")),
            Path::new("mem"),
        );
        let mut calls = 0;
        let result = read_ahead(&disk, vec![Ok(0..1 << 20)].into_iter(), 4096, |_| {
            calls += 1;
            Err(DiskError::InvalidRequest("stop".to_owned()))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
