//! `-q`: on success a command prints only what it exists to output (a listing, `info`,
//! digests asked for with `--print`, a dry run's plan); accounts of what was done
//! (sysprep's change list, convert's, amend's, check's, download's summary) and warnings
//! are not printed, while a failure and a check's findings still are.

mod common;
mod sysprep_support;

use std::process::Output;

use common::dev_cloud::{clean_env, dev_cloud};
use common::image_guard::{create_image, ImageGuard};
use sysprep_support::fixture;

fn imgferry(args: &[&str]) -> Output {
    common::run(common::imgferry().args(args))
}

/// Asserts the command succeeded and printed nothing at all.
fn assert_silent(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{what}: stdout");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{what}: stderr");
}

fn assert_says(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!stdout.is_empty(), "{what} printed nothing without -q");
    stdout
}

#[test]
fn local_commands_print_nothing_on_success_under_quiet() {
    let dir = common::tempdir();
    let raw = common::path_in(dir.path(), "disk.raw");
    std::fs::write(&raw, common::random_bytes(1 << 20, 16)).unwrap();
    let qcow2 = common::path_in(dir.path(), "disk.qcow2");
    let (raw_s, qcow2_s) = (common::path_str(&raw), common::path_str(&qcow2));

    // Each is first run without -q, so the silence is -q's doing.
    assert_says(
        &imgferry(&["convert", raw_s, "-O", "qcow2", qcow2_s]),
        "convert",
    );
    std::fs::remove_file(&qcow2).unwrap();
    let convert = ["-q", "convert", raw_s, "-O", "qcow2", qcow2_s];
    assert_silent(&imgferry(&convert), "convert -q");
    assert_says(&imgferry(&["check", qcow2_s]), "check");
    assert_silent(&imgferry(&["check", "-q", qcow2_s]), "check -q");
    assert_says(&imgferry(&["amend", "--compat", "0.10", qcow2_s]), "amend");
    assert_silent(
        &imgferry(&["-q", "amend", "--compat", "1.1", qcow2_s]),
        "amend -q",
    );
    let amended = common::qemu_img(&["info", qcow2_s]);
    assert!(amended.contains("compat: 1.1"), "{amended}");

    // What a command exists to output stays.
    let info = imgferry(&["-q", "info", qcow2_s]);
    assert!(assert_says(&info, "info -q").contains("qcow2"));
    let verify = imgferry(&["verify", "-q", "--print", "sha256", raw_s]);
    let printed = assert_says(&verify, "verify -q --print");
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(printed.starts_with("SHA256 ("), "{printed}");
    let digest = printed.trim_end().rsplit(' ').next().unwrap().to_owned();
    assert_says(&imgferry(&["verify", "--sha256", &digest, raw_s]), "verify");
    let verify = ["verify", "-q", "--sha256", &digest, raw_s];
    assert_silent(&imgferry(&verify), "verify -q");

    // A failure is still explained.
    let wrong = "0".repeat(64);
    let failed = imgferry(&["verify", "-q", "--sha256", &wrong, raw_s]);
    assert_eq!(failed.status.code(), Some(3), "{failed:?}");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("error:"));
}

#[test]
fn sysprep_prints_no_change_list_under_quiet() {
    let debian = fixture("debian");
    let dir = common::tempdir();
    let loud = debian.standalone_copy(dir.path(), "loud");
    let quiet = debian.standalone_copy(dir.path(), "quiet");
    let sysprep = ["sysprep", "--backend", "native"];
    let said = assert_says(
        &imgferry(&[&sysprep[..], &[common::path_str(&loud)]].concat()),
        "sysprep",
    );
    assert!(said.lines().count() > 10, "{said}");
    let quiet_run = imgferry(&[&["-q"], &sysprep[..], &[common::path_str(&quiet)]].concat());
    assert_silent(&quiet_run, "sysprep -q");

    // The dry run exists to show the plan: -q keeps it.
    let fresh = debian.standalone_copy(dir.path(), "plan");
    let plan = imgferry(&[
        "-q",
        "sysprep",
        "--backend",
        "native",
        "--dry-run",
        common::path_str(&fresh),
    ]);
    assert!(assert_says(&plan, "sysprep -q --dry-run").contains("dry run:"));
}

#[test]
fn download_prints_nothing_under_quiet() {
    let dev = dev_cloud();
    let dir = common::tempdir();
    let data = common::path_in(dir.path(), "data.raw");
    std::fs::write(&data, common::random_bytes(256 << 10, 17)).unwrap();
    let mut guard = ImageGuard::new();
    let name = guard.name("c1-source", "quiet-download");
    let id = create_image(
        "c1-source",
        &name,
        &[
            "--file",
            common::path_str(&data),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--private",
        ],
    );
    let download = |quiet: bool, file: &str| {
        let out = common::path_in(dir.path(), file);
        let mut cmd = common::imgferry();
        clean_env(&mut cmd, dev.clouds_yaml());
        if quiet {
            cmd.arg("-q");
        }
        cmd.args([
            "--os-cloud",
            "c1-source",
            "download",
            &id,
            "-o",
            common::path_str(&out),
        ]);
        (common::run(&mut cmd), out)
    };
    let (loud, _) = download(false, "loud.raw");
    assert_says(&loud, "download");
    let (quiet, file) = download(true, "quiet.raw");
    assert_silent(&quiet, "download -q");
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&data).unwrap());
}
