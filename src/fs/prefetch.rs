//! Reading one open object: block cache first, then ranged GETs, with a sequential-read prefetcher.
//!
//! Objects are read in fixed blocks (`block_size`, 1 MiB by default). A block is fetched with one ranged GET,
//! checked against the checksum the handle was opened with (the gateway's ETag), and put in the shared block
//! cache under (checksum, size, index), so any later reader of the same content - through any ref - finds it.
//!
//! Per handle, the prefetcher watches the read offsets:
//! - A read that starts where the previous one ended is *sequential* (within a window - at least two blocks -
//!   behind or ahead also counts, as the kernel's concurrent readahead reorders reads). While reads stay
//!   sequential the window (bytes fetched ahead of the reader) starts at `initial_read_window` and doubles each
//!   time the reader enters a new block, up to `max_read_window`; every block in the window is requested at
//!   once, so several GETs are in flight. Once the window holds two `max_read_request`s (4 MiB by default),
//!   prefetched blocks are requested in aligned runs of that size, one GET per run: per byte, a few large
//!   requests cost the mount and the server far less than many 1 MiB ones. Each block of a run is still its own
//!   cache entry (a slice of the run's buffer), and the read that needs one waits only for its run.
//! - A stream through an object larger than the whole memory budget drops the blocks its reader has passed: an
//!   LRU could not keep them until a second pass anyway, the kernel's page cache has them, and their buffers
//!   serve the next fetches, so a long read touches the same few MiB of memory instead of the whole budget.
//! - Any other read is a *seek*: the window drops to zero, the GETs still running for blocks the reader skipped
//!   are aborted, and the read fetches only its own range, aligned to 64 KiB (or its blocks, when a disk cache
//!   is configured). Small random reads (parquet footers, `fio randread`) therefore never pull whole blocks or
//!   start a stream; a read right after them that continues sequentially starts one. The 64 KiB chunks go to
//!   the memory cache under their own keys, so random reads that land on them again cost no request.
//! - A handle past its first two random reads is a random *reader* (`fio randread`, an index lookup): its misses
//!   fetch whole blocks, and every block a random read uses is offered once to the kernel's page cache
//!   ([`KernelPageCache`]), so the file fills the page cache at one request per block and later reads anywhere
//!   in it are served by the kernel without reaching the mount.
//! - A fetch in flight is shared: the read that needs it awaits the same task the prefetcher started. A run's
//!   GET is aborted once none of its blocks is wanted any more.
//!
//! Memory: every fetch reserves its bytes in the memory cache's budget before its GET starts (see
//! [`crate::cache::memory`]), so cached blocks and GET buffers share the one `max_memory` bound. A prefetch that
//! does not fit is not started - the window resumes on a later read - and a window is never more than a quarter
//! of the budget, so streams cannot crowd each other's blocks out before they are read. The blocks of a run share
//! one buffer, freed when the last of them leaves the cache, so the cache evicts a run's blocks together.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};

use super::error::{FsError, FsResult};
use crate::cache::{BlockKey, DataCache, KernelPageCache, Reservation};
use crate::lakefs::buffers::BufferPool;
use crate::lakefs::LakeFs;

/// One object version, as a handle reads it.
#[derive(Debug, Clone)]
pub struct ObjectVersion {
    pub repo: String,
    /// Ref used in GETs: the branch name, or the pinned commit id.
    pub read_ref: String,
    pub key: String,
    pub checksum: String,
    pub size: u64,
}

/// Prefetch tuning; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct ReadTuning {
    pub block_size: u64,
    pub initial_window: u64,
    pub max_window: u64,
    /// Largest ranged GET of a stream: once its window holds two of them, prefetched blocks are fetched in
    /// aligned runs of this many bytes, one GET each.
    pub max_request: u64,
}

type SharedBlock = Shared<BoxFuture<'static, Result<Bytes, FsError>>>;

/// A fetch task, aborted once no block entry refers to it any more (every block of its run was given up).
struct FetchTask(tokio::task::AbortHandle);

impl Drop for FetchTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A block on its way. The fetch runs while any clone of an entry of its run exists: the handle's map holds one
/// per block it still wants, and each read waiting for a block holds one, so a read is never left waiting on a
/// fetch that another read gave up on.
#[derive(Clone)]
struct InFlight {
    block: SharedBlock,
    _task: Arc<FetchTask>,
}

struct ReadState {
    /// Where a sequential reader's next read starts.
    next_offset: u64,
    /// Bytes to keep requested ahead of the reader; 0 after a seek.
    window: u64,
    /// Block of the previous read's end, to grow the window once per block.
    last_block: Option<u64>,
    in_flight: BTreeMap<u64, InFlight>,
    /// Blocks requested from the server by this handle (for tests and status).
    fetches: u64,
    /// Reads so far that were not part of a stream.
    random_reads: u64,
    /// Blocks already offered to the kernel's page cache.
    offered: HashSet<u64>,
    /// First block a stream has not yet dropped behind its reader (objects larger than the memory budget).
    drop_from: u64,
}

pub struct ObjectReader<L: LakeFs> {
    client: Arc<L>,
    cache: Arc<DataCache>,
    object: Arc<ObjectVersion>,
    tuning: ReadTuning,
    /// The kernel page cache and this object's inode in it, when the adapter provides one.
    kernel: Option<(u64, Arc<dyn KernelPageCache>)>,
    state: Mutex<ReadState>,
}

impl<L: LakeFs> std::fmt::Debug for ObjectReader<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

/// Buffers for replies assembled from two or more blocks or chunks, recycled: a fresh buffer of a whole block
/// is a new mapping that the kernel faults in page by page. Such replies are rare with the kernel's 128 KiB
/// readahead. With the mount's 1024 KiB (`read_ahead_kb`) and reads smaller than a block (`cat`: 128 KiB), the
/// kernel's 1 MiB requests start mid-block and nearly every reply spans two blocks.
static REPLY_BUFFERS: LazyLock<Arc<BufferPool>> = LazyLock::new(|| BufferPool::new(REPLY_BUFFERS_IDLE_BYTES));
const REPLY_BUFFERS_IDLE_BYTES: usize = 8 << 20;

/// `pieces` (each with the file offset it starts at) cut to `offset..end` and joined in one buffer.
fn assemble<'a>(offset: u64, end: u64, pieces: impl IntoIterator<Item = (u64, &'a Bytes)>) -> Bytes {
    let mut out = REPLY_BUFFERS.take((end - offset) as usize);
    for (start, piece) in pieces {
        let from = offset.max(start) - start;
        let to = end.min(start + piece.len() as u64) - start;
        if from < to {
            out.extend_from_slice(&piece[from as usize..to as usize]);
        }
    }
    out.freeze()
}

/// Alignment of the ranged GET a random read makes (never more than a block).
const RANDOM_READ_ALIGN: u64 = 64 * 1024;

/// Random reads of a handle that fetch only their aligned 64 KiB range; later ones fetch whole blocks.
const SMALL_RANDOM_READS: u64 = 2;

/// One ranged GET of `object`, checked against the checksum the handle was opened with.
async fn fetch_range<L: LakeFs>(client: &L, object: &ObjectVersion, range: Range<u64>) -> FsResult<Bytes> {
    let got = client
        .get_object_range(&object.repo, &object.read_ref, &object.key, range.clone())
        .await
        .map_err(|e| FsError::lakefs(format!("reading {}@{} {range:?}", object.key, object.read_ref), e))?;
    if let Some(etag) = got.etag.as_deref() {
        if normalize_etag(etag) != normalize_etag(&object.checksum) {
            return Err(FsError::stale(format!(
                "{} changed on {} while open (checksum {} is now {etag})",
                object.key, object.read_ref, object.checksum
            )));
        }
    }
    if got.data.len() as u64 != range.end - range.start {
        let problem = format!(
            "{} on {}: expected {} bytes at {}, got {}",
            object.key,
            object.read_ref,
            range.end - range.start,
            range.start,
            got.data.len()
        );
        // With the ETag confirming the version, a short body is a transport fault (EIO), not a changed object.
        if got.etag.is_some() {
            return Err(FsError::io(format!("short body: {problem}")));
        }
        return Err(FsError::stale(format!(
            "{} on {}: expected {} bytes at {}, got {}",
            object.key,
            object.read_ref,
            range.end - range.start,
            range.start,
            got.data.len()
        )));
    }
    Ok(got.data)
}

/// Strip quotes and a multipart `-N` suffix, which lakeFS leaves out of `checksum`.
fn normalize_etag(etag: &str) -> &str {
    let etag = etag.trim_matches('"');
    match etag.rsplit_once('-') {
        Some((base, parts)) if !parts.is_empty() && parts.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => etag,
    }
}

impl<L: LakeFs> ObjectReader<L> {
    pub fn new(client: Arc<L>, cache: Arc<DataCache>, object: ObjectVersion, tuning: ReadTuning) -> Self {
        // However it is configured, one handle's window stays a fraction of the memory budget, so a few
        // streams and the blocks they just passed fit in it together.
        let block_size = tuning.block_size.max(4096);
        let max_window = tuning.max_window.min(cache.memory.max_bytes() / 4).max(block_size);
        let tuning = ReadTuning {
            block_size,
            initial_window: tuning.initial_window.min(max_window),
            max_window,
            max_request: tuning.max_request.clamp(block_size, max_window),
        };
        Self {
            client,
            cache,
            object: Arc::new(object),
            tuning,
            state: Mutex::new(ReadState {
                next_offset: 0,
                window: tuning.initial_window,
                last_block: None,
                in_flight: BTreeMap::new(),
                fetches: 0,
                random_reads: 0,
                offered: HashSet::new(),
                drop_from: 0,
            }),
            kernel: None,
        }
    }

    /// Offer the blocks random reads fetch to the kernel's page cache of inode `ino`.
    pub fn with_kernel_cache(mut self, ino: u64, kernel: Arc<dyn KernelPageCache>) -> Self {
        self.kernel = Some((ino, kernel));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn key(&self, index: u64) -> BlockKey {
        self.unit_key(self.tuning.block_size, index)
    }

    fn unit_key(&self, span: u64, index: u64) -> BlockKey {
        BlockKey {
            checksum: self.object.checksum.clone(),
            object_size: self.object.size,
            span,
            index,
        }
    }

    /// A random read: served from cached aligned chunks when they are all there, else one ranged GET of its
    /// aligned range, whose chunks are then cached for the next random read that lands on them.
    async fn read_chunks(&self, offset: u64, end: u64) -> FsResult<Bytes> {
        let align = RANDOM_READ_ALIGN.min(self.tuning.block_size);
        let size = self.object.size;
        let (first, last) = (offset / align, (end - 1) / align);
        let cached: Option<Vec<Bytes>> = (first..=last)
            .map(|c| self.cache.memory.get(&self.unit_key(align, c)))
            .collect();
        let chunks = match cached {
            Some(chunks) => chunks,
            None => {
                let range = first * align..((last + 1) * align).min(size);
                self.lock().fetches += 1;
                let reservation = self.cache.memory.reserve(range.end - range.start);
                let data = fetch_range(&*self.client, &self.object, range.clone()).await?;
                drop(reservation);
                (first..=last)
                    .map(|c| {
                        let from = (c * align - range.start) as usize;
                        let to = (((c + 1) * align).min(size) - range.start) as usize;
                        // A copy: the response may be a slice of a larger receive buffer the cache must not pin.
                        let chunk = Bytes::copy_from_slice(&data[from..to]);
                        self.cache.memory.put(self.unit_key(align, c), chunk.clone());
                        chunk
                    })
                    .collect()
            }
        };
        if let [chunk] = &chunks[..] {
            let start = first * align;
            return Ok(chunk.slice((offset - start) as usize..(end - start) as usize));
        }
        Ok(assemble(offset, end, (first..).map(|c| c * align).zip(&chunks)))
    }

    fn block_range(&self, index: u64) -> Range<u64> {
        let start = index * self.tuning.block_size;
        start..(start + self.tuning.block_size).min(self.object.size)
    }

    /// Budget for a block a read is waiting for.
    fn reservation_for(&self, index: u64) -> Reservation {
        let range = self.block_range(index);
        self.cache.memory.reserve(range.end - range.start)
    }

    /// Current prefetch window in bytes.
    pub fn window(&self) -> u64 {
        self.lock().window
    }

    /// Blocks this handle has requested from the server so far.
    pub fn fetches(&self) -> u64 {
        self.lock().fetches
    }

    /// Fetch block `index` in the background under `reservation`, which its data replaces in the cache.
    fn spawn_fetch(&self, index: u64, reservation: Reservation) -> InFlight {
        let (_, entry) = self.spawn_run(index, vec![reservation]).pop().expect("one block");
        entry
    }

    /// Fetch the blocks from `first` on, one per reservation, with a single ranged GET; each block's data
    /// replaces its reservation in the cache. The blocks are slices of one buffer, which is freed once all of
    /// them are dropped.
    fn spawn_run(&self, first: u64, reservations: Vec<Reservation>) -> Vec<(u64, InFlight)> {
        let count = reservations.len() as u64;
        let indexes: Vec<u64> = (first..first + count).collect();
        let (client, cache, object) = (self.client.clone(), self.cache.clone(), self.object.clone());
        let range = self.block_range(first).start..self.block_range(first + count - 1).end;
        let keys: Vec<BlockKey> = indexes.iter().map(|&i| self.key(i)).collect();
        let block_size = self.tuning.block_size as usize;
        let task = tokio::spawn(async move {
            let mut on_disk = Vec::new();
            for key in &keys {
                match cache.get_from_disk(key).await {
                    Some(block) => on_disk.push(block),
                    None => break,
                }
            }
            if on_disk.len() == keys.len() {
                return Ok(on_disk);
            }
            let data = fetch_range(&*client, &object, range).await?;
            let blocks: Vec<Bytes> = (0..keys.len())
                .map(|i| data.slice(i * block_size..((i + 1) * block_size).min(data.len())))
                .collect();
            cache.put_run_reserved(keys, &blocks, reservations);
            Ok(blocks)
        });
        let fetch = Arc::new(FetchTask(task.abort_handle()));
        let run = async move {
            match task.await {
                Ok(result) => result,
                Err(join) => Err(FsError::io(format!("block fetch did not finish: {join}"))),
            }
        }
        .boxed()
        .shared();
        indexes
            .into_iter()
            .enumerate()
            .map(|(i, index)| {
                let block = run
                    .clone()
                    .map(move |blocks| blocks.map(|b| b[i].clone()))
                    .boxed()
                    .shared();
                (
                    index,
                    InFlight {
                        block,
                        _task: fetch.clone(),
                    },
                )
            })
            .collect()
    }

    /// Read up to `len` bytes at `offset`; short only at end of file.
    pub async fn read(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        let size = self.object.size;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = offset.saturating_add(u64::from(len)).min(size);
        let bs = self.tuning.block_size;
        let first = offset / bs;
        let last = (end - 1) / bs;
        let last_block_of_file = (size - 1) / bs;

        let mut needed: Vec<(u64, Option<InFlight>)> = Vec::new();
        let mut direct = false;
        let random;
        // First block whose entry the handle keeps: reads the kernel sent concurrently may still arrive for the
        // blocks just behind this one. One run's worth: a resolved entry holds its block's memory.
        let keep_from;
        {
            let mut state = self.lock();
            // The kernel's readahead issues reads concurrently, so they may arrive out of order: a read within a
            // window (at least two blocks) behind or ahead of the stream's position still belongs to it.
            let tolerance = state.window.max(2 * bs);
            keep_from = first.saturating_sub(tolerance.min(self.tuning.max_request) / bs);
            let in_stream = offset.saturating_add(tolerance) >= state.next_offset
                && offset <= state.next_offset.saturating_add(tolerance);
            random = !in_stream;
            if in_stream {
                if state.window == 0 {
                    state.window = self.tuning.initial_window;
                } else if state.last_block.is_some_and(|b| last > b) {
                    state.window = (state.window.saturating_mul(2)).min(self.tuning.max_window);
                }
            } else {
                state.window = 0;
                state.drop_from = first;
                state.random_reads += 1;
                // The first random reads of a handle whose blocks are neither cached nor on their way fetch
                // just their own range (aligned to 64 KiB): a parquet footer must not cost a whole block. A
                // handle that keeps reading at random fetches whole blocks, which fill the cache (and the
                // kernel's page cache) quickly. The disk cache, when there is one, works in blocks only.
                let missing = (first..=last)
                    .any(|b| !state.in_flight.contains_key(&b) && !self.cache.memory.contains(&self.key(b)));
                let align = RANDOM_READ_ALIGN.min(bs);
                let chunks_cached =
                    (offset / align..=(end - 1) / align).all(|c| self.cache.memory.contains(&self.unit_key(align, c)));
                let small = state.random_reads <= SMALL_RANDOM_READS || chunks_cached;
                if missing && self.cache.disk.is_none() && small {
                    state.in_flight.clear();
                    state.next_offset = end;
                    state.last_block = Some(last);
                    direct = true;
                }
            }
            if !direct {
                // Blocks well before this read are consumed or skipped; blocks past it after a seek are unwanted.
                // A read within the stream keeps what lies past its own window: when it arrived late (the
                // kernel's reads overtake each other), a later read planned those blocks and still wants them.
                state.in_flight.retain(|b, _| *b >= keep_from && !(random && *b > last));
                let window_end_block =
                    (end.saturating_add(state.window).saturating_sub(1) / bs).min(last_block_of_file);
                let end_block = window_end_block.max(last);
                // A long stream prefetches whole aligned runs of `max_request` bytes, one GET each: fewer,
                // larger requests cost both ends less per byte.
                let run_blocks = if state.window >= 2 * self.tuning.max_request {
                    (self.tuning.max_request / bs).max(1)
                } else {
                    1
                };
                let mut index = first;
                while index <= end_block {
                    if state.in_flight.contains_key(&index) || self.cache.memory.contains(&self.key(index)) {
                        index += 1;
                        continue;
                    }
                    if index <= last {
                        let entry = self.spawn_fetch(index, self.reservation_for(index));
                        state.fetches += 1;
                        state.in_flight.insert(index, entry);
                        index += 1;
                        continue;
                    }
                    // A prefetch: the missing blocks of the run `index` is in, once the window covers all of it.
                    let run_end = ((index / run_blocks + 1) * run_blocks - 1).min(last_block_of_file);
                    if run_end > end_block {
                        break;
                    }
                    let mut reservations = Vec::new();
                    let mut budget_taken = false;
                    for next in index..=run_end {
                        if state.in_flight.contains_key(&next) || self.cache.memory.contains(&self.key(next)) {
                            break;
                        }
                        let range = self.block_range(next);
                        match self.cache.memory.try_reserve(range.end - range.start) {
                            Some(reservation) => reservations.push(reservation),
                            None => {
                                budget_taken = true;
                                break;
                            }
                        }
                    }
                    let count = reservations.len() as u64;
                    if count > 0 {
                        state.fetches += count;
                        state.in_flight.extend(self.spawn_run(index, reservations));
                    }
                    if budget_taken {
                        // The budget is taken by fetches in flight: prefetch more on a later read.
                        break;
                    }
                    index += count;
                }
                for index in first..=last {
                    needed.push((index, state.in_flight.get(&index).cloned()));
                }
                if in_stream && self.object.size > self.cache.memory.max_bytes() && last >= 2 {
                    // A stream through an object larger than the whole budget drops the blocks its reader has
                    // passed (one block behind, as the kernel's reads may come slightly out of order): an LRU
                    // could not keep them until a second pass anyway, the kernel's page cache holds them now,
                    // and their buffers serve the next fetches instead of fresh memory.
                    for index in state.drop_from..last - 1 {
                        self.cache.memory.remove(&self.key(index));
                    }
                    state.drop_from = state.drop_from.max(last - 1);
                }
                state.next_offset = if in_stream { state.next_offset.max(end) } else { end };
                state.last_block = Some(
                    state
                        .last_block
                        .map_or(last, |b| if in_stream { b.max(last) } else { last }),
                );
            }
        }
        if direct {
            return self.read_chunks(offset, end).await;
        }

        let mut blocks = Vec::with_capacity(needed.len());
        for (index, pending) in needed {
            let block = match self.cache.memory.get(&self.key(index)) {
                Some(block) => block,
                None => match pending {
                    Some(pending) => match pending.block.await {
                        Ok(block) => block,
                        Err(err) => {
                            // The fetch may have been a prefetch started long ago: try once more now, and never
                            // leave a failed fetch behind for later reads.
                            tracing::debug!(error = %err, index, "block fetch failed; retrying it for this read");
                            let retry = self.spawn_fetch(index, self.reservation_for(index));
                            self.lock().fetches += 1;
                            let result = retry.block.await;
                            self.lock().in_flight.remove(&index);
                            result?
                        }
                    },
                    // Evicted between planning and now: fetch it directly.
                    None => {
                        let entry = self.spawn_fetch(index, self.reservation_for(index));
                        self.lock().fetches += 1;
                        entry.block.await?
                    }
                },
            };
            if random {
                self.offer_to_kernel(index, &block);
            }
            blocks.push((index * bs, block));
        }
        // Blocks the reader has passed by more than the tolerance no longer need an entry.
        self.lock().in_flight.retain(|index, _| *index >= keep_from);
        if let [(start, block)] = &blocks[..] {
            // The common case (the kernel's reads never cross a block): hand out a view, copy nothing.
            let from = (offset - start).min(block.len() as u64);
            let to = (end - start).min(block.len() as u64);
            return Ok(block.slice(from as usize..to as usize));
        }
        Ok(assemble(
            offset,
            end,
            blocks.iter().map(|(start, block)| (*start, block)),
        ))
    }
}

impl<L: LakeFs> ObjectReader<L> {
    /// Hand a whole block to the kernel's page cache once per handle, so that further random reads anywhere
    /// in it are page-cache hits.
    fn offer_to_kernel(&self, index: u64, block: &Bytes) {
        let Some((ino, kernel)) = &self.kernel else {
            return;
        };
        if self.block_range(index).end - self.block_range(index).start != block.len() as u64 {
            return;
        }
        if self.lock().offered.insert(index) {
            kernel.offer(*ino, index * self.tuning.block_size, block.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryBlockCache;
    use crate::lakefs::mock::MockLakeFs;

    const KIB: u64 = 1024;

    fn setup(size: usize) -> (Arc<MockLakeFs>, Arc<DataCache>, ObjectVersion, Vec<u8>) {
        let mock = Arc::new(MockLakeFs::new());
        mock.create_repository("repo", "main");
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let info = mock.put_object("repo", "main", "big", data.clone()).unwrap();
        let object = ObjectVersion {
            repo: "repo".into(),
            read_ref: "main".into(),
            key: "big".into(),
            checksum: info.checksum,
            size: info.size,
        };
        let cache = DataCache::new(MemoryBlockCache::new(64 * 1024 * KIB), None);
        (mock, Arc::new(cache), object, data)
    }

    /// Every byte of the reader's object, in sequential reads of `chunk` bytes.
    async fn read_to_end(reader: &ObjectReader<MockLakeFs>, chunk: u32) -> Vec<u8> {
        let mut got = Vec::new();
        loop {
            let read = reader.read(got.len() as u64, chunk).await.unwrap();
            if read.is_empty() {
                return got;
            }
            got.extend_from_slice(&read);
        }
    }

    fn tuning() -> ReadTuning {
        ReadTuning {
            block_size: 4 * KIB,
            initial_window: 8 * KIB,
            max_window: 32 * KIB,
            max_request: 4 * KIB,
        }
    }

    #[tokio::test]
    async fn sequential_reads_return_the_bytes_and_grow_the_window_to_its_cap() {
        let (mock, cache, object, data) = setup(200 * KIB as usize);
        let reader = ObjectReader::new(mock.clone(), cache, object, tuning());
        let mut got = Vec::new();
        let mut windows = Vec::new();
        loop {
            let chunk = reader.read(got.len() as u64, 3000).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            got.extend_from_slice(&chunk);
            windows.push(reader.window());
        }
        assert_eq!(got, data);
        assert!(
            windows.windows(2).all(|w| w[1] >= w[0]),
            "window never shrinks while sequential: {windows:?}"
        );
        assert_eq!(*windows.last().unwrap(), 32 * KIB);
        // Every block fetched exactly once.
        assert_eq!(mock.requests("get_object_range"), 50);
    }

    #[tokio::test]
    async fn a_truncated_body_is_an_error_and_never_cached() {
        use crate::lakefs::fault::{FaultPlan, FaultyLakeFs};
        let (mock, cache, object, data) = setup(64 * KIB as usize);
        let plan = Arc::new(FaultPlan::parse("truncate=1").unwrap());
        let faulty = Arc::new(FaultyLakeFs::new(mock.clone(), plan));
        let reader = ObjectReader::new(faulty, cache.clone(), object.clone(), tuning());
        // Sequential (blocks, prefetched) and random (64 KiB chunk) reads both refuse the short bodies.
        assert_eq!(reader.read(0, 3000).await.unwrap_err().errno, libc::EIO);
        assert_eq!(reader.read(40 * KIB, 100).await.unwrap_err().errno, libc::EIO);
        assert_eq!(
            cache.memory.used_bytes(),
            0,
            "nothing from a truncated body may be cached"
        );
        // A healthy reader of the same content finds nothing wrong cached and reads every byte.
        let reader = ObjectReader::new(mock.clone(), cache.clone(), object, tuning());
        assert_eq!(read_to_end(&reader, 5000).await, data);
    }

    #[tokio::test]
    async fn slightly_reordered_reads_keep_the_stream() {
        let (mock, cache, object, data) = setup(200 * KIB as usize);
        let reader = ObjectReader::new(mock.clone(), cache, object, tuning());
        for (offset, len) in [(0, 4096), (8192, 4096), (4096, 4096), (12288, 4096), (16384, 8192)] {
            let chunk = reader.read(offset, len).await.unwrap();
            assert_eq!(&chunk[..], &data[offset as usize..(offset + len as u64) as usize]);
            assert!(reader.window() > 0, "read at {offset} was taken for a seek");
        }
        assert!(reader.window() > tuning().initial_window);
    }

    #[tokio::test]
    async fn a_read_waiting_for_its_block_keeps_the_fetch_when_a_later_read_finishes_first() {
        let (mock, cache, object, data) = setup(200 * KIB as usize);
        // Block 1's response is slow: the reads the kernel sent for blocks 1 and 3 at once finish in reverse.
        mock.set_range_delay(4 * KIB, std::time::Duration::from_millis(300));
        let reader = Arc::new(ObjectReader::new(mock.clone(), cache, object, tuning()));
        reader.read(0, 4096).await.unwrap();
        let waiting = tokio::spawn({
            let reader = reader.clone();
            async move { reader.read(4 * KIB, 4096).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let later = reader.read(12 * KIB, 4096).await.unwrap();
        assert_eq!(&later[..], &data[12 * KIB as usize..16 * KIB as usize]);
        assert!(!waiting.is_finished(), "block 1 is still on its way");
        let block = waiting.await.unwrap().unwrap();
        assert_eq!(&block[..], &data[4 * KIB as usize..8 * KIB as usize]);
        assert_eq!(
            mock.range_requests_at(4 * KIB),
            1,
            "block 1's fetch was not given up and made again"
        );
    }

    #[tokio::test]
    async fn a_late_read_behind_the_stream_keeps_the_prefetches_past_its_own_window() {
        let (mock, cache, object, data) = setup(200 * KIB as usize);
        // Blocks 17 and 18 stay in flight long enough for the late read below to see them.
        for block in [17, 18] {
            mock.set_range_delay(block * 4 * KIB, std::time::Duration::from_millis(200));
        }
        let reader = ObjectReader::new(mock.clone(), cache, object, tuning());
        for block in 0..10 {
            reader.read(block * 4 * KIB, 4096).await.unwrap();
        }
        assert_eq!(reader.window(), tuning().max_window);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // lets the prefetches start
        assert_eq!(
            mock.range_requests_at(17 * 4 * KIB),
            1,
            "the stream prefetched block 17"
        );
        // The kernel's concurrent reads arrive out of order: one for block 8 comes after the read of block 9.
        // Its window ends at block 16, but the blocks the stream prefetched past that are still wanted.
        let late = reader.read(8 * 4 * KIB, 4096).await.unwrap();
        assert_eq!(&late[..], &data[32 * KIB as usize..36 * KIB as usize]);
        for block in 10..20 {
            let got = reader.read(block * 4 * KIB, 4096).await.unwrap();
            assert_eq!(
                &got[..],
                &data[(block * 4 * KIB) as usize..((block + 1) * 4 * KIB) as usize]
            );
        }
        for block in [17, 18] {
            assert_eq!(
                mock.range_requests_at(block * 4 * KIB),
                1,
                "block {block}'s prefetch was not given up and made again"
            );
        }
    }

    #[tokio::test]
    async fn a_seek_resets_the_window_and_random_reads_fetch_only_their_block() {
        let (mock, cache, object, data) = setup(400 * KIB as usize);
        let reader = ObjectReader::new(mock.clone(), cache, object, tuning());
        reader.read(0, 4096).await.unwrap();
        assert!(reader.window() > 0);
        let before = reader.fetches();
        let chunk = reader.read(300 * KIB + 10, 100).await.unwrap();
        assert_eq!(&chunk[..], &data[(300 * KIB + 10) as usize..(300 * KIB + 110) as usize]);
        assert_eq!(reader.window(), 0);
        assert_eq!(
            reader.fetches(),
            before + 1,
            "a random read fetches only the block it needs"
        );
        let chunk = reader.read(100 * KIB, 10).await.unwrap();
        assert_eq!(&chunk[..], &data[(100 * KIB) as usize..(100 * KIB + 10) as usize]);
        assert_eq!(reader.fetches(), before + 2);
    }

    #[tokio::test]
    async fn a_small_random_read_fetches_an_aligned_range_not_a_block() {
        let (mock, cache, object, data) = setup(4096 * KIB as usize);
        let tuning = ReadTuning {
            block_size: 1024 * KIB,
            initial_window: 1024 * KIB,
            max_window: 4096 * KIB,
            max_request: 1024 * KIB,
        };
        let reader = ObjectReader::new(mock.clone(), cache, object, tuning);
        let offset = 2500 * KIB + 7;
        let chunk = reader.read(offset, 4096).await.unwrap();
        assert_eq!(&chunk[..], &data[offset as usize..offset as usize + 4096]);
        assert_eq!(mock.bytes_served(), 64 * KIB, "one 64 KiB-aligned range");
        assert_eq!(reader.window(), 0);
        // Continuing sequentially starts a stream of blocks.
        let next = reader.read(offset + 4096, 4096).await.unwrap();
        assert_eq!(&next[..], &data[offset as usize + 4096..offset as usize + 8192]);
        assert!(reader.window() > 0);
    }

    #[tokio::test]
    async fn random_reads_are_cached_in_aligned_chunks() {
        let (mock, cache, object, data) = setup(4096 * KIB as usize);
        let tuning = ReadTuning {
            block_size: 1024 * KIB,
            initial_window: 1024 * KIB,
            max_window: 4096 * KIB,
            max_request: 1024 * KIB,
        };
        let reader = ObjectReader::new(mock.clone(), cache.clone(), object, tuning);
        // Offsets more than two blocks apart, so that none of the reads continues a stream.
        let (far, near) = (3900 * KIB - 5000, 100 * KIB);
        for offset in [far, near] {
            reader.read(offset, 4096).await.unwrap();
        }
        let served = mock.bytes_served();
        // Other offsets within the two 64 KiB chunks fetched.
        for offset in [far + 100, near + 1000, far - 20_000, 64 * KIB] {
            let chunk = reader.read(offset, 4096).await.unwrap();
            assert_eq!(&chunk[..], &data[offset as usize..offset as usize + 4096]);
        }
        assert_eq!(
            mock.bytes_served(),
            served,
            "chunks already fetched are served from memory"
        );
        assert_eq!(cache.memory.used_bytes(), 128 * KIB);
    }

    #[tokio::test]
    async fn prefetching_stays_within_the_memory_budget() {
        let (mock, _, object, data) = setup(1024 * KIB as usize);
        let budget = 64 * KIB;
        let cache = Arc::new(DataCache::new(MemoryBlockCache::new(budget), None));
        let tuning = ReadTuning {
            block_size: 4 * KIB,
            initial_window: 8 * KIB,
            max_window: 1024 * KIB,
            max_request: 4 * KIB,
        };
        let reader = ObjectReader::new(mock.clone(), cache.clone(), object, tuning);
        let mut offset = 0;
        while offset < data.len() as u64 {
            let chunk = reader.read(offset, 4096).await.unwrap();
            assert_eq!(&chunk[..], &data[offset as usize..offset as usize + chunk.len()]);
            let held = cache.memory.used_bytes() + cache.memory.reserved_bytes();
            assert!(held <= budget, "{held} bytes held at offset {offset}");
            assert!(reader.window() <= budget / 4, "the window is capped by the budget");
            offset += chunk.len() as u64;
        }
        assert_eq!(
            mock.requests("get_object_range"),
            256,
            "every block fetched once despite the small budget"
        );
    }

    #[tokio::test]
    async fn a_long_stream_fetches_aligned_runs_of_blocks_with_one_request_each() {
        let (mock, cache, object, data) = setup(200 * KIB as usize);
        let tuning = ReadTuning {
            max_request: 8 * KIB,
            ..tuning()
        };
        let reader = ObjectReader::new(mock.clone(), cache.clone(), object, tuning);
        assert_eq!(read_to_end(&reader, 3000).await, data);
        assert_eq!(reader.fetches(), 50, "every block fetched exactly once");
        let gets = mock.requests("get_object_range");
        assert!(
            (25..=30).contains(&gets),
            "once the window holds two runs, blocks come two per GET: {gets} GETs for 50 blocks"
        );
        // Each block of a run is cached on its own (the object fits in the budget, so nothing is dropped).
        let other = ObjectReader::new(mock.clone(), cache, reader.object.as_ref().clone(), tuning);
        assert_eq!(
            &other.read(100 * KIB, 4096).await.unwrap()[..],
            &data[100 * KIB as usize..104 * KIB as usize]
        );
        assert_eq!(mock.requests("get_object_range"), gets, "served from the cache");
    }

    #[tokio::test]
    async fn a_stream_through_an_object_larger_than_the_budget_drops_the_blocks_it_passed() {
        let (mock, _, object, data) = setup(512 * KIB as usize);
        let budget = 256 * KIB;
        let cache = Arc::new(DataCache::new(MemoryBlockCache::new(budget), None));
        let tuning = ReadTuning {
            max_request: 16 * KIB,
            max_window: 64 * KIB,
            ..tuning()
        };
        let reader = ObjectReader::new(mock.clone(), cache.clone(), object.clone(), tuning);
        let mut offset = 0;
        let mut most_held = 0;
        while offset < data.len() as u64 {
            let chunk = reader.read(offset, 4096).await.unwrap();
            assert_eq!(&chunk[..], &data[offset as usize..offset as usize + chunk.len()]);
            most_held = most_held.max(cache.memory.used_bytes());
            offset += chunk.len() as u64;
        }
        assert!(
            most_held <= 64 * KIB + 3 * 4 * KIB,
            "only the window and the blocks around the reader are cached, not the budget: {most_held}"
        );
        let key = |index| BlockKey {
            checksum: object.checksum.clone(),
            object_size: object.size,
            span: 4 * KIB,
            index,
        };
        assert!(!cache.memory.contains(&key(0)) && !cache.memory.contains(&key(64)));
        assert_eq!(reader.fetches(), 128, "every block fetched once");
    }

    #[tokio::test]
    async fn cached_blocks_are_served_without_requests_to_another_handle() {
        let (mock, cache, object, data) = setup(20 * KIB as usize);
        let first = ObjectReader::new(mock.clone(), cache.clone(), object.clone(), tuning());
        let mut offset = 0;
        while offset < data.len() as u64 {
            offset += first.read(offset, 4096).await.unwrap().len() as u64;
        }
        let requests = mock.requests("get_object_range");
        let second = ObjectReader::new(mock.clone(), cache, object, tuning());
        let all = second.read(0, 20 * KIB as u32).await.unwrap();
        assert_eq!(&all[..], &data[..]);
        assert_eq!(mock.requests("get_object_range"), requests);
    }

    #[tokio::test]
    async fn an_object_replaced_while_open_reads_as_stale() {
        let (mock, cache, object, _) = setup(10 * KIB as usize);
        mock.put_object("repo", "main", "big", vec![1u8; 10 * KIB as usize])
            .unwrap();
        let reader = ObjectReader::new(mock, cache, object, tuning());
        let err = reader.read(0, 100).await.unwrap_err();
        assert_eq!(err.errno, libc::ESTALE);
    }

    #[tokio::test]
    async fn blocks_on_disk_are_read_without_requests_after_a_restart() {
        let (mock, _, object, data) = setup(10 * KIB as usize);
        let dir = tempfile::tempdir().unwrap();
        let disk = || crate::cache::DiskBlockCache::open(dir.path(), 1 << 30).unwrap();
        let first = Arc::new(DataCache::new(MemoryBlockCache::new(1 << 30), Some(disk())));
        let reader = ObjectReader::new(mock.clone(), first, object.clone(), tuning());
        assert_eq!(&reader.read(0, 10 * KIB as u32).await.unwrap()[..], &data[..]);
        let requests = mock.requests("get_object_range");
        // Disk writes run in the background; wait until all three blocks landed.
        let blocks_on_disk = || {
            walk_files(dir.path())
                .into_iter()
                .filter(|p| p.file_name().is_some_and(|n| n.len() == 64))
                .count()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while blocks_on_disk() < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let restarted = Arc::new(DataCache::new(MemoryBlockCache::new(1 << 30), Some(disk())));
        let reader = ObjectReader::new(mock.clone(), restarted, object, tuning());
        assert_eq!(&reader.read(0, 10 * KIB as u32).await.unwrap()[..], &data[..]);
        assert_eq!(mock.requests("get_object_range"), requests);
    }

    fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk_files(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    /// Records what was offered to the kernel.
    #[derive(Debug, Default)]
    struct RecordingKernel(Mutex<Vec<(u64, u64, usize)>>);

    impl KernelPageCache for RecordingKernel {
        fn offer(&self, ino: u64, offset: u64, data: Bytes) {
            self.0.lock().unwrap().push((ino, offset, data.len()));
        }
    }

    #[tokio::test]
    async fn a_handle_reading_at_random_fetches_whole_blocks_and_offers_each_to_the_kernel_once() {
        let (mock, cache, object, data) = setup(8192 * KIB as usize);
        let tuning = ReadTuning {
            block_size: 1024 * KIB,
            initial_window: 1024 * KIB,
            max_window: 4096 * KIB,
            max_request: 1024 * KIB,
        };
        let kernel = Arc::new(RecordingKernel::default());
        let reader = ObjectReader::new(mock.clone(), cache, object, tuning).with_kernel_cache(7, kernel.clone());
        // Offsets at least three blocks apart, so that no read continues a stream.
        let offsets = [
            7000 * KIB + 5,
            100 * KIB,
            7300 * KIB,
            500 * KIB,
            3500 * KIB,
            7200 * KIB + 3,
            1000 * KIB,
            3100 * KIB,
        ];
        for offset in offsets {
            let chunk = reader.read(offset, 4096).await.unwrap();
            assert_eq!(&chunk[..], &data[offset as usize..offset as usize + 4096]);
        }
        // Two small ranges, then blocks 7, 0 and 3 whole; the last three reads land in those blocks.
        assert_eq!(mock.bytes_served(), 2 * 64 * KIB + 3 * 1024 * KIB);
        let offered = kernel.0.lock().unwrap().clone();
        assert_eq!(
            offered,
            [
                (7, 7 * 1024 * KIB, 1024 * KIB as usize),
                (7, 0, 1024 * KIB as usize),
                (7, 3 * 1024 * KIB, 1024 * KIB as usize)
            ]
        );
    }

    #[test]
    fn etags_compare_without_quotes_or_part_counts() {
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc-12\""), "abc");
        assert_eq!(normalize_etag("abc-def"), "abc-def");
    }
}
