//! All-or-nothing and confinement: a dry run and a run that fails midway leave the
//! image byte-identical (sha256, no overlay left behind), and guest paths cannot
//! escape the guest — tested through the `GuestFs` trait on the libguestfs backend so
//! any later backend runs the same checks.

mod common;
mod sysprep_support;

use std::path::Path;

use imgferry::guest::libguestfs::{Access, Session};
use imgferry::guest::{Follow, GuestError, GuestFs, GuestFsExt};
use imgferry::report::SilentReporter;
use imgferry::sysprep::{self, Options};
use serde_json::Value;
use sysprep_support::{fixture, sha256_file, FailingGuest};

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let fixture = fixture("debian");
    let dir = common::tempdir();
    let image = fixture.copy(dir.path(), "dry");
    let before = sha256_file(&image);
    let mut cmd = common::imgferry();
    cmd.args(["--json", "sysprep", "--dry-run", "--hostname", "web-02"])
        .arg(&image);
    let out = common::run_ok(&mut cmd);
    assert_eq!(sha256_file(&image), before, "a dry run changed the image");
    assert_eq!(files_in(dir.path()), ["debian-dry.qcow2"], "leftovers");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let machine_id = lines
        .iter()
        .find(|e| e["kind"] == "sysprep.change" && e["path"] == "/etc/machine-id")
        .expect("machine-id is in the plan");
    assert_eq!(machine_id["action"], "edit");
    assert_eq!(machine_id["dry_run"], true);
    assert_eq!(
        machine_id["added_lines"],
        serde_json::json!(["uninitialized"])
    );
    assert_eq!(
        machine_id["removed_lines"],
        serde_json::json!([fixture.fact("identity", "machine_id")])
    );
    let hosts = lines
        .iter()
        .find(|e| e["path"] == "/etc/hosts")
        .expect("hosts edit planned");
    assert_eq!(
        hosts["added_lines"],
        serde_json::json!(["127.0.1.1\tweb-02"])
    );
    let result = lines.last().expect("a result line");
    assert_eq!(result["type"], "result");
    assert_eq!(result["committed"], false);
    assert!(result["changes"].as_u64().unwrap() > 100);
}

/// Confinement through the trait, on whatever `guest` is (mounted, writable).
fn assert_confined(guest: &mut dyn GuestFs, hostname: &str) {
    let etc = guest.resolve("/etc", Follow::Final).unwrap();
    let link = |guest: &mut dyn GuestFs, name: &str, target: &str| {
        let path = guest
            .resolve(&format!("/etc/{name}"), Follow::ParentsOnly)
            .unwrap();
        assert!(path.as_str().starts_with(etc.as_str()));
        guest.symlink(target, &path).unwrap();
    };
    link(guest, "escape-abs", "/../../../../etc/hostname");
    link(guest, "escape-rel", "../../../../../../etc/hostname");
    link(guest, "escape-dir", "/../../..");
    link(guest, "loop-a", "loop-b");
    link(guest, "loop-b", "loop-a");
    for path in [
        "/etc/escape-abs",
        "/etc/escape-rel",
        "/etc/escape-dir/etc/hostname",
        "/../../etc/../../etc/hostname",
    ] {
        let (resolved, content) = guest.read_file(path, 4096).unwrap().unwrap();
        assert_eq!(resolved.as_str(), "/etc/hostname", "{path}");
        assert_eq!(String::from_utf8_lossy(&content).trim(), hostname, "{path}");
    }
    let root = guest.resolve("/etc/escape-dir", Follow::Final).unwrap();
    assert!(root.is_root());
    assert!(matches!(
        guest.resolve("/etc/loop-a", Follow::Final),
        Err(GuestError::SymlinkLoop { .. })
    ));
    // Globs go through directory symlinks inside the guest and report where things are.
    let matched: Vec<String> = guest
        .glob("/etc/escape-dir/etc/host*")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert!(matched.contains(&"/etc/hostname".to_owned()), "{matched:?}");
    let (utmp, _) = guest.glob("/var/run/utmp").unwrap().remove(0);
    assert_eq!(utmp.as_str(), "/run/utmp");
}

#[test]
fn injected_failure_leaves_the_image_byte_identical() {
    let fixture = fixture("ubuntu");
    let dir = common::tempdir();
    let image = fixture.copy(dir.path(), "fail");
    let before = sha256_file(&image);
    {
        let mut session = Session::open(&image, Access::ReadWrite).expect("launch");
        let options = Options {
            operations: sysprep::select(&[]).unwrap(),
            ..Options::default()
        };
        let mut failing = FailingGuest {
            inner: &mut session,
            changes_left: 20,
        };
        let err = sysprep::run(&mut failing, &options, &SilentReporter).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        // The overlay holds 20 changes; now also make the guest hostile.
        let os = session.inspect().unwrap().remove(0);
        session.unmount_all().unwrap();
        session.mount_os(&os).unwrap();
        assert_confined(&mut session, &fixture.fact("identity", "hostname"));
        // Dropped without commit.
    }
    assert_eq!(
        sha256_file(&image),
        before,
        "a failed run changed the image"
    );
    assert_eq!(
        files_in(dir.path()),
        ["ubuntu-fail.qcow2"],
        "overlay left behind"
    );
}

#[test]
fn a_failing_command_exits_1_and_leaves_the_image_alone() {
    let fixture = fixture("suse");
    let dir = common::tempdir();
    let image = fixture.copy(dir.path(), "cli-fail");
    let before = sha256_file(&image);
    let mut cmd = common::imgferry();
    cmd.args(["sysprep", "--truncate", "/etc/ssh"]).arg(&image);
    let out = common::run(&mut cmd);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/etc/ssh") && stderr.contains("not a regular file"),
        "{stderr}"
    );
    assert_eq!(
        sha256_file(&image),
        before,
        "a failed run changed the image"
    );
    assert_eq!(
        files_in(dir.path()),
        ["suse-cli-fail.qcow2"],
        "overlay left behind"
    );
}
