//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and their stable replay test
//! (`tests/fuzz_corpus.rs`), so both exercise exactly the same code.
//!
//! Owns only the choice of what to exercise per input. It must never panic itself
//! (errors from the code under test are expected and ignored) and must keep every run
//! bounded: it reads at most a few small ranges, whatever the image claims.

use std::path::Path;
use std::sync::Arc;

use super::qcow2::Qcow2Image;
use super::{ExtentKind, MemorySource, VirtualDisk};

/// Guest bytes read per range.
const READ_LEN: u64 = 64 << 10;
/// Data extents whose first bytes are read.
const DATA_EXTENTS_READ: usize = 16;
/// Guest bytes mapped, as convert maps them (one window at a time): a tiny input can
/// claim a huge disk whose full walk would take long without finding anything new.
const MAP_WINDOW: u64 = 256 << 20;

/// Treats `input` as a whole qcow2 file: opens it, maps the extents of its first
/// [`MAP_WINDOW`] bytes and reads a few
/// ranges (the start, the middle, the end and the start of some data extents). Any
/// outcome but a panic, a hang or an unbounded allocation is acceptable. Returns
/// whether the image opened, so a replay can tell how deep its inputs reach.
pub fn qcow2_open_read(input: &[u8]) -> bool {
    let path = Path::new("fuzz-input.qcow2");
    let source = Arc::new(MemorySource::new(input.to_vec(), "fuzz-input.qcow2"));
    let Ok(image) = Qcow2Image::open(source, path) else {
        return false;
    };
    let size = image.virtual_size();
    let mut offsets = vec![0, size / 2, size.saturating_sub(READ_LEN)];
    if let Ok(extents) = image.extents(0, size.min(MAP_WINDOW)) {
        let data = extents.iter().filter(|e| e.kind == ExtentKind::Data);
        offsets.extend(data.take(DATA_EXTENTS_READ).map(|e| e.start));
    }
    let mut buf = vec![0u8; READ_LEN as usize];
    for offset in offsets {
        let len = READ_LEN.min(size.saturating_sub(offset)) as usize;
        let _ = image.read_at(&mut buf[..len], offset);
        let _ = image.layout().cluster_mapping(offset);
    }
    true
}

/// Treats `input` as a whole qcow2 file and runs `check` on it (every table it walks is
/// inside the tiny input, so the run stays short). Returns whether the check completed.
pub fn qcow2_check(input: &[u8]) -> bool {
    let path = Path::new("fuzz-input.qcow2");
    let source = MemorySource::new(input.to_vec(), "fuzz-input.qcow2");
    super::qcow2::check::check_qcow2(&source, path).is_ok()
}
