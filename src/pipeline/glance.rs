//! A Glance image as the source: its record, and the refusals an operator needs to
//! read before anything is downloaded (not active, deactivated, volume-backed).
//!
//! Owns the translation of a Glance record into a [`SourceRecord`]. The data itself is
//! the transfer layer's job (verified, resumable download). Must not print.

use std::path::Path;

use serde_json::Value;

use super::copy::hash_local;
use super::endpoints::{FileDigests, Source, SourceRecord};
use super::error::{PipelineError, Result};
use crate::cloud::glance::{Glance, Image};
use crate::hash::Algorithm;
use crate::report::Reporter;
use crate::transfer::{download, DownloadOptions};

/// The Glance image `wanted` (id or name) in the cloud `glance` speaks to.
pub struct GlanceSource {
    glance: Glance,
    wanted: String,
}

impl GlanceSource {
    /// The image `wanted` (an id, or a name matching exactly one image).
    pub fn new(glance: Glance, wanted: &str) -> Self {
        Self {
            glance,
            wanted: wanted.to_owned(),
        }
    }
}

/// The Cinder snapshot ids in a volume-backed snapshot's `block_device_mapping`
/// (Nova stores it as a JSON string holding a list of mappings).
pub fn cinder_snapshots(image: &Image) -> Vec<String> {
    let Some(mapping) = image.properties.get("block_device_mapping") else {
        return Vec::new();
    };
    let parsed = match mapping {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    parsed
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| entry.get("snapshot_id")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The record of `image`, or why it cannot be migrated.
pub fn record_of(cloud: &str, image: Image) -> Result<SourceRecord> {
    let volume_backed =
        image.size.unwrap_or(0) == 0 && image.properties.contains_key("block_device_mapping");
    if volume_backed {
        return Err(PipelineError::VolumeBacked {
            snapshots: cinder_snapshots(&image),
            id: image.id,
        });
    }
    if image.status != "active" {
        return Err(PipelineError::SourceNotActive {
            id: image.id,
            status: image.status,
        });
    }
    let size = image.size.filter(|&s| s > 0).ok_or_else(|| {
        PipelineError::Unsupported(format!(
            "source image {} is active but has no data",
            image.id
        ))
    })?;
    let disk_format = image.disk_format.clone().ok_or_else(|| {
        PipelineError::Unsupported(format!("source image {} has no disk_format", image.id))
    })?;
    let hash = match (&image.os_hash_algo, &image.os_hash_value) {
        (Some(algo), Some(value)) if !algo.is_empty() && !value.is_empty() => {
            Some(format!("{algo}:{value}"))
        }
        _ => None,
    };
    Ok(SourceRecord {
        cloud: cloud.to_owned(),
        name: image.name.clone().unwrap_or_default(),
        disk_format,
        size,
        virtual_size: image.virtual_size,
        hash,
        checksum: image.checksum.clone(),
        min_disk: image.min_disk,
        min_ram: image.min_ram,
        tags: image.tags.clone(),
        properties: image.properties,
        id: image.id,
    })
}

impl Source for GlanceSource {
    fn read_record(&mut self, _reporter: &dyn Reporter) -> Result<SourceRecord> {
        let image = self.glance.resolve(&self.wanted)?;
        let cloud = self.glance.session().cloud().to_owned();
        record_of(&cloud, image)
    }

    fn download(
        &mut self,
        record: &SourceRecord,
        destination: &Path,
        reporter: &dyn Reporter,
    ) -> Result<FileDigests> {
        // A fresh record: the transfer verifies against what Glance says now, and the
        // image must still be the one the run started with.
        let image = self.glance.show(&record.id)?;
        let now = record_of(&record.cloud, image.clone())?;
        if now.hash != record.hash || now.size != record.size {
            return Err(PipelineError::HashMismatch {
                what: format!("source image {} changed since this run read it", record.id),
                expected: record
                    .hash
                    .clone()
                    .unwrap_or_else(|| record.size.to_string()),
                actual: now.hash.clone().unwrap_or_else(|| now.size.to_string()),
            });
        }
        let options = DownloadOptions {
            require_hash: false,
            resume_partial: true,
            ..DownloadOptions::default()
        };
        let downloaded = download(&mut self.glance, &image, destination, &options, reporter)?;
        let hex = |algorithm| {
            downloaded
                .digests
                .iter()
                .find(|d| d.algorithm == algorithm)
                .map(|d| d.hex())
        };
        match hex(Algorithm::Sha512) {
            Some(sha512) => Ok(FileDigests {
                bytes: downloaded.bytes,
                md5: hex(Algorithm::Md5),
                sha512,
            }),
            // Glance hashes with another algorithm here: one more local pass for sha512.
            _ => hash_local(destination, reporter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(fields: Value) -> Image {
        let mut base = json!({"id": "i1", "name": "vm", "status": "active", "disk_format": "qcow2",
            "size": 1024, "os_hash_algo": "sha512", "os_hash_value": "ab", "checksum": "cd"});
        base.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_volume_backed_snapshot_names_its_cinder_snapshots() {
        let bdm = r#"[{"source_type": "snapshot", "snapshot_id": "s-1", "boot_index": 0},
                      {"source_type": "snapshot", "snapshot_id": "s-2"}, {"no_snapshot": true}]"#;
        let err =
            record_of("c1", image(json!({"size": 0, "block_device_mapping": bdm}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "source image i1 is volume-backed (size 0, block_device_mapping): its data is in \
             Cinder snapshot(s) s-1, s-2"
        );
        assert!(err.hint().unwrap().contains("read through Cinder"));
        let garbage = image(json!({"size": null, "block_device_mapping": "not json"}));
        assert!(
            matches!(record_of("c1", garbage), Err(PipelineError::VolumeBacked { snapshots, .. }) if snapshots.is_empty())
        );
    }

    #[test]
    fn inactive_and_deactivated_sources_are_refused_with_a_hint() {
        let err = record_of("c1", image(json!({"status": "deactivated"}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "source image i1 is deactivated, not active"
        );
        assert!(err.hint().unwrap().contains("--activate"));
        let err = record_of("c1", image(json!({"status": "queued", "size": null}))).unwrap_err();
        assert!(matches!(err, PipelineError::SourceNotActive { .. }));
    }

    #[test]
    fn the_record_carries_hash_properties_and_a_null_hash_is_none() {
        let record = record_of("c1", image(json!({"hw_disk_bus": "scsi", "tags": ["a"]}))).unwrap();
        assert_eq!(record.hash.as_deref(), Some("sha512:ab"));
        assert_eq!(record.properties["hw_disk_bus"], "scsi");
        assert_eq!(record.tags, ["a"]);
        let record = record_of("c1", image(json!({"os_hash_value": null}))).unwrap();
        assert_eq!(record.hash, None);
        assert_eq!(record.checksum.as_deref(), Some("cd"));
    }
}
