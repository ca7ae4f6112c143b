//! The operation table: every operation's name, default, one-line description, the
//! guest paths it touches, and how it plans its changes. `--list-operations` and the
//! the table in docs/commands/sysprep.md are printed from [`OPERATIONS`].
//!
//! Owns: the table and the two generic planners (remove what globs match; remove only
//! the non-directories they match). Must not: call a backend directly (only through
//! the [`Planner`]). Operations act on the files present, never on the distro name, so
//! a distro missing from a list (virt-sysprep 1.48 and Rocky) cannot be skipped.

mod accounts;
mod identity;
mod logfiles;
mod netplan;
mod network;
mod parity;
mod table;
mod uuids;

pub use accounts::UserAccounts;
pub use table::OPERATIONS;
pub use uuids::DevicePlan;

use super::plan::Planner;
use super::Result;
use crate::guest::FileKind;

/// One sysprep operation.
#[derive(Debug)]
pub struct Operation {
    /// The word used with `--operations` / `--enable` (virt-sysprep's name).
    pub name: &'static str,
    /// Whether it runs when no selection is given.
    pub default_on: bool,
    pub description: &'static str,
    /// The guest paths or globs it looks at (for `--list-operations` and docs/commands/sysprep.md).
    pub paths: &'static [&'static str],
    pub(crate) how: How,
}

/// How an operation plans its changes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum How {
    /// Remove everything [`Operation::paths`] match, directories with their content.
    RemoveMatches,
    /// Remove the files and symlinks [`Operation::paths`] match; leave directories.
    RemoveNonDirectories,
    /// Its own planner.
    Custom(fn(&mut Planner) -> Result<()>),
    /// Names what always applies (`customize`: `--delete`, `--truncate`,
    /// `--hostname`); accepted in selections for virt-sysprep compatibility.
    AlwaysApplied,
}

impl Operation {
    /// Plans this operation's changes.
    pub(crate) fn plan(&self, planner: &mut Planner) -> Result<()> {
        match self.how {
            How::RemoveMatches => remove_matches(planner, self.paths, |_| true),
            How::RemoveNonDirectories => {
                remove_matches(planner, self.paths, |kind| kind != FileKind::Directory)
            }
            How::Custom(plan) => plan(planner),
            How::AlwaysApplied => Ok(()),
        }
    }
}

/// Looks an operation up by name.
pub fn find(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|op| op.name == name)
}

/// Removes what each glob in `globs` matches, when `wanted(kind)` says so.
fn remove_matches(
    planner: &mut Planner,
    globs: &[&str],
    wanted: impl Fn(FileKind) -> bool,
) -> Result<()> {
    for glob in globs {
        for (path, meta) in planner.glob(glob)? {
            if wanted(meta.kind) {
                planner.remove(&path, meta)?;
            }
        }
    }
    Ok(())
}

/// Removes every non-directory below `dir` (recursively), except where `keep` says so.
fn remove_files_below(planner: &mut Planner, dir: &str, keep: impl Fn(&str) -> bool) -> Result<()> {
    let Some((dir, meta)) = planner.stat(dir)? else {
        return Ok(());
    };
    if meta.kind != FileKind::Directory {
        return Ok(());
    }
    for (path, meta) in planner.walk(&dir)? {
        if meta.kind != FileKind::Directory && !keep(path.file_name().unwrap_or_default()) {
            planner.remove(&path, meta)?;
        }
    }
    Ok(())
}
