//! The bytes of a download: the part file, the digests of what it holds, and the loop
//! that fills it from Glance (retried with backoff, resumed with `Range` when the server
//! answers 206, started over when it answers 200 or refuses the range).
//!
//! Owns reading the body into pooled aligned buffers, feeding the hasher, and handing
//! the buffers' data runs (zero blocks left as holes) to a writer thread.
//! Must not: decide whether the result is acceptable (that is [`super::expected`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::expected::Expected;
use crate::cloud::glance::{DataResponse, Glance, Image};
use crate::disk::buffers::BufferPool;
use crate::disk::write_queue::WriteQueue;
use crate::hash::{HashPlan, MultiHasher};
use crate::report::{Event, Progress, Reporter};
use crate::transfer::retry::{is_transient, RetryPolicy};
use crate::transfer::sparse::data_runs;
use crate::transfer::stop::{pause, StopReader};
use crate::transfer::{TransferError, BUFFER_SIZE};

/// How often the stream continued or started over.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) resumes: u32,
    pub(super) restarts: u32,
}

/// The part file, the digests of what it holds, and how much it holds.
pub(super) struct Stream {
    pub(super) file: File,
    path: PathBuf,
    pub(super) hasher: MultiHasher,
    plan: HashPlan,
    pub(super) written: u64,
}

impl Stream {
    pub(super) fn open(
        part: &Path,
        expected: &Expected,
        resume: bool,
    ) -> Result<Self, TransferError> {
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
            let mut reader = StopReader(io::BufReader::with_capacity(BUFFER_SIZE, &file));
            written = hasher.read_from(&mut reader, &NoProgress).map_err(|e| {
                match crate::interrupt::check() {
                    Err(stop) => TransferError::from(stop),
                    Ok(()) => TransferError::io("read", part, e),
                }
            })?;
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

    pub(super) fn run(
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
        // Two buffers: one received and hashed while the other is written.
        let pool = BufferPool::new(2, BUFFER_SIZE);
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
                    match self.pump(body, end, &pool, progress)? {
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
                    match self.pump(body, of.or(total), &pool, progress)? {
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
            pause(delay)?;
        }
    }

    /// Copies the body to the file and the hasher until it ends. `Ok(None)`: the body
    /// ended where it should; `Ok(Some(reason))`: it broke off (retry from `written`).
    /// A stop request ends it between reads: what arrived is written, the file's length
    /// set to it, and `Err(Interrupted)` returned. The disk writes run on a writer
    /// thread while the next buffer is received and hashed; every one is done (or has
    /// failed) before this returns.
    fn pump(
        &mut self,
        body: Box<dyn Read + Send>,
        end: Option<u64>,
        pool: &BufferPool,
        progress: &dyn Progress,
    ) -> Result<Option<String>, TransferError> {
        let io_error = |what, e| TransferError::io(what, &self.path, e);
        let queue = WriteQueue::new(&self.file, 1).map_err(|e| io_error("open", e))?;
        let mut body = StopReader(body);
        let broke = loop {
            let mut buffer = pool.take();
            let capacity = buffer.as_slice().len();
            let (filled, error) = fill(&mut body, buffer.as_mut_slice());
            if filled > 0 {
                let data = buffer.share(filled);
                self.hasher.update(&data);
                for run in data_runs(&data) {
                    let offset = self.written + run.start as u64;
                    queue
                        .submit(data.clone(), run, offset)
                        .map_err(|e| io_error("write", e))?;
                }
                self.written += filled as u64;
                progress.advance(filled as u64);
            }
            if error.is_some() || filled < capacity {
                break error;
            }
        };
        queue.finish().map_err(|e| io_error("write", e))?;
        self.file
            .set_len(self.written)
            .map_err(|e| io_error("set the length of", e))?;
        if let Some(error) = broke {
            crate::interrupt::check()?;
            return Ok(Some(format!(
                "the connection broke at byte {}: {error}",
                self.written
            )));
        }
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

/// A progress sink for re-hashing an existing part file.
struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _units: u64) {}
    fn finish(&self) {}
}
