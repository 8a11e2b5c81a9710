//! The control operations of `.lakefs/` (DESIGN section 3): parsing what is written to `commit` and `merge`,
//! running commit, merge and discard against the server, the write side's lines of `status`, and `status.json`.
//!
//! Each operation runs inside the `write(2)` that carries its command, under the branch's operation lock, so
//! uploads and other operations of the same branch wait for it. Its outcome, success or the full error, is kept
//! for `status` and logged.
//!
//! `status.json` is the machine-readable form of `status` ([`StatusReport`]), for `lakefs-fuse status`,
//! `commit` and `merge`. It never waits for the operation lock: while a commit blocks its `write(2)`, another
//! thread reads the phase the operation is in and how many uploads are still pending (the progress bar), and
//! afterwards the structured outcome ([`OperationOutcome`]) with the sequence number the writer saw before it
//! started, so a client can tell its own outcome from an older one. Besides the ref it is opened in, the report
//! describes the whole mount (source, endpoint, cache use, every branch written through it), so one read answers
//! `lakefs-fuse status` for a repository or whole-server mount too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{drop_if_unused, BranchWriter, Overlay, Retired, WriteState};
use crate::fs::config::Source;
use crate::fs::inode::{ControlFile, RefLocation, RefTarget};
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
        let _guard = writer.operation.write().await;
        let kind = match file {
            ControlFile::Commit => OperationKind::Commit,
            ControlFile::Merge => OperationKind::Merge,
            ControlFile::Discard => OperationKind::Discard,
            _ => return Err(FsError::access_denied(format!("{} is read-only", file.name()))),
        };
        writer.start_operation(kind);
        let result = match kind {
            OperationKind::Commit => match CommitCommand::parse(data) {
                Ok(CommitCommand(request)) => self
                    .commit(&writer, &request)
                    .await
                    .map(|id| (format!("commit {id}"), Some(id))),
                Err(err) => Err(err),
            },
            OperationKind::Merge => match MergeCommand::parse(data) {
                Ok(command) => self.merge(&writer, &command).await,
                Err(err) => Err(err),
            },
            OperationKind::Discard => self
                .discard(&writer)
                .await
                .map(|()| ("discard: done".to_string(), None)),
        };
        let outcome = match &result {
            Ok((summary, id)) => {
                writer.record(summary.clone());
                OperationOutcome::success(kind, summary.clone(), id.clone())
            }
            Err(err) => {
                writer.record(format!("{} failed: {err}", file.name()));
                OperationOutcome::failure(kind, err)
            }
        };
        writer.finish_operation(outcome);
        // Whatever happened, the mount's view may have changed: drop cached misses.
        lock(&self.negative).clear();
        self.listings.clear();
        self.empty_prefixes.clear();
        result.map(|_| ())
    }

    /// Commit this mount's changes to `B` (see the `commit` row of DESIGN section 3). Returns `B`'s new head.
    async fn commit(&self, writer: &BranchWriter, request: &CommitRequest) -> FsResult<String> {
        writer.set_phase(Phase::Uploading);
        self.upload_all(writer).await?;
        writer.set_phase(Phase::Committing);
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
        writer.set_phase(Phase::MergingStaging);
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
        writer.set_phase(Phase::Resetting);
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

    /// Commit if anything is pending, then merge `B` into the target. Returns the outcome for `status` and the
    /// merge commit's id.
    async fn merge(&self, writer: &BranchWriter, command: &MergeCommand) -> FsResult<(String, Option<String>)> {
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
        writer.set_phase(Phase::MergingInto);
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
        Ok((outcome, Some(merged)))
    }

    /// Drop every uncommitted change of this mount: reset `S` to `B`, forget local files.
    async fn discard(&self, writer: &BranchWriter) -> FsResult<()> {
        writer.set_phase(Phase::Discarding);
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
    /// commit stays staged, and so does a file with bytes the commit did not upload. The dirty flag is left as the
    /// uploads set it: clean when the commit's upload sent the current bytes, still dirty when the file was written
    /// (or created) while the commit ran - those bytes are not in the commit and its close must upload them.
    fn retire_all(&self, writer: &BranchWriter, discard: bool) {
        // The branch now has what the overlay showed. Before the overlay goes: no prefix may still count as empty,
        // and a listing fetched before the merge must not be combined with the overlay after it.
        self.empty_prefixes.clear();
        self.listings.clear();
        let mut state = writer.state();
        state.retired.clear();
        let overlay = std::mem::take(&mut state.overlay);
        for (key, entry) in overlay {
            let Overlay::Staged(id) = entry else { continue };
            let open = state.files.get(&id).is_some_and(|f| f.handles > 0 && f.local.is_some());
            // Created or changed while the commit ran and not uploaded by it (a handle may be about to be counted).
            let unsent = state.files.get(&id).is_some_and(|f| f.dirty && f.local.is_some());
            if (open || unsent) && !discard {
                state.overlay.insert(key, Overlay::Staged(id));
                continue;
            }
            if let Some(info) = state.files.get(&id).map(|f| f.info()) {
                state.retired.insert(id, Retired { key, info });
            }
            if let Some(abandoned) = drop_if_unused(&mut state, id) {
                self.abort_eager(abandoned);
            }
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
            ControlFile::Head | ControlFile::Status | ControlFile::StatusJson => {
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
                if let Some(running) = &state.control.running {
                    text.push_str(&format!(
                        "running: {} ({}, {:.1}s)\n",
                        running.kind.name(),
                        running.phase.describe(),
                        running.started.elapsed().as_secs_f64()
                    ));
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

// ---- status.json ----------------------------------------------------------------------------------------------

/// Version of the `status.json` layout; bumped when a field changes meaning.
pub const STATUS_FORMAT: u32 = 1;

/// A control operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Commit,
    Merge,
    Discard,
}

impl OperationKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Merge => "merge",
            Self::Discard => "discard",
        }
    }
}

/// The step a running control operation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Uploading this mount's pending files to the staging branch.
    Uploading,
    /// Committing the staging branch (and other clients' changes on the branch).
    Committing,
    /// Merging the staging branch into the mounted branch (pre-merge hooks of that branch run here).
    MergingStaging,
    /// Resetting the staging branch to the new head.
    Resetting,
    /// Merging the mounted branch into the merge target (its pre-merge hooks run here).
    MergingInto,
    /// Resetting the staging branch and dropping local files.
    Discarding,
}

impl Phase {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Uploading => "uploading pending files",
            Self::Committing => "committing",
            Self::MergingStaging => "merging into the branch",
            Self::Resetting => "resetting the staging branch",
            Self::MergingInto => "merging into the target",
            Self::Discarding => "discarding",
        }
    }
}

/// The control operations' part of a branch's write state.
#[derive(Debug, Default)]
pub(crate) struct ControlState {
    /// Operations started so far; each outcome carries the number of its operation.
    sequence: u64,
    running: Option<Running>,
    last: Option<OperationOutcome>,
}

#[derive(Debug)]
struct Running {
    kind: OperationKind,
    phase: Phase,
    started: Instant,
    uploads_at_start: usize,
}

/// How a control operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationOutcome {
    /// The operation's number (see [`BranchReport::sequence`]).
    pub sequence: u64,
    pub kind: OperationKind,
    pub ok: bool,
    /// The errno the `write(2)` returned, by name (`ENODATA`, `EBUSY`, `EPERM`, ...); `None` on success.
    pub errno: Option<String>,
    /// The full result or error, as in `status`: hook name and output, conflicting paths.
    pub message: String,
    /// The new commit: `B`'s head after a commit, the merge commit after a merge.
    pub id: Option<String>,
}

impl OperationOutcome {
    fn success(kind: OperationKind, message: String, id: Option<String>) -> Self {
        Self {
            sequence: 0,
            kind,
            ok: true,
            errno: None,
            message,
            id,
        }
    }

    fn failure(kind: OperationKind, err: &FsError) -> Self {
        Self {
            sequence: 0,
            kind,
            ok: false,
            errno: Some(errno_name(err.errno)),
            message: err.to_string(),
            id: None,
        }
    }
}

/// The symbolic name of the errno values control operations return.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::ENODATA => "ENODATA",
        libc::EBUSY => "EBUSY",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        libc::EIO => "EIO",
        libc::EACCES => "EACCES",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOENT => "ENOENT",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// A control operation in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningOperation {
    pub sequence: u64,
    pub kind: OperationKind,
    pub phase: Phase,
    pub elapsed_ms: u64,
    /// Files waiting for upload when the operation started; `pending_uploads` is how many are left.
    pub uploads_at_start: usize,
}

/// The write state of one branch written through the mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchReport {
    pub repository: String,
    pub branch: String,
    pub staging_branch: String,
    /// Whether the staging branch exists on the server yet (it is created on the first change).
    pub staging_created: bool,
    /// Files whose latest bytes are not on the staging branch yet (open for writing, or a failed upload).
    pub pending_uploads: usize,
    /// Paths written (or renamed, or changed in their attributes) and not committed.
    pub uncommitted_written: usize,
    /// Paths deleted and not committed.
    pub uncommitted_deleted: usize,
    pub local_directories: usize,
    pub last_upload_error: Option<String>,
    /// `B`'s head after this mount's last commit.
    pub last_commit: Option<String>,
    /// Control operations started so far; a client notes it before writing a command and waits for an outcome
    /// with a larger number.
    pub sequence: u64,
    pub running: Option<RunningOperation>,
    pub last_operation: Option<OperationOutcome>,
}

/// The ref `status.json` was read in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefReport {
    pub repository: String,
    /// The name in the tree (or the mount source).
    pub name: String,
    /// `branch`, or `commit` for a pinned ref (tag, commit id, ref expression).
    #[serde(rename = "type")]
    pub kind: String,
    pub head: String,
    /// Whether `commit`, `merge` and `discard` can be written (a branch of a read-write mount).
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    pub memory_bytes: u64,
    pub memory_limit: u64,
    pub hits: u64,
    pub misses: u64,
    /// The on-disk cache's use, when `cache_dir=` is set.
    pub disk_bytes: Option<u64>,
    pub disk_limit: Option<u64>,
}

/// The whole mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountReport {
    /// `lakefs://...` as mounted.
    pub source: String,
    /// The lakeFS API endpoint.
    pub endpoint: String,
    pub mountpoint: String,
    pub read_only: bool,
    pub cache: CacheReport,
    /// Every branch that has a staging branch, uncommitted changes or an operation result in this mount.
    pub branches: Vec<BranchReport>,
}

/// The contents of `.lakefs/status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub format: u32,
    #[serde(rename = "ref")]
    pub reference: RefReport,
    /// This ref's write state; `None` for read-only refs.
    pub branch: Option<BranchReport>,
    pub mount: MountReport,
}

/// `lakefs://...` for a parsed source.
pub fn source_uri(source: &Source) -> String {
    match source {
        Source::Server => "lakefs://".to_string(),
        Source::Repository { repo } => format!("lakefs://{repo}"),
        Source::Ref {
            repo,
            reference,
            prefix,
        } => format!("lakefs://{repo}/{reference}/{prefix}")
            .trim_end_matches('/')
            .to_string(),
    }
}

impl BranchWriter {
    fn start_operation(&self, kind: OperationKind) {
        let mut state = self.state();
        let uploads_at_start = state.pending_uploads();
        let control = &mut state.control;
        control.sequence += 1;
        control.running = Some(Running {
            kind,
            phase: if kind == OperationKind::Discard {
                Phase::Discarding
            } else {
                Phase::Uploading
            },
            started: Instant::now(),
            uploads_at_start,
        });
    }

    fn set_phase(&self, phase: Phase) {
        if let Some(running) = &mut self.state().control.running {
            running.phase = phase;
        }
    }

    fn finish_operation(&self, mut outcome: OperationOutcome) {
        let mut state = self.state();
        outcome.sequence = state.control.sequence;
        state.control.running = None;
        state.control.last = Some(outcome);
    }

    /// Whether `status` has anything to say about this branch beyond its name.
    fn is_active(state: &WriteState) -> bool {
        state.created
            || !state.overlay.is_empty()
            || !state.local_dirs.is_empty()
            || state.control.sequence > 0
            || state.last_upload_error.is_some()
    }

    fn report(&self, state: &WriteState) -> BranchReport {
        let written = state
            .overlay
            .values()
            .filter(|o| matches!(o, Overlay::Staged(_)))
            .count();
        let control = &state.control;
        BranchReport {
            repository: self.repo.clone(),
            branch: self.branch.clone(),
            staging_branch: self.staging.clone(),
            staging_created: state.created,
            pending_uploads: state.pending_uploads(),
            uncommitted_written: written,
            uncommitted_deleted: state.overlay.len() - written,
            local_directories: state.local_dirs.len(),
            last_upload_error: state.last_upload_error.clone(),
            last_commit: state.last_commit.clone(),
            sequence: control.sequence,
            running: control.running.as_ref().map(|r| RunningOperation {
                sequence: control.sequence,
                kind: r.kind,
                phase: r.phase,
                elapsed_ms: u64::try_from(r.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                uploads_at_start: r.uploads_at_start,
            }),
            last_operation: control.last.clone(),
        }
    }
}

impl<L: LakeFs> Filesystem<L> {
    /// Cache use and the write backlog over every branch, for the metrics endpoint.
    pub fn metrics_gauges(&self) -> crate::metrics::MountGauges {
        let writers: Vec<Arc<BranchWriter>> = lock(&self.writers).values().cloned().collect();
        let (mut pending, mut uncommitted) = (0, 0);
        for writer in &writers {
            let state = writer.state();
            pending += state.pending_uploads() as u64;
            uncommitted += state.overlay.len() as u64;
        }
        let (cache_hits, cache_misses) = self.cache.memory.stats();
        crate::metrics::MountGauges {
            cache_hits,
            cache_misses,
            cache_memory_bytes: self.cache.memory.used_bytes(),
            cache_disk_bytes: self.cache.disk.as_ref().map(|d| d.used_bytes()),
            pending_uploads: pending,
            uncommitted_changes: uncommitted,
        }
    }

    /// The contents of `.lakefs/status.json` of `location`, whose head is `head`.
    pub(crate) fn status_json(&self, location: &RefLocation, head: &str) -> String {
        let own = self.writer(location);
        let branch = own.as_ref().map(|w| w.report(&w.state()));
        let mut writers: Vec<Arc<BranchWriter>> = lock(&self.writers).values().cloned().collect();
        writers.sort_by(|a, b| (&a.repo, &a.branch).cmp(&(&b.repo, &b.branch)));
        let branches = writers
            .iter()
            .filter_map(|w| {
                let state = w.state();
                let own = own.as_ref().is_some_and(|o| Arc::ptr_eq(o, w));
                (own || BranchWriter::is_active(&state)).then(|| w.report(&state))
            })
            .collect();
        let (hits, misses) = self.cache.memory.stats();
        let report = StatusReport {
            format: STATUS_FORMAT,
            reference: RefReport {
                repository: location.repo.clone(),
                name: location.name.clone(),
                kind: match location.target {
                    RefTarget::Branch(_) => "branch",
                    RefTarget::Commit(_) => "commit",
                }
                .to_string(),
                head: head.to_string(),
                writable: own.is_some(),
            },
            branch,
            mount: MountReport {
                source: source_uri(&self.source),
                endpoint: self.config.endpoint.clone(),
                mountpoint: self.config.mountpoint.clone(),
                read_only: self.config.read_only,
                cache: CacheReport {
                    memory_bytes: self.cache.memory.used_bytes(),
                    memory_limit: self.cache.memory.max_bytes(),
                    hits,
                    misses,
                    disk_bytes: self.cache.disk.as_ref().map(|d| d.used_bytes()),
                    disk_limit: self.cache.disk.as_ref().map(|_| self.config.cache_size),
                },
                branches,
            },
        };
        // Serialising plain strings and numbers cannot fail.
        let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_commands_parse_text_and_json() {
        assert_eq!(CommitCommand::parse(b"fix data\n").unwrap().0.message, "fix data");
        let json = CommitCommand::parse(br#"{"message":"m","metadata":{"k":"v"}}"#).unwrap();
        assert_eq!(json.0.metadata.get("k").map(String::as_str), Some("v"));
        for bad in [&b""[..], b"  \n", br#"{"message":" "}"#, br#"{"metadata":{}}"#, b"\xff"] {
            assert_eq!(CommitCommand::parse(bad).unwrap_err().errno, libc::EINVAL, "{bad:?}");
        }
    }

    #[test]
    fn merge_commands_parse_text_and_json() {
        let plain = MergeCommand::parse(b"main\n").unwrap();
        assert_eq!((plain.into.as_str(), plain.strategy), ("main", None));
        let json = MergeCommand::parse(br#"{"into":"main","strategy":"dest-wins","message":"m"}"#).unwrap();
        assert_eq!(json.strategy, Some(MergeStrategy::DestWins));
        assert_eq!(json.message.as_deref(), Some("m"));
        for bad in [
            &b"a b"[..],
            b"a/b",
            br#"{"into":"main","strategy":"mine"}"#,
            br#"{"into":""}"#,
        ] {
            assert_eq!(MergeCommand::parse(bad).unwrap_err().errno, libc::EINVAL, "{bad:?}");
        }
    }

    #[test]
    fn sources_render_as_uris() {
        for uri in [
            "lakefs://",
            "lakefs://repo",
            "lakefs://repo/main",
            "lakefs://repo/main/a/b",
        ] {
            assert_eq!(source_uri(&Source::parse(uri).unwrap()), uri);
        }
    }

    #[test]
    fn outcomes_name_their_errno() {
        let err = FsError::lakefs("merge", LakeFsError::PreconditionFailed("hook check failed".into()));
        let outcome = OperationOutcome::failure(OperationKind::Merge, &err);
        assert_eq!(outcome.errno.as_deref(), Some("EPERM"));
        assert!(outcome.message.contains("hook check failed"), "{}", outcome.message);
        assert_eq!(errno_name(libc::ENODATA), "ENODATA");
        assert_eq!(errno_name(9999), "errno 9999");
    }
}
