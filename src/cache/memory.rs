//! In-memory block cache: an LRU of blocks bounded by their total size in bytes.
//!
//! The bound is the mount's whole data-memory budget (`max_memory`), not just the cache: a fetch reserves its
//! block's bytes before its GET starts ([`Reservation`]), the reservation evicts least recently used blocks to
//! make room, and it turns into the cached block when the data arrives. So cached blocks plus the buffers of
//! GETs in flight never exceed the budget. Prefetches use [`MemoryBlockCache::try_reserve`] and are skipped when
//! reservations alone would pass the budget; a read the kernel is waiting for always reserves
//! ([`MemoryBlockCache::reserve`]), so it can overshoot only by the blocks of reads in progress.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use super::BlockKey;

#[derive(Debug)]
struct Inner {
    blocks: LruCache<BlockKey, Bytes>,
    /// Bytes of cached blocks.
    bytes: u64,
    /// Bytes reserved by fetches in flight.
    reserved: u64,
    /// For each cached block fetched in a run, the run's blocks: they share one buffer.
    runs: HashMap<BlockKey, Arc<[BlockKey]>>,
}

impl Inner {
    /// Evict least recently used blocks until `extra` more bytes fit, as far as blocks can be evicted. Evicting
    /// a block of a run evicts the rest of the run: its buffer is freed only when every block is gone, and a
    /// block left behind would keep the whole buffer alive while the budget counts just the block.
    fn make_room(&mut self, extra: u64, max_bytes: u64) {
        while self.bytes + self.reserved + extra > max_bytes {
            let Some((key, evicted)) = self.blocks.pop_lru() else {
                break;
            };
            self.bytes -= evicted.len() as u64;
            if let Some(run) = self.runs.remove(&key) {
                for sibling in run.iter() {
                    self.remove(sibling);
                }
            }
        }
    }

    fn remove(&mut self, key: &BlockKey) {
        if let Some(block) = self.blocks.pop(key) {
            self.bytes -= block.len() as u64;
        }
        self.runs.remove(key);
    }
}

#[derive(Debug)]
pub struct MemoryBlockCache {
    inner: Mutex<Inner>,
    max_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl MemoryBlockCache {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                blocks: LruCache::unbounded(),
                bytes: 0,
                reserved: 0,
                runs: HashMap::new(),
            }),
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let found = self.lock().blocks.get(key).cloned();
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Whether `key` is cached, without counting a hit or touching its recency.
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.lock().blocks.contains(key)
    }

    /// Insert a block, evicting least recently used blocks to stay within the budget. A block larger than the
    /// whole budget is not kept.
    pub fn put(&self, key: BlockKey, data: Bytes) {
        let size = data.len() as u64;
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        inner.runs.remove(&key);
        if let Some(old) = inner.blocks.put(key, data) {
            inner.bytes -= old.len() as u64;
        }
        inner.bytes += size;
        inner.make_room(0, self.max_bytes);
    }

    /// Reserve `bytes` for a fetch the kernel is waiting for, evicting blocks to make room; always granted.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Reservation {
        let mut inner = self.lock();
        inner.make_room(bytes, self.max_bytes);
        inner.reserved += bytes;
        Reservation {
            cache: self.clone(),
            bytes,
        }
    }

    /// Reserve `bytes` for a prefetch, unless fetches in flight already hold so much of the budget that it
    /// would not fit even with every cached block evicted.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut inner = self.lock();
        if inner.reserved + bytes > self.max_bytes {
            return None;
        }
        inner.make_room(bytes, self.max_bytes);
        inner.reserved += bytes;
        Some(Reservation {
            cache: self.clone(),
            bytes,
        })
    }

    /// Drop a block (a stream's reader has passed it), so its buffer can serve the next fetch.
    pub fn remove(&self, key: &BlockKey) {
        self.lock().remove(key);
    }

    /// Mark the cached blocks among `keys` as one run: slices of one buffer, evicted together.
    pub fn link_run(&self, keys: &[BlockKey]) {
        if keys.len() < 2 {
            return;
        }
        let run: Arc<[BlockKey]> = keys.into();
        let mut inner = self.lock();
        for key in keys {
            if inner.blocks.contains(key) {
                inner.runs.insert(key.clone(), run.clone());
            }
        }
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes reserved by fetches in flight.
    pub fn reserved_bytes(&self) -> u64 {
        self.lock().reserved
    }

    /// Drop every block.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.blocks.clear();
        inner.runs.clear();
        inner.bytes = 0;
    }

    /// Bytes currently held.
    pub fn used_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

/// Budget held by one fetch in flight; released when dropped (the fetch finished, failed or was aborted).
#[derive(Debug)]
pub struct Reservation {
    cache: Arc<MemoryBlockCache>,
    bytes: u64,
}

impl Reservation {
    /// Cache the fetched block and release the reservation in one step, so the budget never counts it twice.
    pub fn fulfil(mut self, key: BlockKey, data: Bytes) {
        {
            let mut inner = self.cache.lock();
            inner.reserved -= self.bytes;
        }
        self.bytes = 0;
        self.cache.put(key, data);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.cache.lock().reserved -= self.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u64) -> BlockKey {
        BlockKey {
            checksum: "c".into(),
            object_size: 100,
            span: 4096,
            index,
        }
    }

    #[test]
    fn reservations_and_blocks_share_one_budget() {
        let cache = Arc::new(MemoryBlockCache::new(10));
        cache.put(key(0), Bytes::from_static(b"aaaa"));
        cache.put(key(1), Bytes::from_static(b"bbbb"));
        let first = cache.try_reserve(4).expect("room after evicting a block");
        assert!(cache.used_bytes() + cache.reserved_bytes() <= 10);
        assert!(!cache.contains(&key(0)), "the least recently used block made room");
        let second = cache.try_reserve(4).expect("room after evicting the other block");
        assert_eq!(cache.used_bytes(), 0);
        assert!(
            cache.try_reserve(4).is_none(),
            "prefetches never reserve past the budget"
        );
        let forced = cache.reserve(4);
        assert_eq!(cache.reserved_bytes(), 12, "a read being waited for is always granted");
        drop(forced);
        first.fulfil(key(2), Bytes::from_static(b"cccc"));
        assert!(cache.contains(&key(2)));
        assert_eq!(cache.reserved_bytes(), 4);
        drop(second);
        assert_eq!(cache.reserved_bytes(), 0);
        assert_eq!(cache.used_bytes(), 4);
    }

    #[test]
    fn the_cache_never_exceeds_its_byte_bound() {
        let cache = Arc::new(MemoryBlockCache::new(1000));
        let mut reservations = Vec::new();
        for index in 0..500u64 {
            let size = 1 + (index * 37 % 200);
            cache.put(key(index), Bytes::from(vec![0u8; size as usize]));
            if index % 3 == 0 {
                reservations.extend(cache.try_reserve(size));
            }
            if index % 7 == 0 {
                reservations.clear();
            }
            assert!(cache.used_bytes() + cache.reserved_bytes() <= 1000, "at block {index}");
        }
    }

    #[test]
    fn evicts_least_recently_used_blocks_to_stay_within_budget() {
        let cache = MemoryBlockCache::new(10);
        cache.put(key(0), Bytes::from_static(b"aaaa"));
        cache.put(key(1), Bytes::from_static(b"bbbb"));
        assert!(cache.get(&key(0)).is_some()); // 0 is now more recent than 1
        cache.put(key(2), Bytes::from_static(b"cccc"));
        assert!(cache.used_bytes() <= 10);
        assert!(cache.contains(&key(0)));
        assert!(!cache.contains(&key(1)));
        assert!(cache.contains(&key(2)));
    }

    #[test]
    fn evicting_a_block_of_a_run_evicts_the_whole_run() {
        let cache = MemoryBlockCache::new(16);
        let run = Bytes::from_static(b"aaaabbbbcccc");
        for i in 0..3 {
            cache.put(key(i), run.slice(i as usize * 4..(i as usize + 1) * 4));
        }
        cache.link_run(&[key(0), key(1), key(2)]);
        cache.put(key(3), Bytes::from_static(b"dddd"));
        assert!(cache.get(&key(2)).is_some()); // the run's last block is now the most recent of all
        cache.put(key(4), Bytes::from_static(b"eeee"));
        assert!(
            (0..3).all(|i| !cache.contains(&key(i))),
            "the run left together, though one of its blocks was recent"
        );
        assert!(cache.contains(&key(3)) && cache.contains(&key(4)));
        assert_eq!(cache.used_bytes(), 8);
        // A block removed on its own leaves its run; the rest is still evicted together.
        for i in 5..8 {
            cache.put(key(i), run.slice((i as usize - 5) * 4..(i as usize - 4) * 4));
        }
        cache.link_run(&[key(5), key(6), key(7)]);
        cache.remove(&key(5));
        assert_eq!(cache.used_bytes(), 12);
    }

    #[test]
    fn oversized_blocks_are_not_kept_and_hits_are_counted() {
        let cache = MemoryBlockCache::new(3);
        cache.put(key(0), Bytes::from_static(b"toolong"));
        assert!(cache.get(&key(0)).is_none());
        cache.put(key(1), Bytes::from_static(b"ok"));
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&b"ok"[..]));
        assert_eq!(cache.stats(), (1, 1));
    }
}
