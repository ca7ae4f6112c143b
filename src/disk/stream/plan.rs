//! [`StreamPlan`]: which guest clusters the output holds, where each one's bytes come
//! from, and the output [`Layout`] (so its exact length is known before any data).
//!
//! Built from the source qcow2's metadata only (L1/L2 walk through its `ReadAt`, local or
//! remote), or for a raw source from a first scan of its bytes. Memory: one entry per
//! allocated output cluster (24 bytes), plus the edits.

use std::io::Read;

use crate::disk::qcow2::layout::RunKind;
use crate::disk::qcow2::writer::{AllocationMap, Layout, Qcow2Format};
use crate::disk::qcow2::{CompressionType, Qcow2Image};
use crate::disk::{DiskError, Result};

/// Edited guest bytes: `(guest offset, new content)`.
pub type GuestWrite = (u64, Vec<u8>);

/// Where the bytes of one output data cluster come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece {
    /// Stored uncompressed in the source: `len` bytes at `host` (less than a cluster only
    /// for the disk's last, partial cluster).
    Data { host: u64, len: u64 },
    /// A compressed source cluster: at most `max_len` bytes at `host`.
    Compressed { host: u64, max_len: u64 },
    /// No source data (unallocated or a zero cluster): zeros, then the edits.
    Edited,
}

impl Piece {
    /// The source byte this piece starts at (edited clusters have none: they come last).
    fn host(&self) -> Option<u64> {
        match *self {
            Self::Data { host, .. } | Self::Compressed { host, .. } => Some(host),
            Self::Edited => None,
        }
    }
}

/// The planned output; see the module doc.
#[derive(Debug)]
pub struct StreamPlan {
    pub(super) layout: Layout,
    /// Output data clusters in file order: `(guest cluster, source)`.
    pub(super) order: Vec<(u64, Piece)>,
    /// The edits, sorted by guest offset, not overlapping.
    pub(super) writes: Vec<GuestWrite>,
    pub(super) compression: CompressionType,
    pub(super) source_size: u64,
}

impl StreamPlan {
    /// Plans the output of `source` with `writes` laid over it, in `format` (whose
    /// cluster size must be the source's). Writes must lie inside the disk and not
    /// overlap each other.
    pub fn for_qcow2(
        source: &Qcow2Image,
        mut writes: Vec<GuestWrite>,
        format: Qcow2Format,
    ) -> Result<Self> {
        let header = source.header();
        let cluster = header.cluster_size();
        if format.cluster_size() != cluster {
            return Err(DiskError::InvalidRequest(format!(
                "streaming keeps the source's cluster size ({cluster} bytes), not {}",
                format.cluster_size()
            )));
        }
        let size = header.size;
        writes.sort_by_key(|(offset, _)| *offset);
        check_writes(&writes, size)?;
        let layout = source.layout();
        let mut order = Vec::new();
        let mut offset = 0;
        while offset < size {
            let run = layout.run_at(offset, size - offset)?;
            match run.kind {
                RunKind::Data { host_offset } => {
                    let mut at = offset;
                    while at < offset + run.len {
                        let len = cluster.min(size - at);
                        let host = host_offset + (at - offset);
                        order.push((at / cluster, Piece::Data { host, len }));
                        at += len;
                    }
                }
                RunKind::Compressed {
                    host_offset,
                    max_len,
                    offset_in_cluster: 0,
                } => order.push((
                    offset / cluster,
                    Piece::Compressed {
                        host: host_offset,
                        max_len,
                    },
                )),
                RunKind::Compressed { .. } | RunKind::Zero | RunKind::Unallocated => {}
            }
            offset += run.len;
        }
        // Source order: ascending host offset (stable, so shared clusters keep guest
        // order); then the clusters only the edits fill, in guest order.
        order.sort_by_key(|(_, piece)| piece.host());
        let mut sourced: Vec<u64> = order.iter().map(|(guest, _)| *guest).collect();
        sourced.sort_unstable();
        let mut edited: Vec<u64> = writes
            .iter()
            .flat_map(|(at, data)| at / cluster..(at + data.len() as u64).div_ceil(cluster))
            .filter(|guest| sourced.binary_search(guest).is_err())
            .collect();
        edited.dedup();
        order.extend(edited.iter().map(|&guest| (guest, Piece::Edited)));

        let mut guests: Vec<u64> = sourced;
        guests.extend(&edited);
        guests.sort_unstable();
        let mut map = AllocationMap::new();
        for guest in guests {
            map.push_run(guest..guest + 1)?;
        }
        Ok(Self {
            layout: Layout::plan(format, size, map)?,
            order,
            writes,
            compression: header.compression_type,
            source_size: layout.source().size(),
        })
    }

    /// Plans the qcow2 output of a raw source of `size` bytes, scanning it once through
    /// `scan` (a first sequential read: which clusters are zero is unknown until they
    /// are read, and the layout must be known before the output's first byte). Only
    /// clusters holding a non-zero byte, or touched by `writes`, are allocated; the
    /// output keeps guest order, which for raw is the source's order.
    pub fn for_raw(
        mut scan: impl Read,
        size: u64,
        mut writes: Vec<GuestWrite>,
        format: Qcow2Format,
    ) -> Result<Self> {
        let cluster = format.cluster_size();
        writes.sort_by_key(|(offset, _)| *offset);
        check_writes(&writes, size)?;
        let mut order = Vec::new();
        let mut buf = vec![0u8; cluster as usize];
        let mut at = 0;
        let mut edits = writes.iter().peekable();
        while at < size {
            let len = cluster.min(size - at);
            scan.read_exact(&mut buf[..len as usize]).map_err(|e| {
                DiskError::InvalidRequest(format!("scanning the raw source at byte {at}: {e}"))
            })?;
            while edits.next_if(|(o, d)| o + d.len() as u64 <= at).is_some() {}
            let edited = edits.peek().is_some_and(|(offset, _)| *offset < at + len);
            let guest = at / cluster;
            if buf[..len as usize].iter().any(|&b| b != 0) {
                order.push((guest, Piece::Data { host: at, len }));
            } else if edited {
                order.push((guest, Piece::Edited));
            }
            at += len;
        }
        let mut map = AllocationMap::new();
        for (guest, _) in &order {
            map.push_run(*guest..*guest + 1)?;
        }
        Ok(Self {
            layout: Layout::plan(format, size, map)?,
            order,
            writes,
            compression: format.compression_type(),
            source_size: size,
        })
    }

    /// The exact length of the output, in bytes.
    pub fn output_len(&self) -> u64 {
        self.layout.file_size()
    }

    /// The output layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Output data clusters with no source data (filled by the edits alone).
    pub fn edited_only_clusters(&self) -> usize {
        self.order
            .iter()
            .filter(|(_, piece)| *piece == Piece::Edited)
            .count()
    }
}

/// Writes must lie inside the disk and not overlap (sorted by offset).
fn check_writes(writes: &[GuestWrite], size: u64) -> Result<()> {
    let mut end_before = 0;
    for (offset, data) in writes {
        let end = offset.checked_add(data.len() as u64).filter(|&e| e <= size);
        match end {
            Some(end) if *offset >= end_before => end_before = end,
            _ => {
                return Err(DiskError::InvalidRequest(format!(
                    "edit of {} bytes at guest offset {offset} overlaps another or ends past the disk ({size} bytes)",
                    data.len()
                )))
            }
        }
    }
    Ok(())
}
