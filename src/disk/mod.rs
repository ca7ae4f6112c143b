//! Disk images: detect, read, write, convert, amend and check raw and qcow2 files.
//!
//! Owns everything about on-disk image formats and nothing about clouds or guests.
//! Reads go through [`ReadAt`] (a local file today, an HTTP range reader later); a
//! format-neutral view of a virtual disk is [`VirtualDisk`], which answers both "what
//! bytes are here" and "which ranges hold data at all", so copies can skip holes.
//!
//! Every number read from an image is untrusted: parsers bounds-check offsets with
//! checked arithmetic against the named limits in [`qcow2::limits`].

mod error;
mod memory;
mod source;

pub mod buffers;
pub mod convert;
pub mod detect;
pub mod direct;
pub mod direct_sink;
pub mod fuzzing;
pub mod info;
pub mod open;
pub mod output;
pub mod patch;
pub mod qcow2;
pub mod raw;
pub mod stream;
pub mod write_queue;

pub use error::{DiskError, Result};
pub use memory::MemorySource;
pub use open::{open_image, open_source, Image};
pub use raw::RawImage;
pub use source::{LocalFile, ReadAt};

/// What a range of a virtual disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// Bytes stored in the image (may still happen to be zero).
    Data,
    /// Known to read as zeros (a qcow2 zero cluster, or a hole in a raw file).
    Zero,
    /// Not allocated in this image: reads as zeros (there is no backing file support).
    Unallocated,
}

/// A run of the virtual disk with one [`ExtentKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Guest offset of the first byte.
    pub start: u64,
    /// Length in bytes (never 0).
    pub len: u64,
    /// What the range holds.
    pub kind: ExtentKind,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// A virtual disk readable at any guest offset, whatever its container format.
pub trait VirtualDisk: Send + Sync {
    /// The guest-visible size in bytes.
    fn virtual_size(&self) -> u64;

    /// The extents covering `[start, start + len)`, in order, adjacent extents of the same
    /// kind merged. `start + len` must not exceed [`VirtualDisk::virtual_size`].
    fn extents(&self, start: u64, len: u64) -> Result<Vec<Extent>>;

    /// Fills `buf` with the guest bytes at `offset`. The range must lie inside the disk.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
}
