//! One-pass output of an edited image: the output qcow2 planned from the source's
//! metadata and the guest edits before its first byte ([`StreamPlan`]), then produced
//! from ONE sequential read of the source file ([`StreamPlan::produce`]).
//!
//! The data clusters of the output are placed in the order the source file holds their
//! bytes (ascending host offset, whatever the guest order), so the sequential reader is
//! never asked to go back; guest clusters only the edits touch come last. The output is
//! uncompressed, version and cluster size as asked; v3 zero clusters and unallocated
//! clusters stay unallocated (they read as zeros: there is no backing file), compressed
//! clusters are inflated. The cluster size must be the source's (one source cluster
//! makes one output cluster). A raw source needs two reads: which of its clusters are
//! zero is unknown until they are read, so [`StreamPlan::for_raw`] scans it once to
//! plan, and the output is produced from a second read (docs/design/streaming.md).
//!
//! Owns the plan and the byte order; knows nothing of HTTP, hashing or guests (edits
//! arrive as guest-offset writes, as `guest::native` lists them for a commit).

mod plan;
mod produce;
mod window;

pub use plan::{GuestWrite, StreamPlan};
pub use produce::Produced;
