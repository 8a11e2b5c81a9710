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
    CommitInfo, LakeFs, LakeFsError, ListEntry, ListRequest, ObjectBytes, ObjectInfo, Page, RefInfo, Repository, Result,
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

#[derive(Debug, Default)]
struct MockState {
    repos: BTreeMap<String, MockRepo>,
    next_commit: u64,
    clock: i64,
    requests: BTreeMap<&'static str, u64>,
    /// Object bytes returned by ranged reads.
    bytes_served: u64,
    /// Errors to return instead of serving, per operation, with how many times.
    failures: BTreeMap<String, (LakeFsError, u32)>,
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

    /// Requests served for every operation so far.
    pub fn total_requests(&self) -> u64 {
        self.lock().requests.values().sum()
    }

    /// Cap every listing page at `size` entries, whatever the caller asks for.
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
        let state = self.lock();
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
