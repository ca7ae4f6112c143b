//! The volume-backed run: check everything (snapshots, quotas) before creating
//! anything, then for each disk make its temporaries, run the ordinary pipeline on it
//! (root disk sysprepped, data disks carried unchanged), delete its temporaries, and
//! finally give the target its shape. On any failure or Ctrl-C every temporary is deleted
//! before the error is returned; after a SIGKILL the next run deletes or reuses them.

use serde::Serialize;
use serde_json::json;

use super::disk_source::DiskSource;
use super::mapping::{disks_of, Disk};
use super::state::{VolumeState, VolumeStateFile};
use super::target_shape::{
    disk_image_name, link_images, record, volume_and_snapshot, TargetShape, TargetSide,
};
use super::temporaries::{clean_up, has_temporaries, materialise, SourceSide};
use super::wait::retry;
use crate::cloud::cinder::{Cinder, QuotaItem};
use crate::cloud::glance::Image;
use crate::cloud::CloudError;
use crate::pipeline::endpoints::TargetImage;
use crate::pipeline::error::{PipelineError, Result};
use crate::pipeline::glance_target::GlanceTarget;
use crate::pipeline::state::SysprepRecord;
use crate::pipeline::{request_digest, run as run_pipeline, Request};
use crate::report::{Event, Reporter};

/// A volume-backed migration: the ordinary request plus the target's shape.
pub struct VolumeRequest<'a> {
    pub base: &'a Request,
    pub shape: TargetShape,
    /// `--target-as volumes`: keep the images the volumes were made from.
    pub keep_images: bool,
}

/// One disk as the summary shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DiskSummary {
    pub device_name: String,
    pub boot_index: Option<i64>,
    pub source_snapshot: String,
    pub size_gib: u64,
    /// The disk's image at the target (deleted afterwards under `volumes` unless kept).
    pub image: Option<TargetImage>,
    pub image_deleted: bool,
    pub volume: Option<String>,
    pub snapshot: Option<String>,
    /// What sysprep did (root disk, this run).
    pub sysprep: Option<SysprepRecord>,
}

/// What a finished volume-backed run did.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeSummary {
    pub source_id: String,
    /// The request's digest: the temporaries' names carry its first 12 characters.
    pub request: String,
    pub shape: TargetShape,
    pub disks: Vec<DiskSummary>,
    /// `volumes`: the Glance record to launch instances from.
    pub record: Option<TargetImage>,
    pub work_dir: std::path::PathBuf,
}

/// The request of one disk's ordinary run.
fn disk_request(request: &VolumeRequest, snapshot: &Image, disk: &Disk) -> Request {
    let base = request.base;
    let base_name = base
        .name
        .clone()
        .unwrap_or_else(|| snapshot.name.clone().unwrap_or_else(|| snapshot.id.clone()));
    let mut disk_request = base.clone();
    disk_request.work_dir = base.work_dir.join(format!("disk-{}", disk.short_name()));
    disk_request.digest = request_digest(&json!({
        "volume_backed": base.digest,
        "device": disk.device_name,
    }));
    disk_request.restart = false;
    disk_request.name = Some(disk_image_name(&base_name, disk, request.shape));
    if !disk.is_root() {
        disk_request.sysprep = None;
        disk_request.sysprep_words = "none".into();
    }
    disk_request
}

/// Checks the snapshots (visible, `available`) and the quotas the run needs, before
/// anything is created. Disk sizes grow to their snapshot's when that is larger.
fn preflight(
    source: &mut SourceSide,
    target: Option<&mut Cinder>,
    disks: &mut [Disk],
    state: &VolumeState,
) -> Result<()> {
    let mut largest_pending = 0;
    for disk in disks.iter_mut() {
        let done = state
            .disks
            .get(&disk.short_name())
            .is_some_and(|d| d.target_image.is_some());
        let snapshot = match retry(|| source.cinder.snapshot(&disk.snapshot_id)) {
            Ok(snapshot) => snapshot,
            Err(CloudError::BlockStorageNotFound { .. }) => {
                return Err(PipelineError::SnapshotNotVisible {
                    id: disk.snapshot_id.clone(),
                    device: disk.device_name.clone(),
                    project: source.cinder.project_label(),
                })
            }
            Err(error) => return Err(error.into()),
        };
        if !done && snapshot.status != "available" {
            return Err(PipelineError::SnapshotNotUsable {
                id: snapshot.id,
                device: disk.device_name.clone(),
                status: snapshot.status,
            });
        }
        disk.volume_size = disk.volume_size.max(snapshot.size);
        if !done {
            largest_pending = largest_pending.max(disk.volume_size);
        }
    }
    if largest_pending > 0 {
        // Disks go one at a time: one temporary volume of the largest size at once.
        let usage = retry(|| source.cinder.quota_usage())?;
        let project = source.cinder.project_label();
        need(&project, "volumes", 1, usage.volumes)?;
        need(&project, "gigabytes", largest_pending, usage.gigabytes)?;
    }
    if let Some(cinder) = target {
        let pending: Vec<&Disk> = disks
            .iter()
            .filter(|d| {
                state
                    .disks
                    .get(&d.short_name())
                    .is_none_or(|s| s.target_snapshot.is_none())
            })
            .collect();
        if !pending.is_empty() {
            let usage = retry(|| cinder.quota_usage())?;
            let project = cinder.project_label();
            let gib: u64 = pending.iter().map(|d| d.volume_size).sum();
            need(&project, "volumes", pending.len() as u64, usage.volumes)?;
            need(&project, "snapshots", pending.len() as u64, usage.snapshots)?;
            // Snapshots count against the gigabyte quota too (Cinder's default).
            need(
                &project,
                "gigabytes",
                gib.saturating_mul(2),
                usage.gigabytes,
            )?;
        }
    }
    Ok(())
}

fn need(project: &str, resource: &'static str, needed: u64, quota: QuotaItem) -> Result<()> {
    match quota.room() {
        Some(room) if room < needed => Err(PipelineError::QuotaTooSmall {
            project: project.to_owned(),
            resource,
            needed,
            room,
            limit: quota.limit,
        }),
        _ => Ok(()),
    }
}

/// Runs (or resumes) the migration of volume-backed snapshot `snapshot`.
pub fn run(
    request: &VolumeRequest,
    snapshot: &Image,
    source: &mut SourceSide,
    target: &mut TargetSide,
    reporter: &dyn Reporter,
) -> Result<VolumeSummary> {
    let base = request.base;
    let mut disks = disks_of(snapshot)?;
    create_private_dir(&base.work_dir)?;
    let file = VolumeStateFile::in_dir(&base.work_dir);
    let mut state = match file.load(&base.digest) {
        Ok(Some(state)) => state,
        Ok(None) => VolumeState::new(&base.digest),
        Err(PipelineError::StateOfAnotherRequest { .. }) if base.restart => {
            VolumeState::new(&base.digest)
        }
        Err(error) => return Err(error),
    };
    if base.restart {
        clean_all(source, &disks, &mut state, &file, reporter);
        state = VolumeState::new(&base.digest);
    }
    file.save(&state)?;
    let result = run_disks(
        request, snapshot, &mut disks, source, target, &mut state, &file, reporter,
    );
    // Every path ends here: temporaries go whether the run succeeded or not.
    clean_all(source, &disks, &mut state, &file, reporter);
    let nothing_made = state.is_empty();
    let mut summaries = match result {
        Ok(summaries) => summaries,
        Err(error) if nothing_made => {
            // Refused before anything was created: nothing to resume.
            file.remove()?;
            let _ = std::fs::remove_dir(&base.work_dir);
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    if state.disks.values().any(has_temporaries) {
        return Err(PipelineError::Unsupported(
            "some temporaries could not be deleted (see the warnings); re-run to retry".into(),
        ));
    }
    for (summary, disk) in summaries.iter_mut().zip(&disks) {
        if let Some(disk) = state.disks.get(&disk.short_name()) {
            summary.image = disk.target_image.clone();
            summary.image_deleted = disk.target_image_deleted;
            summary.volume = disk.target_volume.clone();
            summary.snapshot = disk.target_snapshot.clone();
        }
    }
    let record = state.record.clone();
    if !base.keep_work_dir {
        file.remove()?;
        let _ = std::fs::remove_dir(&base.work_dir);
    }
    Ok(VolumeSummary {
        source_id: snapshot.id.clone(),
        request: base.digest.clone(),
        shape: request.shape,
        disks: summaries,
        record,
        work_dir: base.work_dir.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_disks(
    request: &VolumeRequest,
    snapshot: &Image,
    disks: &mut [Disk],
    source: &mut SourceSide,
    target: &mut TargetSide,
    state: &mut VolumeState,
    file: &VolumeStateFile,
    reporter: &dyn Reporter,
) -> Result<Vec<DiskSummary>> {
    preflight(source, target.cinder.as_mut(), disks, state)?;
    let mut summaries = Vec::new();
    for disk in disks.iter() {
        let short = disk.short_name();
        let mut summary = DiskSummary {
            device_name: disk.device_name.clone(),
            boot_index: disk.boot_index,
            source_snapshot: disk.snapshot_id.clone(),
            size_gib: disk.volume_size,
            image: None,
            image_deleted: false,
            volume: None,
            snapshot: None,
            sysprep: None,
        };
        if state.disk(&short).target_image.is_none() {
            crate::interrupt::check()?;
            reporter.event(
                Event::new(
                    "volume.disk",
                    format!("disk {} (snapshot {})", disk.device_name, disk.snapshot_id),
                )
                .with("device", disk.device_name.as_str())
                .with("snapshot", disk.snapshot_id.as_str()),
            );
            let temp = materialise(source, disk, &request.base.digest, state, file, reporter)?;
            let mut disk_source = DiskSource::new(source.glance.clone(), &temp, snapshot, disk);
            let mut disk_target = GlanceTarget::new(target.glance.clone());
            let done = run_pipeline(
                &disk_request(request, snapshot, disk),
                &mut disk_source,
                &mut disk_target,
                reporter,
            )?;
            summary.sysprep = done.sysprep;
            state.disk(&short).target_image = Some(done.target);
            file.save(state)?;
            clean_up(source, disk, state, file, reporter)?;
        }
        summaries.push(summary);
    }
    match (request.shape, target.cinder.as_mut()) {
        (TargetShape::Image, _) => link_images(&mut target.glance, disks, state)?,
        (TargetShape::Volumes, None) => {
            return Err(PipelineError::Unsupported(
                "internal: --target-as volumes without the target's Cinder".into(),
            ))
        }
        (TargetShape::Volumes, Some(cinder)) => shape_volumes(
            request,
            snapshot,
            disks,
            cinder,
            &mut target.glance,
            state,
            file,
            reporter,
        )?,
    }
    Ok(summaries)
}

#[allow(clippy::too_many_arguments)]
fn shape_volumes(
    request: &VolumeRequest,
    snapshot: &Image,
    disks: &[Disk],
    cinder: &mut Cinder,
    glance: &mut crate::cloud::glance::Glance,
    state: &mut VolumeState,
    file: &VolumeStateFile,
    reporter: &dyn Reporter,
) -> Result<()> {
    let base_name = request
        .base
        .name
        .clone()
        .unwrap_or_else(|| snapshot.name.clone().unwrap_or_else(|| snapshot.id.clone()));
    let types: Vec<String> = retry(|| cinder.volume_types())?
        .into_iter()
        .map(|t| t.name)
        .collect();
    for disk in disks {
        crate::interrupt::check()?;
        let volume_type = disk.volume_type.clone().filter(|t| {
            let known = types.contains(t);
            if !known {
                reporter.warn(&format!(
                    "volume type `{t}` of {} does not exist at the target: using its default type",
                    disk.device_name
                ));
            }
            known
        });
        let name = disk_image_name(&base_name, disk, TargetShape::Volumes);
        volume_and_snapshot(
            cinder,
            disk,
            &name,
            &request.base.digest,
            volume_type,
            state,
            file,
            reporter,
        )?;
    }
    let root_image = disks
        .iter()
        .find(|d| d.is_root())
        .and_then(|d| state.disks.get(&d.short_name()))
        .and_then(|d| d.target_image.clone())
        .ok_or_else(|| PipelineError::Unsupported("internal: no root image".into()))?;
    let root_properties = if state.record.is_none() {
        match retry(|| glance.show(&root_image.id)) {
            Ok(image) => image.properties,
            Err(CloudError::ImageNotFound { .. }) => Default::default(),
            Err(error) => return Err(error.into()),
        }
    } else {
        Default::default()
    };
    let made = record(
        glance,
        &base_name,
        disks,
        &root_properties,
        request.base.visibility.as_deref(),
        snapshot.min_ram,
        state,
        file,
    )?;
    reporter.event(
        Event::new(
            "volume.record",
            format!("image {} boots from the new volume snapshots", made.id),
        )
        .with("id", made.id.as_str()),
    );
    if !request.keep_images {
        for disk in disks {
            let short = disk.short_name();
            let entry = state.disk(&short);
            if entry.target_image_deleted {
                continue;
            }
            if let Some(image) = entry.target_image.clone() {
                retry(|| glance.delete(&image.id))?;
            }
            state.disk(&short).target_image_deleted = true;
            file.save(state)?;
        }
    }
    Ok(())
}

/// Deletes every disk's temporaries; what cannot be deleted is warned about and stays
/// in the state file for the next run.
fn clean_all(
    source: &mut SourceSide,
    disks: &[Disk],
    state: &mut VolumeState,
    file: &VolumeStateFile,
    reporter: &dyn Reporter,
) {
    for disk in disks {
        let pending = state
            .disks
            .get(&disk.short_name())
            .is_some_and(has_temporaries);
        if pending {
            if let Err(error) = clean_up(source, disk, state, file, reporter) {
                reporter.warn(&format!(
                    "could not delete the temporaries of {}: {error}",
                    disk.device_name
                ));
            }
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PipelineError::io("create the work dir", dir, e))
}
