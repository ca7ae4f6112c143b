//! Helpers for the native-backend tests: running the host tools that serve as oracles
//! (sfdisk, sgdisk, mke2fs, debugfs, qemu-img), the cached guest fixtures of
//! `scripts/make-fixtures` (debian and ubuntu need only host tools), and opening an
//! image as a shared [`VirtualDisk`].
//!
//! When a tool or a fixture is missing the tests FAIL with what to run; they never skip.
#![allow(dead_code)] // each native test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use imgferry::disk::{open_image, VirtualDisk};

pub mod edit_oracle;
pub mod edits;
pub mod ext4_oracle;
pub mod replay;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program` with `args`, fails the test on a non-zero exit, returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    run_stdin(program, args, None)
}

/// Like [`run`], feeding `stdin` to the program.
pub fn run_stdin(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with scripts/install-deps")
        });
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates a sparse file of `size` bytes (a blank raw disk).
pub fn blank_disk(path: &Path, size: u64) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
}

/// Opens `path` (raw or qcow2) as a shared virtual disk.
pub fn open_disk(path: &Path) -> Arc<dyn VirtualDisk> {
    Arc::new(open_image(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// `path` as a string, for tool arguments.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The cached fixture image `NAME.qcow2` (debian or ubuntu), built if needed.
pub fn fixture(name: &str) -> PathBuf {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new(repo().join("scripts/make-fixtures"))
            .args(["--only", "debian,ubuntu"])
            .output()
            .expect("cannot run scripts/make-fixtures");
        assert!(
            out.status.success(),
            "scripts/make-fixtures failed ({}); run it by hand to see why:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    });
    fixture_dir().join(format!("{name}.qcow2"))
}

/// Where the fixture scripts cache their images: `$IMGFERRY_FIXTURE_DIR`, else
/// `~/.cache/imgferry/fixtures`.
pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("IMGFERRY_FIXTURE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME must be set"))
            .join(".cache/imgferry/fixtures"),
    }
}

/// Converts `image` to a raw file at `raw` with qemu-img (for tools that read raw only).
pub fn to_raw(image: &Path, raw: &Path) {
    run("qemu-img", &["convert", "-O", "raw", arg(image), arg(raw)]);
}
