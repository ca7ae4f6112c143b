//! Volume-backed instance snapshots: a Glance record of size 0 whose
//! `block_device_mapping` names one Cinder snapshot per disk. Each disk's bytes are read
//! through temporaries in the source project (volume from snapshot, then Cinder's upload
//! into an image), migrated by the ordinary pipeline, and given the shape the user asks
//! for at the target ([`TargetShape`]).
//!
//! Owns the mapping ([`mapping`]), the temporaries and their clean-up on every path
//! ([`temporaries`]), the state of a run ([`state`]), the target's shape
//! ([`target_shape`]) and the dry run ([`plan`]). Must not print or read argv.

mod disk_source;
pub mod mapping;
mod run;
pub mod state;
pub mod target_shape;
pub mod temporaries;
mod wait;

use serde::Serialize;
use serde_json::{json, Value};

pub use run::{run, DiskSummary, VolumeRequest, VolumeSummary};
pub use target_shape::{TargetShape, TargetSide};
pub use temporaries::SourceSide;

use crate::cloud::glance::Image;
use crate::pipeline::error::Result;
use mapping::disks_of;
use target_shape::disk_image_name;

/// Whether `image` is the record of a volume-backed snapshot (no data of its own, a
/// `block_device_mapping`).
pub fn is_volume_backed(image: &Image) -> bool {
    image.size.unwrap_or(0) == 0 && image.properties.contains_key("block_device_mapping")
}

/// What a dry run of a volume-backed migration shows: every Cinder and Glance object
/// that would be created and deleted, in order.
#[derive(Debug, Clone, Serialize)]
pub struct VolumePlan {
    pub source_id: String,
    pub shape: TargetShape,
    pub disks: Vec<mapping::Disk>,
    pub steps: Vec<Value>,
}

/// The dry run: reads nothing but `snapshot`, writes nothing.
pub fn plan(request: &VolumeRequest, snapshot: &Image) -> Result<VolumePlan> {
    let disks = disks_of(snapshot)?;
    let base_name = request
        .base
        .name
        .clone()
        .unwrap_or_else(|| snapshot.name.clone().unwrap_or_else(|| snapshot.id.clone()));
    let mut steps = Vec::new();
    for disk in &disks {
        steps.extend(temporaries::planned(disk, &request.base.digest));
        let name = disk_image_name(&base_name, disk, request.shape);
        let sysprep = if disk.is_root() {
            request.base.sysprep_words.clone()
        } else {
            "none".to_owned()
        };
        steps.push(
            json!({"action": "create", "object": "image", "project": "target", "name": name,
                          "device": disk.device_name, "sysprep": sysprep}),
        );
    }
    if request.shape == TargetShape::Volumes {
        for disk in &disks {
            let name = disk_image_name(&base_name, disk, request.shape);
            steps.push(
                json!({"action": "create", "object": "volume", "project": "target",
                              "name": name, "size_gib": disk.volume_size, "from_image": name}),
            );
            steps.push(
                json!({"action": "create", "object": "snapshot", "project": "target",
                              "name": name, "of_volume": name}),
            );
        }
        steps.push(
            json!({"action": "create", "object": "image", "project": "target",
                          "name": base_name, "size": 0, "block_device_mapping": disks.len()}),
        );
        if !request.keep_images {
            for disk in &disks {
                let name = disk_image_name(&base_name, disk, request.shape);
                steps.push(json!({"action": "delete", "object": "image", "project": "target", "name": name}));
            }
        }
    }
    Ok(VolumePlan {
        source_id: snapshot.id.clone(),
        shape: request.shape,
        disks,
        steps,
    })
}
