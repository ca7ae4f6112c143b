//! The shape of the result of a volume-backed migration in the target project:
//! `image` (each disk an image; the root image lists the data disks' images in
//! `imgferry_disk_*` properties) or `volumes` (the source's shape again: a volume from
//! each image, a snapshot of each, and a Glance record in Nova's format that boots an
//! instance from those snapshots, as `openstack server image create` made the source).
//!
//! Owns the target-side objects after the images exist; each id is saved the moment
//! the cloud returns it and found by name plus request on a re-run. Must not print.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::mapping::{mapping_entry, Disk};
use super::state::{VolumeState, VolumeStateFile};
use super::temporaries::{wait_volume, REQUEST_KEY};
use super::wait::{deadline_for, retry, wait_until, Look};
use crate::cloud::cinder::{Cinder, NewVolume, VolumeOrigin};
use crate::cloud::glance::{DataTarget, Glance, ListFilter, PatchOp};
use crate::cloud::CloudError;
use crate::pipeline::endpoints::TargetImage;
use crate::pipeline::error::{PipelineError, Result};
use crate::pipeline::properties::{drop_reason, VERIFIED_PROPERTY};
use crate::report::{Event, Reporter};

/// What the target of a volume-backed snapshot becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetShape {
    /// One image per disk.
    Image,
    /// Volumes, their snapshots, and a volume-backed snapshot record.
    Volumes,
}

/// The target project's two services (Cinder only for [`TargetShape::Volumes`]).
pub struct TargetSide {
    pub glance: Glance,
    pub cinder: Option<Cinder>,
}

/// The name of disk `disk`'s image (and volume, snapshot) at the target.
pub fn disk_image_name(base: &str, disk: &Disk, shape: TargetShape) -> String {
    if disk.is_root() && shape == TargetShape::Image {
        base.to_owned()
    } else {
        format!("{base}-{}", disk.short_name())
    }
}

fn metadata(digest: &str, disk: &Disk) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert(REQUEST_KEY.into(), json!(digest));
    metadata.insert("imgferry_device".into(), json!(disk.device_name));
    metadata
}

/// `--target-as image`: links the data disks' images from the root image.
pub fn link_images(glance: &mut Glance, disks: &[Disk], state: &VolumeState) -> Result<()> {
    let image_of = |disk: &Disk| {
        state
            .disks
            .get(&disk.short_name())
            .and_then(|d| d.target_image.as_ref())
            .map(|t| t.id.clone())
    };
    let Some(root) = disks.iter().find(|d| d.is_root()).and_then(image_of) else {
        return Err(PipelineError::Unsupported(
            "internal: the root disk has no target image".into(),
        ));
    };
    let mut ops = Vec::new();
    for disk in disks.iter().filter(|d| !d.is_root()) {
        let Some(id) = image_of(disk) else { continue };
        ops.push(PatchOp::Set {
            property: format!("imgferry_disk_{}", disk.short_name()),
            value: json!(id),
        });
        let back = [
            PatchOp::Set {
                property: "imgferry_root_image".into(),
                value: json!(root),
            },
            PatchOp::Set {
                property: "imgferry_device".into(),
                value: json!(disk.device_name),
            },
        ];
        crate::transfer::RetryPolicy::metadata().run(|| glance.update(&id, &back))?;
    }
    if !ops.is_empty() {
        crate::transfer::RetryPolicy::metadata().run(|| glance.update(&root, &ops))?;
    }
    Ok(())
}

/// `--target-as volumes`, for one disk: a volume from its target image, and a
/// snapshot of that volume. Returns the snapshot id.
#[allow(clippy::too_many_arguments)]
pub fn volume_and_snapshot(
    cinder: &mut Cinder,
    disk: &Disk,
    name: &str,
    digest: &str,
    volume_type: Option<String>,
    state: &mut VolumeState,
    file: &VolumeStateFile,
    reporter: &dyn Reporter,
) -> Result<String> {
    let short = disk.short_name();
    let limit = deadline_for(disk.volume_size);
    let image = state.disk(&short).target_image.clone().ok_or_else(|| {
        PipelineError::Unsupported(format!("internal: disk {short} has no target image"))
    })?;
    let volume = match usable_volume(
        cinder,
        state.disk(&short).target_volume.clone(),
        name,
        digest,
    )? {
        Some(id) => id,
        None => {
            let new = NewVolume {
                name: name.to_owned(),
                size: disk.volume_size,
                origin: VolumeOrigin::Image(image.id.clone()),
                volume_type,
                description: Some(format!(
                    "imgferry: {} of the migrated instance",
                    disk.device_name
                )),
                metadata: metadata(digest, disk),
            };
            let volume = cinder.create_volume(&new)?;
            state.disk(&short).target_volume = Some(volume.id.clone());
            file.save(state)?;
            reporter.event(
                Event::new(
                    "volume.target_volume",
                    format!("creating volume {} from image {}", volume.id, image.id),
                )
                .with("id", volume.id.as_str())
                .with("device", disk.device_name.as_str()),
            );
            volume.id
        }
    };
    state.disk(&short).target_volume = Some(volume.clone());
    file.save(state)?;
    wait_volume(cinder, &volume, &["available"], limit)?;
    let snapshot = match state.disk(&short).target_snapshot.clone() {
        Some(id) => match retry(|| cinder.snapshot(&id)) {
            Ok(s) if !s.status.starts_with("error") => Some(id),
            Ok(_) => {
                retry(|| cinder.delete_snapshot(&id))?;
                None
            }
            Err(CloudError::BlockStorageNotFound { .. }) => None,
            Err(error) => return Err(error.into()),
        },
        None => retry(|| cinder.snapshots(Some(name)))?
            .into_iter()
            .find(|s| {
                s.volume_id.as_deref() == Some(volume.as_str()) && !s.status.starts_with("error")
            })
            .map(|s| s.id),
    };
    let snapshot = match snapshot {
        Some(id) => id,
        None => {
            let created = cinder.create_snapshot(&volume, name, &metadata(digest, disk))?;
            reporter.event(
                Event::new(
                    "volume.target_snapshot",
                    format!("snapshotting volume {volume} as {}", created.id),
                )
                .with("id", created.id.as_str())
                .with("device", disk.device_name.as_str()),
            );
            created.id
        }
    };
    state.disk(&short).target_snapshot = Some(snapshot.clone());
    file.save(state)?;
    wait_until(&format!("snapshot {snapshot}"), limit, || {
        let record = retry(|| cinder.snapshot(&snapshot))?;
        match record.status.as_str() {
            "available" => Ok(Look::Done(())),
            status if status.starts_with("error") => Err(PipelineError::VolumeFailed {
                id: snapshot.clone(),
                status: record.status,
            }),
            _ => Ok(Look::Pending(record.status)),
        }
    })?;
    Ok(snapshot)
}

/// The recorded volume if it is still usable, else one a killed run left under `name`.
fn usable_volume(
    cinder: &mut Cinder,
    recorded: Option<String>,
    name: &str,
    digest: &str,
) -> Result<Option<String>> {
    if let Some(id) = recorded {
        match retry(|| cinder.volume(&id)) {
            Ok(v) if !v.status.starts_with("error") && v.status != "deleting" => {
                return Ok(Some(id))
            }
            Ok(_) => {
                retry(|| cinder.delete_volume(&id))?;
            }
            Err(CloudError::BlockStorageNotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(retry(|| cinder.volumes(Some(name)))?
        .into_iter()
        .find(|v| {
            v.metadata.get(REQUEST_KEY).map(String::as_str) == Some(digest)
                && !v.status.starts_with("error")
                && v.status != "deleting"
        })
        .map(|v| v.id))
}

/// The Glance record in Nova's format (size 0, `bdm_v2`, `block_device_mapping` on the
/// new snapshots, `root_device_name`), with the root image's properties and provenance.
#[allow(clippy::too_many_arguments)]
pub fn record(
    glance: &mut Glance,
    name: &str,
    disks: &[Disk],
    root_properties: &BTreeMap<String, Value>,
    visibility: Option<&str>,
    min_ram: Option<u64>,
    state: &mut VolumeState,
    file: &VolumeStateFile,
) -> Result<TargetImage> {
    let cloud = glance.session().cloud().to_owned();
    let digest = state.request.clone();
    if let Some(found) = existing_record(glance, name, &digest, state.record.as_ref())? {
        state.record = Some(target_image(&cloud, &found));
        file.save(state)?;
        return Ok(state
            .record
            .clone()
            .unwrap_or_else(|| target_image(&cloud, &found)));
    }
    let mut mapping = Vec::new();
    for disk in disks {
        let snapshot = state
            .disks
            .get(&disk.short_name())
            .and_then(|d| d.target_snapshot.clone())
            .ok_or_else(|| {
                PipelineError::Unsupported(format!(
                    "internal: disk {} has no snapshot",
                    disk.device_name
                ))
            })?;
        mapping.push(mapping_entry(disk, &snapshot));
    }
    let root = disks.iter().find(|d| d.is_root());
    let mut fields = Map::new();
    for (key, value) in root_properties {
        // The root image's own properties and its provenance; not what Glance computed
        // or owns (read-only keys are refused on create), nor the root image's data mark.
        let provenance = key.starts_with("imgferry_") && key != VERIFIED_PROPERTY;
        if provenance || drop_reason(key).is_none() {
            fields.insert(key.clone(), value.clone());
        }
    }
    fields.insert("name".into(), json!(name));
    fields.insert("disk_format".into(), json!("raw"));
    fields.insert("container_format".into(), json!("bare"));
    if let Some(visibility) = visibility {
        fields.insert("visibility".into(), json!(visibility));
    }
    fields.insert("min_disk".into(), json!(root.map_or(0, |d| d.volume_size)));
    if let Some(ram) = min_ram {
        fields.insert("min_ram".into(), json!(ram));
    }
    fields.insert("bdm_v2".into(), json!("True"));
    fields.insert(
        "root_device_name".into(),
        json!(root.map(|d| d.device_name.clone()).unwrap_or_default()),
    );
    fields.insert(
        "block_device_mapping".into(),
        json!(Value::Array(mapping).to_string()),
    );
    fields.insert(REQUEST_KEY.into(), json!(digest));
    let created = glance.create(&fields)?;
    state.record = Some(target_image(&cloud, &created));
    file.save(state)?;
    // Nova uploads an empty body so the record becomes `active` with size 0.
    glance.put_data(&created.id, DataTarget::File, &mut std::io::empty(), 0)?;
    let active = wait_until(&format!("image {}", created.id), deadline_for(0), || {
        let image = retry(|| glance.show(&created.id))?;
        match image.status.as_str() {
            "active" => Ok(Look::Done(image)),
            "queued" | "saving" => Ok(Look::Pending(image.status)),
            _ => Err(PipelineError::SourceNotActive {
                id: image.id,
                status: image.status,
            }),
        }
    })?;
    state.record = Some(target_image(&cloud, &active));
    file.save(state)?;
    Ok(target_image(&cloud, &active))
}

fn existing_record(
    glance: &mut Glance,
    name: &str,
    digest: &str,
    recorded: Option<&TargetImage>,
) -> Result<Option<crate::cloud::glance::Image>> {
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
        let ours = image.owner == owner
            && (image.properties.get(REQUEST_KEY).and_then(Value::as_str) == Some(digest)
                || recorded.is_some_and(|r| r.id == image.id));
        if !ours {
            continue;
        }
        if image.status == "active" && found.is_none() {
            found = Some(image);
        } else {
            // Left `queued` by a run killed before the empty upload.
            retry(|| glance.delete(&image.id))?;
        }
    }
    Ok(found)
}

fn target_image(cloud: &str, image: &crate::cloud::glance::Image) -> TargetImage {
    TargetImage {
        id: image.id.clone(),
        location: cloud.to_owned(),
        status: image.status.clone(),
        verified_digests: None,
    }
}
