//! `disk::patch` against qemu-img: the same writes applied to a raw copy of the guest
//! content by plain file writes must give what `qemu-img compare` finds identical to
//! the patched image, and `qemu-img check` must report no errors and no leaks; internal
//! snapshots keep their content. Invalid batches and unsupported images are refused
//! with the file byte for byte unchanged.

mod common;
mod patch_support;
mod qcow2_bytes;

use std::path::Path;

use common::*;
use imgferry::disk::patch::{apply, PatchReport};
use imgferry::disk::DiskError;
use patch_support::*;

const MIB: u64 = 1 << 20;

fn apply_ok(image: &Path, writes: &[Write]) -> PatchReport {
    apply(image, writes).unwrap_or_else(|e| panic!("patch {}: {e:?}", image.display()))
}

/// Writes of every kind on an image with data at 0..192K and 1M..1M+64K, a virtual size
/// that is not a multiple of the cluster size, and room for a second L2 table.
fn mixed_writes(size: u64, cluster: u64) -> Vec<Write> {
    vec![
        write(100, 200, 1),                      // in place, inside cluster 0
        write(cluster - 10, 20, 2),              // spans clusters 0 and 1
        write(3 * cluster - 100, 300, 3),        // allocated 2 -> unallocated 3
        write(MIB + 1000, 5000, 4),              // partial, allocated
        write(8 * cluster, cluster as usize, 5), // a whole unallocated cluster
        write(600 * MIB + 12345, 70_000, 6),     // no L2 table there yet (64K clusters)
        write(size - 300, 300, 7),               // the very end of the disk
    ]
}

fn mixed_case(options: &str, cluster: u64) {
    let dir = tempdir();
    let size = 1024 * MIB + 512;
    let io = ["write -P 0x11 0 192k", "write -P 0x22 1M 64k"];
    let image = qcow2(dir.path(), "img.qcow2", options, &size.to_string(), &io);
    let writes = mixed_writes(size, cluster);
    let expected = expected_raw(&image, &writes);
    let report = apply_ok(&image, &writes);
    assert_patched(&image, &expected);
    assert_eq!(report.format, "qcow2");
    assert_eq!(
        report.guest_bytes,
        writes.iter().map(|w| w.1.len() as u64).sum::<u64>()
    );
    assert!(report.clusters_in_place >= 1, "{report:?}");
    assert!(report.clusters_allocated >= 3, "{report:?}");
    if cluster == 64 << 10 {
        // At 600M, and past 1G for the disk's last bytes.
        assert_eq!(report.l2_tables_allocated, 2, "{report:?}");
    }
    // A second patch over the first one's clusters overwrites them in place.
    let again = vec![write(600 * MIB + 12345, 100, 8), write(size - 1, 1, 9)];
    let expected = expected_raw(&image, &again);
    let report = apply_ok(&image, &again);
    assert_patched(&image, &expected);
    assert_eq!(
        (report.clusters_in_place, report.clusters_allocated),
        (2, 0)
    );
}

#[test]
fn v3_64k_clusters_in_place_new_clusters_and_a_new_l2_table() {
    mixed_case("compat=1.1", 64 << 10);
}

#[test]
fn v2_64k_clusters_in_place_new_clusters_and_a_new_l2_table() {
    mixed_case("compat=0.10", 64 << 10);
}

#[test]
fn v3_2m_clusters() {
    mixed_case("compat=1.1,cluster_size=2M", 2 * MIB);
}

#[test]
fn v2_2m_clusters() {
    mixed_case("compat=0.10,cluster_size=2M", 2 * MIB);
}

#[test]
fn compressed_clusters_are_replaced_and_their_host_clusters_released() {
    let dir = tempdir();
    let source = path_in(dir.path(), "src.raw");
    // Four letters at random: compresses well, yet no two clusters are alike.
    let text: Vec<u8> = random_bytes(2 * MIB as usize, 42)
        .iter()
        .map(|b| b'a' + b % 4)
        .collect();
    std::fs::write(&source, text).unwrap();
    for compat in ["1.1", "0.10"] {
        let image = path_in(dir.path(), &format!("c{compat}.qcow2"));
        let option = format!("compat={compat}");
        qemu_img(&[
            "convert",
            "-q",
            "-c",
            "-O",
            "qcow2",
            "-o",
            &option,
            path_str(&source),
            path_str(&image),
        ]);
        let writes = vec![
            write(10, 100, 1),              // partial: the rest is inflated
            write(3 * 65536 - 5, 10, 2),    // spans two compressed clusters
            write(8 * 65536, 8 * 65536, 3), // eight whole clusters
        ];
        let expected = expected_raw(&image, &writes);
        let report = apply_ok(&image, &writes);
        assert_patched(&image, &expected);
        assert_eq!(report.clusters_allocated, 11, "{report:?}");
        assert!(report.clusters_freed > 0, "{report:?}");
    }
}

#[test]
fn zero_clusters_with_and_without_preallocation() {
    let dir = tempdir();
    // Cluster 0: zero flag over a kept allocation that still holds 0x01 bytes; cluster 1:
    // zero flag, unmapped; 1M: zero flag on an unallocated cluster.
    let io = [
        "write -P 1 0 256k",
        "write -z 0 64k",
        "write -z -u 64k 64k",
        "write -z 1M 64k",
    ];
    let image = qcow2(dir.path(), "z.qcow2", "compat=1.1", "4M", &io);
    let writes = vec![
        write(1000, 10, 1),
        write(65536 + 7, 7, 2),
        write(MIB + 3, 3, 3),
    ];
    let expected = expected_raw(&image, &writes);
    let report = apply_ok(&image, &writes);
    assert_patched(&image, &expected);
    assert_eq!(
        (report.preallocated_filled, report.clusters_allocated),
        (1, 2),
        "{report:?}"
    );

    // qemu-img 10 preallocates metadata as data clusters (reading as zeros from a
    // sparse file): written in place.
    let prealloc = qcow2(
        dir.path(),
        "p.qcow2",
        "compat=1.1,preallocation=metadata",
        "3M",
        &[],
    );
    let writes = vec![write(5, 5, 4), write(2 * MIB - 1, 2, 5)];
    let expected = expected_raw(&prealloc, &writes);
    let report = apply_ok(&prealloc, &writes);
    assert_patched(&prealloc, &expected);
    assert_eq!(
        (report.clusters_in_place, report.clusters_allocated),
        (3, 0),
        "{report:?}"
    );
}

#[test]
fn clusters_and_l2_tables_shared_with_snapshots_are_copied() {
    let dir = tempdir();
    let image = qcow2(
        dir.path(),
        "s.qcow2",
        "compat=1.1",
        "1G",
        &["write -P 0x33 0 256k", "write -P 0x44 600M 128k"],
    );
    qemu_img(&["snapshot", "-c", "s1", path_str(&image)]);
    // After s1, qemu rewrites part of the second L2 range (so that table is already a
    // private copy), then s2 shares everything again for the first range.
    qemu_io("qcow2", &image, &["write -P 0x55 600M 64k"]);
    qemu_img(&["snapshot", "-c", "s2", path_str(&image)]);
    qemu_io("qcow2", &image, &["write -P 0x66 600M 64k"]);
    let snapshots: Vec<_> = ["s1", "s2"]
        .iter()
        .map(|name| {
            let raw = path_in(dir.path(), &format!("{name}.raw"));
            raw_of(&image, Some(name), &raw);
            (name, raw)
        })
        .collect();
    let writes = vec![
        write(100, 200, 1),             // refcount 3: copied, L2 copied
        write(65536 * 3 - 1, 2, 2),     // spans two shared clusters
        write(600 * MIB + 10, 10, 3),   // refcount 1 after qemu's own copy: in place
        write(600 * MIB + 65536, 9, 4), // shared with both snapshots
        write(700 * MIB, 9, 5),         // unallocated in a private table
    ];
    let expected = expected_raw(&image, &writes);
    let report = apply_ok(&image, &writes);
    assert_patched(&image, &expected);
    assert_eq!(report.l2_tables_copied, 1, "{report:?}");
    assert_eq!(report.clusters_in_place, 1, "{report:?}");
    for (name, before) in snapshots {
        let after = path_in(dir.path(), &format!("{name}.after.raw"));
        raw_of(&image, Some(name), &after);
        assert_same_content(&before, &after);
    }
    // Deleting the snapshots afterwards must leave a clean image: every refcount the
    // patch dropped was right.
    qemu_img(&["snapshot", "-d", "s1", path_str(&image)]);
    qemu_img(&["snapshot", "-d", "s2", path_str(&image)]);
    assert_patched(&image, &expected);
}

#[test]
fn the_refcount_table_grows_when_new_blocks_do_not_fit() {
    let dir = tempdir();
    // 512-byte clusters with 64-bit refcounts: one block covers 32 KiB of file, the
    // one-cluster table 2 MiB; 3 MiB of new data cannot fit.
    let image = qcow2(
        dir.path(),
        "g.qcow2",
        "cluster_size=512,refcount_bits=64",
        "16M",
        &["write -P 7 0 4k"],
    );
    let writes: Vec<Write> = (0..48)
        .map(|i| write(i * 65536 * 2 + 77, 65536, i))
        .collect();
    let expected = expected_raw(&image, &writes);
    let report = apply_ok(&image, &writes);
    assert_patched(&image, &expected);
    assert!(report.refcount_table_grown, "{report:?}");
    assert!(report.refcount_blocks_allocated > 60, "{report:?}");
    assert!(
        report.clusters_freed > 0,
        "the old table is released: {report:?}"
    );
}

#[test]
fn narrow_refcounts_get_new_blocks() {
    let dir = tempdir();
    for bits in ["1", "2", "8", "32"] {
        let options = format!("cluster_size=512,refcount_bits={bits}");
        let image = qcow2(
            dir.path(),
            &format!("r{bits}.qcow2"),
            &options,
            "8M",
            &["write -P 9 1k 2k"],
        );
        // 3 MiB of new clusters: more than one 1-bit block covers (2 MiB of file).
        let writes: Vec<Write> = (0..6).map(|i| write(i * MIB + 100, 512 << 10, i)).collect();
        let expected = expected_raw(&image, &writes);
        let report = apply_ok(&image, &writes);
        assert_patched(&image, &expected);
        assert!(report.refcount_blocks_allocated > 0, "{bits}: {report:?}");
    }
}

#[test]
fn raw_images_are_written_in_place() {
    let dir = tempdir();
    let image = path_in(dir.path(), "disk.raw");
    qemu_img(&["create", "-q", "-f", "raw", path_str(&image), "8M"]);
    qemu_io("raw", &image, &["write -P 0x11 1M 64k"]);
    let writes = vec![
        write(0, 10, 1),
        write(MIB + 5, 100_000, 2),
        write(8 * MIB - 1, 1, 3),
    ];
    let expected = expected_raw(&image, &writes);
    let report = apply_ok(&image, &writes);
    assert_same_content(&image, &expected);
    assert_eq!((report.format, report.writes), ("raw", 3));
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 8 * MIB);
}

#[test]
fn invalid_batches_change_nothing() {
    let dir = tempdir();
    let qcow = qcow2(dir.path(), "v.qcow2", "", "1M", &["write -P 1 0 64k"]);
    let raw = path_in(dir.path(), "v.raw");
    qemu_img(&["create", "-q", "-f", "raw", path_str(&raw), "1M"]);
    for image in [&qcow, &raw] {
        let before = file_bytes(image);
        let batches: [Vec<Write>; 3] = [
            vec![write(MIB - 1, 2, 1)],
            vec![write(10, 100, 1), write(100, 5, 2)],
            vec![(u64::MAX - 2, vec![1, 2, 3, 4])],
        ];
        for batch in &batches {
            let err = apply(image, batch).expect_err("invalid batch accepted");
            assert!(matches!(err, DiskError::InvalidRequest(_)), "{err:?}");
        }
        assert_eq!(apply_ok(image, &[]).writes, 0);
        assert!(file_bytes(image) == before, "{} changed", image.display());
    }
}

fn assert_refused(image: &Path, what: &str) {
    let before = file_bytes(image);
    let err = apply(image, &[write(0, 10, 1)]).expect_err(what);
    assert!(
        matches!(
            err,
            DiskError::Refused { .. } | DiskError::Unsupported { .. }
        ),
        "{what}: {err:?}"
    );
    assert!(file_bytes(image) == before, "{what}: the file changed");
}

#[test]
fn unsupported_images_are_refused_unchanged() {
    let dir = tempdir();
    let d = dir.path();
    let base = qcow2(d, "base.qcow2", "", "1M", &[]);
    let overlay = path_in(d, "overlay.qcow2");
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
    assert_refused(&overlay, "backing file");
    let extended = qcow2(d, "ext.qcow2", "extended_l2=on", "1M", &[]);
    assert_refused(&extended, "extended L2");
    let bitmaps = qcow2(d, "bm.qcow2", "", "1M", &[]);
    qemu_img(&["bitmap", "--add", path_str(&bitmaps), "b0"]);
    assert_refused(&bitmaps, "persistent bitmaps");
    let dirty = qcow2(d, "dirty.qcow2", "", "1M", &[]);
    qcow2_bytes::write_be(&dirty, 72, 1, 8);
    assert_refused(&dirty, "dirty flag");
    let corrupt = qcow2(d, "corrupt.qcow2", "", "1M", &[]);
    qcow2_bytes::write_be(&corrupt, 72, 2, 8);
    assert_refused(&corrupt, "corrupt flag");
    // crypt_method 2 (LUKS) set by hand: creating a real LUKS image costs seconds of
    // key derivation, and the refusal reads only the header.
    let encrypted = qcow2(d, "luks.qcow2", "", "1M", &[]);
    qcow2_bytes::write_be(&encrypted, 32, 2, 4);
    assert_refused(&encrypted, "encryption");
    // A data cluster whose refcount was zeroed: check finds corruption, nothing written.
    let damaged = qcow2(d, "damaged.qcow2", "", "1M", &["write -P 1 0 64k"]);
    let data_cluster =
        qcow2_bytes::read_be(&damaged, qcow2_bytes::tables(&damaged).first_l2_offset, 8)
            & qcow2_bytes::OFFSET_MASK;
    qcow2_bytes::set_refcount16(&damaged, data_cluster / 65536, 0);
    assert_refused(&damaged, "check finds corruption");
}

#[test]
fn a_damaged_compressed_cluster_stops_the_patch_before_any_write() {
    let dir = tempdir();
    let io = ["write -P 2 0 64k", "write -c -P 0x11 128k 64k"];
    let image = qcow2(dir.path(), "bad.qcow2", "", "1M", &io);
    let l2 = qcow2_bytes::tables(&image).first_l2_offset;
    let entry = qcow2_bytes::read_be(&image, l2 + 16, 8);
    assert!(entry & (1 << 62) != 0, "cluster 2 is compressed");
    let host = entry & ((1 << 54) - 1); // 64 KiB clusters: 54 offset bits
    qcow2_bytes::write_be(&image, host, 0xdead_beef_dead_beef, 8);
    let before = file_bytes(&image);
    // An in-place write (cluster 0) and a new cluster (1) come first in guest order.
    let writes = vec![
        write(10, 10, 1),
        write(65536 + 5, 10, 2),
        write(131_072 + 10, 10, 3),
    ];
    let err = apply(&image, &writes).expect_err("damaged compressed data accepted");
    assert!(matches!(err, DiskError::Malformed { .. }), "{err:?}");
    assert!(file_bytes(&image) == before, "the file changed");
}
