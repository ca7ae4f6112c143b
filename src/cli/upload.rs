//! `imgferry upload FILE --name N`: a verified upload to Glance.
//!
//! Parses the arguments into [`UploadOptions`], calls [`crate::transfer::upload`] and
//! prints the new image. A record that does not match what was sent exits 3 (and the
//! image is deleted unless `--keep-failed`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::cloud_args::CloudArgs;
use super::images::printable;
use super::transfer_args::{seconds, RetryArgs};
use super::{Failure, Output};
use crate::exit::ExitCode;
use crate::transfer::{self, UploadMethod, UploadOptions};

/// Arguments of `imgferry upload`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The disk format is detected from the content; a declared \
    --disk-format the content contradicts is refused before anything is created. The data \
    is hashed (sha512) while it is sent, and once the image is active Glance's size and \
    os_hash_value must equal ours (else exit 3; a Glance that records only an md5 checksum \
    gets it computed in a second pass). On any failure, and on Ctrl-C or SIGTERM (exit \
    130), the half-created image is deleted, unless --keep-failed.\n\n\
    Example:\n  imgferry upload --os-cloud prod web-01.qcow2 --name web-01 --property hw_disk_bus=scsi"
)]
pub struct UploadArgs {
    /// The image file to upload.
    pub file: PathBuf,
    /// The new image's name.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// raw, qcow2, ... (default: detected from the content).
    #[arg(long, value_name = "FORMAT")]
    pub disk_format: Option<String>,
    /// The container format.
    #[arg(long, value_name = "FORMAT", default_value = "bare")]
    pub container_format: String,
    /// A property of the new image (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = key_value)]
    pub properties: Vec<(String, String)>,
    /// private, shared, community or public (default: Glance's, usually shared).
    #[arg(long, value_name = "VISIBILITY", value_parser = ["private", "shared", "community", "public"])]
    pub visibility: Option<String>,
    /// Minimum disk size in GiB to boot the image.
    #[arg(long, value_name = "GIB")]
    pub min_disk: Option<u64>,
    /// Minimum RAM in MiB to boot the image.
    #[arg(long, value_name = "MIB")]
    pub min_ram: Option<u64>,
    /// put: PUT the data; glance-direct: stage it and import it (must be offered by the
    /// cloud's /v2/info/import).
    #[arg(long, value_name = "METHOD", default_value = "put", value_parser = ["put", "glance-direct"])]
    pub method: String,
    /// Seconds to wait for the image to become active once the data is sent.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0, value_parser = seconds)]
    pub wait_timeout: f64,
    /// Keep a half-created image when the upload fails, instead of deleting it.
    #[arg(long)]
    pub keep_failed: bool,
    #[command(flatten)]
    pub retry: RetryArgs,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Runs the command.
pub fn run(args: UploadArgs, cloud: &CloudArgs, output: &Output) -> Result<ExitCode, Failure> {
    let mut options = UploadOptions::named(args.name.clone());
    options.disk_format = args.disk_format.clone();
    options.container_format = args.container_format.clone();
    options.visibility = args.visibility.clone();
    options.min_disk = args.min_disk;
    options.min_ram = args.min_ram;
    options.properties = args
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    options.method = if args.method == "glance-direct" {
        UploadMethod::GlanceDirect
    } else {
        UploadMethod::Put
    };
    options.active_timeout = Duration::from_secs_f64(args.wait_timeout);
    options.keep_failed = args.keep_failed;
    options.retry = args.retry.policy();

    // Ctrl-C stops the sending and deletes the half-created image (exit 130).
    crate::interrupt::install().map_err(|e| Failure::new(format!("cannot handle signals: {e}")))?;
    let mut glance = cloud.connect_glance(output)?;
    let done = transfer::upload(&mut glance, &args.file, &options, &output.reporter())?;
    let secs = done.elapsed.as_secs_f64().max(1e-9);
    let image = &done.image;
    let mut value = json!({
        "image": {
            "id": image.id, "name": image.name, "status": image.status,
            "disk_format": image.disk_format, "size": image.size,
            "checksum": image.checksum, "os_hash_algo": image.os_hash_algo,
            "os_hash_value": image.os_hash_value, "visibility": image.visibility,
        },
        "path": done.path.display().to_string(),
        "bytes": done.bytes,
        "method": done.method.name(),
        "attempts": done.attempts,
        "seconds": secs,
        "verified": done.verified,
        "digests": {},
    });
    for digest in &done.digests {
        value["digests"][digest.algorithm.name()] = digest.hex().into();
    }
    let human = format!(
        "uploaded {} as image {} ({}, {}): {} bytes in {secs:.1} s ({:.1} MiB/s), verified {}",
        done.path.display(),
        image.id,
        printable(image.display_name()),
        done.disk_format,
        done.bytes,
        done.bytes as f64 / secs / 1048576.0,
        done.verified.join(", "),
    );
    output.summary("upload", value, &human);
    Ok(ExitCode::Success)
}
