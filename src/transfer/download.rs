//! Verified download: IMAGE -> `FILE.part` -> verify -> rename to FILE.
//!
//! The body is read in [`BUFFER_SIZE`] pieces; each is written at its offset (zero
//! blocks left as holes, aligned pieces bypassing the page cache) and handed to a
//! [`MultiHasher`] computing the image's `os_hash_algo` on its own thread (md5 too, only
//! when Glance's md5 `checksum` is the record's only hash). A dropped connection
//! or a transient answer is retried with backoff from the last byte written: a `206`
//! continues the same digests, a `200` (or a `400`/`416` refusing the range) starts over.
//! Only a file whose size and digests match the record is renamed to FILE; a mismatch
//! removes `FILE.part`. Owns the download loop; requests are `cloud::glance`'s.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::retry::{is_transient, RetryPolicy};
use super::sparse::SparseWriter;
use super::{TransferError, BUFFER_SIZE};
use crate::cloud::glance::{DataResponse, Glance, Image};
use crate::disk::direct::AlignedBuffer;
use crate::hash::{Algorithm, Digest, HashPlan, MultiHasher};
use crate::report::{Event, Progress, Reporter};

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
    let mut state = Stream::open(&part, &expected, options.resume_partial)?;
    let progress = reporter.start_progress("download", image.size);
    progress.advance(state.written);
    let reused_bytes = state.written;
    let result = state.run(glance, image, &options.retry, &*progress, reporter);
    progress.finish();
    let counts = result?;

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

/// What the record says the data must be.
struct Expected {
    size: Option<u64>,
    md5: Option<Digest>,
    os_hash: Option<Digest>,
    plan: HashPlan,
}

impl Expected {
    fn from_record(
        image: &Image,
        require_hash: bool,
        reporter: &dyn Reporter,
    ) -> Result<Self, TransferError> {
        let parse = |algorithm: Algorithm, field: &str, text: &Option<String>| {
            let text = text.as_deref().filter(|t| !t.trim().is_empty())?;
            match algorithm.parse_hex(text) {
                Ok(digest) => Some(digest),
                Err(problem) => {
                    reporter.warn(&format!(
                        "image {}: ignoring its {field}, which is not a {algorithm} digest ({problem})",
                        image.id
                    ));
                    None
                }
            }
        };
        let md5 = parse(Algorithm::Md5, "checksum", &image.checksum);
        let os_hash = match image.os_hash_algo.as_deref().filter(|a| !a.is_empty()) {
            None => None,
            Some(name) => match name.parse::<Algorithm>() {
                Ok(algorithm) => parse(algorithm, "os_hash_value", &image.os_hash_value),
                Err(_) => {
                    reporter.warn(&format!(
                        "image {}: os_hash_algo `{name}` is not supported; verifying its checksum only",
                        image.id
                    ));
                    None
                }
            },
        };
        if md5.is_none() && os_hash.is_none() {
            if require_hash {
                return Err(TransferError::Unverifiable {
                    image: image.id.clone(),
                });
            }
            reporter.warn(&format!(
                "image {} records no checksum and no os_hash_value: the download is unverifiable",
                image.id
            ));
        }
        // The record's strongest hash is the check: md5 is computed only when it is the
        // record's only hash (or there is none), sha512 always (provenance needs it).
        let mut whole = Vec::new();
        if os_hash.is_none() {
            whole.push(Algorithm::Md5);
        }
        whole.push(os_hash.as_ref().map_or(Algorithm::Sha512, |d| d.algorithm));
        Ok(Self {
            size: image.size.filter(|&s| s > 0),
            md5,
            os_hash,
            plan: HashPlan {
                whole,
                chunks: None,
            },
        })
    }

    /// The record fields that matched, or the first mismatch.
    fn check(
        &self,
        image: &str,
        written: u64,
        computed: &[Digest],
    ) -> Result<Vec<&'static str>, TransferError> {
        if let Some(size) = self.size {
            if size != written {
                return Err(TransferError::SizeMismatch {
                    image: image.to_owned(),
                    expected: size,
                    actual: written,
                });
            }
        }
        // os_hash_value, when the record has one, makes the md5 checksum redundant.
        let (field, expected) = match (&self.os_hash, &self.md5) {
            (Some(os_hash), _) => ("os_hash_value", os_hash),
            (None, Some(md5)) => ("checksum", md5),
            (None, None) => return Ok(Vec::new()),
        };
        let actual = computed
            .iter()
            .find(|d| d.algorithm == expected.algorithm)
            .map(Digest::hex)
            .unwrap_or_default();
        if actual != expected.hex() {
            return Err(TransferError::DigestMismatch {
                image: image.to_owned(),
                algorithm: if field == "checksum" {
                    "md5 (checksum)"
                } else {
                    expected.algorithm.name()
                },
                expected: expected.hex(),
                actual,
            });
        }
        Ok(vec![field])
    }
}

#[derive(Default)]
struct Counts {
    resumes: u32,
    restarts: u32,
}

/// The part file, the digests of what it holds, and how much it holds.
struct Stream {
    file: File,
    path: PathBuf,
    hasher: MultiHasher,
    plan: HashPlan,
    written: u64,
}

impl Stream {
    fn open(part: &Path, expected: &Expected, resume: bool) -> Result<Self, TransferError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!resume)
            .mode(0o600)
            .open(part)
            .map_err(|e| TransferError::io("create", part, e))?;
        let mut hasher = MultiHasher::new(&expected.plan)?;
        let mut written = 0;
        if resume {
            let mut reader = io::BufReader::with_capacity(BUFFER_SIZE, &file);
            written = hasher
                .read_from(&mut reader, &NoProgress)
                .map_err(|e| TransferError::io("read", part, e))?;
            if expected.size.is_some_and(|size| written > size) {
                file.set_len(0)
                    .map_err(|e| TransferError::io("truncate", part, e))?;
                hasher = MultiHasher::new(&expected.plan)?;
                written = 0;
            }
        }
        Ok(Self {
            file,
            path: part.to_owned(),
            hasher,
            plan: expected.plan.clone(),
            written,
        })
    }

    /// Throws away what was received and starts from byte 0.
    fn restart(&mut self) -> Result<(), TransferError> {
        self.file
            .set_len(0)
            .map_err(|e| TransferError::io("truncate", &self.path, e))?;
        self.hasher = MultiHasher::new(&self.plan)?;
        self.written = 0;
        Ok(())
    }

    fn run(
        &mut self,
        glance: &mut Glance,
        image: &Image,
        retry: &RetryPolicy,
        progress: &dyn Progress,
        reporter: &dyn Reporter,
    ) -> Result<Counts, TransferError> {
        let mut counts = Counts::default();
        let mut failures = 0u32;
        let mut failure_offset: Option<u64> = None;
        let mut buffer = AlignedBuffer::new(BUFFER_SIZE);
        let total = image.size.filter(|&s| s > 0);
        if total.is_some_and(|t| self.written == t) {
            return Ok(counts);
        }
        loop {
            let failure: String = match glance.open_data(&image.id, self.written) {
                Ok(DataResponse::NoData) => {
                    return Err(TransferError::NoData {
                        image: image.id.clone(),
                        volume_backed: false,
                    })
                }
                Ok(DataResponse::RangeRefused { status, message }) => {
                    reporter.warn(&format!(
                        "the server refused to resume image {} at byte {} (HTTP {status}{}); starting over",
                        image.id,
                        self.written,
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    ));
                    self.restart()?;
                    counts.restarts += 1;
                    continue;
                }
                Ok(DataResponse::Whole { length, body }) => {
                    if self.written > 0 {
                        reporter.event(
                            Event::new(
                                "download.restarted",
                                format!("server sent the whole image again; restarting at byte 0 (had {})", self.written),
                            )
                            .with("image_id", image.id.clone())
                            .with("had_bytes", self.written),
                        );
                        self.restart()?;
                        counts.restarts += 1;
                    }
                    let end = length.or(total);
                    match self.pump(body, end, buffer.as_mut_slice(), progress)? {
                        None => return Ok(counts),
                        Some(problem) => problem,
                    }
                }
                Ok(DataResponse::Partial {
                    start,
                    total: of,
                    body,
                }) => {
                    if start != self.written || (total.is_some() && of.is_some() && of != total) {
                        reporter.warn(&format!(
                            "the server answered a range request for byte {} with bytes from {start} of {}; starting over",
                            self.written,
                            of.map_or_else(|| "?".into(), |t| t.to_string())
                        ));
                        self.restart()?;
                        counts.restarts += 1;
                        continue;
                    }
                    counts.resumes += 1;
                    reporter.event(
                        Event::new(
                            "download.resumed",
                            format!("resumed image {} at byte {start}", image.id),
                        )
                        .with("image_id", image.id.clone())
                        .with("offset", start),
                    );
                    match self.pump(body, of.or(total), buffer.as_mut_slice(), progress)? {
                        None => return Ok(counts),
                        Some(problem) => problem,
                    }
                }
                Err(error) if is_transient(&error) => error.to_string(),
                Err(error) => return Err(error.into()),
            };
            // Progress since the last failure means the connection works: count afresh.
            failures = if failure_offset.is_some_and(|at| at != self.written) {
                1
            } else {
                failures + 1
            };
            failure_offset = Some(self.written);
            if failures > retry.retries {
                return Err(TransferError::RetriesExhausted {
                    image: image.id.clone(),
                    attempts: failures,
                    offset: self.written,
                    last: failure,
                });
            }
            let delay = retry.delay(failures);
            reporter.event(
                Event::new(
                    "download.retry",
                    format!(
                        "{failure}; retrying in {:.1}s from byte {} (attempt {} of {})",
                        delay.as_secs_f64(),
                        self.written,
                        failures + 1,
                        retry.retries + 1
                    ),
                )
                .with("image_id", image.id.clone())
                .with("offset", self.written)
                .with("attempt", failures + 1)
                .with("reason", failure.clone()),
            );
            std::thread::sleep(delay);
        }
    }

    /// Copies the body to the file and the hasher until it ends. `Ok(None)`: the body
    /// ended where it should; `Ok(Some(reason))`: it broke off (retry from `written`).
    fn pump(
        &mut self,
        mut body: Box<dyn Read + Send>,
        end: Option<u64>,
        buffer: &mut [u8],
        progress: &dyn Progress,
    ) -> Result<Option<String>, TransferError> {
        let writer = SparseWriter::new(&self.file);
        loop {
            let (filled, error) = fill(&mut *body, buffer);
            if filled > 0 {
                let data = &buffer[..filled];
                writer
                    .write_at(data, self.written)
                    .map_err(|e| TransferError::io("write", &self.path, e))?;
                self.hasher.update(data);
                self.written += filled as u64;
                progress.advance(filled as u64);
            }
            if let Some(error) = error {
                return Ok(Some(format!(
                    "the connection broke at byte {}: {error}",
                    self.written
                )));
            }
            if filled < buffer.len() {
                break;
            }
        }
        writer
            .finish(self.written)
            .map_err(|e| TransferError::io("set the length of", &self.path, e))?;
        match end {
            Some(end) if self.written < end => Ok(Some(format!(
                "the body ended at byte {} of {end}",
                self.written
            ))),
            _ => Ok(None),
        }
    }
}

/// Reads until `buffer` is full, the body ends, or an error; returns the bytes read and
/// the error, if one stopped it.
fn fill(body: &mut dyn Read, buffer: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut filled = 0;
    while filled < buffer.len() {
        match body.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Some(e)),
        }
    }
    (filled, None)
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

/// A progress sink for re-hashing an existing part file.
struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _units: u64) {}
    fn finish(&self) {}
}
