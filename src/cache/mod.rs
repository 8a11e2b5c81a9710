//! Caches of object data.
//!
//! Blocks are keyed by the object's content checksum and size plus the block index, never by path or ref: the
//! same bytes read through a branch, a tag or a commit id share one entry, and an entry can never be stale - a
//! changed object has a different checksum. [`MemoryBlockCache`] keeps blocks in an LRU bounded by bytes;
//! [`DiskBlockCache`] optionally keeps more of them in files that survive a remount. [`DataCache`] stacks the two:
//! memory first, then disk (a disk hit is promoted to memory).
//!
//! A block is only ever stored whole: [`DataCache`] refuses a block whose length is not the one its key implies
//! (a body cut short must never be served later as if it were the data), and the disk cache verifies each block's
//! SHA-256 when reading it back.

pub mod disk;
pub mod memory;

pub use disk::DiskBlockCache;
pub use memory::{MemoryBlockCache, Reservation};

use std::sync::Arc;

use bytes::Bytes;

/// Memory cache plus an optional disk cache.
#[derive(Debug)]
pub struct DataCache {
    pub memory: Arc<MemoryBlockCache>,
    pub disk: Option<Arc<DiskBlockCache>>,
}

impl DataCache {
    pub fn new(memory: MemoryBlockCache, disk: Option<DiskBlockCache>) -> Self {
        Self {
            memory: Arc::new(memory),
            disk: disk.map(Arc::new),
        }
    }

    /// A block from disk, promoted to memory; the file I/O runs on the blocking pool.
    pub async fn get_from_disk(&self, key: &BlockKey) -> Option<Bytes> {
        let disk = self.disk.clone()?;
        let lookup = key.clone();
        let block = tokio::task::spawn_blocking(move || disk.get(&lookup))
            .await
            .ok()
            .flatten()
            .filter(|block| key.fits(block))?;
        self.memory.put(key.clone(), block.clone());
        Some(block)
    }

    /// Store a block in memory now and on disk in the background.
    pub fn put(&self, key: BlockKey, data: Bytes) {
        if !key.fits(&data) {
            return;
        }
        self.put_to_disk(&key, &data);
        self.memory.put(key, data);
    }

    /// Store a fetched block in memory in place of the budget its fetch reserved, and on disk in the background.
    pub fn put_reserved(&self, key: BlockKey, data: Bytes, reservation: Reservation) {
        if !key.fits(&data) {
            return;
        }
        self.put_to_disk(&key, &data);
        reservation.fulfil(key, data);
    }

    /// [`DataCache::put_reserved`] for the blocks of one run (slices of one buffer), which memory then evicts
    /// together.
    pub fn put_run_reserved(&self, keys: Vec<BlockKey>, blocks: &[Bytes], reservations: Vec<Reservation>) {
        for ((key, block), reservation) in keys.iter().zip(blocks).zip(reservations) {
            self.put_reserved(key.clone(), block.clone(), reservation);
        }
        self.memory.link_run(&keys);
    }

    fn put_to_disk(&self, key: &BlockKey, data: &Bytes) {
        if let Some(disk) = self.disk.clone() {
            let (key, data) = (key.clone(), data.clone());
            tokio::task::spawn_blocking(move || disk.put(&key, &data));
        }
    }
}

/// The kernel's page cache of open files, as the FUSE adapter exposes it (`FUSE_NOTIFY_STORE`).
///
/// A random reader fetches whole blocks; offering each block to the kernel turns the next reads anywhere in
/// it into page-cache hits that never reach the mount, so a file read at random fills the page cache at one
/// request per block instead of one per 4 KiB page. Stored pages are the kernel's memory, reclaimable under
/// pressure, and never count against `max_memory`.
pub trait KernelPageCache: Send + Sync + std::fmt::Debug {
    /// Offer `data` as the content of inode `ino` at `offset` (page aligned). Must not block: the kernel may
    /// hold a page of the range locked until the read being answered now gets its reply, so implementations
    /// hand the data to another thread and drop it when that one falls behind.
    fn offer(&self, ino: u64, offset: u64, data: Bytes);
}

/// Identity of one cached block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub checksum: String,
    pub object_size: u64,
    /// Bytes per unit: the block size for blocks, the random-read alignment for the small ranges random reads
    /// fetch. Units of different sizes never share an entry.
    pub span: u64,
    pub index: u64,
}

impl BlockKey {
    /// Bytes this unit holds: `span`, or what is left of the object for the last one.
    pub fn expected_len(&self) -> u64 {
        self.object_size
            .saturating_sub(self.index.saturating_mul(self.span))
            .min(self.span)
    }

    /// Whether `data` is a whole unit; a mismatch is logged, as it means a fetch went wrong unnoticed.
    fn fits(&self, data: &[u8]) -> bool {
        let fits = data.len() as u64 == self.expected_len();
        if !fits {
            tracing::warn!(?self, len = data.len(), "refusing to cache a block of the wrong length");
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u64) -> BlockKey {
        BlockKey {
            checksum: "c".into(),
            object_size: 10_000,
            span: 4096,
            index,
        }
    }

    #[test]
    fn expected_lengths_follow_the_object() {
        assert_eq!(key(0).expected_len(), 4096);
        assert_eq!(key(2).expected_len(), 10_000 - 8192);
        assert_eq!(key(3).expected_len(), 0);
    }

    #[tokio::test]
    async fn blocks_of_the_wrong_length_are_never_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DataCache::new(
            MemoryBlockCache::new(1 << 20),
            Some(DiskBlockCache::open(dir.path(), 1 << 20).unwrap()),
        );
        cache.put(key(0), Bytes::from(vec![1u8; 100]));
        cache.put(key(1), Bytes::from(vec![2u8; 4096]));
        let reservation = cache.memory.reserve(4096);
        cache.put_reserved(key(2), Bytes::from(vec![3u8; 5]), reservation);
        assert!(cache.memory.get(&key(0)).is_none(), "a short block is refused");
        assert!(cache.memory.get(&key(2)).is_none(), "a short fetched block is refused");
        assert_eq!(cache.memory.get(&key(1)).unwrap().len(), 4096);
        // The disk copy is written in the background: wait for it, then read it back through the checks.
        cache.memory.clear();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while cache.get_from_disk(&key(1)).await.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "block never reached the disk cache"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(cache.get_from_disk(&key(0)).await.is_none());
    }
}
