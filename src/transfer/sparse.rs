//! Where a received buffer holds data: [`data_runs`] splits it into the runs that are
//! not all-zero blocks, so a download writes only those and leaves the rest as holes
//! (the caller sets the file's final length, so trailing holes exist too). A raw disk
//! image is mostly zeros: this keeps the download as sparse as the disk is.
//! Owns only the split, not the writes.

use std::ops::Range;

/// Granularity of hole detection: a file-system block multiple, small enough to find
/// the holes of a real disk, large enough that the check costs little.
pub(crate) const HOLE_BLOCK: usize = 64 * 1024;

/// The ranges of `data` to write: consecutive blocks of [`HOLE_BLOCK`] bytes that are
/// not all zero, merged; the last block may be shorter.
pub(crate) fn data_runs(data: &[u8]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for block in data.chunks(HOLE_BLOCK) {
        let end = start + block.len();
        if !is_zero(block) {
            match runs.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => runs.push(start..end),
            }
        }
        start = end;
    }
    runs
}

fn is_zero(block: &[u8]) -> bool {
    // OR-folding small pieces vectorises, unlike a short-circuiting `all`.
    block
        .chunks(4096)
        .all(|piece| piece.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_are_skipped_and_data_blocks_merged() {
        let mut data = vec![0u8; 8 * HOLE_BLOCK + 100];
        data[HOLE_BLOCK + 5] = 1;
        data[2 * HOLE_BLOCK] = 1;
        data[5 * HOLE_BLOCK..6 * HOLE_BLOCK].fill(7);
        data[8 * HOLE_BLOCK + 99] = 3;
        assert_eq!(
            data_runs(&data),
            [
                HOLE_BLOCK..3 * HOLE_BLOCK,
                5 * HOLE_BLOCK..6 * HOLE_BLOCK,
                8 * HOLE_BLOCK..8 * HOLE_BLOCK + 100
            ]
        );
        assert!(data_runs(&[0; 3]).is_empty());
        assert!(data_runs(&[]).is_empty());
    }
}
