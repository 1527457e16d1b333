//! A map bounded in bytes that evicts roughly the least recently used entry,
//! for in-process caches (svc-product's catalog in memory).
//!
//! Eviction samples a few entries at random and drops the one read longest
//! ago, as Redis's `allkeys-lru` does: nearly the hit rate of an exact LRU,
//! without a linked list to update (and so a write lock to take) on every
//! read. A read only stores the current "clock" into its entry; the clock
//! moves on with every insert, so recency is measured in inserts.
//!
//! Not synchronised itself: wrap it in a lock. Reads (`get`) need only a
//! shared borrow.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many entries an eviction compares.
const SAMPLES: usize = 5;

struct Slot<K, V> {
    key: K,
    value: V,
    weight: usize,
    /// The clock when the entry was last inserted or read.
    used: AtomicU64,
}

pub struct SampledLru<K, V> {
    slots: Vec<Slot<K, V>>,
    index: HashMap<K, usize>,
    /// Sum of the weights held.
    bytes: usize,
    budget: usize,
    clock: AtomicU64,
    /// xorshift state for sampling.
    random: u64,
}

impl<K: Hash + Eq + Clone, V> SampledLru<K, V> {
    /// Bytes each entry costs beyond the weight its inserter gives: the slot
    /// and its index entry.
    pub const OVERHEAD: usize =
        std::mem::size_of::<Slot<K, V>>() + std::mem::size_of::<(K, usize)>() + 8;

    /// An empty map holding at most `budget` bytes of entries.
    pub fn new(budget: usize) -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(budget);
        Self {
            slots: Vec::new(),
            index: HashMap::new(),
            bytes: 0,
            budget,
            clock: AtomicU64::new(0),
            random: seed | 1,
        }
    }

    /// The value held for `key`, marked as just used.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = &self.slots[*self.index.get(key)?];
        slot.used
            .store(self.clock.load(Ordering::Relaxed), Ordering::Relaxed);
        Some(&slot.value)
    }

    /// The value held for `key`, without marking it used.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.get(key).map(|&at| &self.slots[at].value)
    }

    /// Holds `value` for `key` (replacing what was held), costing `weight`
    /// bytes plus [`Self::OVERHEAD`]; evicts other entries until it fits.
    /// An entry larger than the whole budget is not held (false).
    pub fn insert(&mut self, key: K, value: V, weight: usize) -> bool {
        let weight = weight.saturating_add(Self::OVERHEAD);
        self.remove(&key);
        if weight > self.budget {
            return false;
        }
        while self.bytes + weight > self.budget && !self.slots.is_empty() {
            let victim = self.victim();
            self.remove_at(victim);
        }
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        self.index.insert(key.clone(), self.slots.len());
        self.slots.push(Slot {
            key,
            value,
            weight,
            used: AtomicU64::new(now),
        });
        self.bytes += weight;
        true
    }

    /// Drops the entry for `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = *self.index.get(key)?;
        Some(self.remove_at(at))
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held, overheads included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove_at(&mut self, at: usize) -> V {
        let slot = self.slots.swap_remove(at);
        self.index.remove(&slot.key);
        if let Some(moved) = self.slots.get(at) {
            self.index.insert(moved.key.clone(), at);
        }
        self.bytes -= slot.weight;
        slot.value
    }

    /// The least recently used of a few entries picked at random.
    fn victim(&mut self) -> usize {
        let mut oldest = (u64::MAX, 0);
        for _ in 0..SAMPLES.min(self.slots.len()) {
            // xorshift64: cheap, and good enough to spread samples.
            self.random ^= self.random << 13;
            self.random ^= self.random >> 7;
            self.random ^= self.random << 17;
            let at = (self.random % self.slots.len() as u64) as usize;
            let used = self.slots[at].used.load(Ordering::Relaxed);
            if used < oldest.0 {
                oldest = (used, at);
            }
        }
        oldest.1
    }
}

impl<K, V> std::fmt::Debug for SampledLru<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampledLru")
            .field("len", &self.slots.len())
            .field("bytes", &self.bytes)
            .field("budget", &self.budget)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = SampledLru<u32, u32>;

    #[test]
    fn holds_replaces_and_removes() {
        let mut map = Map::new(10_000);
        assert!(map.insert(1, 10, 0));
        assert!(map.insert(2, 20, 0));
        assert!(map.insert(1, 11, 0));
        assert_eq!(
            (map.get(&1), map.peek(&2), map.get(&3)),
            (Some(&11), Some(&20), None)
        );
        assert_eq!(map.len(), 2);
        assert_eq!(map.bytes(), 2 * Map::OVERHEAD);
        assert_eq!(map.remove(&1), Some(11));
        assert_eq!((map.get(&1), map.get(&2)), (None, Some(&20)));
        assert_eq!(map.bytes(), Map::OVERHEAD);
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.bytes(), 0);
    }

    #[test]
    fn stays_within_its_budget_and_refuses_what_cannot_fit() {
        let budget = 100 * (Map::OVERHEAD + 50);
        let mut map = Map::new(budget);
        for key in 0..10_000 {
            assert!(map.insert(key, key, 50));
            assert!(map.bytes() <= budget);
        }
        assert_eq!(map.len(), 100);
        // Every entry still held is found at its own index.
        let held: Vec<u32> = (0..10_000).filter(|key| map.peek(key).is_some()).collect();
        assert_eq!(held.len(), 100);
        assert!(held.iter().all(|key| map.peek(key) == Some(key)));
        assert!(!map.insert(1, 1, budget));
        assert_eq!(map.peek(&1), None);
    }

    #[test]
    fn entries_in_use_outlive_the_ones_left_alone() {
        let mut map = Map::new(100 * (Map::OVERHEAD + 10));
        let hot: Vec<u32> = (0..10).collect();
        let mut misses = 0;
        for key in 0..5_000 {
            for hot_key in &hot {
                if map.get(hot_key).is_none() {
                    misses += 1;
                    map.insert(*hot_key, *hot_key, 10);
                }
            }
            map.insert(1_000 + key, key, 10);
        }
        // Evicting at random would miss a hot key about once per 100 inserts
        // each (about 500 times here); the sample of five almost never does.
        assert!(misses < hot.len() + 20, "{misses} misses of hot entries");
    }
}
