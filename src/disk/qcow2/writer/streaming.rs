//! [`StreamingWriter`]: writes a planned qcow2 image front to back through any
//! sequential [`Write`]: all metadata first, then the data clusters in guest order.
//!
//! Owns only the order of the bytes and the check that data arrives exactly as the
//! [`Layout`] planned it; it never seeks, never reads and never compresses.

use std::io::Write;
use std::path::PathBuf;

use super::plan::Layout;
use crate::disk::buffers::{ChunkSink, SharedBuffer};
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

    /// The plan being written.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Writes the data of guest clusters `first_cluster..` (`data` holds whole clusters;
    /// the last cluster of the disk is zero-padded by the caller). They must be the next
    /// clusters of the allocation map, inside one run.
    pub fn write_clusters(&mut self, first_cluster: u64, data: &[u8]) -> Result<()> {
        self.expect_clusters(first_cluster, data.len())?;
        self.sink
            .write_all(data)
            .map_err(|e| DiskError::io("write", self.name.clone(), e))?;
        self.advance(data.len());
        Ok(())
    }

    /// Checks that `len` bytes of data for guest clusters `first_cluster..` are what
    /// the plan expects next.
    fn expect_clusters(&self, first_cluster: u64, len: usize) -> Result<()> {
        let cluster = self.layout.format.cluster_size();
        let count = len as u64 / cluster;
        let run = self.layout.map().runs().get(self.run);
        let fits = run.is_some_and(|run| first_cluster + count <= run.end);
        if !(len as u64).is_multiple_of(cluster) || first_cluster != self.next_cluster || !fits {
            return Err(DiskError::InvalidRequest(format!(
                "qcow2 writer: got {len} bytes for guest cluster {first_cluster}, expected whole \
                 clusters from {} inside the run {run:?}",
                self.next_cluster
            )));
        }
        Ok(())
    }

    /// Moves past `len` bytes of data that were accepted by [`Self::expect_clusters`].
    fn advance(&mut self, len: usize) {
        self.bytes_written += len as u64;
        self.next_cluster += len as u64 / self.layout.format.cluster_size();
        let runs = self.layout.map().runs();
        if runs
            .get(self.run)
            .is_some_and(|run| self.next_cluster == run.end)
        {
            self.run += 1;
            if let Some(next) = runs.get(self.run) {
                self.next_cluster = next.start;
            }
        }
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

impl<W: ChunkSink> StreamingWriter<W> {
    /// [`Self::write_clusters`] for bytes in a shared buffer, which the sink may write
    /// without copying them.
    pub fn write_shared_clusters(&mut self, first_cluster: u64, data: &SharedBuffer) -> Result<()> {
        self.expect_clusters(first_cluster, data.len())?;
        self.sink
            .write_shared(data, 0..data.len())
            .map_err(|e| DiskError::io("write", self.name.clone(), e))?;
        self.advance(data.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::disk::qcow2::writer::{AllocationMap, Compat, Qcow2Format};
    use crate::disk::qcow2::{CompressionType, Qcow2Image};
    use crate::disk::{ExtentKind, MemorySource, VirtualDisk};

    /// A sink that can only append, like a pipe or an upload body.
    struct AppendOnly(Vec<u8>);

    impl Write for AppendOnly {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn guest_byte(cluster: u64) -> u8 {
        (cluster % 251) as u8 + 1
    }

    #[test]
    fn planned_image_streams_to_an_append_only_sink_and_reads_back() {
        for (compat, cluster_size) in [(Compat::V2, 512u64), (Compat::V3, 4096)] {
            let format =
                Qcow2Format::new(compat, cluster_size, CompressionType::Zlib).expect("format");
            let virtual_size = 3 << 20;
            // Runs inside one L2 table, across an L2 boundary, and the last cluster.
            let last = virtual_size / cluster_size - 1;
            let runs = [1..3, 60..70, 500..530, last..last + 1];
            let mut map = AllocationMap::new();
            runs.iter()
                .for_each(|run| map.push_run(run.clone()).expect("ascending"));
            let layout = Layout::plan(format, virtual_size, map).expect("plan");
            let expected_size = layout.file_size();
            let mut writer =
                StreamingWriter::start(AppendOnly(Vec::new()), "pipe", layout).expect("start");
            for run in &runs {
                for cluster in run.clone() {
                    let data = vec![guest_byte(cluster); cluster_size as usize];
                    writer.write_clusters(cluster, &data).expect("write");
                }
            }
            let (sink, written) = writer.finish().expect("finish");
            assert_eq!(written, expected_size);
            assert_eq!(sink.0.len() as u64, expected_size);

            let image = Qcow2Image::open(
                Arc::new(MemorySource::new(sink.0, "pipe")),
                Path::new("pipe"),
            )
            .expect("the reader opens what the writer wrote");
            assert_eq!(image.header().version, compat.version());
            let mut buf = vec![0u8; cluster_size as usize];
            for cluster in [0, 1, 2, 3, 59, 60, 69, 70, 499, 500, 529, 530, last] {
                image
                    .read_at(&mut buf, cluster * cluster_size)
                    .expect("read");
                let expected = if runs.iter().any(|run| run.contains(&cluster)) {
                    guest_byte(cluster)
                } else {
                    0
                };
                assert!(buf.iter().all(|&b| b == expected), "cluster {cluster}");
            }
            let data: u64 = image
                .extents(0, virtual_size)
                .expect("extents")
                .iter()
                .filter(|extent| extent.kind == ExtentKind::Data)
                .map(|extent| extent.len)
                .sum();
            assert_eq!(data, (2 + 10 + 30 + 1) * cluster_size);
        }
    }

    #[test]
    fn data_out_of_plan_order_is_refused() {
        let format = Qcow2Format::new(Compat::V3, 65536, CompressionType::Zlib).expect("format");
        let mut map = AllocationMap::new();
        map.push_run(2..4).expect("run");
        assert!(map.push_run(3..5).is_err(), "overlapping runs are refused");
        let layout = Layout::plan(format, 1 << 20, map).expect("plan");
        let mut writer =
            StreamingWriter::start(AppendOnly(Vec::new()), "pipe", layout).expect("start");
        let cluster = vec![1u8; 65536];
        assert!(
            writer.write_clusters(3, &cluster).is_err(),
            "skipping cluster 2"
        );
        writer.write_clusters(2, &cluster).expect("cluster 2");
        assert!(
            writer.write_clusters(3, &cluster[..100]).is_err(),
            "partial cluster"
        );
        let unfinished = StreamingWriter::finish(writer);
        assert!(unfinished.is_err(), "cluster 3 was never written");
    }
}
