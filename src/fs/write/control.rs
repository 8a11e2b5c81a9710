//! The control operations of `.lakefs/` (DESIGN section 3): parsing what is written to `commit` and `merge`,
//! running commit, merge and discard against the server, and the write side's lines of `status`.
//!
//! Each operation runs inside the `write(2)` that carries its command, under the branch's operation lock, so
//! uploads and other operations of the same branch wait for it. Its outcome, success or the full error, is kept
//! for `status` and logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{drop_if_unused, BranchWriter, Overlay};
use crate::fs::inode::{ControlFile, RefLocation};
use crate::fs::{lock, Filesystem, FsError, FsResult};
use crate::lakefs::{CommitRequest, DiffKind, LakeFs, LakeFsError, MergeStrategy};

/// A parsed write to `.lakefs/commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitCommand(pub CommitRequest);

/// A parsed write to `.lakefs/merge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCommand {
    pub into: String,
    pub strategy: Option<MergeStrategy>,
    pub message: Option<String>,
}

#[derive(serde::Deserialize)]
struct CommitJson {
    message: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct MergeJson {
    into: String,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn command_text(data: &[u8]) -> FsResult<&str> {
    let text = std::str::from_utf8(data).map_err(|_| FsError::invalid("control file input is not UTF-8"))?;
    Ok(text.trim())
}

impl CommitCommand {
    /// `message` or a JSON line `{"message":..,"metadata":{..}}`.
    pub fn parse(data: &[u8]) -> FsResult<Self> {
        let text = command_text(data)?;
        if text.starts_with('{') {
            let json: CommitJson =
                serde_json::from_str(text).map_err(|e| FsError::invalid(format!("commit: invalid JSON: {e}")))?;
            if json.message.trim().is_empty() {
                return Err(FsError::invalid("commit: the message is empty"));
            }
            return Ok(Self(CommitRequest {
                message: json.message,
                metadata: json.metadata,
            }));
        }
        if text.is_empty() {
            return Err(FsError::invalid("commit: the message is empty"));
        }
        Ok(Self(CommitRequest {
            message: text.to_string(),
            metadata: BTreeMap::new(),
        }))
    }
}

impl MergeCommand {
    /// `TARGET` or a JSON line `{"into":..,"strategy":"source-wins"|"dest-wins","message":..}`.
    pub fn parse(data: &[u8]) -> FsResult<Self> {
        let text = command_text(data)?;
        let command = if text.starts_with('{') {
            let json: MergeJson =
                serde_json::from_str(text).map_err(|e| FsError::invalid(format!("merge: invalid JSON: {e}")))?;
            let strategy = match json.strategy.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => Some(
                    MergeStrategy::parse(s)
                        .ok_or_else(|| FsError::invalid(format!("merge: unknown strategy {s:?}")))?,
                ),
            };
            Self {
                into: json.into.trim().to_string(),
                strategy,
                message: json.message.filter(|m| !m.trim().is_empty()),
            }
        } else {
            Self {
                into: text.to_string(),
                strategy: None,
                message: None,
            }
        };
        if command.into.is_empty() || command.into.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(FsError::invalid(format!(
                "merge: {:?} is not a branch name",
                command.into
            )));
        }
        Ok(command)
    }
}

impl<L: LakeFs> Filesystem<L> {
    // ---- control operations ---------------------------------------------------------------------------------

    pub(super) async fn control_operation(
        &self,
        location: &Arc<RefLocation>,
        file: ControlFile,
        data: &[u8],
    ) -> FsResult<()> {
        let writer = self
            .loaded_writer(location)
            .await?
            .ok_or_else(|| FsError::read_only(format!("{} cannot be written", location.name)))?;
        let _guard = writer.operation.lock().await;
        let result = match file {
            ControlFile::Commit => match CommitCommand::parse(data) {
                Ok(CommitCommand(request)) => self.commit(&writer, &request).await.map(|id| format!("commit {id}")),
                Err(err) => Err(err),
            },
            ControlFile::Merge => match MergeCommand::parse(data) {
                Ok(command) => self.merge(&writer, &command).await,
                Err(err) => Err(err),
            },
            ControlFile::Discard => self.discard(&writer).await.map(|()| "discard: done".to_string()),
            _ => Err(FsError::access_denied(format!("{} is read-only", file.name()))),
        };
        match &result {
            Ok(outcome) => writer.record(outcome.clone()),
            Err(err) => writer.record(format!("{} failed: {err}", file.name())),
        }
        // Whatever happened, the mount's view may have changed: drop cached misses.
        lock(&self.negative).clear();
        self.listings.clear();
        result.map(|_| ())
    }

    /// Commit this mount's changes to `B` (see the `commit` row of DESIGN section 3). Returns `B`'s new head.
    async fn commit(&self, writer: &BranchWriter, request: &CommitRequest) -> FsResult<String> {
        self.upload_all(writer).await?;
        if !writer.state().created {
            return Err(FsError::no_data(format!(
                "commit: nothing to commit on {}",
                writer.branch
            )));
        }
        let (repo, branch, staging) = (&writer.repo, &writer.branch, &writer.staging);
        let staged = self
            .client
            .diff_branch(repo, staging, "")
            .await
            .map_err(|e| FsError::lakefs(format!("changes of {staging}"), e))?;
        let has_staged = !staged.items.is_empty();
        let unmerged = if has_staged {
            true
        } else {
            let ahead = self
                .client
                .diff_refs(repo, branch, staging, "")
                .await
                .map_err(|e| FsError::lakefs(format!("diff {branch}...{staging}"), e))?;
            !ahead.items.is_empty()
        };
        if !unmerged {
            return Err(FsError::no_data(format!("commit: nothing to commit on {branch}")));
        }
        // lakeFS cannot merge into a dirty branch: commit other clients' changes on B first, as lakectl would.
        let dirty = self
            .client
            .diff_branch(repo, branch, "")
            .await
            .map_err(|e| FsError::lakefs(format!("changes of {branch}"), e))?;
        if !dirty.items.is_empty() {
            self.client
                .commit_branch(repo, branch, request)
                .await
                .map_err(|e| self.operation_error(format!("committing other clients' changes on {branch}"), e))?;
        }
        if has_staged {
            match self.client.commit_branch(repo, staging, request).await {
                Ok(_) => {}
                Err(LakeFsError::BadRequest(message)) if message.contains("no changes") => {}
                Err(err) => return Err(self.operation_error(format!("committing {staging}"), err)),
            }
        }
        let head = match self.client.merge_refs(repo, staging, branch, request, None).await {
            Ok(id) => id,
            Err(LakeFsError::Conflict(_)) => {
                let paths = self.conflicting_paths(repo, branch, staging).await;
                return Err(FsError::lakefs(
                    format!(
                        "commit: merging {staging} into {branch} conflicts on: {}",
                        paths.join(", ")
                    ),
                    LakeFsError::Conflict(paths.join(", ")),
                ));
            }
            Err(LakeFsError::BadRequest(message)) if message.contains("no changes") => {
                self.client
                    .get_branch(repo, branch)
                    .await
                    .map_err(|e| FsError::lakefs(format!("branch {branch}"), e))?
                    .commit_id
            }
            Err(err) => return Err(self.operation_error(format!("commit: merging {staging} into {branch}"), err)),
        };
        self.client
            .hard_reset_branch(repo, staging, &head)
            .await
            .map_err(|e| FsError::lakefs(format!("resetting {staging} to {head}"), e))?;
        self.retire_all(writer, false);
        writer.state().last_commit = Some(head.clone());
        Ok(head)
    }

    /// An error of a commit or merge, with the errno the control files document.
    fn operation_error(&self, context: String, err: LakeFsError) -> FsError {
        match &err {
            LakeFsError::BadRequest(message) if message.contains("no changes") => {
                FsError::lakefs(context, err.clone()).with_errno(libc::ENODATA)
            }
            _ => FsError::lakefs(context, err),
        }
    }

    /// Paths a merge of `source` into `destination` conflicts on, for the error message.
    async fn conflicting_paths(&self, repo: &str, destination: &str, source: &str) -> Vec<String> {
        let mut paths = Vec::new();
        let mut after = String::new();
        loop {
            match self.client.diff_refs(repo, destination, source, &after).await {
                Ok(page) => {
                    paths.extend(
                        page.items
                            .into_iter()
                            .filter(|e| e.kind == DiffKind::Conflict)
                            .map(|e| e.path),
                    );
                    match page.next_after {
                        Some(next) if next > after => after = next,
                        _ => break,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "listing conflicts");
                    break;
                }
            }
        }
        if paths.is_empty() {
            paths.push("(the server did not name them)".to_string());
        }
        paths
    }

    /// Commit if anything is pending, then merge `B` into the target. Returns the outcome for `status`.
    async fn merge(&self, writer: &BranchWriter, command: &MergeCommand) -> FsResult<String> {
        let (repo, branch) = (&writer.repo, &writer.branch);
        if command.into == *branch {
            return Err(FsError::invalid(format!("merge: cannot merge {branch} into itself")));
        }
        match self.client.get_branch(repo, &command.into).await {
            Ok(_) => {}
            Err(LakeFsError::NotFound(_)) => {
                return Err(FsError::invalid(format!(
                    "merge: {} is not a branch of {repo}",
                    command.into
                )))
            }
            Err(err) => return Err(FsError::lakefs(format!("branch {}", command.into), err)),
        }
        let message = command
            .message
            .clone()
            .unwrap_or_else(|| format!("Merge '{branch}' into '{}'", command.into));
        let request = CommitRequest {
            message,
            metadata: BTreeMap::new(),
        };
        let committed = match self.commit(writer, &request).await {
            Ok(head) => Some(head),
            Err(err) if err.errno == libc::ENODATA => None,
            Err(err) => return Err(err),
        };
        // B itself may hold other clients' uncommitted writes (the ingest flow); merge takes commits only.
        if committed.is_none() {
            let dirty = self
                .client
                .diff_branch(repo, branch, "")
                .await
                .map_err(|e| FsError::lakefs(format!("changes of {branch}"), e))?;
            if !dirty.items.is_empty() {
                self.client
                    .commit_branch(repo, branch, &request)
                    .await
                    .map_err(|e| self.operation_error(format!("committing {branch}"), e))?;
            }
        }
        let merged = match self
            .client
            .merge_refs(repo, branch, &command.into, &request, command.strategy)
            .await
        {
            Ok(id) => id,
            Err(LakeFsError::Conflict(_)) => {
                let paths = self.conflicting_paths(repo, &command.into, branch).await;
                return Err(FsError::lakefs(
                    format!(
                        "merge: {branch} into {} conflicts on: {}",
                        command.into,
                        paths.join(", ")
                    ),
                    LakeFsError::Conflict(paths.join(", ")),
                ));
            }
            Err(err) => return Err(self.operation_error(format!("merge: {branch} into {}", command.into), err)),
        };
        let outcome = format!("merge {branch} into {}: {merged}", command.into);
        writer.state().last_merge = Some(outcome.clone());
        Ok(outcome)
    }

    /// Drop every uncommitted change of this mount: reset `S` to `B`, forget local files.
    async fn discard(&self, writer: &BranchWriter) -> FsResult<()> {
        if writer.state().created {
            let head = self
                .client
                .get_branch(&writer.repo, &writer.branch)
                .await
                .map_err(|e| FsError::lakefs(format!("branch {}", writer.branch), e))?
                .commit_id;
            self.client
                .hard_reset_branch(&writer.repo, &writer.staging, &head)
                .await
                .map_err(|e| FsError::lakefs(format!("resetting {}", writer.staging), e))?;
        }
        self.retire_all(writer, true);
        Ok(())
    }

    /// After a commit (`discard` false) or a discard: the overlay empties. A file still open for writing after a
    /// commit stays staged (its bytes are committed; later writes make it dirty again).
    fn retire_all(&self, writer: &BranchWriter, discard: bool) {
        let mut state = writer.state();
        state.retired.clear();
        let overlay = std::mem::take(&mut state.overlay);
        for (key, entry) in overlay {
            let Overlay::Staged(id) = entry else { continue };
            let open = state.files.get(&id).is_some_and(|f| f.handles > 0 && f.local.is_some());
            if open && !discard {
                if let Some(file) = state.files.get_mut(&id) {
                    file.dirty = false;
                }
                state.overlay.insert(key, Overlay::Staged(id));
                continue;
            }
            state.retired.insert(id, key);
            drop_if_unused(&mut state, id);
        }
        if discard {
            state.local_dirs.clear();
        }
        state.last_upload_error = None;
    }

    // ---- control file contents ------------------------------------------------------------------------------

    /// The write side's part of `.lakefs/status`, and the contents of `staging`, `commit`, `merge`.
    pub(crate) fn write_status(&self, location: &RefLocation, file: ControlFile) -> Option<String> {
        let writer = self.writer(location)?;
        let state = writer.state();
        Some(match file {
            ControlFile::Staging => format!("{}\n", writer.staging),
            ControlFile::Commit => state.last_commit.clone().map(|c| format!("{c}\n")).unwrap_or_default(),
            ControlFile::Merge => state.last_merge.clone().map(|m| format!("{m}\n")).unwrap_or_default(),
            ControlFile::Discard => String::new(),
            ControlFile::Head | ControlFile::Status => {
                let staged = state
                    .overlay
                    .values()
                    .filter(|o| matches!(o, Overlay::Staged(_)))
                    .count();
                let deleted = state.overlay.len() - staged;
                let pending = state.pending_uploads();
                let mut text = format!(
                    "staging branch: {}{}\npending uploads: {pending}\nuncommitted changes: {} ({staged} written, \
                     {deleted} deleted)\nlocal directories: {}\n",
                    writer.staging,
                    if state.created { "" } else { " (not created yet)" },
                    state.overlay.len(),
                    state.local_dirs.len(),
                );
                if let Some(error) = &state.last_upload_error {
                    text.push_str(&format!("last upload error: {error}\n"));
                }
                text.push_str(&format!(
                    "last operation: {}\n",
                    state.last_operation.as_deref().unwrap_or("none")
                ));
                text
            }
        })
    }
}
