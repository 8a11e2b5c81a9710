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

pub mod gateway;
pub mod mock;
pub mod rest;
pub mod retry;

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

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
    RateLimited(String),
    #[error("server unavailable: {0}")]
    Unavailable(String),
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

    /// Classify an HTTP status (with the server's message) by meaning.
    pub fn from_status(status: u16, message: String) -> Self {
        match status {
            400 | 416 => Self::BadRequest(message),
            401 => Self::Unauthorized(message),
            403 => Self::Forbidden(message),
            404 | 410 => Self::NotFound(message),
            409 => Self::Conflict(message),
            412 => Self::PreconditionFailed(message),
            429 => Self::RateLimited(message),
            500..=599 => Self::Unavailable(format!("HTTP {status}: {message}")),
            _ => Self::Protocol(format!("HTTP {status}: {message}")),
        }
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

/// Everything the filesystem needs from lakeFS. One call is one request (before retries); paging is the caller's.
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
}

/// Connection settings shared by the REST and gateway clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Server URL as the user gave it (`http://host:8000` or `http://host:8000/api/v1`).
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub retry: retry::RetryPolicy,
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
}
