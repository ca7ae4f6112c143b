//! Fuzz target: the input is a whole qcow2 file; run `check` on it (refcounts, snapshot
//! table, bitmaps, every mapping table). The body lives in the library
//! (`imgferry::disk::fuzzing`) so `tests/check.rs` replays exactly this on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _checked = imgferry::disk::fuzzing::qcow2_check(data);
});
