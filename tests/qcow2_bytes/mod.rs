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

/// xorshift64: deterministic pseudo-random numbers for the mutation tests.
pub fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The byte ranges of a qcow2 file that hold metadata: the header cluster, the active
/// and first snapshot's L1 tables, the refcount table and blocks, the L2 tables of the
/// active L1 table and the snapshot table.
pub fn metadata_regions(file: &Path) -> Vec<(u64, u64)> {
    let t = tables(file);
    let cluster = t.cluster_size;
    let whole = |offset: u64, len: u64| (offset, len.max(8).next_multiple_of(cluster));
    let mut regions = vec![(0, cluster)];
    let l1_entries = read_be(file, 36, 4);
    regions.push(whole(t.l1_offset, l1_entries * 8));
    for i in 0..l1_entries {
        let l2 = read_be(file, t.l1_offset + 8 * i, 8) & OFFSET_MASK;
        if l2 != 0 {
            regions.push((l2, cluster));
        }
    }
    let reftable_len = read_be(file, 56, 4) * cluster;
    regions.push((t.reftable_offset, reftable_len));
    for i in 0..reftable_len / 8 {
        let block = read_be(file, t.reftable_offset + 8 * i, 8) & !0x1ff;
        if block != 0 {
            regions.push((block, cluster));
        }
    }
    if read_be(file, 60, 4) > 0 {
        let snapshots = read_be(file, 64, 8);
        regions.push((snapshots, cluster));
        regions.push(whole(
            read_be(file, snapshots, 8),
            read_be(file, snapshots + 8, 4) * 8,
        ));
    }
    regions
}

/// Overwrites one to three aligned 64-bit words of `bytes` inside `regions` with values
/// likely to upset a parser: zero, all ones, in-file and past-the-end offsets with flag
/// bits, bit flips.
pub fn mutate(bytes: &mut [u8], regions: &[(u64, u64)], state: &mut u64) {
    let len = bytes.len() as u64;
    for _ in 0..1 + next(state) % 3 {
        let (start, size) = regions[(next(state) % regions.len() as u64) as usize];
        let at = ((start + next(state) % size).min(len - 8) & !7) as usize;
        let old = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let value = match next(state) % 6 {
            0 => 0,
            1 => u64::MAX,
            2 => next(state),
            3 => (next(state) % len) & !0xfff | (next(state) & (3 << 62 | 1)),
            4 => old ^ (1 << (next(state) % 64)),
            _ => len + next(state) % (1 << 20),
        };
        bytes[at..at + 8].copy_from_slice(&value.to_be_bytes());
    }
}

/// The offset and length of the data of header extension `kind` of a v3 image.
pub fn find_extension(file: &Path, kind: u64) -> Option<(u64, u64)> {
    let mut at = read_be(file, 100, 4); // header_length
    loop {
        let (this, len) = (read_be(file, at, 4), read_be(file, at + 4, 4));
        if this == 0 {
            return None;
        }
        if this == kind {
            return Some((at + 8, len));
        }
        at += 8 + len.next_multiple_of(8);
    }
}
