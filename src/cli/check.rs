//! `imgferry check FILE`: qcow2 metadata consistency, reported like `qemu-img check`.
//!
//! Owns the command's arguments, its text and JSON output and the mapping of the verdict
//! onto exit codes. The checking itself is `disk::qcow2::check`.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::{Failure, Output};
use crate::disk::qcow2::check::{check_file, CheckReport, CheckedImage, Severity, Verdict};
use crate::exit::ExitCode;

/// Arguments of `imgferry check`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes (qemu-img check's in brackets):
  0  no errors and no leaks [0]
  1  the check could not complete, e.g. an unreadable refcount block [1]
  3  corruption found: data may be wrong or later writes may damage it [2]
  4  only leaked clusters found: wasted space, no harm to data [3]
A raw image has no metadata: check says so and exits 0. Nothing is repaired.")]
pub struct CheckArgs {
    /// The image file (qcow2 v2 or v3; the format is judged by content).
    pub file: PathBuf,
}

/// Runs the command.
pub fn run(args: CheckArgs, output: &Output) -> Result<ExitCode, Failure> {
    let file = args.file.display().to_string();
    match check_file(&args.file)? {
        CheckedImage::Raw => {
            output.summary(
                "check",
                json!({"file": file, "format": "raw", "checked": false}),
                &format!("{file} is a raw image: it has no metadata to check."),
            );
            Ok(ExitCode::Success)
        }
        CheckedImage::Qcow2(report) => {
            let mut value = serde_json::to_value(&report).map_err(Failure::new)?;
            if let Value::Object(fields) = &mut value {
                fields.insert("file".to_owned(), json!(file));
                fields.insert("format".to_owned(), json!("qcow2"));
                fields.insert("checked".to_owned(), json!(true));
                fields.insert("verdict".to_owned(), json!(report.verdict()));
            }
            // A finding is not a success: -q still shows it.
            if report.verdict() == Verdict::Clean {
                output.summary("check", value, &human(&report));
            } else {
                output.result("check", value, &human(&report));
            }
            Ok(match report.verdict() {
                Verdict::Clean => ExitCode::Success,
                Verdict::Leaks => ExitCode::LeaksFound,
                Verdict::Corrupt => ExitCode::VerificationFailed,
                Verdict::Incomplete => ExitCode::Failure,
            })
        }
    }
}

/// The report in `qemu-img check`'s words.
fn human(report: &CheckReport) -> String {
    let mut text = String::new();
    for problem in &report.problems {
        let tag = match problem.severity {
            Severity::Corruption => "ERROR",
            Severity::Leak => "Leak",
            Severity::CheckError => "Check error",
        };
        let _ = writeln!(text, "{tag}: {}", problem.message);
    }
    if report.problems_not_listed > 0 {
        let _ = writeln!(
            text,
            "... and {} more problems not listed",
            report.problems_not_listed
        );
    }
    if !report.problems.is_empty() {
        text.push('\n');
    }
    if report.verdict() == Verdict::Clean {
        text.push_str("No errors were found on the image.\n");
    }
    if report.corruptions > 0 {
        let _ = writeln!(
            text,
            "{} errors were found on the image.\n\
             Data may be corrupted, or further writes to the image may corrupt it.",
            report.corruptions
        );
    }
    if report.leaks > 0 {
        let _ = writeln!(
            text,
            "{} leaked clusters were found on the image.\n\
             This means waste of disk space, but no harm to data.",
            report.leaks
        );
    }
    if report.check_errors > 0 {
        let _ = writeln!(
            text,
            "{} internal errors have occurred during the check.",
            report.check_errors
        );
    }
    if report.total_clusters > 0 {
        let percent = |n: u64| n as f64 * 100.0 / report.total_clusters as f64;
        let allocated = report.allocated_clusters.max(1) as f64;
        let _ = writeln!(
            text,
            "{}/{} = {:.2}% allocated, {:.2}% fragmented, {:.2}% compressed clusters",
            report.allocated_clusters,
            report.total_clusters,
            percent(report.allocated_clusters),
            report.fragmented_clusters as f64 * 100.0 / allocated,
            report.compressed_clusters as f64 * 100.0 / allocated,
        );
    }
    let _ = write!(text, "Image end offset: {}", report.image_end_offset);
    text
}
