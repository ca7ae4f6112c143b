//! Verified download: IMAGE -> `FILE.part` -> verify -> rename to FILE.
//!
//! The body is read in [`BUFFER_SIZE`](super::BUFFER_SIZE) pieces; each is written at
//! its offset (zero blocks left as holes, aligned pieces bypassing the page cache) and
//! handed to a [`MultiHasher`](crate::hash::MultiHasher) computing the image's
//! `os_hash_algo` on its own thread (md5 too, only when Glance's md5 `checksum` is the
//! record's only hash). A dropped connection or a transient answer is retried with
//! backoff from the last byte written: a `206` continues the same digests, a `200` (or a
//! `400`/`416` refusing the range) starts over. Only a file whose size and digests match
//! the record is renamed to FILE; a mismatch removes `FILE.part`.
//!
//! This module owns the sequence (record checks, token, verify, rename) and the result;
//! [`expected`] reads what the record promises, [`stream`] moves the bytes (retries,
//! resumes). Requests are `cloud::glance`'s.

mod expected;
mod stream;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::retry::RetryPolicy;
use super::TransferError;
use crate::cloud::glance::{Glance, Image};
use crate::hash::Digest;
use crate::report::{Event, Reporter};
use expected::Expected;
use stream::Stream;

/// How a download behaves.
#[derive(Debug, Clone, Default)]
pub struct DownloadOptions {
    /// An image with neither `checksum` nor `os_hash_value` is an error, not a warning.
    pub require_hash: bool,
    /// Retries after a dropped connection or a transient server answer.
    pub retry: RetryPolicy,
    /// Continue from an existing `FILE.part` (its bytes are hashed first) instead of
    /// starting over. The final verification catches a part of some other image.
    pub resume_partial: bool,
}

/// A verified download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The final file.
    pub path: PathBuf,
    pub image_id: String,
    /// Bytes of image data.
    pub bytes: u64,
    /// What was computed: the image's `os_hash_algo` (sha512 when it records none), plus
    /// md5 when the record has no `os_hash_value`.
    pub digests: Vec<Digest>,
    /// Which record field matched: `os_hash_value`, or `checksum` when that is the only
    /// hash recorded; empty when the image recorded none (unverifiable, accepted with a
    /// warning).
    pub verified: Vec<&'static str>,
    /// Times the stream continued with a range request after a failure.
    pub resumes: u32,
    /// Times it started over from byte 0.
    pub restarts: u32,
    /// Bytes taken from an existing `FILE.part` (with `resume_partial`).
    pub reused_bytes: u64,
    pub elapsed: Duration,
}

/// `FILE.part`: where a download of `destination` is written until verified.
pub fn part_path(destination: &Path) -> PathBuf {
    let mut name = destination.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Downloads `image` to `destination`; see the module doc.
pub fn download(
    glance: &mut Glance,
    image: &Image,
    destination: &Path,
    options: &DownloadOptions,
    reporter: &dyn Reporter,
) -> Result<Downloaded, TransferError> {
    let started = Instant::now();
    check_downloadable(image)?;
    let expected = Expected::from_record(image, options.require_hash, reporter)?;
    // Enough token for the whole transfer at a pessimistic 20 MiB/s.
    let size = image.size.unwrap_or(0);
    glance
        .session_mut()
        .ensure_valid_for(Duration::from_secs(size / (20 << 20) + 60))?;

    let part = part_path(destination);
    let mut state = Stream::open(&part, &expected, options.resume_partial)
        .map_err(|e| after_failure(e, &part, &image.id))?;
    let progress = reporter.start_progress("download", image.size);
    progress.advance(state.written);
    let reused_bytes = state.written;
    let result = state.run(glance, image, &options.retry, &*progress, reporter);
    progress.finish();
    let counts = result.map_err(|e| after_failure(e, &part, &image.id))?;

    let written = state.written;
    let file = state.file;
    let digests = state.hasher.finish()?;
    let verified = match expected.check(&image.id, written, &digests.whole) {
        Ok(verified) => verified,
        Err(error) => {
            drop(file);
            let _ = std::fs::remove_file(&part);
            return Err(error);
        }
    };
    file.sync_all()
        .map_err(|e| TransferError::io("sync", &part, e))?;
    drop(file);
    std::fs::rename(&part, destination)
        .map_err(|e| TransferError::io("rename the verified download to", destination, e))?;
    sync_parent(destination)?;
    let downloaded = Downloaded {
        path: destination.to_owned(),
        image_id: image.id.clone(),
        bytes: written,
        digests: digests.whole,
        verified,
        resumes: counts.resumes,
        restarts: counts.restarts,
        reused_bytes,
        elapsed: started.elapsed(),
    };
    reporter.event(downloaded_event(&downloaded));
    Ok(downloaded)
}

/// What a failure or a stop request (SIGINT, SIGTERM) leaves: a part file holding bytes
/// stays for `--resume` (which re-hashes it, and the final check covers the whole file
/// anyway, so it is not synced here: the process should end promptly), and a stop then
/// says how many bytes it keeps; an empty part file is removed.
fn after_failure(error: TransferError, part: &Path, image: &str) -> TransferError {
    let bytes = std::fs::metadata(part).map_or(0, |m| m.len());
    if bytes == 0 {
        let _ = std::fs::remove_file(part);
        return error;
    }
    if !matches!(error, TransferError::Interrupted(_)) {
        return error;
    }
    TransferError::DownloadInterrupted {
        image: image.to_owned(),
        part: part.to_owned(),
        bytes,
    }
}

fn check_downloadable(image: &Image) -> Result<(), TransferError> {
    if image.status != "active" {
        return Err(TransferError::NotActive {
            image: image.id.clone(),
            status: image.status.clone(),
        });
    }
    let volume_backed = image.properties.contains_key("block_device_mapping");
    if image.size == Some(0) && volume_backed {
        return Err(TransferError::NoData {
            image: image.id.clone(),
            volume_backed,
        });
    }
    Ok(())
}

fn sync_parent(path: &Path) -> Result<(), TransferError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TransferError::io("sync directory", dir, e))
}

fn downloaded_event(d: &Downloaded) -> Event {
    let secs = d.elapsed.as_secs_f64().max(1e-9);
    let mut event = Event::new(
        "download.done",
        format!(
            "downloaded image {} to {} ({} bytes, {:.1} MiB/s, verified: {})",
            d.image_id,
            d.path.display(),
            d.bytes,
            d.bytes as f64 / secs / 1048576.0,
            if d.verified.is_empty() {
                "nothing recorded".to_owned()
            } else {
                d.verified.join(", ")
            }
        ),
    )
    .with("image_id", d.image_id.clone())
    .with("path", d.path.display().to_string())
    .with("bytes", d.bytes)
    .with("seconds", secs)
    .with("verified", d.verified.clone())
    .with("resumes", d.resumes)
    .with("restarts", d.restarts);
    for digest in &d.digests {
        event = event.with(digest.algorithm.name(), digest.hex());
    }
    event
}
