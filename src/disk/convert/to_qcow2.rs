//! Writing a qcow2 image from any [`VirtualDisk`].
//!
//! Uncompressed output is metadata-first: a scan finds the clusters that hold non-zero
//! data (only clusters touching data extents are read, and of each only its first
//! 4 KiB unless those are zero), the whole layout is planned from that map, and the
//! [`StreamingWriter`] writes metadata then data front to back. Compressed output
//! (`-c`) cannot know its sizes in advance, so it goes through the [`AppendWriter`]:
//! clusters are compressed in parallel (rayon) a chunk at a time and appended in order.
//! All-zero clusters are never allocated in either case.

use std::io::BufWriter;
use std::ops::Range;

use rayon::prelude::*;

use super::pipeline::{is_zero, read_ahead, DataRanges, ProgressTracker, CHUNK_BYTES, ZERO_BLOCK};
use super::Counters;
use crate::disk::direct_sink::DirectSink;
use crate::disk::output::AtomicFile;
use crate::disk::qcow2::writer::{
    AllocationMap, AppendWriter, ClusterCompressor, ClusterPayload, Layout, Qcow2Format,
    StreamingWriter, QCOW2_SIZE_ALIGN,
};
use crate::disk::qcow2::CompressionType;
use crate::disk::{DiskError, Result, VirtualDisk};
use crate::report::Reporter;

/// Buffer in front of the output file, so the small metadata writes and short data runs
/// are batched (for the planned writer, the unit of its direct writes; long data runs
/// are written from the read-ahead buffers without a copy).
const WRITE_BUFFER: usize = 4 << 20;
/// Writes in flight at once (planned writer).
const WRITERS: usize = 3;
/// Clusters scanned per parallel task.
const SCAN_BATCH_CLUSTERS: u64 = 256;

/// Writes `disk` to `output` as an uncompressed qcow2 image, metadata first.
pub fn write_planned(
    disk: &dyn VirtualDisk,
    output: &AtomicFile,
    format: Qcow2Format,
    reporter: &dyn Reporter,
) -> Result<Counters> {
    let cluster = format.cluster_size();
    let (map, scanned) = scan_allocation(disk, cluster, reporter)?;
    let layout = Layout::plan(format, qcow2_size(disk), map)?;
    let map = layout.shared_map();
    let ranges = (0..map.runs().len()).filter_map(move |index| {
        let run = map.runs().get(index)?;
        Some(Ok(run.start * cluster..run.end * cluster))
    });
    let path = output.temp_path().to_owned();
    let sink = DirectSink::new(output.file(), WRITE_BUFFER, WRITERS)
        .map_err(|e| DiskError::io("write", &path, e))?;
    let mut writer = StreamingWriter::start(sink, &path, layout)?;
    let mut tracker = ProgressTracker::start(reporter, "convert", disk.virtual_size());
    let chunk = CHUNK_BYTES.next_multiple_of(cluster);
    let bytes_read = read_ahead(disk, ranges, chunk, |chunk| {
        writer.write_shared_clusters(chunk.offset / cluster, &chunk.data)?;
        tracker.reached(chunk.offset + chunk.data.len() as u64);
        Ok(())
    })?;
    let (_, bytes_written) = writer.finish()?;
    tracker.finish();
    Ok(Counters {
        bytes_read: bytes_read + scanned,
        bytes_written,
    })
}

/// Writes `disk` to `output` as a compressed qcow2 image.
pub fn write_compressed(
    disk: &dyn VirtualDisk,
    output: &AtomicFile,
    format: Qcow2Format,
    reporter: &dyn Reporter,
) -> Result<Counters> {
    let cluster = format.cluster_size();
    let kind = format.compression_type();
    let path = output.temp_path().to_owned();
    let sink = BufWriter::with_capacity(WRITE_BUFFER, output.file());
    let mut writer = AppendWriter::start(sink, &path, format, qcow2_size(disk))?;
    let mut tracker = ProgressTracker::start(reporter, "convert", disk.virtual_size());
    let chunk = CHUNK_BYTES.next_multiple_of(cluster);
    let bytes_read = read_ahead(disk, DataRanges::new(disk, cluster), chunk, |chunk| {
        let (offset, data) = (chunk.offset, &chunk.data[..]);
        let first_cluster = offset / cluster;
        let packed = pack_clusters(data, cluster, kind)?;
        for (index, (bytes, packed)) in data.chunks(cluster as usize).zip(packed).enumerate() {
            let payload = match &packed {
                Packed::Zero => continue,
                Packed::Compressed(compressed) => ClusterPayload::Compressed(compressed),
                Packed::Plain => ClusterPayload::Plain(bytes),
            };
            writer.write_cluster(first_cluster + index as u64, payload)?;
        }
        tracker.reached(offset + data.len() as u64);
        Ok(())
    })?;
    let (_, bytes_written) = writer.finish()?;
    tracker.finish();
    Ok(Counters {
        bytes_read,
        bytes_written,
    })
}

/// How one cluster of a chunk is to be stored.
enum Packed {
    /// All zeros: left unallocated.
    Zero,
    /// Compressed to fewer bytes than a cluster.
    Compressed(Vec<u8>),
    /// Incompressible: stored as is.
    Plain,
}

/// Compresses the clusters of `data` in parallel, in order.
fn pack_clusters(data: &[u8], cluster: u64, kind: CompressionType) -> Result<Vec<Packed>> {
    data.par_chunks(cluster as usize)
        .map_init(
            || ClusterCompressor::new(kind, cluster as usize),
            |compressor, bytes| {
                if is_zero(bytes) {
                    return Ok(Packed::Zero);
                }
                let compressor = compressor.as_mut().map_err(|e| {
                    DiskError::InvalidRequest(format!("cannot start the compressor: {e}"))
                })?;
                Ok(match compressor.compress(bytes)? {
                    Some(compressed) => Packed::Compressed(compressed),
                    None => Packed::Plain,
                })
            },
        )
        .collect()
}

/// The virtual size of the qcow2 copy of `disk`: rounded up to whole sectors as
/// `qemu-img convert` does (the extra bytes read as zeros).
pub fn qcow2_size(disk: &dyn VirtualDisk) -> u64 {
    disk.virtual_size().next_multiple_of(QCOW2_SIZE_ALIGN)
}

/// Finds the clusters holding non-zero data, scanning batches in parallel. Returns the
/// map and the number of bytes read to build it.
fn scan_allocation(
    disk: &dyn VirtualDisk,
    cluster: u64,
    reporter: &dyn Reporter,
) -> Result<(AllocationMap, u64)> {
    let mut tracker = ProgressTracker::start(reporter, "scan", disk.virtual_size());
    let mut map = AllocationMap::new();
    let mut scanned = 0u64;
    let mut batches: Vec<Range<u64>> = Vec::new();
    let mut flush = |batches: &mut Vec<Range<u64>>, map: &mut AllocationMap| -> Result<()> {
        let results: Vec<Result<(AllocationMap, u64)>> = batches
            .par_iter()
            .map(|clusters| scan_batch(disk, cluster, clusters.clone()))
            .collect();
        if let Some(last) = batches.last() {
            tracker.reached(last.end * cluster);
        }
        batches.clear();
        for result in results {
            let (part, bytes) = result?;
            map.extend(part)?;
            scanned += bytes;
        }
        Ok(())
    };
    for range in DataRanges::new(disk, cluster) {
        let range = range?;
        let mut first = range.start / cluster;
        let end = range.end / cluster;
        while first < end {
            let batch_end = end.min(first + SCAN_BATCH_CLUSTERS);
            batches.push(first..batch_end);
            first = batch_end;
        }
        if batches.len() >= 64 {
            flush(&mut batches, &mut map)?;
        }
    }
    flush(&mut batches, &mut map)?;
    tracker.finish();
    Ok((map, scanned))
}

/// Scans the guest clusters `clusters`: each is allocated when any byte of it is
/// non-zero. Reads the first 4 KiB of a cluster and the rest only if those are zero.
fn scan_batch(
    disk: &dyn VirtualDisk,
    cluster: u64,
    clusters: Range<u64>,
) -> Result<(AllocationMap, u64)> {
    let size = disk.virtual_size();
    let mut map = AllocationMap::new();
    let mut buf = vec![0u8; cluster as usize];
    let mut scanned = 0u64;
    crate::interrupt::check()?;
    for index in clusters {
        let start = index * cluster;
        let len = cluster.min(size.saturating_sub(start)) as usize;
        let probe = len.min(ZERO_BLOCK as usize);
        disk.read_at(&mut buf[..probe], start)?;
        scanned += probe as u64;
        let mut has_data = !is_zero(&buf[..probe]);
        if !has_data && probe < len {
            disk.read_at(&mut buf[probe..len], start + probe as u64)?;
            scanned += (len - probe) as u64;
            has_data = !is_zero(&buf[probe..len]);
        }
        if has_data {
            map.push_run(index..index + 1)?;
        }
    }
    Ok((map, scanned))
}
