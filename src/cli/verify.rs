//! `imgferry verify FILE`: check a file against expected digests and/or a manifest, or
//! print its digests.
//!
//! Parses the arguments, calls [`crate::hash::verify_file`], prints what matched and
//! what differs, and turns a mismatch into exit code 3. Owns no hashing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{Failure, Output};
use crate::exit::ExitCode;
use crate::hash::{
    verify_file, Algorithm, ChunkCheck, Digest, Manifest, VerifyReport, VerifyRequest,
};

/// Arguments of `imgferry verify`.
#[derive(Debug, clap::Args)]
#[command(
    group(
        clap::ArgGroup::new("what")
            .required(true)
            .multiple(true)
            .args(["md5", "sha256", "sha384", "sha512", "manifest", "print"])
    ),
    after_help = "Every whole-file digest is computed concurrently, each on its own thread, \
                  from one read of FILE. A manifest alone is verified in parallel on every \
                  core. Exit codes: 0 all match, 3 something differs, 1 I/O or manifest error.\n\n\
                  Examples:\n  \
                  imgferry verify disk.img --md5 CHECKSUM --sha512 OS_HASH_VALUE\n  \
                  imgferry verify disk.img --manifest disk.manifest\n  \
                  imgferry verify disk.img --print md5,sha512"
)]
pub struct VerifyArgs {
    /// The file to verify.
    pub file: PathBuf,
    /// Expected MD5 in hex (Glance's `checksum`).
    #[arg(long, value_name = "HEX", value_parser = md5_hex)]
    pub md5: Option<Digest>,
    /// Expected SHA-256 in hex.
    #[arg(long, value_name = "HEX", value_parser = sha256_hex)]
    pub sha256: Option<Digest>,
    /// Expected SHA-384 in hex.
    #[arg(long, value_name = "HEX", value_parser = sha384_hex)]
    pub sha384: Option<Digest>,
    /// Expected SHA-512 in hex (Glance's `os_hash_value` with the default `os_hash_algo`).
    #[arg(long, value_name = "HEX", value_parser = sha512_hex)]
    pub sha512: Option<Digest>,
    /// A manifest written by `imgferry manifest`: reports which chunks (byte ranges) differ.
    #[arg(long, value_name = "MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// Compute and print these digests, like `sha512sum --tag` (comma-separated:
    /// md5,sha256,sha384,sha512). Combines with the checks.
    #[arg(long, value_name = "ALGO[,ALGO]", value_delimiter = ',')]
    pub print: Vec<Algorithm>,
}

fn md5_hex(text: &str) -> Result<Digest, String> {
    Algorithm::Md5.parse_hex(text)
}
fn sha256_hex(text: &str) -> Result<Digest, String> {
    Algorithm::Sha256.parse_hex(text)
}
fn sha384_hex(text: &str) -> Result<Digest, String> {
    Algorithm::Sha384.parse_hex(text)
}
fn sha512_hex(text: &str) -> Result<Digest, String> {
    Algorithm::Sha512.parse_hex(text)
}

/// Chunk runs listed one per line in human output; the rest are counted.
const RUNS_SHOWN: usize = 20;

/// Runs the command.
pub fn run(args: VerifyArgs, output: &Output) -> Result<ExitCode, Failure> {
    let manifest = args.manifest.as_deref().map(Manifest::read).transpose()?;
    let request = VerifyRequest {
        expected: [args.md5, args.sha256, args.sha384, args.sha512]
            .into_iter()
            .flatten()
            .collect(),
        compute: args.print.clone(),
        manifest,
    };
    let report = verify_file(&args.file, &request, &output.reporter())?;
    // Under -q a success prints only the digests asked for with --print.
    let human = if output.is_quiet() && report.matches() {
        digest_lines(&report, &args.print)
    } else {
        human_report(&report, &args.print)
    };
    output.result(
        "verify",
        json_report(&report, args.manifest.as_deref()),
        &human,
    );
    report.into_result()?;
    Ok(ExitCode::Success)
}

fn json_report(report: &VerifyReport, manifest: Option<&Path>) -> Value {
    let computed: serde_json::Map<_, _> = report
        .computed
        .iter()
        .map(|d| (d.algorithm.name().to_owned(), json!(d.hex())))
        .collect();
    let checks: Vec<Value> = report
        .checks
        .iter()
        .map(|c| {
            json!({
                "algorithm": c.expected.algorithm.name(),
                "expected": c.expected.hex(),
                "actual": c.actual.hex(),
                "ok": c.matches(),
            })
        })
        .collect();
    let mut value = json!({
        "file": report.path,
        "size": report.size,
        "ok": report.matches(),
        "digests": computed,
        "checks": checks,
    });
    if let (Some(check), Some(object)) = (&report.chunks, value.as_object_mut()) {
        object.insert("manifest".to_owned(), json_chunks(check, manifest));
    }
    value
}

fn json_chunks(check: &ChunkCheck, manifest: Option<&Path>) -> Value {
    let faults: Vec<Value> = check
        .faults
        .iter()
        .map(|run| {
            json!({
                "fault": run.fault.name(),
                "first_chunk": run.first,
                "last_chunk": run.last,
                "start": run.start,
                "end": run.end,
            })
        })
        .collect();
    json!({
        "path": manifest,
        "algorithm": check.layout.algorithm.name(),
        "chunk_size": check.layout.chunk_size,
        "expected_size": check.expected_size,
        "actual_size": check.actual_size,
        "compared": check.compared,
        "ok": check.matches(),
        "faults": faults,
    })
}

/// The `--print` digests, one `NAME (FILE) = HEX` line each.
fn digest_lines(report: &VerifyReport, print: &[Algorithm]) -> String {
    let path = report.path.display();
    let mut text = String::new();
    for digest in report
        .computed
        .iter()
        .filter(|d| print.contains(&d.algorithm))
    {
        let name = digest.algorithm.name().to_uppercase();
        let _ = writeln!(text, "{name} ({path}) = {}", digest.hex());
    }
    text
}

fn human_report(report: &VerifyReport, print: &[Algorithm]) -> String {
    let path = report.path.display();
    let mut text = digest_lines(report, print);
    for check in &report.checks {
        let name = check.expected.algorithm;
        if check.matches() {
            let _ = writeln!(text, "{path}: {name} OK");
        } else {
            let _ = writeln!(
                text,
                "{path}: {name} FAILED: expected {}, got {}",
                check.expected.hex(),
                check.actual.hex()
            );
        }
    }
    if let Some(check) = &report.chunks {
        let verdict = if check.matches() { "OK" } else { "FAILED" };
        let _ = writeln!(
            text,
            "{path}: manifest {verdict} ({} of {} chunks of {} bytes compared, {})",
            check.compared,
            check.layout.chunk_count(check.expected_size),
            check.layout.chunk_size,
            check.layout.algorithm
        );
        for run in check.faults.iter().take(RUNS_SHOWN) {
            let chunks = if run.first == run.last {
                format!("chunk {}", run.first)
            } else {
                format!("chunks {}-{}", run.first, run.last)
            };
            let _ = writeln!(
                text,
                "  {chunks}: bytes {}..{} {}",
                run.start,
                run.end,
                run.fault.name()
            );
        }
        if check.faults.len() > RUNS_SHOWN {
            let _ = writeln!(text, "  ... {} more runs", check.faults.len() - RUNS_SHOWN);
        }
        if check.expected_size != check.actual_size {
            let _ = writeln!(
                text,
                "  size: the file is {} bytes, the manifest describes {}",
                check.actual_size, check.expected_size
            );
        }
    }
    text
}
