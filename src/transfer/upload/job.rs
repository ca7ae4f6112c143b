//! One upload into a record that exists: send the data (retried from byte 0 on transient
//! failures once Glance has put the record back to `queued`, re-authenticated once on a
//! 401), hash it on another thread as it is read, start the import for glance-direct,
//! wait for `active`, and on failure delete the record (unless `keep_failed`). A stop request (SIGINT, SIGTERM) ends the sending, a
//! retry wait or the wait for `active` and is such a failure: the record is deleted.
//!
//! Owns that sequence. Must not: create the record or decide the format (that is
//! [`super`]), or judge the record's digests (that is [`super::verify`]).

use std::io::{self, BufReader, Read, Seek};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::verify::{compare, missing_digests};
use super::{UploadMethod, UploadOptions};
use crate::cloud::glance::{DataTarget, Glance, Image};
use crate::cloud::CloudError;
use crate::hash::{hash_file, Algorithm, Digest, HashPlan, MultiHasher};
use crate::report::{Event, Progress, Reporter};
use crate::transfer::retry::{is_transient, RetryPolicy};
use crate::transfer::stop::{pause, StopReader};
use crate::transfer::{TransferError, BUFFER_SIZE};

/// Retries of the clean-up DELETE after a failed upload, whatever `--retries` says.
const CLEANUP_RETRIES: u32 = 3;

/// Longest wait for Glance to put the record back to `queued` after a broken attempt.
const REQUEUE_WAIT: Duration = Duration::from_secs(30);

/// One upload into an existing record.
pub(super) struct Job<'a> {
    pub(super) glance: &'a mut Glance,
    pub(super) id: String,
    pub(super) path: &'a Path,
    pub(super) length: u64,
    pub(super) options: &'a UploadOptions,
    pub(super) reporter: &'a dyn Reporter,
}

pub(super) type JobResult = (Image, Vec<Digest>, Vec<&'static str>, u32);

impl Job<'_> {
    pub(super) fn run(&mut self, file: &std::fs::File) -> Result<JobResult, TransferError> {
        let (digests, attempts) = self.send(file)?;
        if self.options.method == UploadMethod::GlanceDirect {
            self.glance.import(&self.id, "glance-direct")?;
        }
        let image = self.wait_active()?;
        let mut digests = digests;
        let missing = missing_digests(&image, &digests);
        if !missing.is_empty() {
            // An older Glance without sha512 `os_hash_value`: a second local pass for
            // the digest it does record.
            let plan = HashPlan {
                whole: missing,
                chunks: None,
            };
            digests.extend(hash_file(self.path, &plan, self.reporter)?.whole);
        }
        let verified = compare(&image, self.length, &digests, self.reporter)?;
        Ok((image, digests, verified, attempts))
    }

    /// Sends the data, retrying transient failures from byte 0.
    fn send(&mut self, file: &std::fs::File) -> Result<(Vec<Digest>, u32), TransferError> {
        let target = match self.options.method {
            UploadMethod::Put => DataTarget::File,
            UploadMethod::GlanceDirect => DataTarget::Stage,
        };
        let retry = &self.options.retry;
        let mut failures = 0u32;
        let mut reauthenticated = false;
        loop {
            let attempt = failures + 1;
            let mut reader = file;
            reader
                .rewind()
                .map_err(|e| TransferError::io("rewind", self.path, e))?;
            let progress = self.reporter.start_progress("upload", Some(self.length));
            let mut hashing = HashingReader {
                inner: StopReader(BufReader::with_capacity(BUFFER_SIZE, reader)),
                hasher: MultiHasher::new(&HashPlan {
                    whole: vec![Algorithm::Sha512],
                    chunks: None,
                })?,
                progress: &*progress,
                sent: 0,
            };
            let result = self
                .glance
                .put_data(&self.id, target, &mut hashing, self.length);
            progress.finish();
            // A stop request fails the body's next read: that is not a broken connection.
            crate::interrupt::check()?;
            let error = match result {
                Ok(()) if hashing.sent == self.length => {
                    return Ok((hashing.hasher.finish()?.whole, attempt))
                }
                Ok(()) => CloudError::InvalidResponse {
                    url: format!("image {}", self.id),
                    problem: format!(
                        "accepted the upload after {} of {} bytes",
                        hashing.sent, self.length
                    ),
                },
                Err(error) => error,
            };
            let unauthorized = matches!(error, CloudError::Http { status: 401, .. });
            if unauthorized && !reauthenticated {
                reauthenticated = true;
                self.glance.session_mut().reauthenticate()?;
                continue;
            }
            if !is_transient(&error) {
                return Err(error.into());
            }
            failures += 1;
            if failures > retry.retries {
                return Err(TransferError::UploadFailed {
                    path: self.path.to_owned(),
                    image: self.id.clone(),
                    attempts: failures,
                    last: error.to_string(),
                });
            }
            let delay = retry.delay(failures);
            self.reporter.event(
                Event::new(
                    "upload.retry",
                    format!(
                        "{error}; sending again in {:.1}s (attempt {} of {})",
                        delay.as_secs_f64(),
                        failures + 1,
                        retry.retries + 1
                    ),
                )
                .with("image_id", self.id.clone())
                .with("attempt", failures + 1)
                .with("reason", error.to_string()),
            );
            pause(delay)?;
            self.wait_until_queued()?;
        }
    }

    /// Before a re-send: waits (at most [`REQUEUE_WAIT`]) until Glance has put the record
    /// back to `queued`. Glance does so only once it has cleaned up after the broken
    /// attempt; a PUT that arrives while the record still says `saving` (or `uploading`
    /// when staging) is answered 409 and would fail the upload for good.
    ///
    /// The lookup also re-authenticates on a 401: a rejected token can reach us as a reset
    /// connection rather than a 401 (Glance answers before reading the body and closes).
    /// A lookup that fails, or a record still busy at the deadline, is left to the next
    /// attempt to report.
    fn wait_until_queued(&mut self) -> Result<(), TransferError> {
        let started = Instant::now();
        let mut interval = Duration::from_millis(100);
        let mut said = false;
        loop {
            let Ok(image) = self.glance.show(&self.id) else {
                return Ok(());
            };
            match image.status.as_str() {
                "saving" | "uploading" if !said => {
                    said = true;
                    self.reporter.event(
                        Event::new(
                            "upload.waiting",
                            format!(
                                "image {} still says `{}` after the broken attempt; waiting for Glance to put it back to `queued`",
                                self.id, image.status
                            ),
                        )
                        .with("image_id", self.id.clone())
                        .with("status", image.status.clone()),
                    );
                }
                "saving" | "uploading" => {}
                "killed" | "deleted" | "pending_delete" => {
                    return Err(TransferError::ImageFailed {
                        image: self.id.clone(),
                        status: image.status,
                    })
                }
                _ => return Ok(()),
            }
            if started.elapsed() >= REQUEUE_WAIT {
                return Ok(());
            }
            pause(interval)?;
            interval = (interval * 2).min(Duration::from_secs(1));
        }
    }

    /// Polls the record until `active`, a failed state, or the timeout.
    fn wait_active(&mut self) -> Result<Image, TransferError> {
        let started = Instant::now();
        let mut interval = Duration::from_millis(100);
        loop {
            let image = self.glance.show(&self.id)?;
            match image.status.as_str() {
                "active" => return Ok(image),
                "killed" | "deleted" | "pending_delete" | "deactivated" => {
                    return Err(TransferError::ImageFailed {
                        image: self.id.clone(),
                        status: image.status,
                    })
                }
                // After a successful PUT, or after an import failed, Glance says `queued`.
                "queued" if self.options.method == UploadMethod::Put => {
                    return Err(TransferError::ImageFailed {
                        image: self.id.clone(),
                        status: image.status,
                    })
                }
                _ if import_failed(&image) => {
                    return Err(TransferError::ImageFailed {
                        image: self.id.clone(),
                        status: format!("{} (import failed)", image.status),
                    })
                }
                _ => {}
            }
            let waited = started.elapsed();
            if waited >= self.options.active_timeout {
                return Err(TransferError::ActiveTimeout {
                    image: self.id.clone(),
                    status: image.status,
                    waited,
                });
            }
            pause(interval.min(self.options.active_timeout.saturating_sub(waited)))?;
            interval = (interval * 2).min(Duration::from_secs(2));
        }
    }
    /// Deletes the half-created image (unless `keep_failed`), saying what happened.
    pub(super) fn clean_up(&mut self, error: &TransferError) {
        if self.options.keep_failed {
            self.reporter.warn(&format!(
                "upload failed; image {} is kept for inspection (--keep-failed)",
                self.id
            ));
            return;
        }
        match self.delete_with_retries() {
            Ok(_) => self.reporter.event(
                Event::new(
                    "upload.cleaned_up",
                    format!("deleted the half-created image {} after: {error}", self.id),
                )
                .with("image_id", self.id.clone()),
            ),
            Err(delete_error) => self.reporter.warn(&format!(
                "upload failed and the half-created image {} could not be deleted ({delete_error}); delete it by hand",
                self.id
            )),
        }
    }
}

impl Job<'_> {
    /// Deletes the record, retrying transient answers (a Glance on SQLite answers a
    /// concurrent write with 500 "database is locked") with the transfer's backoff, at
    /// least [`CLEANUP_RETRIES`] times even when `--retries 0` forbade resending data:
    /// leaving nothing behind matters more than failing fast.
    fn delete_with_retries(&mut self) -> Result<bool, CloudError> {
        let policy = RetryPolicy {
            retries: self.options.retry.retries.max(CLEANUP_RETRIES),
            ..self.options.retry
        };
        let (glance, id) = (&mut *self.glance, &self.id);
        policy.run(|| glance.delete(id))
    }
}

fn import_failed(image: &Image) -> bool {
    image
        .properties
        .get("os_glance_failed_import")
        .and_then(Value::as_str)
        .is_some_and(|stores| !stores.is_empty())
}

/// Hands what it reads to the hasher and the progress bar.
struct HashingReader<'a, R> {
    inner: R,
    hasher: MultiHasher,
    progress: &'a dyn Progress,
    sent: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.sent += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
