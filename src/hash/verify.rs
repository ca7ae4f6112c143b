//! Verifying a local file against expected whole-file digests and/or a manifest.
//!
//! One read computes every whole-file digest asked for (and the chunk digests of the
//! manifest, if any, on their own thread); with only a manifest, chunks are verified in
//! parallel at full core count. The result is a [`VerifyReport`] saying exactly what
//! differs; turning it into output or an exit code is the caller's business.

use std::path::{Path, PathBuf};

use super::algorithm::{Algorithm, Digest};
use super::chunked::{compare_chunks, hash_chunks, ChunkCheck};
use super::error::HashError;
use super::file::{hash_file, open_regular};
use super::manifest::Manifest;
use super::multi::HashPlan;
use crate::report::Reporter;

/// What to check a file against, and what to compute.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    /// Whole-file digests the file must have.
    pub expected: Vec<Digest>,
    /// Whole-file digests to compute and report (checked or not).
    pub compute: Vec<Algorithm>,
    /// A manifest the file's chunks must match.
    pub manifest: Option<Manifest>,
}

/// One expected digest and what the file has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCheck {
    pub expected: Digest,
    pub actual: Digest,
}

impl DigestCheck {
    /// Whether the file has the expected digest.
    pub fn matches(&self) -> bool {
        self.expected == self.actual
    }
}

/// What verification found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// Bytes in the file.
    pub size: u64,
    /// Every whole-file digest computed, in the order of [`Algorithm::ALL`].
    pub computed: Vec<Digest>,
    /// One entry per expected digest.
    pub checks: Vec<DigestCheck>,
    /// The manifest comparison, when a manifest was given.
    pub chunks: Option<ChunkCheck>,
}

impl VerifyReport {
    /// Whether every check passed.
    pub fn matches(&self) -> bool {
        self.checks.iter().all(DigestCheck::matches)
            && self.chunks.as_ref().is_none_or(ChunkCheck::matches)
    }

    /// `Ok(self)` when everything matched, otherwise the verification error naming
    /// what differs.
    pub fn into_result(self) -> Result<Self, HashError> {
        if self.matches() {
            return Ok(self);
        }
        Err(HashError::VerificationFailed {
            path: self.path.clone(),
            summary: self.summary(),
        })
    }

    /// What differs, in one line.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.matches())
            .map(|c| format!("{} differs", c.expected.algorithm))
            .collect();
        if let Some(check) = &self.chunks {
            const SHOWN: usize = 3;
            for run in check.faults.iter().take(SHOWN) {
                let chunks = if run.first == run.last {
                    format!("chunk {}", run.first)
                } else {
                    format!("chunks {}-{}", run.first, run.last)
                };
                parts.push(format!(
                    "{chunks} (bytes {}..{}) {}",
                    run.start,
                    run.end,
                    run.fault.name()
                ));
            }
            if check.faults.len() > SHOWN {
                parts.push(format!(
                    "{} more runs of chunks",
                    check.faults.len() - SHOWN
                ));
            }
            if check.expected_size != check.actual_size {
                parts.push(format!(
                    "the file is {} bytes, the manifest describes {}",
                    check.actual_size, check.expected_size
                ));
            }
        }
        parts.join("; ")
    }
}

/// Checks `path` against `request`; a mismatch is a report, not an error.
pub fn verify_file(
    path: &Path,
    request: &VerifyRequest,
    reporter: &dyn Reporter,
) -> Result<VerifyReport, HashError> {
    let mut whole: Vec<Algorithm> = request.compute.clone();
    whole.extend(request.expected.iter().map(|d| d.algorithm));
    let mut report = VerifyReport {
        path: path.to_owned(),
        size: 0,
        computed: Vec::new(),
        checks: Vec::new(),
        chunks: None,
    };
    if whole.is_empty() {
        // Only a manifest (or nothing at all): chunks in parallel.
        let (file, size) = open_regular(path)?;
        report.size = size;
        if let Some(manifest) = &request.manifest {
            let layout = manifest.layout;
            let count = (manifest.chunks.len() as u64).min(layout.chunk_count(size));
            let hashed = count
                .checked_sub(1)
                .map_or(0, |last| layout.chunk_range(last, size).1);
            let progress = reporter.start_progress("verifying", Some(hashed));
            let actual = hash_chunks(&file, path, layout, size, count, &*progress)?;
            progress.finish();
            report.chunks = Some(compare_chunks(
                layout,
                &manifest.chunks,
                manifest.file_size,
                &actual,
                size,
            ));
        }
        return Ok(report);
    }
    let plan = HashPlan {
        whole,
        chunks: request.manifest.as_ref().map(|m| m.layout),
    };
    let digests = hash_file(path, &plan, reporter)?;
    report.size = digests.bytes;
    report.checks = request
        .expected
        .iter()
        .filter_map(|expected| {
            let actual = digests
                .whole
                .iter()
                .find(|d| d.algorithm == expected.algorithm)?;
            Some(DigestCheck {
                expected: expected.clone(),
                actual: actual.clone(),
            })
        })
        .collect();
    if let (Some(manifest), Some(actual)) = (&request.manifest, &digests.chunks) {
        report.chunks = Some(compare_chunks(
            manifest.layout,
            &manifest.chunks,
            manifest.file_size,
            actual,
            digests.bytes,
        ));
    }
    report.computed = digests.whole;
    Ok(report)
}
