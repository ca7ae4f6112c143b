//! One disk of a volume-backed snapshot as a pipeline [`Source`]: the data is the
//! temporary image Cinder made, the identity and properties are the snapshot's.
//!
//! The record's id is `{snapshot image id}/{device}`, stable across runs (the temporary
//! image is new each time), so the provenance of the target image lets a re-run find it.
//! The properties are the temporary image's (the volume's image metadata, which
//! Cinder's upload copies) overlaid with the snapshot record's own (`hw_*`, `os_*`:
//! what the guest needs to boot, and what Cinder's upload drops). Must not print.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::mapping::Disk;
use crate::cloud::glance::{Glance, Image};
use crate::pipeline::endpoints::{FileDigests, Source, SourceRecord};
use crate::pipeline::error::Result;
use crate::pipeline::glance::GlanceSource;
use crate::report::Reporter;

/// A disk read through its temporary image.
pub struct DiskSource {
    inner: GlanceSource,
    temp_image: String,
    id: String,
    name: String,
    snapshot_properties: BTreeMap<String, Value>,
    min_disk: u64,
    min_ram: Option<u64>,
}

impl DiskSource {
    /// Disk `disk` of `snapshot`, whose bytes are in `temp_image` (in `glance`'s project).
    pub fn new(glance: Glance, temp_image: &str, snapshot: &Image, disk: &Disk) -> Self {
        let keep_from_snapshot = disk.is_root();
        Self {
            inner: GlanceSource::new(glance, temp_image),
            temp_image: temp_image.to_owned(),
            id: disk_source_id(&snapshot.id, disk),
            name: snapshot.name.clone().unwrap_or_default(),
            // A data disk carries no boot properties: those describe the root disk.
            snapshot_properties: if keep_from_snapshot {
                snapshot.properties.clone()
            } else {
                BTreeMap::new()
            },
            min_disk: disk.volume_size,
            min_ram: snapshot.min_ram.filter(|_| keep_from_snapshot),
        }
    }
}

/// `{snapshot image id}/{device short name}`.
pub fn disk_source_id(snapshot_id: &str, disk: &Disk) -> String {
    format!("{snapshot_id}/{}", disk.short_name())
}

impl Source for DiskSource {
    fn read_record(&mut self, reporter: &dyn Reporter) -> Result<SourceRecord> {
        let mut record = self.inner.read_record(reporter)?;
        record.id = self.id.clone();
        record.name = self.name.clone();
        record.properties.extend(
            self.snapshot_properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        record.min_disk = Some(record.min_disk.unwrap_or(0).max(self.min_disk));
        if self.min_ram.is_some() {
            record.min_ram = self.min_ram;
        }
        Ok(record)
    }

    fn download(
        &mut self,
        record: &SourceRecord,
        destination: &Path,
        reporter: &dyn Reporter,
    ) -> Result<FileDigests> {
        let mut temporary = record.clone();
        temporary.id = self.temp_image.clone();
        self.inner.download(&temporary, destination, reporter)
    }
}
