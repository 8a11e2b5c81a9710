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
