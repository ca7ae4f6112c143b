//! Bulk positional writes that bypass the page cache (`O_DIRECT`) where they can.
//!
//! An image tool writes gigabytes it will not read back soon and fsyncs them anyway.
//! Through the page cache every byte is copied into freshly allocated cache pages and
//! written back later; on some hosts (virtual machines whose memory is faulted in on
//! first touch) that copy alone runs at a few hundred MB/s. [`DirectWriter`] sends
//! aligned pieces straight to the device instead and the rest (an unaligned tail, a
//! resumed transfer's odd offset) through the ordinary descriptor, so any write pattern
//! stays correct. Where the file system refuses `O_DIRECT` (tmpfs, some FUSE and network
//! file systems) every write takes the ordinary path.
//!
//! [`AlignedBuffer`] gives the memory alignment `O_DIRECT` needs without `unsafe`. The
//! same writes done on writer threads are [`super::write_queue::WriteQueue`]'s, and a
//! sequential stream over them is [`super::direct_sink::DirectSink`].
//! Owns only how bytes reach the file, not the file's life cycle (see
//! [`super::output::AtomicFile`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

/// Offset, length and memory alignment of a direct write: the largest logical block
/// size in common use, so it suits 512-byte and 4 KiB devices alike.
pub const DIRECT_ALIGN: usize = 4096;

/// A zeroed byte buffer whose first byte sits on a [`DIRECT_ALIGN`] boundary.
pub struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuffer {
    /// A buffer of `len` zero bytes.
    pub fn new(len: usize) -> Self {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        Self {
            storage,
            start,
            len,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// Writes at offsets into one file: aligned pieces through an `O_DIRECT` descriptor of
/// the same file when one could be opened, everything else through `file`.
pub struct DirectWriter<'a> {
    file: &'a File,
    direct: Option<File>,
}

impl<'a> DirectWriter<'a> {
    /// Opens a second, `O_DIRECT` description of `file` (through `/proc/self/fd`, so it
    /// is the same inode whatever happens to the path); without one every write goes
    /// through `file`.
    pub fn new(file: &'a File) -> Self {
        Self {
            file,
            direct: reopen_direct(file),
        }
    }

    /// Writes all of `data` at `offset`. The aligned head (offset, memory address and
    /// length multiples of [`DIRECT_ALIGN`]) goes direct; the rest, or everything when
    /// the device refuses a direct write, goes through the page cache.
    pub fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        write_direct_or_cached(self.file, self.direct.as_ref(), data, offset)
    }
}

/// Opens a second, `O_DIRECT` description of `file` through `/proc/self/fd` (so it is
/// the same inode whatever happens to the path); `None` where that is refused.
pub(crate) fn reopen_direct(file: &File) -> Option<File> {
    let reopened = format!("/proc/self/fd/{}", file.as_raw_fd());
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(reopened)
        .ok()
}

/// Writes all of `data` at `offset` into one file: the aligned head through `direct`
/// (when given and the device accepts it), the rest through `file`.
pub(crate) fn write_direct_or_cached(
    file: &File,
    direct: Option<&File>,
    data: &[u8],
    offset: u64,
) -> io::Result<()> {
    let mut done = 0;
    if let Some(direct) = direct {
        let aligned = offset.is_multiple_of(DIRECT_ALIGN as u64)
            && (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN);
        let head = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        if aligned && head > 0 {
            match direct.write_all_at(&data[..head], offset) {
                Ok(()) => done = head,
                // The device's alignment is stricter than ours: the page cache it is.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if done < data.len() {
        file.write_all_at(&data[done..], offset + done as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffer_is_aligned_and_sized() {
        for len in [0, 1, 4095, 4096, 1 << 20] {
            let mut buffer = AlignedBuffer::new(len);
            assert_eq!(buffer.as_slice().len(), len);
            assert_eq!(buffer.as_mut_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
            assert!(buffer.as_slice().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn any_mix_of_aligned_and_unaligned_writes_lands_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let writer = DirectWriter::new(&file);
        let mut buffer = AlignedBuffer::new(5 * DIRECT_ALIGN + 123);
        for (i, b) in buffer.as_mut_slice().iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        let data = buffer.as_slice();
        // aligned head + unaligned tail, then an unaligned offset, then unaligned memory
        writer.write_all_at(data, 0).unwrap();
        writer.write_all_at(&data[..777], 100_000 + 3).unwrap();
        writer
            .write_all_at(&data[1..DIRECT_ALIGN + 1], 200_704)
            .unwrap();
        let mut expected = vec![0u8; 200_704 + DIRECT_ALIGN];
        expected[..data.len()].copy_from_slice(data);
        expected[100_003..100_003 + 777].copy_from_slice(&data[..777]);
        expected[200_704..].copy_from_slice(&data[1..DIRECT_ALIGN + 1]);
        file.sync_all().unwrap();
        let mut got = vec![0u8; expected.len()];
        File::open(&path)
            .unwrap()
            .read_exact_at(&mut got, 0)
            .unwrap();
        assert!(got == expected, "file content differs");
    }
}
