//! Verified upload: FILE -> a new Glance image, or nothing.
//!
//! Order: detect the disk format from the content and refuse a mismatch with the declared
//! one; check the import method is offered; only then create the record. The data is
//! streamed with `Content-Length` (`PUT .../file`, or `PUT .../stage` + `POST .../import`
//! for glance-direct) and hashed (sha512) on another thread as it is read; transient
//! failures restart the stream from byte 0 with backoff (Glance puts a cut-off image back
//! to `queued`). Then it waits for `active` and compares Glance's size and
//! `os_hash_value` with ours (the md5 `checksum` only when the record has no sha512
//! `os_hash_value`: an older Glance; that digest then takes a second local pass). On any failure after the record exists, the image is deleted
//! unless `keep_failed`. Owns the upload sequence; requests are `cloud::glance`'s.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::retry::{is_transient, RetryPolicy};
use super::{TransferError, BUFFER_SIZE};
use crate::cloud::glance::{DataTarget, Glance, Image};
use crate::cloud::CloudError;
use crate::disk::detect::{detect, Format};
use crate::disk::LocalFile;
use crate::hash::{hash_file, Algorithm, Digest, HashPlan, MultiHasher};
use crate::report::{Event, Progress, Reporter};

/// Retries of the clean-up DELETE after a failed upload, whatever `--retries` says.
const CLEANUP_RETRIES: u32 = 3;

/// How the data reaches Glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMethod {
    /// `PUT /v2/images/{id}/file`.
    #[default]
    Put,
    /// Interoperable import: `PUT .../stage`, then `POST .../import` with `glance-direct`.
    GlanceDirect,
}

impl UploadMethod {
    pub fn name(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::GlanceDirect => "glance-direct",
        }
    }
}

/// What to create and how.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    pub name: String,
    /// The declared disk format; `None` uses the detected one. A declared format that
    /// the content contradicts is refused before anything is created.
    pub disk_format: Option<String>,
    pub container_format: String,
    /// `private`, `shared`, `community` or `public`; `None` leaves Glance's default.
    pub visibility: Option<String>,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    /// Extra properties of the record (strings usually; any JSON value is sent as is).
    pub properties: BTreeMap<String, Value>,
    pub method: UploadMethod,
    /// Longest wait for `active` once the data is sent.
    pub active_timeout: Duration,
    /// Keep the image when the upload fails (for inspection) instead of deleting it.
    pub keep_failed: bool,
    pub retry: RetryPolicy,
}

impl UploadOptions {
    /// Options for an image called `name` with every other choice at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            disk_format: None,
            container_format: "bare".into(),
            visibility: None,
            min_disk: None,
            min_ram: None,
            properties: BTreeMap::new(),
            method: UploadMethod::Put,
            active_timeout: Duration::from_secs(600),
            keep_failed: false,
            retry: RetryPolicy::default(),
        }
    }
}

/// A verified upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The image as Glance recorded it, `active`.
    pub image: Image,
    pub path: PathBuf,
    pub bytes: u64,
    /// The disk format sent (declared or detected).
    pub disk_format: String,
    /// md5 and sha512 of what was sent.
    pub digests: Vec<Digest>,
    /// Which record fields matched ours (`size`, `checksum`, `os_hash_value`).
    pub verified: Vec<&'static str>,
    pub method: UploadMethod,
    /// Times the data was sent (1 without retries).
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Uploads `path` as a new image; see the module doc.
pub fn upload(
    glance: &mut Glance,
    path: &Path,
    options: &UploadOptions,
    reporter: &dyn Reporter,
) -> Result<Uploaded, TransferError> {
    let started = Instant::now();
    let source = LocalFile::open(path).map_err(|e| TransferError::io("open", path, e))?;
    let length = source
        .file()
        .metadata()
        .map_err(|e| TransferError::io("stat", path, e))?
        .len();
    let detected = detect(&source).map_err(|e| TransferError::io("read", path, e))?;
    let disk_format = match &options.disk_format {
        Some(declared) if !format_matches(declared, detected) => {
            return Err(TransferError::FormatMismatch {
                path: path.to_owned(),
                declared: declared.clone(),
                detected: detected.name(),
            })
        }
        Some(declared) => declared.clone(),
        None => detected.name().to_owned(),
    };
    if options.method == UploadMethod::GlanceDirect {
        let offered = glance.import_methods()?;
        if !offered.iter().any(|m| m == "glance-direct") {
            return Err(TransferError::ImportNotOffered {
                method: "glance-direct",
                offered,
            });
        }
    }
    // Enough token for the whole transfer at a pessimistic 10 MiB/s, plus the wait.
    glance.session_mut().ensure_valid_for(
        Duration::from_secs(length / (10 << 20) + 60).saturating_add(options.active_timeout),
    )?;

    let record = glance.create(&record_fields(options, &disk_format))?;
    reporter.event(
        Event::new(
            "upload.created",
            format!("created image {} ({})", record.id, options.name),
        )
        .with("image_id", record.id.clone())
        .with("name", options.name.clone())
        .with("disk_format", disk_format.clone()),
    );
    let mut job = Job {
        glance,
        id: record.id.clone(),
        path,
        length,
        options,
        reporter,
    };
    match job.run(source.file()) {
        Ok((image, digests, verified, attempts)) => {
            let uploaded = Uploaded {
                image,
                path: path.to_owned(),
                bytes: length,
                disk_format,
                digests,
                verified,
                method: options.method,
                attempts,
                elapsed: started.elapsed(),
            };
            reporter.event(uploaded_event(&uploaded));
            Ok(uploaded)
        }
        Err(error) => {
            job.clean_up(&error);
            Err(error)
        }
    }
}

/// Whether the content's format agrees with the declared `disk_format`.
fn format_matches(declared: &str, detected: Format) -> bool {
    let declared = declared.to_ascii_lowercase();
    match detected {
        // Glance's iso is raw bytes too; anything without a signature is raw.
        Format::Raw => declared == "raw",
        other => declared == other.name(),
    }
}

fn record_fields(options: &UploadOptions, disk_format: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    for (key, value) in &options.properties {
        fields.insert(key.clone(), value.clone());
    }
    fields.insert("name".into(), options.name.clone().into());
    fields.insert("disk_format".into(), disk_format.into());
    fields.insert(
        "container_format".into(),
        options.container_format.clone().into(),
    );
    if let Some(visibility) = &options.visibility {
        fields.insert("visibility".into(), visibility.clone().into());
    }
    if let Some(min_disk) = options.min_disk {
        fields.insert("min_disk".into(), min_disk.into());
    }
    if let Some(min_ram) = options.min_ram {
        fields.insert("min_ram".into(), min_ram.into());
    }
    fields
}

/// One upload into an existing record.
struct Job<'a> {
    glance: &'a mut Glance,
    id: String,
    path: &'a Path,
    length: u64,
    options: &'a UploadOptions,
    reporter: &'a dyn Reporter,
}

type JobResult = (Image, Vec<Digest>, Vec<&'static str>, u32);

impl Job<'_> {
    fn run(&mut self, file: &std::fs::File) -> Result<JobResult, TransferError> {
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
        let verified = self.compare(&image, &digests)?;
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
                inner: BufReader::with_capacity(BUFFER_SIZE, reader),
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
            std::thread::sleep(delay);
        }
    }

    /// Polls the record until `active`, a failed state, or the timeout.
    fn wait_active(&mut self) -> Result<Image, TransferError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
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
            std::thread::sleep(pause.min(self.options.active_timeout.saturating_sub(waited)));
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Glance's size, checksum and os_hash_value against ours.
    fn compare(
        &self,
        image: &Image,
        digests: &[Digest],
    ) -> Result<Vec<&'static str>, TransferError> {
        let mismatch = |field, theirs: String, ours: String| TransferError::UploadMismatch {
            image: self.id.clone(),
            field,
            theirs,
            ours,
        };
        let mut verified = Vec::new();
        match image.size {
            Some(size) if size == self.length => verified.push("size"),
            Some(size) => return Err(mismatch("size", size.to_string(), self.length.to_string())),
            None => {}
        }
        let ours = |algorithm: Algorithm| {
            digests
                .iter()
                .find(|d| d.algorithm == algorithm)
                .map(Digest::hex)
        };
        if let (Some(theirs), Some(ours)) = (&image.checksum, ours(Algorithm::Md5)) {
            if !theirs.eq_ignore_ascii_case(&ours) {
                return Err(mismatch("checksum", theirs.clone(), ours));
            }
            verified.push("checksum");
        }
        let algorithm = image
            .os_hash_algo
            .as_deref()
            .and_then(|a| a.parse::<Algorithm>().ok());
        if let (Some(theirs), Some(ours)) = (&image.os_hash_value, algorithm.and_then(ours)) {
            if !theirs.eq_ignore_ascii_case(&ours) {
                return Err(mismatch("os_hash_value", theirs.clone(), ours));
            }
            verified.push("os_hash_value");
        }
        if !verified.contains(&"checksum") && !verified.contains(&"os_hash_value") {
            self.reporter.warn(&format!(
                "image {} records no checksum or os_hash_value we can compare: only its size was checked",
                self.id
            ));
        }
        Ok(verified)
    }

    /// Deletes the half-created image (unless `keep_failed`), saying what happened.
    fn clean_up(&mut self, error: &TransferError) {
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
        let retry = &self.options.retry;
        let retries = retry.retries.max(CLEANUP_RETRIES);
        let mut failures = 0u32;
        loop {
            match self.glance.delete(&self.id) {
                Err(error) if is_transient(&error) && failures < retries => {
                    failures += 1;
                    std::thread::sleep(retry.delay(failures));
                }
                result => return result,
            }
        }
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

fn uploaded_event(u: &Uploaded) -> Event {
    let secs = u.elapsed.as_secs_f64().max(1e-9);
    let mut event = Event::new(
        "upload.done",
        format!(
            "uploaded {} as image {} ({} bytes, {:.1} MiB/s, verified: {})",
            u.path.display(),
            u.image.id,
            u.bytes,
            u.bytes as f64 / secs / 1048576.0,
            u.verified.join(", ")
        ),
    )
    .with("image_id", u.image.id.clone())
    .with("path", u.path.display().to_string())
    .with("bytes", u.bytes)
    .with("disk_format", u.disk_format.clone())
    .with("method", u.method.name())
    .with("attempts", u.attempts)
    .with("seconds", secs)
    .with("verified", u.verified.clone());
    for digest in &u.digests {
        event = event.with(digest.algorithm.name(), digest.hex());
    }
    event
}

/// The digests the record holds that `computed` lacks and that we need for the check:
/// its `os_hash_value` algorithm when not sha512, and md5 when there is no comparable
/// `os_hash_value` but a `checksum`.
fn missing_digests(image: &Image, computed: &[Digest]) -> Vec<Algorithm> {
    let has = |algorithm: Algorithm| computed.iter().any(|d| d.algorithm == algorithm);
    let os_hash = image
        .os_hash_value
        .as_ref()
        .and(image.os_hash_algo.as_deref())
        .and_then(|name| name.parse::<Algorithm>().ok());
    match os_hash {
        Some(algorithm) if has(algorithm) => Vec::new(),
        Some(algorithm) => vec![algorithm],
        None if image.checksum.is_some() && !has(Algorithm::Md5) => vec![Algorithm::Md5],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::detect::UnsupportedFormat;

    #[test]
    fn declared_formats_must_agree_with_the_content() {
        assert!(format_matches("raw", Format::Raw));
        assert!(format_matches("QCOW2", Format::Qcow2));
        assert!(!format_matches("qcow2", Format::Raw));
        assert!(!format_matches("raw", Format::Qcow2));
        assert!(format_matches(
            "vmdk",
            Format::Unsupported(UnsupportedFormat::Vmdk)
        ));
    }

    #[test]
    fn a_second_pass_is_asked_only_for_what_the_record_has_and_we_lack() {
        let image = |fields: Value| -> Image {
            let mut record = serde_json::json!({"id": "i", "name": "n", "status": "active"});
            record
                .as_object_mut()
                .unwrap()
                .extend(fields.as_object().unwrap().clone());
            serde_json::from_value(record).unwrap()
        };
        let sha512 = [Digest {
            algorithm: Algorithm::Sha512,
            bytes: vec![0; 64],
        }];
        let modern = image(
            serde_json::json!({"checksum": "c", "os_hash_algo": "sha512", "os_hash_value": "v"}),
        );
        assert_eq!(missing_digests(&modern, &sha512), vec![]);
        let sha256 = image(
            serde_json::json!({"checksum": "c", "os_hash_algo": "sha256", "os_hash_value": "v"}),
        );
        assert_eq!(missing_digests(&sha256, &sha512), vec![Algorithm::Sha256]);
        let old = image(serde_json::json!({"checksum": "c"}));
        assert_eq!(missing_digests(&old, &sha512), vec![Algorithm::Md5]);
        let unknown = image(
            serde_json::json!({"checksum": "c", "os_hash_algo": "whirlpool", "os_hash_value": "v"}),
        );
        assert_eq!(missing_digests(&unknown, &sha512), vec![Algorithm::Md5]);
        let nothing = image(serde_json::json!({}));
        assert_eq!(missing_digests(&nothing, &sha512), vec![]);
    }

    #[test]
    fn record_fields_put_core_fields_over_properties() {
        let mut options = UploadOptions::named("n");
        options.properties.insert("name".into(), "ignored".into());
        options
            .properties
            .insert("hw_disk_bus".into(), "scsi".into());
        options.min_disk = Some(2);
        let fields = record_fields(&options, "qcow2");
        assert_eq!(fields["name"], "n");
        assert_eq!(fields["disk_format"], "qcow2");
        assert_eq!(fields["container_format"], "bare");
        assert_eq!(fields["hw_disk_bus"], "scsi");
        assert_eq!(fields["min_disk"], 2);
        assert!(!fields.contains_key("visibility"));
    }
}
