//! The reference walk of `check`: every L1 table (active and snapshots), the L2 tables
//! they point at and the clusters those map, counted into [`Claims`].
//!
//! Owns the per-entry checks `qemu-img check` makes on mapping tables: alignment,
//! reserved bits, compressed-cluster flags, the COPIED flag of the active tables against
//! stored refcounts, and the allocation statistics. Reads one table at a time, so memory
//! stays bounded by the largest table. It never writes.

use std::path::Path;

use super::claims::{Claims, Use};
use super::report::CheckReport;
use crate::disk::qcow2::entries::{L1Entry, L2Entry, L2Mapping, COPIED};
use crate::disk::qcow2::header::incompatible;
use crate::disk::qcow2::refcount::{read_be_u64s, StoredRefcounts};
use crate::disk::qcow2::Header;
use crate::disk::{DiskError, ReadAt, Result};

/// State of one walk over the mapping tables.
pub struct Walk<'a, 'r> {
    source: &'a dyn ReadAt,
    path: &'a Path,
    header: &'a Header,
    claims: &'r mut Claims,
    report: &'r mut CheckReport,
    stored: StoredRefcounts<'a>,
    external_data: bool,
    /// Host offset the next allocated cluster would have if it were contiguous with the
    /// previous one of the same L2 table (`qemu-img check` restarts at each table).
    next_contiguous: u64,
}

/// Which L1 table is being walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The active L1 table: COPIED flags are checked and statistics gathered.
    Active,
    /// A snapshot's L1 table.
    Snapshot,
}

impl<'a, 'r> Walk<'a, 'r> {
    /// A walk over the image `header` describes.
    pub fn new(
        source: &'a dyn ReadAt,
        path: &'a Path,
        header: &'a Header,
        stored: StoredRefcounts<'a>,
        claims: &'r mut Claims,
        report: &'r mut CheckReport,
    ) -> Self {
        Self {
            source,
            path,
            header,
            claims,
            report,
            stored,
            external_data: header.incompatible_features & incompatible::EXTERNAL_DATA_FILE != 0,
            next_contiguous: 0,
        }
    }

    /// The report the walk writes to, for findings made between tables.
    pub fn report(&mut self) -> &mut CheckReport {
        self.report
    }

    /// Counts the L1 table of `entries` entries at `offset` and everything it maps.
    pub fn l1_table(&mut self, offset: u64, entries: u32, table: Table) -> Result<()> {
        let len = u64::from(entries) * 8;
        if !self.claims.claim(offset, len, Use::L1Table, self.report) {
            return Ok(());
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.source.size())
        {
            self.report.corruption(|| {
                format!("L1 table at {offset:#x} ({len} bytes) runs past the end of the file")
            });
            return Ok(());
        }
        let l1 = read_be_u64s(
            self.source,
            self.path,
            offset,
            u64::from(entries),
            "L1 table",
        )?;
        for (index, &raw) in l1.iter().enumerate() {
            let entry = L1Entry::decode(raw);
            if entry.reserved != 0 {
                self.report
                    .corruption(|| format!("L1 entry {index} ({raw:#018x}) has reserved bits set"));
            }
            let l2_offset = entry.l2_offset;
            if l2_offset == 0 {
                continue;
            }
            if !l2_offset.is_multiple_of(self.header.cluster_size()) {
                self.report.corruption(|| {
                    format!(
                        "L1 entry {index}: L2 table offset {l2_offset:#x} is not cluster-aligned"
                    )
                });
                continue;
            }
            if table == Table::Active {
                self.check_copied(l2_offset, entry.copied, || {
                    format!("L2 table of L1 entry {index} ({raw:#018x})")
                })?;
            }
            let cluster = self.header.cluster_size();
            if self
                .claims
                .claim(l2_offset, cluster, Use::L2Table, self.report)
            {
                self.l2_table(l2_offset, index as u64, table)?;
            }
        }
        Ok(())
    }

    fn l2_table(&mut self, offset: u64, l1_index: u64, table: Table) -> Result<()> {
        let cluster = self.header.cluster_size();
        // The last cluster of a file may be only partly present; the rest reads as zeros.
        let present = self.source.size().saturating_sub(offset).min(cluster);
        let mut bytes = vec![0u8; cluster as usize];
        self.source
            .read_exact_at(&mut bytes[..present as usize], offset)
            .map_err(|e| DiskError::io("read an L2 table of", self.path, e))?;
        self.next_contiguous = 0;
        let extended = self.header.extended_l2();
        let entry_len = if extended { 16 } else { 8 };
        for (index, entry) in bytes.chunks_exact(entry_len).enumerate() {
            let raw = be64(entry, 0);
            let bitmap = extended.then(|| be64(entry, 8));
            let guest_cluster = l1_index * self.header.l2_entries() + index as u64;
            self.l2_entry(raw, bitmap, guest_cluster, table)?;
        }
        Ok(())
    }

    fn l2_entry(
        &mut self,
        raw: u64,
        bitmap: Option<u64>,
        guest_cluster: u64,
        table: Table,
    ) -> Result<()> {
        let cluster = self.header.cluster_size();
        // Bit 0 is the zero flag only in version 3 without extended L2 entries.
        let version = if bitmap.is_some() {
            2
        } else {
            self.header.version
        };
        let entry = L2Entry::decode(raw, self.header.cluster_bits, version);
        if entry.reserved != 0 {
            self.report.corruption(|| {
                format!(
                    "L2 entry of guest cluster {guest_cluster} ({raw:#018x}) has reserved bits set"
                )
            });
        }
        if let Some(bitmap) = bitmap {
            self.check_subclusters(raw, bitmap, &entry.mapping, guest_cluster);
        }
        let active = table == Table::Active;
        match entry.mapping {
            L2Mapping::Unallocated | L2Mapping::Zero { preallocated: None } => {}
            L2Mapping::Compressed {
                host_offset,
                max_len,
            } => {
                if raw & COPIED != 0 {
                    self.report.corruption(|| {
                        format!("compressed cluster at {host_offset:#x} (guest cluster {guest_cluster}) has the COPIED flag set")
                    });
                }
                if self.external_data {
                    self.report.corruption(|| {
                        format!("compressed cluster for guest cluster {guest_cluster} in an image with an external data file")
                    });
                    return Ok(());
                }
                if active {
                    self.report.allocated_clusters += 1;
                    self.report.compressed_clusters += 1;
                    self.report.fragmented_clusters += 1;
                }
                // Count every host cluster the 512-byte sectors of the data touch.
                let start = host_offset & !511;
                let len = max_len + (host_offset & 511);
                self.claims.claim(start, len, Use::Compressed, self.report);
            }
            L2Mapping::Standard { host_offset, .. }
            | L2Mapping::Zero {
                preallocated: Some(host_offset),
            } => {
                if !host_offset.is_multiple_of(cluster) {
                    self.report.corruption(|| {
                        format!("L2 entry of guest cluster {guest_cluster} points at unaligned host offset {host_offset:#x}")
                    });
                    return Ok(());
                }
                if active {
                    self.report.allocated_clusters += 1;
                    if self.next_contiguous != 0 && host_offset != self.next_contiguous {
                        self.report.fragmented_clusters += 1;
                    }
                    self.next_contiguous = host_offset + cluster;
                }
                if self.external_data {
                    return Ok(());
                }
                if active {
                    self.check_copied(host_offset, raw & COPIED != 0, || {
                        format!(
                            "data cluster of guest cluster {guest_cluster} (L2 entry {raw:#018x})"
                        )
                    })?;
                }
                self.claims
                    .claim(host_offset, cluster, Use::Data, self.report);
            }
        }
        Ok(())
    }

    /// Extended L2 entries: the allocation and zero bitmaps must agree with the entry.
    fn check_subclusters(&mut self, raw: u64, bitmap: u64, mapping: &L2Mapping, guest: u64) {
        let (alloc, zero) = (bitmap & 0xffff_ffff, bitmap >> 32);
        let valid = match mapping {
            L2Mapping::Compressed { .. } => bitmap == 0,
            L2Mapping::Unallocated => alloc == 0,
            _ => alloc & zero == 0,
        };
        if !valid {
            self.report.corruption(|| {
                format!("extended L2 entry of guest cluster {guest} ({raw:#018x}) has an invalid subcluster bitmap {bitmap:#018x}")
            });
        }
    }

    /// The COPIED flag of an active entry must be set exactly when the stored refcount
    /// of the cluster it points at is 1.
    fn check_copied(
        &mut self,
        host_offset: u64,
        copied: bool,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let cluster = host_offset >> self.header.cluster_bits;
        // An unusable refcount block is reported when refcounts are compared.
        if let Ok(refcount) = self.stored.get(cluster)? {
            if (refcount == 1) != copied {
                self.report.corruption(|| {
                    format!(
                        "OFLAG_COPIED {}: COPIED flag {} but refcount={refcount}",
                        what(),
                        if copied { "set" } else { "clear" }
                    )
                });
            }
        }
        Ok(())
    }
}

fn be64(buf: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(word)
}
