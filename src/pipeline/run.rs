//! The stage machine: [`run`] (resumable, one stage after another, state saved after
//! each) and [`plan`] (the dry run: what would happen, nothing written anywhere).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::copy::hash_local;
use super::endpoints::{FileDigests, Source, SourceRecord, Target, TargetImage, TargetSpec};
use super::error::{PipelineError, Result};
use super::properties::{plan_properties, PropertyPlan, Provenance};
use super::space::{self, SpaceNeed, MARGIN};
use super::state::{
    clear_work_dir, ConvertRecord, Stage, State, StateFile, SysprepRecord, SOURCE_FILE,
    SOURCE_PART_FILE,
};
use super::stream::ModeChoice;
use super::work::{format_step, plan_output, sysprep_image, OutputAction};
use super::{Request, VERSION};
use crate::report::{Event, Reporter};

/// One stage as the summary shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub stage: &'static str,
    pub seconds: f64,
    /// Done by an earlier run (this one skipped it).
    pub resumed: bool,
    /// Not needed: the target image already existed.
    pub skipped: bool,
}

/// What a finished run did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub source: SourceRecord,
    pub target: TargetImage,
    /// The target image came from an earlier run of the same request.
    pub target_reused: bool,
    pub stages: Vec<StageReport>,
    pub download: Option<FileDigests>,
    pub output: Option<FileDigests>,
    pub sysprep: Option<SysprepRecord>,
    pub convert: Option<ConvertRecord>,
    pub properties: PropertyPlan,
    pub work_dir: std::path::PathBuf,
    pub work_dir_removed: bool,
    /// Streaming or staged, and why (set by the caller that chose).
    pub mode: Option<ModeChoice>,
}

/// What a dry run found.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub source: SourceRecord,
    pub space_needed: SpaceNeed,
    pub space_available: u64,
    pub output: OutputAction,
    pub target_name: String,
    pub properties: PropertyPlan,
    /// Operations that would run (`None`: `--no-sysprep`).
    pub sysprep_operations: Option<Vec<String>>,
    /// The exact sysprep plan, when the source is a local file (read-only inspection).
    pub sysprep_plan: Option<SysprepRecord>,
    /// Streaming or staged, and why (set by the caller that chose).
    pub mode: Option<ModeChoice>,
}

fn space_need(record: &SourceRecord, output: &OutputAction) -> SpaceNeed {
    let convert = match output {
        OutputAction::Convert {
            disk_format: "raw", ..
        } => record.virtual_size.unwrap_or(record.size),
        OutputAction::Convert { .. } => record.size,
        _ => 0,
    };
    SpaceNeed {
        download: record.size,
        convert,
        margin: MARGIN,
    }
}

pub(super) fn check_hash(
    record: &SourceRecord,
    request: &Request,
    reporter: &dyn Reporter,
) -> Result<()> {
    if record.hash.is_none() && record.cloud != super::local::FILE_LOCATION {
        if request.require_hash {
            return Err(PipelineError::MissingHash {
                id: record.id.clone(),
            });
        }
        reporter.warn(&format!(
            "source image {} has no os_hash_value: the download is checked against its md5 \
             checksum only (if any); imgferry records the sha512 it computes",
            record.id
        ));
    }
    Ok(())
}

pub(super) fn target_spec(
    request: &Request,
    record: &SourceRecord,
    disk_format: &str,
    source_hash: String,
) -> Result<TargetSpec> {
    let provenance = Provenance {
        source_cloud: record.cloud.clone(),
        source_image_id: record.id.clone(),
        source_hash,
        version: VERSION.to_owned(),
        sysprep: request.sysprep_words.clone(),
        request: request.digest.clone(),
    };
    let properties = plan_properties(&record.properties, &request.edits, &provenance)?;
    Ok(TargetSpec {
        name: request.name.clone().unwrap_or_else(|| record.name.clone()),
        disk_format: disk_format.to_owned(),
        container_format: "bare".to_owned(),
        visibility: request.visibility.clone(),
        min_disk: record.min_disk,
        min_ram: record.min_ram,
        tags: record.tags.clone(),
        properties: properties.properties,
        provenance,
    })
}

/// The dry run: reads the source record, checks space, computes the property set and
/// the sysprep plan (read-only, for a local source); writes nothing anywhere.
pub fn plan(request: &Request, source: &mut dyn Source, reporter: &dyn Reporter) -> Result<Plan> {
    let record = source.read_record(reporter)?;
    check_hash(&record, request, reporter)?;
    let output = plan_output(&record.disk_format, None, request.output);
    let need = space_need(&record, &output);
    let dir = existing_ancestor(&request.work_dir);
    let available = space::available(&dir)?;
    if available < need.total() {
        reporter.warn(&format!(
            "{} has {available} bytes free, the run would need {}",
            dir.display(),
            need.total()
        ));
    }
    let hash = record
        .hash
        .clone()
        .unwrap_or_else(|| "(computed at download)".to_owned());
    let spec = target_spec(request, &record, output.disk_format(), hash)?;
    let properties = plan_properties(&record.properties, &request.edits, &spec.provenance)?;
    let sysprep_plan = match (&request.sysprep, source.local_path()) {
        (Some(options), Some(path)) => {
            let mut options = options.clone();
            options.dry_run = true;
            Some(sysprep_image(
                path,
                &options,
                request.sysprep_backend,
                reporter,
            )?)
        }
        _ => None,
    };
    Ok(Plan {
        target_name: spec.name,
        sysprep_operations: request
            .sysprep
            .as_ref()
            .map(|o| o.operations.iter().map(|op| op.name.to_owned()).collect()),
        source: record,
        space_needed: need,
        space_available: available,
        output,
        properties,
        sysprep_plan,
        mode: None,
    })
}

/// The nearest directory that exists at or above `path` (for statvfs before creating it).
fn existing_ancestor(path: &Path) -> std::path::PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    absolute
        .ancestors()
        .find(|p| p.is_dir())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| "/".into())
}

/// Runs (or resumes) the request from `source` to `target`.
pub fn run(
    request: &Request,
    source: &mut dyn Source,
    target: &mut dyn Target,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    let work_dir = &request.work_dir;
    let state_file = StateFile::in_dir(work_dir);
    if request.restart {
        // An unfinished target image of an earlier run is found and deleted by the
        // upload stage (by its provenance); a finished one is reused there.
        clear_work_dir(work_dir)?;
    }
    create_private_dir(work_dir)?;
    let mut state = match state_file.load(&request.digest)? {
        Some(state) => {
            let done: Vec<&str> = state.completed.iter().map(|r| r.stage.name()).collect();
            reporter.event(
                Event::new(
                    "migrate.resume",
                    format!("resuming: done before: {}", done.join(", ")),
                )
                .with("work_dir", work_dir.display().to_string())
                .with("completed", done),
            );
            state
        }
        None => State::new(&request.digest),
    };
    let mut stages = Vec::new();
    for stage in Stage::ALL {
        if let Some(record) = state.completed.iter().find(|r| r.stage == stage) {
            stages.push(StageReport {
                stage: stage.name(),
                seconds: record.seconds,
                resumed: true,
                skipped: false,
            });
            continue;
        }
        if state.target_reused && stage != Stage::Active {
            // The target exists already: nothing to download, change or send.
            stages.push(StageReport {
                stage: stage.name(),
                seconds: 0.0,
                resumed: false,
                skipped: true,
            });
            continue;
        }
        crate::interrupt::check()?;
        reporter.event(
            Event::new("migrate.stage_start", format!("{} started", stage.name()))
                .with("stage", stage.name()),
        );
        let started = Instant::now();
        let outcome = run_stage(
            stage,
            request,
            &mut state,
            &state_file,
            source,
            target,
            reporter,
        );
        if let Err(error) = outcome {
            forget_if_nothing_to_resume(work_dir, &state)?;
            return Err(error);
        }
        let seconds = started.elapsed().as_secs_f64();
        state.complete(stage, seconds);
        state_file.save(&state)?;
        reporter.event(stage_event(stage, seconds, &state));
        stages.push(StageReport {
            stage: stage.name(),
            seconds,
            resumed: false,
            skipped: false,
        });
        if request.stop_after == Some(stage) {
            return Err(PipelineError::TestStop {
                stage: stage.name(),
            });
        }
    }
    let source_record = state.source.clone().ok_or_else(|| missing("source"))?;
    let target_image = state.target.clone().ok_or_else(|| missing("target"))?;
    let hash = provenance_hash(&state)?;
    let disk_format = state
        .convert
        .as_ref()
        .map_or(source_record.disk_format.as_str(), |c| {
            c.disk_format.as_str()
        });
    let spec = target_spec(request, &source_record, disk_format, hash)?;
    let properties = plan_properties(&source_record.properties, &request.edits, &spec.provenance)?;
    let work_dir_removed = !request.keep_work_dir && clear_work_dir(work_dir)?;
    Ok(Summary {
        source: source_record,
        target: target_image,
        target_reused: state.target_reused,
        stages,
        download: state.download,
        output: state.output,
        sysprep: state.sysprep,
        convert: state.convert,
        properties,
        work_dir: work_dir.clone(),
        work_dir_removed,
        mode: None,
    })
}

/// After a failure before any image data reached the work dir (a bad source, too
/// little space), there is nothing to resume: the work dir goes, as it came.
fn forget_if_nothing_to_resume(work_dir: &Path, state: &State) -> Result<()> {
    let has_data = state.done(Stage::Download)
        || state.sysprep_started
        || work_dir.join(SOURCE_PART_FILE).exists()
        || work_dir.join(SOURCE_FILE).exists();
    if !has_data {
        clear_work_dir(work_dir)?;
    }
    Ok(())
}

fn missing(what: &str) -> PipelineError {
    PipelineError::Unsupported(format!(
        "internal: the state has no {what} record after its stage"
    ))
}

fn provenance_hash(state: &State) -> Result<String> {
    let source = state.source.as_ref().ok_or_else(|| missing("source"))?;
    match (&source.hash, &state.download) {
        (Some(hash), _) => Ok(hash.clone()),
        (None, Some(download)) => Ok(download.sha512_tagged()),
        (None, None) => Err(missing("download")),
    }
}

pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PipelineError::io("create the work dir", dir, e))
}

fn stage_event(stage: Stage, seconds: f64, state: &State) -> Event {
    let mut event = Event::new(
        "migrate.stage",
        format!("{} done in {seconds:.1} s", stage.name()),
    )
    .with("stage", stage.name())
    .with("seconds", seconds);
    match stage {
        Stage::Download => {
            if let Some(d) = &state.download {
                event = event
                    .with("bytes", d.bytes)
                    .with("md5", d.md5.clone())
                    .with("sha512", d.sha512.as_str());
            }
        }
        Stage::Sysprep => {
            if let Some(s) = &state.sysprep {
                event = event
                    .with("changes", s.changes)
                    .with("roots", s.roots.clone());
            }
        }
        Stage::Convert => {
            if let Some(c) = &state.convert {
                event = event
                    .with("action", c.action.as_str())
                    .with("disk_format", c.disk_format.as_str());
            }
        }
        Stage::Upload | Stage::Active => {
            if let Some(t) = &state.target {
                event = event
                    .with("image_id", t.id.as_str())
                    .with("status", t.status.as_str());
            }
            if let (Stage::Upload, Some(o)) = (stage, &state.output) {
                event = event
                    .with("bytes", o.bytes)
                    .with("sha512", o.sha512.as_str());
            }
        }
        Stage::Source | Stage::Space => {}
    }
    event
}

#[allow(clippy::too_many_arguments)]
fn run_stage(
    stage: Stage,
    request: &Request,
    state: &mut State,
    state_file: &StateFile,
    source: &mut dyn Source,
    target: &mut dyn Target,
    reporter: &dyn Reporter,
) -> Result<()> {
    let work_dir = &request.work_dir;
    let image = work_dir.join(SOURCE_FILE);
    match stage {
        Stage::Source => {
            let record = source.read_record(reporter)?;
            check_hash(&record, request, reporter)?;
            if let Some(hash) = record.hash.clone() {
                // The source hash is known up front: an image a finished earlier run
                // made is found before anything is downloaded.
                let spec = target_spec(request, &record, &record.disk_format, hash)?;
                if let Some(found) = target.find_existing(&spec)? {
                    if found.status == "active" {
                        reporter.event(found_event(&found));
                        state.output = found.verified_digests.clone();
                        state.target = Some(found);
                        state.target_reused = true;
                    }
                }
            }
            state.source = Some(record);
        }
        Stage::Space => {
            let record = state.source.as_ref().ok_or_else(|| missing("source"))?;
            let output = plan_output(&record.disk_format, None, request.output);
            space::check(work_dir, &space_need(record, &output))?;
        }
        Stage::Download => {
            let record = state.source.as_ref().ok_or_else(|| missing("source"))?;
            state.download = Some(source.download(record, &image, reporter)?);
        }
        Stage::Sysprep => {
            let Some(options) = &request.sysprep else {
                return Ok(());
            };
            if state.sysprep_started {
                // A run died inside sysprep: its commit may have half-reached the image.
                let expected = state.download.clone().ok_or_else(|| missing("download"))?;
                if hash_local(&image, reporter)? != expected {
                    reporter.warn("the work image changed during an interrupted sysprep: downloading it again");
                    let record = state.source.as_ref().ok_or_else(|| missing("source"))?;
                    state.download = Some(source.download(record, &image, reporter)?);
                }
            }
            state.sysprep_started = true;
            state_file.save(state)?;
            let mut options = options.clone();
            options.dry_run = false;
            state.sysprep = Some(sysprep_image(
                &image,
                &options,
                request.sysprep_backend,
                reporter,
            )?);
        }
        Stage::Convert => {
            // Not hashed here: the upload hashes the file as it sends it.
            state.convert = Some(format_step(work_dir, request.output, reporter)?);
        }
        Stage::Upload => upload_stage(request, state, target, reporter)?,
        Stage::Active => {
            let image = state.target.clone().ok_or_else(|| missing("target"))?;
            state.target = Some(target.wait_active(&image, reporter)?);
        }
    }
    Ok(())
}

fn found_event(found: &TargetImage) -> Event {
    Event::new(
        "migrate.found",
        format!("image {} from an earlier run of this request", found.id),
    )
    .with("image_id", found.id.as_str())
    .with("status", found.status.as_str())
}

fn upload_stage(
    request: &Request,
    state: &mut State,
    target: &mut dyn Target,
    reporter: &dyn Reporter,
) -> Result<()> {
    let record = state.source.clone().ok_or_else(|| missing("source"))?;
    let convert = state.convert.clone().ok_or_else(|| missing("convert"))?;
    let spec = target_spec(
        request,
        &record,
        &convert.disk_format,
        provenance_hash(state)?,
    )?;
    if let Some(found) = target.find_existing(&spec)? {
        if found.status == "active" {
            reporter.event(found_event(&found));
            state.output = found.verified_digests.clone();
            state.target = Some(found);
            state.target_reused = true;
            return Ok(());
        }
        // Left `queued`/`saving` by a run that died mid-upload: Glance cannot resume it.
        reporter.warn(&format!(
            "deleting unfinished target image {} ({}) left by an earlier run",
            found.id, found.status
        ));
        target.discard(&found)?;
    }
    let file = request.work_dir.join(&convert.file);
    let (image, sent) = target.upload(&spec, &file, reporter)?;
    state.target = Some(image);
    state.output = Some(sent);
    state.target_reused = false;
    Ok(())
}
