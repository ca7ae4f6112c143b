//! The qcow2 metadata walk: L1 and L2 tables, and what lies at each guest offset.
//!
//! Owns loading the tables (bounds- and alignment-checked), a small bounded LRU cache of
//! L2 tables, and the answers built on them: [`Layout::cluster_mapping`],
//! [`Layout::run_at`] (the longest run of guest bytes with one mapping, so readers can
//! coalesce I/O) and [`Layout::extents`]. It never reads guest data and never writes;
//! moving bytes is the reader's job, and deciding which features are acceptable is the
//! caller's (except extended L2 entries, whose layout this walk does not decode).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::entries::{L1Entry, L2Entry, L2Mapping};
use super::l2_cache::L2Cache;
use super::limits::MAX_L1_BYTES;
use super::Header;
use crate::disk::{DiskError, Extent, ExtentKind, ReadAt, Result};

/// Bytes of L2 tables one open image keeps in memory: with 64 KiB clusters that maps
/// 256 GiB of guest, so a sequential copy of any real image reads each table once,
/// while memory stays bounded however large the image is.
pub const L2_CACHE_BYTES: u64 = 32 << 20;
/// Cap on cached tables whatever their size, so the LRU bookkeeping stays small with
/// 512-byte clusters (4096 tables of 64 entries still map 1 GiB).
const L2_CACHE_MAX_TABLES: usize = 4096;

/// Reads the whole L1 table named by `header`: raw entries, not yet validated (see
/// [`l2_offset_from_l1`]). The table's size and position are checked again here so the
/// function is safe on any header.
pub fn read_l1_table(source: &dyn ReadAt, path: &Path, header: &Header) -> Result<Vec<u64>> {
    let bad = |detail: String| DiskError::malformed(path, "qcow2", detail);
    let len = u64::from(header.l1_size) * 8;
    if len > MAX_L1_BYTES {
        return Err(bad(format!(
            "L1 table of {} entries exceeds the limit of {MAX_L1_BYTES} bytes",
            header.l1_size
        )));
    }
    let offset = header.l1_table_offset;
    if offset
        .checked_add(len)
        .is_none_or(|end| end > source.size())
    {
        return Err(bad(format!(
            "L1 table at {offset:#x} ({len} bytes) lies beyond the end of the file ({} bytes)",
            source.size()
        )));
    }
    read_table(source, path, offset, len, "read the L1 table of")
}

/// Reads the L2 table at `offset`: raw entries. The offset must be cluster-aligned, clear
/// of the header and the whole table inside the file.
pub fn read_l2_table(
    source: &dyn ReadAt,
    path: &Path,
    header: &Header,
    offset: u64,
) -> Result<Vec<u64>> {
    let cluster = header.cluster_size();
    check_l2_position(path, cluster, source.size(), offset, "")?;
    read_table(source, path, offset, cluster, "read an L2 table of")
}

/// Decodes L1 entry number `index` (`raw`) into its L2 table offset, `None` when that
/// part of the disk is unallocated, checking the offset the way [`read_l2_table`] does.
pub fn l2_offset_from_l1(
    path: &Path,
    header: &Header,
    file_size: u64,
    index: usize,
    raw: u64,
) -> Result<Option<u64>> {
    let offset = L1Entry::decode(raw).l2_offset;
    if offset == 0 {
        return Ok(None);
    }
    let context = format!(" (L1 entry {index})");
    check_l2_position(path, header.cluster_size(), file_size, offset, &context)?;
    Ok(Some(offset))
}

fn check_l2_position(
    path: &Path,
    cluster: u64,
    file_size: u64,
    offset: u64,
    context: &str,
) -> Result<()> {
    let bad = |detail: String| DiskError::malformed(path, "qcow2", detail);
    if !offset.is_multiple_of(cluster) {
        return Err(bad(format!(
            "L2 table offset {offset:#x}{context} is not cluster-aligned"
        )));
    }
    if offset == 0 {
        return Err(bad(format!("L2 table{context} overlaps the header")));
    }
    if offset
        .checked_add(cluster)
        .is_none_or(|end| end > file_size)
    {
        return Err(bad(format!(
            "L2 table at {offset:#x}{context} lies beyond the end of the file ({file_size} bytes)"
        )));
    }
    Ok(())
}

/// Reads `len` bytes (already bounds-checked, at most a few MiB) as big-endian u64s.
fn read_table(
    source: &dyn ReadAt,
    path: &Path,
    offset: u64,
    len: u64,
    action: &'static str,
) -> Result<Vec<u64>> {
    let mut bytes = vec![0u8; len as usize];
    source
        .read_exact_at(&mut bytes, offset)
        .map_err(|e| DiskError::io(action, path, e))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from_be_bytes(word)
        })
        .collect())
}

/// What a run of guest bytes found by [`Layout::run_at`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Not allocated: reads as zeros.
    Unallocated,
    /// A zero cluster (v3): reads as zeros.
    Zero,
    /// Stored uncompressed and contiguous on the host from `host_offset` (the host byte
    /// of the run's first guest byte); the whole run lies inside the file.
    Data { host_offset: u64 },
    /// Part of one compressed cluster: its data starts at `host_offset` and spans at
    /// most `max_len` bytes; the run starts `offset_in_cluster` bytes into the cluster.
    Compressed {
        host_offset: u64,
        max_len: u64,
        offset_in_cluster: u64,
    },
}

/// A run of guest bytes with one [`RunKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedRun {
    /// Length in bytes (never 0).
    pub len: u64,
    pub kind: RunKind,
}

/// The validated L1 table of an open image plus its cache of L2 tables.
pub struct Layout {
    source: Arc<dyn ReadAt>,
    path: PathBuf,
    header: Header,
    /// L2 table offset per L1 entry covering the virtual size; 0 = unallocated.
    l2_offsets: Vec<u64>,
    cache: Mutex<L2Cache>,
}

impl fmt::Debug for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layout")
            .field("path", &self.path)
            .field("l1_entries", &self.l2_offsets.len())
            .finish_non_exhaustive()
    }
}

impl Layout {
    /// Loads and validates the L1 table of the image `header` describes. Every L1 entry
    /// covering the virtual size must point at a cluster-aligned L2 table inside the file.
    pub fn open(source: Arc<dyn ReadAt>, path: &Path, header: Header) -> Result<Self> {
        if header.extended_l2() {
            return Err(DiskError::unsupported(
                path,
                "uses extended L2 entries (subclusters), which imgferry does not read yet",
            ));
        }
        let needed = header.size.div_ceil(header.bytes_per_l1_entry());
        let mut l1 = read_l1_table(source.as_ref(), path, &header)?;
        if (l1.len() as u64) < needed {
            return Err(DiskError::malformed(
                path,
                "qcow2",
                format!(
                    "L1 table has {} entries but the virtual size needs {needed}",
                    l1.len()
                ),
            ));
        }
        l1.truncate(needed as usize);
        let file_size = source.size();
        for (index, raw) in l1.iter_mut().enumerate() {
            *raw = l2_offset_from_l1(path, &header, file_size, index, *raw)?.unwrap_or(0);
        }
        let capacity =
            (L2_CACHE_BYTES / header.cluster_size()).clamp(1, L2_CACHE_MAX_TABLES as u64);
        Ok(Self {
            source,
            path: path.to_owned(),
            header,
            l2_offsets: l1,
            cache: Mutex::new(L2Cache::new(capacity as usize)),
        })
    }

    /// The image's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The byte source the tables are read from.
    pub fn source(&self) -> &Arc<dyn ReadAt> {
        &self.source
    }

    /// The image's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the L2 entry of the cluster holding `guest_offset` says, undecorated.
    pub fn cluster_mapping(&self, guest_offset: u64) -> Result<L2Mapping> {
        self.check_range(guest_offset, 1)?;
        let per_l1 = self.header.bytes_per_l1_entry();
        let l2_offset = self.l2_offset_at(guest_offset / per_l1)?;
        if l2_offset == 0 {
            return Ok(L2Mapping::Unallocated);
        }
        let table = self.l2_table(l2_offset)?;
        let index = (guest_offset % per_l1) >> self.header.cluster_bits;
        Ok(self.decode(&table, index as usize)?.mapping)
    }

    /// The longest run starting at `guest_offset`, at most `max_len` bytes, whose bytes
    /// share one [`RunKind`] (for data: contiguous on the host too). Runs never cross an
    /// L2 table, and a compressed run never crosses its cluster.
    pub fn run_at(&self, guest_offset: u64, max_len: u64) -> Result<MappedRun> {
        self.check_range(guest_offset, max_len)?;
        if max_len == 0 {
            return Err(DiskError::InvalidRequest("empty run requested".to_owned()));
        }
        let cluster = self.header.cluster_size();
        let per_l1 = self.header.bytes_per_l1_entry();
        let l1_index = guest_offset / per_l1;
        let table_end = (l1_index + 1) * per_l1; // < 2^63: size <= 2^62, per_l1 <= 2^39
        let end = (guest_offset + max_len).min(table_end);
        let l2_offset = self.l2_offset_at(l1_index)?;
        if l2_offset == 0 {
            return Ok(MappedRun {
                len: end - guest_offset,
                kind: RunKind::Unallocated,
            });
        }
        let table = self.l2_table(l2_offset)?;
        let first = ((guest_offset % per_l1) >> self.header.cluster_bits) as usize;
        let offset_in_cluster = guest_offset % cluster;
        let mut run_end = (guest_offset - offset_in_cluster + cluster).min(end);
        let mut next = first + 1;
        let kind = match self.decode(&table, first)?.mapping {
            L2Mapping::Compressed {
                host_offset,
                max_len,
            } => {
                if host_offset >= self.source.size() {
                    return Err(self.bad(format!(
                        "compressed cluster for guest offset {guest_offset:#x} at host offset \
                         {host_offset:#x} points past the end of the file ({} bytes)",
                        self.source.size()
                    )));
                }
                return Ok(MappedRun {
                    len: run_end - guest_offset,
                    kind: RunKind::Compressed {
                        host_offset,
                        max_len,
                        offset_in_cluster,
                    },
                });
            }
            L2Mapping::Standard { host_offset, .. } => {
                if !host_offset.is_multiple_of(cluster) {
                    return Err(self.bad(format!(
                        "data cluster for guest offset {guest_offset:#x} at host offset \
                         {host_offset:#x} is not cluster-aligned"
                    )));
                }
                let mut expected = host_offset + cluster;
                while run_end < end {
                    match self.decode(&table, next)?.mapping {
                        L2Mapping::Standard { host_offset, .. } if host_offset == expected => {}
                        _ => break,
                    }
                    expected += cluster;
                    next += 1;
                    run_end = (run_end + cluster).min(end);
                }
                let start = host_offset + offset_in_cluster;
                let len = run_end - guest_offset;
                if start
                    .checked_add(len)
                    .is_none_or(|e| e > self.source.size())
                {
                    return Err(self.bad(format!(
                        "data cluster for guest offset {guest_offset:#x} at host offset \
                         {host_offset:#x} lies past the end of the file ({} bytes)",
                        self.source.size()
                    )));
                }
                RunKind::Data { host_offset: start }
            }
            L2Mapping::Zero { .. } => {
                while run_end < end
                    && matches!(self.decode(&table, next)?.mapping, L2Mapping::Zero { .. })
                {
                    next += 1;
                    run_end = (run_end + cluster).min(end);
                }
                RunKind::Zero
            }
            L2Mapping::Unallocated => {
                while run_end < end && self.decode(&table, next)?.mapping == L2Mapping::Unallocated
                {
                    next += 1;
                    run_end = (run_end + cluster).min(end);
                }
                RunKind::Unallocated
            }
        };
        Ok(MappedRun {
            len: run_end - guest_offset,
            kind,
        })
    }

    /// The extents of `[start, start + len)`, adjacent ones of the same kind merged.
    /// Walks L2 tables only; reads no guest data.
    pub fn extents(&self, start: u64, len: u64) -> Result<Vec<Extent>> {
        self.check_range(start, len)?;
        let end = start + len;
        let mut extents: Vec<Extent> = Vec::new();
        let mut pos = start;
        while pos < end {
            let run = self.run_at(pos, end - pos)?;
            let kind = match run.kind {
                RunKind::Unallocated => ExtentKind::Unallocated,
                RunKind::Zero => ExtentKind::Zero,
                RunKind::Data { .. } | RunKind::Compressed { .. } => ExtentKind::Data,
            };
            match extents.last_mut() {
                Some(last) if last.kind == kind => last.len += run.len,
                _ => extents.push(Extent {
                    start: pos,
                    len: run.len,
                    kind,
                }),
            }
            pos += run.len;
        }
        Ok(extents)
    }

    fn check_range(&self, start: u64, len: u64) -> Result<()> {
        match start.checked_add(len) {
            Some(end) if end <= self.header.size => Ok(()),
            _ => Err(DiskError::InvalidRequest(format!(
                "range of {len} bytes at {start} lies outside the virtual disk of {} bytes",
                self.header.size
            ))),
        }
    }

    fn l2_offset_at(&self, l1_index: u64) -> Result<u64> {
        usize::try_from(l1_index)
            .ok()
            .and_then(|index| self.l2_offsets.get(index).copied())
            .ok_or_else(|| {
                DiskError::InvalidRequest(format!("L1 index {l1_index} outside the L1 table"))
            })
    }

    fn decode(&self, table: &[u64], index: usize) -> Result<L2Entry> {
        let raw = table
            .get(index)
            .ok_or_else(|| self.bad(format!("L2 index {index} outside the table")))?;
        Ok(L2Entry::decode(
            *raw,
            self.header.cluster_bits,
            self.header.version,
        ))
    }

    fn l2_table(&self, offset: u64) -> Result<Arc<[u64]>> {
        if let Some(table) = self.lock_cache().get(offset) {
            return Ok(table);
        }
        let table: Arc<[u64]> =
            read_l2_table(self.source.as_ref(), &self.path, &self.header, offset)?.into();
        self.lock_cache().insert(offset, Arc::clone(&table));
        Ok(table)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, L2Cache> {
        // The cache holds only immutable tables, so a panic elsewhere cannot corrupt it.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bad(&self, detail: String) -> DiskError {
        DiskError::malformed(&self.path, "qcow2", detail)
    }
}
