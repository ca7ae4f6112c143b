//! A Glance project as the target: the upload is the transfer layer's verified upload
//! (create, stream, wait `active`, compare digests, delete on failure); this module
//! adds finding the image an earlier run of the same request made, by its provenance.
//!
//! Must not print.

use std::path::Path;

use serde_json::Value;

use super::endpoints::{FileDigests, Target, TargetImage, TargetSpec};
use super::error::{PipelineError, Result};
use crate::cloud::glance::{Glance, Image, ListFilter};
use crate::hash::Algorithm;
use crate::report::Reporter;
use crate::transfer::{upload, UploadOptions};

/// The project `glance` is scoped to, as the target.
pub struct GlanceTarget {
    glance: Glance,
}

impl GlanceTarget {
    /// Images go to the project `glance`'s token is scoped to.
    pub fn new(glance: Glance) -> Self {
        Self { glance }
    }

    fn image(&self, image: &Image) -> TargetImage {
        TargetImage {
            id: image.id.clone(),
            location: self.glance.session().cloud().to_owned(),
            status: image.status.clone(),
        }
    }
}

/// Whether `image` carries exactly the provenance of `spec` and belongs to `owner`.
pub fn made_by(image: &Image, spec: &TargetSpec, owner: Option<&str>) -> bool {
    let has =
        |key: &str, wanted: &str| image.properties.get(key).and_then(Value::as_str) == Some(wanted);
    let provenance = &spec.provenance;
    (owner.is_none() || image.owner.as_deref() == owner)
        && has("imgferry_request", &provenance.request)
        && has("imgferry_source_image_id", &provenance.source_image_id)
        && has("imgferry_source_hash", &provenance.source_hash)
}

impl Target for GlanceTarget {
    fn find_existing(&mut self, spec: &TargetSpec) -> Result<Option<TargetImage>> {
        let owner = self
            .glance
            .session()
            .token()
            .project
            .as_ref()
            .map(|p| p.id.clone());
        let filter = ListFilter {
            name: Some(spec.name.clone()),
            ..ListFilter::default()
        };
        let mut found: Vec<Image> = self
            .glance
            .list(&filter)?
            .into_iter()
            .filter(|image| made_by(image, spec, owner.as_deref()))
            .collect();
        // An active one wins; otherwise the unfinished one is reported for deletion.
        found.sort_by_key(|image| image.status != "active");
        Ok(found.first().map(|image| self.image(image)))
    }

    fn upload(
        &mut self,
        spec: &TargetSpec,
        file: &Path,
        reporter: &dyn Reporter,
    ) -> Result<(TargetImage, FileDigests)> {
        let mut options = UploadOptions::named(spec.name.clone());
        options.disk_format = Some(spec.disk_format.clone());
        options.container_format = spec.container_format.clone();
        options.visibility = spec.visibility.clone();
        options.min_disk = spec.min_disk;
        options.min_ram = spec.min_ram;
        options.properties = spec.properties.clone();
        if !spec.tags.is_empty() {
            options
                .properties
                .insert("tags".into(), Value::from(spec.tags.clone()));
        }
        // The transfer hashes what it sends and compares Glance's size, checksum and
        // os_hash_value with it before returning.
        let uploaded = upload(&mut self.glance, file, &options, reporter)?;
        let hex = |algorithm| {
            uploaded
                .digests
                .iter()
                .find(|d| d.algorithm == algorithm)
                .map(|d| d.hex())
        };
        let Some(sha512) = hex(Algorithm::Sha512) else {
            let _ = self.glance.delete(&uploaded.image.id);
            return Err(PipelineError::Unsupported(format!(
                "the upload of {} computed no sha512",
                file.display()
            )));
        };
        let digests = FileDigests {
            bytes: uploaded.bytes,
            md5: hex(Algorithm::Md5),
            sha512,
        };
        Ok((self.image(&uploaded.image), digests))
    }

    fn wait_active(
        &mut self,
        image: &TargetImage,
        _reporter: &dyn Reporter,
    ) -> Result<TargetImage> {
        let record = self.glance.show(&image.id)?;
        if record.status != "active" {
            return Err(PipelineError::SourceNotActive {
                id: record.id,
                status: record.status,
            });
        }
        Ok(self.image(&record))
    }

    fn discard(&mut self, image: &TargetImage) -> Result<()> {
        self.glance.delete(&image.id)?;
        Ok(())
    }
}
