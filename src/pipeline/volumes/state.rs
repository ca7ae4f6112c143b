//! The resumable state of a volume-backed run, `volumes.json` in the work dir: for each
//! disk, the temporaries created in the source project (so a run after a SIGKILL deletes
//! or reuses them), the disk's migrated image, and the target volumes and snapshots.
//!
//! Owns the file's shape and life cycle (bounded, untrusted read; atomic write after
//! every object created or deleted). Must not decide what to create.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::disk::output::AtomicFile;
use crate::pipeline::endpoints::TargetImage;
use crate::pipeline::error::{PipelineError, Result};

/// The state file's name inside the work dir.
pub const VOLUME_STATE_FILE: &str = "volumes.json";
/// A state file is a few kilobytes; anything this large is not one of ours.
const MAX_STATE_BYTES: u64 = 4 << 20;
/// Bumped when the shape changes incompatibly.
const FORMAT: u32 = 1;

/// What one disk's run has created so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskState {
    /// Temporary volume made from the source snapshot (source project).
    pub temp_volume: Option<String>,
    /// Temporary image Cinder uploaded the temporary volume into (source project).
    pub temp_image: Option<String>,
    /// The disk's migrated image at the target, once verified and active.
    pub target_image: Option<TargetImage>,
    /// `--target-as volumes`: the volume made from the target image.
    pub target_volume: Option<String>,
    /// `--target-as volumes`: the snapshot of that volume the record points at.
    pub target_snapshot: Option<String>,
    /// The intermediate target image was deleted (`--target-as volumes`).
    pub target_image_deleted: bool,
}

/// The whole run's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    format: u32,
    /// Digest of the request this state belongs to.
    pub request: String,
    /// Keyed by the device's short name (`vda`).
    pub disks: BTreeMap<String, DiskState>,
    /// `--target-as volumes`: the Glance record in Nova's format.
    pub record: Option<TargetImage>,
}

impl VolumeState {
    pub fn new(request: &str) -> Self {
        Self {
            format: FORMAT,
            request: request.to_owned(),
            disks: BTreeMap::new(),
            record: None,
        }
    }

    /// Whether nothing was created yet (or everything made was deleted again).
    pub fn is_empty(&self) -> bool {
        self.record.is_none() && self.disks.values().all(|d| *d == DiskState::default())
    }

    /// The state of disk `short`, created empty.
    pub fn disk(&mut self, short: &str) -> &mut DiskState {
        self.disks.entry(short.to_owned()).or_default()
    }
}

/// `volumes.json` of one work dir.
#[derive(Debug, Clone)]
pub struct VolumeStateFile {
    path: PathBuf,
}

impl VolumeStateFile {
    pub fn in_dir(work_dir: &Path) -> Self {
        Self {
            path: work_dir.join(VOLUME_STATE_FILE),
        }
    }

    /// The recorded state, if any; a state of another request is an error.
    pub fn load(&self, request: &str) -> Result<Option<VolumeState>> {
        let metadata = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PipelineError::io("stat", &self.path, e)),
        };
        let unreadable = |problem: String| PipelineError::StateUnreadable {
            path: self.path.clone(),
            problem,
        };
        if metadata.len() > MAX_STATE_BYTES {
            return Err(unreadable(format!(
                "{} bytes, more than the {MAX_STATE_BYTES}-byte limit",
                metadata.len()
            )));
        }
        let text =
            std::fs::read(&self.path).map_err(|e| PipelineError::io("read", &self.path, e))?;
        let state: VolumeState =
            serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
        if state.format != FORMAT {
            return Err(unreadable(format!(
                "format {} (this imgferry writes {FORMAT})",
                state.format
            )));
        }
        if state.request != request {
            return Err(PipelineError::StateOfAnotherRequest {
                path: self.path.parent().unwrap_or(&self.path).to_owned(),
            });
        }
        Ok(Some(state))
    }

    /// Writes `state` atomically.
    pub fn save(&self, state: &VolumeState) -> Result<()> {
        let text = serde_json::to_vec_pretty(state)
            .map_err(|e| PipelineError::io("encode", &self.path, std::io::Error::other(e)))?;
        let file = AtomicFile::create(&self.path)?;
        std::io::Write::write_all(&mut file.file(), &text)
            .map_err(|e| PipelineError::io("write", file.temp_path(), e))?;
        file.commit()?;
        Ok(())
    }

    /// Removes the file (the run finished).
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PipelineError::io("remove", &self.path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_belongs_to_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let file = VolumeStateFile::in_dir(dir.path());
        assert_eq!(file.load("r1").unwrap(), None);
        let mut state = VolumeState::new("r1");
        state.disk("vda").temp_volume = Some("v1".into());
        file.save(&state).unwrap();
        assert_eq!(file.load("r1").unwrap(), Some(state));
        assert!(matches!(
            file.load("r2"),
            Err(PipelineError::StateOfAnotherRequest { .. })
        ));
        std::fs::write(dir.path().join(VOLUME_STATE_FILE), b"{\"format\": 1").unwrap();
        assert!(matches!(
            file.load("r1"),
            Err(PipelineError::StateUnreadable { .. })
        ));
        file.remove().unwrap();
        assert_eq!(file.load("r1").unwrap(), None);
    }
}
