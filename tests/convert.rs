//! `imgferry convert` against qemu-img as the oracle: every output must compare equal
//! (`qemu-img compare`), check clean (`qemu-img check`), carry the requested compat and
//! cluster size (`qemu-img info`), and raw outputs must stay sparse.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Runs `imgferry convert SRC DST ARGS...`, which must succeed.
fn convert(src: &Path, dst: &Path, args: &[&str]) -> String {
    run_ok(imgferry().arg("convert").arg(src).arg(dst).args(args))
}

/// Runs `imgferry convert` expecting failure; returns (exit code, stderr).
fn convert_fails(src: &Path, dst: &Path, args: &[&str]) -> (i32, String) {
    let out = run(imgferry().arg("convert").arg(src).arg(dst).args(args));
    assert!(
        !out.status.success(),
        "convert {args:?} unexpectedly succeeded"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts `dst` is a clean qcow2 image with `src`'s content, the given compat and
/// cluster size.
fn assert_qcow2_copy(src: &Path, dst: &Path, compat: &str, cluster_size: u64) -> Value {
    assert_same_content(src, dst);
    assert_qcow2_check_clean(dst);
    let info = qemu_img_info(dst);
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["format-specific"]["data"]["compat"], compat, "{info}");
    assert_eq!(info["cluster-size"], cluster_size, "{info}");
    assert_eq!(
        info["format-specific"]["data"]["refcount-bits"], 16,
        "{info}"
    );
    info
}

fn assert_qcow2_check_clean(file: &Path) {
    assert_qemu_check_clean(file);
}

/// Asserts `dst` is a raw file with `src`'s content occupying at most `max_allocated`
/// bytes on disk.
fn assert_sparse_raw_copy(src: &Path, dst: &Path, max_allocated: u64) {
    assert_same_content(src, dst);
    assert_eq!(qemu_img_info(dst)["format"], "raw");
    let allocated = std::fs::metadata(dst).expect("stat").blocks() * 512;
    assert!(
        allocated <= max_allocated,
        "{} occupies {allocated} bytes, expected at most {max_allocated}",
        dst.display()
    );
}

/// Clusters `qemu-img map` reports as data in `file`.
fn mapped_data_bytes(file: &Path) -> u64 {
    let text = qemu_img(&["map", "--output=json", path_str(file)]);
    let map: Value = serde_json::from_str(&text).expect("map JSON");
    map.as_array()
        .expect("map array")
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| e["length"].as_u64().expect("length"))
        .sum()
}

/// A sparse raw file of `size` bytes with random data written at `(offset, len)`.
fn sparse_raw(dir: &Path, name: &str, size: u64, writes: &[(u64, usize)]) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("create raw");
    file.set_len(size).expect("size raw");
    for (i, &(offset, len)) in writes.iter().enumerate() {
        file.write_all_at(&random_bytes(len, 7 + i as u64), offset)
            .expect("write raw");
    }
    path
}

/// A qcow2 image built with qemu-img/qemu-io.
fn qcow2(dir: &Path, name: &str, options: &str, size: &str, io: &[&str]) -> PathBuf {
    let path = dir.join(name);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        options,
        path_str(&path),
        size,
    ]);
    if !io.is_empty() {
        qemu_io("qcow2", &path, io);
    }
    path
}

/// Names in `dir` other than `keep`.
fn other_files(dir: &Path, keep: &[&Path]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| !keep.contains(&p.as_path()))
        .map(|p| p.display().to_string())
        .collect()
}

const QEMU_IO_MIX: &[&str] = &[
    "write -P 0xab 0 1M",
    "write -P 0x5c 3M 64k",
    "write -z 5M 2M",
    "write -P 0x01 9M 4k",
    "write -P 0x77 31M 1M",
];

#[test]
fn sparse_raw_with_random_data_round_trips_through_qcow2_byte_identical() {
    let dir = tempdir();
    let d = dir.path();
    // Unaligned pieces, one with an explicit 4 KiB block of zeros inside data.
    let src = sparse_raw(
        d,
        "src.raw",
        48 << 20,
        &[(0, 1 << 20), (10 << 20, 300_000), (47 << 20, 65536)],
    );
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&src)
            .expect("open");
        file.write_all_at(&[0u8; 8192], 4096).expect("zero block");
    }
    let qcow = d.join("mid.qcow2");
    convert(&src, &qcow, &["-O", "qcow2"]);
    assert_qcow2_copy(&src, &qcow, "1.1", 65536);
    let back = d.join("back.raw");
    convert(&qcow, &back, &["-O", "raw"]);
    let data = (1 << 20) + 300_000 + 65536;
    assert_sparse_raw_copy(&src, &back, data + 3 * 4096);
    assert_eq!(
        std::fs::read(&src).expect("src"),
        std::fs::read(&back).expect("back")
    );
    // The zero block inside the first data range became a hole in the raw output.
    let raw_again = d.join("again.raw");
    convert(&src, &raw_again, &["-O", "raw"]);
    assert_sparse_raw_copy(&src, &raw_again, data - 8192 + 3 * 4096);
}

#[test]
fn qcow2_v2_and_v3_inputs_convert_to_every_output() {
    let dir = tempdir();
    let d = dir.path();
    let v2 = qcow2(
        d,
        "v2.qcow2",
        "compat=0.10",
        "32M",
        &[
            "write -P 0xab 0 1M",
            "write -P 0x5c 3M 64k",
            "write -P 0x77 31M 1M",
        ],
    );
    let v3 = qcow2(d, "v3.qcow2", "compat=1.1", "32M", QEMU_IO_MIX);
    for (name, src) in [("v2", &v2), ("v3", &v3)] {
        for compat in ["0.10", "1.1"] {
            let dst = d.join(format!("{name}-to-{compat}.qcow2"));
            convert(src, &dst, &["-O", "qcow2", "--compat", compat]);
            assert_qcow2_copy(src, &dst, compat, 65536);
            assert_eq!(
                mapped_data_bytes(&dst),
                (2 << 20) + 65536 + if name == "v3" { 4096 * 16 } else { 0 }
            );
        }
        let raw = d.join(format!("{name}.raw"));
        convert(src, &raw, &["-O", "raw"]);
        assert_sparse_raw_copy(src, &raw, (2 << 20) + 65536 + 4096 + 65536);
    }
}

#[test]
fn v3_zero_clusters_are_not_allocated_in_a_v2_copy() {
    let dir = tempdir();
    let d = dir.path();
    let src = qcow2(
        d,
        "zero.qcow2",
        "compat=1.1",
        "16M",
        &["write -P 0x42 0 4M", "write -z 1M 2M", "write -z 8M 4M"],
    );
    let dst = d.join("v2.qcow2");
    convert(&src, &dst, &["-O", "qcow2", "--compat", "0.10"]);
    assert_qcow2_copy(&src, &dst, "0.10", 65536);
    assert_eq!(
        mapped_data_bytes(&dst),
        2 << 20,
        "only the non-zero 2 MiB is allocated"
    );
}

#[test]
fn compressed_input_and_compressed_outputs() {
    let dir = tempdir();
    let d = dir.path();
    let plain = qcow2(d, "plain.qcow2", "compat=1.1", "32M", QEMU_IO_MIX);
    let zlib_in = d.join("zlib-in.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-O",
        "qcow2",
        path_str(&plain),
        path_str(&zlib_in),
    ]);
    // Incompressible data too, so -c must store some clusters plain.
    qemu_io("qcow2", &zlib_in, &["write -P 0x33 20M 64k"]);
    let noise = sparse_raw(d, "noise.raw", 1 << 20, &[(0, 1 << 20)]);
    let noisy = d.join("noisy.qcow2");
    convert(&noise, &noisy, &["-O", "qcow2"]);

    for src in [&zlib_in, &noisy] {
        let raw = d.join("out.raw");
        convert(src, &raw, &["-O", "raw"]);
        assert_same_content(src, &raw);
        for (kind, extra) in [
            ("zlib", &[][..]),
            ("zstd", &["--compression-type", "zstd"][..]),
        ] {
            let dst = d.join(format!("c-{kind}.qcow2"));
            let mut args = vec!["-O", "qcow2", "-c"];
            args.extend_from_slice(extra);
            convert(src, &dst, &args);
            let info = assert_qcow2_copy(src, &dst, "1.1", 65536);
            assert_eq!(info["format-specific"]["data"]["compression-type"], kind);
        }
    }
    // zstd-compressed input, down to a version 2 image (which cannot hold zstd).
    let zstd_in = d.join("zstd-in.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd",
        path_str(&plain),
        path_str(&zstd_in),
    ]);
    let v2 = d.join("from-zstd.qcow2");
    convert(&zstd_in, &v2, &["-O", "qcow2", "--compat", "0.10"]);
    assert_qcow2_copy(&zstd_in, &v2, "0.10", 65536);
    // Compressed output really is compressed: the 0xab megabyte shrinks to almost nothing.
    let small = d.join("small.qcow2");
    convert(&plain, &small, &["-O", "qcow2", "-c", "--compat", "0.10"]);
    assert_qcow2_copy(&plain, &small, "0.10", 65536);
    let size = std::fs::metadata(&small).expect("stat").len();
    assert!(size < 1 << 20, "compressed image is {size} bytes");
}

#[test]
fn cluster_sizes_from_512_bytes_to_2_mib() {
    let dir = tempdir();
    let d = dir.path();
    let src = qcow2(d, "big.qcow2", "cluster_size=2M", "40M", QEMU_IO_MIX);
    for cluster in [512u64, 4096, 65536, 2 << 20] {
        let dst = d.join(format!("c{cluster}.qcow2"));
        convert(
            &src,
            &dst,
            &["-O", "qcow2", "--cluster-size", &cluster.to_string()],
        );
        assert_qcow2_copy(&src, &dst, "1.1", cluster);
        let packed = d.join(format!("z{cluster}.qcow2"));
        convert(
            &src,
            &packed,
            &["-O", "qcow2", "-c", "--cluster-size", &cluster.to_string()],
        );
        assert_qcow2_copy(&src, &packed, "1.1", cluster);
    }
    let raw = d.join("big.raw");
    convert(&src, &raw, &["-O", "raw"]);
    assert_sparse_raw_copy(&src, &raw, (2 << 20) + 65536 + 4096 + 65536);
}

#[test]
fn virtual_size_not_a_multiple_of_the_cluster_size() {
    let dir = tempdir();
    let d = dir.path();
    // 5 MiB + 1536 bytes, with data in the partial last cluster.
    let src = qcow2(
        d,
        "odd.qcow2",
        "compat=1.1",
        "5244416",
        &["write -P 0x99 5242880 1536"],
    );
    for args in [
        &["-O", "qcow2"][..],
        &["-O", "qcow2", "-c"],
        &["-O", "qcow2", "--cluster-size", "2M"],
    ] {
        let dst = d.join("odd-out.qcow2");
        convert(&src, &dst, args);
        let info = assert_qcow2_copy(
            &src,
            &dst,
            "1.1",
            if args.len() == 4 { 2 << 20 } else { 65536 },
        );
        assert_eq!(info["virtual-size"], 5244416);
    }
    // A raw source whose size is not even a multiple of 512: qcow2 rounds up, as qemu-img.
    let raw = sparse_raw(d, "odd.raw", 1_234_567, &[(1_200_000, 34_567)]);
    let dst = d.join("odd-raw.qcow2");
    convert(&raw, &dst, &["-O", "qcow2"]);
    assert_qcow2_check_clean(&dst);
    assert_eq!(qemu_img_info(&dst)["virtual-size"], 1_234_944);
    let reference = d.join("reference.qcow2");
    qemu_img(&[
        "convert",
        "-O",
        "qcow2",
        path_str(&raw),
        path_str(&reference),
    ]);
    assert_same_content(&reference, &dst);
    let back = d.join("odd-back.raw");
    convert(&raw, &back, &["-O", "raw"]);
    assert_eq!(
        std::fs::read(&raw).expect("raw"),
        std::fs::read(&back).expect("back")
    );
}

#[test]
fn empty_images() {
    let dir = tempdir();
    let d = dir.path();
    let empty_qcow2 = qcow2(d, "empty.qcow2", "compat=1.1", "0", &[]);
    let empty_raw = sparse_raw(d, "empty.raw", 0, &[]);
    let unwritten = qcow2(d, "unwritten.qcow2", "compat=0.10", "64M", &[]);
    for src in [&empty_qcow2, &empty_raw, &unwritten] {
        for compat in ["0.10", "1.1"] {
            let dst = d.join("e.qcow2");
            convert(src, &dst, &["-O", "qcow2", "--compat", compat]);
            assert_qcow2_copy(src, &dst, compat, 65536);
            assert_eq!(mapped_data_bytes(&dst), 0);
            convert(src, &dst, &["-O", "qcow2", "--compat", compat, "-c"]);
            assert_qcow2_copy(src, &dst, compat, 65536);
        }
        let raw = d.join("e.raw");
        convert(src, &raw, &["-O", "raw"]);
        assert_sparse_raw_copy(src, &raw, 0);
    }
}

#[test]
fn backing_file_images_are_refused_clearly() {
    let dir = tempdir();
    let d = dir.path();
    let base = qcow2(d, "base.qcow2", "compat=1.1", "8M", &["write -P 1 0 64k"]);
    let overlay = d.join("overlay.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        path_str(&base),
        path_str(&overlay),
    ]);
    let dst = d.join("out.qcow2");
    let (code, stderr) = convert_fails(&overlay, &dst, &["-O", "qcow2"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("backing file"), "{stderr}");
    assert!(!dst.exists());
    assert_eq!(other_files(d, &[&base, &overlay]), Vec::<String>::new());
}

#[test]
fn failure_mid_convert_leaves_neither_destination_nor_temp_file() {
    let dir = tempdir();
    let d = dir.path();
    let src = qcow2(
        d,
        "src.qcow2",
        "compat=1.1",
        "32M",
        &["write -P 0x61 0 8M", "write -P 0x62 24M 8M"],
    );
    // Cut off the data of the last clusters: the metadata is intact, reading fails late.
    let len = std::fs::metadata(&src).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .and_then(|f| f.set_len(len - (2 << 20)))
        .expect("truncate");
    for args in [&["-O", "raw"][..], &["-O", "qcow2"], &["-O", "qcow2", "-c"]] {
        let dst = d.join("out.img");
        let (code, stderr) = convert_fails(&src, &dst, args);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("src.qcow2"), "{stderr}");
        assert_eq!(other_files(d, &[&src]), Vec::<String>::new(), "{args:?}");
    }
    // An existing destination survives a failed conversion untouched.
    let dst = d.join("keep.img");
    std::fs::write(&dst, b"previous").expect("write");
    convert_fails(&src, &dst, &["-O", "qcow2"]);
    assert_eq!(std::fs::read(&dst).expect("read"), b"previous");
    assert_eq!(other_files(d, &[&src, &dst]), Vec::<String>::new());
}

#[test]
fn bad_arguments_and_paths_are_refused() {
    let dir = tempdir();
    let d = dir.path();
    let src = qcow2(d, "src.qcow2", "compat=1.1", "8M", &["write -P 1 0 64k"]);
    let dst = d.join("out.qcow2");
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["-O", "qcow2", "--cluster-size", "3000"],
            2,
            "power of two",
        ),
        (&["-O", "qcow2", "--cluster-size", "4M"], 2, "power of two"),
        (&["-O", "qcow2", "--cluster-size", "256"], 2, "power of two"),
        (
            &[
                "-O",
                "qcow2",
                "--compat",
                "0.10",
                "--compression-type",
                "zstd",
            ],
            2,
            "zstd",
        ),
        (&["-O", "raw", "-c"], 2, "--compress"),
        (&["-O", "vmdk"], 2, "vmdk"),
    ];
    for (args, code, needle) in cases {
        let (got, stderr) = convert_fails(&src, &dst, args);
        assert_eq!(got, *code, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (_, stderr) = convert_fails(&d.join("missing.qcow2"), &dst, &["-O", "raw"]);
    assert!(stderr.contains("missing.qcow2"), "{stderr}");
    let (_, stderr) = convert_fails(&src, &d.join("no-such-dir/out.raw"), &["-O", "raw"]);
    assert!(stderr.contains("no-such-dir"), "{stderr}");
    let (_, stderr) = convert_fails(&src, &src, &["-O", "qcow2"]);
    assert!(stderr.contains("source"), "{stderr}");
    let link = d.join("link.qcow2");
    std::os::unix::fs::symlink(&src, &link).expect("symlink");
    convert_fails(&src, &link, &["-O", "qcow2"]);
    let vmdk = d.join("disk.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", path_str(&vmdk), "8M"]);
    let (_, stderr) = convert_fails(&vmdk, &dst, &["-O", "raw"]);
    assert!(stderr.contains("vmdk"), "{stderr}");
    assert!(!dst.exists());
    assert_eq!(other_files(d, &[&src, &link, &vmdk]), Vec::<String>::new());
}

#[test]
fn existing_destination_is_replaced_and_json_reports_the_result() {
    let dir = tempdir();
    let d = dir.path();
    let src = qcow2(
        d,
        "src.qcow2",
        "compat=1.1",
        "16M",
        &["write -P 0x21 1M 1M"],
    );
    let dst = d.join("out.qcow2");
    std::fs::write(&dst, vec![7u8; 100_000]).expect("old file");
    let out = run_ok(
        imgferry()
            .args(["--json", "convert"])
            .arg(&src)
            .arg(&dst)
            .args(["-O", "qcow2", "--compat", "0.10"]),
    );
    assert_qcow2_copy(&src, &dst, "0.10", 65536);
    let result: Value = out
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line"))
        .find(|v| v["type"] == "result")
        .expect("a result line");
    assert_eq!(result["command"], "convert");
    assert_eq!(result["output_format"], "qcow2");
    assert_eq!(result["input_format"], "qcow2");
    assert_eq!(result["compat"], "0.10");
    assert_eq!(result["virtual_size"], 16 << 20);
    assert!(result["bytes_read"].as_u64().expect("bytes_read") >= 1 << 20);
    assert_eq!(
        result["bytes_written"],
        std::fs::metadata(&dst).expect("stat").len()
    );
}

/// Runs `script` with `sh` in a private mount namespace (so it may mount a tmpfs);
/// returns `None` when this machine allows no such namespace.
fn in_mount_namespace(script: &str) -> Option<std::process::Output> {
    for flags in ["-m", "-rm"] {
        let out = run(std::process::Command::new("unshare").args([flags, "sh", "-c", script]));
        if out.status.code() != Some(77) {
            return Some(out);
        }
    }
    None
}

#[test]
fn full_destination_disk_is_a_clear_error_and_leaves_nothing_behind() {
    let dir = tempdir();
    let d = dir.path();
    let src = sparse_raw(d, "src.raw", 8 << 20, &[(0, 4 << 20)]);
    let small = d.join("small");
    std::fs::create_dir(&small).expect("mkdir");
    for format in ["raw", "qcow2"] {
        // Convert 4 MiB of random data onto a 1 MiB tmpfs, then list what is left there.
        let script = format!(
            "mount -t tmpfs -o size=1M none '{small}' || exit 77; \
             '{bin}' convert '{src}' '{small}/out.img' -O {format}; rc=$?; ls -A '{small}'; exit $rc",
            small = path_str(&small),
            bin = env!("CARGO_BIN_EXE_imgferry"),
            src = path_str(&src),
        );
        let Some(out) = in_mount_namespace(&script) else {
            eprintln!("skipping: no mount namespace for a small tmpfs on this machine");
            return;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("No space left on device"), "{stderr}");
        assert!(stderr.contains("hint: free some space"), "{stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "files left on the full disk"
        );
    }
}
