//! Scrubbing in the appliance: before a file is removed, truncated or replaced, its
//! content is overwritten with zeros in place (`pwrite`, which never truncates) and
//! synced, so the blocks the filesystem then frees hold zeros. The sync must come
//! before the unlink: the kernel drops the dirty pages of a deleted file unwritten.
//!
//! Sure on filesystems that overwrite in place (ext2/3/4 in `data=ordered` or
//! `data=writeback` mode, XFS without shared extents); not for old copies in an ext4
//! journal (inline data, `data=journal`): the native backend also zeroes the journal's
//! log, this one cannot. On btrfs (copy-on-write) overwriting only adds copies (each
//! sync rewrites the metadata leaves holding small files inline, measured: a host key
//! found 32 times afterwards instead of 2), so nothing is scrubbed there and the paths
//! are listed for a warning ([`Session::unscrubbed`]).
//! Owns the policy switch ([`Session::set_scrub`], on by default) and the count of
//! bytes zeroed. Must not: follow symlinks (only what `lstat` says is a regular file
//! is written), or scrub a file that has other links (its data lives on).

use super::{call, ffi, Session};
use crate::guest::{OsInfo, Result, SkippedMount};

/// Zeros sent per `pwrite`: well under libguestfs's 4 MiB message limit.
const CHUNK: usize = 2 << 20;
/// Names per `lstatnslist` call (as in `fs`).
const LSTAT_BATCH: usize = 1000;
const S_IFMT: i64 = 0o170_000;
const S_IFREG: i64 = 0o100_000;
const S_IFDIR: i64 = 0o040_000;

/// What a stat says about scrubbing the file.
enum Kind {
    /// A regular file with one link, of this many bytes.
    Scrub(u64),
    Directory,
    Skip,
}

fn kind(stat: &ffi::StatNS) -> Kind {
    match stat.st_mode & S_IFMT {
        S_IFREG if stat.st_nlink == 1 && stat.st_size > 0 => {
            Kind::Scrub(u64::try_from(stat.st_size).unwrap_or(0))
        }
        S_IFDIR => Kind::Directory,
        _ => Kind::Skip,
    }
}

impl Session {
    /// Turns scrubbing on (the default) or off for the changes that follow.
    pub fn set_scrub(&mut self, enabled: bool) {
        self.scrub = enabled;
    }

    /// Bytes of file content overwritten with zeros so far.
    pub fn scrubbed_bytes(&self) -> u64 {
        self.scrubbed
    }

    /// Paths removed, truncated or replaced without scrubbing, because they are on a
    /// copy-on-write filesystem.
    pub fn unscrubbed(&self) -> &[String] {
        &self.unscrubbed
    }

    /// Records which of `os`'s mounted filesystems are copy-on-write (called after
    /// mounting; a failed probe counts as copy-on-write: never claim a scrub).
    pub(super) fn note_copy_on_write(&mut self, os: &OsInfo, skipped: &[SkippedMount]) {
        self.mount_kinds.clear();
        for (mountpoint, device) in &os.mountpoints {
            if skipped.iter().any(|s| &s.mountpoint == mountpoint) {
                continue;
            }
            let fstype = self.handle.vfs_type(device).unwrap_or_default();
            let copy_on_write = fstype.is_empty() || fstype == "btrfs";
            self.mount_kinds.push((mountpoint.clone(), copy_on_write));
        }
    }

    /// Whether `path` lives on a copy-on-write filesystem (the one mounted at the
    /// longest mountpoint holding it).
    fn on_copy_on_write(&self, path: &str) -> bool {
        let holds = |m: &str| {
            m == "/" || path == m || path.starts_with(&format!("{}/", m.trim_end_matches('/')))
        };
        self.mount_kinds
            .iter()
            .filter(|(m, _)| holds(m))
            .max_by_key(|(m, _)| m.len())
            .is_some_and(|(_, copy_on_write)| *copy_on_write)
    }

    /// Zeroes `path` when it is a regular file with one link, then syncs. Missing or
    /// other files are left alone (the operation that follows reports them).
    pub(super) fn scrub_file(&mut self, path: &str) -> Result<()> {
        if !self.scrub {
            return Ok(());
        }
        if self.on_copy_on_write(path) {
            self.unscrubbed.push(path.to_owned());
            return Ok(());
        }
        let Ok(stat) = self.handle.lstatns(path) else {
            return Ok(());
        };
        if let Kind::Scrub(size) = kind(&stat) {
            self.zero(path, size)?;
            call("sync", path, self.handle.sync())?;
        }
        Ok(())
    }

    /// Zeroes every regular file with one link at or below `path`, then syncs once.
    /// Directories are entered through their names only (no symlink is followed).
    pub(super) fn scrub_tree(&mut self, path: &str) -> Result<()> {
        if !self.scrub {
            return Ok(());
        }
        if self.on_copy_on_write(path) {
            self.unscrubbed.push(path.to_owned());
            return Ok(());
        }
        let Ok(top) = self.handle.lstatns(path) else {
            return Ok(());
        };
        let mut wrote = false;
        let mut pending = Vec::new();
        match kind(&top) {
            Kind::Scrub(size) => {
                self.zero(path, size)?;
                wrote = true;
            }
            Kind::Directory => pending.push(path.to_owned()),
            Kind::Skip => {}
        }
        while let Some(dir) = pending.pop() {
            let names = call("ls", dir.as_str(), self.handle.ls(&dir))?;
            for batch in names.chunks(LSTAT_BATCH) {
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                let stats = call("lstat", dir.as_str(), self.handle.lstatnslist(&dir, &refs))?;
                for (name, stat) in batch.iter().zip(&stats) {
                    let child = format!("{}/{name}", dir.trim_end_matches('/'));
                    match kind(stat) {
                        Kind::Scrub(size) if stat.st_ino != -1 => {
                            self.zero(&child, size)?;
                            wrote = true;
                        }
                        Kind::Directory if stat.st_ino != -1 => pending.push(child),
                        _ => {}
                    }
                }
            }
        }
        if wrote {
            call("sync", path, self.handle.sync())?;
        }
        Ok(())
    }

    /// Overwrites the first `size` bytes of regular file `path` with zeros.
    fn zero(&mut self, path: &str, size: u64) -> Result<()> {
        let zeros = vec![0u8; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK))];
        let mut done = 0u64;
        while done < size {
            let take = (size - done).min(zeros.len() as u64) as usize;
            let offset = i64::try_from(done).unwrap_or(i64::MAX);
            let written = call(
                "pwrite",
                path,
                self.handle.pwrite(path, &zeros[..take], offset),
            )?;
            if written == 0 {
                break; // the file shrank under us: nothing left to overwrite
            }
            done += written as u64;
        }
        self.scrubbed += done;
        Ok(())
    }
}
