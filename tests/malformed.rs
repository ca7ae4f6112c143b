//! Hostile input: qcow2 images made by qemu-img, then damaged one field at a time. Each
//! must give a clear error naming the problem (exit 1 from `imgferry info` and
//! `imgferry convert`, and an error from opening or reading through the library), and
//! never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use imgferry::disk::{open_image, VirtualDisk};

const MIB: u64 = 1 << 20;

/// A small qcow2 image made by qemu-img and qemu-io, held in memory for patching.
struct Image {
    dir: tempfile::TempDir,
    bytes: Vec<u8>,
}

impl Image {
    /// A 4 MiB image with `create_options`, some data written by qemu-io; compressed
    /// (`qemu-img convert -c`) when `compress` is set.
    fn new(create_options: &str, compress: bool) -> Self {
        let dir = tempdir();
        let path = dir.path().join("base.qcow2");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            create_options,
            path_str(&path),
            "4M",
        ]);
        qemu_io(
            "qcow2",
            &path,
            &["write -P 0x11 0 128k", "write -P 0x22 1M 64k"],
        );
        let path = if compress {
            let out = dir.path().join("compressed.qcow2");
            qemu_img(&[
                "convert",
                "-q",
                "-c",
                "-O",
                "qcow2",
                "-o",
                create_options,
                path_str(&path),
                path_str(&out),
            ]);
            out
        } else {
            path
        };
        let bytes = std::fs::read(&path).unwrap();
        Self { dir, bytes }
    }

    fn be32(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    fn be64(&self, at: usize) -> u64 {
        u64::from_be_bytes(self.bytes[at..at + 8].try_into().unwrap())
    }

    fn put32(&mut self, at: usize, value: u32) -> &mut Self {
        self.bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
        self
    }

    fn put64(&mut self, at: usize, value: u64) -> &mut Self {
        self.bytes[at..at + 8].copy_from_slice(&value.to_be_bytes());
        self
    }

    fn cluster_size(&self) -> u64 {
        1 << self.be32(20)
    }

    /// Byte position of L1 entry 0.
    fn l1_entry0(&self) -> usize {
        self.be64(40) as usize
    }

    /// Byte position of the L2 entry mapping guest offset 0.
    fn l2_entry0(&self) -> usize {
        (self.be64(self.l1_entry0()) & 0x00ff_ffff_ffff_fe00) as usize
    }

    /// Writes the (patched) bytes to a file and returns its path.
    fn save(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, &self.bytes).unwrap();
        path
    }
}

/// `imgferry info` must fail with exit 1, name the problem and not panic.
fn assert_info_fails(path: &Path, needle: &str) {
    let out = run(imgferry().args(["info", path_str(path)]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "info {}: {stderr}",
        path.display()
    );
    assert!(
        stderr.contains("error:") && stderr.contains(needle),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `imgferry convert` must fail with exit 1, name the problem, not panic and leave no
/// output behind.
fn assert_convert_fails(path: &Path, needle: &str) {
    let destination = path.with_extension("converted.raw");
    let out = run(imgferry().args([
        "convert",
        "-O",
        "raw",
        path_str(path),
        path_str(&destination),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "convert {}: {stderr}",
        path.display()
    );
    assert!(
        stderr.contains("error:") && stderr.contains(needle),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !destination.exists(),
        "convert left {}",
        destination.display()
    );
}

/// Opening through the library must fail with a message containing `needle`, and so
/// must converting the image with the CLI.
fn assert_open_fails(path: &Path, needle: &str) {
    let err = open_image(path).expect_err("a damaged image must not open");
    assert!(err.to_string().contains(needle), "open: {err}");
    assert_convert_fails(path, needle);
}

/// The image opens, but reading all of it fails with a message containing `needle`.
/// Mapping its extents must either succeed or fail with the same message.
fn assert_read_fails(path: &Path, needle: &str) {
    let image = open_image(path).unwrap_or_else(|e| panic!("open: {e}"));
    let size = image.virtual_size();
    if let Err(err) = image.extents(0, size) {
        assert!(err.to_string().contains(needle), "extents: {err}");
    }
    let mut buf = vec![0u8; size as usize];
    let err = image.read_at(&mut buf, 0).expect_err("reading must fail");
    assert!(err.to_string().contains(needle), "read: {err}");
    assert_convert_fails(path, needle);
}

#[test]
fn truncated_header() {
    let mut image = Image::new("compat=1.1", false);
    image.bytes.truncate(50);
    let path = image.save("truncated.qcow2");
    assert_info_fails(&path, "shorter than a qcow2 header");
    assert_open_fails(&path, "shorter than a qcow2 header");
}

#[test]
fn truncated_v3_header_fields() {
    let mut image = Image::new("compat=1.1", false);
    image.bytes.truncate(90);
    let path = image.save("truncated-v3.qcow2");
    assert_info_fails(&path, "truncated version 3 header");
}

#[test]
fn bad_magic() {
    let mut image = Image::new("compat=1.1", false);
    image.put32(0, 0x5146_49fa);
    let path = image.save("bad-magic.qcow2");
    // Without the magic the content is not qcow2, so it is a raw image: never parsed as
    // qcow2 by mistake. Parsing it as qcow2 explicitly names the bad magic.
    let out = run_ok(imgferry().args(["info", path_str(&path)]));
    assert!(out.contains("format: raw"), "{out}");
    let source = std::sync::Arc::new(imgferry::disk::LocalFile::open(&path).unwrap());
    let err = imgferry::disk::qcow2::Qcow2Image::open(source, &path).expect_err("bad magic");
    assert!(err.to_string().contains("bad magic"), "{err}");
}

#[test]
fn version_1() {
    let mut image = Image::new("compat=1.1", false);
    image.put32(4, 1);
    let path = image.save("version1.qcow2");
    assert_info_fails(&path, "version 1");
    assert_open_fails(&path, "version 1");
}

#[test]
fn cluster_bits_out_of_range() {
    for bits in [8, 22, 63, u32::MAX] {
        let mut image = Image::new("compat=1.1", false);
        image.put32(20, bits);
        let path = image.save(&format!("cluster-bits-{bits}.qcow2"));
        assert_info_fails(&path, &format!("cluster_bits {bits} out of range"));
        assert_open_fails(&path, "cluster_bits");
    }
}

#[test]
fn l1_table_beyond_end_of_file() {
    let mut image = Image::new("compat=1.1", false);
    let far = image.bytes.len() as u64 + 16 * image.cluster_size();
    image.put64(40, far);
    let path = image.save("l1-beyond-eof.qcow2");
    assert_info_fails(&path, "L1 table");
    assert_open_fails(&path, "beyond the end of the file");
}

#[test]
fn unaligned_l2_offset_in_l1_entry() {
    let mut image = Image::new("compat=1.1", false);
    let at = image.l1_entry0();
    let entry = image.be64(at);
    image.put64(at, entry + 512);
    let path = image.save("unaligned-l2.qcow2");
    assert_open_fails(&path, "is not cluster-aligned");
    assert_open_fails(&path, "L1 entry 0");
}

#[test]
fn l2_table_past_end_of_file() {
    let mut image = Image::new("compat=1.1", false);
    let at = image.l1_entry0();
    let far = (image.bytes.len() as u64).next_multiple_of(image.cluster_size()) + MIB;
    image.put64(at, far | 1 << 63);
    let path = image.save("l2-past-eof.qcow2");
    assert_open_fails(&path, "L2 table");
    assert_open_fails(&path, "beyond the end of the file");
}

#[test]
fn refcount_table_overlapping_the_header() {
    let mut image = Image::new("compat=1.1", false);
    image.put64(48, 0);
    let path = image.save("reftable-on-header.qcow2");
    assert_info_fails(&path, "refcount table overlaps the header");
    assert_open_fails(&path, "overlaps the header");
}

#[test]
fn virtual_size_near_2_pow_63() {
    let mut image = Image::new("compat=1.1", false);
    image.put64(24, (1 << 63) - 512);
    let path = image.save("huge.qcow2");
    assert_info_fails(&path, "virtual size");
    assert_open_fails(&path, "exceeds the limit");
}

#[test]
fn data_cluster_past_end_of_file() {
    let mut image = Image::new("compat=1.1", false);
    let at = image.l2_entry0();
    let far = (image.bytes.len() as u64).next_multiple_of(image.cluster_size()) + MIB;
    image.put64(at, far | 1 << 63);
    let path = image.save("data-past-eof.qcow2");
    assert_read_fails(&path, "past the end of the file");
}

#[test]
fn unaligned_data_cluster() {
    let mut image = Image::new("compat=1.1", false);
    let at = image.l2_entry0();
    let entry = image.be64(at);
    image.put64(at, entry + 4096);
    let path = image.save("unaligned-data.qcow2");
    assert_read_fails(&path, "is not cluster-aligned");
}

/// Position of the first compressed L2 entry and its value.
fn first_compressed_entry(image: &Image) -> (usize, u64) {
    let l2 = image.l2_entry0();
    (0..image.cluster_size() as usize / 8)
        .map(|i| (l2 + 8 * i, image.be64(l2 + 8 * i)))
        .find(|(_, entry)| entry & 1 << 62 != 0)
        .expect("a compressed cluster")
}

#[test]
fn compressed_cluster_descriptor_out_of_range() {
    let mut image = Image::new("compat=1.1", true);
    let (at, entry) = first_compressed_entry(&image);
    // 64 KiB clusters: the host offset is bits 0..54; keep the sector count.
    let offset_bits = 62 - (16 - 8);
    let far = image.bytes.len() as u64 + 10 * MIB;
    let patched = entry & !((1u64 << offset_bits) - 1) | far;
    image.put64(at, patched);
    let path = image.save("compressed-out-of-range.qcow2");
    assert_read_fails(&path, "points past the end of the file");
}

/// Replaces the first compressed cluster's data with `stream`, its descriptor's sector
/// count grown to cover it. Returns the image (which owns the directory) and the path.
fn with_compressed_stream(options: &str, stream: &[u8], name: &str) -> (Image, PathBuf) {
    let mut image = Image::new(options, true);
    let (at, entry) = first_compressed_entry(&image);
    let offset_bits = 62 - (16 - 8); // 64 KiB clusters
    let host = entry & ((1u64 << offset_bits) - 1);
    let end = host as usize + stream.len();
    if end > image.bytes.len() {
        image.bytes.resize(end, 0);
    }
    image.bytes[host as usize..end].copy_from_slice(stream);
    let extra_sectors = (host % 512 + stream.len() as u64).div_ceil(512) - 1;
    image.put64(at, 1 << 62 | extra_sectors << offset_bits | host);
    let path = image.save(name);
    (image, path)
}

#[test]
fn decompression_bomb_zlib_is_refused() {
    use flate2::{write::DeflateEncoder, Compression};
    use std::io::Write;
    // 1 MiB of zeros deflates to about a kilobyte; the cluster is 64 KiB.
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(&vec![0u8; MIB as usize]).unwrap();
    let stream = encoder.finish().unwrap();
    let (_image, path) = with_compressed_stream("compat=1.1", &stream, "bomb-zlib.qcow2");
    assert_read_fails(&path, "inflates to more than a cluster");
}

#[test]
fn decompression_bomb_zstd_is_refused() {
    let stream = zstd::bulk::compress(&vec![0u8; MIB as usize], 3).unwrap();
    let (_image, path) =
        with_compressed_stream("compression_type=zstd", &stream, "bomb-zstd.qcow2");
    assert_read_fails(&path, "inflates to more than a cluster");
}

#[test]
fn compressed_cluster_that_inflates_short_is_refused() {
    use flate2::{write::DeflateEncoder, Compression};
    use std::io::Write;
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(&[7u8; 1000]).unwrap();
    let stream = encoder.finish().unwrap();
    let (_image, path) = with_compressed_stream("compat=1.1", &stream, "short-zlib.qcow2");
    assert_read_fails(&path, "less than a cluster");
}

#[test]
fn corrupt_compressed_data_is_refused() {
    let (_image, path) = with_compressed_stream("compat=1.1", &[0xff; 64], "garbage-zlib.qcow2");
    assert_read_fails(&path, "corrupt deflate data");
}

#[test]
fn header_extension_length_past_the_cluster() {
    let mut image = Image::new("compat=1.1", false);
    // qemu-img writes v3 headers of 112 bytes followed by extensions.
    let first = image.be32(100) as usize;
    assert_ne!(image.be32(first), 0, "qemu-img wrote a header extension");
    image.put32(first + 4, 0xffff_ff00);
    let path = image.save("extension-past-cluster.qcow2");
    assert_info_fails(&path, "runs past the first cluster");
    assert_open_fails(&path, "runs past the first cluster");
}

#[test]
fn backing_file_name_outside_the_first_cluster() {
    let mut image = Image::new("compat=1.1", false);
    let cluster = image.cluster_size();
    image.put64(8, cluster - 10).put32(16, 100);
    let path = image.save("backing-outside.qcow2");
    assert_info_fails(&path, "outside the first cluster");
    assert_open_fails(&path, "outside the first cluster");
}

#[test]
fn backing_file_offset_near_u64_max() {
    let mut image = Image::new("compat=1.1", false);
    image.put64(8, u64::MAX - 4).put32(16, 100);
    let path = image.save("backing-offset-overflow.qcow2");
    assert_info_fails(&path, "outside the first cluster");
}

#[test]
fn encrypted_and_external_data_file_are_refused_by_name() {
    let mut image = Image::new("compat=1.1", false);
    image.put32(32, 1);
    let path = image.save("aes.qcow2");
    assert_open_fails(&path, "is encrypted (AES)");
    let mut image = Image::new("compat=1.1", false);
    let features = image.be64(72);
    image.put64(72, features | 1 << 2);
    let path = image.save("data-file.qcow2");
    assert_open_fails(&path, "external data file");
}

#[test]
fn dirty_images_are_readable() {
    let mut image = Image::new("compat=1.1,lazy_refcounts=on", false);
    let features = image.be64(72);
    image.put64(72, features | 1);
    let path = image.save("dirty.qcow2");
    let opened = open_image(&path).expect("a dirty image opens");
    let mut buf = vec![0u8; 4096];
    opened.read_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0x11));
}
