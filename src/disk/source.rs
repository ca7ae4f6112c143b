//! [`ReadAt`]: positioned reads from where an image's bytes live, and [`LocalFile`].
//!
//! Owns the byte source seam only; knows nothing of formats. A remote (HTTP range)
//! source will implement the same trait.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Random-access reads from a fixed-size byte source.
pub trait ReadAt: Send + Sync {
    /// Fills `buf` from `offset`. Reading past the end is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// The size of the source in bytes.
    fn size(&self) -> u64;

    /// Where the bytes come from (a path or a URL), for error messages.
    fn describe(&self) -> String;

    /// Ranges of `[start, end)` that may hold data, for sources that know their holes
    /// (`SEEK_DATA`/`SEEK_HOLE` on a sparse file). `None` means "assume all data".
    fn data_ranges(&self, _start: u64, _end: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
        Ok(None)
    }
}

/// A local file opened read-only.
#[derive(Debug)]
pub struct LocalFile {
    file: File,
    path: PathBuf,
    size: u64,
}

impl LocalFile {
    /// Opens `path` read-only and records its size.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::other("is a directory"));
        }
        Ok(Self {
            size: meta.len(),
            file,
            path: path.to_owned(),
        })
    }

    /// The path this file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl ReadAt for LocalFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn data_ranges(&self, start: u64, end: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
        seek_data_ranges(&self.file, start, end.min(self.size))
    }
}

/// Walks `SEEK_DATA`/`SEEK_HOLE` over `[start, end)`. Returns `None` when the file
/// system does not support them.
fn seek_data_ranges(file: &File, start: u64, end: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut pos = start;
    while pos < end {
        let Ok(offset) = libc::off_t::try_from(pos) else {
            break;
        };
        // SAFETY: lseek on a valid descriptor we own has no memory-safety preconditions.
        let data = unsafe { libc::lseek(fd, offset, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENXIO) => Ok(Some(ranges)), // no data after pos
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(None),
                _ => Err(err),
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (data, hole) = (data as u64, (hole as u64).min(end));
        if data >= end {
            break;
        }
        if hole > data {
            ranges.push((data, hole));
        }
        pos = hole.max(data + 1);
    }
    Ok(Some(ranges))
}
