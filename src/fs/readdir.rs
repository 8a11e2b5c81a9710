//! Directory listings: turning `objects/ls` pages into directory entries, and per-handle snapshots.
//!
//! A directory handle takes a snapshot of the whole directory when it is read at offset 0: `.` and `..`, then the
//! children in listing order. The cookie of entry `i` is `i + 1`, so any cookie handed out earlier can be served
//! again - `seekdir`, a repeated offset after an interrupted call, or a buffer that filled up mid-page - and
//! entries added or removed on the server while the handle is being read neither appear twice nor go missing.
//! Reading offset 0 again (rewinddir) takes a fresh snapshot.
//!
//! Listing rules (see [`super::names`]): keys under the prefix become file names, common prefixes directory
//! names; impossible names are dropped and logged; when a name is both an object and a prefix the directory wins.
//! `objects/ls` returns size, mtime, checksum and metadata with every object, which primes the attributes, so
//! `ls -l` (readdirplus) needs no request per entry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::attr::Attr;
use super::inode::{Inode, InodeNo};
use super::names::invalid_name_reason;
use crate::lakefs::{ListEntry, ObjectInfo};

/// One entry as handed to the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct DirEntry {
    pub ino: InodeNo,
    pub name: String,
    pub attr: Attr,
    pub ttl: Duration,
    /// Cookie of the *next* entry.
    pub offset: u64,
}

/// Receives entries for one readdir reply (implemented by the FUSE adapter and by tests).
pub trait DirectoryReplier {
    /// Add an entry; returns `true` when the reply buffer is full and the entry was NOT added.
    fn add(&mut self, entry: &DirEntry) -> bool;
}

impl DirectoryReplier for Vec<DirEntry> {
    fn add(&mut self, entry: &DirEntry) -> bool {
        self.push(entry.clone());
        false
    }
}

/// A child of an object directory, derived from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Child {
    Directory,
    Object(ObjectInfo),
}

/// Accumulates listing pages of one directory into its children, applying the naming rules.
#[derive(Debug, Default)]
pub struct ChildrenBuilder {
    prefix: String,
    children: BTreeMap<String, Child>,
}

impl ChildrenBuilder {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            children: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, entry: ListEntry) {
        let path = entry.path().to_string();
        let Some(rest) = path.strip_prefix(&self.prefix) else {
            tracing::warn!(
                path,
                prefix = self.prefix,
                "listing returned a key outside the prefix; ignored"
            );
            return;
        };
        let (name, child) = match entry {
            ListEntry::Prefix(_) => (rest.strip_suffix('/').unwrap_or(rest).to_string(), Child::Directory),
            ListEntry::Object(object) => {
                if rest.is_empty() {
                    // A `dir/` marker object: the directory itself, not an entry in it.
                    return;
                }
                (rest.to_string(), Child::Object(object))
            }
        };
        if let Some(reason) = invalid_name_reason(&name) {
            tracing::warn!(key = path, reason, "hiding a key that cannot be a file name");
            return;
        }
        match (self.children.get(&name), &child) {
            (Some(Child::Directory), Child::Object(_)) => {
                tracing::warn!(key = path, "hiding an object that is also a directory prefix");
            }
            (Some(Child::Object(_)), Child::Directory) => {
                tracing::warn!(
                    key = path.trim_end_matches('/'),
                    "hiding an object that is also a directory prefix"
                );
                self.children.insert(name, child);
            }
            _ => {
                self.children.insert(name, child);
            }
        }
    }

    /// Children sorted by name.
    pub fn finish(self) -> BTreeMap<String, Child> {
        self.children
    }
}

/// One snapshot entry with the inode it names, kept so a readdirplus reply can count a lookup on it even if
/// the kernel forgot it meanwhile.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    pub entry: DirEntry,
    pub inode: Arc<Inode>,
}

/// An open directory and its snapshot.
///
/// The snapshot is shared, not copied, per reply: the kernel reads a large directory in replies of a few dozen
/// entries, so copying the rest of the snapshot for each one would make reading it quadratic.
#[derive(Debug)]
pub struct DirHandle {
    pub ino: InodeNo,
    snapshot: Mutex<Option<Arc<Vec<SnapshotEntry>>>>,
}

impl DirHandle {
    pub fn new(ino: InodeNo) -> Self {
        Self {
            ino,
            snapshot: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Vec<SnapshotEntry>>>> {
        self.snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a read at `offset` needs a new snapshot (first read, or a rewind to 0).
    pub fn needs_snapshot(&self, offset: u64) -> bool {
        offset == 0 || self.lock().is_none()
    }

    /// Install a snapshot; cookies are assigned here.
    pub fn set_snapshot(&self, mut entries: Vec<SnapshotEntry>) {
        for (index, item) in entries.iter_mut().enumerate() {
            item.entry.offset = index as u64 + 1;
        }
        *self.lock() = Some(Arc::new(entries));
    }

    /// The snapshot, leaving the handle empty (on release).
    pub fn take_snapshot(&self) -> Option<Arc<Vec<SnapshotEntry>>> {
        self.lock().take()
    }

    /// The snapshot and the index of cookie `offset` in it (past the end when nothing is left).
    pub fn entries_from(&self, offset: u64) -> (Arc<Vec<SnapshotEntry>>, usize) {
        let entries = self.lock().clone().unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(entries.len());
        (entries, start)
    }
}

/// Children of one object directory, in name order, as one listing produced them.
pub type Children = Arc<Vec<(String, Child)>>;

/// Which listing: repository, the ref put into requests, and the key prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListingKey {
    pub repo: String,
    pub read_ref: String,
    pub prefix: String,
}

/// A cached listing and what it takes to trust it again.
#[derive(Debug, Clone)]
pub struct CachedListing {
    pub children: Children,
    /// When the listing was last known current.
    pub checked: Instant,
    /// For a branch: its head commit, recorded only when the branch showed that head and no uncommitted change
    /// under the prefix both after the listing's first page and after its last. The listing then stays current
    /// for as long as both still hold, which two small requests can tell. `None`: re-list once expired.
    pub clean_head: Option<String>,
}

/// How a cached listing may be used now.
#[derive(Debug, Clone)]
pub enum ListingLookup {
    /// Current without asking (immutable ref, or checked within `metadata_ttl`).
    Fresh(Children),
    /// Current if the branch's head is still `head` and nothing under the prefix is uncommitted.
    Revalidate {
        children: Children,
        head: String,
    },
    Missing,
}

/// Listings of object directories, shared by all directory handles: a second `ls` of a large branch directory
/// within `metadata_ttl` costs no request, and after it two small requests (branch head, one-entry diff) instead
/// of every page again. Bounded by the number of children held; least recently used listings go first.
#[derive(Debug)]
pub struct ListingCache {
    inner: Mutex<ListingLru>,
    max_children: usize,
    /// Bumped by every [`ListingCache::clear`]: a listing fetched across a clear (this mount's own commit) may
    /// predate it and is not cached.
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct ListingLru {
    listings: LruCache<ListingKey, CachedListing>,
    children: usize,
}

impl ListingCache {
    pub fn new(max_children: usize) -> Self {
        Self {
            inner: Mutex::new(ListingLru {
                listings: LruCache::unbounded(),
                children: 0,
            }),
            max_children,
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The current generation, taken before fetching a listing to pass to [`ListingCache::insert_since`].
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`ListingCache::insert`], unless the cache was cleared since `generation` was taken.
    pub fn insert_since(&self, generation: u64, key: ListingKey, listing: CachedListing) {
        // Checked under the lock `clear` takes, so a clear cannot slip in between the check and the insert.
        let mut inner = self.lock();
        if self.generation() == generation {
            self.insert_locked(&mut inner, key, listing);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ListingLru> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached listing of `key` as of `now`; `immutable` listings never expire, others after `ttl`.
    pub fn lookup(&self, key: &ListingKey, immutable: bool, ttl: Duration, now: Instant) -> ListingLookup {
        let mut inner = self.lock();
        let Some(cached) = inner.listings.get(key) else {
            return ListingLookup::Missing;
        };
        if immutable || now < cached.checked + ttl {
            return ListingLookup::Fresh(cached.children.clone());
        }
        match &cached.clean_head {
            Some(head) => ListingLookup::Revalidate {
                children: cached.children.clone(),
                head: head.clone(),
            },
            None => ListingLookup::Missing,
        }
    }

    /// The listing of `key` was confirmed current at `now`.
    pub fn confirm(&self, key: &ListingKey, now: Instant) {
        if let Some(cached) = self.lock().listings.get_mut(key) {
            cached.checked = now;
        }
    }

    pub fn insert(&self, key: ListingKey, listing: CachedListing) {
        let mut inner = self.lock();
        self.insert_locked(&mut inner, key, listing);
    }

    fn insert_locked(&self, inner: &mut ListingLru, key: ListingKey, listing: CachedListing) {
        let size = listing.children.len();
        if size > self.max_children {
            if let Some(old) = inner.listings.pop(&key) {
                inner.children -= old.children.len();
            }
            return;
        }
        if let Some(old) = inner.listings.put(key, listing) {
            inner.children -= old.children.len();
        }
        inner.children += size;
        while inner.children > self.max_children {
            match inner.listings.pop_lru() {
                Some((_, evicted)) => inner.children -= evicted.children.len(),
                None => break,
            }
        }
    }

    pub fn remove(&self, key: &ListingKey) {
        let mut inner = self.lock();
        if let Some(old) = inner.listings.pop(key) {
            inner.children -= old.children.len();
        }
    }

    /// Drop every listing (after this mount changed a branch itself).
    pub fn clear(&self) {
        let mut inner = self.lock();
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        inner.listings.clear();
        inner.children = 0;
    }

    /// Children held, over all listings.
    pub fn len(&self) -> usize {
        self.lock().children
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(path: &str) -> ListEntry {
        ListEntry::Object(ObjectInfo {
            path: path.into(),
            size: 1,
            mtime: 0,
            checksum: "c".into(),
            metadata: Default::default(),
        })
    }

    #[test]
    fn impossible_names_are_hidden_and_directories_win_clashes() {
        let mut builder = ChildrenBuilder::new("d/");
        for entry in [
            object("d/"),
            object("d/a"),
            ListEntry::Prefix("d/a/".into()),
            ListEntry::Prefix("d//".into()),
            object("d/."),
            ListEntry::Prefix("d/../".into()),
            object(&format!("d/{}", "x".repeat(256))),
            object("d/ok.txt"),
            ListEntry::Prefix("d/sub/".into()),
            object("d/sub"),
        ] {
            builder.push(entry);
        }
        let children = builder.finish();
        let names: Vec<_> = children.keys().cloned().collect();
        assert_eq!(names, ["a", "ok.txt", "sub"]);
        assert_eq!(children["a"], Child::Directory);
        assert_eq!(children["sub"], Child::Directory);
        assert!(matches!(children["ok.txt"], Child::Object(_)));
    }

    fn key(prefix: &str) -> ListingKey {
        ListingKey {
            repo: "r".into(),
            read_ref: "main".into(),
            prefix: prefix.into(),
        }
    }

    fn listing(names: &[&str], clean_head: Option<&str>, checked: Instant) -> CachedListing {
        CachedListing {
            children: Arc::new(names.iter().map(|n| (n.to_string(), Child::Directory)).collect()),
            checked,
            clean_head: clean_head.map(str::to_string),
        }
    }

    #[test]
    fn listings_expire_into_revalidation_only_when_recorded_clean() {
        let cache = ListingCache::new(100);
        let now = Instant::now();
        let ttl = Duration::from_secs(1);
        cache.insert(key("a/"), listing(&["x", "y"], Some("c1"), now));
        cache.insert(key("b/"), listing(&["z"], None, now));
        assert!(matches!(cache.lookup(&key("a/"), false, ttl, now), ListingLookup::Fresh(c) if c.len() == 2));
        let later = now + Duration::from_secs(2);
        assert!(matches!(
            cache.lookup(&key("a/"), false, ttl, later),
            ListingLookup::Revalidate { head, .. } if head == "c1"
        ));
        assert!(matches!(
            cache.lookup(&key("b/"), false, ttl, later),
            ListingLookup::Missing
        ));
        assert!(matches!(
            cache.lookup(&key("b/"), true, ttl, later),
            ListingLookup::Fresh(_)
        ));
        cache.confirm(&key("a/"), later);
        assert!(matches!(
            cache.lookup(&key("a/"), false, ttl, later),
            ListingLookup::Fresh(_)
        ));
        assert!(matches!(
            cache.lookup(&key("c/"), false, ttl, later),
            ListingLookup::Missing
        ));
    }

    #[test]
    fn a_listing_fetched_across_a_clear_is_not_cached() {
        let cache = ListingCache::new(100);
        let now = Instant::now();
        let ttl = Duration::from_secs(1);
        let before = cache.generation();
        cache.clear();
        cache.insert_since(before, key("a/"), listing(&["x"], None, now));
        assert!(matches!(
            cache.lookup(&key("a/"), false, ttl, now),
            ListingLookup::Missing
        ));
        cache.insert_since(cache.generation(), key("a/"), listing(&["x"], None, now));
        assert!(matches!(
            cache.lookup(&key("a/"), false, ttl, now),
            ListingLookup::Fresh(_)
        ));
    }

    #[test]
    fn the_cache_is_bounded_by_children_held() {
        let cache = ListingCache::new(5);
        let now = Instant::now();
        cache.insert(key("a/"), listing(&["1", "2", "3"], None, now));
        cache.insert(key("b/"), listing(&["1", "2"], None, now));
        assert_eq!(cache.len(), 5);
        cache.insert(key("c/"), listing(&["1"], None, now));
        assert_eq!(cache.len(), 3, "the least recently used listing was evicted");
        assert!(matches!(
            cache.lookup(&key("a/"), true, Duration::ZERO, now),
            ListingLookup::Missing
        ));
        cache.insert(key("big/"), listing(&["1", "2", "3", "4", "5", "6"], None, now));
        assert!(matches!(
            cache.lookup(&key("big/"), true, Duration::ZERO, now),
            ListingLookup::Missing
        ));
        cache.insert(key("b/"), listing(&["1"], None, now));
        assert_eq!(cache.len(), 2, "replacing a listing releases the old one's count");
    }
}
