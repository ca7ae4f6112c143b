//! [`ImageWriter`]: every write `amend` makes to an image, counted, and the refcount
//! decrements it applies.
//!
//! Owns opening the image for writing under an exclusive lock (so a running VM or
//! another qemu-img cannot change it meanwhile), the positioned writes and syncs, and
//! the test hook that stops before a chosen write to simulate a crash. It does not
//! decide what to write or in which order; `amend` does.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::disk::qcow2::refcount::{get_refcount, read_block, set_refcount, RefcountTable};
use crate::disk::{DiskError, ReadAt, Result};

/// Refcount decrements collected before they are applied: bounds memory (16 MiB) on
/// images with millions of clusters to free.
pub const DECREMENT_BATCH: usize = 1 << 20;

/// The image opened for writing, with a count of the writes made.
pub struct ImageWriter<'a> {
    file: File,
    path: &'a Path,
    /// Test hook: the number of writes allowed before failing as if the process died.
    stop_after: Option<u64>,
    writes: u64,
    /// Whether a write was made since the last sync.
    unsynced: bool,
}

impl<'a> ImageWriter<'a> {
    /// Opens `path` for writing and takes an exclusive lock on the whole file, the same
    /// kind of lock QEMU takes, so neither can change the image under the other.
    /// `stop_after` is the crash-simulation test hook (see `AmendOptions`).
    pub fn open(path: &'a Path, stop_after: Option<u64>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| DiskError::io("open for writing", path, e))?;
        lock_exclusive(&file, path)?;
        Ok(Self {
            file,
            path,
            stop_after,
            writes: 0,
            unsynced: false,
        })
    }

    /// Writes `buf` at `offset`. With the test hook set, fails instead once the allowed
    /// number of writes was made, leaving the image as a crash at that point would.
    pub fn write_at(&mut self, buf: &[u8], offset: u64, what: &str) -> Result<()> {
        if self.stop_after == Some(self.writes) {
            return Err(DiskError::InvalidRequest(format!(
                "stopped before write {} ({what}) as the test hook asked",
                self.writes + 1
            )));
        }
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| DiskError::io("write", self.path, e))?;
        self.writes += 1;
        self.unsynced = true;
        Ok(())
    }

    /// Writes the bytes of `new` that differ from `old` (same length), as one write
    /// spanning the first to the last difference, at `offset`. Writing only what
    /// changed keeps unchanged sparse parts of a table unallocated.
    pub fn write_changes(&mut self, old: &[u8], new: &[u8], offset: u64, what: &str) -> Result<()> {
        let differs = |(a, b): (&u8, &u8)| a != b;
        let Some(first) = old.iter().zip(new).position(differs) else {
            return Ok(());
        };
        let last = old.iter().zip(new).rposition(differs).unwrap_or(first);
        self.write_at(&new[first..=last], offset + first as u64, what)
    }

    /// Makes every write so far durable before any later one (nothing to do, and no
    /// device cache flush, when nothing was written since the last sync).
    pub fn sync(&mut self) -> Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| DiskError::io("sync", self.path, e))?;
        self.unsynced = false;
        Ok(())
    }

    /// Writes made so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Tells the file system a freed cluster's bytes are no longer needed (best effort:
    /// a file system without hole punching keeps them, which is harmless).
    pub fn punch_hole(&self, offset: u64, len: u64) {
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return;
        };
        // SAFETY: fallocate on a descriptor we own has no memory-safety preconditions.
        unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            );
        }
    }

    /// Applies `decrements` (host cluster, amount) to the stored refcounts: sorts them,
    /// then reads, changes and writes each refcount block once. Returns the clusters
    /// whose refcount reached zero (their holes are punched). The caller must have
    /// synced the writes that removed the references first.
    pub fn apply_decrements(
        &mut self,
        source: &dyn ReadAt,
        table: &RefcountTable,
        decrements: &mut Vec<(u64, u64)>,
    ) -> Result<u64> {
        decrements.sort_unstable();
        let geometry = table.geometry();
        let cluster_size = geometry.cluster_size();
        let path = self.path;
        let bad = |detail: String| DiskError::malformed(path, "qcow2", detail);
        let mut freed = Vec::new();
        let mut rest = &decrements[..];
        while let Some(&(first, _)) = rest.first() {
            let (block_index, _) = geometry.locate(first);
            let group = rest
                .iter()
                .take_while(|(cluster, _)| geometry.locate(*cluster).0 == block_index)
                .count();
            let (now, later) = rest.split_at(group);
            rest = later;
            let Ok(Some((block_offset, _))) = table.block_for(first) else {
                return Err(bad(format!(
                    "cluster {first} is referenced but has no usable refcount block"
                )));
            };
            let old = read_block(source, path, block_offset, cluster_size)?;
            let mut block = old.clone();
            for &(cluster, by) in now {
                let (_, index) = geometry.locate(cluster);
                let current = get_refcount(&block, index, geometry.order());
                let Some(next) = current.checked_sub(by) else {
                    return Err(bad(format!(
                        "the refcount of cluster {cluster} is {current}, below the {by} \
                         references being removed"
                    )));
                };
                set_refcount(&mut block, index, geometry.order(), next);
                if next == 0 {
                    freed.push(cluster);
                }
            }
            self.write_changes(&old, &block, block_offset, "refcount block")?;
        }
        decrements.clear();
        self.sync()?;
        for &cluster in &freed {
            self.punch_hole(cluster * cluster_size, cluster_size);
        }
        Ok(freed.len() as u64)
    }
}

/// Takes an exclusive open-file-description lock on the whole file. QEMU holds shared
/// locks on a few bytes of every image it has open, so this fails while a VM or
/// qemu-img uses the image, and they fail while we hold it. File systems without
/// locking support are used unlocked.
fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    // SAFETY: an all-zero flock is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl with F_OFD_SETLK reads the flock we pass and nothing else.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(DiskError::Refused {
            path: path.to_owned(),
            detail: "the image is in use by another process".to_owned(),
            hint: Some("shut down the VM or stop the qemu-img using it, then retry".to_owned()),
        }),
        Some(libc::EINVAL) | Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) => Ok(()),
        _ => Err(DiskError::io("lock", path, err)),
    }
}
