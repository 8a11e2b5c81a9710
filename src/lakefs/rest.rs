//! REST client for the metadata calls (`/api/v1`), with reqwest and Basic authentication.
//!
//! The endpoint is taken as lakectl takes it: `http://host:8000` gets `/api/v1` appended, a URL that already has
//! a path is used as is. Refs and repository ids travel as URL-encoded path segments, object paths always in the
//! `path`/`prefix` query parameters. Error bodies are `{"message": ...}`; the message is kept in the error so the
//! user sees the server's own words.

use std::collections::BTreeMap;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{
    ClientConfig, CommitInfo, CommitRequest, DiffEntry, DiffKind, LakeFsError, ListEntry, ListRequest, MergeStrategy,
    ObjectInfo, Page, RefInfo, Repository, Result, MAX_PAGE,
};

/// Characters left alone in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `endpoint` with `/api/v1` appended when it has no path of its own.
pub fn api_base_url(endpoint: &str) -> Result<url::Url> {
    let mut url = url::Url::parse(endpoint.trim())
        .map_err(|e| LakeFsError::Protocol(format!("invalid endpoint URL {endpoint:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LakeFsError::Protocol(format!(
            "endpoint {endpoint:?} must be an http or https URL"
        )));
    }
    if url.path().trim_matches('/').is_empty() {
        url.set_path("/api/v1");
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    access_key_id: String,
    secret_access_key: String,
}

// Secrets never reach logs.
impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Pagination {
    has_more: bool,
    #[serde(default)]
    next_offset: String,
}

#[derive(Deserialize)]
struct ListResponse<T> {
    pagination: Pagination,
    results: Vec<T>,
}

#[derive(Deserialize)]
struct RepositoryJson {
    id: String,
    #[serde(default)]
    default_branch: String,
    #[serde(default)]
    creation_date: i64,
}

#[derive(Deserialize)]
struct RefJson {
    id: String,
    commit_id: String,
}

#[derive(Deserialize)]
struct CommitJson {
    id: String,
    #[serde(default)]
    creation_date: i64,
}

#[derive(Deserialize)]
struct ObjectStatsJson {
    path: String,
    path_type: String,
    #[serde(default)]
    checksum: String,
    #[serde(default)]
    size_bytes: Option<u64>,
    #[serde(default)]
    mtime: i64,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

impl ObjectStatsJson {
    fn into_object(self) -> ObjectInfo {
        ObjectInfo {
            path: self.path,
            size: self.size_bytes.unwrap_or(0),
            mtime: self.mtime,
            checksum: self.checksum,
            metadata: self.metadata.unwrap_or_default(),
        }
    }

    fn into_entry(self) -> Result<ListEntry> {
        match self.path_type.as_str() {
            "object" => Ok(ListEntry::Object(self.into_object())),
            "common_prefix" => Ok(ListEntry::Prefix(self.path)),
            other => Err(LakeFsError::Protocol(format!(
                "unknown path_type {other:?} for {:?}",
                self.path
            ))),
        }
    }
}

#[derive(Deserialize)]
struct DiffJson {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    size_bytes: Option<u64>,
}

impl DiffJson {
    fn into_entry(self) -> Result<DiffEntry> {
        let kind = match self.kind.as_str() {
            "added" => DiffKind::Added,
            "removed" => DiffKind::Removed,
            "changed" => DiffKind::Changed,
            "conflict" => DiffKind::Conflict,
            "prefix_changed" => DiffKind::PrefixChanged,
            other => return Err(LakeFsError::Protocol(format!("unknown diff type {other:?}"))),
        };
        Ok(DiffEntry {
            path: self.path,
            kind,
            size: self.size_bytes,
        })
    }
}

#[derive(Deserialize)]
struct MergeJson {
    reference: String,
}

#[derive(Deserialize)]
struct ErrorJson {
    message: String,
}

fn page<T, U>(response: ListResponse<T>, convert: impl FnMut(T) -> Result<U>) -> Result<Page<U>> {
    let items = response.results.into_iter().map(convert).collect::<Result<Vec<_>>>()?;
    let next_after = response.pagination.has_more.then_some(response.pagination.next_offset);
    Ok(Page { items, next_after })
}

pub(crate) fn transport_error(err: reqwest::Error) -> LakeFsError {
    if err.is_timeout() {
        LakeFsError::Timeout(err.to_string())
    } else if err.is_decode() {
        LakeFsError::Protocol(err.to_string())
    } else {
        // Keep the source chain: "error sending request" alone says nothing about refused connections.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        LakeFsError::Transport(message)
    }
}

impl RestClient {
    pub fn new(config: &ClientConfig) -> Result<Self> {
        let base = api_base_url(&config.endpoint)?.to_string();
        let http = reqwest::Client::builder()
            .user_agent(concat!("lakefs-fuse/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(transport_error)?;
        Ok(Self {
            http,
            base,
            access_key_id: config.access_key_id.clone(),
            secret_access_key: config.secret_access_key.clone(),
        })
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        for segment in segments {
            url.push('/');
            url.extend(utf8_percent_encode(segment, SEGMENT));
        }
        self.http
            .request(method, url)
            .basic_auth(&self.access_key_id, Some(&self.secret_access_key))
    }

    async fn send_json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after_header(&response);
        let body = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| LakeFsError::Protocol(format!("invalid JSON from server: {e}")))
        } else {
            Err(error_from_response(status, retry_after.as_deref(), &body))
        }
    }

    pub async fn list_repositories(&self, after: &str) -> Result<Page<Repository>> {
        let request = self
            .request(Method::GET, &["repositories"])
            .query(&[("after", after), ("amount", "1000")]);
        let response: ListResponse<RepositoryJson> = self.send_json(request).await?;
        page(response, |r| {
            Ok(Repository {
                id: r.id,
                default_branch: r.default_branch,
                creation_date: r.creation_date,
            })
        })
    }

    pub async fn get_repository(&self, repo: &str) -> Result<Repository> {
        let r: RepositoryJson = self
            .send_json(self.request(Method::GET, &["repositories", repo]))
            .await?;
        Ok(Repository {
            id: r.id,
            default_branch: r.default_branch,
            creation_date: r.creation_date,
        })
    }

    pub async fn list_branches(&self, repo: &str, after: &str) -> Result<Page<RefInfo>> {
        let request = self
            .request(Method::GET, &["repositories", repo, "branches"])
            .query(&[("after", after), ("amount", "1000")]);
        let response: ListResponse<RefJson> = self.send_json(request).await?;
        page(response, |r| {
            Ok(RefInfo {
                id: r.id,
                commit_id: r.commit_id,
            })
        })
    }

    pub async fn get_branch(&self, repo: &str, branch: &str) -> Result<RefInfo> {
        let r: RefJson = self
            .send_json(self.request(Method::GET, &["repositories", repo, "branches", branch]))
            .await?;
        Ok(RefInfo {
            id: r.id,
            commit_id: r.commit_id,
        })
    }

    pub async fn get_tag(&self, repo: &str, tag: &str) -> Result<RefInfo> {
        let r: RefJson = self
            .send_json(self.request(Method::GET, &["repositories", repo, "tags", tag]))
            .await?;
        Ok(RefInfo {
            id: r.id,
            commit_id: r.commit_id,
        })
    }

    pub async fn get_commit(&self, repo: &str, reference: &str) -> Result<CommitInfo> {
        let c: CommitJson = self
            .send_json(self.request(Method::GET, &["repositories", repo, "commits", reference]))
            .await?;
        Ok(CommitInfo {
            id: c.id,
            creation_date: c.creation_date,
        })
    }

    pub async fn stat_object(&self, repo: &str, reference: &str, path: &str) -> Result<ObjectInfo> {
        let request = self
            .request(
                Method::GET,
                &["repositories", repo, "refs", reference, "objects", "stat"],
            )
            .query(&[("path", path)]);
        let stats: ObjectStatsJson = self.send_json(request).await?;
        Ok(stats.into_object())
    }

    pub async fn list_objects(&self, repo: &str, reference: &str, list: &ListRequest) -> Result<Page<ListEntry>> {
        let amount = list.amount.clamp(1, MAX_PAGE).to_string();
        let mut query = vec![
            ("prefix", list.prefix.as_str()),
            ("after", list.after.as_str()),
            ("amount", &amount),
        ];
        if list.delimited {
            query.push(("delimiter", "/"));
        }
        let request = self
            .request(Method::GET, &["repositories", repo, "refs", reference, "objects", "ls"])
            .query(&query);
        let response: ListResponse<ObjectStatsJson> = self.send_json(request).await?;
        page(response, ObjectStatsJson::into_entry)
    }
}

/// Header prefix that stores `::lakefs::<rest>` metadata keys on upload (lakefs-api.md 5.6).
const INTERNAL_META_HEADER: &str = "x-lakefs-internal-";
/// Header prefix for ordinary user metadata on upload.
const USER_META_HEADER: &str = "x-lakefs-meta-";
const RESERVED_META_PREFIX: &str = "::lakefs::";

impl RestClient {
    async fn send_empty(&self, request: RequestBuilder) -> Result<()> {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after_header(&response);
        let body = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(error_from_response(status, retry_after.as_deref(), &body))
        }
    }

    pub async fn create_branch(&self, repo: &str, name: &str, source: &str, hidden: bool) -> Result<()> {
        let body = serde_json::json!({ "name": name, "source": source, "hidden": hidden });
        // 201 with the commit id as plain text.
        self.send_empty(
            self.request(Method::POST, &["repositories", repo, "branches"])
                .json(&body),
        )
        .await
    }

    pub async fn diff_branch(&self, repo: &str, branch: &str, after: &str) -> Result<Page<DiffEntry>> {
        let request = self
            .request(Method::GET, &["repositories", repo, "branches", branch, "diff"])
            .query(&[("after", after), ("amount", "1000")]);
        let response: ListResponse<DiffJson> = self.send_json(request).await?;
        page(response, DiffJson::into_entry)
    }

    /// One entry of the branch's uncommitted changes under `prefix` is enough to know whether there are any.
    pub async fn has_uncommitted_changes(&self, repo: &str, branch: &str, prefix: &str) -> Result<bool> {
        let request = self
            .request(Method::GET, &["repositories", repo, "branches", branch, "diff"])
            .query(&[("prefix", prefix), ("amount", "1")]);
        let response: ListResponse<DiffJson> = self.send_json(request).await?;
        Ok(!page(response, DiffJson::into_entry)?.items.is_empty())
    }

    pub async fn diff_refs(&self, repo: &str, left: &str, right: &str, after: &str) -> Result<Page<DiffEntry>> {
        let request = self
            .request(Method::GET, &["repositories", repo, "refs", left, "diff", right])
            .query(&[("after", after), ("amount", "1000"), ("type", "three_dot")]);
        let response: ListResponse<DiffJson> = self.send_json(request).await?;
        page(response, DiffJson::into_entry)
    }

    pub async fn commit_branch(&self, repo: &str, branch: &str, commit: &CommitRequest) -> Result<CommitInfo> {
        let body = serde_json::json!({ "message": commit.message, "metadata": commit.metadata });
        let request = self
            .request(Method::POST, &["repositories", repo, "branches", branch, "commits"])
            .json(&body);
        let c: CommitJson = self.send_json(request).await?;
        Ok(CommitInfo {
            id: c.id,
            creation_date: c.creation_date,
        })
    }

    pub async fn merge_refs(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        commit: &CommitRequest,
        strategy: Option<MergeStrategy>,
    ) -> Result<String> {
        let mut body = serde_json::json!({ "metadata": commit.metadata });
        if !commit.message.is_empty() {
            body["message"] = commit.message.clone().into();
        }
        if let Some(strategy) = strategy {
            body["strategy"] = strategy.as_str().into();
        }
        let request = self
            .request(
                Method::POST,
                &["repositories", repo, "refs", source, "merge", destination],
            )
            .json(&body);
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after_header(&response);
        let bytes = response.bytes().await.map_err(transport_error)?;
        if status == StatusCode::CONFLICT {
            // lakeFS answers a conflict with a MergeResult body, not an error message.
            return Err(LakeFsError::Conflict(format!(
                "merging {source} into {destination}: conflict"
            )));
        }
        if !status.is_success() {
            return Err(error_from_response(status, retry_after.as_deref(), &bytes));
        }
        let merged: MergeJson = serde_json::from_slice(&bytes)
            .map_err(|e| LakeFsError::Protocol(format!("invalid merge response: {e}")))?;
        Ok(merged.reference)
    }

    pub async fn hard_reset_branch(&self, repo: &str, branch: &str, reference: &str) -> Result<()> {
        let request = self
            .request(Method::PUT, &["repositories", repo, "branches", branch, "hard_reset"])
            .query(&[("ref", reference)]);
        self.send_empty(request).await
    }

    /// Raw-body upload; metadata keys become `x-lakefs-meta-*` / `x-lakefs-internal-*` headers.
    pub async fn upload_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        file: &std::path::Path,
        metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        // Streamed from the file: a large object never sits in memory whole.
        let reading = |e: std::io::Error| LakeFsError::Transport(format!("reading {}: {e}", file.display()));
        let data = tokio::fs::File::open(file).await.map_err(reading)?;
        let size = data.metadata().await.map_err(reading)?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(data, 1 << 20));
        let mut request = self
            .request(Method::POST, &["repositories", repo, "branches", branch, "objects"])
            .query(&[("path", path)])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size);
        for (key, value) in metadata {
            let header = match key.strip_prefix(RESERVED_META_PREFIX) {
                Some(rest) => format!("{INTERNAL_META_HEADER}{rest}"),
                None => format!("{USER_META_HEADER}{key}"),
            };
            request = request.header(header, value);
        }
        self.send_empty(request.body(body)).await
    }

    pub async fn delete_object(&self, repo: &str, branch: &str, path: &str) -> Result<()> {
        let request = self
            .request(Method::DELETE, &["repositories", repo, "branches", branch, "objects"])
            .query(&[("path", path)]);
        self.send_empty(request).await
    }

    pub async fn copy_object(
        &self,
        repo: &str,
        branch: &str,
        source_ref: &str,
        source_path: &str,
        dest_path: &str,
    ) -> Result<ObjectInfo> {
        let body = serde_json::json!({ "src_path": source_path, "src_ref": source_ref });
        let request = self
            .request(
                Method::POST,
                &["repositories", repo, "branches", branch, "objects", "copy"],
            )
            .query(&[("dest_path", dest_path)])
            .json(&body);
        let stats: ObjectStatsJson = self.send_json(request).await?;
        Ok(stats.into_object())
    }
}

/// The error a failed response stands for; `retry_after` is its `Retry-After` header, if any.
fn error_from_response(status: StatusCode, retry_after: Option<&str>, body: &[u8]) -> LakeFsError {
    let message = serde_json::from_slice::<ErrorJson>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(512).collect());
    LakeFsError::from_response(status.as_u16(), message, retry_after)
}

/// A response's `Retry-After` header, read before its body consumes it.
fn retry_after_header(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    value.to_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_path_is_appended_only_when_the_endpoint_has_none() {
        assert_eq!(
            api_base_url("http://127.0.0.1:8000").unwrap().as_str(),
            "http://127.0.0.1:8000/api/v1"
        );
        assert_eq!(
            api_base_url("http://127.0.0.1:8000/").unwrap().as_str(),
            "http://127.0.0.1:8000/api/v1"
        );
        assert_eq!(
            api_base_url("https://lake.example/api/v1/").unwrap().as_str(),
            "https://lake.example/api/v1"
        );
        assert_eq!(api_base_url("http://h/custom").unwrap().as_str(), "http://h/custom");
        assert!(api_base_url("ftp://h").is_err());
        assert!(api_base_url("not a url").is_err());
    }

    #[test]
    fn error_bodies_keep_the_server_message() {
        let err = error_from_response(StatusCode::NOT_FOUND, None, br#"{"message":"branch not found"}"#);
        assert!(
            matches!(err, LakeFsError::NotFound(ref m) if m == "branch not found"),
            "{err:?}"
        );
        let err = error_from_response(StatusCode::UNAUTHORIZED, None, b"plain text");
        assert!(
            matches!(err, LakeFsError::Unauthorized(ref m) if m == "plain text"),
            "{err:?}"
        );
        assert!(error_from_response(StatusCode::BAD_GATEWAY, None, b"").is_transient());
        let throttled = error_from_response(StatusCode::TOO_MANY_REQUESTS, Some(" 7 "), b"slow down");
        assert_eq!(throttled.retry_after(), Some(std::time::Duration::from_secs(7)));
        let dated = error_from_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
            b"",
        );
        assert_eq!(dated.retry_after(), None, "dates fall back to the policy's backoff");
        assert_eq!(
            error_from_response(StatusCode::NOT_FOUND, Some("7"), b"").retry_after(),
            None,
            "only transient refusals carry a wait"
        );
    }

    #[test]
    fn listing_entries_are_classified_by_path_type() {
        let json = br#"{"pagination":{"has_more":true,"next_offset":"a/","results":2,"max_per_page":1000},
            "results":[{"path":"a.txt","path_type":"object","checksum":"c1","size_bytes":3,"mtime":5,"physical_address":"x"},
                       {"path":"a/","path_type":"common_prefix","checksum":"","mtime":0,"physical_address":""}]}"#;
        let response: ListResponse<ObjectStatsJson> = serde_json::from_slice(json).unwrap();
        let page = page(response, ObjectStatsJson::into_entry).unwrap();
        assert_eq!(page.next_after.as_deref(), Some("a/"));
        assert!(matches!(&page.items[0], ListEntry::Object(o) if o.size == 3 && o.checksum == "c1"));
        assert_eq!(page.items[1], ListEntry::Prefix("a/".into()));
    }
}
