//! [`BlockCache`]: a bounded least-recently-used cache of aligned blocks of a remote
//! image, and the readahead window that grows while reads are sequential.
//!
//! Owns only memory bookkeeping: which blocks are held, which is evicted first, and how
//! many blocks the next fetch should cover. It makes no request and knows no format.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Cached blocks, evicted least recently used first once `capacity` blocks are held.
pub(super) struct BlockCache {
    capacity: usize,
    blocks: HashMap<u64, (Arc<[u8]>, u64)>,
    /// Last-use tick -> block index, oldest first.
    by_use: BTreeMap<u64, u64>,
    tick: u64,
}

impl BlockCache {
    /// A cache holding at most `capacity` blocks (at least one).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            blocks: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
        }
    }

    /// The block, marked as just used.
    pub(super) fn get(&mut self, index: u64) -> Option<Arc<[u8]>> {
        let (data, used) = self.blocks.get_mut(&index)?;
        self.by_use.remove(used);
        self.tick += 1;
        *used = self.tick;
        self.by_use.insert(self.tick, index);
        Some(Arc::clone(data))
    }

    /// Whether the block is held (without touching its age).
    pub(super) fn contains(&self, index: u64) -> bool {
        self.blocks.contains_key(&index)
    }

    /// Adds a block, evicting the least recently used ones beyond the capacity.
    pub(super) fn insert(&mut self, index: u64, data: Arc<[u8]>) {
        self.tick += 1;
        if let Some((_, used)) = self.blocks.insert(index, (data, self.tick)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(self.tick, index);
        while self.blocks.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.blocks.remove(&oldest);
        }
    }
}

/// How many blocks a fetch covers: one for a random read, doubling up to `max` while
/// each fetch starts where the previous one ended.
pub(super) struct Readahead {
    max: u64,
    window: u64,
    next: Option<u64>,
}

impl Readahead {
    pub(super) fn new(max: u64) -> Self {
        Self {
            max: max.max(1),
            window: 1,
            next: None,
        }
    }

    /// The largest window.
    pub(super) fn max(&self) -> u64 {
        self.max
    }

    /// The window for a fetch starting at block `first`.
    pub(super) fn window_at(&mut self, first: u64) -> u64 {
        self.window = if self.next == Some(first) {
            (self.window * 2).min(self.max)
        } else {
            1
        };
        self.window
    }

    /// Records that a fetch ended before block `end`.
    pub(super) fn fetched_until(&mut self, end: u64) {
        self.next = Some(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(byte: u8) -> Arc<[u8]> {
        Arc::from(vec![byte; 4])
    }

    #[test]
    fn least_recently_used_block_is_evicted_first() {
        let mut cache = BlockCache::new(2);
        cache.insert(1, block(1));
        cache.insert(2, block(2));
        assert_eq!(cache.get(1).unwrap()[0], 1); // 2 is now the oldest
        cache.insert(3, block(3));
        assert!(cache.contains(1) && cache.contains(3) && !cache.contains(2));
        cache.insert(3, block(4)); // replacing does not grow it
        assert!(cache.contains(1), "replacing a block evicted another");
        assert_eq!(cache.get(3).unwrap()[0], 4);
    }

    #[test]
    fn readahead_doubles_while_sequential_and_resets_on_a_jump() {
        let mut ahead = Readahead::new(8);
        let mut windows = Vec::new();
        let mut at = 0;
        for _ in 0..5 {
            let w = ahead.window_at(at);
            windows.push(w);
            at += w;
            ahead.fetched_until(at);
        }
        assert_eq!(windows, [1, 2, 4, 8, 8]);
        assert_eq!(ahead.window_at(1000), 1);
    }
}
