//! Fuzz target: the input is a whole-disk ext2/3/4 filesystem a crash left dirty;
//! open it, recover it (jbd2 journal replay, orphan list), self-check and walk the
//! result. The body lives in the library (`imgferry::guest::native::fuzzing`) so
//! `tests/native_fuzz_corpus.rs` replays it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _recovered = imgferry::guest::native::fuzzing::ext4_recover(data);
});
