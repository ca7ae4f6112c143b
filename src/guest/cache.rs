//! [`ReadCache`]: a [`GuestFs`] adaptor that remembers metadata, symlink targets and
//! directory listings while nothing changes, so planning (dozens of globs resolving the
//! same `/var/log`, `/etc`, ...) costs each backend round trip once.
//!
//! Owns: that memo. Any change made through it forgets everything (correct by
//! construction; planning makes none). Must not: cache file contents (files are read
//! once) or outlive changes made behind its back.

use std::collections::HashMap;

use super::{BlockId, GuestFs, Metadata, OsInfo, Resolved, Result, SkippedMount};

/// Read-side memo over another guest.
pub struct ReadCache<'a> {
    inner: &'a mut dyn GuestFs,
    stats: HashMap<Resolved, Option<Metadata>>,
    links: HashMap<Resolved, String>,
    dirs: HashMap<Resolved, Vec<(String, Metadata)>>,
}

impl<'a> ReadCache<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a mut dyn GuestFs) -> Self {
        Self {
            inner,
            stats: HashMap::new(),
            links: HashMap::new(),
            dirs: HashMap::new(),
        }
    }

    fn forget(&mut self) {
        self.stats.clear();
        self.links.clear();
        self.dirs.clear();
    }
}

impl GuestFs for ReadCache<'_> {
    fn inspect(&mut self) -> Result<Vec<OsInfo>> {
        self.inner.inspect()
    }
    fn mount_os(&mut self, os: &OsInfo) -> Result<Vec<SkippedMount>> {
        self.forget();
        self.inner.mount_os(os)
    }
    fn unmount_all(&mut self) -> Result<()> {
        self.forget();
        self.inner.unmount_all()
    }
    fn lstat(&mut self, path: &Resolved) -> Result<Option<Metadata>> {
        if let Some(known) = self.stats.get(path) {
            return Ok(*known);
        }
        let found = self.inner.lstat(path)?;
        self.stats.insert(path.clone(), found);
        Ok(found)
    }
    fn read_link(&mut self, path: &Resolved) -> Result<String> {
        if let Some(target) = self.links.get(path) {
            return Ok(target.clone());
        }
        let target = self.inner.read_link(path)?;
        self.links.insert(path.clone(), target.clone());
        Ok(target)
    }
    fn list_dir(&mut self, path: &Resolved) -> Result<Vec<String>> {
        Ok(self
            .read_dir(path)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }
    fn read_dir(&mut self, path: &Resolved) -> Result<Vec<(String, Metadata)>> {
        if let Some(entries) = self.dirs.get(path) {
            return Ok(entries.clone());
        }
        let entries = self.inner.read_dir(path)?;
        for (name, meta) in &entries {
            if super::path::is_valid_name(name) {
                self.stats.insert(path.child(name), Some(*meta));
            }
        }
        self.dirs.insert(path.clone(), entries.clone());
        Ok(entries)
    }
    fn read(&mut self, path: &Resolved, limit: u64) -> Result<Vec<u8>> {
        self.inner.read(path, limit)
    }
    fn write(&mut self, path: &Resolved, content: &[u8]) -> Result<()> {
        self.forget();
        self.inner.write(path, content)
    }
    fn truncate(&mut self, path: &Resolved) -> Result<()> {
        self.forget();
        self.inner.truncate(path)
    }
    fn remove_file(&mut self, path: &Resolved) -> Result<()> {
        self.forget();
        self.inner.remove_file(path)
    }
    fn remove_tree(&mut self, path: &Resolved) -> Result<()> {
        self.forget();
        self.inner.remove_tree(path)
    }
    fn mkdir(&mut self, path: &Resolved) -> Result<()> {
        self.forget();
        self.inner.mkdir(path)
    }
    fn symlink(&mut self, target: &str, path: &Resolved) -> Result<()> {
        self.forget();
        self.inner.symlink(target, path)
    }
    fn block_ids(&mut self) -> Result<Vec<BlockId>> {
        self.inner.block_ids()
    }
    fn set_fs_uuid(&mut self, device: &str, uuid: &str) -> Result<()> {
        self.forget();
        self.inner.set_fs_uuid(device, uuid)
    }
    fn renew_lvm_uuids(&mut self) -> Result<()> {
        self.forget();
        self.inner.renew_lvm_uuids()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::memory::MemoryGuest;
    use crate::guest::{Follow, GuestFsExt};

    #[test]
    fn answers_like_the_guest_and_forgets_on_change() {
        let mut guest = MemoryGuest::new("debian")
            .file("/var/log/a.log", "a")
            .link("/var/run", "/run")
            .file("/run/utmp", "u");
        let mut cache = ReadCache::new(&mut guest);
        let logs = cache.glob("/var/log/*.log").unwrap();
        assert_eq!(logs.len(), 1);
        let utmp = cache.resolve("/var/run/utmp", Follow::ParentsOnly).unwrap();
        assert_eq!(utmp.as_str(), "/run/utmp");
        cache.remove_file(&logs[0].0).unwrap();
        assert!(cache.glob("/var/log/*.log").unwrap().is_empty());
    }
}
