//! The convert engine: any supported image to raw or qcow2, allocation-driven.
//!
//! Like `qemu-img convert`, unallocated and zero ranges are never copied as data: raw
//! output is sparse (4 KiB blocks of zeros become holes) and qcow2 output allocates only
//! clusters holding non-zero bytes. The output is written through an [`AtomicFile`], so
//! the destination appears complete or not at all. Reading overlaps writing (a reader
//! thread), compression runs on every core (rayon), and memory stays bounded by a few
//! chunk buffers plus table sizes capped by QEMU's limits.
//!
//! Owns the choice of writer and the refusals about source and destination; it never
//! prints (progress and the final event go through the [`Reporter`]).

mod pipeline;
mod to_qcow2;
mod to_raw;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use super::open::open_image;
use super::output::AtomicFile;
use super::qcow2::writer::Qcow2Format;
use super::{DiskError, Result, VirtualDisk};
use crate::report::{Event, Reporter};

/// The image to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A sparse raw file.
    Raw,
    /// A qcow2 image; `compress` stores clusters compressed with the format's type.
    Qcow2 { format: Qcow2Format, compress: bool },
}

impl OutputFormat {
    /// The format's name (`raw`, `qcow2`), as Glance's `disk_format` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 { .. } => "qcow2",
        }
    }
}

/// What a conversion did.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertSummary {
    pub input_format: &'static str,
    pub output_format: &'static str,
    /// qcow2 compat of the output ("0.10" or "1.1").
    pub compat: Option<&'static str>,
    pub cluster_size: Option<u64>,
    /// Compression type used for the output's clusters, when compressing.
    pub compression: Option<&'static str>,
    /// The output's virtual size (qcow2 rounds the source's up to 512 bytes).
    pub virtual_size: u64,
    /// Guest bytes read from the source.
    pub bytes_read: u64,
    /// Bytes written to the destination (data and metadata; holes are not written).
    pub bytes_written: u64,
}

/// Byte counts a writer reports back.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    bytes_read: u64,
    bytes_written: u64,
}

/// Converts the image at `source` into `destination` in `output` format.
pub fn convert(
    source: &Path,
    destination: &Path,
    output: &OutputFormat,
    reporter: &dyn Reporter,
) -> Result<ConvertSummary> {
    let image = open_image(source)?;
    check_destination(source, destination)?;
    let file = AtomicFile::create(destination)?;
    let mut summary = convert_disk(&image, &file, output, reporter)?;
    file.commit()?;
    summary.input_format = image.format().name();
    reporter.event(
        Event::new(
            "convert.done",
            format!(
                "converted {} to {} ({}): read {} bytes, wrote {} bytes",
                source.display(),
                destination.display(),
                summary.output_format,
                summary.bytes_read,
                summary.bytes_written
            ),
        )
        .with("source", source.display().to_string())
        .with("destination", destination.display().to_string())
        .with("output_format", summary.output_format)
        .with("compat", summary.compat)
        .with("bytes_read", summary.bytes_read)
        .with("bytes_written", summary.bytes_written),
    );
    Ok(summary)
}

/// Writes `disk` into the (uncommitted) `file` in `output` format; the caller commits.
/// `input_format` of the summary is left as "unknown" for the caller to fill in.
pub fn convert_disk(
    disk: &dyn VirtualDisk,
    file: &AtomicFile,
    output: &OutputFormat,
    reporter: &dyn Reporter,
) -> Result<ConvertSummary> {
    let counters = match output {
        OutputFormat::Raw => to_raw::write_raw(disk, file, reporter),
        OutputFormat::Qcow2 {
            format,
            compress: false,
        } => to_qcow2::write_planned(disk, file, *format, reporter),
        OutputFormat::Qcow2 {
            format,
            compress: true,
        } => to_qcow2::write_compressed(disk, file, *format, reporter),
    }?;
    let qcow2 = match output {
        OutputFormat::Qcow2 { format, compress } => Some((format, *compress)),
        OutputFormat::Raw => None,
    };
    Ok(ConvertSummary {
        input_format: "unknown",
        output_format: output.name(),
        compat: qcow2.map(|(format, _)| format.compat().name()),
        cluster_size: qcow2.map(|(format, _)| format.cluster_size()),
        compression: qcow2
            .filter(|(_, compress)| *compress)
            .map(|(format, _)| format.compression_type().name()),
        virtual_size: match output {
            OutputFormat::Raw => disk.virtual_size(),
            OutputFormat::Qcow2 { .. } => to_qcow2::qcow2_size(disk),
        },
        bytes_read: counters.bytes_read,
        bytes_written: counters.bytes_written,
    })
}

/// Refuses a destination that is a directory, or the source itself (through any path
/// or link): the source would be replaced while it is the only copy of the data.
fn check_destination(source: &Path, destination: &Path) -> Result<()> {
    let Ok(target) = std::fs::metadata(destination) else {
        return Ok(()); // no destination yet
    };
    if target.is_dir() {
        return Err(DiskError::InvalidRequest(format!(
            "destination {} is a directory; name the output file",
            destination.display()
        )));
    }
    let origin = std::fs::metadata(source).map_err(|e| DiskError::io("stat", source, e))?;
    if (origin.dev(), origin.ino()) == (target.dev(), target.ino()) {
        return Err(DiskError::Refused {
            path: destination.to_owned(),
            detail: format!("it is the source image {}", source.display()),
            hint: Some("write the converted image to a different file".to_owned()),
        });
    }
    Ok(())
}
