//! sysprep: strip the host identity of the VM an image came from, so it can boot as a
//! new machine — operations written against the backend-neutral
//! [`GuestFs`](crate::guest::GuestFs) trait.
//!
//! Owns: the operation table ([`operations::OPERATIONS`]), virt-sysprep's selection
//! words ([`selection`]), the always-applied `--delete`/`--truncate`/`--hostname`
//! ([`custom`]), and [`run`], which for each OS root mounts it, plans every selected
//! change read-only, then applies them (or, for a dry run, only reports them). Must
//! not: depend on libguestfs or any backend; print; commit anything (the caller commits
//! the backend's overlay only when `run` succeeded).

pub mod custom;
mod edit;
mod error;
pub mod operations;
mod plan;
pub mod selection;

use serde::Serialize;
use serde_json::json;

pub use custom::Hostname;
pub use error::{Result, SysprepError};
pub use operations::{Operation, UserAccounts, OPERATIONS};
pub use plan::{Action, Change};
pub use selection::{select, Words};

use crate::guest::cache::ReadCache;
use crate::guest::{GuestFs, OsInfo, SkippedMount};
use crate::report::{Event, Reporter};

/// What `--machine-id` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MachineIdMode {
    /// Write `uninitialized`: systemd's first-boot marker (systemd ≥ 247 runs
    /// first-boot units and commits a new id; older ones just generate one).
    #[default]
    Uninitialized,
    /// Empty file: a new id at every boot until something commits one.
    Empty,
    /// No file: systemd creates one at boot (fails on a read-only /etc).
    Remove,
}

/// What happens to the old content of files the operations remove, truncate or
/// replace (the backends do it: see `guest::native::ext4::edit::scrub` and
/// `guest::libguestfs::scrub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scrub {
    /// Overwritten with zeros before its blocks are freed, so no removed secret stays
    /// readable in the image's free space.
    #[default]
    Zero,
    /// Left in the freed blocks, readable by anyone holding the image (`--no-scrub`).
    Keep,
}

/// Everything a run needs to know.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The selected operations, in table order.
    pub operations: Vec<&'static Operation>,
    pub machine_id: MachineIdMode,
    /// `--delete` globs (always applied).
    pub delete: Vec<String>,
    /// `--truncate` paths (always applied).
    pub truncate: Vec<String>,
    /// `--hostname` (always applied).
    pub hostname: Option<Hostname>,
    /// `--write FILE:CONTENT`, in order (always applied, after the rest).
    pub write: Vec<(String, String)>,
    /// `--remove-user-accounts` / `--keep-user-accounts` (for user-account).
    pub user_accounts: UserAccounts,
    /// Plan and report only; change nothing.
    pub dry_run: bool,
    /// Whether removed content is zeroed.
    pub scrub: Scrub,
}

/// What happened to one OS root.
#[derive(Debug, Clone, Serialize)]
pub struct RootReport {
    pub os: OsInfo,
    pub skipped_mounts: Vec<(String, String)>,
    pub changes: Vec<Change>,
}

/// Runs the selected operations on every Linux root of `guest`. Each change is
/// reported as a `sysprep.change` event once made (or planned, in a dry run). An error
/// stops the run at once; the caller must then not commit.
///
/// Block-level changes (fs-uuids, lvm-uuids) are decided once for the disk before the
/// first root, and made after the last root's files (nothing mounted): they are
/// reported with the last root.
pub fn run(
    guest: &mut dyn GuestFs,
    options: &Options,
    reporter: &dyn Reporter,
) -> Result<Vec<RootReport>> {
    let mut reports: Vec<RootReport> = Vec::new();
    let roots = guest.inspect()?;
    let devices = operations::DevicePlan::new(guest, options)?;
    for os in roots {
        if os.kind != "linux" {
            reporter.warn(&format!(
                "{}: skipping a {} root ({}): imgferry sysprep handles Linux guests",
                os.root, os.kind, os.product_name
            ));
            continue;
        }
        let skipped = guest.mount_os(&os)?;
        for SkippedMount {
            mountpoint,
            device,
            reason,
        } in &skipped
        {
            reporter.warn(&format!(
                "{}: {device} not mounted on {mountpoint}, its files are left as they are: {reason}",
                os.root
            ));
        }
        // Planning only reads: every answer is memoised for the whole plan.
        let mut cached = ReadCache::new(guest);
        let mut planner = plan::Planner::new(&mut cached, &os, options, &devices);
        for operation in &options.operations {
            planner.set_operation(operation.name);
            operation.plan(&mut planner)?;
        }
        custom::plan(&mut planner)?;
        let (steps, warnings) = planner.finish();
        for warning in warnings {
            reporter.warn(&format!("{}: {warning}", os.root));
        }
        let mut changes = Vec::new();
        let mut report = |made: Vec<Change>| {
            for change in made {
                reporter.event(change_event(&os, &change, options.dry_run));
                changes.push(change);
            }
        };
        if options.dry_run {
            for step in steps {
                report(step.changes);
            }
        } else {
            plan::apply(guest, steps, report)?;
        }
        guest.unmount_all()?;
        reports.push(RootReport {
            skipped_mounts: skipped
                .into_iter()
                .map(|s| (s.mountpoint, s.device))
                .collect(),
            os,
            changes,
        });
    }
    if let Some(last) = reports.last_mut() {
        for change in devices.apply(guest, options.dry_run)? {
            reporter.event(change_event(&last.os, &change, options.dry_run));
            last.changes.push(change);
        }
    }
    Ok(reports)
}

fn change_event(os: &OsInfo, change: &Change, dry_run: bool) -> Event {
    let verb = if dry_run { "would " } else { "" };
    let mut event = Event::new(
        "sysprep.change",
        format!(
            "{}: {verb}{} {} ({})",
            os.root,
            change.action.name(),
            change.path,
            change.operation
        ),
    )
    .with("operation", change.operation)
    .with("path", change.path.as_str())
    .with("action", change.action.name())
    .with("file_type", change.kind)
    .with("root", os.root.as_str())
    .with("dry_run", dry_run);
    if !change.removed_lines.is_empty() {
        event = event.with("removed_lines", json!(change.removed_lines));
    }
    if !change.added_lines.is_empty() {
        event = event.with("added_lines", json!(change.added_lines));
    }
    event
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
