//! Local files at either end: `--from-file` and `--to-file`, so the whole pipeline
//! runs with no cloud at all.
//!
//! A source file's record comes from its bytes (format, sizes); it has no hash of its
//! own, so the digests of the verified copy are its provenance hash. A target file is
//! written atomically and re-read to verify; there is no property store for a file, so
//! re-running replaces it (never a second copy). Must not print.

use std::path::{Path, PathBuf};

use super::copy::copy_verified;
use super::endpoints::{FileDigests, Source, SourceRecord, Target, TargetImage, TargetSpec};
use super::error::{PipelineError, Result};
use crate::disk::info::inspect;
use crate::report::Reporter;

/// The `location` of local images.
pub const FILE_LOCATION: &str = "file";

/// A local image file as the source.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// The image at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }
}

impl Source for FileSource {
    fn local_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn read_record(&mut self, _reporter: &dyn Reporter) -> Result<SourceRecord> {
        let absolute = std::path::absolute(&self.path)
            .map_err(|e| PipelineError::io("resolve", &self.path, e))?;
        let info = inspect(&self.path)?;
        Ok(SourceRecord {
            cloud: FILE_LOCATION.to_owned(),
            id: absolute.display().to_string(),
            name: self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            disk_format: info.format.to_owned(),
            size: info.file_size,
            virtual_size: Some(info.virtual_size),
            hash: None,
            checksum: None,
            min_disk: None,
            min_ram: None,
            tags: Vec::new(),
            properties: Default::default(),
        })
    }

    fn download(
        &mut self,
        _record: &SourceRecord,
        destination: &Path,
        reporter: &dyn Reporter,
    ) -> Result<FileDigests> {
        copy_verified(&self.path, destination, "copying the source", reporter)
    }
}

/// A local file as the target.
#[derive(Debug, Clone)]
pub struct FileTarget {
    path: PathBuf,
}

impl FileTarget {
    /// The file at `path` (replaced atomically when the run finishes).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    fn image(&self, status: &str) -> TargetImage {
        TargetImage {
            id: self.path.display().to_string(),
            location: FILE_LOCATION.to_owned(),
            status: status.to_owned(),
            // A file found is not hashed again to report its digests.
            verified_digests: None,
        }
    }
}

impl Target for FileTarget {
    fn find_existing(&mut self, _spec: &TargetSpec) -> Result<Option<TargetImage>> {
        Ok(None)
    }

    fn upload(
        &mut self,
        _spec: &TargetSpec,
        file: &Path,
        reporter: &dyn Reporter,
    ) -> Result<(TargetImage, FileDigests)> {
        // Hashed as it is read, and the written file re-read and compared.
        let written = copy_verified(file, &self.path, "writing the target", reporter)?;
        Ok((self.image("active"), written))
    }

    fn wait_active(
        &mut self,
        _image: &TargetImage,
        _reporter: &dyn Reporter,
    ) -> Result<TargetImage> {
        // Written and verified by `upload`: the file is there or the run failed.
        std::fs::metadata(&self.path).map_err(|e| PipelineError::io("stat", &self.path, e))?;
        Ok(self.image("active"))
    }

    fn discard(&mut self, _image: &TargetImage) -> Result<()> {
        Ok(())
    }
}
