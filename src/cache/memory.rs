//! In-memory block cache: an LRU of blocks bounded by their total size in bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;

use super::BlockKey;

#[derive(Debug)]
struct Inner {
    blocks: LruCache<BlockKey, Bytes>,
    bytes: u64,
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
        if let Some(old) = inner.blocks.put(key, data) {
            inner.bytes -= old.len() as u64;
        }
        inner.bytes += size;
        while inner.bytes > self.max_bytes {
            match inner.blocks.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len() as u64,
                None => break,
            }
        }
    }

    /// Drop every block.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.blocks.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u64) -> BlockKey {
        BlockKey {
            checksum: "c".into(),
            object_size: 100,
            index,
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
    fn oversized_blocks_are_not_kept_and_hits_are_counted() {
        let cache = MemoryBlockCache::new(3);
        cache.put(key(0), Bytes::from_static(b"toolong"));
        assert!(cache.get(&key(0)).is_none());
        cache.put(key(1), Bytes::from_static(b"ok"));
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&b"ok"[..]));
        assert_eq!(cache.stats(), (1, 1));
    }
}
