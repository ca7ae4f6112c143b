//! [`open_image`]: open any supported image as an [`Image`], its format judged by content.
//!
//! Owns the choice of reader per detected format and nothing else. Returns an enum
//! rather than a `Box<dyn VirtualDisk>` so callers that care (convert keeping qcow2
//! options, info) can reach the format-specific image, while everything else uses the
//! [`VirtualDisk`] it implements. Recognised but unsupported formats are refused via
//! [`unsupported_format`].

use std::path::Path;
use std::sync::Arc;

use super::detect::{detect, Format};
use super::info::unsupported_format;
use super::qcow2::reader::Qcow2Image;
use super::raw::RawImage;
use super::{DiskError, Extent, LocalFile, ReadAt, Result, VirtualDisk};

/// An open image of a supported format.
#[derive(Debug)]
pub enum Image {
    Raw(RawImage),
    /// Boxed: it carries the parsed header and caches.
    Qcow2(Box<Qcow2Image>),
}

impl Image {
    /// The detected format.
    pub fn format(&self) -> Format {
        match self {
            Self::Raw(_) => Format::Raw,
            Self::Qcow2(_) => Format::Qcow2,
        }
    }

    fn disk(&self) -> &dyn VirtualDisk {
        match self {
            Self::Raw(raw) => raw,
            Self::Qcow2(qcow2) => qcow2.as_ref(),
        }
    }
}

impl VirtualDisk for Image {
    fn virtual_size(&self) -> u64 {
        self.disk().virtual_size()
    }

    fn extents(&self, start: u64, len: u64) -> Result<Vec<Extent>> {
        self.disk().extents(start, len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.disk().read_at(buf, offset)
    }
}

/// Opens the local file at `path` read-only and detects its format from its content.
pub fn open_image(path: &Path) -> Result<Image> {
    let file = LocalFile::open(path).map_err(|e| DiskError::io("open", path, e))?;
    open_source(Arc::new(file), path)
}

/// Opens an image from any byte source; `path` names it in messages.
pub fn open_source(source: Arc<dyn ReadAt>, path: &Path) -> Result<Image> {
    let format = detect(source.as_ref()).map_err(|e| DiskError::io("read", path, e))?;
    match format {
        Format::Raw => Ok(Image::Raw(RawImage::new(source, path))),
        Format::Qcow2 => Ok(Image::Qcow2(Box::new(Qcow2Image::open(source, path)?))),
        Format::Unsupported(other) => Err(unsupported_format(path, other.name())),
    }
}
