//! `imgferry amend` against qemu-img: every amended image must show the requested compat
//! in `qemu-img info`, pass `qemu-img check` with no errors and no leaks, and compare
//! identical (`qemu-img compare`, and snapshot by snapshot) with a copy made before.
//! Refusals must leave the file byte for byte unchanged, and a crash at any write must
//! leave an image qemu-img reads with the same content.

mod common;
mod qcow2_bytes;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use qcow2_bytes::*;
use serde_json::Value;

fn create(dir: &Path, name: &str, options: &str, size: &str, io: &[&str]) -> PathBuf {
    let file = path_in(dir, name);
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if !options.is_empty() {
        args.extend(["-o", options]);
    }
    args.extend([path_str(&file), size]);
    qemu_img(&args);
    if !io.is_empty() {
        qemu_io("qcow2", &file, io);
    }
    file
}

fn copy_of(file: &Path) -> PathBuf {
    let copy = file.with_extension("before");
    std::fs::copy(file, &copy).unwrap();
    copy
}

fn amend(file: &Path, extra: &[&str]) -> Output {
    run(imgferry()
        .args(["--json", "amend", path_str(file)])
        .args(extra))
}

/// Runs a successful amend and returns its result line.
fn amend_ok(file: &Path, extra: &[&str]) -> Value {
    let out = amend(file, extra);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "amend {extra:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("no result line: {stdout}"))
}

fn compat_of(file: &Path) -> String {
    qemu_img_info(file)["format-specific"]["data"]["compat"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The full oracle: compat, clean check (theirs and ours), identical content, and the
/// same content in every snapshot.
fn assert_amended(file: &Path, before: &Path, compat: &str) {
    assert_eq!(compat_of(file), compat, "{}", file.display());
    assert_qemu_check_clean(file);
    let ours = run(imgferry().args(["check", path_str(file)]));
    assert_eq!(
        ours.status.code(),
        Some(0),
        "imgferry check {}",
        file.display()
    );
    assert_same_content(before, file);
    for name in snapshot_names(before) {
        let (a, b) = (
            before.with_extension("snap-a"),
            file.with_extension("snap-b"),
        );
        for (image, raw) in [(before, &a), (file, &b)] {
            let option = format!("snapshot.name={name}");
            qemu_img(&[
                "convert",
                "-l",
                &option,
                "-O",
                "raw",
                path_str(image),
                path_str(raw),
            ]);
        }
        assert_same_content(&a, &b);
    }
}

fn snapshot_names(file: &Path) -> Vec<String> {
    qemu_img_info(file)["snapshots"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts amend refuses with exit 1, names `feature`, and leaves the file unchanged.
fn assert_refused(file: &Path, extra: &[&str], feature: &str) {
    let bytes = std::fs::read(file).unwrap();
    let out = run(imgferry().args(["amend", path_str(file)]).args(extra));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
    assert!(
        stderr.contains(feature),
        "{}: expected {feature:?} in: {stderr}",
        file.display()
    );
    assert!(
        std::fs::read(file).unwrap() == bytes,
        "{} changed",
        file.display()
    );
}

#[test]
fn zero_clusters_plain_and_preallocated_become_unallocated_in_v2() {
    let dir = tempdir();
    // `write -z` over data without -u keeps the host cluster: a preallocated zero cluster.
    let file = create(
        dir.path(),
        "zeros.qcow2",
        "",
        "64M",
        &[
            "write -P 1 0 1M",
            "write -z 2M 1M",
            "write -P 2 4M 256k",
            "write -z 4M 128k",
        ],
    );
    let map = qemu_img(&["map", "--output=json", path_str(&file)]);
    assert!(
        map.contains("\"zero\": true, \"data\": false, \"compressed\": false, \"offset\""),
        "{map}"
    );
    let before = copy_of(&file);
    let result = amend_ok(&file, &["--compat", "0.10"]);
    assert_eq!(result["from"], "1.1");
    assert_eq!(result["to"], "0.10");
    assert_eq!(result["zero_clusters_expanded"], 16 + 2);
    assert_eq!(result["preallocated_clusters_freed"], 2);
    assert_amended(&file, &before, "0.10");
}

#[test]
fn v2_upgrades_to_v3_keeping_the_backing_file_name() {
    let dir = tempdir();
    let base = create(
        dir.path(),
        "base.qcow2",
        "compat=0.10",
        "16M",
        &["write -P 4 0 2M"],
    );
    let plain = create(
        dir.path(),
        "v2.qcow2",
        "compat=0.10",
        "16M",
        &["write -P 1 1M 1M"],
    );
    let before = copy_of(&plain);
    amend_ok(&plain, &["--compat", "1.1"]);
    assert_amended(&plain, &before, "1.1");
    let info = qemu_img_info(&plain);
    assert_eq!(info["format-specific"]["data"]["refcount-bits"], 16);

    let overlay = path_in(dir.path(), "overlay.qcow2");
    let backing = format!(
        "backing_file={},backing_fmt=qcow2,compat=0.10",
        path_str(&base)
    );
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &backing,
        path_str(&overlay),
    ]);
    qemu_io("qcow2", &overlay, &["write -P 6 1M 64k"]);
    let before = copy_of(&overlay);
    amend_ok(&overlay, &["--compat", "1.1"]);
    assert_eq!(compat_of(&overlay), "1.1");
    assert_eq!(qemu_img_info(&overlay)["backing-filename"], path_str(&base));
    assert_qemu_check_clean(&overlay);
    assert_same_content(&before, &overlay);
}

#[test]
fn features_v2_cannot_hold_are_refused_by_name() {
    let dir = tempdir();
    let d = dir.path();
    let data = ["write -P 1 0 1M", "write -z 1M 64k"];
    let wide = create(d, "rc64.qcow2", "refcount_bits=64", "16M", &data);
    assert_refused(&wide, &["--compat", "0.10"], "refcount_bits=64");
    let ext = create(d, "ext.qcow2", "extended_l2=on", "16M", &data);
    assert_refused(&ext, &["--compat", "0.10"], "extended L2");
    let zstd = create(
        d,
        "zstd-c.qcow2",
        "compression_type=zstd",
        "16M",
        &["write -c -P 3 0 64k"],
    );
    assert_refused(&zstd, &["--compat", "0.10"], "zstd");

    let base = create(d, "base.qcow2", "", "16M", &["write -P 4 0 2M"]);
    let overlay = path_in(d, "overlay.qcow2");
    let backing = format!("backing_file={},backing_fmt=qcow2", path_str(&base));
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &backing,
        path_str(&overlay),
    ]);
    qemu_io("qcow2", &overlay, &["write -z 0 64k"]);
    assert_refused(
        &overlay,
        &["--compat", "0.10"],
        "backing file and zero clusters",
    );

    let dirty = create(d, "dirty.qcow2", "", "16M", &data);
    write_be(&dirty, 72, read_be(&dirty, 72, 8) | 1, 8); // incompatible bit 0: dirty
    assert_refused(&dirty, &["--compat", "0.10"], "dirty");

    let damaged = create(d, "damaged.qcow2", "", "16M", &data);
    let t = tables(&damaged);
    let data_cluster = read_be(&damaged, t.first_l2_offset, 8) & OFFSET_MASK;
    set_refcount16(&damaged, data_cluster / t.cluster_size, 0);
    assert_refused(&damaged, &["--compat", "0.10"], "check found 2 corruptions");

    let raw = path_in(d, "disk.raw");
    std::fs::write(&raw, random_bytes(1 << 20, 5)).unwrap();
    assert_refused(&raw, &["--compat", "0.10"], "raw image");
}

#[test]
fn zstd_without_compressed_clusters_downgrades_to_zlib() {
    let dir = tempdir();
    let file = create(
        dir.path(),
        "zstd.qcow2",
        "compression_type=zstd",
        "16M",
        &["write -P 1 0 1M"],
    );
    assert_eq!(
        qemu_img_info(&file)["format-specific"]["data"]["compression-type"],
        "zstd"
    );
    let before = copy_of(&file);
    amend_ok(&file, &["--compat", "0.10"]);
    assert_amended(&file, &before, "0.10");
    assert_eq!(
        qemu_img_info(&file)["format-specific"]["data"]["compression-type"],
        "zlib"
    );
}

#[test]
fn persistent_bitmaps_need_drop_bitmaps_and_leave_no_leak() {
    let dir = tempdir();
    let file = create(
        dir.path(),
        "bitmap.qcow2",
        "",
        "64M",
        &["write -P 1 0 3M", "write -z 4M 64k"],
    );
    qemu_img(&["bitmap", "--add", path_str(&file), "b0"]);
    qemu_img(&["bitmap", "--add", "-g", "64k", path_str(&file), "b1"]);
    assert_refused(&file, &["--compat", "0.10"], "--drop-bitmaps");
    let before = copy_of(&file);
    let result = amend_ok(&file, &["--compat", "0.10", "--drop-bitmaps"]);
    assert_eq!(result["bitmaps_dropped"], serde_json::json!(["b0", "b1"]));
    assert!(
        result["bitmap_clusters_freed"].as_u64().unwrap_or(0) >= 3,
        "{result}"
    );
    assert_amended(&file, &before, "0.10");
    let info = qemu_img_info(&file);
    assert!(
        info["format-specific"]["data"].get("bitmaps").is_none(),
        "{info}"
    );
}

#[test]
fn the_same_compat_is_a_no_op() {
    let dir = tempdir();
    for (compat, options) in [("1.1", ""), ("0.10", "compat=0.10")] {
        let file = create(
            dir.path(),
            &format!("{compat}.qcow2"),
            options,
            "16M",
            &["write -P 1 0 1M"],
        );
        let bytes = std::fs::read(&file).unwrap();
        let out = run_ok(imgferry().args(["amend", path_str(&file), "--compat", compat]));
        assert!(
            out.contains(&format!("already compat {compat}; nothing to do")),
            "{out}"
        );
        assert!(std::fs::read(&file).unwrap() == bytes);
    }
}

/// 4 KiB clusters so one 16 MiB image has several L2 tables: after the snapshot, the
/// table of guest 0..2M is copied on write, while the tables holding the zero clusters
/// at 4M and the preallocated ones at 6M stay shared by the active image and the
/// snapshot (refcount 2, including the preallocated data clusters).
fn image_with_snapshot(dir: &Path, name: &str) -> PathBuf {
    let file = create(
        dir,
        name,
        "cluster_size=4k",
        "16M",
        &[
            "write -P 1 0 1M",
            "write -z 4M 64k",
            "write -P 5 6M 64k",
            "write -z 6M 32k",
        ],
    );
    qemu_img(&["snapshot", "-c", "s1", path_str(&file)]);
    qemu_io("qcow2", &file, &["write -P 2 0 64k", "write -z 128k 16k"]);
    file
}

#[test]
fn snapshots_keep_their_content_and_shared_preallocated_clusters_are_freed() {
    let dir = tempdir();
    let file = image_with_snapshot(dir.path(), "snap.qcow2");
    let before = copy_of(&file);
    let result = amend_ok(&file, &["--compat", "0.10"]);
    assert_eq!(result["preallocated_clusters_freed"], 8, "{result}");
    assert_amended(&file, &before, "0.10");
    assert_eq!(snapshot_names(&file), vec!["s1".to_owned()]);
}

/// Counts of `qemu-img check` that must be zero after a crash (leaks may remain).
fn assert_readable_with_same_content(file: &Path, before: &Path, step: u64) {
    let (code, report) = qemu_check(file);
    assert!(
        code == 0 || code == 3,
        "after {step} writes: qemu-img check exit {code}: {report}"
    );
    assert_eq!(
        report["corruptions"].as_u64().unwrap_or(0),
        0,
        "after {step} writes: {report}"
    );
    assert_same_content(before, file);
    for name in snapshot_names(before) {
        let (a, b) = (
            before.with_extension("snap-a"),
            file.with_extension("snap-b"),
        );
        for (image, raw) in [(before, &a), (file, &b)] {
            let option = format!("snapshot.name={name}");
            qemu_img(&[
                "convert",
                "-l",
                &option,
                "-O",
                "raw",
                path_str(image),
                path_str(raw),
            ]);
        }
        assert_same_content(&a, &b);
    }
}

#[test]
fn a_crash_at_any_write_leaves_a_readable_image_with_the_same_content() {
    let dir = tempdir();
    let original = image_with_snapshot(dir.path(), "crash.qcow2");
    qemu_img(&["bitmap", "--add", path_str(&original), "b0"]);
    let before = copy_of(&original);
    let args = ["--compat", "0.10", "--drop-bitmaps"];
    let full = path_in(dir.path(), "full.qcow2");
    std::fs::copy(&before, &full).unwrap();
    let total = amend_ok(&full, &args)["writes"].as_u64().unwrap_or(0);
    assert!(
        total >= 5,
        "expected L2, refcount, header and bitmap writes, got {total}"
    );
    for step in 0..total {
        let file = path_in(dir.path(), &format!("step{step}.qcow2"));
        std::fs::copy(&before, &file).unwrap();
        let allowed = step.to_string();
        let out = amend(
            &file,
            &[&args[..], &["--test-stop-after-writes", &allowed]].concat(),
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "stop after {step} of {total} writes"
        );
        assert_readable_with_same_content(&file, &before, step);
        // Running amend again finishes the job.
        amend_ok(&file, &args);
        assert_eq!(compat_of(&file), "0.10");
        assert_readable_with_same_content(&file, &before, step);
    }
}

/// The whole guest content as our reader sees it, or `None` if it cannot read it.
fn guest_bytes(file: &Path) -> Option<Vec<u8>> {
    use imgferry::disk::qcow2::Qcow2Image;
    use imgferry::disk::{LocalFile, VirtualDisk};
    let source = LocalFile::open(file).ok()?;
    let image = Qcow2Image::open(std::sync::Arc::new(source), file).ok()?;
    let mut bytes = vec![0u8; usize::try_from(image.virtual_size()).ok()?];
    image.read_at(&mut bytes, 0).ok()?;
    Some(bytes)
}

#[test]
fn amend_on_mutated_images_refuses_or_keeps_content_and_consistency() {
    use imgferry::disk::qcow2::amend::{amend, AmendOptions, Compat};
    use imgferry::disk::qcow2::check::{check_file, CheckedImage};
    use imgferry::report::SilentReporter;

    let dir = tempdir();
    let file = image_with_snapshot(dir.path(), "seed.qcow2");
    qemu_img(&["bitmap", "--add", path_str(&file), "b0"]);
    let seed = std::fs::read(&file).unwrap();
    let regions = metadata_regions(&file);
    let options = AmendOptions {
        compat: Compat::V0_10,
        drop_bitmaps: true,
        stop_after_writes: None,
    };
    // Each amend that gets to write syncs several times; keep the rounds few.
    const ROUNDS: u32 = 100;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut amended = 0;
    for round in 0..ROUNDS {
        let mut bytes = seed.clone();
        mutate(&mut bytes, &regions, &mut state);
        let image = path_in(dir.path(), "mutated.qcow2");
        std::fs::write(&image, &bytes).unwrap();
        let content = guest_bytes(&image);
        let result = std::panic::catch_unwind(|| amend(&image, &options, &SilentReporter));
        let Ok(result) = result else {
            panic!("amend panicked on mutation round {round}");
        };
        if result.is_err() {
            continue;
        }
        amended += 1;
        let Ok(CheckedImage::Qcow2(report)) = check_file(&image) else {
            panic!("round {round}: the amended image cannot be checked");
        };
        assert_eq!(
            report.corruptions + report.check_errors,
            0,
            "round {round}: {report:?}"
        );
        if let Some(content) = content {
            assert!(
                guest_bytes(&image) == Some(content),
                "round {round}: content changed"
            );
        }
    }
    assert!(
        amended > ROUNDS / 10,
        "only {amended} of {ROUNDS} mutated images were amended"
    );
}

#[test]
fn an_image_in_use_by_qemu_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempdir();
    let file = create(dir.path(), "busy.qcow2", "", "16M", &["write -z 0 64k"]);
    let mut holder = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "sleep 600000", path_str(&file)])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start qemu-io");
    // Wait (up to 30 s: a loaded machine starts qemu-io slowly) until it holds its locks
    // on the file (listed in /proc/locks by inode). It is killed below, long before its
    // sleep of 10 minutes ends.
    let inode = format!(":{} ", std::fs::metadata(&file).unwrap().ino());
    let locked = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::read_to_string("/proc/locks").is_ok_and(|locks| locks.contains(&inode))
    });
    let result =
        locked.then(|| assert_refused(&file, &["--compat", "0.10"], "in use by another process"));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(result.is_some(), "qemu-io never locked {}", file.display());
    amend_ok(&file, &["--compat", "0.10"]);
}

#[test]
fn zlib_compressed_clusters_survive_a_downgrade() {
    let dir = tempdir();
    let file = create(
        dir.path(),
        "zlib.qcow2",
        "",
        "16M",
        &[
            "write -c -P 7 0 64k",
            "write -c -P 8 1M 128k",
            "write -z 4M 64k",
        ],
    );
    let before = copy_of(&file);
    let result = amend_ok(&file, &["--compat", "0.10"]);
    assert_eq!(result["zero_clusters_expanded"], 1);
    assert_amended(&file, &before, "0.10");
    let map = qemu_img(&["map", "--output=json", path_str(&file)]);
    assert!(map.contains("\"compressed\": true"), "{map}");
}

/// `write -z` over data a snapshot shares leaves zero entries whose host clusters have
/// refcount 2. qemu-img 10 `amend -o compat=0.10` turns them into data clusters with the
/// COPIED flag set, which its own check then reports as corruption; amend must not.
#[test]
fn zeroed_clusters_shared_with_a_snapshot_stay_consistent() {
    let dir = tempdir();
    let file = create(dir.path(), "shared.qcow2", "", "16M", &["write -P 1 0 1M"]);
    qemu_img(&["snapshot", "-c", "s1", path_str(&file)]);
    qemu_io("qcow2", &file, &["write -z 0 256k"]);
    let before = copy_of(&file);
    let result = amend_ok(&file, &["--compat", "0.10"]);
    assert_eq!(result["zero_clusters_expanded"], 4);
    assert_eq!(result["preallocated_clusters_freed"], 0, "still used by s1");
    assert_amended(&file, &before, "0.10");
}
