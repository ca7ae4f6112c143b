//! [`GuestWrites`]: a validated batch of writes, sorted, and cut into per-cluster pieces.
//!
//! Owns the rules a batch must follow (inside the virtual disk, no overlaps; empty
//! writes are dropped; runs of zeros become pieces of one static zero buffer) and the arithmetic that splits writes at cluster boundaries and
//! lays them over a buffer. It never reads or writes a file.

use std::path::Path;

use super::{GuestWrite, PatchError, ZeroRun};
use crate::disk::Result;

/// What runs of zeros are cut into: writes borrow this buffer instead of owning one.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// A batch of non-empty, non-overlapping writes inside a disk, sorted by offset.
#[derive(Debug)]
pub struct GuestWrites<'a> {
    sorted: Vec<(u64, &'a [u8])>,
}

/// The part of one write that falls into one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// Offset of the first byte inside the cluster.
    pub offset: usize,
    pub data: &'a [u8],
}

/// Every piece that falls into one guest cluster, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPatch<'a> {
    /// Guest cluster index.
    pub cluster: u64,
    pub pieces: Vec<Piece<'a>>,
}

impl<'a> GuestWrites<'a> {
    /// Validates `writes` and the runs of `zeros` against a disk of `size` bytes
    /// (`path` names it in errors).
    pub fn new(
        writes: &'a [GuestWrite],
        zeros: &[ZeroRun],
        size: u64,
        path: &Path,
    ) -> Result<Self> {
        Self::validate(writes, zeros, size).map_err(|e| e.into_disk(path))
    }

    fn validate(
        writes: &'a [GuestWrite],
        zeros: &[ZeroRun],
        size: u64,
    ) -> std::result::Result<Self, PatchError> {
        let inside = |offset: u64, len: u64| {
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return Err(PatchError::OutOfRange { offset, len, size });
            }
            Ok(())
        };
        let mut sorted = Vec::with_capacity(writes.len());
        for (offset, data) in writes {
            let len = data.len() as u64;
            inside(*offset, len)?;
            if len > 0 {
                sorted.push((*offset, data.as_slice()));
            }
        }
        for &(offset, len) in zeros {
            inside(offset, len)?;
            let mut at = offset;
            // Inside the disk (checked above), so no overflow.
            while at < offset + len {
                let take = (offset + len - at).min(ZEROS.len() as u64);
                sorted.push((at, &ZEROS[..take as usize]));
                at += take;
            }
        }
        sorted.sort_unstable_by_key(|(offset, _)| *offset);
        for pair in sorted.windows(2) {
            let ((first, data), (second, _)) = (pair[0], pair[1]);
            // Both ends were checked against `size` above, so this cannot overflow.
            if first + data.len() as u64 > second {
                return Err(PatchError::Overlap {
                    first,
                    first_len: data.len() as u64,
                    second,
                });
            }
        }
        Ok(Self { sorted })
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The writes, sorted by offset.
    pub fn sorted(&self) -> &[(u64, &'a [u8])] {
        &self.sorted
    }

    /// Total bytes to write.
    pub fn total_bytes(&self) -> u64 {
        self.sorted.iter().map(|(_, data)| data.len() as u64).sum()
    }

    /// The writes cut at boundaries of clusters of `1 << cluster_bits` bytes, grouped by
    /// guest cluster in ascending order.
    pub fn by_cluster(&self, cluster_bits: u32) -> Vec<ClusterPatch<'a>> {
        let cluster_size = 1u64 << cluster_bits;
        let mut patches: Vec<ClusterPatch<'a>> = Vec::new();
        for &(offset, data) in &self.sorted {
            let mut rest = data;
            let mut pos = offset;
            while !rest.is_empty() {
                let in_cluster = pos % cluster_size;
                let take = ((cluster_size - in_cluster) as usize).min(rest.len());
                let (now, later) = rest.split_at(take);
                let piece = Piece {
                    offset: in_cluster as usize,
                    data: now,
                };
                let cluster = pos >> cluster_bits;
                match patches.last_mut() {
                    Some(last) if last.cluster == cluster => last.pieces.push(piece),
                    _ => patches.push(ClusterPatch {
                        cluster,
                        pieces: vec![piece],
                    }),
                }
                pos += take as u64;
                rest = later;
            }
        }
        patches
    }
}

impl ClusterPatch<'_> {
    /// The byte range of the cluster the pieces span, first to last byte written.
    pub fn span(&self) -> (usize, usize) {
        let start = self.pieces.first().map_or(0, |p| p.offset);
        let end = self.pieces.last().map_or(0, |p| p.offset + p.data.len());
        (start, end)
    }

    /// Whether the pieces cover `[start, end)` without a gap.
    pub fn covers(&self, start: usize, end: usize) -> bool {
        let mut next = start;
        for piece in &self.pieces {
            if piece.offset > next {
                return false;
            }
            next = next.max(piece.offset + piece.data.len());
        }
        next >= end
    }

    /// Lays the pieces over `buf`, which holds the cluster's bytes from `base` on.
    /// Pieces (or parts) outside the buffer are skipped.
    pub fn lay_over(&self, buf: &mut [u8], base: usize) {
        for piece in &self.pieces {
            let Some(start) = piece.offset.checked_sub(base) else {
                continue;
            };
            if let Some(target) = buf.get_mut(start..start + piece.data.len()) {
                target.copy_from_slice(piece.data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(list: &[(u64, usize)]) -> Vec<GuestWrite> {
        list.iter()
            .map(|&(offset, len)| (offset, vec![offset as u8; len]))
            .collect()
    }

    #[test]
    fn writes_outside_the_disk_or_overlapping_are_rejected() {
        let past = writes(&[(90, 11)]);
        assert_eq!(
            GuestWrites::validate(&past, &[], 100).unwrap_err(),
            PatchError::OutOfRange {
                offset: 90,
                len: 11,
                size: 100
            }
        );
        let wrap = vec![(u64::MAX, vec![1u8])];
        assert!(GuestWrites::validate(&wrap, &[], 100).is_err());
        let overlap = writes(&[(50, 10), (10, 41)]);
        assert_eq!(
            GuestWrites::validate(&overlap, &[], 100).unwrap_err(),
            PatchError::Overlap {
                first: 10,
                first_len: 41,
                second: 50
            }
        );
        let adjacent = writes(&[(50, 10), (10, 40), (0, 0), (100, 0)]);
        let ok = GuestWrites::validate(&adjacent, &[], 100).unwrap();
        assert_eq!(ok.sorted().len(), 2, "empty writes are dropped");
        assert_eq!(ok.total_bytes(), 50);
    }

    #[test]
    fn writes_are_cut_at_cluster_boundaries() {
        let list = writes(&[(1000, 100), (500, 600)]);
        let err = GuestWrites::validate(&list, &[], 4096).unwrap_err();
        assert!(matches!(err, PatchError::Overlap { .. }));
        let list = writes(&[(1100, 2000), (500, 600)]);
        let ok = GuestWrites::validate(&list, &[], 4096).unwrap();
        let patches = ok.by_cluster(10);
        let shape: Vec<(u64, Vec<(usize, usize)>)> = patches
            .iter()
            .map(|p| {
                (
                    p.cluster,
                    p.pieces.iter().map(|x| (x.offset, x.data.len())).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, vec![(500, 524)]),
                (1, vec![(0, 76), (76, 948)]),
                (2, vec![(0, 1024)]),
                (3, vec![(0, 28)]),
            ]
        );
        assert!(patches[1].covers(0, 1024));
        assert!(!patches[0].covers(0, 1024));
        assert!(patches[3].covers(0, 28));
        assert_eq!(patches[0].span(), (500, 1024));
    }

    #[test]
    fn runs_of_zeros_are_pieces_of_the_zero_buffer() {
        let list = writes(&[(10, 5)]);
        let ok = GuestWrites::validate(&list, &[(100, 200_000), (0, 0)], 1 << 20).unwrap();
        let shape: Vec<(u64, usize)> = ok.sorted().iter().map(|(at, d)| (*at, d.len())).collect();
        assert_eq!(
            shape,
            [
                (10, 5),
                (100, 65536),
                (65636, 65536),
                (131_172, 65536),
                (196_708, 3392)
            ]
        );
        assert!(ok.sorted()[1..]
            .iter()
            .all(|(_, d)| d.iter().all(|&b| b == 0)));
        assert_eq!(ok.total_bytes(), 200_005);
        let err = GuestWrites::validate(&list, &[(0, 11)], 100).unwrap_err();
        assert!(matches!(err, PatchError::Overlap { .. }), "{err:?}");
        let err = GuestWrites::validate(&[], &[(90, 11)], 100).unwrap_err();
        assert!(matches!(err, PatchError::OutOfRange { .. }), "{err:?}");
        assert!(GuestWrites::validate(&[], &[(u64::MAX, 2)], 100).is_err());
    }

    #[test]
    fn pieces_are_laid_over_a_partial_buffer() {
        let list = vec![(4u64, vec![1u8, 2]), (10, vec![3])];
        let ok = GuestWrites::validate(&list, &[], 16).unwrap();
        let patches = ok.by_cluster(2);
        assert_eq!((patches[0].cluster, patches[1].cluster), (1, 2));
        let mut buf = vec![0u8; 4];
        patches[0].lay_over(&mut buf, 0);
        assert_eq!(buf, [1, 2, 0, 0]);
        let mut tail = vec![9u8; 2];
        patches[1].lay_over(&mut tail, 1);
        assert_eq!(tail, [9, 3]);
        let mut short = vec![9u8; 1];
        patches[1].lay_over(&mut short, 0);
        assert_eq!(short, [9], "a piece past the buffer is skipped");
    }
}
