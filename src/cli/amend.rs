//! `imgferry amend FILE --compat 0.10|1.1 [--drop-bitmaps]`: change a qcow2 image's
//! compat level in place.
//!
//! Owns the command's arguments and output; the work and its crash-safe write order are
//! `disk::qcow2::amend`'s.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use super::{Failure, Output};
use crate::disk::qcow2::amend::{amend, AmendOptions, AmendOutcome, Compat};
use crate::exit::ExitCode;

/// Arguments of `imgferry amend`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Downgrading to 0.10 makes v3 zero clusters unallocated (freeing preallocated ones) and
refuses, naming the feature, what v2 cannot hold: refcount_bits other than 16, an
external data file, extended L2 entries, zstd-compressed clusters, persistent bitmaps
(unless --drop-bitmaps), zero clusters with a backing file. Dirty, corrupt, encrypted
or damaged images (check finds corruption) are refused in both directions. Upgrading
to 1.1 rewrites the header only. The image is locked while amended, and the header is
written last, so a crash leaves a readable image with the same content (at worst with
leaked clusters).")]
pub struct AmendArgs {
    /// The qcow2 image to change in place.
    pub file: PathBuf,
    /// The compat level to set: 0.10 (qcow2 v2) or 1.1 (qcow2 v3).
    #[arg(long, value_parser = ["0.10", "1.1"])]
    pub compat: String,
    /// Downgrade even if the image has persistent dirty bitmaps: delete them and free
    /// their clusters.
    #[arg(long)]
    pub drop_bitmaps: bool,
    /// Test hook (not for users): fail after this many writes, as if the process died.
    #[arg(long, hide = true)]
    pub test_stop_after_writes: Option<u64>,
}

/// Runs the command.
pub fn run(args: AmendArgs, output: &Output) -> Result<ExitCode, Failure> {
    let compat = match args.compat.as_str() {
        "0.10" => Compat::V0_10,
        _ => Compat::V1_1,
    };
    let options = AmendOptions {
        compat,
        drop_bitmaps: args.drop_bitmaps,
        stop_after_writes: args.test_stop_after_writes,
    };
    let reporter = output.reporter();
    let outcome = amend(&args.file, &options, &reporter)?;
    let file = args.file.display().to_string();
    let mut value = serde_json::to_value(&outcome).map_err(Failure::new)?;
    if let Value::Object(fields) = &mut value {
        fields.insert("file".to_owned(), Value::String(file.clone()));
    }
    output.summary("amend", value, &human(&file, &outcome));
    Ok(ExitCode::Success)
}

fn human(file: &str, outcome: &AmendOutcome) -> String {
    if !outcome.changed {
        return format!("{file} is already compat {}; nothing to do.", outcome.to);
    }
    let mut text = format!("{file}: compat {} -> {}", outcome.from, outcome.to);
    let mut details = Vec::new();
    if outcome.zero_clusters_expanded > 0 {
        details.push(format!(
            "{} zero clusters made unallocated, {} preallocated clusters freed",
            outcome.zero_clusters_expanded, outcome.preallocated_clusters_freed
        ));
    }
    if !outcome.bitmaps_dropped.is_empty() {
        details.push(format!(
            "bitmaps dropped: {} ({} clusters freed)",
            outcome.bitmaps_dropped.join(", "),
            outcome.bitmap_clusters_freed
        ));
    }
    if outcome.leaked_clusters > 0 {
        details.push(format!("{} leaked clusters kept", outcome.leaked_clusters));
    }
    if !details.is_empty() {
        let _ = write!(text, " ({})", details.join("; "));
    }
    text
}
