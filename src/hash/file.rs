//! Whole-file operations on a local file: multi-digest in one read ([`hash_file`]) and
//! building a manifest ([`build_manifest`]).
//!
//! Picks the right engine for the job: when whole-file digests are wanted the file is
//! read once, sequentially, by [`MultiHasher`] (chunk digests ride along on their own
//! thread); when only chunk digests are wanted the chunks are hashed in parallel with
//! rayon. Announces progress through the [`Reporter`]; never prints.

use std::fs::File;
use std::path::Path;

use super::algorithm::Algorithm;
use super::chunked::{hash_chunks, ChunkLayout, MAX_CHUNKS};
use super::error::HashError;
use super::manifest::Manifest;
use super::multi::{HashPlan, MultiHasher, StreamDigests};
use crate::report::Reporter;

/// Opens `path` for reading and returns it with its size; refuses directories.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64), HashError> {
    let file = File::open(path).map_err(|e| HashError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| HashError::io("stat", path, e))?;
    if meta.is_dir() {
        return Err(HashError::io(
            "read",
            path,
            std::io::Error::other("is a directory"),
        ));
    }
    Ok((file, meta.len()))
}

/// Tells the kernel the file is read front to back, so it reads ahead further on a cold
/// cache. Only advice: failure changes nothing.
fn advise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise on a valid descriptor we own has no memory-safety
    // preconditions.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Computes everything in `plan` from one sequential read of `path`.
pub fn hash_file(
    path: &Path,
    plan: &HashPlan,
    reporter: &dyn Reporter,
) -> Result<StreamDigests, HashError> {
    let (mut file, size) = open_regular(path)?;
    advise_sequential(&file);
    let progress = reporter.start_progress("hashing", Some(size));
    let mut hasher = MultiHasher::new(plan)?;
    hasher
        .read_from(&mut file, &*progress)
        .map_err(|e| HashError::io("read", path, e))?;
    let digests = hasher.finish()?;
    progress.finish();
    Ok(digests)
}

/// Builds the manifest of `path` with `layout`, also computing the `whole` digests
/// (in the same single read) when any are asked for.
pub fn build_manifest(
    path: &Path,
    layout: ChunkLayout,
    whole: &[Algorithm],
    reporter: &dyn Reporter,
) -> Result<Manifest, HashError> {
    let (file, size) = open_regular(path)?;
    let count = layout.chunk_count(size);
    if count > MAX_CHUNKS {
        return Err(HashError::InvalidRequest(format!(
            "{} ({size} bytes) would have {count} chunks of {} bytes, more than the limit \
             of {MAX_CHUNKS}: choose a larger chunk size",
            path.display(),
            layout.chunk_size
        )));
    }
    if whole.is_empty() {
        let progress = reporter.start_progress("manifest", Some(size));
        let chunks = hash_chunks(&file, path, layout, size, count, &*progress)?;
        progress.finish();
        return Ok(Manifest {
            layout,
            file_size: size,
            chunks,
            digests: Vec::new(),
        });
    }
    drop(file);
    let plan = HashPlan {
        whole: whole.to_vec(),
        chunks: Some(layout),
    };
    let digests = hash_file(path, &plan, reporter)?;
    let chunks = digests.chunks.unwrap_or_default();
    if layout.chunk_count(digests.bytes) != chunks.len() as u64 {
        return Err(HashError::InvalidRequest(format!(
            "{} grew past {MAX_CHUNKS} chunks while being read",
            path.display()
        )));
    }
    Ok(Manifest {
        layout,
        file_size: digests.bytes,
        chunks,
        digests: digests.whole,
    })
}
