//! The [`Planner`]: operations describe what they would change, read-only, into a
//! list of steps; [`apply`] then carries the steps out.
//!
//! Planning reads through a virtual view (paths already planned for removal are gone,
//! files already planned for editing show their new content), so a dry run lists
//! exactly what a real run does, and two operations touching one file compose. Owns:
//! that view, [`Change`] (what is reported) and the steps (what is called). Must not:
//! decide WHAT to change (operations do) or print.

use std::collections::BTreeMap;

use serde::Serialize;

use super::edit::{lines_of, LineEdit};
use super::operations::DevicePlan;
use super::{Options, Result};
use crate::guest::{FileKind, Follow, GuestFs, GuestFsExt, Metadata, OsInfo, Resolved};

/// Largest file an operation reads to edit it: configuration files are small, and a
/// hostile image must not make imgferry hold gigabytes.
pub const MAX_EDIT_BYTES: u64 = 1 << 20;

/// What happens to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Remove,
    Truncate,
    Edit,
    Create,
    /// A filesystem, LVM PV or VG got a new UUID (`path` is the device or VG name,
    /// `removed_lines` the old UUID, `added_lines` the new one when known).
    NewUuid,
}

impl Action {
    /// The word used in output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Remove => "remove",
            Self::Truncate => "truncate",
            Self::Edit => "edit",
            Self::Create => "create",
            Self::NewUuid => "new-uuid",
        }
    }
}

/// One change to one guest path, as reported (one `--json` event each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub operation: &'static str,
    pub path: String,
    pub action: Action,
    /// What the path was (`file`, `directory`, `symlink`, ...) before the change.
    pub kind: &'static str,
    /// Lines that go (edits; whole-file replacements list every old line).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_lines: Vec<String>,
    /// Lines that come.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added_lines: Vec<String>,
}

/// One backend call and the changes it makes.
#[derive(Debug)]
pub struct Step {
    call: Call,
    pub changes: Vec<Change>,
}

#[derive(Debug)]
enum Call {
    Remove(Resolved),
    RemoveTree(Resolved),
    Truncate(Resolved),
    Write(Resolved, Vec<u8>),
}

/// Collects the steps of every operation for one OS root.
pub struct Planner<'a> {
    guest: &'a mut dyn GuestFs,
    pub os: &'a OsInfo,
    pub options: &'a Options,
    /// The disk's UUID changes, decided before any root is planned.
    pub devices: &'a DevicePlan,
    operation: &'static str,
    steps: Vec<Step>,
    removed: Vec<Resolved>,
    written: BTreeMap<Resolved, Vec<u8>>,
    warnings: Vec<String>,
}

impl<'a> Planner<'a> {
    /// A planner for the mounted root `os`.
    pub fn new(
        guest: &'a mut dyn GuestFs,
        os: &'a OsInfo,
        options: &'a Options,
        devices: &'a DevicePlan,
    ) -> Self {
        Self {
            guest,
            os,
            options,
            devices,
            operation: "",
            steps: Vec::new(),
            removed: Vec::new(),
            written: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Names the operation the next changes belong to.
    pub fn set_operation(&mut self, name: &'static str) {
        self.operation = name;
    }

    /// The planned steps and the warnings met on the way.
    pub fn finish(self) -> (Vec<Step>, Vec<String>) {
        (self.steps, self.warnings)
    }

    /// Something the user should know that does not stop the run.
    pub fn warn(&mut self, message: String) {
        self.warnings.push(format!("{}: {message}", self.operation));
    }

    fn is_removed(&self, path: &Resolved) -> bool {
        self.removed.iter().any(|gone| path.is_within(gone))
    }

    fn view(&self, found: Option<(Resolved, Metadata)>) -> Option<(Resolved, Metadata)> {
        let (path, mut meta) = found?;
        if self.is_removed(&path) {
            return None;
        }
        if let Some(content) = self.written.get(&path) {
            meta.size = content.len() as u64;
        }
        Some((path, meta))
    }

    /// Matches of `pattern` (see [`GuestFsExt::glob`]) that are not planned away.
    pub fn glob(&mut self, pattern: &str) -> Result<Vec<(Resolved, Metadata)>> {
        let found = self.guest.glob(pattern)?;
        Ok(found
            .into_iter()
            .filter_map(|f| self.view(Some(f)))
            .collect())
    }

    /// The path itself (final symlink not followed), if present.
    pub fn lookup(&mut self, path: &str) -> Result<Option<(Resolved, Metadata)>> {
        let found = self.guest.lookup(path)?;
        Ok(self.view(found))
    }

    /// What the path points at (symlinks followed), if present.
    pub fn stat(&mut self, path: &str) -> Result<Option<(Resolved, Metadata)>> {
        let found = self.guest.stat(path)?;
        Ok(self.view(found))
    }

    /// Where a file that does not exist yet would be created (symlinks followed).
    pub fn resolve_new(&mut self, path: &str) -> Result<Resolved> {
        Ok(self.guest.resolve(path, Follow::Final)?)
    }

    /// The current (possibly already edited) content of regular file `path`.
    pub fn read(&mut self, path: &Resolved) -> Result<Vec<u8>> {
        if let Some(content) = self.written.get(path) {
            return Ok(content.clone());
        }
        Ok(self.guest.read(path, MAX_EDIT_BYTES)?)
    }

    /// Everything below directory `dir`, parents first.
    pub fn walk(&mut self, dir: &Resolved) -> Result<Vec<(Resolved, Metadata)>> {
        let found = self.guest.walk(dir)?;
        Ok(found
            .into_iter()
            .filter_map(|f| self.view(Some(f)))
            .collect())
    }

    fn change(&self, path: &Resolved, action: Action, kind: FileKind) -> Change {
        Change {
            operation: self.operation,
            path: path.to_string(),
            action,
            kind: kind.name(),
            removed_lines: Vec::new(),
            added_lines: Vec::new(),
        }
    }

    /// Removes `path`; a directory goes with everything below it (each entry listed).
    pub fn remove(&mut self, path: &Resolved, meta: Metadata) -> Result<()> {
        if self.is_removed(path) {
            return Ok(());
        }
        let mut changes = vec![self.change(path, Action::Remove, meta.kind)];
        let call = if meta.kind == FileKind::Directory {
            for (entry, entry_meta) in self.walk(path)? {
                changes.push(self.change(&entry, Action::Remove, entry_meta.kind));
            }
            Call::RemoveTree(path.clone())
        } else {
            Call::Remove(path.clone())
        };
        self.written.retain(|written, _| !written.is_within(path));
        // An earlier edit of what now goes would only be undone: drop it, so the plan
        // (and a dry run) shows the removal alone.
        self.steps.retain(|step| match &step.call {
            Call::Write(written, _) | Call::Truncate(written) => !written.is_within(path),
            Call::Remove(_) | Call::RemoveTree(_) => true,
        });
        self.removed.push(path.clone());
        self.steps.push(Step { call, changes });
        Ok(())
    }

    /// Truncates regular file `path` to zero bytes (nothing when already empty).
    pub fn truncate(&mut self, path: &Resolved, meta: Metadata) {
        if meta.size == 0 || self.is_removed(path) {
            return;
        }
        let change = self.change(path, Action::Truncate, meta.kind);
        self.written.insert(path.clone(), Vec::new());
        self.steps.push(Step {
            call: Call::Truncate(path.clone()),
            changes: vec![change],
        });
    }

    /// Records a line edit of the regular file `path`.
    pub fn edit(&mut self, path: &Resolved, edit: LineEdit) {
        let mut change = self.change(path, Action::Edit, FileKind::File);
        change.removed_lines = edit.removed;
        change.added_lines = edit.added;
        self.written.insert(path.clone(), edit.content.clone());
        self.steps.push(Step {
            call: Call::Write(path.clone(), edit.content),
            changes: vec![change],
        });
    }

    /// Replaces the whole content of `path` with `new`, creating it unless `existed`,
    /// without reporting lines: what `--write` puts there may be a secret.
    pub fn overwrite(&mut self, path: &Resolved, existed: bool, new: &[u8]) {
        let action = if existed {
            Action::Edit
        } else {
            Action::Create
        };
        let change = self.change(path, action, FileKind::File);
        self.written.insert(path.clone(), new.to_vec());
        self.steps.push(Step {
            call: Call::Write(path.clone(), new.to_vec()),
            changes: vec![change],
        });
    }

    /// Replaces the whole content of `path` (`old` is `None` when it does not exist
    /// yet); nothing when the content is already `new`.
    pub fn replace(&mut self, path: &Resolved, old: Option<&[u8]>, new: &[u8]) {
        if old == Some(new) {
            return;
        }
        let action = if old.is_some() {
            Action::Edit
        } else {
            Action::Create
        };
        let mut change = self.change(path, action, FileKind::File);
        change.removed_lines = old.map(lines_of).unwrap_or_default();
        change.added_lines = lines_of(new);
        self.written.insert(path.clone(), new.to_vec());
        self.steps.push(Step {
            call: Call::Write(path.clone(), new.to_vec()),
            changes: vec![change],
        });
    }
}

/// Carries out `steps` in order, handing each step's changes to `done` once made.
pub fn apply(
    guest: &mut dyn GuestFs,
    steps: Vec<Step>,
    mut done: impl FnMut(Vec<Change>),
) -> Result<()> {
    for step in steps {
        match &step.call {
            Call::Remove(path) => guest.remove_file(path)?,
            Call::RemoveTree(path) => guest.remove_tree(path)?,
            Call::Truncate(path) => guest.truncate(path)?,
            Call::Write(path, content) => guest.write(path, content)?,
        }
        done(step.changes);
    }
    Ok(())
}
