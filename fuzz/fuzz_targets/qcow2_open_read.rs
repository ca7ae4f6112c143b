//! Fuzz target: the input is a whole qcow2 file; open it, map its extents and read a
//! few ranges. The body lives in the library (`imgferry::disk::fuzzing`) so that
//! `tests/fuzz_corpus.rs` replays exactly this on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _opened = imgferry::disk::fuzzing::qcow2_open_read(data);
});
