//! Bounded pools of aligned buffers that threads hand to each other without copying.
//!
//! A [`BufferPool`] owns a fixed number of [`AlignedBuffer`]s; [`BufferPool::take`] waits
//! until one is free, and a [`PooledBuffer`] goes back to its pool when dropped, from
//! whichever thread drops it. Once filled, a buffer is frozen into a [`SharedBuffer`]
//! (reference-counted, read-only) so a reader thread, the code that looks at the bytes
//! and several writer threads can all hold it; it returns to the pool when the last of
//! them lets go. Memory is therefore `count * len` per pool whatever the image size.
//! [`ChunkSink`] lets a sequential writer take such a buffer instead of a copy of it.
//! Owns buffer life cycles only, no I/O.

use std::io;
use std::ops::{Deref, Range};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use super::direct::AlignedBuffer;

/// A fixed set of equally sized aligned buffers.
pub struct BufferPool {
    free: Receiver<AlignedBuffer>,
    home: Sender<AlignedBuffer>,
    len: usize,
}

impl BufferPool {
    /// `count` zeroed buffers of `len` bytes each.
    pub fn new(count: usize, len: usize) -> Self {
        let (home, free) = channel();
        for _ in 0..count {
            let _ = home.send(AlignedBuffer::new(len));
        }
        Self { free, home, len }
    }

    /// A free buffer, waiting for one to come back when all are in use. Its contents
    /// are whatever its last user left.
    pub fn take(&self) -> PooledBuffer {
        // The pool holds a sender itself, so the channel cannot close and the fallback
        // never allocates past the pool's size.
        let buffer = self
            .free
            .recv()
            .unwrap_or_else(|_| AlignedBuffer::new(self.len));
        PooledBuffer {
            buffer: Some(buffer),
            home: self.home.clone(),
        }
    }
}

/// A buffer on loan from a [`BufferPool`]; dropping it gives it back.
pub struct PooledBuffer {
    /// `Some` until dropped.
    buffer: Option<AlignedBuffer>,
    home: Sender<AlignedBuffer>,
}

impl PooledBuffer {
    pub fn as_slice(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], AlignedBuffer::as_slice)
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .map_or(&mut [], AlignedBuffer::as_mut_slice)
    }

    /// Freezes the first `len` bytes (at most the buffer's length) for sharing.
    pub fn share(self, len: usize) -> SharedBuffer {
        let len = len.min(self.as_slice().len());
        SharedBuffer {
            buffer: Arc::new(self),
            len,
        }
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            let _ = self.home.send(buffer); // the pool may be gone: then it is freed
        }
    }
}

/// Read-only bytes of a pooled buffer, cheap to clone across threads.
#[derive(Clone)]
pub struct SharedBuffer {
    buffer: Arc<PooledBuffer>,
    len: usize,
}

impl Deref for SharedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buffer.as_slice()[..self.len]
    }
}

/// A sequential [`io::Write`] that can also take a shared buffer's bytes without
/// copying them (the default copies).
pub trait ChunkSink: io::Write {
    /// Appends `data[range]`, as `write_all(&data[range])` would.
    fn write_shared(&mut self, data: &SharedBuffer, range: Range<usize>) -> io::Result<()> {
        let bytes = data.get(range).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "range outside the buffer")
        })?;
        self.write_all(bytes)
    }
}

impl ChunkSink for Vec<u8> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_share_is_dropped() {
        let pool = BufferPool::new(1, 4096);
        let mut buffer = pool.take();
        buffer.as_mut_slice()[0] = 7;
        let shared = buffer.share(100);
        let other = shared.clone();
        drop(shared);
        assert!(pool.free.try_recv().is_err(), "still held by a clone");
        assert_eq!(other.len(), 100);
        assert_eq!(other[0], 7);
        drop(other);
        let again = pool.take();
        assert_eq!(again.as_slice().len(), 4096);
        assert_eq!(again.as_slice()[0], 7, "the same buffer, not a new one");
    }

    #[test]
    fn a_buffer_outliving_its_pool_is_freed() {
        let pool = BufferPool::new(1, 16);
        let buffer = pool.take();
        drop(pool);
        drop(buffer);
    }
}
