//! Recycled receive buffers for ranged GETs.
//!
//! The mount keeps its allocator from holding on to large freed memory (see `limit_allocator_retention` in
//! `mount/mod.rs`): a buffer of [`MIN_POOLED`] or more is a fresh mapping whose pages the kernel faults in and
//! zeroes as the body is copied into it. A ranged GET of a whole block (the common case) therefore writes into a
//! buffer of exactly that size taken from this pool, and the buffer comes back when the last [`Bytes`] referring
//! to it is dropped (the block was evicted from the cache and every reply made from it is sent). Before the pool,
//! a sequential read of 1 GiB faulted in 2 GiB, a third of the mount's CPU.
//!
//! Only idle buffers are the pool's own memory, and at most `max_idle_bytes` of them are kept: buffers in use are
//! cached blocks or bodies in flight, which the memory cache's budget already counts.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// The mount's mmap threshold, one default block: smaller buffers come from the heap, which reuses them, so only
/// buffers of this size or more are pooled.
pub const MIN_POOLED: usize = 1024 * 1024;

#[derive(Debug)]
pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
    max_idle_bytes: usize,
}

impl BufferPool {
    pub fn new(max_idle_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(Vec::new()),
            max_idle_bytes,
        })
    }

    /// An empty buffer with room for exactly `len` bytes; a recycled one when the pool has that size.
    pub fn take(self: &Arc<Self>, len: usize) -> PooledBuffer {
        let recycled = if len >= MIN_POOLED {
            let mut idle = self.lock();
            idle.iter()
                .rposition(|b| b.capacity() == len)
                .map(|i| idle.swap_remove(i))
        } else {
            None
        };
        PooledBuffer {
            bytes: recycled.unwrap_or_else(|| Vec::with_capacity(len)),
            pool: Arc::downgrade(self),
        }
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.lock().iter().map(Vec::capacity).sum()
    }

    fn give_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() < MIN_POOLED || buffer.capacity() > self.max_idle_bytes {
            return;
        }
        buffer.clear();
        let mut idle = self.lock();
        let mut held: usize = idle.iter().map(Vec::capacity).sum();
        // The newest buffer is the likeliest to be asked for again (same block size): make room by dropping
        // the oldest.
        while held + buffer.capacity() > self.max_idle_bytes && !idle.is_empty() {
            held -= idle.remove(0).capacity();
        }
        idle.push(buffer);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A buffer being filled; [`PooledBuffer::freeze`] turns it into [`Bytes`] that return it to the pool.
#[derive(Debug)]
pub struct PooledBuffer {
    bytes: Vec<u8>,
    pool: Weak<BufferPool>,
}

impl PooledBuffer {
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn freeze(self) -> Bytes {
        if self.bytes.capacity() < MIN_POOLED {
            let mut plain = self;
            return Bytes::from(std::mem::take(&mut plain.bytes));
        }
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn filled(pool: &Arc<BufferPool>, len: usize, byte: u8) -> Bytes {
        let mut buffer = pool.take(len);
        buffer.extend_from_slice(&vec![byte; len]);
        buffer.freeze()
    }

    #[test]
    fn a_block_comes_back_when_its_last_reference_is_dropped_and_is_reused() {
        let pool = BufferPool::new(8 * MIB);
        let block = filled(&pool, MIB, 7);
        let reply = block.slice(4096..8192);
        let address = block.as_ptr() as usize;
        drop(block);
        assert_eq!(pool.idle_bytes(), 0, "a slice still refers to the buffer");
        assert_eq!(&reply[..], &[7u8; 4096][..]);
        drop(reply);
        assert_eq!(pool.idle_bytes(), MIB);

        let again = filled(&pool, MIB, 9);
        assert_eq!(
            again.as_ptr() as usize,
            address,
            "the same memory serves the next block"
        );
        assert!(
            again.iter().all(|&b| b == 9),
            "no bytes of the previous block show through"
        );
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn only_buffers_of_the_asked_size_are_reused() {
        let pool = BufferPool::new(8 * MIB);
        drop(filled(&pool, MIB, 1));
        let other = pool.take(2 * MIB);
        assert_eq!(pool.idle_bytes(), MIB, "a 1 MiB buffer cannot hold 2 MiB");
        drop(other);
        assert_eq!(pool.idle_bytes(), 3 * MIB, "an unused buffer comes back too");
    }

    #[test]
    fn idle_buffers_stay_within_the_bound_and_small_ones_are_not_kept() {
        let pool = BufferPool::new(3 * MIB);
        let blocks: Vec<Bytes> = (0..5).map(|i| filled(&pool, MIB, i)).collect();
        drop(blocks);
        assert_eq!(pool.idle_bytes(), 3 * MIB);
        drop(filled(&pool, MIN_POOLED - 1, 1));
        assert_eq!(pool.idle_bytes(), 3 * MIB, "small buffers are the allocator's business");
    }

    #[test]
    fn buffers_outliving_their_pool_are_simply_freed() {
        let pool = BufferPool::new(MIB);
        let block = filled(&pool, MIB, 3);
        drop(pool);
        assert_eq!(block.len(), MIB);
        drop(block);
    }
}
