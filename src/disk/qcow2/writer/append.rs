//! [`AppendWriter`]: writes a qcow2 image whose cluster sizes are not known in advance
//! (compressed output), appending everything and writing the header last.
//!
//! Layout, in file order: the header cluster (written last), then data as it arrives
//! (compressed clusters packed byte by byte, plain clusters cluster-aligned), with each
//! L2 table appended once every guest cluster it maps has been seen and each refcount
//! block appended once the append position has moved past the clusters it counts; at
//! the end the L1 table, the last refcount blocks and the refcount table. Memory stays
//! bounded: one L2 table, the refcounts of the clusters not yet covered by a written
//! block, the L1 table and the refcount table (both capped by QEMU's limits).
//!
//! Owns the on-disk placement only; compressing is the caller's job.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::{checked_table_clusters, Qcow2Format};
use crate::disk::qcow2::entries::{L1Entry, L2Entry};
use crate::disk::qcow2::limits::{MAX_L1_BYTES, MAX_REFCOUNT_TABLE_BYTES};
use crate::disk::{DiskError, Result};

/// The 512-byte sectors compressed-cluster descriptors count in.
const SECTOR: u64 = 512;

/// The bytes of one guest cluster, as the writer should store them.
#[derive(Debug, Clone, Copy)]
pub enum ClusterPayload<'a> {
    /// A compressed stream of fewer bytes than a cluster.
    Compressed(&'a [u8]),
    /// A whole cluster stored as is.
    Plain(&'a [u8]),
}

/// Appends a qcow2 image to a seekable sink; see the module documentation.
#[derive(Debug)]
pub struct AppendWriter<W: Write + Seek> {
    sink: W,
    name: PathBuf,
    format: Qcow2Format,
    virtual_size: u64,
    l1_entries: u64,
    /// Next free byte of the file.
    position: u64,
    l1: Vec<u64>,
    /// The L2 table being filled: its L1 index and entries.
    l2: Option<(u64, Vec<u64>)>,
    /// Guest cluster last written, to enforce ascending order.
    last_cluster: Option<u64>,
    refcounts: RefcountWindow,
    /// Host offsets of the refcount blocks written so far.
    reftable: Vec<u64>,
}

impl<W: Write + Seek> AppendWriter<W> {
    /// Starts an image of `virtual_size` bytes on `sink` (named `name` in errors),
    /// which must be empty and positioned at 0.
    pub fn start(
        sink: W,
        name: impl Into<PathBuf>,
        format: Qcow2Format,
        virtual_size: u64,
    ) -> Result<Self> {
        let l1_entries = format.l1_entries(virtual_size)?;
        checked_table_clusters(l1_entries, format.cluster_size(), MAX_L1_BYTES, "L1")?;
        let mut writer = Self {
            sink,
            name: name.into(),
            format,
            virtual_size,
            l1_entries,
            position: 0,
            l1: vec![0; l1_entries as usize],
            l2: None,
            last_cluster: None,
            refcounts: RefcountWindow::new(format.refcounts_per_block()),
            reftable: Vec::new(),
        };
        // A placeholder for the header, which is written once the tables are placed.
        writer.append_cluster(&vec![0u8; format.cluster_size() as usize])?;
        Ok(writer)
    }

    /// Stores guest cluster `guest_cluster` (ascending order; clusters never stored
    /// read as zeros).
    pub fn write_cluster(&mut self, guest_cluster: u64, payload: ClusterPayload<'_>) -> Result<()> {
        let cluster = self.format.cluster_size();
        if self.last_cluster.is_some_and(|last| guest_cluster <= last)
            || guest_cluster >= self.virtual_size.div_ceil(cluster)
        {
            return Err(self.misuse(format!(
                "guest cluster {guest_cluster} out of order or range"
            )));
        }
        self.last_cluster = Some(guest_cluster);
        let entries_per_l2 = self.format.entries_per_l2();
        let l1_index = guest_cluster / entries_per_l2;
        if self
            .l2
            .as_ref()
            .is_some_and(|(index, _)| *index != l1_index)
        {
            self.flush_l2()?;
        }
        let entry = match payload {
            ClusterPayload::Plain(data) if data.len() as u64 == cluster => {
                L2Entry::encode_standard(self.append_cluster(data)?, true)
            }
            ClusterPayload::Compressed(data)
                if !data.is_empty() && (data.len() as u64) < cluster =>
            {
                self.append_compressed(data)?
            }
            _ => return Err(self.misuse("cluster payload of the wrong size".to_owned())),
        };
        let (_, table) = self
            .l2
            .get_or_insert_with(|| (l1_index, vec![0; entries_per_l2 as usize]));
        table[(guest_cluster % entries_per_l2) as usize] = entry;
        self.flush_completed_refblocks()
    }

    /// Writes the remaining metadata and the header, flushes, and returns the sink and
    /// the file size.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let cluster = self.format.cluster_size();
        self.flush_l2()?;
        self.flush_completed_refblocks()?;
        let l1_offset = if self.l1.is_empty() {
            0
        } else {
            let l1 = std::mem::take(&mut self.l1);
            self.append_table(&l1)?
        };
        self.flush_completed_refblocks()?;
        // The last refcount blocks and the refcount table count themselves: find the
        // fixed point, then count them before writing any.
        self.pad_to_cluster()?;
        let first = self.position / cluster;
        let written = self.reftable.len() as u64;
        let (mut blocks, mut table) = (0u64, 0u64);
        loop {
            let end = first + blocks + table;
            let total_blocks = end.div_ceil(self.format.refcounts_per_block());
            let table_clusters = checked_table_clusters(
                total_blocks,
                cluster,
                MAX_REFCOUNT_TABLE_BYTES,
                "refcount",
            )?;
            let next = (total_blocks - written, table_clusters);
            if next == (blocks, table) {
                break;
            }
            (blocks, table) = next;
        }
        for host in first..first + blocks + table {
            self.refcounts.increment(host)?;
        }
        for _ in 0..blocks {
            let block = self.refcounts.take_block();
            self.reftable.push(self.position);
            self.write_raw(&block)?;
        }
        let reftable_offset = self.position;
        let reftable = std::mem::take(&mut self.reftable);
        self.write_table(&reftable, table)?;
        let header = self.format.header_cluster(
            self.virtual_size,
            self.l1_entries,
            l1_offset,
            reftable_offset,
            table,
        )?;
        let io = |e| DiskError::io("write", self.name.clone(), e);
        self.sink.seek(SeekFrom::Start(0)).map_err(io)?;
        self.sink.write_all(&header).map_err(io)?;
        self.sink.flush().map_err(io)?;
        Ok((self.sink, self.position))
    }

    fn misuse(&self, detail: String) -> DiskError {
        DiskError::InvalidRequest(format!(
            "qcow2 append writer for {}: {detail}",
            self.name.display()
        ))
    }

    /// Appends the finished L2 table (if any) and points its L1 entry at it.
    fn flush_l2(&mut self) -> Result<()> {
        if let Some((index, table)) = self.l2.take() {
            let offset = self.append_table(&table)?;
            if let Some(slot) = self.l1.get_mut(index as usize) {
                *slot = L1Entry::encode(offset, true);
            }
        }
        Ok(())
    }

    /// Appends every refcount block whose clusters can no longer change.
    fn flush_completed_refblocks(&mut self) -> Result<()> {
        while self
            .refcounts
            .is_complete_before(self.position / self.format.cluster_size())
        {
            let block = self.refcounts.take_block();
            let offset = self.append_cluster(&block)?;
            self.reftable.push(offset);
        }
        Ok(())
    }

    /// Appends a compressed stream byte-packed after the previous data, counting a
    /// reference for every host cluster its sectors touch (as `qemu-img check` does).
    fn append_compressed(&mut self, data: &[u8]) -> Result<u64> {
        let cluster = self.format.cluster_size();
        if self.refcounts.get(self.position / cluster) == u16::MAX {
            self.pad_to_cluster()?; // never overflow a 16-bit refcount
        }
        let offset = self.position;
        let entry =
            L2Entry::encode_compressed(offset, data.len() as u64, self.format.cluster_bits())
                .ok_or_else(|| {
                    self.misuse(format!(
                        "compressed cluster at {offset:#x} not representable"
                    ))
                })?;
        let sectors_end = (offset + data.len() as u64).next_multiple_of(SECTOR);
        for host in offset / cluster..sectors_end.div_ceil(cluster) {
            self.refcounts.increment(host)?;
        }
        self.write_raw(data)?;
        Ok(entry)
    }

    /// Appends `data` (whole clusters) at the next cluster boundary, counting one
    /// reference per cluster. Returns its offset.
    fn append_cluster(&mut self, data: &[u8]) -> Result<u64> {
        self.pad_to_cluster()?;
        let offset = self.position;
        let cluster = self.format.cluster_size();
        for host in offset / cluster..(offset + data.len() as u64).div_ceil(cluster) {
            self.refcounts.increment(host)?;
        }
        self.write_raw(data)?;
        Ok(offset)
    }

    /// Appends a table of u64 entries padded to whole clusters; returns its offset.
    fn append_table(&mut self, entries: &[u64]) -> Result<u64> {
        let cluster = self.format.cluster_size();
        let clusters = (entries.len() as u64 * 8).div_ceil(cluster);
        self.pad_to_cluster()?;
        let offset = self.position;
        for host in offset / cluster..offset / cluster + clusters {
            self.refcounts.increment(host)?;
        }
        self.write_table(entries, clusters)?;
        Ok(offset)
    }

    /// Writes `entries` big-endian, zero-padded to `clusters` clusters (already counted).
    fn write_table(&mut self, entries: &[u64], clusters: u64) -> Result<()> {
        let mut bytes = Vec::with_capacity((clusters * self.format.cluster_size()) as usize);
        entries
            .iter()
            .for_each(|e| bytes.extend_from_slice(&e.to_be_bytes()));
        bytes.resize((clusters * self.format.cluster_size()) as usize, 0);
        self.write_raw(&bytes)
    }

    fn pad_to_cluster(&mut self) -> Result<()> {
        let gap = self.position.next_multiple_of(self.format.cluster_size()) - self.position;
        self.write_raw(&vec![0u8; gap as usize])
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.sink
            .write_all(bytes)
            .map_err(|e| DiskError::io("write", self.name.clone(), e))?;
        self.position += bytes.len() as u64;
        Ok(())
    }
}

/// Refcounts of the host clusters from the first one not yet covered by a written
/// refcount block (always a block boundary) up to the append position.
#[derive(Debug)]
struct RefcountWindow {
    per_block: u64,
    base: u64,
    counts: Vec<u16>,
}

impl RefcountWindow {
    fn new(per_block: u64) -> Self {
        Self {
            per_block,
            base: 0,
            counts: Vec::new(),
        }
    }

    fn get(&self, host_cluster: u64) -> u16 {
        host_cluster
            .checked_sub(self.base)
            .and_then(|index| self.counts.get(index as usize).copied())
            .unwrap_or(0)
    }

    fn increment(&mut self, host_cluster: u64) -> Result<()> {
        let index = host_cluster.checked_sub(self.base).ok_or_else(|| {
            DiskError::InvalidRequest(format!(
                "refcount of host cluster {host_cluster} changed after its block was written"
            ))
        })? as usize;
        if index >= self.counts.len() {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] = self.counts[index].checked_add(1).ok_or_else(|| {
            DiskError::InvalidRequest(format!("refcount of host cluster {host_cluster} overflows"))
        })?;
        Ok(())
    }

    /// Whether the first pending block is final, given that no cluster before
    /// `first_open_cluster` will be counted again.
    fn is_complete_before(&self, first_open_cluster: u64) -> bool {
        first_open_cluster >= self.base + self.per_block
    }

    /// Encodes the first pending block and moves the window past it.
    fn take_block(&mut self) -> Vec<u8> {
        let mut block = Vec::with_capacity(self.per_block as usize * 2);
        let take = self.counts.len().min(self.per_block as usize);
        for count in self.counts.drain(..take) {
            block.extend_from_slice(&count.to_be_bytes());
        }
        block.resize(self.per_block as usize * 2, 0);
        self.base += self.per_block;
        block
    }
}
