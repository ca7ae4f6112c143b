//! `imgferry check` against `qemu-img check`: clean images of every kind, and images
//! damaged byte by byte, must get the same verdict, exit-code meaning and counts.

mod common;
mod qcow2_bytes;

use std::path::{Path, PathBuf};

use common::*;
use qcow2_bytes::*;
use serde_json::Value;

/// Our exit code for each of qemu-img check's.
fn expected_exit(qemu_exit: i32) -> i32 {
    match qemu_exit {
        0 => 0, // clean
        1 => 1, // check could not complete
        2 => 3, // corruption
        3 => 4, // leaks only
        other => panic!("unexpected qemu-img check exit code {other}"),
    }
}

/// Runs both checks, asserts they agree on the exit code and every count, and returns
/// our report.
fn assert_agrees_with_qemu(file: &Path) -> Value {
    let (qemu_exit, theirs) = qemu_check(file);
    let out = run(imgferry().args(["--json", "check", path_str(file)]));
    let ours: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}): {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.code(),
        Some(expected_exit(qemu_exit)),
        "{}: ours {ours}\ntheirs {theirs}",
        file.display()
    );
    let pairs = [
        ("corruptions", "corruptions"),
        ("leaks", "leaks"),
        ("check_errors", "check-errors"),
        ("image_end_offset", "image-end-offset"),
        ("total_clusters", "total-clusters"),
        ("allocated_clusters", "allocated-clusters"),
        ("fragmented_clusters", "fragmented-clusters"),
        ("compressed_clusters", "compressed-clusters"),
    ];
    for (our_key, their_key) in pairs {
        // qemu-img leaves out counts that are zero.
        let expected = theirs.get(their_key).and_then(Value::as_u64).unwrap_or(0);
        assert_eq!(
            ours[our_key].as_u64(),
            Some(expected),
            "{}: {our_key}\nours {ours}\ntheirs {theirs}",
            file.display()
        );
    }
    ours
}

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

#[test]
fn clean_images_of_every_kind_agree_with_qemu_img() {
    let dir = tempdir();
    let d = dir.path();
    let data = ["write -P 1 0 3M", "write -P 2 5M 64k"];
    let mut images = vec![
        create(d, "v2.qcow2", "compat=0.10", "64M", &data),
        create(d, "v3.qcow2", "", "64M", &data),
        create(
            d,
            "zero.qcow2",
            "",
            "64M",
            &["write -P 1 0 1M", "write -z 2M 1M", "write -z 512k 128k"],
        ),
        create(d, "big-clusters.qcow2", "cluster_size=2M", "33M", &data),
        create(d, "odd-size.qcow2", "cluster_size=4k", "10000k", &data),
        create(d, "ext-l2.qcow2", "extended_l2=on", "64M", &data),
        create(d, "empty.qcow2", "", "0", &[]),
    ];
    for bits in ["1", "8", "64"] {
        let name = format!("refcount{bits}.qcow2");
        let options = format!("refcount_bits={bits},cluster_size=4k");
        images.push(create(d, &name, &options, "16M", &data));
    }
    let snap = create(d, "snapshot.qcow2", "", "64M", &data);
    qemu_img(&["snapshot", "-c", "s1", path_str(&snap)]);
    qemu_io("qcow2", &snap, &["write -P 3 0 1M", "write -z 2M 64k"]);
    images.push(snap);
    let v2_snap = create(d, "v2-snapshot.qcow2", "compat=0.10", "64M", &data);
    qemu_img(&["snapshot", "-c", "s1", path_str(&v2_snap)]);
    qemu_io("qcow2", &v2_snap, &["write -P 4 0 64k"]);
    images.push(v2_snap);
    let lazy = create(d, "lazy.qcow2", "lazy_refcounts=on", "64M", &data);
    images.push(lazy);
    let bitmap = create(d, "bitmap.qcow2", "", "64M", &data);
    qemu_img(&["bitmap", "--add", path_str(&bitmap), "b0"]);
    qemu_img(&["bitmap", "--add", "-g", "1M", path_str(&bitmap), "b1"]);
    images.push(bitmap);
    let raw = path_in(d, "src.raw");
    std::fs::write(&raw, random_bytes(3 << 20, 11)).unwrap();
    let compressed = path_in(d, "compressed.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-O",
        "qcow2",
        path_str(&raw),
        path_str(&compressed),
    ]);
    images.push(compressed);

    for image in &images {
        let ours = assert_agrees_with_qemu(image);
        assert_eq!(ours["verdict"], "clean", "{}: {ours}", image.display());
        assert_eq!(ours["problems"].as_array().map(Vec::len), Some(0));
    }
}

/// A v3 image with 1 MiB of data at 0 and 64 KiB at 2 MiB, 64 KiB clusters.
fn base_image(dir: &Path, name: &str) -> PathBuf {
    create(
        dir,
        name,
        "",
        "16M",
        &["write -P 1 0 1M", "write -P 2 2M 64k"],
    )
}

/// The host offset of L2 entry `index` of the first L2 table.
fn l2_entry_offset(file: &Path, index: u64) -> u64 {
    tables(file).first_l2_offset + 8 * index
}

/// Asserts our report lists a problem of `severity` containing `needle`.
fn assert_problem(report: &Value, severity: &str, needle: &str) {
    let found = report["problems"].as_array().is_some_and(|problems| {
        problems.iter().any(|p| {
            p["severity"] == severity && p["message"].as_str().is_some_and(|m| m.contains(needle))
        })
    });
    assert!(
        found,
        "no {severity} problem mentioning {needle:?}: {report}"
    );
}

#[test]
fn damaged_images_get_qemu_img_verdicts_and_counts() {
    let dir = tempdir();
    let d = dir.path();

    // A used data cluster whose refcount is 0: corruption (plus a COPIED error).
    let zeroed = base_image(d, "zeroed.qcow2");
    let data = read_be(&zeroed, l2_entry_offset(&zeroed, 0), 8) & OFFSET_MASK;
    set_refcount16(&zeroed, data / 65536, 0);
    let report = assert_agrees_with_qemu(&zeroed);
    assert_eq!(report["verdict"], "corrupt");
    assert_problem(&report, "corruption", "refcount=0 reference=1");

    // An unreferenced cluster appended with refcount 1: a leak only.
    let appended = base_image(d, "appended.qcow2");
    let end = std::fs::metadata(&appended).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&appended)
        .unwrap();
    file.set_len(end + 65536).unwrap();
    set_refcount16(&appended, end / 65536, 1);
    let report = assert_agrees_with_qemu(&appended);
    assert_eq!(report["verdict"], "leaks");
    assert_eq!(report["leaks"], 1);

    // A freed cluster inside the file whose refcount is bumped: a leak.
    let bumped = base_image(d, "bumped.qcow2");
    let freed = read_be(&bumped, l2_entry_offset(&bumped, 3), 8) & OFFSET_MASK;
    qemu_io("qcow2", &bumped, &["discard 192k 64k"]);
    let entry = read_be(&bumped, l2_entry_offset(&bumped, 3), 8);
    assert_eq!(entry & OFFSET_MASK, 0, "cluster still mapped: {entry:#x}");
    set_refcount16(&bumped, freed / 65536, 1);
    let report = assert_agrees_with_qemu(&bumped);
    assert_eq!(report["verdict"], "leaks");

    // An L2 entry pointing far past the end of the file.
    let past_eof = base_image(d, "past-eof.qcow2");
    write_be(
        &past_eof,
        l2_entry_offset(&past_eof, 0),
        (1 << 63) | (1 << 32),
        8,
    );
    let report = assert_agrees_with_qemu(&past_eof);
    assert_problem(&report, "corruption", "past the end of the file");

    // The COPIED flag cleared on a cluster whose refcount is 1.
    let copied = base_image(d, "copied.qcow2");
    let at = l2_entry_offset(&copied, 1);
    write_be(&copied, at, read_be(&copied, at, 8) & !(1 << 63), 8);
    let report = assert_agrees_with_qemu(&copied);
    assert_problem(&report, "corruption", "COPIED flag clear but refcount=1");

    // An L2 entry pointing at the L1 table: overlapping metadata.
    let overlap = base_image(d, "overlap.qcow2");
    let l1 = tables(&overlap).l1_offset;
    write_be(&overlap, l2_entry_offset(&overlap, 1), (1 << 63) | l1, 8);
    let report = assert_agrees_with_qemu(&overlap);
    assert_problem(
        &report,
        "corruption",
        "used as both an L1 table and guest data",
    );

    // Reserved bits in an L1 entry and in an L2 entry.
    let reserved = base_image(d, "reserved.qcow2");
    let l1 = tables(&reserved).l1_offset;
    write_be(&reserved, l1, read_be(&reserved, l1, 8) | 2, 8);
    let at = l2_entry_offset(&reserved, 2);
    write_be(&reserved, at, read_be(&reserved, at, 8) | (1 << 57), 8);
    let report = assert_agrees_with_qemu(&reserved);
    assert_eq!(report["corruptions"], 2);

    // An unaligned refcount block: its refcounts cannot be read, the check is incomplete.
    let unaligned = base_image(d, "unaligned-refblock.qcow2");
    let t = tables(&unaligned);
    write_be(&unaligned, t.reftable_offset, t.refblock_offset + 512, 8);
    let report = assert_agrees_with_qemu(&unaligned);
    assert_eq!(report["verdict"], "incomplete");
}

#[test]
fn a_zero_refcount_in_a_snapshot_only_cluster_is_found() {
    let dir = tempdir();
    let file = base_image(dir.path(), "snap.qcow2");
    qemu_img(&["snapshot", "-c", "s1", path_str(&file)]);
    // Overwrite guest cluster 0 so the old data cluster belongs to the snapshot only.
    let old = read_be(&file, l2_entry_offset(&file, 0), 8) & OFFSET_MASK;
    qemu_io("qcow2", &file, &["write -P 9 0 64k"]);
    assert_agrees_with_qemu(&file);
    set_refcount16(&file, old / 65536, 0);
    let report = assert_agrees_with_qemu(&file);
    assert_eq!(report["verdict"], "corrupt");
}

#[test]
fn raw_images_have_nothing_to_check() {
    let dir = tempdir();
    let raw = path_in(dir.path(), "disk.raw");
    std::fs::write(&raw, random_bytes(1 << 20, 3)).unwrap();
    let out = run_ok(imgferry().args(["check", path_str(&raw)]));
    assert!(
        out.contains("raw image: it has no metadata to check"),
        "{out}"
    );
    let json = run_ok(imgferry().args(["--json", "check", path_str(&raw)]));
    let value: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(value["checked"], false);
}

#[test]
fn human_output_reads_like_qemu_img() {
    let dir = tempdir();
    let file = base_image(dir.path(), "human.qcow2");
    let out = run_ok(imgferry().args(["check", path_str(&file)]));
    assert!(
        out.starts_with("No errors were found on the image.\n"),
        "{out}"
    );
    assert!(out.contains("17/256 = 6.64% allocated"), "{out}");
    let end = std::fs::metadata(&file).unwrap().len();
    file_set_len(&file, end + 65536);
    set_refcount16(&file, end / 65536, 1);
    let out = run(imgferry().args(["check", path_str(&file)]));
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 leaked clusters were found on the image."),
        "{text}"
    );
}

fn file_set_len(file: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|f| f.set_len(len))
        .unwrap();
}

#[test]
fn mutated_metadata_never_panics_the_check() {
    use imgferry::disk::qcow2::check::check_qcow2;
    use imgferry::disk::MemorySource;

    let dir = tempdir();
    // Small clusters and little data, so most of the file is metadata.
    let file = create(
        dir.path(),
        "seed.qcow2",
        "cluster_size=4k",
        "16M",
        &["write -P 1 0 64k", "write -z 1M 64k", "write -c -P 2 2M 4k"],
    );
    qemu_img(&["snapshot", "-c", "s1", path_str(&file)]);
    qemu_io("qcow2", &file, &["write -P 3 0 8k", "write -z 8M 4k"]);
    qemu_img(&["bitmap", "--add", path_str(&file), "b0"]);
    let seed = std::fs::read(&file).unwrap();
    let regions = metadata_regions(&file);
    let clean = check_qcow2(&MemorySource::new(seed.clone(), "seed"), Path::new("seed")).unwrap();
    assert_eq!(
        clean.verdict(),
        imgferry::disk::qcow2::check::Verdict::Clean
    );
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut found = 0;
    for round in 0..3000 {
        let mut bytes = seed.clone();
        mutate(&mut bytes, &regions, &mut state);
        let name = format!("round {round}");
        let result = std::panic::catch_unwind(|| {
            check_qcow2(&MemorySource::new(bytes, name.clone()), Path::new(&name))
        });
        match result {
            Ok(Ok(report)) => {
                found += u64::from(report.verdict() != imgferry::disk::qcow2::check::Verdict::Clean)
            }
            Ok(Err(_)) => found += 1,
            Err(_) => panic!("check panicked on mutation round {round}"),
        }
    }
    // Many mutations land in metadata in use and must be noticed.
    assert!(found > 1200, "only {found} of 3000 mutations were noticed");
}

#[test]
fn a_file_too_large_to_check_is_refused_clearly() {
    let dir = tempdir();
    // 512-byte clusters: a 40 GiB (sparse) file has 80 Mi clusters, over the 64 Mi limit.
    let file = create(dir.path(), "huge.qcow2", "cluster_size=512", "16M", &[]);
    file_set_len(&file, 40 << 30);
    let out = run(imgferry().args(["check", path_str(&file)]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("would need too much memory"), "{stderr}");
}

#[test]
fn snapshot_tables_are_judged_like_qemu_img() {
    let dir = tempdir();
    let file = base_image(dir.path(), "snaps.qcow2");
    qemu_img(&["snapshot", "-c", "s1", path_str(&file)]);
    let table = read_be(&file, 64, 8);
    // Extra data running past the end of the file (the table is the file's last bytes)
    // reads as zeros, as in QEMU: no error.
    let past_eof = path_in(dir.path(), "past-eof.qcow2");
    std::fs::copy(&file, &past_eof).unwrap();
    write_be(&past_eof, table + 36, 1000, 4);
    assert_eq!(assert_agrees_with_qemu(&past_eof)["verdict"], "clean");
    // Extra data over QEMU's limit: neither tool can check the image (exit 1).
    let extra = path_in(dir.path(), "extra.qcow2");
    std::fs::copy(&file, &extra).unwrap();
    write_be(&extra, table + 36, 1 << 20, 4);
    let out = run(imgferry().args(["check", path_str(&extra)]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("extra data"), "{stderr}");
    assert_eq!(qemu_check(&extra).0, 1);
}

#[test]
fn a_malformed_bitmap_directory_is_reported_not_fatal() {
    let dir = tempdir();
    let file = base_image(dir.path(), "bitmap.qcow2");
    qemu_img(&["bitmap", "--add", path_str(&file), "b0"]);
    let (extension, _) = find_extension(&file, 0x2385_2875).expect("bitmaps extension");
    let directory = read_be(&file, extension + 16, 8);
    write_be(&file, directory + 18, 0, 2); // a name of 0 bytes
    let out = run(imgferry().args(["--json", "check", path_str(&file)]));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert_problem(
        &report,
        "corruption",
        "bitmap directory entry 0: name of 0 bytes",
    );
    // qemu-img refuses to open such an image at all.
    assert_eq!(qemu_check(&file).0, 1);
}

#[test]
fn the_fuzz_corpus_replays_through_check() {
    use imgferry::disk::fuzzing::qcow2_check;
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/qcow2_open_read");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| qcow2_check(&input));
        let Ok(completed) = outcome else {
            panic!("check panicked on {}", path.display());
        };
        checked += u32::from(completed);
    }
    assert!(
        checked >= 5,
        "only {checked} corpus inputs could be checked"
    );
}
