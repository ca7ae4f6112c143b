//! ext4 extent trees: from the root in `i_block` down through index blocks to the
//! leaves, giving the runs of a file's blocks.
//!
//! Owns the header/index/leaf layouts, the tail checksum of tree blocks, and the walk's
//! bounds: depth at most [`MAX_DEPTH`], each child exactly one level below its parent
//! (so the walk cannot loop), at most [`MAX_NODES`] tree blocks read, and only the
//! first `max_blocks` logical blocks kept, in at most `max_blocks` runs. Uninitialised extents read as zeros, so
//! they are left out like holes.

use super::blockmap::{BlockRange, Run};
use super::inode::Inode;
use super::Ext4;
use crate::guest::native::bytes::{le16, le32};
use crate::guest::native::crc::crc32c_raw;
use crate::guest::native::error::{NativeError, Result};

/// The kernel never builds trees deeper than 5 levels.
pub const MAX_DEPTH: u16 = 5;
/// Tree blocks read for one file (a 16 TiB file of 4 KiB blocks needs ~12 k leaves
/// when fully fragmented into 32 Ki-block extents... more only for hostile trees).
pub const MAX_NODES: usize = 1 << 16;

const MAGIC: u16 = 0xf30a;
const HEADER: usize = 12;
const ENTRY: usize = 12;
const UNINIT_LEN: u16 = 32768;

struct Walk<'a> {
    fs: &'a Ext4,
    inode: &'a Inode,
    max_blocks: u64,
    nodes: usize,
    runs: Vec<Run>,
}

/// The runs of `inode`'s extent tree that start below logical block `max_blocks`.
pub fn map(fs: &Ext4, inode: &Inode, max_blocks: u64) -> Result<Vec<Run>> {
    let mut walk = Walk {
        fs,
        inode,
        max_blocks,
        nodes: 0,
        runs: Vec::new(),
    };
    walk.node(&inode.block, None, 0)?;
    Ok(walk.runs)
}

impl Walk<'_> {
    /// Walks the node in `bytes`; `expected_depth` is `None` for the root.
    fn node(&mut self, bytes: &[u8], expected_depth: Option<u16>, block: u64) -> Result<()> {
        let offset = block * u64::from(self.fs.sb.block_size);
        let bad = |detail: String| NativeError::malformed("ext4 extent tree", offset, detail);
        let ino = self.inode.number;
        if le16(bytes, 0) != MAGIC {
            return Err(bad(format!("inode {ino}: no extent header magic")));
        }
        let (entries, max, depth) = (le16(bytes, 2), le16(bytes, 4), le16(bytes, 6));
        let capacity = (bytes.len() - HEADER) / ENTRY;
        if usize::from(max) > capacity || entries > max {
            return Err(bad(format!(
                "inode {ino}: {entries} entries, max {max}, room for {capacity}"
            )));
        }
        match expected_depth {
            None if depth > MAX_DEPTH => return Err(bad(format!("inode {ino}: depth {depth}"))),
            Some(expected) if depth != expected => {
                return Err(bad(format!(
                    "inode {ino}: depth {depth} below a node of depth {}",
                    expected + 1
                )))
            }
            _ => {}
        }
        if expected_depth.is_some() && self.fs.sb.has_metadata_csum() {
            let tail = HEADER + usize::from(max) * ENTRY;
            let computed = crc32c_raw(self.inode.csum_seed, &bytes[..tail]);
            let stored = le32(bytes, tail);
            if stored != computed {
                return Err(NativeError::Checksum {
                    structure: "ext4 extent block",
                    offset,
                    stored,
                    computed,
                });
            }
        }
        for index in 0..usize::from(entries) {
            let entry = &bytes[HEADER + index * ENTRY..HEADER + (index + 1) * ENTRY];
            let logical = u64::from(le32(entry, 0));
            if logical >= self.max_blocks {
                break; // entries are sorted: nothing further is wanted
            }
            if depth == 0 {
                let raw_len = le16(entry, 4);
                if raw_len > UNINIT_LEN || raw_len == 0 {
                    continue; // uninitialised: reads as zeros
                }
                let physical = u64::from(le16(entry, 6)) << 32 | u64::from(le32(entry, 8));
                // Runs that do not overlap cannot outnumber the blocks they map; more
                // means a hostile tree repeating extents, which must not grow memory.
                NativeError::check_limit(
                    "ext4 extents",
                    self.runs.len() as u64 + 1,
                    self.max_blocks,
                )?;
                let range = BlockRange::new(self.fs, physical, u64::from(raw_len), offset)?;
                self.runs.push(Run {
                    logical,
                    physical: range.start,
                    len: range.len,
                });
            } else {
                let child = u64::from(le16(entry, 8)) << 32 | u64::from(le32(entry, 4));
                self.nodes += 1;
                NativeError::check_limit(
                    "ext4 extent tree blocks",
                    self.nodes as u64,
                    MAX_NODES as u64,
                )?;
                let data = self.fs.read_block(child, "ext4 extent block")?;
                self.node(&data, Some(depth - 1), child)?;
            }
        }
        Ok(())
    }
}
