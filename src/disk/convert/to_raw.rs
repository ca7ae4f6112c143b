//! Writing a raw image: the data extents of the source, minus every 4 KiB block of
//! zeros, written at their guest offsets (past the page cache where the file system
//! allows, see [`DirectWriter`]); everything else stays a hole.
//!
//! Owns only the raw output; the file's life cycle is [`AtomicFile`]'s.

use super::pipeline::{is_zero, read_ahead, DataRanges, ProgressTracker, CHUNK_BYTES, ZERO_BLOCK};
use super::Counters;
use crate::disk::direct::DirectWriter;
use crate::disk::output::AtomicFile;
use crate::disk::{DiskError, Result, VirtualDisk};
use crate::report::Reporter;

/// Copies `disk` into `output` as a sparse raw file.
pub fn write_raw(
    disk: &dyn VirtualDisk,
    output: &AtomicFile,
    reporter: &dyn Reporter,
) -> Result<Counters> {
    let file = output.file();
    let writer = DirectWriter::new(file);
    let path = output.temp_path();
    let size = disk.virtual_size();
    let mut bytes_written = 0u64;
    let mut tracker = ProgressTracker::start(reporter, "convert", size);
    let bytes_read = read_ahead(
        disk,
        DataRanges::new(disk, 1),
        CHUNK_BYTES,
        |offset, data| {
            for (run_offset, run) in nonzero_runs(offset, data) {
                writer
                    .write_all_at(run, run_offset)
                    .map_err(|e| DiskError::io("write", path, e))?;
                bytes_written += run.len() as u64;
            }
            tracker.reached(offset + data.len() as u64);
            Ok(())
        },
    )?;
    file.set_len(size)
        .map_err(|e| DiskError::io("set the size of", path, e))?;
    tracker.finish();
    Ok(Counters {
        bytes_read,
        bytes_written,
    })
}

/// Splits `data` (guest bytes at `offset`) at 4 KiB guest boundaries and returns the
/// maximal runs of blocks that are not all zero, with their guest offsets.
fn nonzero_runs(offset: u64, data: &[u8]) -> Vec<(u64, &[u8])> {
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
                runs.push((offset + start as u64, &data[start..at]));
                run_start = None;
            }
            _ => {}
        }
        at = end;
    }
    if let Some(start) = run_start {
        runs.push((offset + start as u64, &data[start..]));
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
        let runs = nonzero_runs(4096 - 512, &data);
        let summary: Vec<(u64, usize)> = runs.iter().map(|(o, r)| (*o, r.len())).collect();
        assert_eq!(summary, vec![(3584, 512), (8192, 4096)]);
        assert!(nonzero_runs(0, &[0u8; 8192]).is_empty());
    }
}
