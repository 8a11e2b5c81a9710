//! Write-back: `close` returns once a file's bytes are in its local staging file and journalled, and the upload
//! to the staging branch runs in the background, [`UPLOADS_IN_FLIGHT`] files at a time.
//!
//! A program that writes many small files then runs at local-disk speed instead of one server round trip per
//! file, which is what rclone's VFS cache does too. What a caller can rely on:
//! - read-your-writes: the mount shows the file at once (the overlay points at the local bytes);
//! - `fsync` uploads the file before it returns, and returns the upload's error;
//! - a commit, merge or `-o sync_close` waits for every upload, and fails with the first upload error;
//! - a crash loses nothing `close` returned 0 for: the file stays in the journal until its upload finished, and
//!   a restarted mount uploads it ([`crate::staging`]);
//! - an upload that fails in the background keeps the file dirty: `.lakefs/status` names the error, the next
//!   `fsync` or commit retries it.
//!
//! Locking: a background upload holds the branch's operation lock *shared* (uploads of different files run
//! together) and the file's own upload lock (two uploads of one file never race). Operations that move or
//! delete objects on the staging branch, and commit/merge/discard, hold the operation lock exclusively, so they
//! never see an upload half done. The order is always operation lock, then file lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::BranchWriter;
use crate::fs::Filesystem;
use crate::lakefs::LakeFs;

/// Files uploaded at once by the background (and by a commit draining them).
pub(crate) const UPLOADS_IN_FLIGHT: usize = 16;

/// The background uploads of one mount.
#[derive(Debug)]
pub(crate) struct BackgroundUploads {
    slots: Arc<tokio::sync::Semaphore>,
    /// Uploads started and not finished.
    running: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Default for BackgroundUploads {
    fn default() -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(UPLOADS_IN_FLIGHT)),
            running: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }
    }
}

impl<L: LakeFs> Filesystem<L> {
    /// Upload staged file `id` in the background (a no-op once it is clean or no longer shown).
    pub(crate) fn upload_later(&self, writer: &Arc<BranchWriter>, id: u64) {
        let Some(fs) = self.me.upgrade() else {
            return;
        };
        let writer = writer.clone();
        self.background.running.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            {
                let _slot = fs.background.slots.acquire().await;
                let _shared = writer.operation.read().await;
                if let Err(err) = fs.upload(&writer, id).await {
                    // Recorded for `status` by `upload`; the file stays dirty for fsync or the commit to retry.
                    tracing::warn!(
                        repo = writer.repo,
                        staging = writer.staging,
                        "background upload failed: {err}"
                    );
                }
            }
            if fs.background.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                fs.background.idle.notify_waiters();
            }
        });
    }

    /// Background uploads started and not finished.
    pub fn uploads_running(&self) -> usize {
        self.background.running.load(Ordering::SeqCst)
    }

    /// Wait until no background upload runs, or `limit` passed. Returns whether they all finished.
    pub async fn wait_for_uploads(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.background.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.uploads_running() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}
