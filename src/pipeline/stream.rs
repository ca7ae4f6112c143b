//! One-pass streaming of `migrate`/`template` from Glance to a local file (issue 14,
//! phase 3, `--to-file`): the source is read through HTTP ranges
//! ([`RemoteImage`]) for its metadata and the native sysprep, the output qcow2 is
//! planned ([`StreamPlan`]), then produced from ONE `GET /file` ([`SequentialBody`])
//! into the target file, written atomically. The source's digests (Glance's
//! `os_hash_value` and md5 `checksum`) are computed over that same GET and checked
//! before the rename: a mismatch leaves no file.
//!
//! Owns the choice between streaming and the staged pipeline ([`ModeChoice`]): staged
//! when asked (`--staged`), when the store refuses ranges, when the native backend
//! refuses the guest, for a raw source or a raw output, or when an earlier staged run of
//! the same request left data to resume. The work dir holds the state file only, and a
//! re-run redoes the stream (nothing of a stream is resumable). Must not print.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::backend::{BackendChoice, HeldReporter};
use super::copy::digests_of;
use super::endpoints::{FileDigests, SourceRecord, TargetImage};
use super::error::{PipelineError, Result};
use super::glance::record_of;
use super::local::FILE_LOCATION;
use super::properties::plan_properties;
use super::run::{check_hash, create_private_dir, target_spec, StageReport, Summary};
use super::state::{
    clear_work_dir, ConvertRecord, Stage, State, StateFile, SysprepRecord, SOURCE_PART_FILE,
};
use super::work::DiskFormat;
use super::Request;
use crate::cloud::glance::{Glance, Image as GlanceImage};
use crate::disk::output::AtomicFile;
use crate::disk::qcow2::writer::{Compat, Qcow2Format};
use crate::disk::qcow2::CompressionType;
use crate::disk::stream::{GuestWrite, StreamPlan};
use crate::disk::{open_source, Image, ReadAt, VirtualDisk};
use crate::guest::native::NativeGuest;
use crate::guest::GuestFs;
use crate::hash::{Algorithm, HashPlan, MultiHasher};
use crate::report::{Event, Progress, Reporter};
use crate::sysprep::{self, RootReport};
use crate::transfer::remote::SequentialBody;
use crate::transfer::remote::{probe_range, RangeSupport, RemoteImage, RemoteOptions};
use crate::transfer::RetryPolicy;

/// Which pipeline runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeChoice {
    /// `streaming` or `staged`.
    pub mode: &'static str,
    pub reason: String,
}

impl ModeChoice {
    /// The staged pipeline, for `reason`.
    pub fn staged(reason: impl Into<String>) -> Self {
        Self {
            mode: "staged",
            reason: reason.into(),
        }
    }

    fn streaming() -> Self {
        Self {
            mode: "streaming",
            reason: "the store serves byte ranges and the native backend handles the guest"
                .to_owned(),
        }
    }

    /// The `migrate.mode` event announcing it.
    pub fn event(&self) -> Event {
        Event::new(
            "migrate.mode",
            format!("{} pipeline: {}", self.mode, self.reason),
        )
        .with("mode", self.mode)
        .with("reason", self.reason.as_str())
    }
}

/// How a streaming attempt ended.
pub enum Outcome {
    /// Streamed: the target file is in place.
    Done(Box<Summary>),
    /// Run the staged pipeline instead, for this reason (nothing was written).
    Staged(ModeChoice),
}

/// Why the request cannot stream whatever the store and the guest, if it cannot.
fn static_refusal(request: &Request, record: &SourceRecord) -> Option<String> {
    if request.sysprep.is_some() && request.sysprep_backend == BackendChoice::Libguestfs {
        return Some("--backend libguestfs edits a local copy of the image".to_owned());
    }
    if request.output.disk_format == Some(DiskFormat::Raw) {
        return Some("the stream makes qcow2 only, --disk-format raw was asked".to_owned());
    }
    match record.disk_format.as_str() {
        "qcow2" => None,
        // A raw source's zero clusters are unknown until read: streaming it needs a scan
        // (a whole first download) before the pass that writes, and without
        // --disk-format qcow2 its output is raw, which the stream does not make.
        "raw" => Some(
            "the source is raw: streaming it would download it twice (a scan for its zero \
             clusters, then the pass that writes); the staged pipeline reads it once"
                .to_owned(),
        ),
        other => Some(format!(
            "the source's disk format is {other}, the stream reads qcow2"
        )),
    }
}

/// An earlier staged run of this request left data in the work dir: resume it.
fn staged_leftovers(request: &Request) -> Result<Option<String>> {
    if request.restart {
        return Ok(None);
    }
    let leftover = match StateFile::in_dir(&request.work_dir).load(&request.digest)? {
        Some(state) => state.done(Stage::Download) || state.sysprep_started,
        None => false,
    } || request.work_dir.join(SOURCE_PART_FILE).exists();
    Ok(leftover.then(|| {
        "an earlier staged run of this request left its download in the work dir: resuming it"
            .to_owned()
    }))
}

/// What the metadata phase made: the plan, and the native sysprep's record.
struct Prepared {
    plan: StreamPlan,
    sysprep: Option<SysprepRecord>,
    compat: Compat,
    glance: Glance,
}

/// Reads `image` through ranges: opens it, runs the sysprep natively (its edits kept in
/// the overlay), plans the output. `Err(Ok(reason))`: run staged for that reason.
fn prepare(
    request: &Request,
    mut glance: Glance,
    image: &GlanceImage,
    dry_run: bool,
    reporter: &dyn Reporter,
) -> Result<std::result::Result<Prepared, String>> {
    match probe_range(&mut glance, image)? {
        RangeSupport::Supported => {}
        RangeSupport::Unsupported { reason } => {
            return Ok(Err(format!(
                "the store does not serve byte ranges: {reason}"
            )))
        }
    }
    let remote = Arc::new(RemoteImage::new(glance, image, RemoteOptions::default())?);
    let label = Path::new(&image.id);
    let disk = Arc::new(open_source(Arc::clone(&remote) as Arc<dyn ReadAt>, label)?);
    let Image::Qcow2(qcow2) = disk.as_ref() else {
        return Ok(Err(
            "the record says qcow2 but the data is not a qcow2 image".to_owned(),
        ));
    };
    let header = qcow2.header();
    let compat = request.output.compat.unwrap_or(if header.version == 2 {
        Compat::V2
    } else {
        Compat::V3
    });
    let format = match Qcow2Format::new(compat, header.cluster_size(), CompressionType::Zlib) {
        Ok(format) => format,
        Err(e) => return Ok(Err(format!("the stream cannot write this output: {e}"))),
    };
    let (sysprep, writes) = match &request.sysprep {
        None => (None, Vec::new()),
        Some(options) => {
            let mut options = options.clone();
            options.dry_run = dry_run;
            let held = HeldReporter::new(reporter);
            match native_sysprep(
                Arc::clone(&disk) as Arc<dyn VirtualDisk>,
                label,
                &options,
                &held,
            ) {
                Ok((reports, writes)) => {
                    held.release();
                    (Some(sysprep_record(&options, &reports)), writes)
                }
                Err(e)
                    if e.is_native_limitation()
                        && request.sysprep_backend == BackendChoice::Auto =>
                {
                    return Ok(Err(format!(
                        "the native backend cannot edit this guest ({e}); libguestfs needs a \
                         local copy"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let plan = StreamPlan::for_qcow2(qcow2, writes, format)?;
    drop(disk);
    let remote = Arc::into_inner(remote).ok_or_else(|| {
        PipelineError::Unsupported("internal: the range reader is still shared".to_owned())
    })?;
    Ok(Ok(Prepared {
        plan,
        sysprep,
        compat,
        glance: remote.into_glance(),
    }))
}

/// The native sysprep over the remote disk: its reports and the writes it would commit.
fn native_sysprep(
    disk: Arc<dyn VirtualDisk>,
    label: &Path,
    options: &sysprep::Options,
    reporter: &dyn Reporter,
) -> sysprep::Result<(Vec<RootReport>, Vec<GuestWrite>)> {
    let mut guest = NativeGuest::open(disk, label)?;
    guest.require_whole_guest();
    guest.inspect()?;
    let reports = sysprep::run(&mut guest, options, reporter)?;
    let writes = if options.dry_run {
        Vec::new()
    } else {
        guest.pending_writes()?.into_data_writes()
    };
    Ok((reports, writes))
}

fn sysprep_record(options: &sysprep::Options, reports: &[RootReport]) -> SysprepRecord {
    SysprepRecord {
        operations: options
            .operations
            .iter()
            .map(|op| op.name.to_owned())
            .collect(),
        changes: reports.iter().map(|r| r.changes.len()).sum(),
        roots: reports
            .iter()
            .map(|r| {
                format!(
                    "{} ({} {}.{})",
                    r.os.root, r.os.distro, r.os.major_version, r.os.minor_version
                )
            })
            .collect(),
        backend: "native".to_owned(),
    }
}

/// Which mode `--dry-run` would run: the same checks as a run (the range probe and the
/// native sysprep over ranges, planned only), nothing written anywhere.
pub fn dry_run_mode(
    request: &Request,
    glance: Glance,
    wanted: &str,
    reporter: &dyn Reporter,
) -> Result<ModeChoice> {
    let (glance, image, record) = resolve(glance, wanted)?;
    if let Some(reason) = static_refusal(request, &record) {
        return Ok(ModeChoice::staged(reason));
    }
    if let Some(reason) = staged_leftovers(request)? {
        return Ok(ModeChoice::staged(reason));
    }
    Ok(match prepare(request, glance, &image, true, reporter)? {
        Ok(_) => ModeChoice::streaming(),
        Err(reason) => ModeChoice::staged(reason),
    })
}

fn resolve(mut glance: Glance, wanted: &str) -> Result<(Glance, GlanceImage, SourceRecord)> {
    let image = glance.resolve(wanted)?;
    let cloud = glance.session().cloud().to_owned();
    let record = record_of(&cloud, image.clone())?;
    Ok((glance, image, record))
}

/// Streams the Glance image `wanted` into the file `out`, or says why the staged
/// pipeline must run instead (before anything was written).
pub fn to_file(
    request: &Request,
    glance: Glance,
    wanted: &str,
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<Outcome> {
    let started = Instant::now();
    let (glance, image, record) = resolve(glance, wanted)?;
    check_hash(&record, request, reporter)?;
    if let Some(reason) = static_refusal(request, &record) {
        return Ok(Outcome::Staged(ModeChoice::staged(reason)));
    }
    if let Some(reason) = staged_leftovers(request)? {
        return Ok(Outcome::Staged(ModeChoice::staged(reason)));
    }
    let work_dir = &request.work_dir;
    if request.restart {
        clear_work_dir(work_dir)?;
    }
    let source_seconds = started.elapsed().as_secs_f64();
    let planning = Instant::now();
    let prepared = match prepare(request, glance, &image, false, reporter)? {
        Ok(prepared) => prepared,
        Err(reason) => return Ok(Outcome::Staged(ModeChoice::staged(reason))),
    };
    let mode = ModeChoice::streaming();
    reporter.event(mode.event());
    let plan_seconds = planning.elapsed().as_secs_f64();
    // The work dir holds the state only: what the source was, for a staged re-run.
    create_private_dir(work_dir)?;
    let state_file = StateFile::in_dir(work_dir);
    let mut state = State::new(&request.digest);
    state.source = Some(record.clone());
    state.complete(Stage::Source, source_seconds);
    state_file.save(&state)?;
    let streaming = Instant::now();
    let streamed = stream(&record, prepared.glance, &prepared.plan, out, reporter);
    let (source, output) = match streamed {
        Ok(digests) => digests,
        Err(error) => {
            // Nothing of a stream can be resumed: a re-run streams again.
            clear_work_dir(work_dir)?;
            return Err(error);
        }
    };
    let stream_seconds = streaming.elapsed().as_secs_f64();
    let spec = target_spec(request, &record, "qcow2", provenance_hash(&record, &source))?;
    let properties = plan_properties(&record.properties, &request.edits, &spec.provenance)?;
    let work_dir_removed = !request.keep_work_dir && clear_work_dir(work_dir)?;
    let stage = |stage: &'static str, seconds| StageReport {
        stage,
        seconds,
        resumed: false,
        skipped: false,
    };
    Ok(Outcome::Done(Box::new(Summary {
        source: record,
        target: TargetImage {
            id: out.display().to_string(),
            location: FILE_LOCATION.to_owned(),
            status: "active".to_owned(),
            verified_digests: Some(output.clone()),
        },
        target_reused: false,
        stages: vec![
            stage("source", source_seconds),
            stage("plan", plan_seconds),
            stage("stream", stream_seconds),
        ],
        download: Some(source),
        output: Some(output),
        sysprep: prepared.sysprep,
        convert: Some(ConvertRecord {
            file: out.display().to_string(),
            disk_format: "qcow2".to_owned(),
            compat: Some(prepared.compat.name().to_owned()),
            action: "stream".to_owned(),
        }),
        properties,
        work_dir: work_dir.clone(),
        work_dir_removed,
        mode: Some(mode),
    })))
}

fn provenance_hash(record: &SourceRecord, source: &FileDigests) -> String {
    record
        .hash
        .clone()
        .unwrap_or_else(|| source.sha512_tagged())
}

/// Produces the planned output from one GET into `out` (atomically), checking the
/// source's digests before the rename. Returns the source's and the output's digests.
fn stream(
    record: &SourceRecord,
    mut glance: Glance,
    plan: &StreamPlan,
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<(FileDigests, FileDigests)> {
    let (expected_algo, expected_hex) = match record.hash.as_deref().and_then(|h| h.split_once(':'))
    {
        Some((algo, hex)) => (
            Some(
                algo.parse::<Algorithm>()
                    .map_err(PipelineError::Unsupported)?,
            ),
            hex,
        ),
        None => (None, ""),
    };
    let mut whole = vec![Algorithm::Md5, Algorithm::Sha512];
    whole.extend(expected_algo);
    let source_plan = HashPlan {
        whole,
        chunks: None,
    };
    let output_plan = HashPlan {
        whole: vec![Algorithm::Md5, Algorithm::Sha512],
        chunks: None,
    };
    let file = AtomicFile::create(out)?;
    let progress = reporter.start_progress("streaming", Some(record.size));
    let mut source = Hashing {
        inner: SequentialBody::new(&mut glance, &record.id, record.size, RetryPolicy::default()),
        hasher: MultiHasher::new(&source_plan)?,
        progress: progress.as_ref(),
    };
    let handle = file
        .file()
        .try_clone()
        .map_err(|e| PipelineError::io("open", file.temp_path(), e))?;
    let mut sink = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, handle),
        hasher: MultiHasher::new(&output_plan)?,
    };
    let produced = plan.produce(&mut source, &mut sink, out);
    crate::interrupt::check()?;
    produced?;
    let HashingWriter {
        inner: mut buffered,
        hasher: output_hasher,
    } = sink;
    buffered
        .flush()
        .map_err(|e| PipelineError::io("write", file.temp_path(), e))?;
    drop(buffered);
    progress.finish();
    let source_digests = source.hasher.finish()?;
    let output_digests = digests_of(&output_hasher.finish()?);
    let what = format!("source image {} as streamed", record.id);
    if let Some(algo) = expected_algo {
        let actual = source_digests
            .whole
            .iter()
            .find(|d| d.algorithm == algo)
            .map(|d| d.hex())
            .unwrap_or_default();
        if !actual.eq_ignore_ascii_case(expected_hex) {
            return Err(PipelineError::HashMismatch {
                what,
                expected: format!("{algo}:{expected_hex}"),
                actual: format!("{algo}:{actual}"),
            });
        }
    }
    let digests = digests_of(&source_digests);
    if let (Some(expected), Some(actual)) = (&record.checksum, &digests.md5) {
        if !expected.eq_ignore_ascii_case(actual) {
            return Err(PipelineError::HashMismatch {
                what,
                expected: format!("md5:{expected}"),
                actual: format!("md5:{actual}"),
            });
        }
    }
    file.commit()?;
    Ok((digests, output_digests))
}

/// The source GET, hashed as the producer reads it.
struct Hashing<'a, R> {
    inner: R,
    hasher: MultiHasher,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if crate::interrupt::check().is_err() {
            return Err(io::Error::other("interrupted"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// The output, hashed as it is written.
struct HashingWriter<W> {
    inner: W,
    hasher: MultiHasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::OutputChoice;

    fn record(disk_format: &str) -> SourceRecord {
        SourceRecord {
            cloud: "c1".into(),
            id: "i1".into(),
            name: "vm".into(),
            disk_format: disk_format.into(),
            size: 1 << 20,
            virtual_size: None,
            hash: None,
            checksum: None,
            min_disk: None,
            min_ram: None,
            tags: Vec::new(),
            properties: Default::default(),
        }
    }

    #[test]
    fn what_the_stream_cannot_make_runs_staged_with_its_reason() {
        let plain = Request::default();
        assert_eq!(static_refusal(&plain, &record("qcow2")), None);
        let raw = static_refusal(&plain, &record("raw")).unwrap();
        assert!(raw.contains("download it twice"), "{raw}");
        let vmdk = static_refusal(&plain, &record("vmdk")).unwrap();
        assert!(vmdk.contains("vmdk"), "{vmdk}");
        let to_raw = Request {
            output: OutputChoice {
                disk_format: Some(DiskFormat::Raw),
                compat: None,
            },
            ..Request::default()
        };
        assert!(static_refusal(&to_raw, &record("qcow2"))
            .unwrap()
            .contains("--disk-format raw"));
        let appliance = Request {
            sysprep: Some(sysprep::Options::default()),
            sysprep_backend: BackendChoice::Libguestfs,
            ..Request::default()
        };
        assert!(static_refusal(&appliance, &record("qcow2"))
            .unwrap()
            .contains("--backend libguestfs"));
        let untouched = Request {
            sysprep_backend: BackendChoice::Libguestfs,
            ..Request::default()
        };
        assert_eq!(
            static_refusal(&untouched, &record("qcow2")),
            None,
            "no sysprep: no backend runs"
        );
    }

    #[test]
    fn the_mode_event_names_mode_and_reason() {
        let event = ModeChoice::staged("--staged was given").event();
        assert_eq!(event.kind, "migrate.mode");
        assert!(event
            .message
            .contains("staged pipeline: --staged was given"));
    }
}
