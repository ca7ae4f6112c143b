//! The internal snapshot table: each snapshot's L1 table position and size, its names and
//! the sizes kept in its extra data.
//!
//! Owns parsing and bounding the table (QEMU's limits on its total size, on extra data and
//! on each snapshot's L1 table). It does not walk the snapshots' L1/L2 tables (`check` and
//! `amend` do) and never writes.

use std::path::Path;

use super::limits::{
    MAX_L1_BYTES, MAX_SNAPSHOTS, MAX_SNAPSHOT_EXTRA_DATA, MAX_SNAPSHOT_TABLE_BYTES,
};
use super::Header;
use crate::disk::{DiskError, ReadAt, Result};

/// Fixed part of a snapshot table entry.
const ENTRY_FIXED_LEN: u64 = 40;

/// One internal snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Host offset of the snapshot's L1 table (unchecked: see [`Snapshot::l1_problem`]).
    pub l1_table_offset: u64,
    /// Entries in the snapshot's L1 table.
    pub l1_size: u32,
    /// The unique ID string.
    pub id: String,
    /// The snapshot's name.
    pub name: String,
    /// Bytes of saved VM state (0 for a disk-only snapshot).
    pub vm_state_size: u64,
    /// The virtual disk size when the snapshot was taken, when the extra data says.
    pub disk_size: Option<u64>,
    /// Bytes of extra data in the entry (version 3 requires at least 16).
    pub extra_data_size: u32,
}

impl Snapshot {
    /// Why this snapshot's L1 table cannot be walked, if it cannot: an unaligned offset,
    /// a table larger than QEMU allows, or one that lies outside the file.
    pub fn l1_problem(&self, cluster_size: u64, file_size: u64) -> Option<String> {
        let offset = self.l1_table_offset;
        let len = u64::from(self.l1_size) * 8;
        if !offset.is_multiple_of(cluster_size) {
            return Some(format!(
                "snapshot {:?} has an unaligned L1 table offset {offset:#x}",
                self.name
            ));
        }
        if len > MAX_L1_BYTES {
            return Some(format!(
                "snapshot {:?} has an L1 table of {} entries, more than {} allowed",
                self.name,
                self.l1_size,
                MAX_L1_BYTES / 8
            ));
        }
        if self.l1_size > 0
            && (offset == 0 || offset.checked_add(len).is_none_or(|end| end > file_size))
        {
            return Some(format!(
                "snapshot {:?} has an L1 table at {offset:#x} ({len} bytes) outside the file",
                self.name
            ));
        }
        None
    }
}

/// The parsed snapshot table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotTable {
    pub snapshots: Vec<Snapshot>,
    /// Bytes the table occupies from `snapshots_offset` (entries with their padding).
    pub byte_len: u64,
}

fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn be64(buf: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(word)
}

/// Reads the snapshot table `header` names. An image without snapshots has an empty
/// table. The table must fit in [`MAX_SNAPSHOT_TABLE_BYTES`]; bytes past the end of the
/// file read as zeros (so a table cut short by truncation parses; `check` reports it).
pub fn read_snapshot_table(
    source: &dyn ReadAt,
    path: &Path,
    header: &Header,
) -> Result<SnapshotTable> {
    let bad = |detail: String| DiskError::malformed(path, "qcow2", detail);
    if header.nb_snapshots == 0 {
        return Ok(SnapshotTable::default());
    }
    if header.nb_snapshots > MAX_SNAPSHOTS {
        return Err(bad(format!(
            "{} snapshots exceed the limit of {MAX_SNAPSHOTS}",
            header.nb_snapshots
        )));
    }
    let base = header.snapshots_offset;
    let limit = MAX_SNAPSHOT_TABLE_BYTES;
    let mut snapshots = Vec::with_capacity(header.nb_snapshots as usize);
    let mut pos = 0u64;
    // Bytes past the end of the file read as zeros, as QEMU reads them; whether the
    // table really fits in the file is for `check` to judge when it counts the table.
    let read = |buf: &mut [u8], at: u64| {
        let start = base + at;
        let present = source.size().saturating_sub(start).min(buf.len() as u64) as usize;
        buf[present..].fill(0);
        source
            .read_exact_at(&mut buf[..present], start)
            .map_err(|e| DiskError::io("read the snapshot table of", path, e))
    };
    for number in 0..header.nb_snapshots {
        let past_end = |what: &str, end: u64| {
            bad(format!(
                "snapshot table entry {number} ({what}) ends {end} bytes into the table, \
                 past the {MAX_SNAPSHOT_TABLE_BYTES}-byte limit"
            ))
        };
        let fixed_end = pos + ENTRY_FIXED_LEN;
        if fixed_end > limit {
            return Err(past_end("header", fixed_end));
        }
        let mut fixed = [0u8; ENTRY_FIXED_LEN as usize];
        read(&mut fixed, pos)?;
        let id_len = u64::from(be16(&fixed, 12));
        let name_len = u64::from(be16(&fixed, 14));
        let extra_len = be32(&fixed, 36);
        if extra_len > MAX_SNAPSHOT_EXTRA_DATA {
            return Err(bad(format!(
                "snapshot table entry {number} has {extra_len} bytes of extra data, more \
                 than the {MAX_SNAPSHOT_EXTRA_DATA} allowed"
            )));
        }
        let variable_len = u64::from(extra_len) + id_len + name_len;
        let end = fixed_end + variable_len;
        if end > limit {
            return Err(past_end("names and extra data", end));
        }
        // Bounded by the checks above: at most 1024 + 2 * 65535 bytes.
        let mut variable = vec![0u8; variable_len as usize];
        read(&mut variable, fixed_end)?;
        let (extra, names) = variable.split_at(extra_len as usize);
        let (id, name) = names.split_at(id_len as usize);
        let vm_state_size = if extra.len() >= 8 {
            be64(extra, 0)
        } else {
            u64::from(be32(&fixed, 32))
        };
        snapshots.push(Snapshot {
            l1_table_offset: be64(&fixed, 0),
            l1_size: be32(&fixed, 8),
            id: String::from_utf8_lossy(id).into_owned(),
            name: String::from_utf8_lossy(name).into_owned(),
            vm_state_size,
            disk_size: (extra.len() >= 16).then(|| be64(extra, 8)),
            extra_data_size: extra_len,
        });
        // The padding of the last entry may run past the end of the file, as QEMU allows.
        pos = end.next_multiple_of(8);
    }
    Ok(SnapshotTable {
        snapshots,
        byte_len: pos,
    })
}
