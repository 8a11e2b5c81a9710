//! On-disk block cache: one file per block under `cache_dir`, bounded by `cache_size` bytes.
//!
//! A block's file name is the SHA-256 of its key (checksum, object size, unit size, index), so object keys never become
//! paths. Each file holds the SHA-256 of the data followed by the data; a read that does not verify (a torn write
//! from a crash, a bit flip) is deleted and treated as a miss. Files are written to a temporary name and renamed,
//! so a reader never sees a partial block. An in-memory LRU index, rebuilt by scanning the directory at start,
//! decides evictions. All file I/O is blocking: callers run it on the blocking pool. A cache directory belongs
//! to one mount at a time: opening it sweeps temporary files another writer might still be using.
//! Cached blocks are object data the mount's user may read but others may not, so shard directories are 0700 and
//! block files 0600 whatever the umask.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};

use super::BlockKey;

const HASH_LEN: usize = 32;

#[derive(Debug)]
struct Index {
    /// File name -> block size on disk.
    entries: LruCache<String, u64>,
    bytes: u64,
}

#[derive(Debug)]
pub struct DiskBlockCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
}

fn file_name(key: &BlockKey) -> String {
    let digest = Sha256::digest(format!(
        "{}\n{}\n{}\n{}",
        key.checksum, key.object_size, key.span, key.index
    ));
    hex::encode(digest)
}

impl DiskBlockCache {
    /// Open (creating if needed) the cache in `dir`, indexing the blocks already there.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        // A new directory is private; an existing one was chosen by the user and keeps its mode.
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700).create(dir)?;
        let mut found: Vec<(std::time::SystemTime, String, u64)> = Vec::new();
        for shard in fs::read_dir(dir)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(shard.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                let metadata = file.metadata()?;
                if name.contains(".tmp") {
                    // Left by a crash mid-write.
                    let _ = fs::remove_file(file.path());
                } else if name.len() == 64 {
                    found.push((metadata.modified()?, name, metadata.len()));
                }
            }
        }
        found.sort();
        let cache = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Mutex::new(Index {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
        };
        for (_, name, len) in found {
            cache.record(name, len);
        }
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(&name[..2]).join(name)
    }

    /// Add `name` to the index and evict least recently used blocks beyond the budget.
    fn record(&self, name: String, len: u64) {
        let mut evicted = Vec::new();
        {
            let mut index = self.lock();
            if let Some(old) = index.entries.put(name, len) {
                index.bytes -= old;
            }
            index.bytes += len;
            while index.bytes > self.max_bytes {
                match index.entries.pop_lru() {
                    Some((victim, size)) => {
                        index.bytes -= size;
                        evicted.push(victim);
                    }
                    None => break,
                }
            }
        }
        for victim in evicted {
            let _ = fs::remove_file(self.path(&victim));
        }
    }

    fn forget(&self, name: &str) {
        let mut index = self.lock();
        if let Some(len) = index.entries.pop(name) {
            index.bytes -= len;
        }
    }

    /// The block, if cached and intact.
    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let name = file_name(key);
        // Touch the entry so it becomes the most recently used.
        self.lock().entries.get(&name)?;
        let path = self.path(&name);
        let content = fs::read(&path).ok();
        match content {
            Some(content)
                if content.len() >= HASH_LEN && Sha256::digest(&content[HASH_LEN..])[..] == content[..HASH_LEN] =>
            {
                Some(Bytes::from(content).slice(HASH_LEN..))
            }
            _ => {
                tracing::warn!(path = %path.display(), "dropping a damaged or missing disk cache block");
                let _ = fs::remove_file(&path);
                self.forget(&name);
                None
            }
        }
    }

    /// Store a block (temp file, then rename). Failures only cost the cache entry.
    pub fn put(&self, key: &BlockKey, data: &[u8]) {
        let len = (data.len() + HASH_LEN) as u64;
        if len > self.max_bytes {
            return;
        }
        let name = file_name(key);
        let path = self.path(&name);
        let write = || -> std::io::Result<()> {
            if let Some(shard) = path.parent() {
                if !shard.is_dir() {
                    crate::staging::create_private_dir(shard)?;
                }
            }
            let temp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
            let mut file = crate::staging::private_file_options()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(&Sha256::digest(data))?;
            file.write_all(data)?;
            drop(file);
            fs::rename(&temp, &path).inspect_err(|_| {
                let _ = fs::remove_file(&temp);
            })
        };
        match write() {
            Ok(()) => self.record(name, len),
            Err(err) => tracing::warn!(path = %path.display(), error = %err, "could not write a disk cache block"),
        }
    }

    /// Bytes on disk, as indexed.
    pub fn used_bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u64) -> BlockKey {
        BlockKey {
            checksum: "abc".into(),
            object_size: 1000,
            span: 4096,
            index,
        }
    }

    #[test]
    fn cached_blocks_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let cache = DiskBlockCache::open(&root, 1 << 20).unwrap();
        cache.put(&key(0), b"object data");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        let file = cache.path(&file_name(&key(0)));
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
    }

    #[test]
    fn blocks_survive_a_reopen_and_damaged_blocks_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskBlockCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(&key(0), b"block zero");
        cache.put(&key(1), b"block one");
        assert_eq!(cache.get(&key(0)).as_deref(), Some(&b"block zero"[..]));
        assert!(cache.get(&key(2)).is_none());
        drop(cache);

        let cache = DiskBlockCache::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&b"block one"[..]));
        let name = file_name(&key(1));
        let path = cache.path(&name);
        let mut content = fs::read(&path).unwrap();
        let last = content.len() - 1;
        content[last] ^= 0xff;
        fs::write(&path, content).unwrap();
        assert!(cache.get(&key(1)).is_none(), "a corrupted block is a miss");
        assert!(!path.exists());
    }

    #[test]
    fn the_budget_evicts_least_recently_used_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskBlockCache::open(dir.path(), 3 * (100 + HASH_LEN as u64)).unwrap();
        for index in 0..3 {
            cache.put(&key(index), &[index as u8; 100]);
        }
        assert!(cache.get(&key(0)).is_some());
        cache.put(&key(3), &[3; 100]);
        assert!(cache.used_bytes() <= 3 * (100 + HASH_LEN as u64));
        assert!(cache.get(&key(0)).is_some());
        assert!(cache.get(&key(1)).is_none(), "block 1 was least recently used");
        assert!(cache.get(&key(3)).is_some());
    }
}
