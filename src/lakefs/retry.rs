//! Retries for idempotent lakeFS calls, in one place.
//!
//! Every attempt runs under its own deadline (`request_timeout`), so a stalled socket frees the caller with
//! [`LakeFsError::Timeout`] instead of wedging a FUSE thread. Transient failures (5xx, 429, timeouts, connection
//! errors) are retried with full-jitter exponential backoff between `min_wait` and `max_wait`; everything else is
//! returned at once. Only reads go through here: commit and merge must never be repeated blindly.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::{LakeFsError, Result};

/// The slowest transfer rate (bytes per second) an attempt that moves object data is granted before it counts as
/// stalled.
pub const MIN_TRANSFER_RATE: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first; at least 1.
    pub max_attempts: u32,
    pub min_wait: Duration,
    pub max_wait: Duration,
    /// Deadline of one attempt.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // lakectl's defaults: 4 attempts, 200 ms .. 30 s; the deadline keeps one stuck request under a minute.
        Self {
            max_attempts: 4,
            min_wait: Duration::from_millis(200),
            max_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
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

    /// The policy for moving `bytes` of object data in one attempt: the deadline grows by one second per
    /// [`MIN_TRANSFER_RATE`] bytes, so a large upload on a slow link is not cut off as a stalled request while a
    /// stalled socket still is.
    pub fn for_transfer(&self, bytes: u64) -> Self {
        Self {
            request_timeout: self
                .request_timeout
                .saturating_add(Duration::from_secs(bytes / MIN_TRANSFER_RATE)),
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

    /// Run `attempt` until it succeeds, fails permanently, or attempts run out.
    pub async fn run<T, F, Fut>(&self, operation: &'static str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
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
                    let wait = self.backoff(tries);
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
