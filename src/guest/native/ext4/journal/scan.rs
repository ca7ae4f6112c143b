//! The walk of a jbd2 log: from the superblock's start, transaction by transaction
//! (descriptor blocks naming where each logged block belongs, revoke blocks, a
//! commit block closing each), to the first block that does not continue the
//! sequence. The result is a [`Plan`]: every logged block of a committed transaction
//! not revoked by the same or a later committed transaction, in log order.
//!
//! Follows the kernel's recovery rules: only committed transactions count; a
//! descriptor or revoke block failing its checksum is tolerated until the commit
//! block tells a stale log (an older commit time: the end) from a corrupt one; a
//! commit block failing its checksum ends the log when its time is older (stale) or
//! the journal commits asynchronously, and is corruption otherwise. Corruption the
//! kernel would report is refused here ([`NativeError::Unsupported`]), so the
//! caller can leave it to the kernel. Must not: read more blocks than the log holds
//! (a log that runs around the journal is malformed), or keep logged data in memory
//! (the plan holds positions).

use std::collections::BTreeMap;

use super::header::{self, features, JournalSuperblock, HEADER_SIZE, MAGIC};
use crate::guest::native::bytes::{be16, be32, be64};
use crate::guest::native::error::{NativeError, Result};

/// Tag flags.
const FLAG_ESCAPE: u32 = 0x1;
const FLAG_SAME_UUID: u32 = 0x2;
const FLAG_LAST_TAG: u32 = 0x8;
/// Where a commit block keeps its commit time (seconds).
const COMMIT_SEC: usize = 0x30;
/// Where a revoke block keeps the bytes it uses (header included).
const REVOKE_COUNT: usize = 12;
const REVOKE_HEADER: usize = 16;

/// One block logged by a committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    /// The filesystem block it replaces.
    pub target: u64,
    /// Where its content is in the journal (journal block number).
    pub journal_block: u32,
    /// Its first four bytes were the jbd2 magic, stored as zero.
    pub escaped: bool,
    pub sequence: u32,
    /// The tag's checksum of the content (see [`JournalSuperblock::data_ok`]).
    pub checksum: u32,
}

/// What replay must do.
#[derive(Debug, Default)]
pub struct Plan {
    /// The blocks to write, in log order (a later one wins).
    pub writes: Vec<Logged>,
    /// Committed transactions found.
    pub transactions: u32,
    /// Logged blocks skipped because a later revoke record names them.
    pub revoked: usize,
    /// The sequence number of the first transaction not replayed.
    pub end: u32,
}

/// `a` is after `b` in jbd2's wrapping sequence numbers.
fn tid_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn corrupt(detail: String) -> NativeError {
    NativeError::unsupported(
        "jbd2 journal",
        format!("{detail}: left to the kernel's recovery"),
    )
}

/// A transaction being read: its blocks and revoke records until its commit block.
#[derive(Default)]
struct Open {
    blocks: Vec<Logged>,
    revokes: Vec<u64>,
    /// A descriptor or revoke block of it failed its checksum.
    suspect: bool,
}

/// Walks the log of `sb`; `read` returns journal block `n` (one block).
pub fn scan(sb: &JournalSuperblock, read: &dyn Fn(u32) -> Result<Vec<u8>>) -> Result<Plan> {
    let mut plan = Plan {
        end: sb.sequence,
        ..Plan::default()
    };
    if sb.start == 0 {
        return Ok(plan);
    }
    let mut sequence = sb.sequence;
    let log_len = sb.max_len - sb.first;
    let mut next = sb.start;
    let mut visited: u32 = 0;
    let mut advance = |block: &mut u32| -> Result<u32> {
        visited += 1;
        if visited > log_len {
            return Err(NativeError::malformed(
                "jbd2 log",
                0,
                format!("the log runs past all {log_len} of its blocks"),
            ));
        }
        let current = *block;
        *block = if current + 1 >= sb.max_len {
            sb.first
        } else {
            current + 1
        };
        Ok(current)
    };
    let mut committed: Vec<Logged> = Vec::new();
    // Filesystem block → the latest committed transaction revoking it.
    let mut revoked: BTreeMap<u64, u32> = BTreeMap::new();
    let mut open = Open::default();
    let mut last_commit_time = 0u64;
    loop {
        let at = advance(&mut next)?;
        let block = read(at)?;
        if be32(&block, 0) != MAGIC || be32(&block, 8) != sequence {
            break;
        }
        match be32(&block, 4) {
            header::DESCRIPTOR => {
                open.suspect |= !sb.tail_ok(&block);
                for tag in tags(sb, &block) {
                    let journal_block = advance(&mut next)?;
                    open.blocks.push(Logged {
                        journal_block,
                        sequence,
                        ..tag
                    });
                }
            }
            header::REVOKE => {
                open.suspect |= !sb.tail_ok(&block);
                open.revokes.extend(revoke_records(sb, &block, at)?);
            }
            header::COMMIT => {
                let commit_time = be64(&block, COMMIT_SEC);
                let stale = commit_time < last_commit_time;
                if open.suspect || !sb.commit_ok(&block) {
                    if stale || (!open.suspect && sb.has(features::ASYNC_COMMIT)) {
                        break;
                    }
                    return Err(corrupt(format!(
                        "transaction {sequence} fails its checksums",
                    )));
                }
                last_commit_time = commit_time;
                let done = std::mem::take(&mut open);
                committed.extend(done.blocks);
                for target in done.revokes {
                    let latest = revoked.entry(target).or_insert(sequence);
                    if tid_gt(sequence, *latest) {
                        *latest = sequence;
                    }
                }
                plan.transactions += 1;
                sequence = sequence.wrapping_add(1);
            }
            _ => break,
        }
    }
    plan.end = sequence;
    for logged in committed {
        // Revoked by the same or a later transaction: its content is out of date.
        let skip = revoked
            .get(&logged.target)
            .is_some_and(|&by| !tid_gt(logged.sequence, by));
        if skip {
            plan.revoked += 1;
        } else {
            plan.writes.push(logged);
        }
    }
    Ok(plan)
}

/// The tags of descriptor block `block` (journal positions not yet assigned).
fn tags(sb: &JournalSuperblock, block: &[u8]) -> Vec<Logged> {
    let tag_bytes = sb.tag_bytes();
    let end = block.len().saturating_sub(sb.tail_bytes());
    let v3 = sb.has(features::CSUM_V3);
    let mut found = Vec::new();
    let mut at = HEADER_SIZE;
    while at + tag_bytes <= end {
        let low = u64::from(be32(block, at));
        let (flags, checksum, high_at) = if v3 {
            (be32(block, at + 4), be32(block, at + 12), at + 8)
        } else {
            (
                u32::from(be16(block, at + 6)),
                u32::from(be16(block, at + 4)),
                at + 8,
            )
        };
        let high = if sb.has(features::BIT64) {
            u64::from(be32(block, high_at))
        } else {
            0
        };
        found.push(Logged {
            target: high << 32 | low,
            journal_block: 0,
            escaped: flags & FLAG_ESCAPE != 0,
            sequence: 0,
            checksum,
        });
        at += tag_bytes;
        if flags & FLAG_SAME_UUID == 0 {
            at += 16;
        }
        if flags & FLAG_LAST_TAG != 0 {
            break;
        }
    }
    found
}

/// The block numbers revoke block `block` (journal block `at`) lists.
fn revoke_records(sb: &JournalSuperblock, block: &[u8], at: u32) -> Result<Vec<u64>> {
    let used = be32(block, REVOKE_COUNT) as usize;
    if used < REVOKE_HEADER || used > block.len() - sb.tail_bytes() {
        return Err(NativeError::malformed(
            "jbd2 revoke block",
            u64::from(at),
            format!("it says {used} bytes are used"),
        ));
    }
    let record = if sb.has(features::BIT64) { 8 } else { 4 };
    Ok(block[REVOKE_HEADER..used]
        .chunks_exact(record)
        .map(|r| {
            if record == 8 {
                be64(r, 0)
            } else {
                u64::from(be32(r, 0))
            }
        })
        .collect())
}
