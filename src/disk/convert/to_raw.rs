//! Writing a raw image: the data extents of the source, minus every 4 KiB block of
//! zeros, written at their guest offsets; everything else stays a hole.
//!
//! The runs are written straight from the read-ahead buffers by a [`WriteQueue`]
//! (several writes in flight, past the page cache where the file system allows), so the
//! device is kept busy even when the data comes in many short runs. Owns only the raw
//! output; the file's life cycle is [`AtomicFile`]'s.

use std::ops::Range;

use super::pipeline::{is_zero, read_ahead, DataRanges, ProgressTracker, CHUNK_BYTES, ZERO_BLOCK};
use super::Counters;
use crate::disk::output::AtomicFile;
use crate::disk::write_queue::WriteQueue;
use crate::disk::{DiskError, Result, VirtualDisk};
use crate::report::Reporter;

/// Writes in flight at once: enough to hide the per-request latency of a virtual disk.
const WRITERS: usize = 3;

/// Copies `disk` into `output` as a sparse raw file.
pub fn write_raw(
    disk: &dyn VirtualDisk,
    output: &AtomicFile,
    reporter: &dyn Reporter,
) -> Result<Counters> {
    let file = output.file();
    let path = output.temp_path();
    let queue = WriteQueue::new(file, WRITERS).map_err(|e| DiskError::io("write", path, e))?;
    let size = disk.virtual_size();
    let mut bytes_written = 0u64;
    let mut tracker = ProgressTracker::start(reporter, "convert", size);
    // Ranges widened to whole zero blocks: the widening reads as zeros, and the runs
    // then start where the buffers do, aligned for direct writes.
    let ranges = DataRanges::new(disk, ZERO_BLOCK);
    let bytes_read = read_ahead(disk, ranges, CHUNK_BYTES, |chunk| {
        // Not past the end of the disk (the reader pads a partial last block).
        let inside = size
            .saturating_sub(chunk.offset)
            .min(chunk.data.len() as u64) as usize;
        for run in nonzero_runs(chunk.offset, &chunk.data[..inside]) {
            bytes_written += run.len() as u64;
            let at = chunk.offset + run.start as u64;
            queue
                .submit(chunk.data.clone(), run, at)
                .map_err(|e| DiskError::io("write", path, e))?;
        }
        tracker.reached(chunk.offset + chunk.data.len() as u64);
        Ok(())
    })?;
    queue
        .finish()
        .map_err(|e| DiskError::io("write", path, e))?;
    file.set_len(size)
        .map_err(|e| DiskError::io("set the size of", path, e))?;
    tracker.finish();
    Ok(Counters {
        bytes_read,
        bytes_written,
    })
}

/// Splits `data` (guest bytes at `offset`) at 4 KiB guest boundaries and returns the
/// maximal runs of blocks that are not all zero, as ranges of `data`.
fn nonzero_runs(offset: u64, data: &[u8]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut run_start: Option<usize> = None;
    let mut at = 0usize;
    while at < data.len() {
        let block_end = (offset + at as u64 + 1).next_multiple_of(ZERO_BLOCK) - offset;
        let end = (block_end as usize).min(data.len());
        let zero = is_zero(&data[at..end]);
        match (zero, run_start) {
            (false, None) => run_start = Some(at),
            (true, Some(start)) => {
                runs.push(start..at);
                run_start = None;
            }
            _ => {}
        }
        at = end;
    }
    if let Some(start) = run_start {
        runs.push(start..data.len());
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_split_runs_at_guest_boundaries() {
        // Starts 512 bytes before a 4 KiB boundary: that partial block is data, the
        // next block is zero, the one after is data.
        let mut data = vec![0u8; 512 + 4096 + 4096];
        data[10] = 1;
        data[512 + 4096 + 100] = 2;
        assert_eq!(nonzero_runs(4096 - 512, &data), vec![0..512, 4608..8704]);
        assert!(nonzero_runs(0, &[0u8; 8192]).is_empty());
    }
}
