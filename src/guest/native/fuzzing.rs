//! Entry points shared by the cargo-fuzz targets of the native backend (`fuzz/`) and
//! their stable replay test (`tests/native_fuzz_corpus.rs`), so both run the same code.
//!
//! Owns only the choice of what to exercise per input. Must never panic itself and
//! must keep every run bounded (the parsers' own limits do that).

use std::path::Path;
use std::sync::Arc;

use super::partition::read_partition_table;
use crate::disk::{MemorySource, RawImage};

/// Treats `input` as a whole raw disk and reads its partition table. Returns how many
/// partitions were found (`None` when the table was rejected), so a replay can tell
/// how deep its inputs reach.
pub fn partition_table(input: &[u8]) -> Option<usize> {
    let source = Arc::new(MemorySource::new(input.to_vec(), "fuzz-input.img"));
    let disk = RawImage::new(source, Path::new("fuzz-input.img"));
    read_partition_table(&disk).ok().map(|t| t.partitions.len())
}
