//! The filesystem core: lakeFS repositories, refs and objects as a tree of inodes, with no FUSE types.
//!
//! The tree (DESIGN section 2) depends on the mount source:
//! - `lakefs://` - the root lists repositories; each repository lists its branches;
//! - `lakefs://REPO` - the root lists the repository's branches;
//! - `lakefs://REPO/REF[/PREFIX]` - the root is the ref (below `PREFIX`).
//!
//! Below a repository, *listed* names are branches; they read through the branch name and so see its
//! uncommitted changes, and their metadata is trusted for `metadata_ttl`. Any other name is resolved on lookup
//! with `GET /commits/{name}` - tags, commit ids and prefixes, `main~1`, `v1^` - and pinned to the commit it
//! resolved to: everything below is immutable, so its metadata never expires and writes get EROFS. A branch wins
//! over a tag of the same name because branches are asked first (as lakeFS itself resolves names); such a tag is
//! still reachable as `tags@NAME` (`@` cannot occur in a branch name, so this never hides a branch). lakeFS
//! itself refuses to create a branch and a tag of the same name, so the clash needs an older or other server.
//!
//! Every ref root holds a `.lakefs/` control directory (`head`, `status`, `staging`, `commit`, `merge`, `discard`;
//! the writable ones are served by [`write`]). It is reachable by name but left out of listings, so `cp -r`, `rsync` and `find` never copy or
//! trigger control files; a lakeFS key named `.lakefs` at a ref root is shadowed by it.
//!
//! Writes (branches only) go to a staging branch and show through an overlay of this mount's own changes; see
//! [`write`].
//!
//! Caching: attributes live in the inode table (see [`inode`]), primed by listings; misses are remembered in a
//! bounded negative cache for the same time as positive entries of that directory; object bytes go through the
//! block cache keyed by checksum ([`crate::cache`]) and a per-handle prefetcher ([`prefetch`]).

pub mod attr;
pub mod config;
mod empty_prefixes;
pub mod error;
pub mod inode;
pub mod names;
pub mod prefetch;
pub mod readdir;
pub mod write;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use lru::LruCache;

pub use self::attr::{Attr, FileKind};
pub use self::config::{FsConfig, Source};
pub use self::error::{FsError, FsResult};
pub use self::inode::InodeNo;
pub use self::readdir::{DirEntry, DirectoryReplier};
pub use self::write::{BranchWriter, Owner, SetAttr};

use self::attr::{directory_attr, object_attr};
use self::inode::{ControlFile, Inode, InodeTable, NodeKind, RefLocation, RefTarget, Validity, CONTROL_DIR};
use self::names::{invalid_name_reason, NAME_MAX};
use self::prefetch::{ObjectReader, ObjectVersion};
use self::readdir::{
    CachedListing, Child, Children, ChildrenBuilder, DirHandle, ListingCache, ListingKey, ListingLookup, SnapshotEntry,
};
use crate::cache::{DataCache, DiskBlockCache, KernelPageCache, MemoryBlockCache};
use crate::lakefs::{LakeFs, LakeFsError, ListRequest, ObjectInfo, META_SYMLINK_TARGET};

/// Kernel cache time for entries that never change (immutable refs, synthetic entries).
pub const IMMUTABLE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Children of all cached directory listings together, at most (about 300 bytes each).
const LISTING_CACHE_CHILDREN: usize = 250_000;
/// Listings of one directory made at most when this mount's commits keep racing them.
const LISTING_ATTEMPTS: u32 = 4;

/// A name resolved to an inode, with how long the kernel may cache it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub attr: Attr,
    pub ttl: Duration,
}

/// What `open` asks for, independent of the FUSE flag encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

/// Result of `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// Bypass the page cache (control files, whose content is generated at open).
    pub direct_io: bool,
    /// Keep the page cache across opens: safe for objects, as an inode never changes content.
    pub keep_cache: bool,
}

enum OpenFile<L: LakeFs> {
    Object(ObjectReader<L>),
    Control(Bytes),
    /// A staged file: local bytes (`None` never happens for a writable handle).
    Staged {
        writer: Arc<BranchWriter>,
        id: u64,
        local: Option<Arc<crate::staging::LocalFile>>,
        write: bool,
    },
    /// `.lakefs/commit`, `merge` or `discard` open for writing: each write(2) runs the operation.
    ControlWrite {
        location: Arc<RefLocation>,
        file: ControlFile,
    },
}

/// The filesystem core over any [`LakeFs`].
pub struct Filesystem<L: LakeFs> {
    client: Arc<L>,
    config: FsConfig,
    source: Source,
    root_location: Option<Arc<RefLocation>>,
    table: InodeTable,
    negative: Mutex<LruCache<(InodeNo, String), Validity>>,
    /// Listings of object directories, across handles.
    listings: ListingCache,
    /// Branch prefixes known to hold nothing: lookups below them need no request.
    empty_prefixes: empty_prefixes::EmptyPrefixes,
    /// The kernel's page cache, once the adapter has a session to reach it through.
    kernel_pages: std::sync::OnceLock<Arc<dyn KernelPageCache>>,
    cache: Arc<DataCache>,
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    files: Mutex<HashMap<u64, Arc<OpenFile<L>>>>,
    next_handle: AtomicU64,
    mounted_at: SystemTime,
    /// Write state per (repository, branch).
    writers: Mutex<HashMap<(String, String), Arc<BranchWriter>>>,
    /// Local staging files, opened on the first write.
    staging: Mutex<Option<Arc<crate::staging::StagingDir>>>,
    next_staged: AtomicU64,
    /// Uploads started by `close` that have not finished (write-back, see [`write::background`]).
    background: write::background::BackgroundUploads,
    /// This core itself, for tasks that outlive the call that starts them.
    me: std::sync::Weak<Self>,
}

impl<L: LakeFs> std::fmt::Debug for Filesystem<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filesystem")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Names that can only be ref expressions or commit ids, never branch names: skip the branch request.
fn cannot_be_branch(name: &str) -> bool {
    name.contains(['~', '^', '@', '$', '.', '/']) || (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_full_commit_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Prefix that names a tag explicitly, for a tag hidden by a branch of the same name.
pub const TAG_PREFIX: &str = "tags@";

/// Resolve a ref name as the tree does: `tags@NAME` is the tag NAME; otherwise a branch first, then any ref
/// expression pinned to its commit.
pub async fn resolve_ref<L: LakeFs>(client: &L, repo: &str, name: &str) -> Result<RefTarget, LakeFsError> {
    if let Some(tag) = name.strip_prefix(TAG_PREFIX) {
        return client.get_tag(repo, tag).await.map(|t| RefTarget::Commit(t.commit_id));
    }
    if !cannot_be_branch(name) {
        match client.get_branch(repo, name).await {
            Ok(branch) => return Ok(RefTarget::Branch(branch.id)),
            Err(LakeFsError::NotFound(_) | LakeFsError::BadRequest(_)) => {}
            Err(err) => return Err(err),
        }
    }
    match client.get_commit(repo, name).await {
        Ok(commit) => Ok(RefTarget::Commit(commit.id)),
        // An invalid expression names nothing.
        Err(LakeFsError::BadRequest(message)) => Err(LakeFsError::NotFound(message)),
        Err(err) => Err(err),
    }
}

impl<L: LakeFs> Filesystem<L> {
    /// Build the core for `source`. This makes the one request that proves the credentials and the
    /// repository/ref are good, so a bad mount fails before anything is mounted.
    pub async fn new(client: Arc<L>, source: Source, config: FsConfig) -> FsResult<Arc<Self>> {
        let (root, root_location) = match &source {
            Source::Server => {
                client
                    .list_repositories("")
                    .await
                    .map_err(|e| FsError::lakefs("listing repositories", e))?;
                (NodeKind::Server, None)
            }
            Source::Repository { repo } => {
                client
                    .get_repository(repo)
                    .await
                    .map_err(|e| FsError::lakefs(format!("repository {repo}"), e))?;
                (NodeKind::Repository { repo: repo.clone() }, None)
            }
            Source::Ref {
                repo,
                reference,
                prefix,
            } => {
                let target = resolve_ref(&*client, repo, reference)
                    .await
                    .map_err(|e| FsError::lakefs(format!("ref {reference} in repository {repo}"), e))?;
                let location = Arc::new(RefLocation {
                    repo: repo.clone(),
                    name: reference.clone(),
                    target,
                });
                let root = NodeKind::Directory {
                    location: location.clone(),
                    prefix: prefix.clone(),
                    ref_root: true,
                };
                (root, Some(location))
            }
        };
        let negative_capacity = NonZeroUsize::new(config.negative_cache_entries).unwrap_or(NonZeroUsize::MIN);
        let disk = match &config.cache_dir {
            Some(dir) => Some(
                DiskBlockCache::open(dir, config.cache_size)
                    .map_err(|e| FsError::io(format!("opening the disk cache in {}: {e}", dir.display())))?,
            ),
            None => None,
        };
        let recovered = write::recover_staging(&config)?;
        let fs = Arc::new_cyclic(|me| Self {
            client,
            cache: Arc::new(DataCache::new(MemoryBlockCache::new(config.max_memory), disk)),
            config,
            source,
            root_location,
            table: InodeTable::new(root),
            negative: Mutex::new(LruCache::new(negative_capacity)),
            listings: ListingCache::new(LISTING_CACHE_CHILDREN),
            empty_prefixes: empty_prefixes::EmptyPrefixes::default(),
            kernel_pages: std::sync::OnceLock::new(),
            dirs: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            mounted_at: SystemTime::now(),
            writers: Mutex::new(HashMap::new()),
            staging: Mutex::new(recovered.clone()),
            next_staged: AtomicU64::new(1),
            background: write::background::BackgroundUploads::default(),
            me: me.clone(),
        });
        // An earlier run of this mount crashed with files not uploaded: upload them now, not on first access.
        if let (Some(_), Some(location)) = (&recovered, &fs.root_location) {
            fs.loaded_writer(location).await?;
        }
        Ok(fs)
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    pub fn client(&self) -> &Arc<L> {
        &self.client
    }

    /// Let random readers offer fetched blocks to the kernel's page cache (set once, by the adapter).
    pub fn set_kernel_page_cache(&self, kernel: Arc<dyn KernelPageCache>) {
        let _ = self.kernel_pages.set(kernel);
    }

    pub fn data_cache(&self) -> &Arc<DataCache> {
        &self.cache
    }

    /// Whether nothing in this mount can ever be written (a pinned ref, or `read_only`).
    pub fn is_read_only(&self) -> bool {
        self.config.read_only || self.root_location.as_ref().is_some_and(|l| l.is_immutable())
    }

    fn validity(&self, location: Option<&RefLocation>) -> Validity {
        match location {
            Some(location) if location.is_immutable() => Validity::Forever,
            _ => Validity::Until(Instant::now() + self.config.metadata_ttl),
        }
    }

    fn kernel_ttl(&self, validity: Validity) -> Duration {
        match validity {
            Validity::Forever => IMMUTABLE_TTL,
            Validity::Until(_) => self.config.metadata_ttl,
        }
    }

    fn inode(&self, ino: InodeNo) -> FsResult<Arc<Inode>> {
        self.table
            .get(ino)
            .ok_or_else(|| FsError::not_found(format!("unknown inode {ino}")))
    }

    fn attr_of(&self, inode: &Inode) -> Attr {
        let state = inode.state();
        match (&inode.kind, &state.object) {
            (NodeKind::File { .. }, Some(object)) => {
                object_attr(inode.ino, FileKind::RegularFile, object, &self.config)
            }
            (NodeKind::Symlink { .. }, Some(object)) => object_attr(inode.ino, FileKind::Symlink, object, &self.config),
            (NodeKind::StagedFile { location, id }, _) => {
                let (location, id) = (location.clone(), *id);
                drop(state);
                self.staged_attr(inode, &location, id)
            }
            (NodeKind::ControlFile { file, location }, _) => Attr {
                ino: inode.ino,
                kind: FileKind::RegularFile,
                size: 0,
                mtime: SystemTime::now(),
                ctime: SystemTime::now(),
                perm: if file.is_writable() && self.writer(location).is_some() {
                    0o644
                } else {
                    0o444
                },
                uid: self.config.uid,
                gid: self.config.gid,
                rdev: 0,
            },
            (NodeKind::Directory { location, prefix, .. }, _) => {
                let mut attr = directory_attr(inode.ino, &self.config, self.mounted_at);
                if let Some(meta) = self.writer(location).and_then(|w| w.dir_meta(prefix)) {
                    meta.apply(&mut attr);
                }
                attr
            }
            _ => directory_attr(inode.ino, &self.config, self.mounted_at),
        }
    }

    fn entry_of(&self, inode: &Inode) -> Entry {
        let validity = inode.state().validity;
        let ttl = match inode.kind {
            // Generated at open; the kernel must not trust a cached size.
            NodeKind::ControlFile { .. } => Duration::ZERO,
            _ => self.kernel_ttl(validity),
        };
        Entry {
            attr: self.attr_of(inode),
            ttl,
        }
    }

    fn negative_hit(&self, parent: InodeNo, name: &str) -> bool {
        let mut negative = lock(&self.negative);
        let key = (parent, name.to_string());
        match negative.get(&key) {
            Some(validity) if validity.is_valid(Instant::now()) => true,
            Some(_) => {
                negative.pop(&key);
                false
            }
            None => false,
        }
    }

    /// Look `name` up in directory `parent`; on success the kernel holds one more reference to the result.
    pub async fn lookup(&self, parent: InodeNo, name: &str) -> FsResult<Entry> {
        if name.len() > NAME_MAX {
            return Err(FsError::name_too_long(format!("{} bytes", name.len())));
        }
        let dir = self.inode(parent)?;
        if !dir.kind.is_dir() {
            return Err(FsError::not_a_directory(format!("inode {parent} is not a directory")));
        }
        if let Some(child) = self.table.child(parent, name) {
            let live = match &child.kind {
                NodeKind::StagedFile { location, id } => self.staged_is_live(location, *id),
                _ => true,
            };
            if live && (child.is_fresh(Instant::now()) || self.refresh_from_listing(&child).await) {
                self.table.remember(&child);
                return Ok(self.entry_of(&child));
            }
        }
        if self.negative_hit(parent, name) {
            return Err(FsError::not_found(format!("{name} (cached)")));
        }
        match self.resolve_child(&dir, name).await {
            Ok(child) => {
                lock(&self.negative).pop(&(parent, name.to_string()));
                self.table.remember(&child);
                Ok(self.entry_of(&child))
            }
            Err(err) if err.errno == libc::ENOENT => {
                self.table.unbind(parent, name);
                let validity = self.validity(dir.kind.location().map(|l| &**l));
                lock(&self.negative).put((parent, name.to_string()), validity);
                Err(err)
            }
            Err(err) => Err(err),
        }
    }

    /// Ask the server what `name` in `dir` is and bind it in the table.
    async fn resolve_child(&self, dir: &Inode, name: &str) -> FsResult<Arc<Inode>> {
        if invalid_name_reason(name).is_some() {
            return Err(FsError::not_found(format!("{name:?} cannot name a lakeFS entry")));
        }
        if let NodeKind::Directory { prefix, .. } = &dir.kind {
            if prefix.len() + name.len() > names::KEY_MAX {
                return Err(FsError::not_found(format!("{prefix}{name}: longer than a lakeFS key")));
            }
        }
        match &dir.kind {
            NodeKind::Server => {
                if !config::is_valid_repository_id(name) {
                    return Err(FsError::not_found(format!("{name} is not a repository id")));
                }
                self.client
                    .get_repository(name)
                    .await
                    .map_err(|e| FsError::lakefs(format!("repository {name}"), e))?;
                let kind = NodeKind::Repository { repo: name.to_string() };
                Ok(self.table.upsert(dir.ino, name, kind, None, self.validity(None)))
            }
            NodeKind::Repository { repo } => {
                let target = resolve_ref(&*self.client, repo, name)
                    .await
                    .map_err(|e| FsError::lakefs(format!("ref {name} in {repo}"), e))?;
                // The binding of a full commit id never changes; a tag or expression may move, so re-resolve it.
                let validity = if is_full_commit_id(name) {
                    Validity::Forever
                } else {
                    self.validity(None)
                };
                let location = Arc::new(RefLocation {
                    repo: repo.clone(),
                    name: name.to_string(),
                    target,
                });
                let kind = NodeKind::Directory {
                    location,
                    prefix: String::new(),
                    ref_root: true,
                };
                Ok(self.table.upsert(dir.ino, name, kind, None, validity))
            }
            NodeKind::Directory { location, ref_root, .. } if *ref_root && name == CONTROL_DIR => {
                let kind = NodeKind::ControlDir {
                    location: location.clone(),
                };
                Ok(self.table.upsert(dir.ino, name, kind, None, Validity::Forever))
            }
            NodeKind::Directory { location, prefix, .. } => {
                self.resolve_object_child(dir, location, prefix, name).await
            }
            NodeKind::ControlDir { location } => match ControlFile::from_name(name) {
                Some(file) => {
                    let kind = NodeKind::ControlFile {
                        location: location.clone(),
                        file,
                    };
                    Ok(self.table.upsert(dir.ino, name, kind, None, Validity::Forever))
                }
                None => Err(FsError::not_found(format!("no control file {name}"))),
            },
            NodeKind::File { .. }
            | NodeKind::Symlink { .. }
            | NodeKind::StagedFile { .. }
            | NodeKind::ControlFile { .. } => Err(FsError::not_a_directory(format!(
                "inode {} is not a directory",
                dir.ino
            ))),
        }
    }

    /// `name` below an object prefix: a directory when any key starts with `<key>/` (it wins over an object of
    /// the same name), else the object `<key>`. Both questions are asked at once.
    async fn resolve_object_child(
        &self,
        dir: &Inode,
        location: &Arc<RefLocation>,
        prefix: &str,
        name: &str,
    ) -> FsResult<Arc<Inode>> {
        let key = format!("{prefix}{name}");
        let writer = self.loaded_writer(location).await?;
        if let Some(writer) = &writer {
            if let Some(inode) = self.resolve_in_overlay(dir, location, writer, &key, name).await? {
                return Ok(inode);
            }
        }
        let read_ref = location.read_ref();
        if self.branch_prefix_is_empty(location, prefix).await? {
            return Err(FsError::not_found(format!(
                "{key} (nothing below {prefix} on {read_ref})"
            )));
        }
        let sub_prefix = format!("{key}/");
        let list = ListRequest {
            prefix: sub_prefix.clone(),
            after: String::new(),
            delimited: true,
            amount: 1,
        };
        let asked_at = self.empty_prefixes.generation();
        let (stat, listing) = futures::join!(
            self.client.stat_object(&location.repo, read_ref, &key),
            self.client.list_objects(&location.repo, read_ref, &list)
        );
        let validity = self.validity(Some(location));
        let listing = listing.map_err(|e| FsError::lakefs(format!("listing {sub_prefix}"), e))?;
        if listing.items.is_empty() && !location.is_immutable() {
            let until = Instant::now() + self.config.metadata_ttl;
            self.empty_prefixes
                .record(&location.repo, read_ref, &sub_prefix, until, asked_at);
        }
        let dir_in_view = match &writer {
            Some(writer) if !listing.items.is_empty() => self.view_allows_dir(writer, location, &sub_prefix).await?,
            _ => !listing.items.is_empty(),
        };
        if dir_in_view {
            let kind = NodeKind::Directory {
                location: location.clone(),
                prefix: sub_prefix,
                ref_root: false,
            };
            return Ok(self.table.upsert(dir.ino, name, kind, None, validity));
        }
        let object = stat.map_err(|e| FsError::lakefs(format!("{key} on {}", location.name), e))?;
        Ok(self.bind_object(dir.ino, name, location, object, validity))
    }

    /// Whether `prefix` of a branch is known to hold nothing (see [`empty_prefixes`]); a stale entry costs one
    /// listing to confirm.
    async fn branch_prefix_is_empty(&self, location: &RefLocation, prefix: &str) -> FsResult<bool> {
        if location.is_immutable() || prefix.is_empty() {
            return Ok(false);
        }
        let (repo, branch) = (&location.repo, location.read_ref());
        match self.empty_prefixes.check(repo, branch, prefix, Instant::now()) {
            empty_prefixes::Emptiness::Empty => Ok(true),
            empty_prefixes::Emptiness::Unknown => Ok(false),
            empty_prefixes::Emptiness::Stale => {
                let asked_at = self.empty_prefixes.generation();
                let list = ListRequest {
                    prefix: prefix.to_string(),
                    after: String::new(),
                    delimited: true,
                    amount: 1,
                };
                let listing = self
                    .client
                    .list_objects(repo, branch, &list)
                    .await
                    .map_err(|e| FsError::lakefs(format!("listing {prefix}"), e))?;
                if listing.items.is_empty() {
                    let until = Instant::now() + self.config.metadata_ttl;
                    self.empty_prefixes.record(repo, branch, prefix, until, asked_at);
                    Ok(true)
                } else {
                    self.empty_prefixes.forget(repo, branch, prefix);
                    Ok(false)
                }
            }
        }
    }

    fn bind_object(
        &self,
        parent: InodeNo,
        name: &str,
        location: &Arc<RefLocation>,
        object: ObjectInfo,
        validity: Validity,
    ) -> Arc<Inode> {
        let kind = match object.metadata.get(META_SYMLINK_TARGET) {
            Some(target) => NodeKind::Symlink {
                location: location.clone(),
                key: object.path.clone(),
                target: target.clone(),
            },
            None => NodeKind::File {
                location: location.clone(),
                key: object.path.clone(),
                checksum: object.checksum.clone(),
            },
        };
        self.table.upsert(parent, name, kind, Some(object), validity)
    }

    /// Attributes of `ino`; an object whose metadata expired is re-checked with one stat.
    pub async fn getattr(&self, ino: InodeNo) -> FsResult<Entry> {
        let inode = self.inode(ino)?;
        let (location, key) = match &inode.kind {
            NodeKind::File { location, key, .. } | NodeKind::Symlink { location, key, .. } => (location, key),
            _ => return Ok(self.entry_of(&inode)),
        };
        if inode.is_fresh(Instant::now()) || self.refresh_from_listing(&inode).await {
            return Ok(self.entry_of(&inode));
        }
        let current = self.client.stat_object(&location.repo, location.read_ref(), key).await;
        let unchanged = match (&current, inode.state().object.as_ref()) {
            (Ok(now), Some(before)) => now.checksum == before.checksum,
            _ => false,
        };
        match current {
            Ok(object) if unchanged => {
                let mut state = inode.state();
                state.object = Some(object);
                state.validity = self.validity(Some(location));
                drop(state);
                Ok(self.entry_of(&inode))
            }
            // Changed or gone: this inode shows what it always showed; a fresh lookup finds the new version.
            Ok(_) | Err(LakeFsError::NotFound(_)) => Ok(Entry {
                ttl: Duration::ZERO,
                ..self.entry_of(&inode)
            }),
            Err(err) => Err(FsError::lakefs(format!("stat {key}"), err)),
        }
    }

    /// Extended attribute `name` of `ino`: the mount exposes none, and says so with EOPNOTSUPP for every name.
    /// For the POSIX ACL names this tells `ls -l` and friends that the filesystem has no ACLs at all (they stop
    /// asking), where "no such attribute" (ENODATA) would be asked again for every file.
    pub fn getxattr(&self, ino: InodeNo, name: &[u8]) -> FsError {
        FsError::invalid(format!(
            "inode {ino}: no extended attribute {:?} (the mount has none)",
            String::from_utf8_lossy(name)
        ))
        .with_errno(libc::EOPNOTSUPP)
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&self, ino: InodeNo, count: u64) {
        self.table.forget(ino, count);
    }

    pub async fn readlink(&self, ino: InodeNo) -> FsResult<String> {
        let inode = self.inode(ino)?;
        match &inode.kind {
            NodeKind::Symlink { target, .. } => Ok(target.clone()),
            NodeKind::StagedFile { location, id } => self.staged_symlink_target(location, *id, &inode),
            _ => Err(FsError::invalid(format!("inode {ino} is not a symlink"))),
        }
    }

    fn new_handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    pub async fn opendir(&self, ino: InodeNo) -> FsResult<u64> {
        let inode = self.inode(ino)?;
        if !inode.kind.is_dir() {
            return Err(FsError::not_a_directory(format!("inode {ino} is not a directory")));
        }
        let fh = self.new_handle();
        lock(&self.dirs).insert(fh, Arc::new(DirHandle::new(ino)));
        Ok(fh)
    }

    /// Close a directory handle. Children the listing created but the kernel never received with a lookup
    /// count leave the inode table again; the next lookup asks the server.
    pub fn releasedir(&self, fh: u64) {
        let Some(handle) = lock(&self.dirs).remove(&fh) else {
            return;
        };
        if let Some(entries) = handle.take_snapshot() {
            let children = entries
                .iter()
                .filter(|item| item.entry.name != "." && item.entry.name != "..");
            self.table.drop_all_if_unreferenced(children.map(|item| &item.inode));
        }
    }

    /// Fill `replier` from cookie `offset`. With `plus`, each entry handed out counts as a lookup.
    pub async fn readdir(
        &self,
        ino: InodeNo,
        fh: u64,
        offset: u64,
        plus: bool,
        replier: &mut impl DirectoryReplier,
    ) -> FsResult<()> {
        let handle = lock(&self.dirs)
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::bad_handle(format!("dir handle {fh}")))?;
        if handle.ino != ino {
            return Err(FsError::bad_handle(format!(
                "dir handle {fh} belongs to inode {}",
                handle.ino
            )));
        }
        if handle.needs_snapshot(offset) {
            let dir = self.inode(ino)?;
            let entries = self.snapshot(&dir).await?;
            handle.set_snapshot(entries);
        }
        let (entries, start) = handle.entries_from(offset);
        let mut added = 0;
        for SnapshotEntry { entry, .. } in &entries[start..] {
            if replier.add(entry) {
                break;
            }
            added += 1;
        }
        if plus {
            let handed_out = entries[start..start + added]
                .iter()
                .filter(|item| item.entry.name != "." && item.entry.name != "..");
            self.table.remember_all(handed_out.map(|item| &item.inode));
        }
        Ok(())
    }

    /// All entries of `dir`, from the server, binding every child in the table (this primes attributes).
    async fn snapshot(&self, dir: &Arc<Inode>) -> FsResult<Vec<SnapshotEntry>> {
        let parent = self.table.get(dir.parent).unwrap_or_else(|| dir.clone());
        let item = |inode: &Arc<Inode>, name: &str| {
            let Entry { attr, ttl } = self.entry_of(inode);
            SnapshotEntry {
                entry: DirEntry {
                    ino: inode.ino,
                    name: name.to_string(),
                    attr,
                    ttl,
                    offset: 0,
                },
                inode: inode.clone(),
            }
        };
        let children = self.list_children(dir).await?;
        self.forget_unlisted(dir, &children);
        let mut entries = Vec::with_capacity(children.len() + 2);
        entries.push(item(dir, "."));
        entries.push(item(&parent, ".."));
        entries.extend(children.iter().map(|child| item(child, &child.name)));
        Ok(entries)
    }

    /// After a listing of `dir` bound every listed child: unbind the names it no longer lists and drop cached
    /// misses of names it does list. Both cost nothing per entry in the usual case (no name gone, no miss cached
    /// in `dir`), which matters for directories of many thousands of entries listed again and again.
    fn forget_unlisted(&self, dir: &Inode, children: &[Arc<Inode>]) {
        let listed = || children.iter().map(|c| c.name.as_str()).collect::<HashSet<&str>>();
        // Pinned refs under a repository and control entries are never listed, only looked up.
        let keeps_unlisted = matches!(dir.kind, NodeKind::Repository { .. } | NodeKind::ControlDir { .. });
        if !keeps_unlisted {
            // Every listed child is bound now, so equal counts mean nothing else is.
            let control_dir = usize::from(self.table.child(dir.ino, CONTROL_DIR).is_some());
            if self.table.children_count(dir.ino) != children.len() + control_dir {
                let listed = listed();
                self.table
                    .unbind_children_except(dir.ino, |name| name == CONTROL_DIR || listed.contains(name));
            }
        }
        let mut negative = lock(&self.negative);
        let misses: Vec<String> = negative
            .iter()
            .filter(|((parent, _), _)| *parent == dir.ino)
            .map(|((_, name), _)| name.clone())
            .collect();
        if misses.is_empty() {
            return;
        }
        let listed = listed();
        for name in misses {
            if listed.contains(name.as_str()) {
                negative.pop(&(dir.ino, name));
            }
        }
    }

    async fn list_children(&self, dir: &Arc<Inode>) -> FsResult<Vec<Arc<Inode>>> {
        let mut out = Vec::new();
        let mut attempts = 0;
        match &dir.kind {
            NodeKind::Server => {
                let mut after = String::new();
                loop {
                    let page = self
                        .client
                        .list_repositories(&after)
                        .await
                        .map_err(|e| FsError::lakefs("listing repositories", e))?;
                    for repo in page.items {
                        let kind = NodeKind::Repository { repo: repo.id.clone() };
                        out.push(self.table.upsert(dir.ino, &repo.id, kind, None, self.validity(None)));
                    }
                    match page.next_after {
                        Some(next) if next > after => after = next,
                        _ => break,
                    }
                }
            }
            NodeKind::Repository { repo } => {
                let mut after = String::new();
                loop {
                    let page = self
                        .client
                        .list_branches(repo, &after)
                        .await
                        .map_err(|e| FsError::lakefs(format!("listing branches of {repo}"), e))?;
                    for branch in page.items {
                        if invalid_name_reason(&branch.id).is_some() {
                            continue;
                        }
                        let location = Arc::new(RefLocation {
                            repo: repo.clone(),
                            name: branch.id.clone(),
                            target: RefTarget::Branch(branch.id.clone()),
                        });
                        let kind = NodeKind::Directory {
                            location,
                            prefix: String::new(),
                            ref_root: true,
                        };
                        out.push(self.table.upsert(dir.ino, &branch.id, kind, None, self.validity(None)));
                    }
                    match page.next_after {
                        Some(next) if next > after => after = next,
                        _ => break,
                    }
                }
            }
            NodeKind::Directory {
                location,
                prefix,
                ref_root,
            } => loop {
                // A listing fetched before this mount's commit merged, combined with the overlay after the commit
                // retired it, would show files the mount deleted and lose ones it wrote: such a commit bumps the
                // listing generation before it retires the overlay, and the listing is made again.
                let seen = self.listings.generation();
                attempts += 1;
                let children = self.directory_listing(location, prefix).await?;
                let validity = self.validity(Some(location));
                let mut listed = Vec::with_capacity(children.len());
                for (name, child) in children.iter() {
                    if *ref_root && name == CONTROL_DIR {
                        tracing::warn!(
                            repo = location.repo,
                            reference = location.name,
                            "key {prefix}{name} is shadowed by the control directory"
                        );
                        continue;
                    }
                    let inode = match child {
                        Child::Directory => {
                            let kind = NodeKind::Directory {
                                location: location.clone(),
                                prefix: format!("{prefix}{name}/"),
                                ref_root: false,
                            };
                            self.table.upsert(dir.ino, name, kind, None, validity)
                        }
                        Child::Object(object) => self.bind_object(dir.ino, name, location, object.clone(), validity),
                    };
                    listed.push(inode);
                }
                match self.loaded_writer(location).await? {
                    // The overlay changes only what lies below the prefix; most directories have nothing there.
                    Some(writer) if writer.has_overlay_below(prefix) => {
                        let named = listed.into_iter().map(|inode| (inode.name.clone(), inode)).collect();
                        out = self.overlay_listing(dir, location, &writer, prefix, named).await?;
                    }
                    _ => out = listed,
                }
                // Bounded, for a branch committed through this mount faster than it can be listed.
                if self.listings.generation() == seen || attempts == LISTING_ATTEMPTS {
                    break;
                }
                tracing::debug!(prefix, "listing raced a commit of this mount; listing again");
            },
            NodeKind::ControlDir { location } => {
                for file in ControlFile::ALL {
                    let kind = NodeKind::ControlFile {
                        location: location.clone(),
                        file,
                    };
                    out.push(self.table.upsert(dir.ino, file.name(), kind, None, Validity::Forever));
                }
            }
            NodeKind::File { .. }
            | NodeKind::Symlink { .. }
            | NodeKind::StagedFile { .. }
            | NodeKind::ControlFile { .. } => {
                return Err(FsError::not_a_directory(format!(
                    "inode {} is not a directory",
                    dir.ino
                )));
            }
        }
        Ok(out)
    }

    /// The children of object directory `prefix` on `location`: from the listing cache while it is fresh or
    /// revalidates (see [`ListingCache`]), else from every page of `objects/ls`.
    async fn directory_listing(&self, location: &RefLocation, prefix: &str) -> FsResult<Children> {
        if let Some(children) = self.current_cached_listing(location, prefix).await {
            return Ok(children);
        }
        let key = ListingKey {
            repo: location.repo.clone(),
            read_ref: location.read_ref().to_string(),
            prefix: prefix.to_string(),
        };
        let now = Instant::now();
        let generation = self.listings.generation();
        let mut builder = ChildrenBuilder::new(prefix);
        let mut request = ListRequest {
            prefix: prefix.to_string(),
            after: String::new(),
            delimited: true,
            amount: crate::lakefs::MAX_PAGE,
        };
        // Only listings of more than one page are worth revalidating: a one-page listing is as cheap to repeat.
        let mut head_after_first_page: Option<Option<String>> = None;
        loop {
            let page = self
                .client
                .list_objects(&location.repo, location.read_ref(), &request)
                .await
                .map_err(|e| FsError::lakefs(format!("listing {prefix} on {}", location.name), e))?;
            for entry in page.items {
                builder.push(entry);
            }
            match page.next_after {
                Some(next) if next > request.after => {
                    if head_after_first_page.is_none() && !location.is_immutable() {
                        head_after_first_page = Some(self.clean_head(location, prefix).await);
                    }
                    request.after = next;
                }
                _ => break,
            }
        }
        let clean_head = match head_after_first_page {
            Some(Some(before)) => {
                let after = self.clean_head(location, prefix).await;
                (after.as_deref() == Some(before.as_str())).then_some(before)
            }
            _ => None,
        };
        let children: Children = Arc::new(builder.finish().into_iter().collect());
        self.listings.insert_since(
            generation,
            key,
            CachedListing {
                children: children.clone(),
                checked: now,
                clean_head,
            },
        );
        Ok(children)
    }

    /// Trust an expired object or directory inode again when its directory's cached listing is still current
    /// and shows the same thing (a directory, or an object of the same checksum). `ls -l` and `find` on a
    /// large directory then cost one revalidation per directory, not one request per entry.
    async fn refresh_from_listing(&self, inode: &Inode) -> bool {
        let (location, dir_prefix, expected_checksum) = match &inode.kind {
            NodeKind::File { location, key, .. } | NodeKind::Symlink { location, key, .. } => {
                let checksum = inode.state().object.as_ref().map(|o| o.checksum.clone());
                let Some(checksum) = checksum else { return false };
                let prefix = key.rfind('/').map_or("", |slash| &key[..=slash]);
                (location, prefix, Some(checksum))
            }
            NodeKind::Directory {
                location,
                prefix,
                ref_root: false,
            } => {
                let parent = prefix.trim_end_matches('/');
                (location, parent.rfind('/').map_or("", |slash| &prefix[..=slash]), None)
            }
            _ => return false,
        };
        let Some(children) = self.current_cached_listing(location, dir_prefix).await else {
            return false;
        };
        let Ok(index) = children.binary_search_by(|(name, _)| name.as_str().cmp(inode.name.as_str())) else {
            return false;
        };
        let same = match (&children[index].1, expected_checksum) {
            (Child::Directory, None) => true,
            (Child::Object(object), Some(checksum)) => object.checksum == checksum,
            _ => false,
        };
        if same {
            inode.state().validity = self.validity(Some(location));
        }
        same
    }

    /// The cached listing of `prefix`, if there is one and it is (or revalidates as) current; never lists.
    async fn current_cached_listing(&self, location: &RefLocation, prefix: &str) -> Option<Children> {
        let key = ListingKey {
            repo: location.repo.clone(),
            read_ref: location.read_ref().to_string(),
            prefix: prefix.to_string(),
        };
        let now = Instant::now();
        match self
            .listings
            .lookup(&key, location.is_immutable(), self.config.metadata_ttl, now)
        {
            ListingLookup::Fresh(children) => Some(children),
            ListingLookup::Revalidate { children, head } => {
                let current = self.clean_head(location, prefix).await.as_deref() == Some(head.as_str());
                if current {
                    self.listings.confirm(&key, now);
                } else {
                    // Known outdated: later lookups must not pay for the same check again.
                    self.listings.remove(&key);
                }
                current.then_some(children)
            }
            ListingLookup::Missing => None,
        }
    }

    /// A branch's head commit if it has no uncommitted change under `prefix`; `None` when it has, when
    /// `location` is not a branch, or when asking failed.
    async fn clean_head(&self, location: &RefLocation, prefix: &str) -> Option<String> {
        let RefTarget::Branch(branch) = &location.target else {
            return None;
        };
        let (head, dirty) = futures::join!(
            self.client.get_branch(&location.repo, branch),
            self.client.has_uncommitted_changes(&location.repo, branch, prefix)
        );
        match (head, dirty) {
            (Ok(head), Ok(false)) => Some(head.commit_id),
            (Ok(_), Ok(true)) => None,
            (Err(err), _) | (_, Err(err)) => {
                tracing::debug!(error = %err, branch, "could not check a branch for changes");
                None
            }
        }
    }

    pub async fn open(&self, ino: InodeNo, mode: OpenMode) -> FsResult<Opened> {
        let inode = self.inode(ino)?;
        if inode.kind.is_dir() {
            return Err(FsError::is_a_directory(format!("inode {ino} is a directory")));
        }
        if mode.write || mode.truncate {
            return self.open_for_write(&inode, mode).await;
        }
        if let NodeKind::StagedFile { location, id } = &inode.kind {
            return self.open_staged_read(&inode, location, *id).await;
        }
        let fh = self.new_handle();
        let (file, opened) = match &inode.kind {
            NodeKind::File {
                location,
                key,
                checksum,
            } => {
                let size = inode.state().object.as_ref().map_or(0, |o| o.size);
                let version = ObjectVersion {
                    repo: location.repo.clone(),
                    read_ref: location.read_ref().to_string(),
                    key: key.clone(),
                    checksum: checksum.clone(),
                    size,
                };
                let mut reader = ObjectReader::new(
                    self.client.clone(),
                    self.cache.clone(),
                    version,
                    self.config.read_tuning(),
                );
                if let Some(kernel) = self.kernel_pages.get() {
                    reader = reader.with_kernel_cache(ino.0, kernel.clone());
                }
                (
                    OpenFile::Object(reader),
                    Opened {
                        fh,
                        direct_io: false,
                        keep_cache: true,
                    },
                )
            }
            NodeKind::ControlFile { location, file } => {
                let content = self.control_content(location, *file).await?;
                (
                    OpenFile::Control(content),
                    Opened {
                        fh,
                        direct_io: true,
                        keep_cache: false,
                    },
                )
            }
            _ => return Err(FsError::invalid(format!("inode {ino} cannot be opened"))),
        };
        lock(&self.files).insert(fh, Arc::new(file));
        Ok(opened)
    }

    /// The error for a modification of (or inside) `ino` that cannot be written: EROFS on a pinned ref or a
    /// `read_only` mount, EPERM where the tree has nothing to write (repositories, the control directory).
    pub fn refuse_write(&self, ino: InodeNo, operation: &str) -> FsError {
        match self.inode(ino) {
            Ok(inode) => self.write_refusal(&inode, operation),
            Err(err) => err,
        }
    }

    fn write_refusal(&self, inode: &Inode, operation: &str) -> FsError {
        let why = match inode.kind.location() {
            Some(location) if location.is_immutable() => {
                format!(
                    "{} in {} is pinned to a commit and read-only",
                    location.name, location.repo
                )
            }
            _ if self.config.read_only => "the mount is read-only".to_string(),
            _ => {
                return FsError::not_permitted(format!(
                    "{operation}: {} cannot be changed through the mount",
                    if inode.name.is_empty() { "/" } else { &inode.name }
                ))
            }
        };
        FsError::read_only(format!("{operation}: {why}"))
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let file = lock(&self.files)
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::bad_handle(format!("file handle {fh}")))?;
        match &*file {
            OpenFile::Object(reader) => reader.read(offset, size).await,
            OpenFile::Control(content) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(content.len());
                let end = start.saturating_add(size as usize).min(content.len());
                Ok(content.slice(start..end))
            }
            OpenFile::Staged { local: Some(local), .. } => write::read_local(local, offset, size),
            OpenFile::Staged { local: None, .. } | OpenFile::ControlWrite { .. } => {
                Err(FsError::bad_handle(format!("file handle {fh} is not open for reading")))
            }
        }
    }

    pub fn release(&self, fh: u64) {
        let file = lock(&self.files).remove(&fh);
        if let Some(file) = file {
            if let OpenFile::Staged { writer, id, .. } = &*file {
                self.release_staged(writer, *id);
            }
        }
    }

    async fn head_commit(&self, location: &RefLocation) -> FsResult<String> {
        match &location.target {
            RefTarget::Commit(id) => Ok(id.clone()),
            RefTarget::Branch(branch) => self
                .client
                .get_branch(&location.repo, branch)
                .await
                .map(|b| b.commit_id)
                .map_err(|e| FsError::lakefs(format!("branch {branch}"), e)),
        }
    }

    async fn control_content(&self, location: &RefLocation, file: ControlFile) -> FsResult<Bytes> {
        let head = self.head_commit(location).await?;
        let text = match file {
            ControlFile::Head => format!("{head}\n"),
            ControlFile::Status => {
                let (kind, mode) = match &location.target {
                    RefTarget::Branch(_) => (
                        "branch",
                        if self.config.read_only {
                            "read-only"
                        } else {
                            "read-write"
                        },
                    ),
                    RefTarget::Commit(_) => ("commit (pinned)", "read-only"),
                };
                let (hits, misses) = self.cache.memory.stats();
                let mut text = format!(
                    "repository: {}\nref: {}\nref type: {kind}\nhead: {head}\nmode: {mode}\n\
                     data cache: {} bytes, {hits} hits, {misses} misses\n",
                    location.repo,
                    location.name,
                    self.cache.memory.used_bytes(),
                );
                if let Some(write) = self.write_status(location, file) {
                    text.push_str(&write);
                }
                text
            }
            ControlFile::StatusJson => self.status_json(location, &head),
            ControlFile::Staging | ControlFile::Commit | ControlFile::Merge | ControlFile::Discard => {
                self.write_status(location, file).unwrap_or_default()
            }
        };
        Ok(Bytes::from(text))
    }
}

#[cfg(test)]
mod hostile_listing_tests;
#[cfg(test)]
mod tests;
