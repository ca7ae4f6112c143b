//! Fuzz target: the input is a whole-disk ext2/3/4 filesystem; open it and walk its
//! tree (superblock, group descriptors, inodes, extent trees, indirect blocks,
//! directories, inline data, symlinks). The body lives in the library
//! (`imgferry::guest::native::fuzzing`) so `tests/native_fuzz_corpus.rs` replays it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _opened = imgferry::guest::native::fuzzing::ext4_walk(data);
});
