//! The destination file's life around `imgferry convert`: SIGINT or SIGTERM in the
//! middle stops it with exit 130, no temporary file left and DST never created; a new
//! DST gets 0644 minus the umask like qemu-img's, an existing one keeps its mode.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn a_signal_mid_convert_leaves_nothing_behind() {
    let dir = tempdir();
    let d = dir.path();
    // Random data compressed with -c: seconds of work even on a fast machine, so the
    // signal lands in the middle of the copy.
    let src = d.join("src.raw");
    std::fs::write(&src, random_bytes(96 << 20, 7)).expect("write source");
    for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let dst = d.join("out.qcow2");
        let mut child = imgferry()
            .arg("convert")
            .arg(&src)
            .arg(&dst)
            .args(["-O", "qcow2", "-c"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imgferry");
        // Wait until the temporary file exists: the copy has started.
        let start = Instant::now();
        while !names_in(d).iter().any(|n| n.ends_with(".imgferry-tmp")) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no temporary file appeared"
            );
            assert!(
                child.try_wait().expect("poll").is_none(),
                "convert ended before it started writing"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            child.try_wait().expect("poll").is_none(),
            "convert finished before the {name} could interrupt it; the test needs a slower job"
        );
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill -{name}");
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{name}: {stderr}");
        assert!(stderr.contains("error: interrupted"), "{name}: {stderr}");
        assert!(!dst.exists(), "{name}: DST was created");
        assert_eq!(names_in(d), vec!["src.raw".to_owned()], "{name}: leftovers");
    }
}

#[test]
fn a_new_destination_gets_0644_minus_the_umask_and_an_old_one_keeps_its_mode() {
    let dir = tempdir();
    let d = dir.path();
    let src = d.join("src.raw");
    std::fs::write(&src, random_bytes(1 << 20, 3)).expect("write source");
    for (umask, expected) in [("022", 0o644), ("027", 0o640), ("077", 0o600)] {
        for format in ["raw", "qcow2"] {
            let dst = d.join(format!("new-{umask}.{format}"));
            let script = format!(
                "umask {umask} && exec '{bin}' convert '{src}' '{dst}' -O {format}",
                bin = env!("CARGO_BIN_EXE_imgferry"),
                src = path_str(&src),
                dst = path_str(&dst),
            );
            run_ok(std::process::Command::new("sh").args(["-c", &script]));
            assert_eq!(mode(&dst), expected, "umask {umask}, -O {format}");
            assert_same_content(&src, &dst);
        }
    }
    // qemu-img creates with the same mode: the oracle agrees.
    let peer = d.join("peer.raw");
    let script = format!(
        "umask 027 && exec qemu-img convert -O raw '{}' '{}'",
        path_str(&src),
        path_str(&peer)
    );
    run_ok(std::process::Command::new("sh").args(["-c", &script]));
    assert_eq!(mode(&peer), 0o640);
    // An existing destination keeps its bits whatever the umask.
    let existing = d.join("existing.raw");
    std::fs::write(&existing, b"old").expect("write");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    run_ok(
        imgferry()
            .arg("convert")
            .arg(&src)
            .arg(&existing)
            .args(["-O", "raw"]),
    );
    assert_eq!(mode(&existing), 0o600);
    assert_same_content(&src, &existing);
}
