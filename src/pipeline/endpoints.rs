//! The two ends of a run: where the image comes from ([`Source`]) and where it goes
//! ([`Target`]), and the records they exchange with the stage machine.
//!
//! The stage machine only sees these traits, so the whole pipeline runs with local files
//! at both ends ([`local`](super::local)) as well as with Glance. Implementations must
//! verify what they move (digests) and must not print.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::Result;
use super::properties::Provenance;
use crate::report::Reporter;

/// What a run knows about its source before downloading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The cloud's name, or `file`.
    pub cloud: String,
    /// The image id, or the file's absolute path.
    pub id: String,
    pub name: String,
    /// `raw`, `qcow2`, ... as Glance (or detection) says.
    pub disk_format: String,
    /// Bytes of image data.
    pub size: u64,
    pub virtual_size: Option<u64>,
    /// `ALGO:HEX` of the data as the source records it (Glance's os_hash_*).
    pub hash: Option<String>,
    /// MD5 of the data as the source records it (Glance's checksum).
    pub checksum: Option<String>,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    pub tags: Vec<String>,
    /// Every extra property, as the source has it.
    pub properties: BTreeMap<String, Value>,
}

/// Digests of a file as imgferry computed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigests {
    pub bytes: u64,
    /// Computed when needed: a Glance download verified by sha512 skips it.
    #[serde(default)]
    pub md5: Option<String>,
    pub sha512: String,
}

impl FileDigests {
    /// `sha512:HEX`, the form provenance records.
    pub fn sha512_tagged(&self) -> String {
        format!("sha512:{}", self.sha512)
    }
}

/// Where an image comes from.
pub trait Source {
    /// The source as a local file, when it is one (a dry run plans sysprep on it).
    fn local_path(&self) -> Option<&Path> {
        None
    }
    /// Reads the source's record and refuses sources that cannot be migrated.
    fn read_record(&mut self, reporter: &dyn Reporter) -> Result<SourceRecord>;
    /// Puts the source's data at `destination` (complete or not at all), verified against
    /// what `record` says, and returns its digests.
    fn download(
        &mut self,
        record: &SourceRecord,
        destination: &Path,
        reporter: &dyn Reporter,
    ) -> Result<FileDigests>;
}

/// What the target image should be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSpec {
    pub name: String,
    pub disk_format: String,
    pub container_format: String,
    /// `None`: the target's default (private in Glance).
    pub visibility: Option<String>,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    pub tags: Vec<String>,
    /// The final extra properties, provenance included.
    pub properties: BTreeMap<String, Value>,
    pub provenance: Provenance,
}

/// An image at the target, as far as a run knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetImage {
    /// The Glance image id, or the file's path.
    pub id: String,
    /// Where it is: a cloud name, or `file`.
    pub location: String,
    /// Glance's status (`queued`, `saving`, `active`, ...); `active` for a finished file.
    pub status: String,
    /// The digests an earlier run verified the image's data against (from its
    /// verification mark and Glance's record), for an image found rather than made.
    #[serde(default)]
    pub verified_digests: Option<FileDigests>,
}

/// Where an image goes.
pub trait Target {
    /// An image an earlier run of the same request made (matched by its provenance),
    /// finished or not.
    fn find_existing(&mut self, spec: &TargetSpec) -> Result<Option<TargetImage>>;
    /// Creates the target image from `file`, hashing it as it is read (one pass: the
    /// pipeline never reads the file only to hash it), verifies what the target recorded
    /// against those digests, and returns the image, `active`, with them. On failure
    /// nothing is left behind (an unfinished image is deleted).
    fn upload(
        &mut self,
        spec: &TargetSpec,
        file: &Path,
        reporter: &dyn Reporter,
    ) -> Result<(TargetImage, FileDigests)>;
    /// Checks that `image` is (still) `active`.
    fn wait_active(&mut self, image: &TargetImage, reporter: &dyn Reporter) -> Result<TargetImage>;
    /// Deletes an image that will not be finished (left `queued`/`saving` by a run
    /// that was killed).
    fn discard(&mut self, image: &TargetImage) -> Result<()>;
}
