//! [`CheckReport`]: what `check` found, with counts like `qemu-img check` and a capped
//! list of problems.
//!
//! Owns the counting and the cap (so a badly damaged image cannot make the report grow
//! without bound). It does not format output for humans; the CLI does.

use serde::Serialize;

/// Problems listed in full; beyond this only the count grows.
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// How bad a problem is, in `qemu-img check`'s terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Metadata is wrong: data may be lost or later writes may corrupt it.
    Corruption,
    /// A cluster is allocated but unused: wasted space, no harm to data.
    Leak,
    /// Something could not be checked (e.g. an unreadable refcount block).
    CheckError,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub message: String,
}

/// The overall result, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Clean,
    Leaks,
    Corrupt,
    Incomplete,
}

/// The result of checking a qcow2 image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// qcow2 version (2 or 3).
    pub version: u32,
    pub corruptions: u64,
    pub leaks: u64,
    pub check_errors: u64,
    /// One past the last host cluster in use (referenced or with a refcount).
    pub image_end_offset: u64,
    /// Guest clusters of the virtual disk.
    pub total_clusters: u64,
    /// Guest clusters of the active image with a host cluster (data, compressed, or
    /// preallocated zero).
    pub allocated_clusters: u64,
    /// Allocated clusters not contiguous with the previous one on the host (compressed
    /// clusters always count).
    pub fragmented_clusters: u64,
    pub compressed_clusters: u64,
    /// The first [`MAX_LISTED_PROBLEMS`] problems.
    pub problems: Vec<Problem>,
    /// Problems counted but not listed.
    pub problems_not_listed: u64,
}

impl CheckReport {
    /// Counts a problem and lists it while there is room; `message` is only built then.
    pub fn record(&mut self, severity: Severity, message: impl FnOnce() -> String) {
        match severity {
            Severity::Corruption => self.corruptions += 1,
            Severity::Leak => self.leaks += 1,
            Severity::CheckError => self.check_errors += 1,
        }
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(Problem {
                severity,
                message: message(),
            });
        } else {
            self.problems_not_listed += 1;
        }
    }

    /// Shorthand for a corruption.
    pub fn corruption(&mut self, message: impl FnOnce() -> String) {
        self.record(Severity::Corruption, message);
    }

    /// The overall result: incomplete beats corrupt beats leaks, as in `qemu-img check`.
    pub fn verdict(&self) -> Verdict {
        if self.check_errors > 0 {
            Verdict::Incomplete
        } else if self.corruptions > 0 {
            Verdict::Corrupt
        } else if self.leaks > 0 {
            Verdict::Leaks
        } else {
            Verdict::Clean
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_capped_but_the_counts_are_not() {
        let mut report = CheckReport::default();
        for i in 0..MAX_LISTED_PROBLEMS + 5 {
            report.record(Severity::Leak, || format!("leak {i}"));
        }
        report.corruption(|| "bad".to_owned());
        assert_eq!(report.leaks, MAX_LISTED_PROBLEMS as u64 + 5);
        assert_eq!(report.corruptions, 1);
        assert_eq!(report.problems.len(), MAX_LISTED_PROBLEMS);
        assert_eq!(report.problems_not_listed, 6);
        assert_eq!(report.verdict(), Verdict::Corrupt);
    }
}
