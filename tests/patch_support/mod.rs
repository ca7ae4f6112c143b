//! Helpers for the `disk::patch` tests: build images with qemu-img/qemu-io, make the
//! expected guest content by writing the same bytes into a raw copy, and judge a patched
//! image with qemu-img (compare, check) cluster by cluster.
#![allow(dead_code)] // each test crate uses a different subset

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// One guest write, as `disk::patch` takes it.
pub type Write = (u64, Vec<u8>);

/// A qcow2 image made by `qemu-img create -o OPTIONS` then the qemu-io commands.
pub fn qcow2(dir: &Path, name: &str, options: &str, size: &str, io: &[&str]) -> PathBuf {
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

/// `len` pseudo-random bytes at `offset`.
pub fn write(offset: u64, len: usize, seed: u64) -> Write {
    (offset, random_bytes(len, seed))
}

/// The guest content of `image` (or of its snapshot `snapshot`) as a raw file.
pub fn raw_of(image: &Path, snapshot: Option<&str>, out: &Path) {
    let mut args = vec!["convert", "-O", "raw"];
    let option;
    if let Some(name) = snapshot {
        option = format!("snapshot.name={name}");
        args.extend(["-l", &option]);
    }
    args.extend([path_str(image), path_str(out)]);
    qemu_img(&args);
}

/// A raw copy of `image`'s guest content with `writes` applied by plain file writes:
/// the expected result, made without imgferry.
pub fn expected_raw(image: &Path, writes: &[Write]) -> PathBuf {
    let out = image.with_extension("expected.raw");
    raw_of(image, None, &out);
    let file = OpenOptions::new().write(true).open(&out).unwrap();
    for (offset, data) in writes {
        file.write_all_at(data, *offset).unwrap();
    }
    out
}

/// The full oracle: qemu-img compare identical to `expected`, qemu-img check with no
/// errors and no leaks.
pub fn assert_patched(image: &Path, expected: &Path) {
    assert_same_content(image, expected);
    assert_qemu_check_clean(image);
}

/// Guest clusters of `size` bytes where `actual` is neither `old` nor `new` (raw files).
pub fn torn_clusters(actual: &Path, old: &Path, new: &Path, size: usize) -> Vec<u64> {
    let (a, o, n) = (read(actual), read(old), read(new));
    assert_eq!(a.len(), o.len(), "{}", actual.display());
    let mut torn = Vec::new();
    for (index, ((a, o), n)) in a
        .chunks(size)
        .zip(o.chunks(size))
        .zip(n.chunks(size))
        .enumerate()
    {
        if a != o && a != n {
            torn.push(index as u64);
        }
    }
    torn
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A digest of the file's bytes, to prove a refused patch changed nothing.
pub fn file_bytes(path: &Path) -> Vec<u8> {
    read(path)
}
