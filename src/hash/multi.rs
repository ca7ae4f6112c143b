//! [`MultiHasher`]: several whole-stream digests (and optionally per-chunk digests)
//! computed concurrently from ONE pass over the bytes.
//!
//! How: the producer fills large blocks ([`BLOCK_SIZE`]) taken from a small pool
//! ([`POOL_BLOCKS`] blocks, so memory is bounded at `POOL_BLOCKS * BLOCK_SIZE`); each
//! full block is shared (`Arc`, no copy) with one thread per digest over a bounded
//! channel, and goes back to the pool when the last thread is done with it. The total
//! time is about that of the slowest digest, not the sum, and reading overlaps hashing.
//!
//! What it cannot do: a single SHA-512 (or MD5) is a sequential chain over the whole
//! stream and cannot be split across cores. One algorithm uses one core; only
//! *different* digests run in parallel. Spreading one file over all cores needs a
//! per-chunk manifest (see `chunked`), which is a different digest.
//!
//! Two ways in, for the two callers: [`MultiHasher::update`] (and `io::Write`) copies
//! bytes as they arrive from the network; [`MultiHasher::read_from`] reads a file
//! straight into pool blocks. This module does no printing and knows no paths.

use std::io::{self, Read, Write};
use std::ops::Deref;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::algorithm::{Algorithm, ChunkDigest, ChunkHasher, Digest};
use super::chunked::{ChunkLayout, MAX_CHUNKS};
use super::error::HashError;
use crate::report::Progress;

/// Bytes per block handed to the hashing threads: large enough that channel overhead
/// is noise, small enough that a few of them stay in cache-friendly territory.
pub const BLOCK_SIZE: usize = 4 << 20;
/// Blocks in the pool: one being filled, the rest in flight. Bounds memory to 16 MiB.
pub const POOL_BLOCKS: usize = 4;

/// What one pass computes.
#[derive(Debug, Clone, Default)]
pub struct HashPlan {
    /// Whole-stream digests (duplicates are ignored).
    pub whole: Vec<Algorithm>,
    /// Per-chunk digests, if wanted.
    pub chunks: Option<ChunkLayout>,
}

/// What one pass computed.
#[derive(Debug, Clone)]
pub struct StreamDigests {
    /// Bytes hashed.
    pub bytes: u64,
    /// One digest per requested algorithm, in the order of [`Algorithm::ALL`].
    pub whole: Vec<Digest>,
    /// The per-chunk digests, when the plan asked for them.
    pub chunks: Option<Vec<ChunkDigest>>,
}

/// A pool block shared with the hashing threads; returns to the pool when dropped.
struct Block {
    data: Vec<u8>,
    len: usize,
    home: Sender<Vec<u8>>,
}

impl Deref for Block {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // If the hasher is gone the buffer is simply freed.
        let _ = self.home.send(std::mem::take(&mut self.data));
    }
}

enum WorkerResult {
    Whole(Digest),
    Chunks(Vec<ChunkDigest>),
}

struct Worker {
    name: String,
    blocks: SyncSender<Arc<Block>>,
    handle: JoinHandle<WorkerResult>,
}

/// Computes several digests of one stream concurrently; see the module doc.
pub struct MultiHasher {
    workers: Vec<Worker>,
    pool_rx: Receiver<Vec<u8>>,
    pool_tx: Sender<Vec<u8>>,
    allocated: usize,
    /// The block being filled and how many bytes it holds.
    current: Option<(Vec<u8>, usize)>,
    bytes: u64,
}

impl MultiHasher {
    /// Starts one thread per distinct digest of `plan`.
    pub fn new(plan: &HashPlan) -> Result<Self, HashError> {
        let mut whole = plan.whole.clone();
        whole.sort();
        whole.dedup();
        let mut workers = Vec::with_capacity(whole.len() + 1);
        for algorithm in whole {
            let mut hasher = algorithm.hasher();
            workers.push(spawn(algorithm.name().to_owned(), move |rx| {
                for block in rx {
                    hasher.update(&block);
                }
                WorkerResult::Whole(hasher.finish())
            })?);
        }
        if let Some(layout) = plan.chunks {
            let mut chunker = StreamChunker::new(layout);
            workers.push(spawn(format!("{} chunks", layout.algorithm), move |rx| {
                for block in rx {
                    chunker.update(&block);
                }
                WorkerResult::Chunks(chunker.finish())
            })?);
        }
        let (pool_tx, pool_rx) = mpsc::channel();
        Ok(Self {
            workers,
            pool_rx,
            pool_tx,
            allocated: 0,
            current: None,
            bytes: 0,
        })
    }

    /// Feeds `data` (copied into pool blocks). Blocks while all pool blocks are in flight.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (block, filled) = self.current_block();
            let n = data.len().min(BLOCK_SIZE - *filled);
            block[*filled..*filled + n].copy_from_slice(&data[..n]);
            *filled += n;
            data = &data[n..];
            self.bytes += n as u64;
            self.dispatch_if_full();
        }
    }

    /// Reads `reader` to its end straight into pool blocks, advancing `progress`.
    /// Returns the number of bytes read.
    pub fn read_from(&mut self, reader: &mut dyn Read, progress: &dyn Progress) -> io::Result<u64> {
        let start = self.bytes;
        loop {
            let (block, filled) = self.current_block();
            let n = match reader.read(&mut block[*filled..]) {
                Ok(0) => return Ok(self.bytes - start),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            *filled += n;
            self.bytes += n as u64;
            progress.advance(n as u64);
            self.dispatch_if_full();
        }
    }

    /// Hashes what is left and returns every digest.
    pub fn finish(mut self) -> Result<StreamDigests, HashError> {
        if let Some((data, len)) = self.current.take() {
            if len > 0 {
                self.dispatch(data, len);
            }
        }
        let mut digests = StreamDigests {
            bytes: self.bytes,
            whole: Vec::new(),
            chunks: None,
        };
        let mut failed = None;
        for worker in self.workers {
            drop(worker.blocks); // ends the thread's loop
            match worker.handle.join() {
                Ok(WorkerResult::Whole(digest)) => digests.whole.push(digest),
                Ok(WorkerResult::Chunks(chunks)) => digests.chunks = Some(chunks),
                Err(_) => failed = Some(worker.name),
            }
        }
        match failed {
            Some(algorithm) => Err(HashError::WorkerFailed { algorithm }),
            None => Ok(digests),
        }
    }

    /// The block being filled, taking one from the pool (or allocating, up to
    /// [`POOL_BLOCKS`]) when there is none.
    fn current_block(&mut self) -> &mut (Vec<u8>, usize) {
        let current = &mut self.current;
        current.get_or_insert_with(|| {
            let data = if self.allocated < POOL_BLOCKS {
                self.allocated += 1;
                vec![0; BLOCK_SIZE]
            } else {
                // Every pool block is in flight: wait for a hashing thread to release one.
                // `self.pool_tx` is alive, so `recv` cannot fail for lack of senders.
                self.pool_rx.recv().unwrap_or_else(|_| vec![0; BLOCK_SIZE])
            };
            (data, 0)
        })
    }

    fn dispatch_if_full(&mut self) {
        if let Some((_, BLOCK_SIZE)) = self.current {
            if let Some((data, len)) = self.current.take() {
                self.dispatch(data, len);
            }
        }
    }

    fn dispatch(&self, data: Vec<u8>, len: usize) {
        let block = Arc::new(Block {
            data,
            len,
            home: self.pool_tx.clone(),
        });
        for worker in &self.workers {
            // A worker only stops receiving by panicking, which `finish` reports on join.
            let _ = worker.blocks.send(Arc::clone(&block));
        }
    }
}

impl Write for MultiHasher {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn spawn(
    name: String,
    body: impl FnOnce(Receiver<Arc<Block>>) -> WorkerResult + Send + 'static,
) -> Result<Worker, HashError> {
    let (blocks, rx) = mpsc::sync_channel(POOL_BLOCKS);
    let handle = std::thread::Builder::new()
        .name(format!("hash {name}"))
        .spawn(move || body(rx))
        .map_err(|e| HashError::InvalidRequest(format!("cannot start a hashing thread: {e}")))?;
    Ok(Worker {
        name,
        blocks,
        handle,
    })
}

/// Splits a stream at fixed chunk boundaries and hashes each chunk (the first
/// [`MAX_CHUNKS`] of them).
struct StreamChunker {
    hasher: ChunkHasher,
    chunk_size: u64,
    in_chunk: u64,
    digests: Vec<ChunkDigest>,
}

impl StreamChunker {
    fn new(layout: ChunkLayout) -> Self {
        Self {
            hasher: layout.algorithm.hasher(),
            chunk_size: layout.chunk_size,
            in_chunk: 0,
            digests: Vec::new(),
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        // Past the manifest limit nothing can use more digests: stop, bounding memory.
        if self.digests.len() as u64 >= MAX_CHUNKS {
            return;
        }
        while !data.is_empty() {
            let room = self.chunk_size - self.in_chunk;
            let n = usize::try_from(room).map_or(data.len(), |room| room.min(data.len()));
            self.hasher.update(&data[..n]);
            self.in_chunk += n as u64;
            data = &data[n..];
            if self.in_chunk == self.chunk_size {
                self.digests.push(self.hasher.finish_chunk());
                self.in_chunk = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<ChunkDigest> {
        if self.in_chunk > 0 {
            self.digests.push(self.hasher.finish_chunk());
        }
        self.digests
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::algorithm::ChunkAlgorithm;
    use crate::report::Reporter as _;
    use crate::report::SilentReporter;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn one_shot(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finish()
    }

    #[test]
    fn update_in_odd_pieces_matches_one_shot_digests() {
        let data = pattern(3 * BLOCK_SIZE + 12345);
        let plan = HashPlan {
            whole: Algorithm::ALL.to_vec(),
            chunks: None,
        };
        let mut hasher = MultiHasher::new(&plan).unwrap();
        for piece in data.chunks(1_000_003) {
            hasher.update(piece);
        }
        let digests = hasher.finish().unwrap();
        assert_eq!(digests.bytes, data.len() as u64);
        let expected: Vec<_> = Algorithm::ALL.iter().map(|&a| one_shot(a, &data)).collect();
        assert_eq!(digests.whole, expected);
    }

    #[test]
    fn read_from_chunks_match_per_chunk_hashing() {
        let data = pattern(BLOCK_SIZE + 5000);
        let layout = ChunkLayout::new(ChunkAlgorithm::Blake3, 1 << 20).unwrap();
        let plan = HashPlan {
            whole: vec![Algorithm::Sha256],
            chunks: Some(layout),
        };
        let mut hasher = MultiHasher::new(&plan).unwrap();
        let progress = SilentReporter.start_progress("t", None);
        let read = hasher.read_from(&mut &data[..], &*progress).unwrap();
        assert_eq!(read, data.len() as u64);
        let digests = hasher.finish().unwrap();
        let chunks = digests.chunks.unwrap();
        assert_eq!(chunks.len(), 5);
        for (chunk, digest) in data.chunks(1 << 20).zip(&chunks) {
            assert_eq!(blake3::hash(chunk).as_bytes(), digest);
        }
    }

    #[test]
    fn empty_stream_has_no_chunks_and_empty_digests() {
        let plan = HashPlan {
            whole: vec![Algorithm::Md5],
            chunks: Some(ChunkLayout::new(ChunkAlgorithm::Sha256, 4096).unwrap()),
        };
        let digests = MultiHasher::new(&plan).unwrap().finish().unwrap();
        assert_eq!(digests.whole[0].hex(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(digests.chunks, Some(vec![]));
    }
}
