//! Reading qcow2 (and raw) images through the library's `VirtualDisk`, with qemu-img as
//! the oracle: the bytes must equal `qemu-img convert -O raw`, the extents must agree
//! with `qemu-img map --output=json`.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use imgferry::disk::{open_image, Extent, ExtentKind, Image, VirtualDisk};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// A sparse raw file of `size` bytes with random data at a few offsets (unaligned ones
/// too), and the qcow2 `qemu-img convert` makes of it with `options`.
fn sparse_qcow2(dir: &Path, name: &str, size: u64, options: &[&str]) -> PathBuf {
    let raw = dir.join(format!("{name}.src.raw"));
    let file = std::fs::File::create(&raw).unwrap();
    file.set_len(size).unwrap();
    let writes = [
        (0, 4096),
        (70_000, 300_000),
        (MIB + 512, 9000),
        (size - 5000, 5000),
    ];
    for (i, (offset, len)) in writes.into_iter().enumerate() {
        let offset = offset.min(size - len);
        file.write_all_at(&random_bytes(len as usize, 11 + i as u64), offset)
            .unwrap();
    }
    let out = dir.join(format!("{name}.qcow2"));
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(options);
    args.extend([path_str(&raw), path_str(&out)]);
    qemu_img(&args);
    out
}

/// Every byte of `image`, read through the library in chunks of `chunk` bytes.
fn read_through_library(image: &dyn VirtualDisk, chunk: usize) -> Vec<u8> {
    let size = image.virtual_size() as usize;
    let mut out = vec![0u8; size];
    for (i, piece) in out.chunks_mut(chunk).enumerate() {
        image
            .read_at(piece, (i * chunk) as u64)
            .unwrap_or_else(|e| panic!("read at {}: {e}", i * chunk));
    }
    out
}

/// What `qemu-img convert -O raw` makes of `path`.
fn qemu_raw_bytes(path: &Path) -> Vec<u8> {
    let out = path.with_extension("oracle.raw");
    qemu_img(&["convert", "-q", "-O", "raw", path_str(path), path_str(&out)]);
    std::fs::read(&out).unwrap()
}

/// `qemu-img map --output=json` as our extent kinds, adjacent runs merged.
fn qemu_extents(path: &Path) -> Vec<Extent> {
    let text = qemu_img(&["map", "--output=json", path_str(path)]);
    let entries: Vec<Value> = serde_json::from_str(&text).expect("qemu-img map emits JSON");
    let mut extents = Vec::new();
    for entry in entries {
        let kind = if entry["data"] == true {
            ExtentKind::Data
        } else if entry["present"] == true {
            ExtentKind::Zero
        } else {
            ExtentKind::Unallocated
        };
        let start = entry["start"].as_u64().unwrap();
        let len = entry["length"].as_u64().unwrap();
        if len == 0 {
            continue; // qemu-img lists an empty entry for a 0-byte disk
        }
        merge_into(&mut extents, Extent { start, len, kind });
    }
    extents
}

fn merge_into(extents: &mut Vec<Extent>, next: Extent) {
    match extents.last_mut() {
        Some(last) if last.kind == next.kind && last.end() == next.start => last.len += next.len,
        _ => extents.push(next),
    }
}

/// Opens `path`, checks bytes and extents against qemu-img, and returns the image.
fn assert_matches_qemu(path: &Path) -> Image {
    let image = open_image(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let expected = qemu_raw_bytes(path);
    assert_eq!(image.virtual_size(), expected.len() as u64);
    // A chunk size that is not a power of two splits clusters and L2 tables oddly.
    for chunk in [MIB as usize, 100_000] {
        let ours = read_through_library(&image, chunk);
        if let Some(at) = ours.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!(
                "{}: first difference at byte {at} (chunk {chunk})",
                path.display()
            );
        }
    }
    let ours = image.extents(0, image.virtual_size()).expect("extents");
    assert_eq!(ours, qemu_extents(path), "extents of {}", path.display());
    image
}

fn data_bytes(extents: &[Extent]) -> u64 {
    extents
        .iter()
        .filter(|e| e.kind == ExtentKind::Data)
        .map(|e| e.len)
        .sum()
}

#[test]
fn sparse_v2_and_v3_images_read_like_qemu() {
    let dir = tempdir();
    for compat in ["0.10", "1.1"] {
        let opts = format!("compat={compat}");
        let path = sparse_qcow2(dir.path(), compat, 24 * MIB, &["-o", &opts]);
        let image = assert_matches_qemu(&path);
        let Image::Qcow2(qcow2) = &image else {
            panic!("{compat}: not detected as qcow2");
        };
        assert_eq!(qcow2.header().compat(), compat);
        let extents = image.extents(0, image.virtual_size()).unwrap();
        let data = data_bytes(&extents);
        assert!(data > 0 && data < 4 * MIB, "{compat}: {data} data bytes");
    }
}

#[test]
fn v3_zero_clusters_plain_and_preallocated_read_as_zeros() {
    let dir = tempdir();
    let path = sparse_qcow2(dir.path(), "zero", 8 * MIB, &["-o", "compat=1.1"]);
    // The first write -z lands on allocated data (kept as preallocated zero clusters),
    // the second one on unallocated space (plain zero clusters).
    qemu_io(
        "qcow2",
        &path,
        &["write -P 0x5a 3M 1M", "write -z 3M 1M", "write -z 5M 2M"],
    );
    let image = assert_matches_qemu(&path);
    let extents = image.extents(0, image.virtual_size()).unwrap();
    let zero: u64 = extents
        .iter()
        .filter(|e| e.kind == ExtentKind::Zero)
        .map(|e| e.len)
        .sum();
    assert_eq!(zero, 3 * MIB, "{extents:?}");
}

#[test]
fn zlib_and_zstd_compressed_images_read_like_qemu() {
    let dir = tempdir();
    for (name, opts) in [
        ("zlib", "compat=1.1"),
        ("zlib-v2", "compat=0.10"),
        ("zstd", "compression_type=zstd"),
    ] {
        // 5 MiB + 1536 bytes: the last cluster is partial and zero-padded by qemu.
        let size = 5 * MIB + 1536;
        let path = sparse_qcow2(dir.path(), name, size, &["-c", "-o", opts]);
        let image = assert_matches_qemu(&path);
        let Image::Qcow2(qcow2) = &image else {
            panic!("{name}: not qcow2");
        };
        let expected_type = if name == "zstd" { "zstd" } else { "zlib" };
        assert_eq!(qcow2.header().compression_type.name(), expected_type);
        // Small unaligned reads inside compressed clusters.
        let expected = qemu_raw_bytes(&path);
        for offset in [1u64, 70_001, 65_535, size - 700] {
            let mut buf = vec![0u8; 600];
            image.read_at(&mut buf, offset).unwrap();
            let at = offset as usize;
            assert_eq!(buf, expected[at..at + 600], "{name} at {offset}");
        }
    }
}

#[test]
fn cluster_sizes_512_64k_2m_and_an_unaligned_size() {
    let dir = tempdir();
    for cluster in ["512", "65536", "2097152"] {
        let opts = format!("cluster_size={cluster}");
        let path = sparse_qcow2(dir.path(), cluster, 6 * MIB + 1536, &["-o", &opts]);
        let image = assert_matches_qemu(&path);
        let Image::Qcow2(qcow2) = &image else {
            panic!("{cluster}: not qcow2");
        };
        assert_eq!(qcow2.header().cluster_size().to_string(), cluster);
    }
}

#[test]
fn empty_images_have_no_data() {
    let dir = tempdir();
    for (name, size) in [("zero-size", "0"), ("blank", "16M")] {
        let path = dir.path().join(format!("{name}.qcow2"));
        qemu_img(&["create", "-q", "-f", "qcow2", path_str(&path), size]);
        let image = assert_matches_qemu(&path);
        let extents = image.extents(0, image.virtual_size()).unwrap();
        assert_eq!(data_bytes(&extents), 0, "{name}");
    }
}

#[test]
fn sparse_raw_reports_holes_as_zero() {
    let dir = tempdir();
    let path = dir.path().join("disk.raw");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(8 * MIB).unwrap();
    file.write_all_at(&random_bytes(MIB as usize, 3), 2 * MIB)
        .unwrap();
    file.sync_all().unwrap();
    let image = assert_matches_qemu(&path);
    assert!(matches!(image, Image::Raw(_)));
    let extents = image.extents(0, 8 * MIB).unwrap();
    assert_eq!(data_bytes(&extents), MIB, "{extents:?}");
}

#[test]
fn backing_file_is_refused_with_a_hint() {
    let dir = tempdir();
    let base = sparse_qcow2(dir.path(), "base", 4 * MIB, &[]);
    let overlay = dir.path().join("overlay.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        path_str(&base),
        "-F",
        "qcow2",
        path_str(&overlay),
    ]);
    let err = open_image(&overlay).expect_err("a backing chain must be refused");
    let message = err.to_string();
    assert!(
        message.contains("has a backing file") && message.contains(path_str(&base)),
        "{message}"
    );
    assert!(
        message.contains("does not follow backing chains"),
        "{message}"
    );
    assert!(err.hint().is_some_and(|h| h.contains("qemu-img convert")));
    // Through the CLI: exit 1, the reason and the hint.
    let destination = dir.path().join("out.raw");
    let out = run(imgferry().args([
        "convert",
        "-O",
        "raw",
        path_str(&overlay),
        path_str(&destination),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not follow backing chains"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint:") && stderr.contains("qemu-img convert"),
        "{stderr}"
    );
    assert!(!destination.exists());
}

#[test]
fn concurrent_readers_see_the_same_bytes() {
    let dir = tempdir();
    let path = sparse_qcow2(dir.path(), "threads", 8 * MIB, &["-c"]);
    let expected = Arc::new(qemu_raw_bytes(&path));
    let image = Arc::new(open_image(&path).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (image, expected) = (Arc::clone(&image), Arc::clone(&expected));
            std::thread::spawn(move || {
                for i in 0..64u64 {
                    let offset = (i * 131_071 + t * 7919) % (8 * MIB - 4096);
                    let mut buf = vec![0u8; 4096];
                    image.read_at(&mut buf, offset).unwrap();
                    let at = offset as usize;
                    assert_eq!(buf, expected[at..at + 4096], "thread {t} at {offset}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("reader thread");
    }
}

#[test]
fn requests_outside_the_disk_are_refused() {
    let dir = tempdir();
    let path = sparse_qcow2(dir.path(), "bounds", 4 * MIB, &[]);
    let image = open_image(&path).unwrap();
    let mut buf = [0u8; 2];
    assert!(image.read_at(&mut buf, 4 * MIB - 1).is_err());
    assert!(image.read_at(&mut buf, u64::MAX).is_err());
    assert!(image.extents(4 * MIB, 1).is_err());
    assert!(image.extents(0, 4 * MIB).is_ok());
}

#[test]
fn internal_snapshots_do_not_change_what_the_active_layer_reads() {
    let dir = tempdir();
    let path = sparse_qcow2(dir.path(), "snap", 4 * MIB, &[]);
    qemu_img(&["snapshot", "-c", "before", path_str(&path)]);
    // Overwrites shared clusters (copy-on-write away from the snapshot) and adds data.
    qemu_io(
        "qcow2",
        &path,
        &["write -P 0x77 0 8k", "write -P 0x78 2M 64k"],
    );
    let image = assert_matches_qemu(&path);
    let mut buf = [0u8; 4];
    image.read_at(&mut buf, 4096).unwrap();
    assert_eq!(buf, [0x77; 4]);
}
