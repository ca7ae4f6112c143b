//! Helpers shared by the integration tests: run imgferry, run the qemu-img/qemu-io
//! oracles, and build small images in temporary directories.
//!
//! Append new helpers here rather than copying them into a test file.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod dev_cloud;
pub mod dirty_journal;
pub mod fault_proxy;
pub mod image_guard;

/// A command running the imgferry binary built for this test run.
pub fn imgferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgferry"))
}

/// Runs a command, panicking with its stderr if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img ARGS...`, which must succeed.
pub fn qemu_img(args: &[&str]) -> String {
    run_ok(Command::new("qemu-img").args(args))
}

/// `qemu-io -f FORMAT -c CMD... FILE`, which must succeed (qemu-io exits 0 even when a
/// command fails, so its output is checked for "failed").
pub fn qemu_io(format: &str, file: &Path, commands: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", format]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.arg(file);
    let out = run_ok(&mut cmd);
    assert!(
        !out.contains("failed"),
        "qemu-io {commands:?} on {}: {out}",
        file.display()
    );
}

/// `qemu-img info --output=json FILE` as JSON.
pub fn qemu_img_info(file: &Path) -> Value {
    let text = qemu_img(&["info", "--output=json", path_str(file)]);
    serde_json::from_str(&text).expect("qemu-img info emits JSON")
}

/// Asserts `qemu-img compare` finds identical guest content (formats probed).
pub fn assert_same_content(a: &Path, b: &Path) {
    let out = run(Command::new("qemu-img").args(["compare", path_str(a), path_str(b)]));
    assert!(
        out.status.success(),
        "qemu-img compare {} {}: {}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts `qemu-img check` reports no errors and no leaks.
pub fn assert_qemu_check_clean(file: &Path) {
    let out = run(Command::new("qemu-img").args(["check", "--output=json", path_str(file)]));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "qemu-img check {} exit {}: {report}\n{}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for key in ["corruptions", "leaks", "check-errors"] {
        let n = report.get(key).and_then(Value::as_u64).unwrap_or(0);
        assert_eq!(
            n,
            0,
            "qemu-img check {}: {key} = {n}: {report}",
            file.display()
        );
    }
}

/// Writes `len` bytes of deterministic pseudo-random data (xorshift, seeded).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imgferry-test-")
        .tempdir()
        .expect("create temp dir")
}

/// `dir/name` as a PathBuf.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A path as &str (test paths are always UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 test path")
}
