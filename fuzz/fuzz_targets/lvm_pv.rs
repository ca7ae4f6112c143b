//! Fuzz target: the input is a disk holding an LVM physical volume; find its label,
//! read its metadata areas (header, ring, text checksum), parse the VG metadata text
//! and map the LVs (checksums are fixed up first, so mutations get past them). The
//! body lives in the library (`imgferry::guest::native::fuzzing`) so
//! `tests/native_fuzz_corpus.rs` replays it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _read = imgferry::guest::native::fuzzing::lvm_pv(data);
});
