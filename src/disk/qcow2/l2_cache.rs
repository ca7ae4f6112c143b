//! [`L2Cache`]: the bounded least-recently-used cache of L2 tables behind the layout.
//!
//! Owns eviction only: it stores immutable tables by host offset and never reads the
//! file, so a cached table is exactly what [`super::layout::read_l2_table`] returned.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Least-recently-used L2 tables by host offset, at most `capacity` of them.
pub(super) struct L2Cache {
    tables: HashMap<u64, (Arc<[u64]>, u64)>,
    by_age: BTreeMap<u64, u64>,
    clock: u64,
    capacity: usize,
}

impl L2Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            tables: HashMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
            capacity,
        }
    }

    pub(super) fn get(&mut self, offset: u64) -> Option<Arc<[u64]>> {
        let (table, age) = self.tables.get_mut(&offset)?;
        self.by_age.remove(age);
        self.clock += 1;
        *age = self.clock;
        self.by_age.insert(self.clock, offset);
        Some(Arc::clone(table))
    }

    pub(super) fn insert(&mut self, offset: u64, table: Arc<[u64]>) {
        if self.tables.contains_key(&offset) {
            return;
        }
        while self.tables.len() >= self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.tables.remove(&oldest);
        }
        self.clock += 1;
        self.by_age.insert(self.clock, offset);
        self.tables.insert(offset, (table, self.clock));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_the_least_recently_used_table() {
        let mut cache = L2Cache::new(2);
        cache.insert(1, Arc::from(vec![1u64]));
        cache.insert(2, Arc::from(vec![2u64]));
        assert!(cache.get(1).is_some()); // 2 is now the oldest
        cache.insert(3, Arc::from(vec![3u64]));
        assert!(cache.get(2).is_none());
        assert!(cache.get(1).is_some());
        assert!(cache.get(3).is_some());
        assert_eq!(cache.tables.len(), 2);
        assert_eq!(cache.by_age.len(), 2);
    }
}
