//! Verified local copies: a file into the work dir, or the result onto a `--to-file`
//! target, keeping holes, hashing (md5 + sha512) from the same read, and re-reading
//! the written file to prove it holds what was read.
//!
//! Owns only the copy; the destination appears complete or not at all
//! ([`AtomicFile`]). Must not print (progress goes through the [`Reporter`]).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::endpoints::FileDigests;
use super::error::{PipelineError, Result};
use crate::disk::output::AtomicFile;
use crate::hash::{hash_file, Algorithm, HashPlan, MultiHasher, StreamDigests};
use crate::report::Reporter;

/// Bytes read per step; a step of zeros becomes a hole.
const STEP: usize = 4 << 20;

/// The plan every copy computes: Glance's two default digests.
fn plan() -> HashPlan {
    HashPlan {
        whole: vec![Algorithm::Md5, Algorithm::Sha512],
        chunks: None,
    }
}

/// md5 and sha512 of what a hasher computed.
pub fn digests_of(stream: &StreamDigests) -> FileDigests {
    let hex = |algorithm| {
        stream
            .whole
            .iter()
            .find(|d| d.algorithm == algorithm)
            .map(|d| d.hex())
    };
    FileDigests {
        bytes: stream.bytes,
        md5: hex(Algorithm::Md5),
        sha512: hex(Algorithm::Sha512).unwrap_or_default(),
    }
}

/// md5 and sha512 of the file at `path`, from one read.
pub fn hash_local(path: &Path, reporter: &dyn Reporter) -> Result<FileDigests> {
    Ok(digests_of(&hash_file(path, &plan(), reporter)?))
}

/// Copies `source` to `destination` (sparse, atomic), then re-reads the destination:
/// its digests must equal those of what was read. Returns them.
pub fn copy_verified(
    source: &Path,
    destination: &Path,
    label: &str,
    reporter: &dyn Reporter,
) -> Result<FileDigests> {
    let mut input = File::open(source).map_err(|e| PipelineError::io("open", source, e))?;
    let size = input
        .metadata()
        .map_err(|e| PipelineError::io("stat", source, e))?
        .len();
    let output = AtomicFile::create(destination)?;
    let mut hasher = MultiHasher::new(&plan())?;
    let progress = reporter.start_progress(label, Some(size));
    let mut buffer = vec![0u8; STEP];
    let mut offset: u64 = 0;
    loop {
        crate::interrupt::check()?;
        let filled =
            read_step(&mut input, &mut buffer).map_err(|e| PipelineError::io("read", source, e))?;
        if filled == 0 {
            break;
        }
        let block = &buffer[..filled];
        hasher.update(block);
        if block.iter().any(|&b| b != 0) {
            output
                .file()
                .write_all_at(block, offset)
                .map_err(|e| PipelineError::io("write", output.temp_path(), e))?;
        }
        offset = offset.checked_add(filled as u64).ok_or_else(|| {
            PipelineError::Unsupported(format!("{} is too large", source.display()))
        })?;
        progress.advance(filled as u64);
    }
    output
        .file()
        .set_len(offset)
        .map_err(|e| PipelineError::io("set the length of", output.temp_path(), e))?;
    progress.finish();
    let read = digests_of(&hasher.finish()?);
    output.commit()?;
    let written = hash_local(destination, reporter)?;
    if written != read {
        return Err(PipelineError::HashMismatch {
            what: format!(
                "{} after copying from {}",
                destination.display(),
                source.display()
            ),
            expected: read.sha512_tagged(),
            actual: written.sha512_tagged(),
        });
    }
    Ok(read)
}

/// Fills `buffer` as far as the file allows; 0 at the end.
fn read_step(input: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
