//! Byte-level helpers for the check and amend tests: read and patch big-endian fields of
//! a qcow2 file, find its tables, and run `qemu-img check` whatever its verdict.
#![allow(dead_code)] // each test crate uses a different subset

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Reads an `n`-byte big-endian number at `offset`.
pub fn read_be(file: &Path, offset: u64, n: usize) -> u64 {
    let mut buf = vec![0u8; n];
    std::fs::File::open(file)
        .and_then(|f| f.read_exact_at(&mut buf, offset))
        .unwrap_or_else(|e| panic!("read {} at {offset:#x}: {e}", file.display()));
    buf.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// Writes `value` as an `n`-byte big-endian number at `offset`.
pub fn write_be(file: &Path, offset: u64, value: u64, n: usize) {
    let bytes = value.to_be_bytes();
    OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|f| f.write_all_at(&bytes[8 - n..], offset))
        .unwrap_or_else(|e| panic!("write {} at {offset:#x}: {e}", file.display()));
}

/// Where the main tables of a qcow2 file are.
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    pub cluster_size: u64,
    pub l1_offset: u64,
    pub reftable_offset: u64,
    /// The first refcount block.
    pub refblock_offset: u64,
    /// The L2 table of the first L1 entry (0 if unallocated).
    pub first_l2_offset: u64,
}

/// Host offsets in table entries: bits 9..=55.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// Reads the table positions from the header.
pub fn tables(file: &Path) -> Tables {
    let l1_offset = read_be(file, 40, 8);
    let reftable_offset = read_be(file, 48, 8);
    Tables {
        cluster_size: 1 << read_be(file, 20, 4),
        l1_offset,
        reftable_offset,
        refblock_offset: read_be(file, reftable_offset, 8) & !0x1ff,
        first_l2_offset: read_be(file, l1_offset, 8) & OFFSET_MASK,
    }
}

/// Sets the 16-bit refcount of host cluster `cluster` (first refcount block only).
pub fn set_refcount16(file: &Path, cluster: u64, value: u64) {
    let t = tables(file);
    write_be(file, t.refblock_offset + 2 * cluster, value, 2);
}

/// `qemu-img check --output=json FILE`: its exit code and report.
pub fn qemu_check(file: &Path) -> (i32, Value) {
    let out = Command::new("qemu-img")
        .args(["check", "--output=json"])
        .arg(file)
        .output()
        .expect("run qemu-img check");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report)
}
