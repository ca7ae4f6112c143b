//! [`RemoteImage`]: an image's data in Glance read at random offsets, behind the same
//! [`ReadAt`] trait the disk and guest layers read local files through.
//!
//! Each miss fetches whole aligned blocks with one `Range` request (see [`fetch`]); the
//! blocks go into a bounded LRU cache ([`cache`]), and while misses continue where the
//! previous fetch ended the request grows (readahead, doubling up to a cap), so a walk of
//! a table or a file costs few requests. Requests go through the source's [`Glance`]
//! session: token renewal ahead of expiry and the replay after a 401 are the session's,
//! retries with backoff are [`fetch`]'s. Requests and bytes are counted for the report.
//!
//! Memory is bounded by the cache cap plus one fetch (at most `readahead_blocks`
//! blocks). Requests are serialised by one lock: the readers above (a qcow2 walk, the
//! native guest backend) issue one read at a time. Whether the store serves ranges at
//! all is [`probe_range`]'s question, asked once before a reader is opened. The data
//! itself is read once, front to back, by [`SequentialBody`] (one GET, resumed).

mod cache;
mod error;
mod fetch;
mod probe;
mod sequential;

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use crate::cloud::glance::{Glance, Image};
use crate::cloud::http::display_url;
use crate::disk::ReadAt;
use crate::transfer::retry::RetryPolicy;
use cache::{BlockCache, Readahead};
pub use error::RemoteError;
pub use probe::{probe_range, RangeSupport};
pub use sequential::SequentialBody;

/// Smallest block accepted: below a page, requests would cost more than they carry.
const MIN_BLOCK_SIZE: usize = 4096;
/// Largest block accepted: one block is the least one miss fetches.
const MAX_BLOCK_SIZE: usize = 64 << 20;

/// Cache and request sizes of a [`RemoteImage`].
#[derive(Debug, Clone, Copy)]
pub struct RemoteOptions {
    /// Bytes per cached block; requests start and end on block boundaries (clamped to
    /// 4 KiB..=64 MiB).
    pub block_size: usize,
    /// Most bytes held in the cache (at least one block).
    pub cache_bytes: u64,
    /// Most blocks one request fetches while reads are sequential (at most the cache's
    /// block count).
    pub readahead_blocks: u64,
    pub retry: RetryPolicy,
}

impl Default for RemoteOptions {
    /// 1 MiB blocks, a 32 MiB cache, readahead up to 8 MiB: qcow2 L2 tables and ext4
    /// metadata are a few KiB to a MiB each, so one block usually answers many reads.
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            cache_bytes: 32 << 20,
            readahead_blocks: 8,
            retry: RetryPolicy::default(),
        }
    }
}

/// What a [`RemoteImage`] has cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Requests repeated after a transient failure.
    pub retries: u64,
    /// Block lookups answered by the cache.
    pub cache_hits: u64,
    /// Blocks fetched from the server.
    pub blocks_fetched: u64,
}

/// An image's data in Glance, readable at any offset; see the module doc.
pub struct RemoteImage {
    image: String,
    size: u64,
    url: String,
    block_size: u64,
    retry: RetryPolicy,
    inner: Mutex<Inner>,
}

struct Inner {
    glance: Glance,
    cache: BlockCache,
    ahead: Readahead,
    stats: RemoteStats,
}

impl std::fmt::Debug for RemoteImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteImage")
            .field("url", &self.url)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl RemoteImage {
    /// A reader of `image`'s data through `glance` (its record must give the size).
    /// Nothing is requested until the first read.
    pub fn new(glance: Glance, image: &Image, options: RemoteOptions) -> Result<Self, RemoteError> {
        let size = image.size.ok_or_else(|| RemoteError::SizeUnknown {
            image: image.id.clone(),
        })?;
        let block_size = options.block_size.clamp(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE);
        let capacity = usize::try_from(options.cache_bytes / block_size as u64)
            .unwrap_or(usize::MAX)
            .max(1);
        let readahead = options.readahead_blocks.clamp(1, capacity as u64);
        let url = format!("{}images/{}/file", display_url(glance.root()), image.id);
        Ok(Self {
            image: image.id.clone(),
            size,
            url,
            block_size: block_size as u64,
            retry: options.retry,
            inner: Mutex::new(Inner {
                glance,
                cache: BlockCache::new(capacity),
                ahead: Readahead::new(readahead),
                stats: RemoteStats::default(),
            }),
        })
    }

    /// Requests and bytes so far.
    pub fn stats(&self) -> RemoteStats {
        self.lock().stats
    }

    /// Gives the Glance connection back (e.g. for the sequential download that follows).
    pub fn into_glance(self) -> Glance {
        self.inner
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .glance
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fills `buf` from `offset`: cached blocks copied, missing ones fetched.
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), RemoteError> {
        let past_end = || RemoteError::PastEnd {
            image: self.image.clone(),
            offset,
            len: buf.len() as u64,
            size: self.size,
        };
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= self.size)
            .ok_or_else(past_end)?;
        let mut inner = self.lock();
        let mut pos = offset;
        while pos < end {
            let index = pos / self.block_size;
            let block = match inner.cache.get(index) {
                Some(block) => {
                    inner.stats.cache_hits += 1;
                    block
                }
                None => self.fetch_from(&mut inner, index, (end - 1) / self.block_size)?,
            };
            let within = (pos - index * self.block_size) as usize;
            let n = (block.len() - within).min((end - pos) as usize);
            let at = (pos - offset) as usize;
            buf[at..at + n].copy_from_slice(&block[within..within + n]);
            pos += n as u64;
        }
        Ok(())
    }

    /// Fetches block `first` and the missing blocks after it up to `last_needed`, or as
    /// far as the readahead window reaches, in one request; caches them all and returns
    /// block `first`.
    fn fetch_from(
        &self,
        inner: &mut Inner,
        first: u64,
        last_needed: u64,
    ) -> Result<Arc<[u8]>, RemoteError> {
        let blocks_in_image = self.size.div_ceil(self.block_size);
        let window = inner.ahead.window_at(first);
        let wanted = window.max(last_needed - first + 1).min(inner.ahead_cap());
        let mut count = 1;
        while count < wanted
            && first + count < blocks_in_image
            && !inner.cache.contains(first + count)
        {
            count += 1;
        }
        let start = first * self.block_size;
        let end = ((first + count) * self.block_size).min(self.size);
        let target = fetch::Target {
            image: &self.image,
            size: self.size,
            retry: &self.retry,
        };
        let Inner { glance, stats, .. } = inner;
        let data = fetch::fetch(glance, &target, start, (end - start) as usize, stats)?;
        inner.ahead.fetched_until(first + count);
        inner.stats.blocks_fetched += count;
        let mut blocks = data.chunks(self.block_size as usize);
        let head: Arc<[u8]> = Arc::from(blocks.next().unwrap_or_default());
        inner.cache.insert(first, Arc::clone(&head));
        for (i, block) in (first + 1..).zip(blocks) {
            inner.cache.insert(i, Arc::from(block));
        }
        Ok(head)
    }
}

impl Inner {
    /// Most blocks one request may cover.
    fn ahead_cap(&self) -> u64 {
        self.ahead.max()
    }
}

impl ReadAt for RemoteImage {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read(buf, offset).map_err(io::Error::from)
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
