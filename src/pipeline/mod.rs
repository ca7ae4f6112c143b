//! pipeline: `migrate` and `template`, the whole job as resumable stages.
//!
//! Stages ([`Stage`]): read the source record → check free space in the work dir →
//! verified download → sysprep → format step (amend/convert) → verified upload → wait
//! for `active`. After each stage its result is written to `state.json` in the work
//! dir ([`state`]); re-running the same request skips the finished stages, and the
//! target image is recorded the moment it exists, or found by its provenance
//! properties, so a re-run never creates a second one. The ends are traits
//! ([`endpoints`]): local files ([`local`]) or Glance.
//!
//! Owns the stage order, resume decisions, the property rules ([`properties`]) and the
//! plan a dry run shows. Must not: print, read argv, or move bytes itself (the ends and
//! the `disk`/`sysprep` layers do).

pub mod backend;
mod copy;
pub mod endpoints;
mod error;
pub mod glance;
pub mod glance_target;
pub mod local;
pub mod properties;
mod run;
pub mod space;
pub mod state;
pub mod stream;
pub mod volumes;
pub mod work;

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

pub use backend::{BackendChoice, BackendRun};
pub use endpoints::{FileDigests, Source, SourceRecord, Target, TargetImage, TargetSpec};
pub use error::{PipelineError, Result};
pub use properties::{PropertyEdits, PropertyPlan, Provenance};
pub use run::{plan, run, Plan, StageReport, Summary};
pub use state::Stage;
pub use work::{DiskFormat, OutputAction, OutputChoice};

/// Everything a run needs besides its two ends.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Where the state and the intermediate images live.
    pub work_dir: PathBuf,
    /// Digest of the request ([`request_digest`]): ties the work dir and the target
    /// image to exactly this request.
    pub digest: String,
    /// Discard earlier state and start over.
    pub restart: bool,
    /// Keep the work dir after success.
    pub keep_work_dir: bool,
    /// Refuse a source without a recorded hash.
    pub require_hash: bool,
    /// Sysprep to run; `None` for `--no-sysprep`.
    pub sysprep: Option<crate::sysprep::Options>,
    /// Which guest backend runs the sysprep (not part of the request digest: it
    /// changes how, not what).
    pub sysprep_backend: BackendChoice,
    /// The sysprep in words, for the provenance property.
    pub sysprep_words: String,
    pub output: OutputChoice,
    /// Target name; `None`: the source's.
    pub name: Option<String>,
    /// Target visibility; `None`: the target's default.
    pub visibility: Option<String>,
    pub edits: PropertyEdits,
    /// TEST HOOK: fail right after this stage is recorded, as a crash there would.
    pub stop_after: Option<Stage>,
}

/// A stable digest of a request's description (source, target, every option that
/// changes the result). 32 hex digits.
pub fn request_digest(description: &serde_json::Value) -> String {
    let digest = Sha256::digest(description.to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The imgferry version recorded in provenance.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
