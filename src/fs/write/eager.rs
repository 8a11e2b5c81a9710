//! `-o upload_eager` (DESIGN section 3; on by default): upload a staged file's full parts while it is still being written, so
//! that `close` only has to send the tail and complete the multipart upload.
//!
//! After each `write(2)` to a staged file, [`Filesystem::eager_progress`] starts a multipart upload on the staging
//! branch once the file holds a whole part, and then uploads every part `[n * PART, (n + 1) * PART)` the file has
//! grown past, [`EAGER_PARTS_IN_FLIGHT`] at a time (the next write starts the next part when a slot is free).
//! `flush`/`fsync` ([`Filesystem::finish_eager`]) waits for the parts in flight, sends the rest and completes.
//!
//! The rule that keeps this correct: bytes `0..sent` (parts started) must never change afterwards. A write that
//! begins below `sent` (a rewrite, a seek back, a second handle) or a truncation below it *spoils* the upload:
//! it is aborted at close and the file is uploaded whole, exactly as without the option. So random writers lose
//! nothing but some wasted transfer, and sequential writers (cp, dd, most data tools) overlap writing and uploading.
//!
//! Awkward cases:
//! - A file renamed, or given reserved metadata (chmod, a symlink target), while parts are out: the metadata
//!   goes only through the REST upload and the key is the multipart upload's, so it is spoiled too.
//! - A staged file dropped (unlinked, replaced, discarded) with parts out: its multipart upload is aborted. Only
//!   a mount that dies mid-upload leaves one behind, as any S3 client would.
//! - Failure to start or to send a part is not the writer's problem yet: the file is uploaded whole when its upload
//!   runs (after close, or in fsync), and that upload's error is what fsync (or a commit) returns.

use std::sync::Arc;

use futures::stream::{StreamExt, TryStreamExt};

use super::BranchWriter;
use crate::fs::Filesystem;
use crate::lakefs::{LakeFs, LakeFsError, MultipartUpload, ObjectInfo};
use crate::staging::LocalFile;

/// Size of an eagerly uploaded part (the last one may be smaller).
#[cfg(not(test))]
pub(crate) const EAGER_PART_SIZE: u64 = 16 * 1024 * 1024;
#[cfg(test)]
pub(crate) const EAGER_PART_SIZE: u64 = 64 * 1024;
/// Parts of one file uploaded at a time.
pub(crate) const EAGER_PARTS_IN_FLIGHT: usize = 4;

type PartTask = tokio::task::JoinHandle<Result<(u32, String), LakeFsError>>;

/// The eager upload of one staged file.
#[derive(Debug, Default)]
pub(crate) enum EagerState {
    /// No upload started (or the last one finished).
    #[default]
    Idle,
    /// A write is creating the multipart upload.
    Starting,
    Running(EagerUpload),
    /// Not for this file until its next upload on close (starting failed, or the upload was spoiled).
    Off,
}

#[derive(Debug)]
pub(crate) struct EagerUpload {
    upload: MultipartUpload,
    /// Bytes `0..sent` are in parts started; they must not change any more.
    sent: u64,
    /// Parts started, in order.
    parts: Vec<PartTask>,
}

impl EagerUpload {
    fn in_flight(&self) -> usize {
        self.parts.iter().filter(|p| !p.is_finished()).count()
    }
}

impl<L: LakeFs> Filesystem<L> {
    /// After `len` bytes were written at `offset` to staged file `id`: spoil the eager upload if the write touched
    /// bytes already sent, else start the upload or its next parts.
    pub(crate) async fn eager_progress(&self, writer: &BranchWriter, id: u64, local: &Arc<LocalFile>, offset: u64) {
        if !self.config.upload_eager {
            return;
        }
        let key = {
            let mut state = writer.state();
            let Some(file) = state.files.get_mut(&id) else {
                return;
            };
            let spoiled = match &file.eager {
                EagerState::Running(eager) => {
                    offset < eager.sent
                        || eager.upload.path != file.key
                        || !file.metadata.is_empty()
                        || local.shrunk_to().is_some_and(|len| len < eager.sent)
                }
                _ => false,
            };
            if spoiled {
                if let EagerState::Running(eager) = std::mem::replace(&mut file.eager, EagerState::Off) {
                    tracing::debug!(
                        key = file.key,
                        "eager upload spoiled by a rewrite; the file goes whole on close"
                    );
                    self.abort_eager(eager);
                }
                return;
            }
            match &mut file.eager {
                EagerState::Running(eager) => {
                    self.start_parts(eager, local);
                    return;
                }
                EagerState::Idle if local.size() >= EAGER_PART_SIZE && file.metadata.is_empty() => {
                    file.eager = EagerState::Starting;
                    local.reset_shrink_mark();
                    file.key.clone()
                }
                _ => return,
            }
        };
        let started = async {
            self.ensure_staging_branch(writer)
                .await
                .map_err(|e| LakeFsError::Protocol(e.to_string()))?;
            self.client.create_multipart(&writer.repo, &writer.staging, &key).await
        }
        .await;
        let mut state = writer.state();
        let Some(file) = state.files.get_mut(&id) else {
            return;
        };
        let still_wanted = matches!(file.eager, EagerState::Starting);
        match started {
            Ok(upload_id) if !still_wanted => {
                // A flush took the file over meanwhile and uploaded it whole.
                self.abort_eager(EagerUpload {
                    upload: MultipartUpload {
                        repo: writer.repo.clone(),
                        branch: writer.staging.clone(),
                        path: key,
                        upload_id,
                    },
                    sent: 0,
                    parts: Vec::new(),
                });
            }
            Ok(upload_id) => {
                let mut eager = EagerUpload {
                    upload: MultipartUpload {
                        repo: writer.repo.clone(),
                        branch: writer.staging.clone(),
                        path: key,
                        upload_id,
                    },
                    sent: 0,
                    parts: Vec::new(),
                };
                self.start_parts(&mut eager, local);
                file.eager = EagerState::Running(eager);
            }
            Err(err) => {
                tracing::info!(key, "eager upload not started, the file goes whole on close: {err}");
                if still_wanted {
                    file.eager = EagerState::Off;
                }
            }
        }
    }

    /// Start uploading every full part below the file's size, as far as the parts in flight allow.
    fn start_parts(&self, eager: &mut EagerUpload, local: &Arc<LocalFile>) {
        while local.size() >= eager.sent + EAGER_PART_SIZE && eager.in_flight() < EAGER_PARTS_IN_FLIGHT {
            let Ok(number) = u32::try_from(eager.parts.len() + 1) else {
                return;
            };
            let range = eager.sent..eager.sent + EAGER_PART_SIZE;
            eager.sent = range.end;
            let (client, upload, local) = (self.client.clone(), eager.upload.clone(), local.clone());
            eager.parts.push(tokio::spawn(async move {
                let etag = client.upload_part(&upload, number, local.path(), range).await?;
                Ok((number, etag))
            }));
        }
    }

    pub(super) fn abort_eager(&self, eager: EagerUpload) {
        let client = self.client.clone();
        tokio::spawn(async move {
            for part in &eager.parts {
                part.abort();
            }
            if let Err(err) = client.abort_multipart(&eager.upload).await {
                tracing::debug!(key = eager.upload.path, "aborting an eager upload: {err}");
            }
        });
    }

    /// On `flush`/`fsync`: complete staged file `id`'s eager upload with the parts not sent yet. `None` when there
    /// is none, or it cannot be used (spoiled, failed): then the caller uploads the file whole.
    pub(crate) async fn finish_eager(
        &self,
        writer: &BranchWriter,
        id: u64,
        key: &str,
        local: &Arc<LocalFile>,
    ) -> Option<ObjectInfo> {
        let eager = {
            let mut state = writer.state();
            let file = state.files.get_mut(&id)?;
            match std::mem::take(&mut file.eager) {
                EagerState::Running(eager) => {
                    let usable = eager.upload.path == key
                        && file.metadata.is_empty()
                        && local.shrunk_to().is_none_or(|len| len >= eager.sent)
                        && local.size() >= eager.sent;
                    if !usable {
                        self.abort_eager(eager);
                        return None;
                    }
                    eager
                }
                _ => return None,
            }
        };
        let upload = eager.upload.clone();
        match self.complete_eager(eager, local).await {
            Ok(info) => Some(info),
            Err(err) => {
                tracing::info!(key, "eager upload failed, uploading the file whole: {err}");
                if let Err(err) = self.client.abort_multipart(&upload).await {
                    tracing::debug!(key, "aborting an eager upload: {err}");
                }
                None
            }
        }
    }

    async fn complete_eager(&self, eager: EagerUpload, local: &Arc<LocalFile>) -> Result<ObjectInfo, LakeFsError> {
        let size = local.size();
        let first_rest = eager.parts.len() as u64 + 1;
        let rest = (eager.sent..size)
            .step_by(EAGER_PART_SIZE as usize)
            .enumerate()
            .map(|(i, start)| {
                let number =
                    u32::try_from(first_rest + i as u64).map_err(|_| LakeFsError::BadRequest("too many parts".into()));
                (number, start..(start + EAGER_PART_SIZE).min(size))
            });
        let mut parts = Vec::new();
        for task in eager.parts {
            let part = task
                .await
                .map_err(|e| LakeFsError::Protocol(format!("part upload task: {e}")))??;
            parts.push(part);
        }
        let upload = &eager.upload;
        let tail: Vec<(u32, String)> = futures::stream::iter(rest)
            .map(|(number, range)| async move {
                let number = number?;
                let etag = self.client.upload_part(upload, number, local.path(), range).await?;
                Ok::<_, LakeFsError>((number, etag))
            })
            .buffered(EAGER_PARTS_IN_FLIGHT)
            .try_collect()
            .await?;
        parts.extend(tail);
        self.client.complete_multipart(upload, &parts).await
    }
}
