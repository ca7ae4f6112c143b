//! [`DirectSink`]: a sequential stream into a file, written past the page cache by
//! writer threads.
//!
//! Small pieces (a qcow2 image's metadata clusters, short data runs) gather in pooled
//! aligned buffers, each handed to a [`WriteQueue`] when full; a large aligned piece of
//! a [`SharedBuffer`] (a read-ahead chunk) goes to the queue as it is, without a copy.
//! Either way the caller goes on while earlier bytes are written. Call
//! [`Write::flush`] at the end: it writes the rest and waits for every write.
//! Dropping the sink unflushed abandons what is not yet written, which is what an
//! abandoned output wants. Owns the stream's order only, not the file's life cycle.

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;

use super::buffers::{BufferPool, ChunkSink, PooledBuffer, SharedBuffer};
use super::direct::DIRECT_ALIGN;
use super::write_queue::WriteQueue;

/// A shared piece at least this long is written from the caller's buffer; shorter ones
/// are copied and batched (one large write costs less than many small ones).
const ZERO_COPY_MIN: usize = 256 << 10;
/// Gathering buffers: one being filled while the other is written.
const GATHER_BUFFERS: usize = 2;

/// A sequential writer of `file` from offset 0.
pub struct DirectSink {
    queue: WriteQueue,
    pool: BufferPool,
    current: Option<PooledBuffer>,
    capacity: usize,
    filled: usize,
    /// File offset of the current buffer's first byte.
    offset: u64,
}

impl DirectSink {
    /// Writes `file` from offset 0, gathering small pieces in buffers of `capacity`
    /// bytes (rounded up to a multiple of [`DIRECT_ALIGN`]), with `writers` threads.
    pub fn new(file: &File, capacity: usize, writers: usize) -> io::Result<Self> {
        let capacity = capacity.max(1).next_multiple_of(DIRECT_ALIGN);
        Ok(Self {
            queue: WriteQueue::new(file, writers)?,
            pool: BufferPool::new(GATHER_BUFFERS, capacity),
            current: None,
            capacity,
            filled: 0,
            offset: 0,
        })
    }

    /// Hands the gathered bytes to the writers.
    fn submit_gathered(&mut self) -> io::Result<()> {
        if let Some(buffer) = self.current.take() {
            let len = self.filled;
            self.queue.submit(buffer.share(len), 0..len, self.offset)?;
            self.offset += len as u64;
            self.filled = 0;
        }
        Ok(())
    }
}

impl Write for DirectSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let pool = &self.pool;
        let buffer = self.current.get_or_insert_with(|| pool.take());
        let taken = (self.capacity - self.filled).min(data.len());
        buffer.as_mut_slice()[self.filled..self.filled + taken].copy_from_slice(&data[..taken]);
        self.filled += taken;
        if self.filled == self.capacity {
            self.submit_gathered()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.submit_gathered()?;
        self.queue.wait_idle()
    }
}

impl ChunkSink for DirectSink {
    fn write_shared(&mut self, data: &SharedBuffer, range: Range<usize>) -> io::Result<()> {
        let Some(bytes) = data.get(range.clone()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range outside the buffer",
            ));
        };
        let position = self.offset + self.filled as u64;
        let direct = bytes.len() >= ZERO_COPY_MIN
            && position.is_multiple_of(DIRECT_ALIGN as u64)
            && (bytes.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN);
        if !direct {
            return self.write_all(bytes);
        }
        self.submit_gathered()?;
        self.queue.submit(data.clone(), range, position)?;
        self.offset = position + bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_pieces_and_shared_chunks_land_in_stream_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let chunks = BufferPool::new(2, ZERO_COPY_MIN + DIRECT_ALIGN);
        let mut sink = DirectSink::new(&file, 3 * DIRECT_ALIGN, 2).unwrap();
        let mut expected = Vec::new();
        let mut next_byte = 0u32;
        let mut bytes = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    next_byte += 1;
                    (next_byte % 241) as u8
                })
                .collect()
        };
        for round in 0..6 {
            // small pieces: gathered (a misaligned stream position after round 3)
            for len in [1000, 4096, 7, 0] {
                let piece = bytes(len + usize::from(round == 3));
                sink.write_all(&piece).unwrap();
                expected.extend_from_slice(&piece);
            }
            // a large piece of a shared buffer: zero-copy when the stream position is
            // aligned (even rounds), copied when it is not (odd rounds)
            if round % 2 == 0 {
                let pad = bytes(4096 - expected.len() % 4096);
                sink.write_all(&pad).unwrap();
                expected.extend_from_slice(&pad);
            }
            let large = bytes(ZERO_COPY_MIN + DIRECT_ALIGN);
            let mut buffer = chunks.take();
            buffer.as_mut_slice().copy_from_slice(&large);
            let shared = buffer.share(large.len());
            let from = round % 2;
            sink.write_shared(&shared, from..large.len()).unwrap();
            expected.extend_from_slice(&large[from..]);
        }
        sink.flush().unwrap();
        drop(sink);
        assert!(std::fs::read(&path).unwrap() == expected, "content differs");
    }
}
