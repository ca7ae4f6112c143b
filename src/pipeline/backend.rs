//! Which guest backend runs a sysprep, and the whole run on it: open, inspect, the
//! operations of [`sysprep::run`], commit. Shared by `imgferry sysprep` and the
//! pipeline's sysprep stage.
//!
//! `auto` tries the native backend first (no appliance: milliseconds) and hands the
//! untouched image to libguestfs when the native one reports a limitation (a
//! filesystem, partition layout, image feature or edit it does not handle); `native`
//! and `libguestfs` use only that one. The native attempt's events are held back and
//! dropped on fallback, so a consumer sees each change once, from the backend that made
//! it. Owns: that choice and the timings of each stage. Must not: print.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::guest::libguestfs::{Access, Session};
use crate::guest::native::{commit, NativeGuest};
use crate::guest::GuestFs;
use crate::report::{Event, Progress, Reporter};
use crate::sysprep::{self, Options, Result, RootReport, Scrub};

/// `--backend`: which guest backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Native when it handles the guest, libguestfs otherwise.
    #[default]
    Auto,
    /// Native only; a guest it cannot handle is an error.
    Native,
    /// The libguestfs appliance only.
    Libguestfs,
}

/// Seconds spent in each stage of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Booting the appliance (0 for the native backend).
    pub launch_seconds: f64,
    pub inspect_seconds: f64,
    pub sysprep_seconds: f64,
    pub commit_seconds: f64,
}

/// What a run did, and on which backend.
#[derive(Debug, Clone)]
pub struct BackendRun {
    pub reports: Vec<RootReport>,
    /// `native` or `libguestfs`.
    pub backend: &'static str,
    /// Why this backend ran (the choice, or the native limitation that made `auto`
    /// fall back).
    pub reason: String,
    /// How the appliance was accelerated (`none` for the native backend).
    pub accelerator: String,
    /// Whether changes were written into the image.
    pub committed: bool,
    /// Bytes of removed, truncated or replaced file content overwritten with zeros.
    pub scrubbed_bytes: u64,
    /// Bytes of ext4 journal log zeroed (native backend only; see `sysprep::Scrub`).
    pub scrubbed_journal_bytes: u64,
    pub timings: Timings,
}

impl BackendRun {
    /// Changes made (or planned, in a dry run) over every root.
    pub fn changes(&self) -> usize {
        self.reports.iter().map(|r| r.changes.len()).sum()
    }
}

/// Runs sysprep on the image at `image` with the backend `choice` selects. Nothing is
/// written unless every operation succeeded (and never in a dry run); with no change
/// to make the image stays byte-identical.
pub fn run_on_image(
    image: &Path,
    options: &Options,
    choice: BackendChoice,
    reporter: &dyn Reporter,
) -> Result<BackendRun> {
    match choice {
        BackendChoice::Libguestfs => {
            run_libguestfs(image, options, reporter, "--backend libguestfs")
        }
        BackendChoice::Native => run_native(image, options, reporter),
        BackendChoice::Auto => {
            let held = HeldReporter::new(reporter);
            match run_native(image, options, &held) {
                Err(err) if err.is_native_limitation() => {
                    let reason = err.to_string();
                    reporter.event(
                        Event::new(
                            "sysprep.backend_fallback",
                            format!("{reason}; using libguestfs"),
                        )
                        .with("reason", reason.as_str()),
                    );
                    run_libguestfs(image, options, reporter, &reason)
                }
                done => {
                    held.release();
                    done
                }
            }
        }
    }
}

fn run_native(image: &Path, options: &Options, reporter: &dyn Reporter) -> Result<BackendRun> {
    let inspect_start = Instant::now();
    if !options.dry_run {
        commit::preflight(image)?;
    }
    let mut guest = NativeGuest::open_file(image)?;
    guest.require_whole_guest();
    guest.set_scrub(options.scrub == Scrub::Zero);
    guest.inspect()?;
    let inspect_seconds = inspect_start.elapsed().as_secs_f64();
    report_recoveries(&guest, reporter);
    let work_start = Instant::now();
    let reports = sysprep::run(&mut guest, options, reporter)?;
    let sysprep_seconds = work_start.elapsed().as_secs_f64();
    let commit_start = Instant::now();
    let mut run = BackendRun {
        reports,
        backend: "native",
        reason: "every filesystem the operations touch is ext2/3/4 the native backend handles"
            .to_owned(),
        accelerator: "none".to_owned(),
        committed: false,
        scrubbed_bytes: 0,
        scrubbed_journal_bytes: 0,
        timings: Timings {
            inspect_seconds,
            sysprep_seconds,
            ..Timings::default()
        },
    };
    if !options.dry_run {
        (run.scrubbed_bytes, run.scrubbed_journal_bytes) = guest.scrubbed_bytes();
    }
    if !options.dry_run && run.changes() > 0 {
        guest.commit()?;
        run.committed = true;
    }
    run.timings.commit_seconds = commit_start.elapsed().as_secs_f64();
    Ok(run)
}

/// Says which filesystems needed recovery (a snapshot of a running guest) and what
/// it took: it is written with the changes, as a mount would have done it.
fn report_recoveries(guest: &NativeGuest, reporter: &dyn Reporter) {
    for (device, done) in guest.recoveries() {
        let message = format!(
            "{device} was not unmounted cleanly: replayed {} journal transactions \
             ({} blocks, {} revoked) and released {} orphaned inodes, as a mount would",
            done.transactions, done.blocks, done.revoked, done.orphans
        );
        reporter.event(
            Event::new("sysprep.recovered", message)
                .with("device", device)
                .with("transactions", done.transactions)
                .with("blocks", done.blocks)
                .with("revoked", done.revoked)
                .with("orphans", done.orphans),
        );
    }
}

fn run_libguestfs(
    image: &Path,
    options: &Options,
    reporter: &dyn Reporter,
    reason: &str,
) -> Result<BackendRun> {
    let access = if options.dry_run {
        Access::DryRun
    } else {
        Access::ReadWrite
    };
    let mut session = Session::open(image, access)?;
    session.set_scrub(options.scrub == Scrub::Zero);
    let launch_seconds = session.launch_time().as_secs_f64();
    // Inspection is cached by the session: timed here, reused by the run.
    let inspect_start = Instant::now();
    session.inspect()?;
    let inspect_seconds = inspect_start.elapsed().as_secs_f64();
    let work_start = Instant::now();
    let reports = sysprep::run(&mut session, options, reporter)?;
    let sysprep_seconds = work_start.elapsed().as_secs_f64();
    if !options.dry_run && !session.unscrubbed().is_empty() {
        let paths = session.unscrubbed();
        reporter.warn(&format!(
            "{} removed, truncated or replaced paths are on a copy-on-write filesystem \
             (btrfs) and were not scrubbed: their old content may stay readable in the \
             image's free space (first: {})",
            paths.len(),
            paths[0]
        ));
    }
    let mut run = BackendRun {
        reports,
        backend: "libguestfs",
        reason: reason.to_owned(),
        accelerator: session.accelerator().to_string(),
        committed: false,
        scrubbed_bytes: session.scrubbed_bytes(),
        scrubbed_journal_bytes: 0,
        timings: Timings {
            launch_seconds,
            inspect_seconds,
            sysprep_seconds,
            commit_seconds: 0.0,
        },
    };
    let commit_start = Instant::now();
    // Nothing changed: the image stays byte-identical (not even a mount count moves).
    if !options.dry_run && run.changes() > 0 {
        session.commit()?;
        run.committed = true;
    }
    run.timings.commit_seconds = commit_start.elapsed().as_secs_f64();
    Ok(run)
}

/// A reporter that holds warnings and events back until [`HeldReporter::release`]
/// (dropped unreleased, they are never shown). Progress passes straight through.
pub(super) struct HeldReporter<'a> {
    inner: &'a dyn Reporter,
    held: Mutex<Vec<Held>>,
}

enum Held {
    Warning(String),
    Event(Event),
}

impl<'a> HeldReporter<'a> {
    pub(super) fn new(inner: &'a dyn Reporter) -> Self {
        Self {
            inner,
            held: Mutex::new(Vec::new()),
        }
    }

    /// Passes everything held on, in order.
    pub(super) fn release(self) {
        let held = self.held.into_inner().unwrap_or_else(|p| p.into_inner());
        for item in held {
            match item {
                Held::Warning(message) => self.inner.warn(&message),
                Held::Event(event) => self.inner.event(event),
            }
        }
    }

    fn hold(&self, item: Held) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(item);
    }
}

impl Reporter for HeldReporter<'_> {
    fn start_progress(&self, label: &str, total: Option<u64>) -> Box<dyn Progress> {
        self.inner.start_progress(label, total)
    }

    fn warn(&self, message: &str) {
        self.hold(Held::Warning(message.to_owned()));
    }

    fn event(&self, event: Event) {
        self.hold(Held::Event(event));
    }
}
