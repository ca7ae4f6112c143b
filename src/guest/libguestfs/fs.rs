//! [`GuestFs`] for [`Session`]: each primitive is one libguestfs call on a path the
//! guest-neutral code already resolved.
//!
//! Owns: the mapping from primitives to libguestfs calls (what removes, truncates or
//! replaces a file scrubs it first, see [`super::scrub`]). Must not: resolve paths or
//! follow symlinks on its own (the daemon would follow them inside its chroot, but
//! confinement must not depend on that).

use super::{call, ffi, inspect, Session};
use crate::guest::{
    BlockId, FileKind, GuestError, GuestFs, Metadata, OsInfo, Resolved, Result, SkippedMount,
};

/// `st_mode` file type bits (the same on every Linux filesystem).
const S_IFMT: i64 = 0o170_000;
const S_IFREG: i64 = 0o100_000;
const S_IFDIR: i64 = 0o040_000;
const S_IFLNK: i64 = 0o120_000;

/// Names per `lstatnslist` call: the reply must fit libguestfs's 4 MiB message limit
/// (a stat is ~200 bytes on the wire).
const LSTAT_BATCH: usize = 1000;

fn metadata(stat: &ffi::StatNS) -> Metadata {
    let kind = match stat.st_mode & S_IFMT {
        S_IFREG => FileKind::File,
        S_IFDIR => FileKind::Directory,
        S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    };
    Metadata {
        kind,
        size: u64::try_from(stat.st_size).unwrap_or(0),
        mode: u32::try_from(stat.st_mode & 0o7777).unwrap_or(0),
    }
}

impl GuestFs for Session {
    fn inspect(&mut self) -> Result<Vec<OsInfo>> {
        if let Some(found) = &self.inspected {
            return Ok(found.clone());
        }
        let found = match inspect::quick_inspect(self)? {
            Some(found) => found,
            None => inspect::inspect(&self.handle)?,
        };
        if found.is_empty() {
            return Err(GuestError::NoOperatingSystem {
                image: self.image.clone(),
            });
        }
        self.inspected = Some(found.clone());
        Ok(found)
    }

    fn mount_os(&mut self, os: &OsInfo) -> Result<Vec<SkippedMount>> {
        let skipped = inspect::mount(&self.handle, os)?;
        self.note_copy_on_write(os, &skipped);
        Ok(skipped)
    }

    fn unmount_all(&mut self) -> Result<()> {
        call("umount_all", "/", self.handle.umount_all())
    }

    fn lstat(&mut self, path: &Resolved) -> Result<Option<Metadata>> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            let stat = call("lstat", "/", self.handle.lstatns("/"))?;
            return Ok(Some(metadata(&stat)));
        };
        // lstatnslist reports a missing name with st_ino -1 instead of failing.
        let stats = call(
            "lstat",
            path.as_str(),
            self.handle.lstatnslist(parent.as_str(), &[name]),
        )?;
        Ok(stats.first().filter(|stat| stat.st_ino != -1).map(metadata))
    }

    fn read_link(&mut self, path: &Resolved) -> Result<String> {
        call(
            "readlink",
            path.as_str(),
            self.handle.readlink(path.as_str()),
        )
    }

    fn list_dir(&mut self, path: &Resolved) -> Result<Vec<String>> {
        let mut names = call("ls", path.as_str(), self.handle.ls(path.as_str()))?;
        names.sort();
        Ok(names)
    }

    fn read_dir(&mut self, path: &Resolved) -> Result<Vec<(String, Metadata)>> {
        let names = self.list_dir(path)?;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut found = Vec::with_capacity(names.len());
        // One lstatnslist per batch instead of one lstat per name.
        for (chunk, batch) in names.chunks(LSTAT_BATCH).zip(refs.chunks(LSTAT_BATCH)) {
            let stats = call(
                "lstat",
                path.as_str(),
                self.handle.lstatnslist(path.as_str(), batch),
            )?;
            for (name, stat) in chunk.iter().zip(&stats) {
                if stat.st_ino != -1 {
                    found.push((name.clone(), metadata(stat)));
                }
            }
        }
        Ok(found)
    }

    fn read(&mut self, path: &Resolved, limit: u64) -> Result<Vec<u8>> {
        let content = call("read", path.as_str(), self.handle.read_file(path.as_str()))?;
        if content.len() as u64 > limit {
            return Err(GuestError::TooLarge {
                path: path.to_string(),
                size: content.len() as u64,
                limit,
            });
        }
        Ok(content)
    }

    fn write(&mut self, path: &Resolved, content: &[u8]) -> Result<()> {
        self.scrub_file(path.as_str())?;
        call(
            "write",
            path.as_str(),
            self.handle.write(path.as_str(), content),
        )
    }

    fn truncate(&mut self, path: &Resolved) -> Result<()> {
        self.scrub_file(path.as_str())?;
        call(
            "truncate",
            path.as_str(),
            self.handle.truncate(path.as_str()),
        )
    }

    fn remove_file(&mut self, path: &Resolved) -> Result<()> {
        self.scrub_file(path.as_str())?;
        call("rm", path.as_str(), self.handle.rm(path.as_str()))
    }

    fn remove_tree(&mut self, path: &Resolved) -> Result<()> {
        self.scrub_tree(path.as_str())?;
        call("rm_rf", path.as_str(), self.handle.rm_rf(path.as_str()))
    }

    fn mkdir(&mut self, path: &Resolved) -> Result<()> {
        call("mkdir", path.as_str(), self.handle.mkdir(path.as_str()))
    }

    fn symlink(&mut self, target: &str, path: &Resolved) -> Result<()> {
        call(
            "ln_s",
            path.as_str(),
            self.handle.ln_s(target, path.as_str()),
        )
    }

    fn block_ids(&mut self) -> Result<Vec<BlockId>> {
        self.list_block_ids()
    }

    fn set_fs_uuid(&mut self, device: &str, uuid: &str) -> Result<()> {
        self.set_uuid_of(device, uuid)
    }

    fn renew_lvm_uuids(&mut self) -> Result<()> {
        self.renew_lvm()
    }
}
