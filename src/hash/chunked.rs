//! Per-chunk digests of a local file, computed in parallel with rayon, and the
//! comparison of a file's chunk digests against a manifest's.
//!
//! Unlike one whole-file digest, fixed-size chunks are independent, so a file is hashed
//! at full core count: each rayon task reads one chunk with positioned reads in
//! [`PIECE`]-sized pieces, so memory stays at about one piece per rayon thread however
//! large the chunks or the file. This module owns chunk geometry (sizes, counts,
//! ranges, their limits) and the comparison; it does not parse or write manifests and
//! does not print.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;

use super::algorithm::{ChunkAlgorithm, ChunkDigest};
use super::error::HashError;
use crate::report::Progress;

/// The default chunk size: 64 MiB, a few hundred chunks for a typical image, so a
/// mismatch is located to a range small enough to re-fetch cheaply.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;
/// The smallest chunk size: one page; smaller chunks only make manifests larger.
pub const MIN_CHUNK_SIZE: u64 = 4096;
/// The largest chunk size: 1 GiB, beyond which a chunk no longer localises anything.
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;
/// The most chunks a manifest may have: 64 TiB at the default size, 32 MiB of digests
/// in memory. Bounds memory for hostile manifests and for tiny chunk sizes.
pub const MAX_CHUNKS: u64 = 1 << 20;
/// Bytes read per positioned read inside a chunk.
const PIECE: u64 = 1 << 20;

/// How a file is cut into chunks and which digest each chunk gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    pub algorithm: ChunkAlgorithm,
    pub chunk_size: u64,
}

impl ChunkLayout {
    /// A layout, if `chunk_size` is a multiple of 4096 within the limits.
    pub fn new(algorithm: ChunkAlgorithm, chunk_size: u64) -> Result<Self, String> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
            || !chunk_size.is_multiple_of(MIN_CHUNK_SIZE)
        {
            return Err(format!(
                "chunk size {chunk_size} must be a multiple of {MIN_CHUNK_SIZE} between \
                 {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes"
            ));
        }
        Ok(Self {
            algorithm,
            chunk_size,
        })
    }

    /// How many chunks a file of `file_size` bytes has (the last may be short).
    pub fn chunk_count(&self, file_size: u64) -> u64 {
        file_size.div_ceil(self.chunk_size)
    }

    /// The byte range `[start, end)` of chunk `index` in a file of `file_size` bytes.
    /// Saturates rather than overflows; callers pass indices below `chunk_count`.
    pub fn chunk_range(&self, index: u64, file_size: u64) -> (u64, u64) {
        let start = index.saturating_mul(self.chunk_size).min(file_size);
        (start, start.saturating_add(self.chunk_size).min(file_size))
    }
}

/// Digests of the first `count` chunks of `file` (`file_size` bytes), in parallel.
/// `count` must not exceed `layout.chunk_count(file_size)`.
pub fn hash_chunks(
    file: &File,
    path: &Path,
    layout: ChunkLayout,
    file_size: u64,
    count: u64,
    progress: &dyn Progress,
) -> Result<Vec<ChunkDigest>, HashError> {
    if count > layout.chunk_count(file_size) || count > MAX_CHUNKS {
        return Err(HashError::InvalidRequest(format!(
            "cannot hash {count} chunks of {} bytes in a {file_size}-byte file (at most {MAX_CHUNKS})",
            layout.chunk_size
        )));
    }
    (0..count)
        .into_par_iter()
        .map(|index| {
            let (start, end) = layout.chunk_range(index, file_size);
            hash_range(file, path, layout.algorithm, start, end, progress)
        })
        .collect()
}

fn hash_range(
    file: &File,
    path: &Path,
    algorithm: ChunkAlgorithm,
    start: u64,
    end: u64,
    progress: &dyn Progress,
) -> Result<ChunkDigest, HashError> {
    let mut hasher = algorithm.hasher();
    // PIECE fits in usize; the buffer is at most one piece.
    let mut buf = vec![0u8; PIECE.min(end - start) as usize];
    let mut pos = start;
    while pos < end {
        let n = PIECE.min(end - pos) as usize;
        file.read_exact_at(&mut buf[..n], pos)
            .map_err(|e| HashError::io("read", path, e))?;
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
        pos += n as u64;
    }
    Ok(hasher.finish_chunk())
}

/// Why a run of chunks failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkFault {
    /// The file's chunk has a different digest.
    Differs,
    /// The manifest has the chunk but the file ends before it does.
    Missing,
    /// The file has the chunk but the manifest ends before it.
    Extra,
}

impl ChunkFault {
    /// A word for messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Differs => "differs",
            Self::Missing => "missing",
            Self::Extra => "extra",
        }
    }
}

/// Consecutive chunks `first..=last` with the same fault, covering bytes `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRun {
    pub first: u64,
    pub last: u64,
    pub start: u64,
    pub end: u64,
    pub fault: ChunkFault,
}

/// The outcome of comparing a file's chunks with a manifest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCheck {
    pub layout: ChunkLayout,
    /// The size the manifest describes.
    pub expected_size: u64,
    /// The size of the file.
    pub actual_size: u64,
    /// Chunks compared digest against digest.
    pub compared: u64,
    /// The faults, in chunk order; empty when the file matches.
    pub faults: Vec<ChunkRun>,
}

impl ChunkCheck {
    /// Whether the file matches the manifest exactly.
    pub fn matches(&self) -> bool {
        self.faults.is_empty() && self.expected_size == self.actual_size
    }
}

/// Compares the file's chunk digests (`actual`, at least the first
/// `min(expected.len(), chunk_count(actual_size))` of them) with the manifest's.
pub fn compare_chunks(
    layout: ChunkLayout,
    expected: &[ChunkDigest],
    expected_size: u64,
    actual: &[ChunkDigest],
    actual_size: u64,
) -> ChunkCheck {
    let expected_count = expected.len() as u64;
    let actual_count = layout.chunk_count(actual_size);
    let compared = expected_count.min(actual_count).min(actual.len() as u64);
    let mut faults: Vec<ChunkRun> = Vec::new();
    let mut push = |index: u64, last: u64, fault: ChunkFault, size: u64| {
        let (start, _) = layout.chunk_range(index, size);
        let (_, end) = layout.chunk_range(last, size);
        match faults.last_mut() {
            Some(run) if run.fault == fault && run.last + 1 == index => {
                run.last = last;
                run.end = end;
            }
            _ => faults.push(ChunkRun {
                first: index,
                last,
                start,
                end,
                fault,
            }),
        }
    };
    for (index, (want, got)) in (0u64..)
        .zip(expected.iter().zip(actual))
        .take(compared as usize)
    {
        if want != got {
            push(
                index,
                index,
                ChunkFault::Differs,
                expected_size.max(actual_size),
            );
        }
    }
    if expected_count > compared {
        push(
            compared,
            expected_count - 1,
            ChunkFault::Missing,
            expected_size,
        );
    } else if actual_count > compared {
        push(compared, actual_count - 1, ChunkFault::Extra, actual_size);
    }
    ChunkCheck {
        layout,
        expected_size,
        actual_size,
        compared,
        faults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: ChunkLayout = ChunkLayout {
        algorithm: ChunkAlgorithm::Blake3,
        chunk_size: 4096,
    };

    #[test]
    fn layout_limits() {
        assert!(ChunkLayout::new(ChunkAlgorithm::Blake3, 4095).is_err());
        assert!(ChunkLayout::new(ChunkAlgorithm::Blake3, 6000).is_err());
        assert!(ChunkLayout::new(ChunkAlgorithm::Blake3, 2 << 30).is_err());
        assert!(ChunkLayout::new(ChunkAlgorithm::Sha256, DEFAULT_CHUNK_SIZE).is_ok());
    }

    #[test]
    fn geometry() {
        assert_eq!(LAYOUT.chunk_count(0), 0);
        assert_eq!(LAYOUT.chunk_count(1), 1);
        assert_eq!(LAYOUT.chunk_count(4096), 1);
        assert_eq!(LAYOUT.chunk_count(4097), 2);
        assert_eq!(LAYOUT.chunk_range(1, 5000), (4096, 5000));
        assert_eq!(LAYOUT.chunk_range(u64::MAX, 5000), (5000, 5000));
    }

    #[test]
    fn differing_chunks_merge_into_runs() {
        let expected = [[0u8; 32], [1; 32], [2; 32], [3; 32]];
        let actual = [[0u8; 32], [9; 32], [9; 32], [3; 32]];
        let check = compare_chunks(LAYOUT, &expected, 4 * 4096, &actual, 4 * 4096);
        assert!(!check.matches());
        assert_eq!(check.compared, 4);
        assert_eq!(
            check.faults,
            vec![ChunkRun {
                first: 1,
                last: 2,
                start: 4096,
                end: 3 * 4096,
                fault: ChunkFault::Differs
            }]
        );
    }

    #[test]
    fn truncated_and_extended_files() {
        let expected = [[0u8; 32], [1; 32], [2; 32]];
        let short = compare_chunks(LAYOUT, &expected, 3 * 4096 - 10, &expected[..1], 4096);
        assert_eq!(short.faults.len(), 1);
        assert_eq!(short.faults[0].fault, ChunkFault::Missing);
        assert_eq!(
            (short.faults[0].start, short.faults[0].end),
            (4096, 3 * 4096 - 10)
        );

        let long = compare_chunks(LAYOUT, &expected[..1], 4096, &expected, 3 * 4096);
        assert_eq!(long.faults[0].fault, ChunkFault::Extra);
        assert_eq!((long.faults[0].first, long.faults[0].last), (1, 2));
    }

    #[test]
    fn same_chunks_but_different_size_does_not_match() {
        let expected = [[0u8; 32]];
        let check = compare_chunks(LAYOUT, &expected, 100, &expected, 101);
        assert!(check.faults.is_empty());
        assert!(!check.matches());
    }
}
