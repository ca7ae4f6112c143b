//! Fuzz target: the input is an LVM VG metadata text; parse it and read the VG it
//! describes. The body lives in the library (`imgferry::guest::native::fuzzing`) so
//! `tests/native_fuzz_corpus.rs` replays it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _parsed = imgferry::guest::native::fuzzing::lvm_text(data);
});
