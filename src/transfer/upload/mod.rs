//! Verified upload: FILE -> a new Glance image, or nothing.
//!
//! Order: detect the disk format from the content and refuse a mismatch with the declared
//! one; check the import method is offered; only then create the record. The data is
//! streamed with `Content-Length` (`PUT .../file`, or `PUT .../stage` + `POST .../import`
//! for glance-direct) and hashed (sha512) on another thread as it is read; transient
//! failures restart the stream from byte 0 with backoff (Glance puts a cut-off image back
//! to `queued`). Then it waits for `active` and compares Glance's size and
//! `os_hash_value` with ours (the md5 `checksum` only when the record has no sha512
//! `os_hash_value`: an older Glance; that digest then takes a second local pass). On any
//! failure after the record exists, the image is deleted unless `keep_failed`.
//!
//! This module owns the options, the checks before anything is created, and the result;
//! [`job`] sends the data into the record, waits and cleans up; [`verify`] compares
//! Glance's record with what was sent. Requests are `cloud::glance`'s.

mod job;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::retry::RetryPolicy;
use super::TransferError;
use crate::cloud::glance::{Glance, Image};
use crate::disk::detect::{detect, Format};
use crate::disk::LocalFile;
use crate::hash::Digest;
use crate::report::{Event, Reporter};
use job::Job;

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
