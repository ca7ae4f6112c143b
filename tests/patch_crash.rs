//! `disk::patch` when things go wrong: a crash (the test hook failing a write, as if the
//! process died) after any number of writes must leave an image `qemu-img check` finds
//! free of corruption (leaked clusters allowed), each guest cluster holding its old or
//! its new content, snapshots untouched, and a second run must finish the job. Hostile
//! (mutated) images must never panic, and anything refused must be left unchanged.

mod common;
mod patch_support;
mod qcow2_bytes;

use std::path::{Path, PathBuf};

use common::*;
use imgferry::disk::patch::{apply, apply_with, PatchOptions};
use patch_support::*;
use qcow2_bytes::{metadata_regions, mutate, next, qemu_check};

const MIB: u64 = 1 << 20;

/// How a crashed or patched image may look to `qemu-img check`: no corruption, no
/// errors; leaks allowed only when `leaks_allowed`.
fn assert_no_corruption(image: &Path, leaks_allowed: bool, context: &str) {
    let (code, report) = qemu_check(image);
    let count = |key: &str| report.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(
        code == 0 || (leaks_allowed && code == 3),
        "{context}: qemu-img check exit {code}: {report}"
    );
    assert_eq!(
        (count("corruptions"), count("check-errors")),
        (0, 0),
        "{context}: {report}"
    );
}

struct Sweep<'a> {
    original: &'a Path,
    writes: &'a [Write],
    snapshots: &'a [&'a str],
    cluster_size: usize,
}

impl Sweep<'_> {
    /// Crashes after each write in `points(total)` and judges the result.
    fn run(&self, points: impl Fn(u64) -> Vec<u64>) {
        let dir = self.original.parent().unwrap();
        let old = dir.join("old.raw");
        raw_of(self.original, None, &old);
        let expected = expected_raw(self.original, self.writes);
        let snapshot_raws: Vec<(&str, PathBuf)> = self
            .snapshots
            .iter()
            .map(|&name| {
                let raw = dir.join(format!("{name}.raw"));
                raw_of(self.original, Some(name), &raw);
                (name, raw)
            })
            .collect();
        let full = dir.join("full.qcow2");
        std::fs::copy(self.original, &full).unwrap();
        let total = apply(&full, self.writes)
            .expect("uninterrupted patch")
            .writes;
        assert_patched(&full, &expected);
        let points = points(total);
        assert!(!points.is_empty());
        for n in points {
            let context = format!("crash after {n} of {total} writes");
            let crashed = dir.join("crashed.qcow2");
            std::fs::copy(self.original, &crashed).unwrap();
            let options = PatchOptions {
                stop_after_writes: Some(n),
            };
            assert!(
                apply_with(&crashed, self.writes, &options).is_err(),
                "{context}"
            );
            assert_no_corruption(&crashed, true, &context);
            let actual = dir.join("crashed.raw");
            raw_of(&crashed, None, &actual);
            let torn = torn_clusters(&actual, &old, &expected, self.cluster_size);
            assert!(
                torn.is_empty(),
                "{context}: clusters neither old nor new: {torn:?}"
            );
            for (name, before) in &snapshot_raws {
                let after = dir.join(format!("{name}.crashed.raw"));
                raw_of(&crashed, Some(name), &after);
                assert_same_content(before, &after);
            }
            apply(&crashed, self.writes).unwrap_or_else(|e| panic!("{context}: re-run: {e:?}"));
            assert_same_content(&crashed, &expected);
            assert_no_corruption(&crashed, true, &format!("{context}, re-run"));
        }
    }
}

fn every_write(total: u64) -> Vec<u64> {
    (0..total).collect()
}

/// 4 KiB clusters keep the images small (the sweep converts each crashed image to raw)
/// while one L2 table maps only 2 MiB, so an 8 MiB disk has four.
#[test]
fn a_crash_at_any_write_leaves_old_or_new_clusters_with_snapshots() {
    let dir = tempdir();
    let io = [
        "write -c -P 0x11 0 8k", // compressed clusters 0 and 1
        "write -P 0x22 16k 8k",  // clusters 4 and 5
        "write -P 0x01 32k 4k",
        "write -z 32k 4k",     // preallocated zero cluster 8
        "write -P 0x33 3M 4k", // the second L2 table
    ];
    let image = qcow2(
        dir.path(),
        "snap.qcow2",
        "compat=1.1,cluster_size=4k",
        "8M",
        &io,
    );
    qemu_img(&["snapshot", "-c", "s1", path_str(&image)]);
    qemu_io("qcow2", &image, &["write -P 0x44 16k 4k"]); // cluster 4 private again
    let writes = vec![
        write(1000, 100, 1),            // compressed, shared
        write(16 * 1024 + 4090, 20, 2), // private 4 -> shared 5
        write(32 * 1024 + 9, 9, 3),     // shared preallocated zero
        write(3 * MIB + 5, 5, 4),       // shared L2 table, shared data
        write(6 * MIB - 100, 5000, 5),  // no L2 table yet, two clusters
    ];
    Sweep {
        original: &image,
        writes: &writes,
        snapshots: &["s1"],
        cluster_size: 4096,
    }
    .run(every_write);
}

#[test]
fn a_crash_at_any_write_leaves_old_or_new_clusters_v2() {
    let dir = tempdir();
    let io = ["write -c -P 0x11 0 8k", "write -P 0x22 16k 8k"];
    let image = qcow2(
        dir.path(),
        "v2.qcow2",
        "compat=0.10,cluster_size=4k",
        "8M",
        &io,
    );
    let writes = vec![
        write(1000, 100, 1),
        write(16 * 1024 + 4090, 20, 2),
        write(40 * 1024, 3, 3),
        write(5 * MIB, 5, 4),
    ];
    Sweep {
        original: &image,
        writes: &writes,
        snapshots: &[],
        cluster_size: 4096,
    }
    .run(every_write);
}

#[test]
fn a_crash_while_the_refcount_table_grows() {
    let dir = tempdir();
    let image = qcow2(
        dir.path(),
        "grow.qcow2",
        "cluster_size=512,refcount_bits=64",
        "8M",
        &["write -P 7 0 4k"],
    );
    let writes: Vec<Write> = (0..4)
        .map(|i| write(i * 2 * MIB + 77, 600_000, i))
        .collect();
    // Thousands of data writes come first; every metadata write is in the last stretch.
    Sweep {
        original: &image,
        writes: &writes,
        snapshots: &[],
        cluster_size: 512,
    }
    .run(|total| {
        [0, total / 2]
            .into_iter()
            .chain(total.saturating_sub(24)..total)
            .collect()
    });
}

#[test]
fn hostile_images_never_panic_and_refusals_change_nothing() {
    let dir = tempdir();
    let io = [
        "write -c -P 0x11 0 8k",
        "write -P 0x22 16k 8k",
        "write -P 1 32k 4k",
        "write -z 32k 4k",
    ];
    let original = qcow2(
        dir.path(),
        "base.qcow2",
        "compat=1.1,cluster_size=4k",
        "8M",
        &io,
    );
    qemu_img(&["snapshot", "-c", "s1", path_str(&original)]);
    let regions = metadata_regions(&original);
    let pristine = std::fs::read(&original).unwrap();
    let writes = vec![
        write(1000, 100, 1),
        write(15 * 1024, 9000, 2),
        write(5 * MIB, 10, 3),
    ];
    let image = dir.path().join("mutated.qcow2");
    let mut state = 0x5eed_u64;
    let mut applied = 0;
    for round in 0..100 {
        let seed = next(&mut state);
        let mut bytes = pristine.clone();
        let mut rng = seed;
        mutate(&mut bytes, &regions, &mut rng);
        std::fs::write(&image, &bytes).unwrap();
        let (code, _) = qemu_check(&image);
        let result = std::panic::catch_unwind(|| apply(&image, &writes));
        let outcome = result.unwrap_or_else(|_| panic!("round {round} (seed {seed:#x}) panicked"));
        match outcome {
            Ok(_) => {
                applied += 1;
                if code == 0 {
                    let context = format!("round {round} (seed {seed:#x}), applied");
                    assert_no_corruption(&image, false, &context);
                }
            }
            Err(_) => assert!(
                std::fs::read(&image).unwrap() == bytes,
                "round {round} (seed {seed:#x}): refused but the file changed"
            ),
        }
    }
    assert!(
        applied > 0,
        "no mutated image was accepted: the test proves nothing"
    );
}
