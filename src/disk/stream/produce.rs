//! [`StreamPlan::produce`]: the output bytes, front to back, from one sequential read of
//! the source file: the metadata of the planned layout, then each data cluster in plan
//! order (source bytes, inflated when compressed, edits laid over them).
//!
//! Memory: one output cluster, the reader's window (at most one compressed cluster's
//! span) and a skip buffer. Owns the order of reads and writes; never seeks.

use std::io::{Read, Write};
use std::path::Path;

use super::plan::{GuestWrite, Piece, StreamPlan};
use super::window::Window;
use crate::disk::qcow2::decompress::decompress_cluster;
use crate::disk::{DiskError, Result};

/// What one production moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// Bytes read from the source (its whole length).
    pub source_bytes: u64,
    /// Bytes written (the planned output length).
    pub output_bytes: u64,
    /// Output data clusters (compressed ones inflated, edited-only ones included).
    pub data_clusters: u64,
}

impl StreamPlan {
    /// Writes the output to `sink`, reading the source file once from byte 0 through
    /// `source`, to its end. `name` names the output in errors. A source shorter than
    /// planned, or whose bytes do not inflate, is an error.
    pub fn produce(
        &self,
        source: impl Read,
        mut sink: impl Write,
        name: &Path,
    ) -> Result<Produced> {
        let write_error = |e| DiskError::io("write", name, e);
        let mut written = 0u64;
        let mut slot_cursor = SlotCursor::new(&self.order);
        self.layout.emit_metadata_with_slots(
            |guest| slot_cursor.slot_of(guest),
            |cluster| {
                written += cluster.len() as u64;
                sink.write_all(cluster).map_err(write_error)
            },
        )?;
        let size = self.layout.format.cluster_size();
        let read_error = |e| DiskError::io("read the source of", name, e);
        let mut window = Window::new(source);
        let mut cluster = vec![0u8; size as usize];
        for &(guest, piece) in &self.order {
            cluster.fill(0);
            match piece {
                Piece::Data { host, len } => {
                    let bytes = window.get(host, len as usize).map_err(read_error)?;
                    if bytes.len() as u64 != len {
                        return Err(self.short_source(host + bytes.len() as u64));
                    }
                    cluster[..bytes.len()].copy_from_slice(bytes);
                }
                Piece::Compressed { host, max_len } => {
                    // The descriptor may run past the file by less than a sector: the
                    // codec decides whether what is there suffices.
                    let bytes = window.get(host, max_len as usize).map_err(read_error)?;
                    decompress_cluster(self.compression, bytes, &mut cluster).map_err(
                        |reason| {
                            DiskError::InvalidRequest(format!(
                                "source compressed cluster at host offset {host:#x}: {reason}"
                            ))
                        },
                    )?;
                }
                Piece::Edited => {}
            }
            lay_writes(&self.writes, guest * size, &mut cluster);
            sink.write_all(&cluster).map_err(write_error)?;
            written += size;
        }
        let source_bytes = window.finish().map_err(read_error)?;
        if source_bytes != self.source_size {
            return Err(self.short_source(source_bytes));
        }
        sink.flush().map_err(write_error)?;
        if written != self.output_len() {
            return Err(DiskError::InvalidRequest(format!(
                "streamed {written} bytes but planned {}",
                self.output_len()
            )));
        }
        Ok(Produced {
            source_bytes,
            output_bytes: written,
            data_clusters: self.order.len() as u64,
        })
    }

    fn short_source(&self, at: u64) -> DiskError {
        DiskError::InvalidRequest(format!(
            "the source stream delivered {at} bytes where {} were expected",
            self.source_size
        ))
    }
}

/// Copies the parts of `writes` (sorted, not overlapping) inside the cluster starting
/// at guest byte `start` into `cluster`.
fn lay_writes(writes: &[GuestWrite], start: u64, cluster: &mut [u8]) {
    let end = start + cluster.len() as u64;
    let before_end = writes.partition_point(|(offset, _)| *offset < end);
    for (offset, data) in writes[..before_end].iter().rev() {
        let write_end = offset + data.len() as u64;
        if write_end <= start {
            break; // sorted and disjoint: every earlier write ends earlier still
        }
        let from = start.max(*offset);
        let to = end.min(write_end);
        cluster[(from - start) as usize..(to - start) as usize]
            .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
    }
}

/// Answers "which slot holds guest cluster G" for ascending G, from the plan order.
struct SlotCursor {
    /// `(guest cluster, slot)` sorted by guest cluster.
    by_guest: Vec<(u64, u64)>,
    next: usize,
}

impl SlotCursor {
    fn new(order: &[(u64, Piece)]) -> Self {
        let mut by_guest: Vec<(u64, u64)> = order
            .iter()
            .enumerate()
            .map(|(slot, (guest, _))| (*guest, slot as u64))
            .collect();
        by_guest.sort_unstable();
        Self { by_guest, next: 0 }
    }

    fn slot_of(&mut self, guest: u64) -> Option<u64> {
        while self
            .by_guest
            .get(self.next)
            .is_some_and(|(g, _)| *g < guest)
        {
            self.next += 1;
        }
        match self.by_guest.get(self.next) {
            Some(&(g, slot)) if g == guest => Some(slot),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_laid_over_the_clusters_they_touch() {
        let writes = vec![(2, vec![1u8; 3]), (7, vec![2u8; 4]), (20, vec![3u8; 2])];
        let mut cluster = vec![0u8; 8];
        lay_writes(&writes, 0, &mut cluster);
        assert_eq!(cluster, [0, 0, 1, 1, 1, 0, 0, 2]);
        let mut cluster = vec![0u8; 8];
        lay_writes(&writes, 8, &mut cluster);
        assert_eq!(cluster, [2, 2, 2, 0, 0, 0, 0, 0]);
    }
}
