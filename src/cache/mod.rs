//! Caches of object data.
//!
//! Blocks are keyed by the object's content checksum and size plus the block index, never by path or ref: the
//! same bytes read through a branch, a tag or a commit id share one entry, and an entry can never be stale - a
//! changed object has a different checksum. [`MemoryBlockCache`] keeps blocks in an LRU bounded by bytes;
//! [`DiskBlockCache`] optionally keeps more of them in files that survive a remount. [`DataCache`] stacks the two:
//! memory first, then disk (a disk hit is promoted to memory).

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
            .flatten()?;
        self.memory.put(key.clone(), block.clone());
        Some(block)
    }

    /// Store a block in memory now and on disk in the background.
    pub fn put(&self, key: BlockKey, data: Bytes) {
        self.put_to_disk(&key, &data);
        self.memory.put(key, data);
    }

    /// Store a fetched block in memory in place of the budget its fetch reserved, and on disk in the background.
    pub fn put_reserved(&self, key: BlockKey, data: Bytes, reservation: Reservation) {
        self.put_to_disk(&key, &data);
        reservation.fulfil(key, data);
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
