//! [`AtomicFile`]: an output file that appears under its final name complete or not at
//! all.
//!
//! Data goes to a 0600 temporary file in the destination's directory (so the final
//! rename never crosses file systems); [`AtomicFile::commit`] fsyncs it, renames it over
//! the final name and fsyncs the directory. Any error before that, or dropping the value
//! uncommitted, removes the temporary file. An existing destination is replaced (as
//! `qemu-img convert` does) but keeps its permission bits; a new one gets 0644 minus the
//! umask, as qemu-img creates files. The temporary file stays 0600 until the rename, so
//! a half-written image is never readable by others. Owns the file's life cycle only,
//! not what is written in it.

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::disk::{DiskError, Result};

/// The mode of a new destination before the umask (qemu-img's, and most tools').
const NEW_FILE_MODE: u32 = 0o644;

/// The process umask, from `/proc/self/status` (reading it through umask(2) would
/// change it for a moment under other threads); 022 when that is unavailable.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        })
        .unwrap_or(0o022)
        & 0o777
}

/// A temporary file that becomes `destination` on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    destination: PathBuf,
    directory: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file next to `destination`. Fails when the directory is
    /// missing or not writable; `destination` itself is not touched until commit.
    pub fn create(destination: &Path) -> Result<Self> {
        let name = destination.file_name().ok_or_else(|| {
            DiskError::InvalidRequest(format!("{} does not name a file", destination.display()))
        })?;
        let directory = match destination.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".imgferry-tmp")
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(&directory)
            .map_err(|e| DiskError::io("create a temporary file in", &directory, e))?;
        Ok(Self {
            temp,
            destination: destination.to_owned(),
            directory,
        })
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Where the data is being written until commit.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The final name.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Makes the file durable and moves it to its final name.
    pub fn commit(self) -> Result<()> {
        let temp_path = self.temp.path().to_owned();
        self.temp
            .as_file()
            .sync_all()
            .map_err(|e| DiskError::io("sync", &temp_path, e))?;
        let mode = match std::fs::metadata(&self.destination) {
            Ok(existing) if existing.is_file() => existing.permissions().mode() & 0o7777,
            _ => NEW_FILE_MODE & !umask(),
        };
        self.temp
            .as_file()
            .set_permissions(Permissions::from_mode(mode))
            .map_err(|e| DiskError::io("set permissions of", &temp_path, e))?;
        self.temp.persist(&self.destination).map_err(|e| {
            DiskError::io("rename the finished file to", &self.destination, e.error)
        })?;
        File::open(&self.directory)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| DiskError::io("sync directory", &self.directory, e))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("list dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn commit_renames_and_drop_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.img");
        let file = AtomicFile::create(&target).expect("create");
        let mode = std::fs::metadata(file.temp_path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        file.file().write_all(b"hello").expect("write");
        assert!(
            !target.exists(),
            "nothing under the final name before commit"
        );
        file.commit().expect("commit");
        assert_eq!(std::fs::read(&target).expect("read"), b"hello");
        assert_eq!(leftovers(dir.path()), vec!["out.img".to_owned()]);

        let again = AtomicFile::create(&target).expect("create");
        again.file().write_all(b"half").expect("write");
        drop(again);
        assert_eq!(std::fs::read(&target).expect("read"), b"hello");
        assert_eq!(leftovers(dir.path()), vec!["out.img".to_owned()]);
    }

    #[test]
    fn existing_destination_keeps_its_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.img");
        std::fs::write(&target, b"old").expect("write");
        std::fs::set_permissions(&target, Permissions::from_mode(0o640)).expect("chmod");
        let file = AtomicFile::create(&target).expect("create");
        file.file().write_all(b"new").expect("write");
        file.commit().expect("commit");
        let mode = std::fs::metadata(&target)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = AtomicFile::create(Path::new("/nonexistent-imgferry-dir/out.img"))
            .expect_err("no such directory");
        assert!(
            err.to_string().contains("/nonexistent-imgferry-dir"),
            "{err}"
        );
    }
}
