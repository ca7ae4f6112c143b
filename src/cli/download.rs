//! `imgferry download IMAGE -o FILE`: a verified download from Glance.
//!
//! Parses the arguments, resolves the image, calls [`crate::transfer::download`] and
//! prints what was verified. A mismatch exits 3 (nothing is left under FILE).

use std::path::PathBuf;

use serde_json::json;

use super::cloud_args::CloudArgs;
use super::images::printable;
use super::transfer_args::RetryArgs;
use super::{Failure, Output};
use crate::exit::ExitCode;
use crate::transfer::{self, DownloadOptions};

/// Arguments of `imgferry download`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The data goes to FILE.part and is renamed to FILE only once its size \
    and os_hash_value (sha512 by default; the md5 checksum when that is the only hash) match \
    the image's record; a mismatch removes FILE.part and exits 3. A dropped connection or a 5xx is retried with \
    backoff and resumed where it stopped (HTTP Range). Ctrl-C (or SIGTERM) stops between \
    reads and exits 130; FILE.part keeps what arrived (it is removed if empty): run again \
    with --resume to continue from it. A killed run leaves FILE.part the same way.\n\n\
    Example:\n  imgferry download --os-cloud prod web-01-snap -o web-01.qcow2"
)]
pub struct DownloadArgs {
    /// The image, by id or by name (a name must match exactly one image).
    pub image: String,
    /// Where to write the image (FILE.part until verified).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Fail (exit 3) when the image records no checksum and no os_hash_value, instead of
    /// warning that the download is unverifiable.
    #[arg(long)]
    pub require_hash: bool,
    /// Continue from an existing FILE.part left by an interrupted run (its bytes are
    /// hashed first; the final verification still covers the whole file).
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub retry: RetryArgs,
}

/// Runs the command.
pub fn run(args: DownloadArgs, cloud: &CloudArgs, output: &Output) -> Result<ExitCode, Failure> {
    // Ctrl-C stops between reads; FILE.part keeps what arrived (exit 130).
    crate::interrupt::install().map_err(|e| Failure::new(format!("cannot handle signals: {e}")))?;
    let mut glance = cloud.connect_glance(output)?;
    let image = glance.resolve(&args.image)?;
    let options = DownloadOptions {
        require_hash: args.require_hash,
        retry: args.retry.policy(),
        resume_partial: args.resume,
    };
    let done = transfer::download(
        &mut glance,
        &image,
        &args.output,
        &options,
        &output.reporter(),
    )?;
    let secs = done.elapsed.as_secs_f64().max(1e-9);
    let mut value = json!({
        "image": {"id": image.id, "name": image.name},
        "path": done.path.display().to_string(),
        "bytes": done.bytes,
        "seconds": secs,
        "verified": done.verified,
        "resumes": done.resumes,
        "restarts": done.restarts,
        "reused_bytes": done.reused_bytes,
        "digests": {},
    });
    for digest in &done.digests {
        value["digests"][digest.algorithm.name()] = digest.hex().into();
    }
    let verified = if done.verified.is_empty() {
        "UNVERIFIED (the image records no hash)".to_owned()
    } else {
        format!("verified {}", done.verified.join(" and "))
    };
    let human = format!(
        "downloaded {} ({}) to {}: {} bytes in {secs:.1} s ({:.1} MiB/s), {verified}",
        printable(image.display_name()),
        image.id,
        done.path.display(),
        done.bytes,
        done.bytes as f64 / secs / 1048576.0,
    );
    output.summary("download", value, &human);
    Ok(ExitCode::Success)
}
