//! `imgferry migrate`/`template` with local files at both ends (no cloud): resume after
//! a stop at every stage boundary, the sysprep result seen through libguestfs, content
//! equality with `qemu-img compare` when the guest is not touched, the dry run writing
//! nothing, the free-space check before any download, and work-dir ownership.
//!
//! One appliance launch for the migrate and one to look at the result; the other tests
//! use `--no-sysprep` and take well under a second each.

mod common;
mod sysprep_support;

use std::path::Path;
use std::process::Command;

use common::{
    assert_qemu_check_clean, assert_same_content, imgferry, path_str, qemu_img_info, run,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sysprep_support::{fixture, guestfs_env, has, listing_of};

/// `imgferry --json migrate ARGS`; with sysprep in an environment where the appliance
/// boots (probing that costs seconds, so `--no-sysprep` runs skip it).
fn migrate(args: &[&str], extra_env: &[(&str, &str)]) -> (bool, Vec<Value>, String) {
    let mut cmd = imgferry();
    if !args.contains(&"--no-sysprep") {
        cmd.envs(guestfs_env().iter().map(|(k, v)| (k, v)));
    }
    cmd.envs(extra_env.iter().copied()).arg("--json").args(args);
    let out = run(&mut cmd);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn result(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("no result line in {lines:?}"))
}

fn error(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["type"] == "error")
        .unwrap_or_else(|| panic!("no error line in {lines:?}"))
}

fn completed(work: &Path) -> Vec<String> {
    let state: Value =
        serde_json::from_slice(&std::fs::read(work.join("state.json")).unwrap()).unwrap();
    state["completed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stage"].as_str().unwrap().to_owned())
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_migrate_stopped_at_every_stage_boundary_resumes_to_one_sysprepped_v2_image() {
    let debian = fixture("debian");
    let dir = common::tempdir();
    let work = dir.path().join("work");
    let out = dir.path().join("moved.qcow2");
    let base = [
        "migrate",
        "--from-file",
        path_str(&debian.image),
        "--to-file",
        path_str(&out),
        "--hostname",
        "web-02",
        "--enable",
        "udev-persistent-net,net-hwaddr,kerberos-hostkeytab,user-account",
        "--keep-user-accounts",
        "alice",
        "--compat",
        "0.10",
        "--work-dir",
        path_str(&work),
    ];
    let stages = [
        "source", "space", "download", "sysprep", "convert", "upload",
    ];
    for (index, stage) in stages.iter().enumerate() {
        let mut args = base.to_vec();
        args.extend(["--test-stop-after", stage]);
        let (ok, lines, stderr) = migrate(&args, &[]);
        assert!(!ok, "a stop after {stage} must fail the run: {lines:?}");
        assert_eq!(
            error(&lines)["message"],
            format!("stopped after stage {stage} (test hook)"),
            "{stderr}"
        );
        assert_eq!(
            completed(&work),
            stages[..=index],
            "state after stopping at {stage}"
        );
        assert!(
            !out.exists() || index >= 5,
            "the target appears only at upload"
        );
        let resumed = lines.iter().any(|l| l["kind"] == "migrate.resume");
        assert_eq!(resumed, index > 0, "stop {stage}: resume event");
    }
    let (ok, lines, stderr) = migrate(&base, &[]);
    assert!(ok, "{stderr}\n{lines:?}");
    let summary = result(&lines);
    let fresh: Vec<&str> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["resumed"] == false)
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(fresh, ["active"], "only the last stage ran in the last run");
    assert_eq!(summary["target"]["status"], "active");
    assert!(
        summary["sysprep"]["changes"].as_u64().unwrap() >= 3,
        "{summary}"
    );
    assert_eq!(summary["convert"]["action"], "amend");
    assert_eq!(
        summary["properties"]["properties"]["imgferry_sysprep"],
        "kerberos-hostkeytab,net-hwaddr,udev-persistent-net,user-account+hostname+user-accounts"
    );
    assert_eq!(
        summary["properties"]["properties"]["imgferry_source_hash"],
        format!("sha512:{}", summary["download"]["sha512"].as_str().unwrap())
    );
    assert!(!work.exists(), "the work dir is removed on success");

    // The result: a clean v2 qcow2 with the sysprep of a migrate, digests as reported.
    assert_qemu_check_clean(&out);
    assert_eq!(
        qemu_img_info(&out)["format-specific"]["data"]["compat"],
        "0.10"
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        bytes.len() as u64,
        summary["output"]["bytes"].as_u64().unwrap()
    );
    let (os, listing) = listing_of(&out);
    assert_eq!(os.distro, "debian");
    assert_eq!(
        listing["/etc/hostname"].split(' ').nth(2),
        Some(sha256_hex(b"web-02\n").as_str()),
        "hostname"
    );
    for gone in [
        "/etc/udev/rules.d/70-persistent-net.rules",
        "/etc/krb5.keytab",
    ] {
        assert!(!has(&listing, gone), "{gone} must be removed by a migrate");
    }
    for kept in [
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/machine-id",
        "/home/alice",
    ] {
        assert!(
            has(&listing, kept),
            "{kept}: a migrate keeps the machine's identity (and alice, kept by name)"
        );
    }
}

#[test]
fn without_sysprep_the_content_is_unchanged_and_raw_output_matches() {
    let debian = fixture("debian");
    let dir = common::tempdir();
    let out = dir.path().join("moved.raw");
    let work = dir.path().join("work");
    let args = [
        "migrate",
        "--from-file",
        path_str(&debian.image),
        "--to-file",
        path_str(&out),
        "--no-sysprep",
        "--disk-format",
        "raw",
        "--work-dir",
        path_str(&work),
        "--keep-work-dir",
    ];
    let (ok, lines, stderr) = migrate(&args, &[]);
    assert!(ok, "{stderr}");
    assert_same_content(&debian.image, &out);
    assert_eq!(qemu_img_info(&out)["format"], "raw");
    let summary = result(&lines);
    assert_eq!(summary["convert"]["action"], "convert");
    assert_eq!(
        summary["properties"]["properties"]["imgferry_sysprep"],
        "none"
    );
    assert!(summary["sysprep"].is_null());
    assert_eq!(
        completed(&work).len(),
        7,
        "--keep-work-dir keeps the finished state"
    );
    // Re-running the finished request changes nothing and reports every stage resumed.
    let (ok, lines, _) = migrate(&args, &[]);
    assert!(ok);
    assert!(result(&lines)["stages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["resumed"] == true));
    // Other options in the same work dir: refused, --restart starts over.
    let mut other = args.to_vec();
    other.extend(["--property", "os=LINUX"]);
    let (ok, lines, _) = migrate(&other, &[]);
    assert!(!ok);
    assert!(error(&lines)["message"]
        .as_str()
        .unwrap()
        .contains("holds the state of a different request"));
    other.push("--restart");
    let (ok, lines, stderr) = migrate(&other, &[]);
    assert!(ok, "{stderr}");
    assert_eq!(result(&lines)["properties"]["properties"]["os"], "LINUX");
    assert_same_content(&debian.image, &out);
}

#[test]
fn a_dry_run_writes_nothing_and_a_small_work_dir_fails_before_downloading() {
    let debian = fixture("debian");
    let dir = common::tempdir();
    let out = dir.path().join("moved.qcow2");
    let work = dir.path().join("work");
    let args = [
        "template",
        "--from-file",
        path_str(&debian.image),
        "--to-file",
        path_str(&out),
        "--no-sysprep",
        "--property",
        "os=LINUX",
        "--work-dir",
        path_str(&work),
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (ok, lines, stderr) = migrate(&dry, &[]);
    assert!(ok, "{stderr}");
    let plan = result(&lines);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["properties"]["properties"]["os"], "LINUX");
    assert_eq!(plan["output"]["action"], "none");
    assert!(plan.get("set_after_upload").is_none(), "no mark on a file");
    assert!(!out.exists() && !work.exists(), "a dry run writes nothing");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let (ok, lines, _) = migrate(&args, &[("IMGFERRY_TEST_FREE_BYTES", "1000000")]);
    assert!(!ok);
    let failure = error(&lines);
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("has 1000000 bytes free, the run needs"),
        "{failure}"
    );
    assert!(failure["hint"].as_str().unwrap().contains("--work-dir"));
    assert!(
        !work.exists() && !out.exists(),
        "nothing downloaded, nothing to resume: no work dir left"
    );
    // A source that cannot be read fails in the source stage; no work dir is left.
    let missing = dir.path().join("missing.qcow2");
    let mut bad = args.to_vec();
    bad[2] = path_str(&missing);
    let (ok, lines, _) = migrate(&bad, &[]);
    assert!(!ok, "{lines:?}");
    assert!(!work.exists(), "a bad source leaves no work dir");
    // The user-account choices need the user-account operation, as in `imgferry sysprep`.
    let status = Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["migrate", "--from-file", "x", "--to-file", "y"])
        .args(["--keep-user-accounts", "alice"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    // Bad property input is a usage error before anything is read.
    let (ok, _, _) = migrate(
        &[
            "migrate",
            "--from-file",
            "x",
            "--to-file",
            "y",
            "--property",
            "novalue",
        ],
        &[],
    );
    assert!(!ok);
    let status = Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args([
            "migrate",
            "--from-file",
            "x",
            "--to-file",
            "y",
            "--property",
            "min_disk=3",
        ])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
