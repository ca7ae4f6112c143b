//! The temporaries that read a Cinder snapshot's bytes: a volume made from the snapshot,
//! then an image Cinder uploads that volume into (raw: no conversion on the volume host).
//! Cinder has no API that serves a volume's data, so this is the only path.
//!
//! Owns their names, their creation (reusing what an earlier, killed run left), and their
//! deletion on every path. Each id is saved in the state file the moment the cloud
//! returns it; a run killed before that finds them by name (the name carries the request
//! digest). Must not print.

use serde_json::{json, Map, Value};

use super::mapping::Disk;
use super::state::{DiskState, VolumeState, VolumeStateFile};
use super::wait::{deadline_for, retry, wait_until, wait_with, Look, OnInterrupt};
use crate::cloud::cinder::{Cinder, NewVolume, VolumeOrigin};
use crate::cloud::glance::{Glance, ListFilter};
use crate::cloud::CloudError;
use crate::pipeline::error::{PipelineError, Result};
use crate::report::{Event, Reporter};

/// Metadata key on temporary volumes: the request they belong to.
pub const REQUEST_KEY: &str = "imgferry_request";

/// The source project's two services.
pub struct SourceSide {
    pub glance: Glance,
    pub cinder: Cinder,
}

/// The name of disk `disk`'s temporary volume and image for request `digest`.
pub fn temp_name(digest: &str, disk: &Disk) -> String {
    let short = digest.get(..12).unwrap_or(digest);
    format!("imgferry-tmp-{short}-{}", disk.short_name())
}

fn event(kind: &'static str, message: String, object: &str, id: &str, disk: &Disk) -> Event {
    Event::new(kind, message)
        .with("object", object)
        .with("id", id)
        .with("device", disk.device_name.as_str())
}

/// Makes sure disk `disk` has an active temporary image holding its snapshot's bytes,
/// and returns its id. The temporary volume is deleted once the image is active.
pub fn materialise(
    side: &mut SourceSide,
    disk: &Disk,
    digest: &str,
    state: &mut VolumeState,
    file: &VolumeStateFile,
    reporter: &dyn Reporter,
) -> Result<String> {
    let short = disk.short_name();
    let name = temp_name(digest, disk);
    let limit = deadline_for(disk.volume_size);
    if let Some(id) = state.disk(&short).temp_image.clone() {
        match retry(|| side.glance.show(&id)) {
            Ok(image) if matches!(image.status.as_str(), "active" | "queued" | "saving") => {}
            Ok(image) => {
                reporter.warn(&format!(
                    "temporary image {id} of an earlier run is {}: making it again",
                    image.status
                ));
                retry(|| side.glance.delete(&id))?;
                state.disk(&short).temp_image = None;
                file.save(state)?;
            }
            Err(CloudError::ImageNotFound { .. }) => {
                state.disk(&short).temp_image = None;
                file.save(state)?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    if state.disk(&short).temp_image.is_none() {
        let volume = temp_volume(side, disk, digest, &name, state, file, reporter)?;
        wait_volume(&mut side.cinder, &volume, &["available"], limit)?;
        let image = match adopt_image(&mut side.glance, &name)? {
            Some(id) => id,
            None => {
                let uploaded = side.cinder.upload_to_image(&volume, &name, "raw")?;
                uploaded.image_id
            }
        };
        state.disk(&short).temp_image = Some(image.clone());
        file.save(state)?;
        reporter.event(event(
            "volume.uploading",
            format!("Cinder is copying volume {volume} into temporary image {image}"),
            "image",
            &image,
            disk,
        ));
    }
    let image = state.disk(&short).temp_image.clone().unwrap_or_default();
    wait_until(&format!("temporary image {image}"), limit, || {
        match retry(|| side.glance.show(&image)) {
            Ok(record) => match record.status.as_str() {
                "active" => Ok(Look::Done(())),
                "queued" | "saving" | "importing" | "uploading" => Ok(Look::Pending(record.status)),
                _ => Err(PipelineError::VolumeUploadFailed {
                    image: image.clone(),
                    status: record.status,
                }),
            },
            Err(CloudError::ImageNotFound { .. }) => Err(PipelineError::VolumeUploadFailed {
                image: image.clone(),
                status: "deleted".into(),
            }),
            Err(error) => Err(error.into()),
        }
    })?;
    delete_temp_volume(side, disk, state, file, reporter, OnInterrupt::Stop)?;
    Ok(image)
}

/// The temporary volume of `disk`: the recorded one, one left by a run killed before it
/// could record it, or a new one.
fn temp_volume(
    side: &mut SourceSide,
    disk: &Disk,
    digest: &str,
    name: &str,
    state: &mut VolumeState,
    file: &VolumeStateFile,
    reporter: &dyn Reporter,
) -> Result<String> {
    let short = disk.short_name();
    if let Some(id) = state.disk(&short).temp_volume.clone() {
        match retry(|| side.cinder.volume(&id)) {
            Ok(volume) if !volume.status.starts_with("error") && volume.status != "deleting" => {
                return Ok(id)
            }
            Ok(_) => {
                retry(|| side.cinder.delete_volume(&id))?;
            }
            Err(CloudError::BlockStorageNotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        state.disk(&short).temp_volume = None;
        file.save(state)?;
    }
    let leftovers: Vec<_> = retry(|| side.cinder.volumes(Some(name)))?
        .into_iter()
        .filter(|v| v.metadata.get(REQUEST_KEY).map(String::as_str) == Some(digest))
        .collect();
    for volume in &leftovers {
        if !volume.status.starts_with("error") && volume.status != "deleting" {
            state.disk(&short).temp_volume = Some(volume.id.clone());
            file.save(state)?;
            reporter.event(event(
                "volume.temporary",
                format!("reusing temporary volume {} of an earlier run", volume.id),
                "volume",
                &volume.id,
                disk,
            ));
            return Ok(volume.id.clone());
        }
    }
    let mut metadata = Map::new();
    metadata.insert(REQUEST_KEY.into(), json!(digest));
    metadata.insert("imgferry_temporary".into(), json!("true"));
    metadata.insert("imgferry_device".into(), json!(disk.device_name));
    let new = NewVolume {
        name: name.to_owned(),
        size: disk.volume_size,
        origin: VolumeOrigin::Snapshot(disk.snapshot_id.clone()),
        volume_type: None,
        description: Some("imgferry: temporary copy of a snapshot, deleted after use".into()),
        metadata,
    };
    let volume = side.cinder.create_volume(&new)?;
    state.disk(&short).temp_volume = Some(volume.id.clone());
    file.save(state)?;
    reporter.event(event(
        "volume.temporary",
        format!(
            "created temporary volume {} from snapshot {}",
            volume.id, disk.snapshot_id
        ),
        "volume",
        &volume.id,
        disk,
    ));
    Ok(volume.id)
}

/// An image named `name` left by a run killed between asking Cinder for it and
/// recording its id.
fn adopt_image(glance: &mut Glance, name: &str) -> Result<Option<String>> {
    let filter = ListFilter {
        name: Some(name.to_owned()),
        ..ListFilter::default()
    };
    let owner = glance
        .session()
        .token()
        .project
        .as_ref()
        .map(|p| p.id.clone());
    let mut found = None;
    for image in retry(|| glance.list(&filter))? {
        let usable = matches!(image.status.as_str(), "active" | "queued" | "saving");
        if image.owner != owner {
            continue;
        }
        if usable && found.is_none() {
            found = Some(image.id);
        } else {
            retry(|| glance.delete(&image.id))?;
        }
    }
    Ok(found)
}

/// Waits until volume `id` has one of `wanted` statuses; an `error*` status fails.
pub fn wait_volume(
    cinder: &mut Cinder,
    id: &str,
    wanted: &[&str],
    limit: std::time::Duration,
) -> Result<()> {
    wait_until(&format!("volume {id}"), limit, || {
        let volume = retry(|| cinder.volume(id))?;
        if wanted.contains(&volume.status.as_str()) {
            Ok(Look::Done(()))
        } else if volume.status.starts_with("error") {
            Err(PipelineError::VolumeFailed {
                id: id.to_owned(),
                status: volume.status,
            })
        } else {
            Ok(Look::Pending(volume.status))
        }
    })
}

fn delete_temp_volume(
    side: &mut SourceSide,
    disk: &Disk,
    state: &mut VolumeState,
    file: &VolumeStateFile,
    reporter: &dyn Reporter,
    on_interrupt: OnInterrupt,
) -> Result<()> {
    let short = disk.short_name();
    let Some(id) = state.disk(&short).temp_volume.clone() else {
        return Ok(());
    };
    // A volume still `uploading` (or `creating`) cannot be deleted yet.
    wait_with(
        &format!("temporary volume {id}"),
        deadline_for(disk.volume_size),
        on_interrupt,
        || match retry(|| side.cinder.volume(&id)) {
            Ok(v) if matches!(v.status.as_str(), "uploading" | "creating" | "downloading") => {
                Ok(Look::Pending(v.status))
            }
            Ok(_) | Err(CloudError::BlockStorageNotFound { .. }) => Ok(Look::Done(())),
            Err(error) => Err(error.into()),
        },
    )?;
    retry(|| side.cinder.delete_volume(&id))?;
    state.disk(&short).temp_volume = None;
    file.save(state)?;
    reporter.event(event(
        "volume.temporary_deleted",
        format!("deleted temporary volume {id}"),
        "volume",
        &id,
        disk,
    ));
    Ok(())
}

/// Deletes disk `disk`'s temporaries (image first: while Cinder still fills it, that
/// ends the upload; then the volume). Runs on success, failure and Ctrl-C alike, so it
/// does not stop on Ctrl-C itself.
pub fn clean_up(
    side: &mut SourceSide,
    disk: &Disk,
    state: &mut VolumeState,
    file: &VolumeStateFile,
    reporter: &dyn Reporter,
) -> Result<()> {
    let short = disk.short_name();
    if let Some(id) = state.disk(&short).temp_image.clone() {
        retry(|| side.glance.delete(&id))?;
        state.disk(&short).temp_image = None;
        file.save(state)?;
        reporter.event(event(
            "volume.temporary_deleted",
            format!("deleted temporary image {id}"),
            "image",
            &id,
            disk,
        ));
    }
    delete_temp_volume(side, disk, state, file, reporter, OnInterrupt::Continue)
}

/// Whether disk state `disk` still holds temporaries.
pub fn has_temporaries(disk: &DiskState) -> bool {
    disk.temp_image.is_some() || disk.temp_volume.is_some()
}

/// What the dry run says about one disk's temporaries.
pub fn planned(disk: &Disk, digest: &str) -> Vec<Value> {
    let name = temp_name(digest, disk);
    vec![
        json!({"action": "create", "object": "volume", "project": "source", "name": name,
               "from_snapshot": disk.snapshot_id, "size_gib": disk.volume_size, "temporary": true}),
        json!({"action": "create", "object": "image", "project": "source", "name": name,
               "from": "os-volume_upload_image", "disk_format": "raw", "temporary": true}),
        json!({"action": "delete", "object": "volume", "project": "source", "name": name}),
        json!({"action": "delete", "object": "image", "project": "source", "name": name}),
    ]
}
