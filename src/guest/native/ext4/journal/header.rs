//! The jbd2 journal superblock (the journal's block 0) and the checksums of the
//! journal's own blocks.
//!
//! Owns the big-endian layout of the journal superblock, its validation (magic,
//! version, geometry against the journal's length, feature set this backend replays),
//! the crc32c checksums jbd2 v2/v3 put on the superblock, descriptor and revoke block
//! tails, commit blocks and logged data, and the rewrite that marks the journal empty
//! after replay. Must not: read the disk (callers hand it block contents).

use crate::guest::native::bytes::{be32, byte, bytes16, put_be32};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};

/// Every journal block that is not data starts with this (big-endian).
pub const MAGIC: u32 = 0xc03b_3998;
/// `h_blocktype` values.
pub const DESCRIPTOR: u32 = 1;
pub const COMMIT: u32 = 2;
const SUPERBLOCK_V1: u32 = 3;
const SUPERBLOCK_V2: u32 = 4;
pub const REVOKE: u32 = 5;
/// Bytes of the common block header (magic, type, sequence).
pub const HEADER_SIZE: usize = 12;
/// The journal superblock's size (what its checksum covers).
const SUPERBLOCK_SIZE: usize = 1024;
/// `s_checksum_type` of v2/v3 checksums.
const CRC32C: u8 = 4;

/// Journal feature bits.
pub mod features {
    /// Compat: v1 commit-block checksums (crc32 or md5 of the transaction's data).
    pub const COMPAT_CHECKSUM: u32 = 0x1;
    pub const REVOKE: u32 = 0x1;
    pub const BIT64: u32 = 0x2;
    pub const ASYNC_COMMIT: u32 = 0x4;
    pub const CSUM_V2: u32 = 0x8;
    pub const CSUM_V3: u32 = 0x10;
    pub const FAST_COMMIT: u32 = 0x20;
    /// Incompat features the replay understands; fast commits (whose replay
    /// re-applies logical inode changes) are not among them.
    pub const REPLAYABLE: u32 = REVOKE | BIT64 | ASYNC_COMMIT | CSUM_V2 | CSUM_V3;
}

// Superblock field offsets.
const S_BLOCKSIZE: usize = 0x0c;
const S_MAXLEN: usize = 0x10;
const S_FIRST: usize = 0x14;
const S_SEQUENCE: usize = 0x18;
const S_START: usize = 0x1c;
const S_ERRNO: usize = 0x20;
const S_FEATURE_COMPAT: usize = 0x24;
const S_FEATURE_INCOMPAT: usize = 0x28;
const S_UUID: usize = 0x30;
const S_NR_USERS: usize = 0x40;
const S_CHECKSUM_TYPE: usize = 0x50;
const S_CHECKSUM: usize = 0xfc;

fn unsupported(detail: impl Into<String>) -> NativeError {
    NativeError::unsupported("jbd2 journal", detail)
}

/// The validated facts of a journal superblock.
#[derive(Debug, Clone)]
pub struct JournalSuperblock {
    pub block_size: u32,
    /// Blocks in the journal, superblock included.
    pub max_len: u32,
    /// The first block of the log.
    pub first: u32,
    /// The sequence number of the oldest transaction in the log.
    pub sequence: u32,
    /// Where the log starts; 0 when the journal is empty.
    pub start: u32,
    pub incompat: u32,
    /// crc32c of the journal UUID: what v2/v3 checksums start from (`None`: none).
    pub csum_seed: Option<u32>,
}

impl JournalSuperblock {
    /// Validates journal block 0 (`raw`, one filesystem block) of a journal of
    /// `blocks` blocks in a filesystem of `fs_block_size`-byte blocks.
    pub fn parse(raw: &[u8], blocks: u64, fs_block_size: u32) -> Result<Self> {
        let malformed = |detail: String| NativeError::malformed("jbd2 superblock", 0, detail);
        if raw.len() < SUPERBLOCK_SIZE || be32(raw, 0) != MAGIC {
            return Err(malformed(
                "no jbd2 magic in the journal's first block".into(),
            ));
        }
        let version = be32(raw, 4);
        if version != SUPERBLOCK_V1 && version != SUPERBLOCK_V2 {
            return Err(malformed(format!("block type {version} is no superblock")));
        }
        let v2 = version == SUPERBLOCK_V2;
        let field = |at| if v2 { be32(raw, at) } else { 0 };
        let sb = Self {
            block_size: be32(raw, S_BLOCKSIZE),
            max_len: be32(raw, S_MAXLEN),
            first: be32(raw, S_FIRST),
            sequence: be32(raw, S_SEQUENCE),
            start: be32(raw, S_START),
            incompat: field(S_FEATURE_INCOMPAT),
            csum_seed: None,
        };
        if sb.block_size != fs_block_size {
            return Err(unsupported(format!(
                "journal blocks of {} bytes in a filesystem of {fs_block_size}-byte blocks",
                sb.block_size
            )));
        }
        if u64::from(sb.max_len) > blocks || sb.first == 0 || sb.first >= sb.max_len {
            return Err(malformed(format!(
                "log blocks {}..{} do not fit a journal of {blocks} blocks",
                sb.first, sb.max_len
            )));
        }
        if sb.start != 0 && (sb.start < sb.first || sb.start >= sb.max_len) {
            return Err(malformed(format!(
                "the log starts at block {}, outside {}..{}",
                sb.start, sb.first, sb.max_len
            )));
        }
        if field(S_FEATURE_COMPAT) & features::COMPAT_CHECKSUM != 0 {
            return Err(unsupported(
                "v1 commit-block checksums are not verified natively",
            ));
        }
        let unknown = sb.incompat & !features::REPLAYABLE;
        if unknown != 0 {
            return Err(unsupported(format!(
                "journal features {unknown:#x} (fast commits, ...) are not replayed natively"
            )));
        }
        if be32(raw, S_ERRNO) != 0 {
            return Err(unsupported(format!(
                "the journal was aborted (errno {})",
                be32(raw, S_ERRNO) as i32
            )));
        }
        if v2 && be32(raw, S_NR_USERS) > 1 {
            return Err(unsupported("a journal shared by several filesystems"));
        }
        if sb.incompat & (features::CSUM_V2 | features::CSUM_V3) == 0 {
            return Ok(sb);
        }
        if byte(raw, S_CHECKSUM_TYPE) != CRC32C {
            return Err(unsupported(format!(
                "journal checksum type {}",
                byte(raw, S_CHECKSUM_TYPE)
            )));
        }
        let stored = be32(raw, S_CHECKSUM);
        let computed = superblock_checksum(raw);
        if stored != computed {
            return Err(NativeError::Checksum {
                structure: "jbd2 superblock",
                offset: 0,
                stored,
                computed,
            });
        }
        Ok(Self {
            csum_seed: Some(crc32c_raw(!0, &bytes16(raw, S_UUID))),
            ..sb
        })
    }

    pub fn has(&self, feature: u32) -> bool {
        self.incompat & feature != 0
    }

    /// Bytes of one block tag in a descriptor block (without the UUID that follows a
    /// tag lacking SAME_UUID).
    pub fn tag_bytes(&self) -> usize {
        if self.has(features::CSUM_V3) {
            return 16;
        }
        let base = if self.has(features::CSUM_V2) { 14 } else { 12 };
        if self.has(features::BIT64) {
            base
        } else {
            base - 4
        }
    }

    /// Bytes at the end of descriptor and revoke blocks that hold their checksum.
    pub fn tail_bytes(&self) -> usize {
        if self.csum_seed.is_some() {
            4
        } else {
            0
        }
    }

    /// Whether a descriptor or revoke block's tail checksum holds (true without
    /// checksums).
    pub fn tail_ok(&self, block: &[u8]) -> bool {
        self.covered_ok(block, block.len().saturating_sub(4))
    }

    /// Whether a commit block's checksum (`h_chksum[0]`) holds.
    pub fn commit_ok(&self, block: &[u8]) -> bool {
        self.covered_ok(block, 16)
    }

    /// The checksum over the whole block with the 4 bytes at `at` taken as zero.
    fn covered_ok(&self, block: &[u8], at: usize) -> bool {
        let Some(seed) = self.csum_seed else {
            return true;
        };
        let mut copy = block.to_vec();
        let stored = be32(&copy, at);
        put_be32(&mut copy, at, 0);
        crc32c_raw(seed, &copy) == stored
    }

    /// Whether logged `data` of transaction `sequence` matches its tag's checksum
    /// (v3: all 32 bits; v2: the low 16).
    pub fn data_ok(&self, data: &[u8], sequence: u32, tag_checksum: u32) -> bool {
        let Some(seed) = self.csum_seed else {
            return true;
        };
        let crc = crc32c_raw(crc32c_raw(seed, &sequence.to_be_bytes()), data);
        if self.has(features::CSUM_V3) {
            crc == tag_checksum
        } else {
            crc & 0xffff == tag_checksum
        }
    }
}

/// The v2/v3 checksum of a journal superblock (`s_checksum` taken as zero).
fn superblock_checksum(raw: &[u8]) -> u32 {
    let mut copy = raw[..SUPERBLOCK_SIZE].to_vec();
    put_be32(&mut copy, S_CHECKSUM, 0);
    crc32c_raw(!0, &copy)
}

/// Marks journal block 0 `raw` empty, as recovery leaves it: the log starts nowhere
/// and the next transaction is `next_sequence` (past every transaction in the log,
/// so none of their blocks can pass for a later one). Re-checksums when the journal
/// has checksums.
pub fn mark_empty(raw: &mut [u8], sb: &JournalSuperblock, next_sequence: u32) {
    put_be32(raw, S_SEQUENCE, next_sequence);
    put_be32(raw, S_START, 0);
    if sb.csum_seed.is_some() {
        let crc = superblock_checksum(raw);
        put_be32(raw, S_CHECKSUM, crc);
    }
}
