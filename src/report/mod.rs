//! The reporting seam: how layers below `cli` announce progress, events and warnings.
//!
//! This module owns only the traits and a silent implementation. It must not print:
//! the concrete reporters (indicatif bars, JSON Lines, quiet) live in `cli::output`,
//! the only layer allowed to write to stdout or stderr.

use serde_json::{Map, Value};

/// Receives what a long-running operation wants the user to know.
pub trait Reporter: Send + Sync {
    /// Starts a progress indicator for `label` moving `total` units (bytes), if known.
    fn start_progress(&self, label: &str, total: Option<u64>) -> Box<dyn Progress>;
    /// Something the user should see that does not stop the command.
    fn warn(&self, message: &str);
    /// A structured event: shown as a line at `-v`, emitted as JSON with `--json`.
    fn event(&self, event: Event);
}

/// One progress indicator; dropped or finished when its stage ends.
pub trait Progress: Send + Sync {
    /// Adds `units` to the position.
    fn advance(&self, units: u64);
    /// Marks the stage as done.
    fn finish(&self);
}

/// A structured event: a stable `kind`, a human message and machine-readable fields.
#[derive(Debug, Clone)]
pub struct Event {
    /// Stable identifier, e.g. `"convert.done"`; documented in docs/json.md (tests/docs.rs checks).
    pub kind: &'static str,
    /// One line for humans.
    pub message: String,
    /// Extra fields for `--json` consumers. Never put secrets here.
    pub fields: Map<String, Value>,
}

impl Event {
    /// An event with no extra fields.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            fields: Map::new(),
        }
    }

    /// Adds one field (builder style).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }
}

/// A reporter that drops everything: for library callers and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentReporter;

struct SilentProgress;

impl Progress for SilentProgress {
    fn advance(&self, _units: u64) {}
    fn finish(&self) {}
}

impl Reporter for SilentReporter {
    fn start_progress(&self, _label: &str, _total: Option<u64>) -> Box<dyn Progress> {
        Box::new(SilentProgress)
    }
    fn warn(&self, _message: &str) {}
    fn event(&self, _event: Event) {}
}
