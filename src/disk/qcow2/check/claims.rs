//! [`Claims`]: the refcounts `check` computes from references, and what each host
//! cluster is used for.
//!
//! Owns the per-cluster arrays (a 16-bit count with a side table for the rare larger
//! ones, and one byte naming the first use) and their bound
//! ([`MAX_CHECKED_CLUSTERS`]). It flags references past the end of the file, refcount
//! overflow and clusters used for two different things; it never reads the image.

use std::collections::HashMap;
use std::path::Path;

use super::report::{CheckReport, MAX_LISTED_PROBLEMS};
use crate::disk::qcow2::limits::MAX_CHECKED_CLUSTERS;
use crate::disk::qcow2::refcount::RefcountGeometry;
use crate::disk::qcow2::Header;
use crate::disk::{DiskError, Result};

/// What a host cluster is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Use {
    Header = 1,
    L1Table,
    L2Table,
    RefcountTable,
    RefcountBlock,
    SnapshotTable,
    BitmapDirectory,
    BitmapTable,
    BitmapData,
    EncryptionHeader,
    Data,
    Compressed,
}

impl Use {
    const ALL: [Use; 12] = [
        Use::Header,
        Use::L1Table,
        Use::L2Table,
        Use::RefcountTable,
        Use::RefcountBlock,
        Use::SnapshotTable,
        Use::BitmapDirectory,
        Use::BitmapTable,
        Use::BitmapData,
        Use::EncryptionHeader,
        Use::Data,
        Use::Compressed,
    ];

    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Use::Header => "the header",
            Use::L1Table => "an L1 table",
            Use::L2Table => "an L2 table",
            Use::RefcountTable => "the refcount table",
            Use::RefcountBlock => "a refcount block",
            Use::SnapshotTable => "the snapshot table",
            Use::BitmapDirectory => "the bitmap directory",
            Use::BitmapTable => "a bitmap table",
            Use::BitmapData => "bitmap data",
            Use::EncryptionHeader => "the encryption header",
            Use::Data => "guest data",
            Use::Compressed => "compressed guest data",
        }
    }

    fn from_code(code: u8) -> Option<Use> {
        Use::ALL.into_iter().find(|u| *u as u8 == code)
    }
}

/// Set in a cluster's use byte once a second, different use was seen.
const OVERLAP: u8 = 0x80;
/// A 16-bit count at this value means "look in the overflow table".
const SPILLED: u16 = u16::MAX;

/// A cluster used for two different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    pub cluster: u64,
    pub first: Use,
    pub second: Use,
}

/// Computed refcounts and uses of every host cluster of the file.
pub struct Claims {
    cluster_bits: u32,
    file_size: u64,
    max_refcount: u64,
    counts: Vec<u16>,
    spilled: HashMap<u64, u64>,
    uses: Vec<u8>,
    /// The first overlaps, for messages (the rest are only flagged in `uses`).
    overlaps: Vec<Overlap>,
    /// One past the highest cluster referenced.
    claimed_end: u64,
}

impl Claims {
    /// Empty claims for a file of `file_size` bytes of the image `header` describes.
    pub fn new(header: &Header, file_size: u64, path: &Path) -> Result<Self> {
        let clusters = file_size.div_ceil(header.cluster_size());
        if clusters > MAX_CHECKED_CLUSTERS {
            return Err(DiskError::unsupported(
                path,
                format!(
                    "the file has {clusters} clusters of {} bytes; checking more than \
                     {MAX_CHECKED_CLUSTERS} clusters would need too much memory",
                    header.cluster_size()
                ),
            ));
        }
        // One extra slot: the last cluster may legitimately be only partly in the file.
        let slots = clusters as usize + 1;
        Ok(Self {
            cluster_bits: header.cluster_bits,
            file_size,
            max_refcount: RefcountGeometry::new(header).max_refcount(),
            counts: vec![0; slots],
            spilled: HashMap::new(),
            uses: vec![0; slots],
            overlaps: Vec::new(),
            claimed_end: 0,
        })
    }

    /// Clusters the file spans (rounded up).
    pub fn file_clusters(&self) -> u64 {
        self.file_size.div_ceil(1 << self.cluster_bits)
    }

    /// Clusters to compare: the file's, or one more when a reference reaches into the
    /// partly present last cluster.
    pub fn tracked_clusters(&self) -> u64 {
        self.file_clusters().max(self.claimed_end)
    }

    /// Counts one reference to every cluster `[offset, offset + len)` touches, used as
    /// `what`. A range reaching a cluster or more past the end of the file is a
    /// corruption and is not counted; returns whether it was counted.
    pub fn claim(&mut self, offset: u64, len: u64, what: Use, report: &mut CheckReport) -> bool {
        if len == 0 {
            return true;
        }
        let cluster_size = 1u64 << self.cluster_bits;
        let end = match offset.checked_add(len) {
            Some(end) if end < self.file_size.saturating_add(cluster_size) => end,
            _ => {
                report.corruption(|| {
                    format!(
                        "{} at {offset:#x} ({len} bytes) reaches a cluster or more past the \
                         end of the file ({} bytes)",
                        what.name(),
                        self.file_size
                    )
                });
                return false;
            }
        };
        let first = offset >> self.cluster_bits;
        let last = (end - 1) >> self.cluster_bits; // < counts.len() by the check above
        for cluster in first..=last {
            self.claim_cluster(cluster, what, report);
        }
        self.claimed_end = self.claimed_end.max(last + 1);
        true
    }

    fn claim_cluster(&mut self, cluster: u64, what: Use, report: &mut CheckReport) {
        let index = cluster as usize;
        let count = self.count(cluster);
        if count >= self.max_refcount {
            let max = self.max_refcount;
            report.corruption(|| {
                format!("cluster {cluster} is referenced more than {max} times, the most its refcount can hold")
            });
            return;
        }
        let next = count + 1;
        if next < u64::from(SPILLED) {
            self.counts[index] = next as u16;
        } else {
            self.counts[index] = SPILLED;
            self.spilled.insert(cluster, next);
        }
        let code = self.uses[index];
        if code == 0 {
            self.uses[index] = what as u8;
        } else if code & !OVERLAP != what as u8 {
            if code & OVERLAP == 0 && self.overlaps.len() < MAX_LISTED_PROBLEMS {
                if let Some(first) = Use::from_code(code & !OVERLAP) {
                    self.overlaps.push(Overlap {
                        cluster,
                        first,
                        second: what,
                    });
                }
            }
            self.uses[index] = code | OVERLAP;
        }
    }

    /// The computed refcount of `cluster` (0 beyond the tracked range).
    pub fn count(&self, cluster: u64) -> u64 {
        match self.counts.get(cluster as usize) {
            None | Some(0) => 0,
            Some(&SPILLED) => self.spilled.get(&cluster).copied().unwrap_or(0),
            Some(&n) => u64::from(n),
        }
    }

    /// What `cluster` was first used for.
    pub fn use_of(&self, cluster: u64) -> Option<Use> {
        let code = *self.uses.get(cluster as usize)?;
        Use::from_code(code & !OVERLAP)
    }

    /// Whether `cluster` is used for two different things.
    pub fn overlapped(&self, cluster: u64) -> bool {
        self.uses
            .get(cluster as usize)
            .is_some_and(|code| code & OVERLAP != 0)
    }

    /// A description of `cluster`'s overlap, when it is among the first recorded.
    pub fn overlap(&self, cluster: u64) -> Option<Overlap> {
        self.overlaps.iter().find(|o| o.cluster == cluster).copied()
    }
}
