//! Entry points shared by the cargo-fuzz targets of the native backend (`fuzz/`) and
//! their stable replay test (`tests/native_fuzz_corpus.rs`), so both run the same code.
//!
//! Owns only the choice of what to exercise per input. Must never panic itself and
//! must keep every run bounded (the parsers' own limits do that).

use std::path::Path;
use std::sync::Arc;

use super::ext4::inode::{InodeKind, ROOT_INO};
use super::ext4::Ext4;
use super::partition::read_partition_table;
use super::Volume;
use crate::disk::{MemorySource, RawImage};

/// Treats `input` as a whole raw disk and reads its partition table. Returns how many
/// partitions were found (`None` when the table was rejected), so a replay can tell
/// how deep its inputs reach.
pub fn partition_table(input: &[u8]) -> Option<usize> {
    let source = Arc::new(MemorySource::new(input.to_vec(), "fuzz-input.img"));
    let disk = RawImage::new(source, Path::new("fuzz-input.img"));
    read_partition_table(&disk).ok().map(|t| t.partitions.len())
}

/// Inodes visited by [`ext4_walk`] per input.
const WALK_INODES: usize = 256;
/// Bytes read per file by [`ext4_walk`].
const WALK_READ_LIMIT: u64 = 256 << 10;

/// Treats `input` as a whole-disk ext2/3/4 filesystem: opens it and walks its tree
/// from the root, listing directories and reading files and symlinks, visiting at
/// most [`WALK_INODES`] inodes. Returns whether the filesystem opened.
pub fn ext4_walk(input: &[u8]) -> bool {
    let source = Arc::new(MemorySource::new(input.to_vec(), "fuzz-input.img"));
    let disk = Arc::new(RawImage::new(source, Path::new("fuzz-input.img")));
    let Ok(fs) = Ext4::open(Volume::whole(disk)) else {
        return false;
    };
    let mut queue = vec![ROOT_INO];
    let mut visited = 0usize;
    while let Some(number) = queue.pop() {
        visited += 1;
        if visited > WALK_INODES {
            break;
        }
        let Ok(inode) = fs.inode(number) else {
            continue;
        };
        match inode.kind() {
            InodeKind::Directory => {
                if let Ok(entries) = fs.read_dir(&inode) {
                    queue.extend(entries.iter().map(|e| e.inode));
                }
            }
            InodeKind::File => {
                let _ = fs.read_file(&inode, WALK_READ_LIMIT);
            }
            InodeKind::Symlink => {
                let _ = fs.read_link(&inode);
            }
            InodeKind::Other => {}
        }
    }
    true
}
