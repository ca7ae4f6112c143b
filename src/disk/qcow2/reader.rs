//! [`Qcow2Image`]: a qcow2 file read as a [`VirtualDisk`].
//!
//! Owns the I/O that moves guest bytes: one positioned read per run of clusters that is
//! contiguous on the host, zeros for zero and unallocated clusters, and inflating
//! compressed clusters (in parallel when one request spans several). It refuses, naming the feature, images it cannot read correctly
//! (backing files, encryption, external data files, extended L2, unknown incompatible
//! features). Where clusters live is asked of [`Layout`]; this module never interprets
//! table entries itself and never writes.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::decompress::decompress_cluster;
use super::header::incompatible;
use super::layout::{Layout, RunKind};
use super::Header;
use crate::disk::{DiskError, Extent, ReadAt, Result, VirtualDisk};

/// An open qcow2 image, readable from several threads at once.
pub struct Qcow2Image {
    layout: Layout,
    /// The last cluster inflated, so reads that split a compressed cluster into several
    /// requests inflate it once.
    last_inflated: Mutex<Option<InflatedCluster>>,
}

/// Part or all of one compressed cluster to be read into `chunk`.
struct CompressedRead<'a> {
    chunk: &'a mut [u8],
    host_offset: u64,
    max_len: u64,
    offset_in_cluster: u64,
}

struct InflatedCluster {
    host_offset: u64,
    data: Arc<[u8]>,
}

impl fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl Qcow2Image {
    /// Opens the qcow2 image in `source` (`path` names it in messages): reads and
    /// validates the header and L1 table, and refuses features imgferry cannot read.
    /// Dirty images (lazy refcounts not yet flushed) are readable: their mappings are
    /// valid, only refcounts may be stale.
    pub fn open(source: Arc<dyn ReadAt>, path: &Path) -> Result<Self> {
        let header = Header::read(source.as_ref(), path)?;
        refuse_unsupported(&header, path)?;
        Ok(Self {
            layout: Layout::open(source, path, header)?,
            last_inflated: Mutex::new(None),
        })
    }

    /// The image's header.
    pub fn header(&self) -> &Header {
        self.layout.header()
    }

    /// The metadata walk, for callers that need cluster-level answers.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Fills `read.chunk` from its compressed cluster. A whole cluster is inflated
    /// straight into the caller's buffer; part of one goes through the one-slot cache.
    fn read_compressed(&self, read: CompressedRead<'_>) -> Result<()> {
        if read.offset_in_cluster == 0 && read.chunk.len() as u64 == self.header().cluster_size() {
            return self.inflate_into(read.host_offset, read.max_len, read.chunk);
        }
        let cluster = self.inflate_cached(read.host_offset, read.max_len)?;
        let start = read.offset_in_cluster as usize;
        let bytes = start
            .checked_add(read.chunk.len())
            .and_then(|end| cluster.get(start..end))
            .ok_or_else(|| {
                DiskError::InvalidRequest(format!(
                    "read of {} bytes at {start} inside a compressed cluster",
                    read.chunk.len()
                ))
            })?;
        read.chunk.copy_from_slice(bytes);
        Ok(())
    }

    /// The inflated cluster whose compressed data starts at `host_offset`, from the
    /// one-slot cache when it was the last one inflated.
    fn inflate_cached(&self, host_offset: u64, max_len: u64) -> Result<Arc<[u8]>> {
        if let Some(last) = self.lock_last().as_ref() {
            if last.host_offset == host_offset {
                return Ok(Arc::clone(&last.data));
            }
        }
        let mut cluster = vec![0u8; self.header().cluster_size() as usize];
        self.inflate_into(host_offset, max_len, &mut cluster)?;
        let data: Arc<[u8]> = cluster.into();
        *self.lock_last() = Some(InflatedCluster {
            host_offset,
            data: Arc::clone(&data),
        });
        Ok(data)
    }

    /// Inflates the compressed cluster at `host_offset` into `out` (one cluster long).
    fn inflate_into(&self, host_offset: u64, max_len: u64, out: &mut [u8]) -> Result<()> {
        let source = self.layout.source();
        let path = self.layout.path();
        // run_at guarantees host_offset < file size. The descriptor's length is rounded
        // up to whole sectors, so it may run past the end of the file by less than a
        // sector: read what is there, the codec decides whether it suffices.
        let available = source.size().saturating_sub(host_offset);
        let mut compressed = vec![0u8; max_len.min(available) as usize];
        source
            .read_exact_at(&mut compressed, host_offset)
            .map_err(|e| DiskError::io("read", path, e))?;
        decompress_cluster(self.header().compression_type, &compressed, out).map_err(|reason| {
            DiskError::malformed(
                path,
                "qcow2",
                format!("compressed cluster at host offset {host_offset:#x}: {reason}"),
            )
        })
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, Option<InflatedCluster>> {
        // Only immutable clusters are stored, so a poisoned lock holds nothing broken.
        self.last_inflated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl VirtualDisk for Qcow2Image {
    fn virtual_size(&self) -> u64 {
        self.header().size
    }

    fn extents(&self, start: u64, len: u64) -> Result<Vec<Extent>> {
        self.layout.extents(start, len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let len = buf.len() as u64;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.virtual_size())
        {
            return Err(DiskError::InvalidRequest(format!(
                "read of {len} bytes at {offset} lies outside the virtual disk of {} bytes",
                self.virtual_size()
            )));
        }
        // Data and zero runs are served in order; compressed clusters are collected and
        // inflated in parallel afterwards, as each is independent CPU work.
        let mut compressed = Vec::new();
        let mut rest = buf;
        let mut pos = offset;
        while !rest.is_empty() {
            let run = self.layout.run_at(pos, rest.len() as u64)?;
            let len = (run.len as usize).min(rest.len());
            let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = tail;
            match run.kind {
                RunKind::Unallocated | RunKind::Zero => chunk.fill(0),
                RunKind::Data { host_offset } => self
                    .layout
                    .source()
                    .read_exact_at(chunk, host_offset)
                    .map_err(|e| DiskError::io("read", self.layout.path(), e))?,
                RunKind::Compressed {
                    host_offset,
                    max_len,
                    offset_in_cluster,
                } => compressed.push(CompressedRead {
                    chunk,
                    host_offset,
                    max_len,
                    offset_in_cluster,
                }),
            }
            pos += len as u64;
        }
        if compressed.len() > 1 {
            compressed
                .into_par_iter()
                .try_for_each(|read| self.read_compressed(read))
        } else {
            compressed
                .into_iter()
                .try_for_each(|read| self.read_compressed(read))
        }
    }
}

/// Refuses valid images whose guest content imgferry cannot produce correctly.
fn refuse_unsupported(header: &Header, path: &Path) -> Result<()> {
    if let Some(name) = &header.backing_file {
        return Err(DiskError::unsupported_with_hint(
            path,
            format!("has a backing file {name}; imgferry does not follow backing chains yet"),
            format!(
                "make it standalone first: `qemu-img convert -O qcow2 {} standalone.qcow2`",
                path.display()
            ),
        ));
    }
    if header.crypt_method != 0 {
        let method = match header.crypt_method {
            1 => "AES",
            2 => "LUKS",
            _ => "an unknown method",
        };
        return Err(DiskError::unsupported(
            path,
            format!("is encrypted ({method}); imgferry does not read encrypted images"),
        ));
    }
    let features = header.incompatible_features;
    if features & incompatible::EXTERNAL_DATA_FILE != 0 {
        return Err(DiskError::unsupported(
            path,
            "keeps its data in an external data file, which imgferry does not read",
        ));
    }
    if features & incompatible::EXTENDED_L2 != 0 {
        return Err(DiskError::unsupported(
            path,
            "uses extended L2 entries (subclusters), which imgferry does not read yet",
        ));
    }
    let unknown = features & !incompatible::KNOWN;
    if unknown != 0 {
        return Err(DiskError::unsupported(
            path,
            format!("uses unknown incompatible features {unknown:#x}"),
        ));
    }
    Ok(())
}
