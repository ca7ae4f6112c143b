//! The resumable state of one run: which stages are done and what each produced,
//! kept as `state.json` in the work dir.
//!
//! Owns the file's shape and its life cycle: read (bounded, untrusted: a damaged file
//! is an error, never a guess), written atomically after every stage (temp name in the
//! work dir, fsync, rename), and the request digest that ties a work dir to exactly one
//! request. Must not: decide what a stage does.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::endpoints::{FileDigests, SourceRecord, TargetImage};
use super::error::{PipelineError, Result};
use crate::disk::output::AtomicFile;

/// The state file's name inside the work dir.
pub const STATE_FILE: &str = "state.json";
/// The downloaded source image inside the work dir.
pub const SOURCE_FILE: &str = "source.img";
/// The download in progress (the transfer layer's `.part` name).
pub const SOURCE_PART_FILE: &str = "source.img.part";
/// The converted image inside the work dir (only when the format changes).
pub const OUTPUT_FILE: &str = "output.img";
/// A state file is a few kilobytes; anything this large is not one of ours.
const MAX_STATE_BYTES: u64 = 4 << 20;
/// Bumped when the shape changes incompatibly (an old file then needs --restart).
const FORMAT: u32 = 1;

/// The stages of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Source,
    Space,
    Download,
    Sysprep,
    Convert,
    Upload,
    Active,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 7] = [
        Self::Source,
        Self::Space,
        Self::Download,
        Self::Sysprep,
        Self::Convert,
        Self::Upload,
        Self::Active,
    ];

    /// The stage's name in events, the state file and `--test-stop-after`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Space => "space",
            Self::Download => "download",
            Self::Sysprep => "sysprep",
            Self::Convert => "convert",
            Self::Upload => "upload",
            Self::Active => "active",
        }
    }

    /// The stage named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| stage.name() == name)
    }
}

/// One finished stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: Stage,
    pub seconds: f64,
}

/// What the sysprep stage did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SysprepRecord {
    /// Operations run, in table order.
    pub operations: Vec<String>,
    /// Changes made in all roots.
    pub changes: usize,
    /// The OS roots seen, e.g. `/dev/sda1 (debian 12.5)`.
    pub roots: Vec<String>,
    /// The guest backend that ran (`native` or `libguestfs`; empty in state files
    /// written before backends could be chosen).
    #[serde(default)]
    pub backend: String,
}

/// What the convert stage did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConvertRecord {
    /// The file to upload, relative to the work dir.
    pub file: String,
    /// `raw` or `qcow2`.
    pub disk_format: String,
    /// qcow2 compat of the result.
    pub compat: Option<String>,
    /// What was done: `none`, `amend`, `convert`.
    pub action: String,
}

/// Everything a run has recorded so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// Digest of the request (see [`super::request_digest`]).
    pub request: String,
    pub completed: Vec<StageRecord>,
    pub source: Option<SourceRecord>,
    pub download: Option<FileDigests>,
    /// Set before the appliance may write the work image, cleared never: a run that
    /// finds it without a sysprep record re-verifies the download first.
    pub sysprep_started: bool,
    pub sysprep: Option<SysprepRecord>,
    pub convert: Option<ConvertRecord>,
    /// Digests of the file handed to the target.
    pub output: Option<FileDigests>,
    /// The target image, once uploaded and verified.
    pub target: Option<TargetImage>,
    /// Set when the target image was found from an earlier run rather than created.
    pub target_reused: bool,
}

impl State {
    /// A fresh state for `request`.
    pub fn new(request: &str) -> Self {
        Self {
            format: FORMAT,
            request: request.to_owned(),
            completed: Vec::new(),
            source: None,
            download: None,
            sysprep_started: false,
            sysprep: None,
            convert: None,
            output: None,
            target: None,
            target_reused: false,
        }
    }

    /// Whether `stage` finished in this or an earlier run.
    pub fn done(&self, stage: Stage) -> bool {
        self.completed.iter().any(|r| r.stage == stage)
    }

    /// Records `stage` as finished.
    pub fn complete(&mut self, stage: Stage, seconds: f64) {
        if !self.done(stage) {
            self.completed.push(StageRecord { stage, seconds });
        }
    }
}

/// The state file of one work dir.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file in `work_dir`.
    pub fn in_dir(work_dir: &Path) -> Self {
        Self {
            path: work_dir.join(STATE_FILE),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded state, if any. A state of another request is an error.
    pub fn load(&self, request: &str) -> Result<Option<State>> {
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
        let state: State = serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
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
    pub fn save(&self, state: &State) -> Result<()> {
        let text = serde_json::to_vec_pretty(state)
            .map_err(|e| PipelineError::io("encode", &self.path, std::io::Error::other(e)))?;
        let file = AtomicFile::create(&self.path)?;
        std::io::Write::write_all(&mut file.file(), &text)
            .map_err(|e| PipelineError::io("write", file.temp_path(), e))?;
        file.commit()?;
        Ok(())
    }
}

/// Removes what a run put in `work_dir` (the state, the images, temp files of an
/// interrupted write), then the directory itself if that left it empty. Files imgferry
/// did not make are left alone.
pub fn clear_work_dir(work_dir: &Path) -> Result<bool> {
    let entries = match std::fs::read_dir(work_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(PipelineError::io("list", work_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| PipelineError::io("list", work_dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = [STATE_FILE, SOURCE_FILE, OUTPUT_FILE, SOURCE_PART_FILE]
            .contains(&name.as_ref())
            || (name.starts_with('.')
                && (name.ends_with(".imgferry-tmp") || name.contains(".imgferry-overlay-")));
        if ours {
            std::fs::remove_file(entry.path())
                .map_err(|e| PipelineError::io("remove", entry.path(), e))?;
        }
    }
    Ok(std::fs::remove_dir(work_dir).is_ok())
}
