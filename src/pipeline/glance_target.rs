//! A Glance project as the target: the upload is the transfer layer's verified upload
//! (create, stream, wait `active`, compare digests, delete on failure); this module
//! marks a verified image ([`VERIFIED_PROPERTY`]) and finds the image an earlier run of
//! the same request made, by its provenance. An `active` image without a matching mark
//! (a run killed between Glance finishing and imgferry's comparison) is reported as
//! `active-unverified`: the pipeline deletes it and uploads again rather than reuse
//! bytes nobody checked.
//!
//! Must not print.

use std::path::Path;

use serde_json::Value;

use super::endpoints::{FileDigests, Target, TargetImage, TargetSpec};
use super::error::{PipelineError, Result};
use super::properties::VERIFIED_PROPERTY;
use crate::cloud::glance::{Glance, Image, ListFilter, PatchOp};
use crate::hash::Algorithm;
use crate::report::Reporter;
use crate::transfer::{upload, RetryPolicy, UploadOptions};

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
        let status = if image.status == "active" && !verified(image) {
            "active-unverified".to_owned()
        } else {
            image.status.clone()
        };
        let mark = image
            .properties
            .get(VERIFIED_PROPERTY)
            .and_then(Value::as_str)
            .and_then(|mark| mark.strip_prefix("sha512:"));
        let verified_digests = match (verified(image), mark, image.size) {
            (true, Some(sha512), Some(bytes)) => Some(FileDigests {
                bytes,
                md5: image.checksum.clone(),
                sha512: sha512.to_owned(),
            }),
            _ => None,
        };
        TargetImage {
            id: image.id.clone(),
            location: self.glance.session().cloud().to_owned(),
            status,
            verified_digests,
        }
    }
}

/// Whether `image` carries imgferry's verification mark, and (when Glance hashes with
/// sha512) the mark names the hash Glance computed.
pub fn verified(image: &Image) -> bool {
    let Some(mark) = image
        .properties
        .get(VERIFIED_PROPERTY)
        .and_then(Value::as_str)
    else {
        return false;
    };
    match (
        image.os_hash_algo.as_deref(),
        image.os_hash_value.as_deref(),
    ) {
        (Some("sha512"), Some(value)) => mark.strip_prefix("sha512:") == Some(value),
        _ => mark.starts_with("sha512:"),
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
        // A verified active one wins; otherwise the other is reported for deletion.
        found.sort_by_key(|image| !(image.status == "active" && verified(image)));
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
        let mark = PatchOp::Set {
            property: VERIFIED_PROPERTY.to_owned(),
            value: Value::String(format!("sha512:{sha512}")),
        };
        let glance = &mut self.glance;
        let marked = match RetryPolicy::metadata()
            .run(|| glance.update(&uploaded.image.id, std::slice::from_ref(&mark)))
        {
            Ok(marked) => marked,
            Err(error) => {
                let _ = self.glance.delete(&uploaded.image.id);
                return Err(error.into());
            }
        };
        let digests = FileDigests {
            bytes: uploaded.bytes,
            md5: hex(Algorithm::Md5),
            sha512,
        };
        Ok((self.image(&marked), digests))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(fields: Value) -> Image {
        let mut base = json!({"id": "i1", "name": "vm", "status": "active",
            "os_hash_algo": "sha512", "os_hash_value": "ab"});
        base.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn only_an_image_whose_mark_names_glances_hash_is_verified() {
        assert!(verified(&image(json!({"imgferry_verified": "sha512:ab"}))));
        assert!(!verified(&image(json!({}))), "no mark: killed before it");
        assert!(!verified(&image(json!({"imgferry_verified": "sha512:cd"}))));
        assert!(!verified(&image(json!({"imgferry_verified": 7}))));
        let other_algo = json!({"os_hash_algo": "sha256", "os_hash_value": "ef",
            "imgferry_verified": "sha512:ab"});
        assert!(
            verified(&image(other_algo)),
            "a sha256 Glance: the mark alone"
        );
    }
}
