//! In-memory [`LakeFs`] for tests: repositories, branches, tags and commits in `BTreeMap`s, per-operation request
//! counters, an adjustable page size to stress pagination, and helpers that act as *another writer* (put, delete,
//! commit, tag) so tests can change the server under a running filesystem.
//!
//! Semantics follow lakeFS where the filesystem can observe them: a branch reads its HEAD plus uncommitted changes,
//! commits and tags are immutable, ref expressions `<ref>~N`, `<ref>^` and `<branch>@` resolve through first
//! parents, hidden branches are left out of listings, listings are sorted by path and paged with `after`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use md5::{Digest, Md5};

use super::{
    CommitInfo, CommitRequest, DiffEntry, DiffKind, LakeFs, LakeFsError, ListEntry, ListRequest, MergeStrategy,
    ObjectBytes, ObjectInfo, Page, RefInfo, Repository, Result,
};

#[derive(Debug, Clone)]
struct MockObject {
    data: Bytes,
    mtime: i64,
    checksum: String,
    metadata: BTreeMap<String, String>,
}

type Tree = BTreeMap<String, MockObject>;

#[derive(Debug, Clone)]
struct MockCommit {
    parent: Option<String>,
    /// Second parent of a merge commit.
    merged: Option<String>,
    creation_date: i64,
    tree: Tree,
}

#[derive(Debug, Clone)]
struct MockBranch {
    head: String,
    hidden: bool,
    /// HEAD tree with uncommitted changes applied.
    working: Tree,
}

#[derive(Debug, Clone)]
struct MockRepo {
    default_branch: String,
    creation_date: i64,
    branches: BTreeMap<String, MockBranch>,
    tags: BTreeMap<String, String>,
    commits: BTreeMap<String, MockCommit>,
}

/// Decides whether a pre-merge hook lets a merge into `destination` through: `Some(message)` refuses it.
pub type MergeHook = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Default)]
struct MockState {
    repos: BTreeMap<String, MockRepo>,
    /// Errors the next call of an operation returns instead of running.
    faults: BTreeMap<&'static str, LakeFsError>,
    merge_hook: Option<MergeHook>,
    next_commit: u64,
    clock: i64,
    requests: BTreeMap<&'static str, u64>,
    /// Object bytes returned by ranged reads.
    bytes_served: u64,
    /// Errors to return instead of serving, per operation, with how many times.
    failures: BTreeMap<String, (LakeFsError, u32)>,
    /// How long each `upload_file` takes, as over a slow link.
    upload_delay: std::time::Duration,
    /// How long a ranged read starting at a given offset takes (one slow response among fast ones).
    range_delays: BTreeMap<u64, std::time::Duration>,
    /// Ranged reads made, by the offset they started at.
    range_starts: BTreeMap<u64, u64>,
    /// Raw listing pages served verbatim, per (repository, ref, prefix): a misbehaving server.
    scripted_listings: BTreeMap<(String, String, String), std::collections::VecDeque<Page<ListEntry>>>,
    /// Multipart uploads in progress: target and parts by number.
    multipart: BTreeMap<String, (super::MultipartUpload, BTreeMap<u32, Bytes>)>,
    next_upload: u64,
}

impl std::fmt::Debug for MockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockState")
            .field("repos", &self.repos)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl MockState {
    fn new_commit_id(&mut self) -> String {
        self.next_commit += 1;
        let digest = Md5::digest(self.next_commit.to_be_bytes());
        // 64 hex characters like a real commit id.
        format!("{}{}", hex::encode(digest), hex::encode(Md5::digest(digest)))
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1;
        1_700_000_000 + self.clock
    }

    fn repo(&self, repo: &str) -> Result<&MockRepo> {
        self.repos
            .get(repo)
            .ok_or_else(|| LakeFsError::NotFound("repository not found".into()))
    }

    fn repo_mut(&mut self, repo: &str) -> Result<&mut MockRepo> {
        self.repos
            .get_mut(repo)
            .ok_or_else(|| LakeFsError::NotFound("repository not found".into()))
    }
}

impl MockRepo {
    /// Base-name resolution in lakeFS's order: full commit id, branch, tag, unique commit-id prefix.
    fn resolve_base(&self, base: &str) -> Result<String> {
        if self.commits.contains_key(base) {
            return Ok(base.to_string());
        }
        if let Some(branch) = self.branches.get(base) {
            return Ok(branch.head.clone());
        }
        if let Some(commit) = self.tags.get(base) {
            return Ok(commit.clone());
        }
        if !base.is_empty() && base.len() < 64 && base.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = self.commits.keys().filter(|id| id.starts_with(base));
            if let (Some(only), None) = (matches.next(), matches.next()) {
                return Ok(only.clone());
            }
        }
        Err(LakeFsError::NotFound("not found".into()))
    }

    /// A ref expression to a commit id.
    fn resolve_commit(&self, reference: &str) -> Result<String> {
        let split = reference.find(['~', '^', '@', '$']).unwrap_or(reference.len());
        let (base, mut modifiers) = reference.split_at(split);
        if modifiers == "@" {
            return match self.branches.get(base) {
                Some(branch) => Ok(branch.head.clone()),
                None => Err(LakeFsError::BadRequest("ref: invalid value".into())),
            };
        }
        if modifiers.contains('$') || modifiers.contains('@') {
            return Err(LakeFsError::BadRequest(
                "reference to staging area with $ is not a commit".into(),
            ));
        }
        let mut commit = self.resolve_base(base)?;
        while let Some(op) = modifiers.chars().next() {
            modifiers = &modifiers[1..];
            let digits = modifiers.find(|c: char| !c.is_ascii_digit()).unwrap_or(modifiers.len());
            let count: u32 = if digits == 0 {
                1
            } else {
                modifiers[..digits]
                    .parse()
                    .map_err(|_| LakeFsError::BadRequest("bad modifier".into()))?
            };
            modifiers = &modifiers[digits..];
            let steps = match op {
                '~' => count,
                '^' if count <= 1 => count,
                _ => return Err(LakeFsError::BadRequest("unsupported parent number".into())),
            };
            for _ in 0..steps {
                let parent = self.commits.get(&commit).and_then(|c| c.parent.clone());
                commit = parent.ok_or_else(|| LakeFsError::NotFound("commit not found".into()))?;
            }
        }
        Ok(commit)
    }

    /// The tree a read of `reference` sees: a plain branch name includes uncommitted changes.
    fn tree(&self, reference: &str) -> Result<&Tree> {
        if let Some(branch) = self.branches.get(reference) {
            return Ok(&branch.working);
        }
        let id = self.resolve_commit(reference)?;
        self.commits
            .get(&id)
            .map(|c| &c.tree)
            .ok_or_else(|| LakeFsError::NotFound("commit not found".into()))
    }
}

impl MockRepo {
    fn branch(&self, branch: &str) -> Result<&MockBranch> {
        self.branches
            .get(branch)
            .ok_or_else(|| LakeFsError::NotFound(format!("branch '{branch}' not found")))
    }

    fn branch_mut(&mut self, branch: &str) -> Result<&mut MockBranch> {
        self.branches
            .get_mut(branch)
            .ok_or_else(|| LakeFsError::NotFound(format!("branch '{branch}' not found")))
    }

    fn ancestors(&self, commit: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let mut queue = std::collections::VecDeque::from([commit.to_string()]);
        while let Some(id) = queue.pop_front() {
            if seen.contains(&id) {
                continue;
            }
            if let Some(c) = self.commits.get(&id) {
                queue.extend(c.parent.iter().cloned());
                queue.extend(c.merged.iter().cloned());
            }
            seen.push(id);
        }
        seen
    }

    /// The nearest common ancestor of two commits (breadth-first from `right`).
    fn merge_base(&self, left: &str, right: &str) -> Option<String> {
        let left = self.ancestors(left);
        self.ancestors(right).into_iter().find(|id| left.contains(id))
    }

    fn commit_tree(&self, id: &str) -> Tree {
        self.commits.get(id).map(|c| c.tree.clone()).unwrap_or_default()
    }
}

fn same_object(a: Option<&MockObject>, b: Option<&MockObject>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.checksum == b.checksum && a.metadata == b.metadata,
        (None, None) => true,
        _ => false,
    }
}

/// Paths whose object differs between two trees, in order.
fn changed_paths(from: &Tree, to: &Tree) -> Vec<(String, DiffKind)> {
    let keys: std::collections::BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    keys.into_iter()
        .filter_map(|key| match (from.get(key), to.get(key)) {
            (None, Some(_)) => Some((key.clone(), DiffKind::Added)),
            (Some(_), None) => Some((key.clone(), DiffKind::Removed)),
            (a, b) if !same_object(a, b) => Some((key.clone(), DiffKind::Changed)),
            _ => None,
        })
        .collect()
}

fn diff_page(mut entries: Vec<DiffEntry>, after: &str, page_size: usize) -> Page<DiffEntry> {
    entries.retain(|e| e.path.as_str() > after);
    let next_after = (entries.len() > page_size).then(|| {
        entries.truncate(page_size);
        entries.last().map(|e| e.path.clone()).unwrap_or_default()
    });
    Page {
        items: entries,
        next_after,
    }
}

fn object_info(path: &str, object: &MockObject) -> ObjectInfo {
    ObjectInfo {
        path: path.to_string(),
        size: object.data.len() as u64,
        mtime: object.mtime,
        checksum: object.checksum.clone(),
        metadata: object.metadata.clone(),
    }
}

/// A `LakeFs` whose whole server lives in memory.
#[derive(Debug)]
pub struct MockLakeFs {
    state: Mutex<MockState>,
    page_size: AtomicU32,
}

impl Default for MockLakeFs {
    fn default() -> Self {
        Self::new()
    }
}

impl MockLakeFs {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(MockState::default()),
            page_size: AtomicU32::new(super::MAX_PAGE),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MockState> {
        // A panicking test thread must not hide the state from the assertions that follow.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count a request and fail it if a failure was injected for `operation`.
    fn begin(&self, operation: &'static str) -> Result<()> {
        let mut state = self.lock();
        *state.requests.entry(operation).or_default() += 1;
        if let Some((error, remaining)) = state.failures.get_mut(operation) {
            let error = error.clone();
            *remaining -= 1;
            if *remaining == 0 {
                state.failures.remove(operation);
            }
            return Err(error);
        }
        Ok(())
    }

    /// Make the next `times` calls of `operation` (a trait method's name) fail with `error`.
    pub fn inject_failure(&self, operation: &str, error: LakeFsError, times: u32) {
        if times > 0 {
            self.lock().failures.insert(operation.to_string(), (error, times));
        }
    }

    /// Requests served for `operation` (the trait method's name) so far.
    pub fn requests(&self, operation: &str) -> u64 {
        self.lock().requests.get(operation).copied().unwrap_or(0)
    }

    /// Object bytes returned by ranged reads so far.
    pub fn bytes_served(&self) -> u64 {
        self.lock().bytes_served
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_multipart_uploads(&self) -> usize {
        self.lock().multipart.len()
    }

    /// Requests served for every operation so far.
    pub fn total_requests(&self) -> u64 {
        self.lock().requests.values().sum()
    }

    /// Make the next call of `operation` (a trait method's name) fail with `error`.
    pub fn fail_next(&self, operation: &'static str, error: LakeFsError) {
        self.lock().faults.insert(operation, error);
    }

    /// Make every ranged read that starts at `offset` take `delay` before it answers.
    pub fn set_range_delay(&self, offset: u64, delay: std::time::Duration) {
        self.lock().range_delays.insert(offset, delay);
    }

    /// Ranged reads made that started at `offset`.
    pub fn range_requests_at(&self, offset: u64) -> u64 {
        self.lock().range_starts.get(&offset).copied().unwrap_or(0)
    }

    /// Make every `upload_file` take `delay` (the upload lands at its end).
    pub fn set_upload_delay(&self, delay: std::time::Duration) {
        self.lock().upload_delay = delay;
    }

    /// Install a pre-merge hook; `None` removes it.
    pub fn set_merge_hook(&self, hook: Option<MergeHook>) {
        self.lock().merge_hook = hook;
    }

    /// Count a call of `operation` and return the fault injected for it, if any.
    fn enter(&self, operation: &'static str) -> Result<std::sync::MutexGuard<'_, MockState>> {
        let mut state = self.lock();
        *state.requests.entry(operation).or_default() += 1;
        match state.faults.remove(operation) {
            Some(err) => Err(err),
            None => Ok(state),
        }
    }

    /// The objects a read of `reference` sees, by path (for assertions).
    pub fn snapshot(&self, repo: &str, reference: &str) -> Result<BTreeMap<String, Bytes>> {
        let state = self.lock();
        let tree = state.repo(repo)?.tree(reference)?;
        Ok(tree.iter().map(|(k, o)| (k.clone(), o.data.clone())).collect())
    }

    /// Metadata of an object as a read of `reference` sees it.
    pub fn metadata(&self, repo: &str, reference: &str, path: &str) -> Result<BTreeMap<String, String>> {
        let state = self.lock();
        let tree = state.repo(repo)?.tree(reference)?;
        tree.get(path)
            .map(|o| o.metadata.clone())
            .ok_or_else(|| LakeFsError::NotFound(path.to_string()))
    }

    /// Whether `branch` exists and is hidden.
    pub fn is_hidden_branch(&self, repo: &str, branch: &str) -> Option<bool> {
        let state = self.lock();
        state.repos.get(repo)?.branches.get(branch).map(|b| b.hidden)
    }

    /// Cap every listing page at `size` entries, whatever the caller asks for.
    /// Answer `list_objects` on `repo`/`reference` with `prefix` by `pages`, verbatim and in order, one per call
    /// whatever the request's `after` (the last page repeats): duplicates, names no file may carry, entries
    /// outside the prefix, and cursors that repeat or go back, as a broken or hostile server might send.
    pub fn script_listing(&self, repo: &str, reference: &str, prefix: &str, pages: Vec<Page<ListEntry>>) {
        let key = (repo.to_string(), reference.to_string(), prefix.to_string());
        self.lock().scripted_listings.insert(key, pages.into());
    }

    pub fn set_page_size(&self, size: u32) {
        self.page_size.store(size.max(1), Ordering::SeqCst);
    }

    /// A repository with an initial empty commit on `default_branch`.
    pub fn create_repository(&self, repo: &str, default_branch: &str) {
        let mut state = self.lock();
        let id = state.new_commit_id();
        let now = state.tick();
        let mut commits = BTreeMap::new();
        commits.insert(
            id.clone(),
            MockCommit {
                parent: None,
                merged: None,
                creation_date: now,
                tree: Tree::new(),
            },
        );
        let mut branches = BTreeMap::new();
        branches.insert(
            default_branch.to_string(),
            MockBranch {
                head: id,
                hidden: false,
                working: Tree::new(),
            },
        );
        state.repos.insert(
            repo.to_string(),
            MockRepo {
                default_branch: default_branch.to_string(),
                creation_date: now,
                branches,
                tags: BTreeMap::new(),
                commits,
            },
        );
    }

    /// Create `branch` from any ref (HEAD of a branch source; its uncommitted changes are not carried over).
    pub fn create_branch(&self, repo: &str, branch: &str, source: &str, hidden: bool) -> Result<String> {
        let mut state = self.lock();
        let repo = state.repo_mut(repo)?;
        let head = repo.resolve_commit(source)?;
        let working = repo.commits[&head].tree.clone();
        repo.branches.insert(
            branch.to_string(),
            MockBranch {
                head: head.clone(),
                hidden,
                working,
            },
        );
        Ok(head)
    }

    pub fn create_tag(&self, repo: &str, tag: &str, reference: &str) -> Result<String> {
        let mut state = self.lock();
        let repo = state.repo_mut(repo)?;
        let commit = repo.resolve_commit(reference)?;
        repo.tags.insert(tag.to_string(), commit.clone());
        Ok(commit)
    }

    /// Write an uncommitted object on `branch`, as another client would.
    pub fn put_object(&self, repo: &str, branch: &str, path: &str, data: impl Into<Bytes>) -> Result<ObjectInfo> {
        self.put_object_with_metadata(repo, branch, path, data, BTreeMap::new())
    }

    pub fn put_object_with_metadata(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        data: impl Into<Bytes>,
        metadata: BTreeMap<String, String>,
    ) -> Result<ObjectInfo> {
        let data = data.into();
        let mut state = self.lock();
        let mtime = state.tick();
        let repo = state.repo_mut(repo)?;
        let branch = repo
            .branches
            .get_mut(branch)
            .ok_or_else(|| LakeFsError::NotFound("branch not found".into()))?;
        let checksum = hex::encode(Md5::digest(&data));
        let object = MockObject {
            data,
            mtime,
            checksum,
            metadata,
        };
        let info = object_info(path, &object);
        branch.working.insert(path.to_string(), object);
        Ok(info)
    }

    pub fn delete_object(&self, repo: &str, branch: &str, path: &str) -> Result<()> {
        let mut state = self.lock();
        let repo = state.repo_mut(repo)?;
        let branch = repo
            .branches
            .get_mut(branch)
            .ok_or_else(|| LakeFsError::NotFound("branch not found".into()))?;
        branch.working.remove(path);
        Ok(())
    }

    /// Commit everything uncommitted on `branch`; returns the new commit id.
    pub fn commit(&self, repo: &str, branch: &str) -> Result<String> {
        let mut state = self.lock();
        let id = state.new_commit_id();
        let now = state.tick();
        let repo = state.repo_mut(repo)?;
        let b = repo
            .branches
            .get_mut(branch)
            .ok_or_else(|| LakeFsError::NotFound("branch not found".into()))?;
        let commit = MockCommit {
            parent: Some(b.head.clone()),
            merged: None,
            creation_date: now,
            tree: b.working.clone(),
        };
        b.head = id.clone();
        repo.commits.insert(id.clone(), commit);
        Ok(id)
    }
}

impl LakeFs for MockLakeFs {
    async fn list_repositories(&self, after: &str) -> Result<Page<Repository>> {
        self.begin("list_repositories")?;
        let state = self.lock();
        let page_size = self.page_size.load(Ordering::SeqCst) as usize;
        let mut items: Vec<Repository> = state
            .repos
            .iter()
            .filter(|(id, _)| id.as_str() > after)
            .take(page_size + 1)
            .map(|(id, r)| Repository {
                id: id.clone(),
                default_branch: r.default_branch.clone(),
                creation_date: r.creation_date,
            })
            .collect();
        let next_after = (items.len() > page_size).then(|| {
            items.truncate(page_size);
            items.last().map(|r| r.id.clone()).unwrap_or_default()
        });
        Ok(Page { items, next_after })
    }

    async fn get_repository(&self, repo: &str) -> Result<Repository> {
        self.begin("get_repository")?;
        let state = self.lock();
        let r = state.repo(repo)?;
        Ok(Repository {
            id: repo.to_string(),
            default_branch: r.default_branch.clone(),
            creation_date: r.creation_date,
        })
    }

    async fn list_branches(&self, repo: &str, after: &str) -> Result<Page<RefInfo>> {
        self.begin("list_branches")?;
        let state = self.lock();
        let page_size = self.page_size.load(Ordering::SeqCst) as usize;
        let mut items: Vec<RefInfo> = state
            .repo(repo)?
            .branches
            .iter()
            .filter(|(id, b)| id.as_str() > after && !b.hidden)
            .take(page_size + 1)
            .map(|(id, b)| RefInfo {
                id: id.clone(),
                commit_id: b.head.clone(),
            })
            .collect();
        let next_after = (items.len() > page_size).then(|| {
            items.truncate(page_size);
            items.last().map(|r| r.id.clone()).unwrap_or_default()
        });
        Ok(Page { items, next_after })
    }

    async fn get_branch(&self, repo: &str, branch: &str) -> Result<RefInfo> {
        self.begin("get_branch")?;
        let state = self.lock();
        let b = state
            .repo(repo)?
            .branches
            .get(branch)
            .ok_or_else(|| LakeFsError::NotFound("branch not found".into()))?;
        Ok(RefInfo {
            id: branch.to_string(),
            commit_id: b.head.clone(),
        })
    }

    async fn get_tag(&self, repo: &str, tag: &str) -> Result<RefInfo> {
        self.begin("get_tag")?;
        let state = self.lock();
        let commit = state
            .repo(repo)?
            .tags
            .get(tag)
            .ok_or_else(|| LakeFsError::NotFound("tag not found".into()))?;
        Ok(RefInfo {
            id: tag.to_string(),
            commit_id: commit.clone(),
        })
    }

    async fn get_commit(&self, repo: &str, reference: &str) -> Result<CommitInfo> {
        self.begin("get_commit")?;
        let state = self.lock();
        let repo = state.repo(repo)?;
        let id = repo.resolve_commit(reference)?;
        let creation_date = repo.commits.get(&id).map(|c| c.creation_date).unwrap_or_default();
        Ok(CommitInfo { id, creation_date })
    }

    async fn stat_object(&self, repo: &str, reference: &str, path: &str) -> Result<ObjectInfo> {
        self.begin("stat_object")?;
        let state = self.lock();
        let tree = state.repo(repo)?.tree(reference)?;
        tree.get(path)
            .map(|o| object_info(path, o))
            .ok_or_else(|| LakeFsError::NotFound("not found".into()))
    }

    async fn list_objects(&self, repo: &str, reference: &str, request: &ListRequest) -> Result<Page<ListEntry>> {
        self.begin("list_objects")?;
        let mut state = self.lock();
        let key = (repo.to_string(), reference.to_string(), request.prefix.clone());
        if let Some(pages) = state.scripted_listings.get_mut(&key) {
            let page = if pages.len() > 1 {
                pages.pop_front()
            } else {
                pages.front().cloned()
            };
            return Ok(page.unwrap_or(Page {
                items: Vec::new(),
                next_after: None,
            }));
        }
        let tree = state.repo(repo)?.tree(reference)?;
        let amount = request.amount.clamp(1, self.page_size.load(Ordering::SeqCst)) as usize;
        let mut items: Vec<ListEntry> = Vec::new();
        let mut has_more = false;
        let start = std::ops::Bound::Excluded(request.after.clone());
        for (path, object) in tree.range::<String, _>((start, std::ops::Bound::Unbounded)) {
            let Some(rest) = path.strip_prefix(request.prefix.as_str()) else {
                if path.as_str() > request.prefix.as_str() {
                    break;
                }
                continue;
            };
            let entry = match rest.find('/') {
                Some(slash) if request.delimited => {
                    let common = format!("{}{}", request.prefix, &rest[..=slash]);
                    // Everything under a prefix at or before `after` was already returned.
                    if common.as_str() <= request.after.as_str() || items.last().map(|e| e.path()) == Some(&common) {
                        continue;
                    }
                    ListEntry::Prefix(common)
                }
                _ => ListEntry::Object(object_info(path, object)),
            };
            if items.len() == amount {
                has_more = true;
                break;
            }
            items.push(entry);
        }
        let next_after = has_more.then(|| items.last().map(|e| e.path().to_string()).unwrap_or_default());
        Ok(Page { items, next_after })
    }

    async fn get_object_range(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        range: Range<u64>,
    ) -> Result<ObjectBytes> {
        self.begin("get_object_range")?;
        let delay = {
            let mut state = self.lock();
            *state.range_starts.entry(range.start).or_default() += 1;
            state.range_delays.get(&range.start).copied()
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let state = self.lock();
        let tree = state.repo(repo)?.tree(reference)?;
        let object = tree
            .get(path)
            .ok_or_else(|| LakeFsError::NotFound("not found".into()))?;
        let len = object.data.len() as u64;
        if range.start >= len || range.is_empty() {
            return Err(LakeFsError::BadRequest("Requested Range Not Satisfiable".into()));
        }
        let end = range.end.min(len);
        // Indices are bounded by the object's length, which fits in memory.
        let data = object.data.slice(range.start as usize..end as usize);
        let etag = Some(object.checksum.clone());
        drop(state);
        self.lock().bytes_served += data.len() as u64;
        Ok(ObjectBytes { data, etag })
    }

    async fn create_branch_from(&self, repo: &str, name: &str, source: &str, hidden: bool) -> Result<()> {
        let mut state = self.enter("create_branch_from")?;
        let repo = state.repo_mut(repo)?;
        if repo.branches.contains_key(name) {
            return Err(LakeFsError::Conflict(format!("branch {name} already exists")));
        }
        let head = repo.resolve_commit(source)?;
        let working = repo.commit_tree(&head);
        repo.branches
            .insert(name.to_string(), MockBranch { head, hidden, working });
        Ok(())
    }

    async fn has_uncommitted_changes(&self, repo: &str, branch: &str, prefix: &str) -> Result<bool> {
        let state = self.enter("has_uncommitted_changes")?;
        let repo = state.repo(repo)?;
        let b = repo.branch(branch)?;
        let head = repo.commit_tree(&b.head);
        Ok(changed_paths(&head, &b.working)
            .iter()
            .any(|(path, _)| path.starts_with(prefix)))
    }

    async fn diff_branch(&self, repo: &str, branch: &str, after: &str) -> Result<Page<DiffEntry>> {
        let state = self.enter("diff_branch")?;
        let repo = state.repo(repo)?;
        let b = repo.branch(branch)?;
        let head = repo.commit_tree(&b.head);
        let entries = changed_paths(&head, &b.working)
            .into_iter()
            .map(|(path, kind)| DiffEntry {
                size: b.working.get(&path).map(|o| o.data.len() as u64),
                path,
                kind,
            })
            .collect();
        Ok(diff_page(
            entries,
            after,
            self.page_size.load(Ordering::SeqCst) as usize,
        ))
    }

    async fn diff_refs(&self, repo: &str, left: &str, right: &str, after: &str) -> Result<Page<DiffEntry>> {
        let state = self.enter("diff_refs")?;
        let repo = state.repo(repo)?;
        let left_id = repo.resolve_commit(left)?;
        let right_id = repo.resolve_commit(right)?;
        let base = repo.merge_base(&left_id, &right_id).unwrap_or_default();
        let (base, left_tree, right_tree) = (
            repo.commit_tree(&base),
            repo.commit_tree(&left_id),
            repo.commit_tree(&right_id),
        );
        let entries = changed_paths(&base, &right_tree)
            .into_iter()
            .map(|(path, kind)| {
                let left_changed = !same_object(base.get(&path), left_tree.get(&path));
                let agree = same_object(left_tree.get(&path), right_tree.get(&path));
                let kind = if left_changed && !agree {
                    DiffKind::Conflict
                } else {
                    kind
                };
                DiffEntry {
                    size: right_tree.get(&path).map(|o| o.data.len() as u64),
                    path,
                    kind,
                }
            })
            .collect();
        Ok(diff_page(
            entries,
            after,
            self.page_size.load(Ordering::SeqCst) as usize,
        ))
    }

    async fn commit_branch(&self, repo: &str, branch: &str, request: &CommitRequest) -> Result<CommitInfo> {
        let mut state = self.enter("commit_branch")?;
        let id = state.new_commit_id();
        let now = state.tick();
        let r = state.repo_mut(repo)?;
        let b = r.branch(branch)?;
        if changed_paths(&r.commit_tree(&b.head), &b.working).is_empty() {
            return Err(LakeFsError::BadRequest("commit: no changes".into()));
        }
        let _ = &request.message;
        let commit = MockCommit {
            parent: Some(b.head.clone()),
            merged: None,
            creation_date: now,
            tree: b.working.clone(),
        };
        r.commits.insert(id.clone(), commit);
        r.branch_mut(branch)?.head = id.clone();
        Ok(CommitInfo { id, creation_date: now })
    }

    async fn merge_refs(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        _request: &CommitRequest,
        strategy: Option<MergeStrategy>,
    ) -> Result<String> {
        let mut state = self.enter("merge_refs")?;
        let id = state.new_commit_id();
        let now = state.tick();
        let refusal = state.merge_hook.as_ref().and_then(|hook| hook(destination));
        let r = state.repo_mut(repo)?;
        let source_id = r.resolve_commit(source)?;
        let dest = r.branch(destination)?;
        let dest_id = dest.head.clone();
        if !changed_paths(&r.commit_tree(&dest_id), &dest.working).is_empty() {
            return Err(LakeFsError::BadRequest(format!("{destination}: dirty branch")));
        }
        let base = r.merge_base(&dest_id, &source_id).unwrap_or_default();
        let (base, theirs, ours) = (r.commit_tree(&base), r.commit_tree(&source_id), r.commit_tree(&dest_id));
        let mut result = ours.clone();
        let mut conflicts = Vec::new();
        for (path, _) in changed_paths(&base, &theirs) {
            let dest_changed = !same_object(base.get(&path), ours.get(&path));
            let agree = same_object(theirs.get(&path), ours.get(&path));
            if dest_changed && !agree && strategy != Some(MergeStrategy::SourceWins) {
                if strategy != Some(MergeStrategy::DestWins) {
                    conflicts.push(path);
                }
                continue;
            }
            match theirs.get(&path) {
                Some(object) => result.insert(path, object.clone()),
                None => result.remove(&path),
            };
        }
        if !conflicts.is_empty() {
            return Err(LakeFsError::Conflict(format!("conflict: {}", conflicts.join(", "))));
        }
        if changed_paths(&ours, &result).is_empty() {
            return Err(LakeFsError::BadRequest("no changes".into()));
        }
        if let Some(message) = refusal {
            return Err(LakeFsError::PreconditionFailed(message));
        }
        r.commits.insert(
            id.clone(),
            MockCommit {
                parent: Some(dest_id),
                merged: Some(source_id),
                creation_date: now,
                tree: result.clone(),
            },
        );
        let dest = r.branch_mut(destination)?;
        dest.head = id.clone();
        dest.working = result;
        Ok(id)
    }

    async fn hard_reset_branch(&self, repo: &str, branch: &str, reference: &str) -> Result<()> {
        let mut state = self.enter("hard_reset_branch")?;
        let r = state.repo_mut(repo)?;
        let head = r.resolve_commit(reference)?;
        let working = r.commit_tree(&head);
        let b = r.branch_mut(branch)?;
        b.head = head;
        b.working = working;
        Ok(())
    }

    async fn upload_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        file: &std::path::Path,
        metadata: &BTreeMap<String, String>,
    ) -> Result<ObjectInfo> {
        let delay = self.enter("upload_file")?.upload_delay;
        tokio::time::sleep(delay).await;
        let data = std::fs::read(file).map_err(|e| LakeFsError::Transport(format!("{}: {e}", file.display())))?;
        self.put_object_with_metadata(repo, branch, path, data, metadata.clone())
    }

    async fn create_multipart(&self, repo: &str, branch: &str, path: &str) -> Result<String> {
        let mut state = self.enter("create_multipart")?;
        state.repo(repo)?.branch(branch)?;
        state.next_upload += 1;
        let upload_id = format!("upload-{}", state.next_upload);
        let upload = super::MultipartUpload {
            repo: repo.to_string(),
            branch: branch.to_string(),
            path: path.to_string(),
            upload_id: upload_id.clone(),
        };
        state.multipart.insert(upload_id.clone(), (upload, BTreeMap::new()));
        Ok(upload_id)
    }

    async fn upload_part(
        &self,
        upload: &super::MultipartUpload,
        number: u32,
        file: &std::path::Path,
        range: Range<u64>,
    ) -> Result<String> {
        drop(self.enter("upload_part")?);
        let data = std::fs::read(file).map_err(|e| LakeFsError::Transport(format!("{}: {e}", file.display())))?;
        let part = usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(start, end)| data.get(start..end))
            .ok_or_else(|| LakeFsError::Transport(format!("{}: range {range:?} beyond the file", file.display())))?;
        let part = Bytes::copy_from_slice(part);
        let etag = hex::encode(Md5::digest(&part));
        let mut state = self.lock();
        let (_, parts) = state
            .multipart
            .get_mut(&upload.upload_id)
            .ok_or_else(|| LakeFsError::NotFound("no such upload".into()))?;
        parts.insert(number, part);
        Ok(etag)
    }

    async fn complete_multipart(&self, upload: &super::MultipartUpload, parts: &[(u32, String)]) -> Result<ObjectInfo> {
        let mut state = self.enter("complete_multipart")?;
        let (target, mut stored) = state
            .multipart
            .remove(&upload.upload_id)
            .ok_or_else(|| LakeFsError::NotFound("no such upload".into()))?;
        let mut data = Vec::new();
        for (number, etag) in parts {
            let part = stored
                .remove(number)
                .filter(|p| hex::encode(Md5::digest(p)) == *etag)
                .ok_or_else(|| LakeFsError::BadRequest(format!("part {number} missing or changed")))?;
            data.extend_from_slice(&part);
        }
        drop(state);
        self.put_object(&target.repo, &target.branch, &target.path, data)
    }

    async fn abort_multipart(&self, upload: &super::MultipartUpload) -> Result<()> {
        self.enter("abort_multipart")?.multipart.remove(&upload.upload_id);
        Ok(())
    }

    async fn remove_object(&self, repo: &str, branch: &str, path: &str) -> Result<()> {
        drop(self.enter("remove_object")?);
        self.delete_object(repo, branch, path)
    }

    async fn copy_object(
        &self,
        repo: &str,
        branch: &str,
        source_ref: &str,
        source_path: &str,
        dest_path: &str,
    ) -> Result<ObjectInfo> {
        let mut state = self.enter("copy_object")?;
        let mtime = state.tick();
        let r = state.repo_mut(repo)?;
        let mut object = r
            .tree(source_ref)?
            .get(source_path)
            .cloned()
            .ok_or_else(|| LakeFsError::NotFound(format!("{source_path} not found")))?;
        object.mtime = mtime;
        let info = object_info(dest_path, &object);
        r.branch_mut(branch)?.working.insert(dest_path.to_string(), object);
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delimited_listing_pages_through_objects_and_prefixes() {
        let mock = MockLakeFs::new();
        mock.create_repository("repo", "main");
        for path in ["a.txt", "a/1", "a/2", "b", "c/d/e"] {
            mock.put_object("repo", "main", path, "x").unwrap();
        }
        mock.set_page_size(2);
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let request = ListRequest {
                prefix: String::new(),
                after: after.clone(),
                delimited: true,
                amount: 1000,
            };
            let page = mock.list_objects("repo", "main", &request).await.unwrap();
            seen.extend(page.items.iter().map(|e| e.path().to_string()));
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(seen, ["a.txt", "a/", "b", "c/"]);
    }

    #[tokio::test]
    async fn ref_expressions_follow_first_parents() {
        let mock = MockLakeFs::new();
        mock.create_repository("repo", "main");
        mock.put_object("repo", "main", "f", "1").unwrap();
        let first = mock.commit("repo", "main").unwrap();
        mock.put_object("repo", "main", "f", "2").unwrap();
        let second = mock.commit("repo", "main").unwrap();
        assert_eq!(mock.get_commit("repo", "main").await.unwrap().id, second);
        assert_eq!(mock.get_commit("repo", "main~1").await.unwrap().id, first);
        assert_eq!(mock.get_commit("repo", "main^").await.unwrap().id, first);
        assert_eq!(mock.get_commit("repo", &first[..10]).await.unwrap().id, first);
        assert!(matches!(
            mock.get_commit("repo", "main~9").await,
            Err(LakeFsError::NotFound(_))
        ));
        let old = mock.get_object_range("repo", "main~1", "f", 0..1).await.unwrap();
        assert_eq!(&old.data[..], b"1");
    }
}
