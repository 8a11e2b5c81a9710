//! Prometheus metrics of a mount (`-o metrics=127.0.0.1:PORT`): FUSE requests and lakeFS requests by operation
//! (count, errors, total latency), bytes down (object reads) and up (uploads), data cache hits and misses, and
//! pending uploads, served as the text exposition format on `GET /metrics`.
//!
//! Every counter is a process-wide atomic in this module, so recording costs one relaxed add and never locks:
//! the FUSE adapter records each request in its one dispatch helper, and [`MeteredLakeFs`] wraps the client to
//! record each lakeFS call. Gauges that belong to the filesystem (cache use, pending uploads) are read from it
//! when the endpoint is scraped ([`MountGauges`]). Latencies are exposed as Prometheus summaries without
//! quantiles (`_sum` and `_count`), which is what rate-based dashboards need and costs no histogram buckets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lakefs::{
    CommitInfo, CommitRequest, DiffEntry, LakeFs, ListEntry, ListRequest, MergeStrategy, MultipartUpload, ObjectBytes,
    ObjectInfo, Page, RefInfo, Repository, Result,
};

/// Count, errors and total latency of one operation.
struct OpCounters {
    count: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
}

impl OpCounters {
    const fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            micros: AtomicU64::new(0),
        }
    }

    fn record(&self, elapsed: Duration, failed: bool) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// FUSE operations the adapter names; anything else counts as `other`.
const FUSE_OPS: [&str; 25] = [
    "lookup",
    "getattr",
    "readlink",
    "open",
    "read",
    "release",
    "flush",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "statfs",
    "setattr",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "link",
    "rename",
    "create",
    "write",
    "fsync",
    "forget",
    "other",
];

const LAKEFS_OPS: [&str; 23] = [
    "list_repositories",
    "get_repository",
    "list_branches",
    "get_branch",
    "get_tag",
    "get_commit",
    "stat_object",
    "list_objects",
    "get_object_range",
    "create_branch_from",
    "diff_branch",
    "diff_refs",
    "commit_branch",
    "merge_refs",
    "hard_reset_branch",
    "upload_file",
    "remove_object",
    "copy_object",
    "has_uncommitted_changes",
    "create_multipart",
    "upload_part",
    "complete_multipart",
    "abort_multipart",
];

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise the arrays below
const ZERO: OpCounters = OpCounters::new();
static FUSE: [OpCounters; FUSE_OPS.len()] = [ZERO; FUSE_OPS.len()];
static LAKEFS: [OpCounters; LAKEFS_OPS.len()] = [ZERO; LAKEFS_OPS.len()];
static BYTES_DOWN: AtomicU64 = AtomicU64::new(0);
static BYTES_UP: AtomicU64 = AtomicU64::new(0);

fn fuse_index(op: &str) -> usize {
    FUSE_OPS.iter().position(|o| *o == op).unwrap_or(FUSE_OPS.len() - 1)
}

/// Record one FUSE request (called by the adapter for every request it runs on the core).
pub fn record_fuse(op: &str, elapsed: Duration) {
    FUSE[fuse_index(op)].record(elapsed, false);
}

/// Record one FUSE request that failed with an errno.
pub fn record_fuse_error(op: &str) {
    FUSE[fuse_index(op)].errors.fetch_add(1, Ordering::Relaxed);
}

fn record_lakefs(index: usize, started: Instant, failed: bool) {
    LAKEFS[index].record(started.elapsed(), failed);
}

/// Filesystem gauges, read when the endpoint is scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountGauges {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_memory_bytes: u64,
    pub cache_disk_bytes: Option<u64>,
    pub pending_uploads: u64,
    pub uncommitted_changes: u64,
}

/// The whole exposition text.
pub fn render(gauges: &MountGauges) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, ops: &[&str], counters: &[OpCounters]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (op, c) in ops.iter().zip(counters) {
            let count = c.count.load(Ordering::Relaxed);
            if count == 0 && c.errors.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let seconds = c.micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_sum{{op=\"{op}\"}} {seconds}\n{name}_count{{op=\"{op}\"}} {count}"
            );
        }
    };
    family(
        "lakefs_fuse_fuse_request_duration_seconds",
        "summary",
        "FUSE requests served, by operation",
        &FUSE_OPS,
        &FUSE,
    );
    family(
        "lakefs_fuse_lakefs_request_duration_seconds",
        "summary",
        "lakeFS API and S3 gateway calls (before retries are counted by the client), by operation",
        &LAKEFS_OPS,
        &LAKEFS,
    );
    let mut errors = |name: &str, help: &str, ops: &[&str], counters: &[OpCounters]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (op, c) in ops.iter().zip(counters) {
            let errors = c.errors.load(Ordering::Relaxed);
            if errors > 0 {
                let _ = writeln!(out, "{name}{{op=\"{op}\"}} {errors}");
            }
        }
    };
    errors(
        "lakefs_fuse_fuse_errors_total",
        "FUSE requests answered with an errno",
        &FUSE_OPS,
        &FUSE,
    );
    errors(
        "lakefs_fuse_lakefs_errors_total",
        "lakeFS calls that failed",
        &LAKEFS_OPS,
        &LAKEFS,
    );
    let mut single = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    single(
        "lakefs_fuse_bytes_down_total",
        "counter",
        "object bytes read from lakeFS",
        BYTES_DOWN.load(Ordering::Relaxed),
    );
    single(
        "lakefs_fuse_bytes_up_total",
        "counter",
        "object bytes uploaded to staging branches",
        BYTES_UP.load(Ordering::Relaxed),
    );
    single(
        "lakefs_fuse_cache_hits_total",
        "counter",
        "data blocks served from the memory cache",
        gauges.cache_hits,
    );
    single(
        "lakefs_fuse_cache_misses_total",
        "counter",
        "data blocks not in the memory cache",
        gauges.cache_misses,
    );
    single(
        "lakefs_fuse_cache_memory_bytes",
        "gauge",
        "bytes of object data cached in memory",
        gauges.cache_memory_bytes,
    );
    if let Some(disk) = gauges.cache_disk_bytes {
        single(
            "lakefs_fuse_cache_disk_bytes",
            "gauge",
            "bytes of object data cached on disk",
            disk,
        );
    }
    single(
        "lakefs_fuse_pending_uploads",
        "gauge",
        "files whose latest bytes are not on their staging branch yet",
        gauges.pending_uploads,
    );
    single(
        "lakefs_fuse_uncommitted_changes",
        "gauge",
        "paths written or deleted through the mount and not committed",
        gauges.uncommitted_changes,
    );
    out
}

/// Serve `GET /metrics` on `listener` until the runtime stops. `gauges` reads the filesystem's gauges.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gauges: impl Fn() -> MountGauges + Clone + Send + Sync + 'static,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let gauges = gauges.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    render(&gauges()),
                )
            }
        }),
    );
    if let Err(err) = axum::serve(listener, app).await {
        tracing::warn!(error = %err, "metrics endpoint stopped");
    }
}

/// A [`LakeFs`] client that records every call in the metrics.
pub struct MeteredLakeFs<L> {
    inner: L,
}

impl<L: LakeFs> MeteredLakeFs<L> {
    pub fn new(inner: L) -> Self {
        Self { inner }
    }
}

/// Time `call` and record it under `LAKEFS_OPS[index]`.
async fn metered<T>(index: usize, call: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let result = call.await;
    record_lakefs(index, started, result.is_err());
    result
}

impl<L: LakeFs> LakeFs for MeteredLakeFs<L> {
    async fn list_repositories(&self, after: &str) -> Result<Page<Repository>> {
        metered(0, self.inner.list_repositories(after)).await
    }
    async fn get_repository(&self, repo: &str) -> Result<Repository> {
        metered(1, self.inner.get_repository(repo)).await
    }
    async fn list_branches(&self, repo: &str, after: &str) -> Result<Page<RefInfo>> {
        metered(2, self.inner.list_branches(repo, after)).await
    }
    async fn get_branch(&self, repo: &str, branch: &str) -> Result<RefInfo> {
        metered(3, self.inner.get_branch(repo, branch)).await
    }
    async fn get_tag(&self, repo: &str, tag: &str) -> Result<RefInfo> {
        metered(4, self.inner.get_tag(repo, tag)).await
    }
    async fn get_commit(&self, repo: &str, reference: &str) -> Result<CommitInfo> {
        metered(5, self.inner.get_commit(repo, reference)).await
    }
    async fn stat_object(&self, repo: &str, reference: &str, path: &str) -> Result<ObjectInfo> {
        metered(6, self.inner.stat_object(repo, reference, path)).await
    }
    async fn list_objects(&self, repo: &str, reference: &str, request: &ListRequest) -> Result<Page<ListEntry>> {
        metered(7, self.inner.list_objects(repo, reference, request)).await
    }
    async fn get_object_range(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        range: Range<u64>,
    ) -> Result<ObjectBytes> {
        let bytes = metered(8, self.inner.get_object_range(repo, reference, path, range)).await?;
        BYTES_DOWN.fetch_add(bytes.data.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
    async fn create_branch_from(&self, repo: &str, name: &str, source: &str, hidden: bool) -> Result<()> {
        metered(9, self.inner.create_branch_from(repo, name, source, hidden)).await
    }
    async fn diff_branch(&self, repo: &str, branch: &str, after: &str) -> Result<Page<DiffEntry>> {
        metered(10, self.inner.diff_branch(repo, branch, after)).await
    }
    async fn diff_refs(&self, repo: &str, left: &str, right: &str, after: &str) -> Result<Page<DiffEntry>> {
        metered(11, self.inner.diff_refs(repo, left, right, after)).await
    }
    async fn commit_branch(&self, repo: &str, branch: &str, request: &CommitRequest) -> Result<CommitInfo> {
        metered(12, self.inner.commit_branch(repo, branch, request)).await
    }
    async fn merge_refs(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        request: &CommitRequest,
        strategy: Option<MergeStrategy>,
    ) -> Result<String> {
        metered(13, self.inner.merge_refs(repo, source, destination, request, strategy)).await
    }
    async fn hard_reset_branch(&self, repo: &str, branch: &str, reference: &str) -> Result<()> {
        metered(14, self.inner.hard_reset_branch(repo, branch, reference)).await
    }
    async fn upload_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        file: &std::path::Path,
        metadata: &BTreeMap<String, String>,
    ) -> Result<ObjectInfo> {
        let info = metered(15, self.inner.upload_file(repo, branch, path, file, metadata)).await?;
        BYTES_UP.fetch_add(info.size, Ordering::Relaxed);
        Ok(info)
    }
    async fn remove_object(&self, repo: &str, branch: &str, path: &str) -> Result<()> {
        metered(16, self.inner.remove_object(repo, branch, path)).await
    }
    async fn copy_object(
        &self,
        repo: &str,
        branch: &str,
        source_ref: &str,
        source_path: &str,
        dest_path: &str,
    ) -> Result<ObjectInfo> {
        metered(
            17,
            self.inner.copy_object(repo, branch, source_ref, source_path, dest_path),
        )
        .await
    }
    async fn has_uncommitted_changes(&self, repo: &str, branch: &str, prefix: &str) -> Result<bool> {
        metered(18, self.inner.has_uncommitted_changes(repo, branch, prefix)).await
    }
    async fn create_multipart(&self, repo: &str, branch: &str, path: &str) -> Result<String> {
        metered(19, self.inner.create_multipart(repo, branch, path)).await
    }
    async fn upload_part(
        &self,
        upload: &MultipartUpload,
        number: u32,
        file: &std::path::Path,
        range: Range<u64>,
    ) -> Result<String> {
        let size = range.end.saturating_sub(range.start);
        let etag = metered(20, self.inner.upload_part(upload, number, file, range)).await?;
        BYTES_UP.fetch_add(size, Ordering::Relaxed);
        Ok(etag)
    }
    async fn complete_multipart(&self, upload: &MultipartUpload, parts: &[(u32, String)]) -> Result<ObjectInfo> {
        metered(21, self.inner.complete_multipart(upload, parts)).await
    }
    async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<()> {
        metered(22, self.inner.abort_multipart(upload)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lakefs::mock::MockLakeFs;

    #[tokio::test]
    async fn calls_requests_and_bytes_show_in_the_exposition() {
        let mock = MockLakeFs::new();
        mock.create_repository("metrics-repo", "main");
        mock.put_object("metrics-repo", "main", "f", "0123456789").unwrap();
        let client = MeteredLakeFs::new(mock);
        client.get_branch("metrics-repo", "main").await.unwrap();
        assert!(client.get_branch("metrics-repo", "missing").await.is_err());
        let bytes = client
            .get_object_range("metrics-repo", "main", "f", 2..6)
            .await
            .unwrap();
        assert_eq!(&bytes.data[..], b"2345");
        record_fuse("lookup", Duration::from_millis(3));
        record_fuse("no-such-op", Duration::from_millis(1));
        record_fuse_error("lookup");

        let text = render(&MountGauges {
            cache_hits: 7,
            pending_uploads: 2,
            ..MountGauges::default()
        });
        // Counters are process-wide and other tests run concurrently: check presence and lower bounds.
        let value = |prefix: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix}\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("lakefs_fuse_lakefs_request_duration_seconds_count{op=\"get_branch\"}") >= 2.0);
        assert!(value("lakefs_fuse_lakefs_errors_total{op=\"get_branch\"}") >= 1.0);
        assert!(value("lakefs_fuse_bytes_down_total") >= 4.0);
        assert!(value("lakefs_fuse_fuse_request_duration_seconds_sum{op=\"lookup\"}") >= 0.003);
        assert!(value("lakefs_fuse_fuse_request_duration_seconds_count{op=\"other\"}") >= 1.0);
        assert!(value("lakefs_fuse_fuse_errors_total{op=\"lookup\"}") >= 1.0);
        assert_eq!(value("lakefs_fuse_cache_hits_total"), 7.0);
        assert_eq!(value("lakefs_fuse_pending_uploads"), 2.0);
        assert!(
            !text.contains("lakefs_fuse_cache_disk_bytes"),
            "no disk cache, no disk gauge"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "name{{labels}} value: {line}");
        }
    }
}
