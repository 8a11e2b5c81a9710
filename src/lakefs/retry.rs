//! Retries for idempotent lakeFS calls, in one place.
//!
//! Every attempt runs under its own deadline (`request_timeout`), so a stalled socket frees the caller with
//! [`LakeFsError::Timeout`] instead of wedging a FUSE thread. Transient failures (5xx, 429, timeouts, connection
//! errors) are retried with full-jitter exponential backoff between `min_wait` and `max_wait`; everything else is
//! returned at once. Only reads go through here: commit and merge must never be repeated blindly.
//!
//! `operation_timeout` (`-o timeout=`) bounds one call as a whole - every attempt and every wait between them -
//! so no process waits on an unreachable server longer than the user asked, however the attempts fail. Uploads
//! get a per-attempt deadline that grows with their size ([`RetryPolicy::for_transfer`]): a fixed deadline would
//! make a large file impossible to send over a slow link.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::{LakeFsError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first; at least 1.
    pub max_attempts: u32,
    pub min_wait: Duration,
    pub max_wait: Duration,
    /// Deadline of one attempt.
    pub request_timeout: Duration,
    /// Deadline of one call, all attempts and waits included; `None` = bounded by the attempts alone.
    pub operation_timeout: Option<Duration>,
}

/// The slowest transfer rate (bytes per second) an attempt that moves object data is granted, beyond
/// `request_timeout`, before it counts as stalled.
pub const MIN_TRANSFER_RATE: u64 = 1 << 20;

impl Default for RetryPolicy {
    fn default() -> Self {
        // lakectl's defaults: 4 attempts, 200 ms .. 30 s; the deadline keeps one stuck request under a minute.
        Self {
            max_attempts: 4,
            min_wait: Duration::from_millis(200),
            max_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            operation_timeout: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries; for tests and for the one-shot credential check.
    pub fn no_retry(request_timeout: Duration) -> Self {
        Self {
            max_attempts: 1,
            request_timeout,
            ..Self::default()
        }
    }

    /// The policy for sending `bytes`: each attempt (and the call, with `operation_timeout`) may also take the
    /// time `bytes` need at 1 MiB/s.
    pub fn for_transfer(&self, bytes: u64) -> Self {
        let allowance = Duration::from_secs(bytes / MIN_TRANSFER_RATE);
        Self {
            request_timeout: self.request_timeout.saturating_add(allowance),
            operation_timeout: self.operation_timeout.map(|limit| limit.saturating_add(allowance)),
            ..self.clone()
        }
    }

    /// Backoff before attempt `attempt + 1` (attempt counts from 1): uniform in `[0, min(max, min * 2^attempt)]`,
    /// but never below `min_wait`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.min_wait.saturating_mul(1u32 << attempt.min(16)).min(self.max_wait);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        let min_ms = u64::try_from(self.min_wait.as_millis()).unwrap_or(0).min(cap_ms);
        Duration::from_millis(rand::rng().random_range(min_ms..=cap_ms))
    }

    /// The wait before retrying after attempt `attempt` failed with `err`, `elapsed` into the call: the backoff,
    /// or longer when the server said how long with `Retry-After` (at most `max_wait`). `None` when that wait
    /// would run past `operation_timeout`: failing now beats sleeping into the deadline.
    pub fn wait_before_retry(&self, attempt: u32, err: &LakeFsError, elapsed: Duration) -> Option<Duration> {
        let backoff = self.backoff(attempt);
        let wait = match err.retry_after() {
            Some(asked) => asked.min(self.max_wait).max(backoff),
            None => backoff,
        };
        match self.operation_timeout {
            Some(limit) if err.retry_after().is_some() && elapsed.saturating_add(wait) >= limit => None,
            _ => Some(wait),
        }
    }

    /// Run `attempt` until it succeeds, fails permanently, attempts run out or `operation_timeout` passes.
    pub async fn run<T, F, Fut>(&self, operation: &'static str, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let Some(limit) = self.operation_timeout else {
            return self.attempts(operation, attempt).await;
        };
        match tokio::time::timeout(limit, self.attempts(operation, attempt)).await {
            Ok(result) => result,
            Err(_) => Err(LakeFsError::Timeout(format!(
                "{operation} did not succeed within {limit:?} (timeout=)"
            ))),
        }
    }

    async fn attempts<T, F, Fut>(&self, operation: &'static str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = tokio::time::Instant::now();
        let mut tries = 0;
        loop {
            tries += 1;
            let result = match tokio::time::timeout(self.request_timeout, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(LakeFsError::Timeout(format!(
                    "{operation} took longer than {:?}",
                    self.request_timeout
                ))),
            };
            match result {
                Err(err) if err.is_transient() && tries < self.max_attempts.max(1) => {
                    let Some(wait) = self.wait_before_retry(tries, &err, started.elapsed()) else {
                        tracing::debug!(operation, attempt = tries, error = %err, "server asks for a longer wait than the call may take");
                        return Err(err);
                    };
                    tracing::debug!(operation, attempt = tries, ?wait, error = %err, "retrying lakeFS request");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            min_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(2),
            request_timeout: Duration::from_millis(50),
            operation_timeout: None,
        }
    }

    #[test]
    fn transfers_get_a_deadline_that_grows_with_their_size() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.for_transfer(0), policy);
        assert_eq!(
            policy.for_transfer(MIN_TRANSFER_RATE - 1).request_timeout,
            policy.request_timeout
        );
        let two_gib = policy.for_transfer(2 << 30);
        assert_eq!(
            two_gib.request_timeout,
            policy.request_timeout + Duration::from_secs((2 << 30) / MIN_TRANSFER_RATE)
        );
        assert_eq!(two_gib.max_attempts, policy.max_attempts);
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = fast()
            .run("test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(LakeFsError::Unavailable("503".into()))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = fast()
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(LakeFsError::NotFound("x".into()))
            })
            .await;
        assert!(matches!(result, Err(LakeFsError::NotFound(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_hanging_attempt_times_out_and_attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = fast()
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Result<()>>().await
            })
            .await;
        assert!(matches!(result, Err(LakeFsError::Timeout(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_operation_timeout_bounds_all_attempts_together() {
        let policy = RetryPolicy {
            max_attempts: 1000,
            operation_timeout: Some(Duration::from_millis(120)),
            ..fast()
        };
        let started = std::time::Instant::now();
        let result: Result<()> = policy
            .run("test", || async { std::future::pending::<Result<()>>().await })
            .await;
        assert!(matches!(result, Err(LakeFsError::Timeout(_))));
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn transfers_get_time_for_their_size() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.for_transfer(0).request_timeout, policy.request_timeout);
        let big = policy.for_transfer(2 << 30);
        assert_eq!(big.request_timeout, policy.request_timeout + Duration::from_secs(2048));
        assert_eq!(big.max_attempts, policy.max_attempts);
        let bounded = RetryPolicy {
            operation_timeout: Some(Duration::from_secs(5)),
            ..policy
        };
        assert_eq!(
            bounded.for_transfer(64 << 20).operation_timeout,
            Some(Duration::from_secs(5 + 64))
        );
    }

    fn throttled(seconds: u64) -> LakeFsError {
        LakeFsError::from_response(429, "slow down".into(), Some(&seconds.to_string()))
    }

    #[test]
    fn retry_after_lengthens_the_wait_up_to_max_wait_and_never_past_the_operation_timeout() {
        let policy = RetryPolicy {
            min_wait: Duration::from_millis(10),
            max_wait: Duration::from_secs(20),
            ..fast()
        };
        let plain = LakeFsError::Unavailable("503".into());
        assert!(policy.wait_before_retry(1, &plain, Duration::ZERO).unwrap() <= Duration::from_millis(20));
        assert_eq!(
            policy.wait_before_retry(1, &throttled(3), Duration::ZERO),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            policy.wait_before_retry(1, &throttled(3600), Duration::ZERO),
            Some(Duration::from_secs(20)),
            "capped at max_wait"
        );
        let bounded = RetryPolicy {
            operation_timeout: Some(Duration::from_secs(10)),
            ..policy
        };
        assert_eq!(
            bounded.wait_before_retry(1, &throttled(3), Duration::from_secs(6)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            bounded.wait_before_retry(1, &throttled(3), Duration::from_secs(8)),
            None,
            "the wait would end past the operation timeout"
        );
    }

    #[tokio::test]
    async fn a_throttled_call_waits_as_asked_then_succeeds_or_gives_up_before_its_deadline() {
        let policy = RetryPolicy {
            max_attempts: 3,
            min_wait: Duration::from_millis(1),
            max_wait: Duration::from_secs(60),
            request_timeout: Duration::from_secs(1),
            operation_timeout: Some(Duration::from_secs(10)),
        };
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = policy
            .run("test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(throttled(1))
                } else {
                    Ok(1)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 1);
        assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());

        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<()> = policy
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(throttled(30))
            })
            .await;
        assert!(
            matches!(result, Err(LakeFsError::RateLimited(_))),
            "the server's own error, not a timeout"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let policy = RetryPolicy {
            min_wait: Duration::from_millis(10),
            max_wait: Duration::from_millis(100),
            ..fast()
        };
        for attempt in 1..20 {
            let wait = policy.backoff(attempt);
            assert!(
                wait >= Duration::from_millis(10) && wait <= Duration::from_millis(100),
                "{wait:?}"
            );
        }
    }
}
