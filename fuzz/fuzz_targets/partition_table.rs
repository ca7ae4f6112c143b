//! Fuzz target: the input is a whole raw disk; read its partition table (MBR with its
//! EBR chain, or GPT with both headers). The body lives in the library
//! (`imgferry::guest::native::fuzzing`) so `tests/native_fuzz_corpus.rs` replays it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _found = imgferry::guest::native::fuzzing::partition_table(data);
});
