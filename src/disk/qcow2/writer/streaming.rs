//! [`StreamingWriter`]: writes a planned qcow2 image front to back through any
//! sequential [`Write`]: all metadata first, then the data clusters in guest order.
//!
//! Owns only the order of the bytes and the check that data arrives exactly as the
//! [`Layout`] planned it; it never seeks, never reads and never compresses.

use std::io::Write;
use std::path::PathBuf;

use super::plan::Layout;
use crate::disk::{DiskError, Result};

/// Writes an image planned by [`Layout::plan`] to a sequential sink.
#[derive(Debug)]
pub struct StreamingWriter<W: Write> {
    sink: W,
    name: PathBuf,
    layout: Layout,
    /// Index of the run the next data cluster belongs to.
    run: usize,
    /// The guest cluster whose data must come next.
    next_cluster: u64,
    bytes_written: u64,
}

impl<W: Write> StreamingWriter<W> {
    /// Writes the header and every metadata table to `sink` (named `name` in errors),
    /// leaving the writer ready for the data clusters.
    pub fn start(sink: W, name: impl Into<PathBuf>, layout: Layout) -> Result<Self> {
        let next_cluster = layout.map().runs().first().map_or(0, |run| run.start);
        let mut writer = Self {
            sink,
            name: name.into(),
            layout,
            run: 0,
            next_cluster,
            bytes_written: 0,
        };
        let (sink, name, written) = (&mut writer.sink, &writer.name, &mut writer.bytes_written);
        writer.layout.emit_metadata(|cluster| {
            sink.write_all(cluster)
                .map_err(|e| DiskError::io("write", name.clone(), e))?;
            *written += cluster.len() as u64;
            Ok(())
        })?;
        Ok(writer)
    }

    /// Bytes handed to the sink so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The plan being written.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Writes the data of guest clusters `first_cluster..` (`data` holds whole clusters;
    /// the last cluster of the disk is zero-padded by the caller). They must be the next
    /// clusters of the allocation map, inside one run.
    pub fn write_clusters(&mut self, first_cluster: u64, data: &[u8]) -> Result<()> {
        let cluster = self.layout.format.cluster_size();
        let count = data.len() as u64 / cluster;
        let run = self.layout.map().runs().get(self.run).cloned();
        let fits = run
            .as_ref()
            .is_some_and(|run| first_cluster + count <= run.end);
        if data.len() as u64 % cluster != 0 || first_cluster != self.next_cluster || !fits {
            return Err(DiskError::InvalidRequest(format!(
                "qcow2 writer: got {} bytes for guest cluster {first_cluster}, expected whole \
                 clusters from {} inside the run {run:?}",
                data.len(),
                self.next_cluster
            )));
        }
        self.sink
            .write_all(data)
            .map_err(|e| DiskError::io("write", self.name.clone(), e))?;
        self.bytes_written += data.len() as u64;
        self.next_cluster += count;
        if run.is_some_and(|run| self.next_cluster == run.end) {
            self.run += 1;
            if let Some(next) = self.layout.map().runs().get(self.run) {
                self.next_cluster = next.start;
            }
        }
        Ok(())
    }

    /// Checks that every planned cluster was written, flushes, and returns the sink and
    /// the number of bytes written (the file size).
    pub fn finish(mut self) -> Result<(W, u64)> {
        if self.run < self.layout.map().runs().len() {
            return Err(DiskError::InvalidRequest(format!(
                "qcow2 writer finished before guest cluster {} was written",
                self.next_cluster
            )));
        }
        self.sink
            .flush()
            .map_err(|e| DiskError::io("write", self.name.clone(), e))?;
        debug_assert_eq!(self.bytes_written, self.layout.file_size());
        Ok((self.sink, self.bytes_written))
    }
}
