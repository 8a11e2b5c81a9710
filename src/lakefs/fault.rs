//! Deterministic fault injection for lakeFS calls: the same [`FaultPlan`] drives [`FaultyLakeFs`] (a wrapper
//! around any [`LakeFs`], for unit tests and the mount's `-o debug_faults=SPEC`) and the fault mode of the test
//! server (`lakefs-fuse serve --faults SPEC`, see `crate::server::faults`).
//!
//! A spec is a list of `kind=probability[@duration]` items separated by `,` or `+` (`+` fits inside a `-o`
//! list, whose items are separated by commas):
//!
//! | item | effect of one draw |
//! |---|---|
//! | `seed=N` | seeds the plan's generator (default 0): the sequence of decisions is reproducible |
//! | `latency=P@DUR` | the call is delayed by `DUR` first (independent of the faults below) |
//! | `error=P` | HTTP 500 |
//! | `unavailable=P` | HTTP 503 |
//! | `slowdown=P` | throttling: S3 `SlowDown` (503) on the gateway, 429 on the REST API |
//! | `reset=P` | the connection drops mid-body: the request ran on the server, its response is lost |
//! | `truncate=P` | the body ends early; reads get fewer bytes than they asked for |
//! | `stall=P@DUR` | the response is delayed by `DUR` (set it above the request deadline to make a timeout) |
//!
//! At most one of `error`..`stall` applies per call (their probabilities add up and must not exceed 1).
//!
//! Awkward cases:
//! - Determinism: one seeded generator per plan, drawn under a lock, so a single-threaded test sees the same
//!   faults on the same calls every run. Concurrent callers still get the same *sequence* of decisions, though
//!   which call gets which depends on scheduling.
//! - Faults must sit *below* the retry layer, or they only test that errors propagate. [`FaultyLakeFs`] therefore
//!   takes an optional [`RetryPolicy`] and retries the idempotent calls around each faulty attempt, exactly as
//!   the real client does; commit and merge get one attempt, as in the real client.
//! - `reset` on a call that changes something runs the call and then fails: the change happened, the client does
//!   not know. That is the case retries of idempotent calls (and the create-branch "already exists" rule) exist
//!   for.
//! - `truncate` on a read returns a consistent but short body (a proxy that cuts it, a server that lies); callers
//!   must notice by length. On any other call it behaves like `reset`.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::retry::RetryPolicy;
use super::{
    CommitInfo, CommitRequest, DiffEntry, LakeFs, LakeFsError, ListEntry, ListRequest, MergeStrategy, MultipartUpload,
    ObjectBytes, ObjectInfo, Page, RefInfo, Repository, Result,
};

/// A malformed fault spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault spec item {item:?}: {reason}")]
pub struct FaultSpecError {
    pub item: String,
    pub reason: String,
}

/// One injected failure (latency is drawn apart, see [`Draw`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    ServerError,
    Unavailable,
    SlowDown,
    Reset,
    Truncate,
    Stall(Duration),
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::ServerError => "error",
            Self::Unavailable => "unavailable",
            Self::SlowDown => "slowdown",
            Self::Reset => "reset",
            Self::Truncate => "truncate",
            Self::Stall(_) => "stall",
        }
    }
}

/// A parsed spec: what to inject and how often.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    pub seed: u64,
    pub latency: Option<(f64, Duration)>,
    pub server_error: f64,
    pub unavailable: f64,
    pub slowdown: f64,
    pub reset: f64,
    pub truncate: f64,
    pub stall: Option<(f64, Duration)>,
}

impl FaultSpec {
    /// Parse `kind=probability[@duration]` items (see the module docs).
    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let mut parsed = FaultSpec::default();
        for item in spec.split([',', '+']).map(str::trim).filter(|s| !s.is_empty()) {
            let invalid = |reason: &str| FaultSpecError {
                item: item.to_string(),
                reason: reason.to_string(),
            };
            let (kind, value) = item.split_once('=').ok_or_else(|| invalid("expected kind=value"))?;
            if kind == "seed" {
                parsed.seed = value.parse().map_err(|_| invalid("seed must be an integer"))?;
                continue;
            }
            let (probability, duration) = match value.split_once('@') {
                Some((p, d)) => (
                    p,
                    Some(crate::mount::options::parse_duration(d).map_err(|e| invalid(&e))?),
                ),
                None => (value, None),
            };
            let probability: f64 = probability
                .parse()
                .map_err(|_| invalid("probability is not a number"))?;
            if !(0.0..=1.0).contains(&probability) {
                return Err(invalid("probability must be within 0..=1"));
            }
            let timed = |duration: Option<Duration>| duration.ok_or_else(|| invalid("needs @duration"));
            match kind {
                "latency" => parsed.latency = Some((probability, timed(duration)?)),
                "stall" => parsed.stall = Some((probability, timed(duration)?)),
                _ if duration.is_some() => return Err(invalid("takes no @duration")),
                "error" => parsed.server_error = probability,
                "unavailable" => parsed.unavailable = probability,
                "slowdown" => parsed.slowdown = probability,
                "reset" => parsed.reset = probability,
                "truncate" => parsed.truncate = probability,
                _ => return Err(invalid("unknown fault kind")),
            }
        }
        if parsed.faults().iter().map(|(p, _)| p).sum::<f64>() > 1.0 + 1e-9 {
            return Err(FaultSpecError {
                item: spec.to_string(),
                reason: "fault probabilities add up to more than 1".into(),
            });
        }
        Ok(parsed)
    }

    /// The exclusive faults with their probabilities, in a fixed order (the order draws are mapped in).
    fn faults(&self) -> [(f64, Fault); 6] {
        let (stall_p, stall_d) = self.stall.unwrap_or((0.0, Duration::ZERO));
        [
            (self.server_error, Fault::ServerError),
            (self.unavailable, Fault::Unavailable),
            (self.slowdown, Fault::SlowDown),
            (self.reset, Fault::Reset),
            (self.truncate, Fault::Truncate),
            (stall_p, Fault::Stall(stall_d)),
        ]
    }
}

/// What one call gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Draw {
    pub latency: Option<Duration>,
    pub fault: Option<Fault>,
}

/// Counts of what a plan injected, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub calls: u64,
    pub delayed: u64,
    pub injected: BTreeMap<&'static str, u64>,
}

impl FaultCounts {
    pub fn total_faults(&self) -> u64 {
        self.injected.values().sum()
    }
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} calls, {} delayed", self.calls, self.delayed)?;
        for (kind, count) in &self.injected {
            write!(f, ", {count} {kind}")?;
        }
        Ok(())
    }
}

/// A spec plus its seeded generator and counters; shared by every call it applies to.
#[derive(Debug)]
pub struct FaultPlan {
    spec: FaultSpec,
    rng: Mutex<StdRng>,
    calls: AtomicU64,
    delayed: AtomicU64,
    injected: Mutex<BTreeMap<&'static str, u64>>,
}

impl FaultPlan {
    pub fn new(spec: FaultSpec) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(spec.seed)),
            spec,
            calls: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            injected: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        Ok(Self::new(FaultSpec::parse(spec)?))
    }

    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    /// Decide the fate of one call and count it.
    pub fn draw(&self) -> Draw {
        let (latency_roll, fault_roll) = {
            let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (rng.random::<f64>(), rng.random::<f64>())
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let latency = self
            .spec
            .latency
            .filter(|(p, _)| latency_roll < *p)
            .map(|(_, duration)| duration);
        if latency.is_some() {
            self.delayed.fetch_add(1, Ordering::Relaxed);
        }
        let mut threshold = 0.0;
        let mut fault = None;
        for (probability, candidate) in self.spec.faults() {
            threshold += probability;
            if fault_roll < threshold {
                fault = Some(candidate);
                break;
            }
        }
        if let Some(fault) = fault {
            *self
                .injected
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry(fault.name())
                .or_default() += 1;
        }
        Draw { latency, fault }
    }

    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            calls: self.calls.load(Ordering::Relaxed),
            delayed: self.delayed.load(Ordering::Relaxed),
            injected: self
                .injected
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }
}

/// Any [`LakeFs`] with the faults of a [`FaultPlan`] injected into every call, retried (when a policy is given)
/// as the real client retries.
#[derive(Debug)]
pub struct FaultyLakeFs<L> {
    inner: L,
    plan: std::sync::Arc<FaultPlan>,
    retry: Option<RetryPolicy>,
}

impl<L: LakeFs> FaultyLakeFs<L> {
    /// Faults without retries: every injected fault reaches the caller.
    pub fn new(inner: L, plan: std::sync::Arc<FaultPlan>) -> Self {
        Self {
            inner,
            plan,
            retry: None,
        }
    }

    /// Retry idempotent calls around each faulty attempt with `policy`.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    pub fn inner(&self) -> &L {
        &self.inner
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// One attempt of `call` with the plan's faults; `shorten` is what `truncate` does to a successful result.
    async fn attempt<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
        shorten: Option<fn(T) -> T>,
    ) -> Result<T> {
        let draw = self.plan.draw();
        if let Some(delay) = draw.latency {
            tokio::time::sleep(delay).await;
        }
        let injected = |what: &str| format!("{operation}: {what} (injected)");
        match draw.fault {
            None => call.await,
            Some(Fault::ServerError) => Err(LakeFsError::Unavailable(injected("HTTP 500").into())),
            Some(Fault::Unavailable) => Err(LakeFsError::Unavailable(injected("HTTP 503").into())),
            Some(Fault::SlowDown) => Err(LakeFsError::RateLimited(injected("SlowDown").into())),
            Some(Fault::Stall(delay)) => {
                tokio::time::sleep(delay).await;
                call.await
            }
            Some(Fault::Truncate) if shorten.is_some() => match (call.await, shorten) {
                (Ok(value), Some(shorten)) => Ok(shorten(value)),
                (other, _) => other,
            },
            Some(Fault::Reset | Fault::Truncate) => {
                // The request reached the server; only its response is lost.
                let _ = call.await;
                Err(LakeFsError::Transport(injected("connection reset mid-body")))
            }
        }
    }

    /// An idempotent call: faulty attempts under the retry policy.
    async fn idempotent<T, Fut>(
        &self,
        operation: &'static str,
        mut call: impl FnMut() -> Fut,
        shorten: Option<fn(T) -> T>,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        match &self.retry {
            Some(policy) => policy.run(operation, || self.attempt(operation, call(), shorten)).await,
            None => self.attempt(operation, call(), shorten).await,
        }
    }
}

/// Half the bytes: what a truncated body leaves.
fn truncate_body(bytes: ObjectBytes) -> ObjectBytes {
    let keep = bytes.data.len() / 2;
    ObjectBytes {
        data: bytes.data.slice(..keep),
        etag: bytes.etag,
    }
}

impl<L: LakeFs> LakeFs for FaultyLakeFs<L> {
    async fn list_repositories(&self, after: &str) -> Result<Page<Repository>> {
        self.idempotent("list_repositories", || self.inner.list_repositories(after), None)
            .await
    }
    async fn get_repository(&self, repo: &str) -> Result<Repository> {
        self.idempotent("get_repository", || self.inner.get_repository(repo), None)
            .await
    }
    async fn list_branches(&self, repo: &str, after: &str) -> Result<Page<RefInfo>> {
        self.idempotent("list_branches", || self.inner.list_branches(repo, after), None)
            .await
    }
    async fn get_branch(&self, repo: &str, branch: &str) -> Result<RefInfo> {
        self.idempotent("get_branch", || self.inner.get_branch(repo, branch), None)
            .await
    }
    async fn get_tag(&self, repo: &str, tag: &str) -> Result<RefInfo> {
        self.idempotent("get_tag", || self.inner.get_tag(repo, tag), None).await
    }
    async fn get_commit(&self, repo: &str, reference: &str) -> Result<CommitInfo> {
        self.idempotent("get_commit", || self.inner.get_commit(repo, reference), None)
            .await
    }
    async fn stat_object(&self, repo: &str, reference: &str, path: &str) -> Result<ObjectInfo> {
        self.idempotent("stat_object", || self.inner.stat_object(repo, reference, path), None)
            .await
    }
    async fn list_objects(&self, repo: &str, reference: &str, request: &ListRequest) -> Result<Page<ListEntry>> {
        self.idempotent(
            "list_objects",
            || self.inner.list_objects(repo, reference, request),
            None,
        )
        .await
    }
    async fn get_object_range(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        range: Range<u64>,
    ) -> Result<ObjectBytes> {
        self.idempotent(
            "get_object_range",
            || self.inner.get_object_range(repo, reference, path, range.clone()),
            Some(truncate_body),
        )
        .await
    }
    async fn create_branch_from(&self, repo: &str, name: &str, source: &str, hidden: bool) -> Result<()> {
        // As in the real client: a retry that finds the branch created by a lost attempt has succeeded.
        let mut attempts = 0;
        self.idempotent(
            "create_branch",
            || {
                attempts += 1;
                let first = attempts == 1;
                async move {
                    match self.inner.create_branch_from(repo, name, source, hidden).await {
                        Err(LakeFsError::Conflict(_)) if !first => Ok(()),
                        other => other,
                    }
                }
            },
            None,
        )
        .await
    }
    async fn diff_branch(&self, repo: &str, branch: &str, after: &str) -> Result<Page<DiffEntry>> {
        self.idempotent("diff_branch", || self.inner.diff_branch(repo, branch, after), None)
            .await
    }
    async fn diff_refs(&self, repo: &str, left: &str, right: &str, after: &str) -> Result<Page<DiffEntry>> {
        self.idempotent("diff_refs", || self.inner.diff_refs(repo, left, right, after), None)
            .await
    }
    async fn commit_branch(&self, repo: &str, branch: &str, request: &CommitRequest) -> Result<CommitInfo> {
        self.attempt("commit_branch", self.inner.commit_branch(repo, branch, request), None)
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
        self.attempt(
            "merge_refs",
            self.inner.merge_refs(repo, source, destination, request, strategy),
            None,
        )
        .await
    }
    async fn hard_reset_branch(&self, repo: &str, branch: &str, reference: &str) -> Result<()> {
        self.idempotent(
            "hard_reset_branch",
            || self.inner.hard_reset_branch(repo, branch, reference),
            None,
        )
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
        self.idempotent(
            "upload_file",
            || self.inner.upload_file(repo, branch, path, file, metadata),
            None,
        )
        .await
    }
    async fn remove_object(&self, repo: &str, branch: &str, path: &str) -> Result<()> {
        self.idempotent("remove_object", || self.inner.remove_object(repo, branch, path), None)
            .await
    }
    async fn has_uncommitted_changes(&self, repo: &str, branch: &str, prefix: &str) -> Result<bool> {
        self.idempotent(
            "has_uncommitted_changes",
            || self.inner.has_uncommitted_changes(repo, branch, prefix),
            None,
        )
        .await
    }
    async fn create_multipart(&self, repo: &str, branch: &str, path: &str) -> Result<String> {
        // A new upload id per attempt: a lost answer only leaves an unused upload behind.
        self.idempotent(
            "create_multipart",
            || self.inner.create_multipart(repo, branch, path),
            None,
        )
        .await
    }
    async fn upload_part(
        &self,
        upload: &MultipartUpload,
        number: u32,
        file: &std::path::Path,
        range: Range<u64>,
    ) -> Result<String> {
        self.idempotent(
            "upload_part",
            || self.inner.upload_part(upload, number, file, range.clone()),
            None,
        )
        .await
    }
    async fn complete_multipart(&self, upload: &MultipartUpload, parts: &[(u32, String)]) -> Result<ObjectInfo> {
        // Like commit: once, as a retry after a lost answer would find the upload gone.
        self.attempt("complete_multipart", self.inner.complete_multipart(upload, parts), None)
            .await
    }
    async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<()> {
        self.idempotent("abort_multipart", || self.inner.abort_multipart(upload), None)
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
        self.idempotent(
            "copy_object",
            || self.inner.copy_object(repo, branch, source_ref, source_path, dest_path),
            None,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::lakefs::mock::MockLakeFs;

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 12,
            min_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(4),
            request_timeout: Duration::from_millis(200),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let spec =
            FaultSpec::parse("seed=7,latency=0.5@20ms+error=0.1,unavailable=0.1,slowdown=0.05,reset=0.05").unwrap();
        assert_eq!(spec.seed, 7);
        assert_eq!(spec.latency, Some((0.5, Duration::from_millis(20))));
        assert_eq!(spec.server_error, 0.1);
        let spec = FaultSpec::parse("truncate=0.2,stall=0.1@2s").unwrap();
        assert_eq!(spec.stall, Some((0.1, Duration::from_secs(2))));
        for bad in [
            "error",
            "error=2",
            "bogus=0.1",
            "stall=0.1",
            "error=0.1@1s",
            "seed=x",
            "error=0.6,reset=0.6",
        ] {
            assert!(FaultSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let spec = FaultSpec::parse("seed=42,error=0.2,reset=0.2,latency=0.3@1ms").unwrap();
        let first = FaultPlan::new(spec.clone());
        let second = FaultPlan::new(spec);
        let a: Vec<Draw> = (0..500).map(|_| first.draw()).collect();
        let b: Vec<Draw> = (0..500).map(|_| second.draw()).collect();
        assert_eq!(a, b);
        let counts = first.counts();
        assert_eq!(counts.calls, 500);
        // 20% each, give or take: the generator is really drawing.
        for kind in ["error", "reset"] {
            let n = counts.injected[kind];
            assert!((60..=140).contains(&n), "{kind}: {n}");
        }
        let other = FaultPlan::parse("seed=43,error=0.2,reset=0.2,latency=0.3@1ms").unwrap();
        assert_ne!(a, (0..500).map(|_| other.draw()).collect::<Vec<_>>());
    }

    fn faulty(mock: &Arc<MockLakeFs>, spec: &str) -> FaultyLakeFs<Arc<MockLakeFs>> {
        FaultyLakeFs::new(mock.clone(), Arc::new(FaultPlan::parse(spec).unwrap()))
    }

    #[tokio::test]
    async fn without_retries_every_fault_reaches_the_caller() {
        let mock = Arc::new(MockLakeFs::new());
        mock.create_repository("repo", "main");
        mock.put_object("repo", "main", "f", "0123456789").unwrap();
        let client = faulty(&mock, "error=1");
        let err = client.get_object_range("repo", "main", "f", 0..10).await.unwrap_err();
        assert!(matches!(err, LakeFsError::Unavailable(_)), "{err}");
        let client = faulty(&mock, "truncate=1");
        let got = client.get_object_range("repo", "main", "f", 0..10).await.unwrap();
        assert_eq!(&got.data[..], b"01234", "a truncated body is short, not wrong");
        let client = faulty(&mock, "reset=1");
        assert!(matches!(
            client.stat_object("repo", "main", "f").await,
            Err(LakeFsError::Transport(_))
        ));
        let client = faulty(&mock, "slowdown=1");
        assert!(client.get_branch("repo", "main").await.unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn retries_hide_transient_faults_and_stalls_time_out() {
        let mock = Arc::new(MockLakeFs::new());
        mock.create_repository("repo", "main");
        mock.put_object("repo", "main", "f", "0123456789").unwrap();
        let client =
            faulty(&mock, "seed=1,error=0.15,unavailable=0.1,slowdown=0.1,reset=0.05").with_retry(fast_retry());
        for _ in 0..50 {
            let got = client.get_object_range("repo", "main", "f", 2..6).await.unwrap();
            assert_eq!(&got.data[..], b"2345");
            let stat = client.stat_object("repo", "main", "f").await.unwrap();
            assert_eq!(stat.size, 10);
        }
        assert!(client.plan().counts().total_faults() > 20);
        // A stall longer than the attempt deadline is a timeout, retried like any other.
        let client = faulty(&mock, "stall=1@10s").with_retry(RetryPolicy {
            max_attempts: 2,
            request_timeout: Duration::from_millis(20),
            ..fast_retry()
        });
        let started = std::time::Instant::now();
        let err = client.get_branch("repo", "main").await.unwrap_err();
        assert!(matches!(err, LakeFsError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_lost_create_branch_response_is_still_success() {
        let mock = Arc::new(MockLakeFs::new());
        mock.create_repository("repo", "main");
        let client = faulty(&mock, "reset=1").with_retry(RetryPolicy {
            max_attempts: 1,
            ..fast_retry()
        });
        // One attempt, response lost: the caller sees the error although the branch exists.
        assert!(client.create_branch_from("repo", "b1", "main", true).await.is_err());
        assert!(mock.is_hidden_branch("repo", "b1").is_some());
        // Lost on the first attempt, "exists" on the second: success.
        let client = faulty(&mock, "seed=3,reset=0.5").with_retry(fast_retry());
        for i in 0..10 {
            client
                .create_branch_from("repo", &format!("c{i}"), "main", true)
                .await
                .unwrap();
        }
    }
}
