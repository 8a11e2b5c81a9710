//! The seam between the filesystem and lakeFS: a trait with exactly the calls the filesystem core needs, the
//! plain types those calls exchange, and errors named by what they mean rather than by transport.
//!
//! Metadata travels over the REST API (`/api/v1`, [`rest`]); object bytes over the S3 gateway ([`gateway`]);
//! [`RemoteLakeFs`] joins the two behind the [`LakeFs`] trait, with the retry policy of [`retry`] around every
//! idempotent call. Tests use [`mock::MockLakeFs`], which keeps refs and objects in `BTreeMap`s and counts calls.
//!
//! Awkward cases the types encode:
//! - A "ref" in a read may be a branch (reads include its uncommitted changes), a tag, a commit id or any ref
//!   expression such as `main~1`; the core pins everything but listed branches to a commit id before reading.
//! - Listing with delimiter `/` returns objects and common prefixes interleaved in byte order; one call is one
//!   page, and the caller pages with `after` = the last returned path.
//! - An object's `checksum` is the content identity: data caches key on it, never on the path.

pub mod buffers;
pub mod fault;
pub mod gateway;
pub mod mock;
pub mod rest;
pub mod retry;

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// Page size for every listing call; the REST validator rejects more than 1000.
pub const MAX_PAGE: u32 = 1000;

/// Reserved metadata key holding the client-side mtime (decimal unix seconds); preferred over `mtime`.
pub const META_CLIENT_MTIME: &str = "::lakefs::client-mtime";
/// Reserved metadata key holding a symlink's target; the object itself is empty.
pub const META_SYMLINK_TARGET: &str = "::lakefs::symlink-target";
/// Reserved metadata key holding `{"UID":..,"GID":..,"Mode":..}`.
pub const META_POSIX_PERMISSIONS: &str = "::lakefs::posix-permissions";

/// What went wrong talking to lakeFS, by meaning. Every variant could come from any lakeFS-compatible server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LakeFsError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("authentication failed: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("rate limited: {0}")]
    RateLimited(Refusal),
    #[error("server unavailable: {0}")]
    Unavailable(Refusal),
    #[error("request timed out: {0}")]
    Timeout(String),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("unexpected response: {0}")]
    Protocol(String),
}

impl LakeFsError {
    /// Whether repeating the same idempotent request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout(_) | Self::Transport(_) | Self::RateLimited(_)
        )
    }

    /// How long the server asked to be left alone before the next attempt (`Retry-After` on a 429 or 5xx).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(refusal) | Self::Unavailable(refusal) => refusal.retry_after,
            _ => None,
        }
    }

    /// [`LakeFsError::from_status`], keeping the response's `Retry-After` header for the retry policy. Only
    /// the delta-seconds form is understood; an HTTP date is ignored (the policy's own backoff applies).
    pub fn from_response(status: u16, message: String, retry_after: Option<&str>) -> Self {
        let mut err = Self::from_status(status, message);
        if let Self::RateLimited(refusal) | Self::Unavailable(refusal) = &mut err {
            refusal.retry_after = retry_after
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
        }
        err
    }

    /// Classify an HTTP status (with the server's message) by meaning.
    pub fn from_status(status: u16, message: String) -> Self {
        match status {
            400 | 416 => Self::BadRequest(message),
            401 => Self::Unauthorized(message),
            403 => Self::Forbidden(message),
            404 | 410 => Self::NotFound(message),
            409 => Self::Conflict(message),
            412 => Self::PreconditionFailed(message),
            429 => Self::RateLimited(message.into()),
            500..=599 => Self::Unavailable(format!("HTTP {status}: {message}").into()),
            _ => Self::Protocol(format!("HTTP {status}: {message}")),
        }
    }
}

/// A transient refusal (429, 5xx): the server's message and, if it said, how long to wait before asking again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(wait) = self.retry_after {
            write!(f, " (retry after {wait:?})")?;
        }
        Ok(())
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Self {
            message,
            retry_after: None,
        }
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

pub type Result<T, E = LakeFsError> = std::result::Result<T, E>;

/// A repository as the root of a whole-server mount shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub id: String,
    pub default_branch: String,
    /// Unix seconds.
    pub creation_date: i64,
}

/// A named ref (branch or tag) and the commit it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefInfo {
    pub id: String,
    pub commit_id: String,
}

/// A commit, reduced to what the mount shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: String,
    /// Unix seconds.
    pub creation_date: i64,
}

/// One object's stats (`ObjectStats` with `path_type: object`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full key relative to the ref.
    pub path: String,
    pub size: u64,
    /// Unix seconds when the entry was written.
    pub mtime: i64,
    /// Content identity (hex, unquoted).
    pub checksum: String,
    pub metadata: BTreeMap<String, String>,
}

/// One entry of a delimited listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    Object(ObjectInfo),
    /// A common prefix, ending in the delimiter.
    Prefix(String),
}

impl ListEntry {
    pub fn path(&self) -> &str {
        match self {
            Self::Object(o) => &o.path,
            Self::Prefix(p) => p,
        }
    }
}

/// One page of a listing; `next_after` is `Some` when another page exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<String>,
}

/// Parameters of one `objects/ls` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    pub prefix: String,
    /// List strictly after this path (exclusive); empty = from the start.
    pub after: String,
    /// Group by `/` into common prefixes.
    pub delimited: bool,
    /// 1..=1000.
    pub amount: u32,
}

/// Bytes of a ranged read plus the ETag the server sent with them (unquoted), so the caller can tell whether the
/// object changed since it was listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectBytes {
    pub data: Bytes,
    pub etag: Option<String>,
}

/// How a path differs between two sides of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    Added,
    Removed,
    Changed,
    /// Changed on both sides of a three-dot diff in ways a merge cannot reconcile.
    Conflict,
    PrefixChanged,
}

/// One entry of a branch or ref diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    pub path: String,
    pub kind: DiffKind,
    pub size: Option<u64>,
}

/// How a merge resolves conflicting paths; `None` in a merge call means "a conflict is an error".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStrategy {
    SourceWins,
    DestWins,
}

impl MergeStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SourceWins => "source-wins",
            Self::DestWins => "dest-wins",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "source-wins" => Some(Self::SourceWins),
            "dest-wins" => Some(Self::DestWins),
            _ => None,
        }
    }
}

/// Commit message and metadata, as `lakectl commit -m ... --meta k=v` sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitRequest {
    pub message: String,
    pub metadata: BTreeMap<String, String>,
}

/// Everything the filesystem needs from lakeFS. One call is one request (before retries); paging is the caller's.
///
/// The write half (branch creation through object copy) is named apart from the mock's own helpers, which act as
/// *another client* in tests.
pub trait LakeFs: Send + Sync + 'static {
    /// One page of repositories, sorted by id, strictly after `after`.
    fn list_repositories(&self, after: &str) -> impl Future<Output = Result<Page<Repository>>> + Send;
    fn get_repository(&self, repo: &str) -> impl Future<Output = Result<Repository>> + Send;
    /// One page of branches (hidden branches excluded), sorted by id, strictly after `after`.
    fn list_branches(&self, repo: &str, after: &str) -> impl Future<Output = Result<Page<RefInfo>>> + Send;
    /// A branch by exact name; `NotFound` when `name` is not a branch (even if it is a tag).
    fn get_branch(&self, repo: &str, branch: &str) -> impl Future<Output = Result<RefInfo>> + Send;
    /// A tag by exact name; `NotFound` when there is no such tag.
    fn get_tag(&self, repo: &str, tag: &str) -> impl Future<Output = Result<RefInfo>> + Send;
    /// The commit any ref expression resolves to (`GET /repositories/{r}/commits/{ref}`).
    fn get_commit(&self, repo: &str, reference: &str) -> impl Future<Output = Result<CommitInfo>> + Send;
    fn stat_object(&self, repo: &str, reference: &str, path: &str) -> impl Future<Output = Result<ObjectInfo>> + Send;
    /// One page of `objects/ls`.
    fn list_objects(
        &self,
        repo: &str,
        reference: &str,
        request: &ListRequest,
    ) -> impl Future<Output = Result<Page<ListEntry>>> + Send;
    /// Bytes `range` of an object; the range must lie inside the object and be non-empty.
    fn get_object_range(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        range: Range<u64>,
    ) -> impl Future<Output = Result<ObjectBytes>> + Send;

    /// Create branch `name` from `source` (`hidden` keeps it out of branch listings); `Conflict` if it exists.
    fn create_branch_from(
        &self,
        repo: &str,
        name: &str,
        source: &str,
        hidden: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// One page of a branch's uncommitted changes, strictly after `after`.
    fn diff_branch(
        &self,
        repo: &str,
        branch: &str,
        after: &str,
    ) -> impl Future<Output = Result<Page<DiffEntry>>> + Send;
    /// One page of the three-dot diff `left...right`: what merging `right` into `left` would change.
    fn diff_refs(
        &self,
        repo: &str,
        left: &str,
        right: &str,
        after: &str,
    ) -> impl Future<Output = Result<Page<DiffEntry>>> + Send;
    /// Whether `branch` has any uncommitted change under `prefix` (`GET .../branches/{b}/diff?prefix=&amount=1`).
    fn has_uncommitted_changes(
        &self,
        repo: &str,
        branch: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Commit a branch's uncommitted changes; `BadRequest` ("no changes") when there are none.
    fn commit_branch(
        &self,
        repo: &str,
        branch: &str,
        request: &CommitRequest,
    ) -> impl Future<Output = Result<CommitInfo>> + Send;
    /// Merge `source` into branch `destination`; returns the merge commit id. `Conflict` on conflicts (without a
    /// strategy), `PreconditionFailed` when a pre-merge hook refuses, `BadRequest` for no changes or a dirty
    /// destination.
    fn merge_refs(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        request: &CommitRequest,
        strategy: Option<MergeStrategy>,
    ) -> impl Future<Output = Result<String>> + Send;
    /// Point `branch` at `reference` and drop its uncommitted changes.
    fn hard_reset_branch(&self, repo: &str, branch: &str, reference: &str) -> impl Future<Output = Result<()>> + Send;
    /// Write the contents of local `file` to `path` on `branch` with `metadata` (reserved `::lakefs::` keys
    /// included) as the object's whole user metadata.
    fn upload_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        file: &std::path::Path,
        metadata: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<ObjectInfo>> + Send;
    /// Start a multipart upload of `path` on `branch`, for a file uploaded while it is still being written
    /// (`-o upload_eager`). Returns the upload id.
    fn create_multipart(&self, repo: &str, branch: &str, path: &str) -> impl Future<Output = Result<String>> + Send;
    /// Upload bytes `range` of local `file` as part `number` (from 1) of `upload`; returns the part's ETag.
    fn upload_part(
        &self,
        upload: &MultipartUpload,
        number: u32,
        file: &std::path::Path,
        range: Range<u64>,
    ) -> impl Future<Output = Result<String>> + Send;
    /// Complete `upload` from `parts` (number, ETag) in order; the object's stats.
    fn complete_multipart(
        &self,
        upload: &MultipartUpload,
        parts: &[(u32, String)],
    ) -> impl Future<Output = Result<ObjectInfo>> + Send;
    /// Abandon `upload` and its parts.
    fn abort_multipart(&self, upload: &MultipartUpload) -> impl Future<Output = Result<()>> + Send;
    /// Stage the deletion of `path` on `branch`; a missing path is not an error.
    fn remove_object(&self, repo: &str, branch: &str, path: &str) -> impl Future<Output = Result<()>> + Send;
    /// Server-side copy of `source_ref:source_path` to `dest_path` on branch `branch`.
    fn copy_object(
        &self,
        repo: &str,
        branch: &str,
        source_ref: &str,
        source_path: &str,
        dest_path: &str,
    ) -> impl Future<Output = Result<ObjectInfo>> + Send;
}

impl<T: LakeFs> LakeFs for Arc<T> {
    fn list_repositories(&self, after: &str) -> impl Future<Output = Result<Page<Repository>>> + Send {
        (**self).list_repositories(after)
    }
    fn get_repository(&self, repo: &str) -> impl Future<Output = Result<Repository>> + Send {
        (**self).get_repository(repo)
    }
    fn list_branches(&self, repo: &str, after: &str) -> impl Future<Output = Result<Page<RefInfo>>> + Send {
        (**self).list_branches(repo, after)
    }
    fn get_branch(&self, repo: &str, branch: &str) -> impl Future<Output = Result<RefInfo>> + Send {
        (**self).get_branch(repo, branch)
    }
    fn get_tag(&self, repo: &str, tag: &str) -> impl Future<Output = Result<RefInfo>> + Send {
        (**self).get_tag(repo, tag)
    }
    fn get_commit(&self, repo: &str, reference: &str) -> impl Future<Output = Result<CommitInfo>> + Send {
        (**self).get_commit(repo, reference)
    }
    fn stat_object(&self, repo: &str, reference: &str, path: &str) -> impl Future<Output = Result<ObjectInfo>> + Send {
        (**self).stat_object(repo, reference, path)
    }
    fn list_objects(
        &self,
        repo: &str,
        reference: &str,
        request: &ListRequest,
    ) -> impl Future<Output = Result<Page<ListEntry>>> + Send {
        (**self).list_objects(repo, reference, request)
    }
    fn get_object_range(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        range: Range<u64>,
    ) -> impl Future<Output = Result<ObjectBytes>> + Send {
        (**self).get_object_range(repo, reference, path, range)
    }
    fn create_branch_from(
        &self,
        repo: &str,
        name: &str,
        source: &str,
        hidden: bool,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).create_branch_from(repo, name, source, hidden)
    }
    fn diff_branch(
        &self,
        repo: &str,
        branch: &str,
        after: &str,
    ) -> impl Future<Output = Result<Page<DiffEntry>>> + Send {
        (**self).diff_branch(repo, branch, after)
    }
    fn has_uncommitted_changes(
        &self,
        repo: &str,
        branch: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        (**self).has_uncommitted_changes(repo, branch, prefix)
    }
    fn diff_refs(
        &self,
        repo: &str,
        left: &str,
        right: &str,
        after: &str,
    ) -> impl Future<Output = Result<Page<DiffEntry>>> + Send {
        (**self).diff_refs(repo, left, right, after)
    }
    fn commit_branch(
        &self,
        repo: &str,
        branch: &str,
        request: &CommitRequest,
    ) -> impl Future<Output = Result<CommitInfo>> + Send {
        (**self).commit_branch(repo, branch, request)
    }
    fn merge_refs(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        request: &CommitRequest,
        strategy: Option<MergeStrategy>,
    ) -> impl Future<Output = Result<String>> + Send {
        (**self).merge_refs(repo, source, destination, request, strategy)
    }
    fn hard_reset_branch(&self, repo: &str, branch: &str, reference: &str) -> impl Future<Output = Result<()>> + Send {
        (**self).hard_reset_branch(repo, branch, reference)
    }
    fn upload_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        file: &std::path::Path,
        metadata: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<ObjectInfo>> + Send {
        (**self).upload_file(repo, branch, path, file, metadata)
    }
    fn create_multipart(&self, repo: &str, branch: &str, path: &str) -> impl Future<Output = Result<String>> + Send {
        (**self).create_multipart(repo, branch, path)
    }
    fn upload_part(
        &self,
        upload: &MultipartUpload,
        number: u32,
        file: &std::path::Path,
        range: Range<u64>,
    ) -> impl Future<Output = Result<String>> + Send {
        (**self).upload_part(upload, number, file, range)
    }
    fn complete_multipart(
        &self,
        upload: &MultipartUpload,
        parts: &[(u32, String)],
    ) -> impl Future<Output = Result<ObjectInfo>> + Send {
        (**self).complete_multipart(upload, parts)
    }
    fn abort_multipart(&self, upload: &MultipartUpload) -> impl Future<Output = Result<()>> + Send {
        (**self).abort_multipart(upload)
    }
    fn remove_object(&self, repo: &str, branch: &str, path: &str) -> impl Future<Output = Result<()>> + Send {
        (**self).remove_object(repo, branch, path)
    }
    fn copy_object(
        &self,
        repo: &str,
        branch: &str,
        source_ref: &str,
        source_path: &str,
        dest_path: &str,
    ) -> impl Future<Output = Result<ObjectInfo>> + Send {
        (**self).copy_object(repo, branch, source_ref, source_path, dest_path)
    }
}

/// A multipart upload in progress: where it goes and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub repo: String,
    pub branch: String,
    pub path: String,
    pub upload_id: String,
}

/// Connection settings shared by the REST and gateway clients.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Server URL as the user gave it (`http://host:8000` or `http://host:8000/api/v1`).
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub retry: retry::RetryPolicy,
}

// Secrets never reach logs.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("retry", &self.retry)
            .finish()
    }
}

/// The real client: REST for metadata, the S3 gateway for data, both retried.
#[derive(Debug, Clone)]
pub struct RemoteLakeFs {
    rest: rest::RestClient,
    gateway: gateway::GatewayClient,
    retry: retry::RetryPolicy,
}

impl RemoteLakeFs {
    pub fn new(config: &ClientConfig) -> Result<Self> {
        Ok(Self {
            rest: rest::RestClient::new(config)?,
            gateway: gateway::GatewayClient::new(config)?,
            retry: config.retry.clone(),
        })
    }
}

impl LakeFs for RemoteLakeFs {
    async fn list_repositories(&self, after: &str) -> Result<Page<Repository>> {
        self.retry
            .run("list_repositories", || self.rest.list_repositories(after))
            .await
    }
    async fn get_repository(&self, repo: &str) -> Result<Repository> {
        self.retry
            .run("get_repository", || self.rest.get_repository(repo))
            .await
    }
    async fn list_branches(&self, repo: &str, after: &str) -> Result<Page<RefInfo>> {
        self.retry
            .run("list_branches", || self.rest.list_branches(repo, after))
            .await
    }
    async fn get_branch(&self, repo: &str, branch: &str) -> Result<RefInfo> {
        self.retry
            .run("get_branch", || self.rest.get_branch(repo, branch))
            .await
    }
    async fn get_tag(&self, repo: &str, tag: &str) -> Result<RefInfo> {
        self.retry.run("get_tag", || self.rest.get_tag(repo, tag)).await
    }
    async fn get_commit(&self, repo: &str, reference: &str) -> Result<CommitInfo> {
        self.retry
            .run("get_commit", || self.rest.get_commit(repo, reference))
            .await
    }
    async fn stat_object(&self, repo: &str, reference: &str, path: &str) -> Result<ObjectInfo> {
        self.retry
            .run("stat_object", || self.rest.stat_object(repo, reference, path))
            .await
    }
    async fn list_objects(&self, repo: &str, reference: &str, request: &ListRequest) -> Result<Page<ListEntry>> {
        self.retry
            .run("list_objects", || self.rest.list_objects(repo, reference, request))
            .await
    }
    async fn get_object_range(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        range: Range<u64>,
    ) -> Result<ObjectBytes> {
        self.retry
            .run("get_object_range", || {
                self.gateway.get_range(repo, reference, path, range.clone())
            })
            .await
    }
    async fn create_branch_from(&self, repo: &str, name: &str, source: &str, hidden: bool) -> Result<()> {
        // A retry after a lost response finds the branch already there: that is success.
        let mut attempts = 0;
        self.retry
            .run("create_branch", || {
                attempts += 1;
                let first = attempts == 1;
                async move {
                    match self.rest.create_branch(repo, name, source, hidden).await {
                        Err(LakeFsError::Conflict(_)) if !first => Ok(()),
                        other => other,
                    }
                }
            })
            .await
    }
    async fn diff_branch(&self, repo: &str, branch: &str, after: &str) -> Result<Page<DiffEntry>> {
        self.retry
            .run("diff_branch", || self.rest.diff_branch(repo, branch, after))
            .await
    }
    async fn has_uncommitted_changes(&self, repo: &str, branch: &str, prefix: &str) -> Result<bool> {
        self.retry
            .run("has_uncommitted_changes", || {
                self.rest.has_uncommitted_changes(repo, branch, prefix)
            })
            .await
    }
    async fn diff_refs(&self, repo: &str, left: &str, right: &str, after: &str) -> Result<Page<DiffEntry>> {
        self.retry
            .run("diff_refs", || self.rest.diff_refs(repo, left, right, after))
            .await
    }
    async fn commit_branch(&self, repo: &str, branch: &str, request: &CommitRequest) -> Result<CommitInfo> {
        // Not idempotent: never retried (a lost response would commit twice or report a spurious "no changes").
        self.once("commit_branch", self.rest.commit_branch(repo, branch, request))
            .await
    }
    async fn merge_refs(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        request: &CommitRequest,
        strategy: Option<MergeStrategy>,
    ) -> Result<String> {
        self.once(
            "merge_refs",
            self.rest.merge_refs(repo, source, destination, request, strategy),
        )
        .await
    }
    async fn hard_reset_branch(&self, repo: &str, branch: &str, reference: &str) -> Result<()> {
        self.retry
            .run("hard_reset_branch", || {
                self.rest.hard_reset_branch(repo, branch, reference)
            })
            .await
    }
    async fn upload_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        file: &std::path::Path,
        metadata: &BTreeMap<String, String>,
    ) -> Result<ObjectInfo> {
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|e| LakeFsError::Transport(format!("reading {}: {e}", file.display())))?
            .len();
        let retry = self.retry.for_transfer(size);
        if metadata.is_empty() {
            // Data goes through the gateway (multipart when large). The stats follow from the response: the
            // checksum is the ETag without a multipart `-N` (lakeFS's convention), saving a stat per file.
            let (size, etag) = retry
                .run("put_object", || self.gateway.put_file(repo, branch, path, file))
                .await?;
            if !etag.is_empty() {
                let checksum = match etag.rsplit_once('-') {
                    Some((hex, parts)) if parts.bytes().all(|b| b.is_ascii_digit()) => hex.to_string(),
                    _ => etag,
                };
                let mtime = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                return Ok(ObjectInfo {
                    path: path.to_string(),
                    size,
                    mtime,
                    checksum,
                    metadata: BTreeMap::new(),
                });
            }
        } else {
            // Reserved `::lakefs::` keys can only be set through the REST upload's `x-lakefs-internal-*` headers.
            retry
                .run("upload_object", || {
                    self.rest.upload_file(repo, branch, path, file, metadata)
                })
                .await?;
        }
        self.stat_object(repo, branch, path).await
    }
    async fn create_multipart(&self, repo: &str, branch: &str, path: &str) -> Result<String> {
        self.retry
            .run("create_multipart", || self.gateway.create_multipart(repo, branch, path))
            .await
    }
    async fn upload_part(
        &self,
        upload: &MultipartUpload,
        number: u32,
        file: &std::path::Path,
        range: Range<u64>,
    ) -> Result<String> {
        self.retry
            .run("upload_part", || {
                self.gateway.upload_part(upload, number, file, range.clone())
            })
            .await
    }
    async fn complete_multipart(&self, upload: &MultipartUpload, parts: &[(u32, String)]) -> Result<ObjectInfo> {
        // A retry after a lost response would find the upload gone: one attempt.
        self.once("complete_multipart", self.gateway.complete_multipart(upload, parts))
            .await?;
        self.stat_object(&upload.repo, &upload.branch, &upload.path).await
    }
    async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<()> {
        self.retry
            .run("abort_multipart", || self.gateway.abort_multipart(upload))
            .await
    }
    async fn remove_object(&self, repo: &str, branch: &str, path: &str) -> Result<()> {
        self.retry
            .run("delete_object", || self.rest.delete_object(repo, branch, path))
            .await
    }
    async fn copy_object(
        &self,
        repo: &str,
        branch: &str,
        source_ref: &str,
        source_path: &str,
        dest_path: &str,
    ) -> Result<ObjectInfo> {
        self.retry
            .run("copy_object", || {
                self.rest.copy_object(repo, branch, source_ref, source_path, dest_path)
            })
            .await
    }
}

impl RemoteLakeFs {
    /// One attempt under the request deadline, for calls that must not be repeated blindly.
    async fn once<T>(&self, operation: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        // Commits and merges run hooks, which may take long: allow a generous multiple of the deadline.
        let deadline = self.retry.request_timeout.saturating_mul(4);
        let deadline = self
            .retry
            .operation_timeout
            .map_or(deadline, |limit| limit.min(deadline));
        match tokio::time::timeout(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(LakeFsError::Timeout(format!(
                "{operation} took longer than {deadline:?}"
            ))),
        }
    }
}
