//! Caches of object data.
//!
//! Blocks are keyed by the object's content checksum and size plus the block index, never by path or ref: the
//! same bytes read through a branch, a tag or a commit id share one entry, and an entry can never be stale - a
//! changed object has a different checksum. [`MemoryBlockCache`] keeps blocks in an LRU bounded by bytes.

pub mod memory;

pub use memory::MemoryBlockCache;

/// Identity of one cached block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub checksum: String,
    pub object_size: u64,
    pub index: u64,
}
