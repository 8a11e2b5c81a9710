//! The embedded server's storage: content-addressed blobs plus a transactional metadata store (redb).
//!
//! Model (the lakeFS one, see lakefs-api.md §6):
//! - a *commit* is immutable: parents, message, metadata and a *tree* (`meta_range_id`), a sorted map
//!   path -> [`ObjectEntry`]; trees are content-addressed so identical trees are stored once;
//! - a *branch* is a head commit plus a *staging area*: path -> entry or tombstone, laid over the head tree by
//!   every read of the plain branch name;
//! - commit and merge each run in one redb write transaction, so a crash leaves the old or the new state;
//! - blob files are written to a temp file, fsynced and renamed before any metadata refers to them, so every
//!   acknowledged write survives `kill -9`.
//!
//! Layout (each file opens with its own design notes):
//! - `blobs.rs`: blob files `DATA_DIR/blobs/ab/<sha256>`, temp files in `DATA_DIR/tmp` (swept at open);
//! - `meta.rs`: the redb database `DATA_DIR/meta.redb`, its tables and key encoding;
//! - `refs.rs`: name rules and ref expressions; `tree.rs`: trees, staging areas and their merged view;
//! - `list.rs`: paging with prefix/after/delimiter; `diff.rs`, `merge.rs`, `commits.rs` (commit and log),
//!   `objects.rs`, `repos.rs` (repositories, branches, tags, settings), `runs.rs` (action runs).
//!
//! Costs: reads, listings and staged writes are O(log n) per item; a commit rewrites the whole tree (O(n) for n
//! objects: seconds for 100,000); a merge is O(1) when one side did not change since the merge
//! base and O(n) otherwise.
//!
//! This module is the only contract between the storage and the two protocol front ends (`api/`, `gateway/`).
//! Every method validates names (lakefs-api.md §2.1) and returns a [`StoreError`] whose variant names the
//! condition; the front ends map variants to HTTP statuses and lakeFS/S3 error bodies.

mod blobs;
mod commits;
mod diff;
mod group;
mod list;
mod merge;
mod meta;
mod objects;
mod refs;
mod repos;
mod runs;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

/// A 64-character lowercase hex commit id.
pub type CommitId = String;

/// Repository setting holding branch protection rules, in lakeFS's format: a JSON list of `{"pattern": "<glob>"}`.
pub const BRANCH_PROTECTION_SETTING: &str = "branch_protection";

/// Maximum page size of every listing (lakeFS `max_per_page`).
pub const MAX_PAGE: usize = 1000;

/// One stored object version. Identity for diff and merge is `(size, checksum, content_type, metadata)`;
/// `blob` and `mtime` do not count (lakefs-api.md §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Content address of the data: lowercase hex SHA-256 of the bytes; the blob file's name.
    pub blob: String,
    /// lakeFS checksum: hex MD5 of the body, or the multipart ETag without its `-N` suffix.
    pub checksum: String,
    pub size: u64,
    /// Unix seconds when the entry was written.
    pub mtime: i64,
    pub content_type: String,
    /// User metadata, including reserved `::lakefs::` keys and S3 `X-Amz-Meta-*` keys, verbatim.
    pub metadata: BTreeMap<String, String>,
}

impl ObjectEntry {
    /// True when two entries are the same version for diff/merge purposes.
    pub fn same_identity(&self, other: &ObjectEntry) -> bool {
        self.size == other.size
            && self.checksum == other.checksum
            && self.content_type == other.content_type
            && self.metadata == other.metadata
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub id: String,
    pub storage_namespace: String,
    pub default_branch: String,
    pub creation_date: i64,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub id: CommitId,
    pub parents: Vec<CommitId>,
    pub committer: String,
    pub message: String,
    pub creation_date: i64,
    /// Id of the commit's tree ("" for the empty tree of a new repository, as lakeFS reports).
    pub meta_range_id: String,
    pub metadata: BTreeMap<String, String>,
    pub generation: i64,
    pub version: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub id: String,
    pub head: CommitId,
    pub hidden: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: String,
    pub commit_id: CommitId,
}

/// What a ref expression resolved to (lakefs-api.md §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefView {
    /// Plain branch name: head commit plus the branch's staging area.
    Branch { branch: String, head: CommitId },
    /// `branch@`: the head commit only.
    BranchHead { branch: String, head: CommitId },
    /// A commit id, prefix, tag or `~`/`^` expression: an immutable commit.
    Commit(CommitId),
}

impl RefView {
    /// The commit this view is based on.
    pub fn commit_id(&self) -> &str {
        match self {
            RefView::Branch { head, .. } | RefView::BranchHead { head, .. } => head,
            RefView::Commit(c) => c,
        }
    }
}

/// One page of a listing; `has_more` tells whether a call with `after` = the last item's key gives more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// Paging parameters shared by all listings. `amount` is already clamped to 1..=[`MAX_PAGE`] by the caller.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub prefix: String,
    /// Exclusive start key.
    pub after: String,
    pub amount: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListEntry {
    Object {
        path: String,
        entry: ObjectEntry,
    },
    /// A "directory": the prefix up to and including the delimiter.
    CommonPrefix(String),
}

impl ListEntry {
    pub fn path(&self) -> &str {
        match self {
            ListEntry::Object { path, .. } => path,
            ListEntry::CommonPrefix(p) => p,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffType {
    Added,
    Removed,
    Changed,
    Conflict,
    PrefixChanged,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffEntry {
    pub path: String,
    pub kind: DiffType,
    /// True for a `common_prefix` entry (listing with a delimiter).
    pub is_prefix: bool,
    pub size: Option<u64>,
    /// The right side's entry, when it exists (for `include_right_stats`).
    pub right: Option<ObjectEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffKind {
    /// What merging `right` into `left` would bring: changes on `right` since the merge base.
    ThreeDot,
    /// Direct comparison of the two trees.
    TwoDot,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MergeStrategy {
    /// Any conflict fails the merge.
    #[default]
    Default,
    DestWins,
    SourceWins,
}

impl MergeStrategy {
    /// Value stored in the merge commit's `.lakefs.merge.strategy` metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStrategy::Default => "default",
            MergeStrategy::DestWins => "dest-wins",
            MergeStrategy::SourceWins => "source-wins",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CommitRequest {
    pub message: String,
    pub metadata: BTreeMap<String, String>,
    /// Overrides the creation date (unix seconds).
    pub date: Option<i64>,
    pub allow_empty: bool,
    pub committer: String,
}

#[derive(Clone, Debug, Default)]
pub struct MergeRequest {
    /// Default: `Merge '<source>' into '<destination>'`.
    pub message: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub strategy: MergeStrategy,
    pub allow_empty: bool,
    pub squash: bool,
    pub committer: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeBase {
    pub source_commit_id: CommitId,
    pub destination_commit_id: CommitId,
    pub base_commit_id: CommitId,
}

/// `PUT /branches/{b}` reset kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetKind {
    /// Drop the staged change of one path.
    Object(String),
    /// Drop staged changes under a prefix.
    CommonPrefix(String),
    /// Drop all uncommitted changes.
    All,
}

/// Options of the commit log (`GET /refs/{ref}/commits`).
#[derive(Clone, Debug, Default)]
pub struct LogRequest {
    pub after: String,
    pub amount: usize,
    pub objects: Vec<String>,
    pub prefixes: Vec<String>,
    pub limit: bool,
    pub first_parent: bool,
    pub since: Option<i64>,
    pub stop_at: Option<String>,
}

/// An actions run as listed by `/actions/runs` (lakefs-api.md §5.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRun {
    pub run_id: String,
    pub branch: String,
    /// RFC 3339.
    pub start_time: String,
    pub end_time: Option<String>,
    pub event_type: String,
    /// `completed` or `failed`.
    pub status: String,
    /// Empty when a pre-hook aborted the operation.
    pub commit_id: String,
    pub hooks: Vec<HookRun>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    pub hook_run_id: String,
    pub action: String,
    pub hook_id: String,
    pub start_time: String,
    pub end_time: Option<String>,
    /// `completed`, `failed` or `skipped`.
    pub status: String,
    /// The hook log: request, response status and body.
    pub output: String,
}

/// A blob just written by [`Store::write_blob`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Lowercase hex SHA-256: the blob's address.
    pub id: String,
    /// Lowercase hex MD5.
    pub md5: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("repository not found")]
    RepositoryNotFound,
    #[error("branch '{0}' not found")]
    BranchNotFound(String),
    #[error("tag not found")]
    TagNotFound,
    /// An unknown ref expression or commit.
    #[error("{0}: not found")]
    RefNotFound(String),
    #[error("not found")]
    ObjectNotFound,
    /// 409 "not unique": branch/tag/repository already exists.
    #[error("{0}: not unique")]
    AlreadyExists(String),
    /// 409 "conflict found": e.g. a new branch named like an existing tag.
    #[error("{0}: conflict found")]
    NameConflict(String),
    /// 400: invalid repository/branch/tag/path name or argument.
    #[error("{0}")]
    InvalidArgument(String),
    /// 400: malformed ref expression, `$` where a commit is needed, bad parent number.
    #[error("{0}")]
    InvalidRef(String),
    #[error("no changes")]
    NoChanges,
    #[error("uncommitted changes (dirty branch)")]
    DirtyBranch,
    /// 409 merge conflict; the conflicting paths, for logs and clients that want them.
    #[error("conflict found")]
    MergeConflict { paths: Vec<String> },
    /// 412, e.g. `If-None-Match: *` on an existing path ("path already exists").
    #[error("{0}")]
    PreconditionFailed(String),
    /// 403 e.g. "cannot delete repository default branch", "read-only repository".
    #[error("{0}")]
    Forbidden(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Metadata store failure or corrupt record: 500.
    #[error("metadata store: {0}")]
    Internal(String),
}

/// Handle to the store; cheap to clone. Metadata methods are synchronous (redb); callers on an async runtime
/// run the slow ones (commit, merge, diff, large listings) under `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    db: redb::Database,
    /// Staged writes waiting to share a transaction.
    group_commit: group::GroupCommit,
}

/// Upper bound of redb's page cache (its default is 1 GiB, too much for a server that tests start by the dozen).
const META_CACHE_BYTES: usize = 256 << 20;

/// Current time in unix seconds.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    fn db(&self) -> &redb::Database {
        &self.inner.db
    }

    fn group_commit(&self) -> &group::GroupCommit {
        &self.inner.group_commit
    }
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`; removes stale temp files.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        for dir in [blobs::BLOBS_DIR, blobs::TMP_DIR, blobs::MULTIPART_DIR] {
            std::fs::create_dir_all(data_dir.join(dir))?;
        }
        blobs::sweep_tmp(data_dir)?;
        let db = redb::Builder::new()
            .set_cache_size(META_CACHE_BYTES)
            .create(data_dir.join("meta.redb"))?;
        let txn = db.begin_write()?;
        for table in meta::ALL_TABLES {
            txn.open_table(table)?;
        }
        txn.commit()?;
        Ok(Store {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                db,
                group_commit: group::GroupCommit::default(),
            }),
        })
    }

    // ---- blobs ----

    /// Streams `body` into a new content-addressed blob (temp file, fsync, rename). Nothing refers to the blob
    /// until an object entry is stored, so a failed or truncated body leaves no visible trace.
    pub async fn write_blob<S>(&self, body: S) -> Result<BlobInfo, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        blobs::write_blob(&self.inner.data_dir, body).await
    }

    /// Joins multipart part files into blob `sha256` (computed by the caller over exactly these bytes, in order).
    /// Returns the blob's size.
    pub async fn concat_blob(&self, parts: Vec<PathBuf>, sha256: String) -> Result<u64, StoreError> {
        let data_dir = self.inner.data_dir.clone();
        tokio::task::spawn_blocking(move || blobs::concat_blob(&data_dir, &parts, &sha256))
            .await
            .map_err(|e| StoreError::Internal(format!("blob writer task: {e}")))?
    }

    /// Path of a blob file, for ranged reads. Never derived from user input other than a validated blob id.
    pub fn blob_path(&self, blob: &str) -> PathBuf {
        blobs::blob_path(&self.inner.data_dir, blob)
    }

    /// `length` bytes of blob `blob` from `start`, streamed in chunks; `NotFound` if the blob is missing.
    pub async fn read_blob_range(
        &self,
        blob: &str,
        start: u64,
        length: u64,
    ) -> std::io::Result<impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + use<>> {
        blobs::read_range(self.blob_path(blob), start, length).await
    }

    /// A directory for the gateway's in-progress multipart uploads (part files, upload records).
    pub fn multipart_dir(&self) -> PathBuf {
        self.inner.data_dir.join(blobs::MULTIPART_DIR)
    }

    // ---- repositories ----

    /// Creates a repository with one commit "Repository created" on `default_branch`.
    pub fn create_repository(
        &self,
        id: &str,
        storage_namespace: &str,
        default_branch: &str,
    ) -> Result<Repository, StoreError> {
        self.create_repository_impl(id, storage_namespace, default_branch)
    }

    pub fn get_repository(&self, id: &str) -> Result<Repository, StoreError> {
        self.get_repository_impl(id)
    }

    pub fn list_repositories(&self, page: &PageRequest) -> Result<Page<Repository>, StoreError> {
        self.list_repositories_impl(page)
    }

    pub fn delete_repository(&self, id: &str) -> Result<(), StoreError> {
        self.delete_repository_impl(id)
    }

    /// Sets the repository's `read_only` flag (lakeFS sets it at creation; enforcement is the front ends' job).
    pub fn set_repository_read_only(&self, id: &str, read_only: bool) -> Result<Repository, StoreError> {
        self.set_repository_read_only_impl(id, read_only)
    }

    /// True when a branch protection rule (a glob in the [`BRANCH_PROTECTION_SETTING`] setting) matches `branch`.
    pub fn is_branch_protected(&self, repo: &str, branch: &str) -> Result<bool, StoreError> {
        #[derive(Deserialize)]
        struct Rule {
            pattern: String,
        }
        let Some(text) = self.get_setting(repo, BRANCH_PROTECTION_SETTING)? else {
            return Ok(false);
        };
        let rules: Vec<Rule> = serde_json::from_str(&text)
            .map_err(|e| StoreError::Internal(format!("unreadable branch protection rules: {e}")))?;
        Ok(rules
            .iter()
            .any(|rule| glob::Pattern::new(&rule.pattern).is_ok_and(|pattern| pattern.matches(branch))))
    }

    /// A per-repository setting stored verbatim (e.g. `branch_protection` rules as JSON); `None` when unset.
    pub fn get_setting(&self, repo: &str, name: &str) -> Result<Option<String>, StoreError> {
        self.get_setting_impl(repo, name)
    }

    /// Stores (`Some`) or removes (`None`) a per-repository setting; removed with the repository.
    pub fn set_setting(&self, repo: &str, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.set_setting_impl(repo, name, value)
    }

    // ---- branches and tags ----

    /// Creates `name` at the commit `source` resolves to (a branch source: its head; staged changes are not
    /// carried over; `branch$` is rejected). Returns the commit id.
    pub fn create_branch(&self, repo: &str, name: &str, source: &str, hidden: bool) -> Result<CommitId, StoreError> {
        self.create_branch_impl(repo, name, source, hidden)
    }

    pub fn get_branch(&self, repo: &str, name: &str) -> Result<Branch, StoreError> {
        self.get_branch_impl(repo, name)
    }

    pub fn list_branches(&self, repo: &str, page: &PageRequest, show_hidden: bool) -> Result<Page<Branch>, StoreError> {
        self.list_branches_impl(repo, page, show_hidden)
    }

    /// Deletes a branch and its staging area; the default branch is refused (Forbidden).
    pub fn delete_branch(&self, repo: &str, name: &str) -> Result<(), StoreError> {
        self.delete_branch_impl(repo, name)
    }

    pub fn reset_branch(&self, repo: &str, branch: &str, kind: ResetKind) -> Result<(), StoreError> {
        self.reset_branch_impl(repo, branch, kind)
    }

    /// Moves the branch head to `ref_expr`'s commit; refuses a dirty branch.
    pub fn hard_reset_branch(&self, repo: &str, branch: &str, ref_expr: &str) -> Result<(), StoreError> {
        self.hard_reset_branch_impl(repo, branch, ref_expr)
    }

    /// Applies the inverse of `ref_expr`'s changes (relative to parent `parent_number`, 0 for a non-merge commit)
    /// as a new commit; refuses a dirty branch.
    pub fn revert(
        &self,
        repo: &str,
        branch: &str,
        ref_expr: &str,
        parent_number: u32,
        request: CommitRequest,
    ) -> Result<Commit, StoreError> {
        self.replay_impl(repo, branch, ref_expr, parent_number, request, merge::Replay::Revert)
    }

    /// Applies `ref_expr`'s changes (relative to parent `parent_number`, 0 for a non-merge commit) to `branch` as a
    /// new commit, keeping the picked commit's message and metadata unless `request` overrides them; refuses a
    /// dirty branch; conflicts fail with `MergeConflict`.
    pub fn cherry_pick(
        &self,
        repo: &str,
        branch: &str,
        ref_expr: &str,
        parent_number: u32,
        request: CommitRequest,
    ) -> Result<Commit, StoreError> {
        self.replay_impl(
            repo,
            branch,
            ref_expr,
            parent_number,
            request,
            merge::Replay::CherryPick,
        )
    }

    pub fn create_tag(&self, repo: &str, id: &str, ref_expr: &str) -> Result<Tag, StoreError> {
        self.create_tag_impl(repo, id, ref_expr)
    }

    pub fn get_tag(&self, repo: &str, id: &str) -> Result<Tag, StoreError> {
        self.get_tag_impl(repo, id)
    }

    pub fn list_tags(&self, repo: &str, page: &PageRequest) -> Result<Page<Tag>, StoreError> {
        self.list_tags_impl(repo, page)
    }

    pub fn delete_tag(&self, repo: &str, id: &str) -> Result<(), StoreError> {
        self.delete_tag_impl(repo, id)
    }

    // ---- refs and commits ----

    /// Resolves a ref expression: full commit id, branch, tag, unique commit-id prefix, then `~N`, `^N`, `@`,
    /// `$` modifiers.
    pub fn resolve_ref(&self, repo: &str, ref_expr: &str) -> Result<RefView, StoreError> {
        self.resolve_ref_impl(repo, ref_expr)
    }

    /// `GET /commits/{ref}`: the commit a ref expression names (`branch$` rejected).
    pub fn get_commit(&self, repo: &str, ref_expr: &str) -> Result<Commit, StoreError> {
        self.get_commit_impl(repo, ref_expr)
    }

    /// Commit history from `ref_expr`, newest first (by generation, then date), paged by commit id.
    pub fn log(&self, repo: &str, ref_expr: &str, request: &LogRequest) -> Result<Page<Commit>, StoreError> {
        self.log_impl(repo, ref_expr, request)
    }

    /// Commits the branch's staging area atomically. `NoChanges` when nothing differs from the head tree and
    /// `allow_empty` is false.
    pub fn commit(&self, repo: &str, branch: &str, request: CommitRequest) -> Result<Commit, StoreError> {
        self.commit_impl(repo, branch, request)
    }

    // ---- objects ----

    /// Stat through a ref view (plain branch includes staging). `ObjectNotFound` when absent.
    pub fn stat_object(&self, repo: &str, ref_expr: &str, path: &str) -> Result<ObjectEntry, StoreError> {
        self.stat_object_impl(repo, ref_expr, path)
    }

    /// Lists objects under `page.prefix`, strictly after `page.after`, in byte order. With a delimiter, keys
    /// with the delimiter after the prefix collapse into one `CommonPrefix` each (which is a valid `after`).
    pub fn list_objects(
        &self,
        repo: &str,
        ref_expr: &str,
        page: &PageRequest,
        delimiter: Option<&str>,
    ) -> Result<Page<ListEntry>, StoreError> {
        self.list_objects_impl(repo, ref_expr, page, delimiter)
    }

    /// Stages an object on a branch. With `if_none_match`, fails with `PreconditionFailed("path already
    /// exists")` if the path exists on the branch (checked atomically with the write).
    pub fn put_object(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        entry: ObjectEntry,
        if_none_match: bool,
    ) -> Result<ObjectEntry, StoreError> {
        self.put_object_impl(repo, branch, path, entry, if_none_match)
    }

    /// Stages many objects in one transaction, without preconditions (bulk loads, imports, tests). Nothing is
    /// written if any path is invalid.
    pub fn put_objects(&self, repo: &str, branch: &str, objects: &[(String, ObjectEntry)]) -> Result<(), StoreError> {
        self.put_objects_impl(repo, branch, objects)
    }

    /// Stages a delete: a tombstone when the path is in the head commit, else just unstages. Missing is Ok.
    pub fn delete_object(&self, repo: &str, branch: &str, path: &str) -> Result<(), StoreError> {
        self.delete_object_impl(repo, branch, path)
    }

    /// Deletes many paths in one transaction; returns per-path errors (missing paths count as deleted).
    pub fn delete_objects(
        &self,
        repo: &str,
        branch: &str,
        paths: &[String],
    ) -> Result<Vec<(String, StoreError)>, StoreError> {
        self.delete_objects_impl(repo, branch, paths)
    }

    // ---- diff and merge ----

    /// The branch's uncommitted changes (staged entries identical to the head are not reported, nor tombstones
    /// of never-committed keys).
    pub fn diff_branch(
        &self,
        repo: &str,
        branch: &str,
        page: &PageRequest,
        delimiter: Option<&str>,
    ) -> Result<Page<DiffEntry>, StoreError> {
        self.diff_branch_impl(repo, branch, page, delimiter)
    }

    /// Diff between two refs' commits (`right` may be `branch$` with `TwoDot` to include staged changes).
    pub fn diff_refs(
        &self,
        repo: &str,
        left: &str,
        right: &str,
        kind: DiffKind,
        page: &PageRequest,
        delimiter: Option<&str>,
    ) -> Result<Page<DiffEntry>, StoreError> {
        self.diff_refs_impl(repo, left, right, kind, page, delimiter)
    }

    pub fn merge_base(&self, repo: &str, source: &str, destination: &str) -> Result<MergeBase, StoreError> {
        self.merge_base_impl(repo, source, destination)
    }

    /// Three-way merge of `source`'s commit into branch `destination`, atomically (lakefs-api.md §6 table).
    /// Errors: `DirtyBranch`, `NoChanges`, `MergeConflict`.
    pub fn merge(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        request: MergeRequest,
    ) -> Result<Commit, StoreError> {
        self.merge_impl(repo, source, destination, request)
    }

    // ---- action runs ----

    pub fn record_action_run(&self, repo: &str, run: &ActionRun) -> Result<(), StoreError> {
        self.record_action_run_impl(repo, run)
    }

    /// Runs newest first; filtered by branch and/or commit; paged by run id.
    pub fn list_action_runs(
        &self,
        repo: &str,
        branch: Option<&str>,
        commit: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ActionRun>, StoreError> {
        self.list_action_runs_impl(repo, branch, commit, page)
    }

    pub fn get_action_run(&self, repo: &str, run_id: &str) -> Result<ActionRun, StoreError> {
        self.get_action_run_impl(repo, run_id)
    }
}
