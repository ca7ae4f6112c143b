//! `imgferry info FILE`: the format and metadata of an image, judged by its content.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{Failure, Output};
use crate::disk::info::{inspect, ImageInfo};
use crate::exit::ExitCode;

/// Arguments of `imgferry info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The image file.
    pub file: PathBuf,
}

/// Runs the command.
pub fn run(args: InfoArgs, output: &Output) -> Result<ExitCode, Failure> {
    let info = inspect(&args.file)?;
    let value = serde_json::to_value(&info).map_err(Failure::new)?;
    output.result("info", value, &human(&args.file, &info));
    Ok(ExitCode::Success)
}

fn human(path: &std::path::Path, info: &ImageInfo) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "image: {}", path.display());
    let _ = writeln!(text, "format: {}", info.format);
    let _ = writeln!(
        text,
        "virtual size: {} ({} bytes)",
        size(info.virtual_size),
        info.virtual_size
    );
    let _ = writeln!(text, "file size: {} bytes", info.file_size);
    let _ = writeln!(
        text,
        "allocated: {} ({} bytes)",
        size(info.allocated_bytes),
        info.allocated_bytes
    );
    if let Some(q) = &info.qcow2 {
        let _ = writeln!(text, "version: {} (compat {})", q.version, q.compat);
        let _ = writeln!(text, "cluster size: {}", q.cluster_size);
        let _ = writeln!(text, "refcount bits: {}", q.refcount_bits);
        let _ = writeln!(text, "compression type: {}", q.compression_type);
        let features = if q.features.is_empty() {
            "none".to_owned()
        } else {
            q.features.join(", ")
        };
        let _ = writeln!(text, "features: {features}");
        let _ = writeln!(
            text,
            "dirty: {}, corrupt: {}, encrypted: {}",
            q.dirty, q.corrupt, q.encrypted
        );
        let _ = writeln!(text, "snapshots: {}", q.snapshots);
        if let Some(backing) = &q.backing_file {
            let _ = writeln!(text, "backing file: {backing}");
        }
        for ext in &q.extensions {
            let _ = writeln!(
                text,
                "extension: {} ({}, {} bytes)",
                ext.name, ext.kind, ext.length
            );
        }
    }
    text
}

/// Sizes in binary units, like `qemu-img info`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.3} {}", UNITS[unit])
    }
}
