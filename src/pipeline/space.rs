//! The free-space check before anything is downloaded: the work dir must hold the
//! source image, and the converted copy when the format changes, plus a margin for the
//! sysprep overlay.
//!
//! Test hook: `IMGFERRY_TEST_FREE_BYTES` replaces what statvfs says, so the "too small"
//! path is tested without root or a tiny filesystem. Must not print.

use std::path::Path;

use super::error::{PipelineError, Result};

/// Room for the sysprep write overlay and the state file.
pub const MARGIN: u64 = 256 << 20;
/// Test hook: bytes to pretend are free in the work dir.
pub const TEST_FREE_BYTES_ENV: &str = "IMGFERRY_TEST_FREE_BYTES";

/// What a run needs in its work dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpaceNeed {
    /// The downloaded image.
    pub download: u64,
    /// The converted copy (0 when the format stays).
    pub convert: u64,
    /// [`MARGIN`].
    pub margin: u64,
}

impl SpaceNeed {
    /// The total, saturating (an absurd source size still fails the check).
    pub fn total(&self) -> u64 {
        self.download
            .saturating_add(self.convert)
            .saturating_add(self.margin)
    }
}

/// Bytes an unprivileged user may still write on the filesystem of `dir`.
pub fn available(dir: &Path) -> Result<u64> {
    if let Some(fake) = std::env::var(TEST_FREE_BYTES_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Ok(fake);
    }
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
        PipelineError::io(
            "stat",
            dir,
            std::io::Error::other("path contains a NUL byte"),
        )
    })?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) };
    if rc != 0 {
        return Err(PipelineError::io(
            "statvfs",
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

/// Fails unless `dir` has room for `need`; returns the bytes available.
pub fn check(dir: &Path, need: &SpaceNeed) -> Result<u64> {
    let free = available(dir)?;
    if free < need.total() {
        return Err(PipelineError::NotEnoughSpace {
            path: dir.to_owned(),
            needed: need.total(),
            available: free,
            detail: format!(
                "{} for the download, {} for the converted copy, {} margin",
                need.download, need.convert, need.margin
            ),
        });
    }
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_work_dir_reports_some_space_and_totals_saturate() {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var_os(TEST_FREE_BYTES_ENV).is_none() {
            assert!(available(dir.path()).unwrap() > 0);
        }
        let absurd = SpaceNeed {
            download: u64::MAX,
            convert: 1,
            margin: MARGIN,
        };
        assert_eq!(absurd.total(), u64::MAX);
        assert!(matches!(
            check(dir.path(), &absurd),
            Err(PipelineError::NotEnoughSpace { .. })
        ));
    }
}
