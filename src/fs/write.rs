//! The write side (DESIGN section 3): a staging branch per mounted branch, an overlay of this mount's own
//! uncommitted changes, local staging files, and the commit/merge/discard operations of `.lakefs/`.
//!
//! For each writable branch `B` the mount keeps one [`BranchWriter`]:
//! - `S = _fuse-<B>-<id>` is created hidden from `B`'s head on the first change that needs the server (an upload,
//!   a delete, a copy); until then `S` may not exist. A restarted mount finds it with `GET branch` and rebuilds
//!   the overlay from the server: the three-dot diff `B...S` (changes committed on `S` by a commit whose merge
//!   then failed) plus `S`'s uncommitted diff.
//! - The overlay maps keys to [`Overlay::Staged`] (the key shows a staged file: local bytes, or the object on `S`)
//!   or [`Overlay::Deleted`] (the key is hidden). Every other key shows `B` as it is now, so other clients' writes
//!   to `B` stay visible. Directories are implied by keys, plus local-only directories made with `mkdir`.
//! - A staged file keeps its id for life; the kernel's inode for it is `NodeKind::StagedFile { id }`, so renames
//!   and writes never change the inode the kernel holds.
//!
//! Data path: writes land in a [`LocalFile`]; `flush` (every `close`) and `fsync` upload a dirty file to `S` and
//! return the upload's error. An upload races no write: a generation counter taken before the upload decides
//! whether the file is still dirty afterwards.
//! Files that may hold bytes the staging branch lacks (open for writing, or a failed upload) are named in the
//! staging journal ([`crate::staging`]); a restarted mount uploads them when it loads the branch's overlay.
//!
//! Operations that change `S` (upload, delete, copy) and the control operations are serialised per branch by an
//! async mutex; plain data writes are not (they only touch the local file).
//!
//! Awkward cases:
//! - Deleting a key that exists on `B` only as another client's *uncommitted* write cannot be staged on `S` (which
//!   was branched from `B`'s head): it is hidden in this mount, and the commit, which first commits `B`'s own
//!   changes, keeps it. docs/SEMANTICS.md says so.
//! - A failed commit or merge changes nothing this mount shows: when `S` was committed but the merge into `B`
//!   failed, the overlay stays, and a retry merges the commit already on `S`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::attr::{object_attr, FileKind};
use super::inode::{ControlFile, Inode, InodeNo, NodeKind, RefLocation, RefTarget};
use super::names::{invalid_name_reason, NAME_MAX};
use super::prefetch::{ObjectReader, ObjectVersion, ReadTuning};
use super::{lock, Entry, Filesystem, FsError, FsResult, OpenFile, OpenMode, Opened};
use crate::lakefs::{
    CommitRequest, DiffKind, LakeFs, LakeFsError, ListRequest, MergeStrategy, ObjectInfo, META_CLIENT_MTIME,
    META_POSIX_PERMISSIONS, META_SYMLINK_TARGET,
};
use crate::staging::{staging_branch_name, LocalFile, PendingUpload, StagingDir};

/// Bytes fetched per request when a remote file is copied into a staging file.
const DOWNLOAD_CHUNK: u64 = 8 * 1024 * 1024;

/// What a key shows in this mount, over the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overlay {
    Staged(u64),
    Deleted,
}

/// One file this mount changed.
#[derive(Debug)]
pub(crate) struct StagedFile {
    pub key: String,
    /// Local bytes; `None` when the content is only on the staging branch (after a restart or a server-side copy).
    pub local: Option<Arc<LocalFile>>,
    /// Size when `local` is `None`.
    pub remote_size: u64,
    pub mtime: SystemTime,
    /// The object's whole user metadata as it will be uploaded (reserved `::lakefs::` keys included).
    pub metadata: BTreeMap<String, String>,
    /// Local bytes or metadata are newer than the staging branch.
    pub dirty: bool,
    /// Bumped on every change, so an upload knows whether it captured the latest state.
    pub generation: u64,
    /// Stats on the staging branch after the last upload or copy.
    pub remote: Option<ObjectInfo>,
    /// Open handles; a file is dropped at commit/discard only when none is left.
    pub handles: u32,
}

impl StagedFile {
    pub fn size(&self) -> u64 {
        self.local.as_ref().map_or(self.remote_size, |l| l.size())
    }

    fn info(&self) -> ObjectInfo {
        let mtime = self
            .mtime
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        ObjectInfo {
            path: self.key.clone(),
            size: self.size(),
            mtime,
            checksum: match (&self.remote, self.dirty) {
                (Some(remote), false) => remote.checksum.clone(),
                _ => String::new(),
            },
            metadata: self.metadata.clone(),
        }
    }

    fn touch(&mut self) {
        self.dirty = true;
        self.generation += 1;
        self.mtime = SystemTime::now();
    }
}

#[derive(Debug, Default)]
pub(crate) struct WriteState {
    loaded: bool,
    /// The staging branch exists on the server.
    created: bool,
    overlay: BTreeMap<String, Overlay>,
    files: HashMap<u64, StagedFile>,
    /// Staged files dropped by a commit or discard, by id: their key now shows the branch.
    retired: HashMap<u64, String>,
    /// Local-only directories (`mkdir`), as prefixes ending in `/`.
    local_dirs: BTreeSet<String>,
    last_operation: Option<String>,
    last_commit: Option<String>,
    last_merge: Option<String>,
    last_upload_error: Option<String>,
}

impl WriteState {
    fn pending_uploads(&self) -> usize {
        self.overlay
            .values()
            .filter(|o| matches!(o, Overlay::Staged(id) if self.files.get(id).is_some_and(|f| f.dirty)))
            .count()
    }

    /// Whether staged file `id` is what its key shows (a commit, discard or replacement ends that).
    fn shows(&self, id: u64) -> bool {
        self.files
            .get(&id)
            .is_some_and(|f| self.overlay.get(&f.key) == Some(&Overlay::Staged(id)))
    }
}

/// What one key shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyView {
    Staged(u64),
    Deleted,
    /// Whatever the branch has.
    Branch,
}

/// The write state of one mounted branch.
#[derive(Debug)]
pub struct BranchWriter {
    pub repo: String,
    pub branch: String,
    /// Name of the staging branch.
    pub staging: String,
    state: Mutex<WriteState>,
    /// Serialises loading the overlay.
    load: tokio::sync::Mutex<()>,
    /// Serialises changes of the staging branch and the control operations.
    operation: tokio::sync::Mutex<()>,
}

impl BranchWriter {
    fn new(repo: &str, branch: &str, staging: String) -> Self {
        Self {
            repo: repo.to_string(),
            branch: branch.to_string(),
            staging,
            state: Mutex::new(WriteState::default()),
            load: tokio::sync::Mutex::new(()),
            operation: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        lock(&self.state)
    }

    pub(crate) fn key_view(&self, key: &str) -> KeyView {
        match self.state().overlay.get(key) {
            Some(Overlay::Staged(id)) => KeyView::Staged(*id),
            Some(Overlay::Deleted) => KeyView::Deleted,
            None => KeyView::Branch,
        }
    }

    /// Some staged file or local directory lies below `prefix` (ending in `/`), or `prefix` is a local directory.
    fn has_local_below(&self, prefix: &str) -> bool {
        let state = self.state();
        let staged = state
            .overlay
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .any(|(_, o)| matches!(o, Overlay::Staged(_)));
        staged
            || state
                .local_dirs
                .range(prefix.to_string()..)
                .next()
                .is_some_and(|d| d.starts_with(prefix))
    }

    fn has_deletes_below(&self, prefix: &str) -> bool {
        self.state()
            .overlay
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .any(|(_, o)| *o == Overlay::Deleted)
    }

    /// Names directly below `prefix` that the overlay adds: staged files, and directories implied by deeper
    /// staged keys or local directories.
    fn overlay_children(&self, prefix: &str) -> (Vec<(String, u64)>, BTreeSet<String>) {
        let state = self.state();
        let mut files = Vec::new();
        let mut dirs = BTreeSet::new();
        for (key, overlay) in state.overlay.range(prefix.to_string()..) {
            let Some(rest) = key.strip_prefix(prefix) else { break };
            let Overlay::Staged(id) = overlay else { continue };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    dirs.insert(dir.to_string());
                }
                None => files.push((rest.to_string(), *id)),
            }
        }
        for dir in state.local_dirs.range(prefix.to_string()..) {
            let Some(rest) = dir.strip_prefix(prefix) else { break };
            if let Some((name, _)) = rest.split_once('/') {
                if !name.is_empty() {
                    dirs.insert(name.to_string());
                }
            }
        }
        (files, dirs)
    }

    fn staged_info(&self, id: u64) -> Option<ObjectInfo> {
        self.state().files.get(&id).map(StagedFile::info)
    }

    /// Number of staged files whose bytes or metadata still have to reach the staging branch.
    pub fn pending_uploads(&self) -> usize {
        self.state().pending_uploads()
    }

    fn record(&self, outcome: String) {
        tracing::info!(branch = self.branch, staging = self.staging, "{outcome}");
        self.state().last_operation = Some(outcome);
    }
}

/// Attribute changes of `setattr`, independent of fuser's types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
}

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

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The staging area of a mount: the directory of local files, created on first use.
pub(crate) fn open_staging(config: &super::FsConfig) -> FsResult<Arc<StagingDir>> {
    let (root, mount_id) = staging_location(config);
    StagingDir::open(&root, &mount_id, config.max_staging)
        .map_err(|e| FsError::staging(format!("opening the staging directory under {}", root.display()), e))
}

/// Root of the staging files and this mount's directory name in it (stable for host + mountpoint).
fn staging_location(config: &super::FsConfig) -> (std::path::PathBuf, String) {
    let root = config
        .staging_dir
        .clone()
        .unwrap_or_else(crate::staging::default_staging_root);
    let mut digest = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut digest, format!("{}\0{}", config.host, config.mountpoint));
    let hash = hex::encode(sha2::Digest::finalize(digest));
    (root, format!("mount-{}", &hash[..16]))
}

/// The staging directory opened at start when an earlier run of this mount left a journal (files to upload).
pub(crate) fn recover_staging(config: &super::FsConfig) -> FsResult<Option<Arc<StagingDir>>> {
    if config.read_only {
        return Ok(None);
    }
    let (root, mount_id) = staging_location(config);
    if StagingDir::has_journal(&root, &mount_id) {
        return open_staging(config).map(Some);
    }
    Ok(None)
}

impl<L: LakeFs> Filesystem<L> {
    /// The writer of `location`'s branch, created on first use; `None` when the location cannot be written.
    pub(crate) fn writer(&self, location: &RefLocation) -> Option<Arc<BranchWriter>> {
        if self.config.read_only {
            return None;
        }
        let RefTarget::Branch(branch) = &location.target else {
            return None;
        };
        let mut writers = lock(&self.writers);
        let writer = writers
            .entry((location.repo.clone(), branch.clone()))
            .or_insert_with(|| {
                let staging = staging_branch_name(&self.config.host, &self.config.mountpoint, &location.repo, branch);
                Arc::new(BranchWriter::new(&location.repo, branch, staging))
            });
        Some(writer.clone())
    }

    /// The writer of `location` with its overlay loaded from the server.
    pub(crate) async fn loaded_writer(&self, location: &RefLocation) -> FsResult<Option<Arc<BranchWriter>>> {
        let Some(writer) = self.writer(location) else {
            return Ok(None);
        };
        if !writer.state().loaded {
            self.load_overlay(&writer).await?;
        }
        Ok(Some(writer))
    }

    /// Find the staging branch on the server and rebuild the overlay from its diffs.
    async fn load_overlay(&self, writer: &BranchWriter) -> FsResult<()> {
        let _guard = writer.load.lock().await;
        if writer.state().loaded {
            return Ok(());
        }
        let (repo, staging) = (&writer.repo, &writer.staging);
        match self.client.get_branch(repo, staging).await {
            Ok(_) => {
                // Committed on S but not merged (a merge that failed), then S's uncommitted changes on top.
                let mut entries = Vec::new();
                let mut after = String::new();
                loop {
                    let page = self
                        .client
                        .diff_refs(repo, &writer.branch, staging, &after)
                        .await
                        .map_err(|e| FsError::lakefs(format!("diff {}...{staging}", writer.branch), e))?;
                    entries.extend(page.items);
                    match page.next_after {
                        Some(next) if next > after => after = next,
                        _ => break,
                    }
                }
                let mut after = String::new();
                loop {
                    let page = self
                        .client
                        .diff_branch(repo, staging, &after)
                        .await
                        .map_err(|e| FsError::lakefs(format!("uncommitted changes of {staging}"), e))?;
                    entries.extend(page.items);
                    match page.next_after {
                        Some(next) if next > after => after = next,
                        _ => break,
                    }
                }
                let mut state = writer.state();
                for entry in entries {
                    match entry.kind {
                        DiffKind::PrefixChanged => {}
                        DiffKind::Removed => {
                            state.overlay.insert(entry.path, Overlay::Deleted);
                        }
                        DiffKind::Added | DiffKind::Changed | DiffKind::Conflict => {
                            let id = self.next_staged.fetch_add(1, Ordering::Relaxed);
                            state.files.insert(
                                id,
                                StagedFile {
                                    key: entry.path.clone(),
                                    local: None,
                                    remote_size: entry.size.unwrap_or(0),
                                    mtime: SystemTime::now(),
                                    metadata: BTreeMap::new(),
                                    dirty: false,
                                    generation: 0,
                                    remote: None,
                                    handles: 0,
                                },
                            );
                            state.overlay.insert(entry.path, Overlay::Staged(id));
                        }
                    }
                }
                state.created = true;
                state.loaded = true;
                let resumed = state.overlay.len();
                drop(state);
                tracing::info!(repo, staging, changes = resumed, "resumed the staging branch");
            }
            Err(LakeFsError::NotFound(_)) => writer.state().loaded = true,
            Err(err) => return Err(FsError::lakefs(format!("staging branch {staging}"), err)),
        }
        self.recover_uploads(writer).await;
        Ok(())
    }

    /// Files an earlier run of this mount wrote but may not have uploaded (it crashed): stage and upload them.
    async fn recover_uploads(&self, writer: &BranchWriter) {
        let Some(staging) = lock(&self.staging).clone() else {
            return;
        };
        for (pending, local) in staging.take_recovered(&writer.repo, &writer.branch) {
            let key = pending.key.clone();
            let id = self.insert_staged(writer, &key, Some(Arc::new(local)), None, pending.metadata, true);
            match self.upload(writer, id).await {
                Ok(()) => tracing::info!(
                    key,
                    staging = writer.staging,
                    "uploaded a file recovered from the journal"
                ),
                Err(err) => tracing::warn!(key, "recovered file not uploaded yet: {err}"),
            }
            self.journal_if_clean(writer, id);
        }
    }

    /// Journal staged file `id` as possibly not uploaded (before anything that may leave it so).
    fn journal(&self, writer: &BranchWriter, id: u64) -> FsResult<()> {
        let Some(staging) = lock(&self.staging).clone() else {
            return Ok(());
        };
        let entry = {
            let state = writer.state();
            state.files.get(&id).and_then(|file| {
                file.local.clone().map(|local| {
                    let pending = PendingUpload {
                        repo: writer.repo.clone(),
                        branch: writer.branch.clone(),
                        staging: writer.staging.clone(),
                        key: file.key.clone(),
                        metadata: file.metadata.clone(),
                    };
                    (local, pending)
                })
            })
        };
        match entry {
            Some((local, pending)) => staging
                .journal_pending(&local, pending)
                .map_err(|e| FsError::staging("writing the staging journal", e)),
            None => Ok(()),
        }
    }

    /// Drop `id` from the journal when its bytes are on the staging branch and no handle can change them.
    fn journal_if_clean(&self, writer: &BranchWriter, id: u64) {
        let Some(staging) = lock(&self.staging).clone() else {
            return;
        };
        let local = {
            let state = writer.state();
            state
                .files
                .get(&id)
                .filter(|f| !f.dirty && f.handles == 0)
                .and_then(|f| f.local.clone())
        };
        if let Some(local) = local {
            staging.journal_done(&local);
        }
    }

    /// The writer for a change inside directory `dir`, or the error that refuses it.
    async fn writable_dir(
        &self,
        dir: &Inode,
        operation: &str,
    ) -> FsResult<(Arc<BranchWriter>, Arc<RefLocation>, String)> {
        match &dir.kind {
            NodeKind::Directory { location, prefix, .. } => match self.loaded_writer(location).await? {
                Some(writer) => Ok((writer, location.clone(), prefix.clone())),
                None => Err(self.write_refusal(dir, operation)),
            },
            _ => Err(self.write_refusal(dir, operation)),
        }
    }

    fn check_name(name: &str) -> FsResult<()> {
        if name.len() > NAME_MAX {
            return Err(FsError::name_too_long(format!("{} bytes", name.len())));
        }
        if let Some(reason) = invalid_name_reason(name) {
            return Err(FsError::invalid(format!("{name:?}: {reason}")));
        }
        Ok(())
    }

    fn forget_negative(&self, parent: InodeNo, name: &str) {
        lock(&self.negative).pop(&(parent, name.to_string()));
    }

    /// Create the staging branch from `B`'s head if it does not exist yet.
    async fn ensure_staging_branch(&self, writer: &BranchWriter) -> FsResult<()> {
        if writer.state().created {
            return Ok(());
        }
        match self
            .client
            .create_branch_from(&writer.repo, &writer.staging, &writer.branch, true)
            .await
        {
            Ok(()) | Err(LakeFsError::Conflict(_)) => {
                tracing::info!(repo = writer.repo, staging = writer.staging, "staging branch ready");
                writer.state().created = true;
                Ok(())
            }
            Err(err) => Err(FsError::lakefs(
                format!("creating staging branch {}", writer.staging),
                err,
            )),
        }
    }

    /// Whether directory `prefix` has anything in this mount's view.
    pub(crate) async fn dir_in_view(
        &self,
        writer: &BranchWriter,
        location: &RefLocation,
        prefix: &str,
    ) -> FsResult<bool> {
        if writer.has_local_below(prefix) {
            return Ok(true);
        }
        let mut request = ListRequest {
            prefix: prefix.to_string(),
            after: String::new(),
            delimited: false,
            amount: crate::lakefs::MAX_PAGE,
        };
        loop {
            let page = self
                .client
                .list_objects(&location.repo, location.read_ref(), &request)
                .await
                .map_err(|e| FsError::lakefs(format!("listing {prefix}"), e))?;
            if page.items.iter().any(|e| writer.key_view(e.path()) == KeyView::Branch) {
                return Ok(true);
            }
            match page.next_after {
                Some(next) if next > request.after => request.after = next,
                _ => return Ok(false),
            }
        }
    }

    /// Every key below `prefix` the mount shows from the branch (not staged, not deleted).
    async fn branch_keys_below(
        &self,
        writer: &BranchWriter,
        location: &RefLocation,
        prefix: &str,
    ) -> FsResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut request = ListRequest {
            prefix: prefix.to_string(),
            after: String::new(),
            delimited: false,
            amount: crate::lakefs::MAX_PAGE,
        };
        loop {
            let page = self
                .client
                .list_objects(&location.repo, location.read_ref(), &request)
                .await
                .map_err(|e| FsError::lakefs(format!("listing {prefix}"), e))?;
            keys.extend(
                page.items
                    .iter()
                    .map(|e| e.path().to_string())
                    .filter(|k| !k.ends_with('/') && writer.key_view(k) == KeyView::Branch),
            );
            match page.next_after {
                Some(next) if next > request.after => request.after = next,
                _ => return Ok(keys),
            }
        }
    }

    pub(crate) fn bind_staged(
        &self,
        parent: InodeNo,
        name: &str,
        location: &Arc<RefLocation>,
        writer: &BranchWriter,
        id: u64,
    ) -> Arc<Inode> {
        let info = writer.staged_info(id);
        let kind = NodeKind::StagedFile {
            location: location.clone(),
            id,
        };
        self.table
            .upsert(parent, name, kind, info, self.validity(Some(location)))
    }

    /// Resolve `name` in an object directory through the overlay. `None`: the overlay has nothing to say, ask
    /// the branch (and check with [`Self::view_allows_dir`] when the answer is a directory).
    pub(crate) async fn resolve_in_overlay(
        &self,
        dir: &Inode,
        location: &Arc<RefLocation>,
        writer: &BranchWriter,
        key: &str,
        name: &str,
    ) -> FsResult<Option<Arc<Inode>>> {
        let sub_prefix = format!("{key}/");
        match writer.key_view(key) {
            KeyView::Staged(id) => {
                if writer
                    .state()
                    .files
                    .get(&id)
                    .is_some_and(|f| f.local.is_none() && f.remote.is_none())
                {
                    // Resumed from the server: fetch the stats (size, metadata) once.
                    if let Ok(info) = self.client.stat_object(&writer.repo, &writer.staging, key).await {
                        if let Some(file) = writer.state().files.get_mut(&id) {
                            file.remote_size = info.size;
                            file.metadata = info.metadata.clone();
                            file.mtime = UNIX_EPOCH + Duration::from_secs(info.mtime.max(0).unsigned_abs());
                            file.remote = Some(info);
                        }
                    }
                }
                return Ok(Some(self.bind_staged(dir.ino, name, location, writer, id)));
            }
            KeyView::Deleted => {
                if self.dir_in_view(writer, location, &sub_prefix).await? {
                    return Ok(Some(self.bind_directory(dir.ino, name, location, sub_prefix)));
                }
                return Err(FsError::not_found(format!("{key} was deleted in this mount")));
            }
            KeyView::Branch => {}
        }
        if writer.has_local_below(&sub_prefix) {
            return Ok(Some(self.bind_directory(dir.ino, name, location, sub_prefix)));
        }
        Ok(None)
    }

    /// A directory the branch shows may be empty in this mount's view when its keys were deleted here.
    pub(crate) async fn view_allows_dir(
        &self,
        writer: &BranchWriter,
        location: &RefLocation,
        prefix: &str,
    ) -> FsResult<bool> {
        if !writer.has_deletes_below(prefix) {
            return Ok(true);
        }
        self.dir_in_view(writer, location, prefix).await
    }

    fn bind_directory(&self, parent: InodeNo, name: &str, location: &Arc<RefLocation>, prefix: String) -> Arc<Inode> {
        let kind = NodeKind::Directory {
            location: location.clone(),
            prefix,
            ref_root: false,
        };
        self.table
            .upsert(parent, name, kind, None, self.validity(Some(location)))
    }

    /// Apply the overlay to the children of directory `prefix` as the branch lists them: drop deleted and
    /// replaced objects, drop directories that are empty in this view, add staged files and local directories.
    pub(crate) async fn overlay_listing(
        &self,
        dir: &Inode,
        location: &Arc<RefLocation>,
        writer: &BranchWriter,
        prefix: &str,
        listed: Vec<(String, Arc<Inode>)>,
    ) -> FsResult<Vec<Arc<Inode>>> {
        let (files, dirs) = writer.overlay_children(prefix);
        let mut out: BTreeMap<String, Arc<Inode>> = BTreeMap::new();
        for (name, inode) in listed {
            let keep = match &inode.kind {
                NodeKind::Directory { prefix: sub, .. } => self.view_allows_dir(writer, location, sub).await?,
                _ => writer.key_view(&format!("{prefix}{name}")) == KeyView::Branch,
            };
            if keep {
                out.insert(name, inode);
            } else {
                self.table.unbind(dir.ino, &name);
            }
        }
        for name in dirs {
            if !out.get(&name).is_some_and(|i| i.kind.is_dir()) {
                let inode = self.bind_directory(dir.ino, &name, location, format!("{prefix}{name}/"));
                out.insert(name, inode);
            }
        }
        for (name, id) in files {
            if out.get(&name).is_some_and(|i| i.kind.is_dir()) {
                // A directory wins over a file of the same name, as in listings of the branch.
                continue;
            }
            let inode = self.bind_staged(dir.ino, &name, location, writer, id);
            out.insert(name, inode);
        }
        Ok(out.into_values().collect())
    }

    /// Attributes of a staged file: live from its writer, else (retired by a commit or discard) as last seen.
    pub(crate) fn staged_attr(&self, inode: &Inode, location: &RefLocation, id: u64) -> super::Attr {
        let info = self
            .writer(location)
            .and_then(|w| w.staged_info(id))
            .or_else(|| inode.state().object.clone())
            .unwrap_or_else(|| ObjectInfo {
                path: String::new(),
                size: 0,
                mtime: unix_seconds(SystemTime::now()),
                checksum: String::new(),
                metadata: BTreeMap::new(),
            });
        let kind = if info.metadata.contains_key(META_SYMLINK_TARGET) {
            FileKind::Symlink
        } else {
            FileKind::RegularFile
        };
        inode.state().object = Some(info.clone());
        object_attr(inode.ino, kind, &info, &self.config)
    }

    /// Whether a staged inode still names a live staged file (a commit or discard retires them).
    pub(crate) fn staged_is_live(&self, location: &RefLocation, id: u64) -> bool {
        self.writer(location).is_some_and(|w| w.state().shows(id))
    }

    /// A new staged file for `key` with `local` bytes, shown at `key` from now on. Replaces whatever the key
    /// showed (a staged file it replaces is dropped once no handle holds it).
    fn insert_staged(
        &self,
        writer: &BranchWriter,
        key: &str,
        local: Option<Arc<LocalFile>>,
        remote: Option<ObjectInfo>,
        metadata: BTreeMap<String, String>,
        dirty: bool,
    ) -> u64 {
        let id = self.next_staged.fetch_add(1, Ordering::Relaxed);
        let mut state = writer.state();
        let remote_size = remote.as_ref().map_or(0, |r| r.size);
        state.files.insert(
            id,
            StagedFile {
                key: key.to_string(),
                local,
                remote_size,
                mtime: SystemTime::now(),
                metadata,
                dirty,
                generation: 1,
                remote,
                handles: 0,
            },
        );
        if let Some(Overlay::Staged(old)) = state.overlay.insert(key.to_string(), Overlay::Staged(id)) {
            drop_if_unused(&mut state, old);
        }
        id
    }

    /// Copy `read_ref:key` (`size` bytes) into a new local staging file.
    async fn download(&self, repo: &str, read_ref: &str, key: &str, size: u64) -> FsResult<Arc<LocalFile>> {
        let staging = self.staging()?;
        let local = staging
            .create()
            .map_err(|e| FsError::staging(format!("staging {key}"), e))?;
        let mut offset = 0;
        while offset < size {
            let end = (offset + DOWNLOAD_CHUNK).min(size);
            let bytes = self
                .client
                .get_object_range(repo, read_ref, key, offset..end)
                .await
                .map_err(|e| FsError::lakefs(format!("copying {key} for writing"), e))?;
            if bytes.data.is_empty() {
                return Err(FsError::stale(format!("{key} became shorter while it was copied")));
            }
            local
                .write_at(offset, &bytes.data)
                .map_err(|e| FsError::staging(format!("staging {key}"), e))?;
            offset += bytes.data.len() as u64;
        }
        Ok(Arc::new(local))
    }

    fn staging(&self) -> FsResult<Arc<StagingDir>> {
        let mut staging = lock(&self.staging);
        if let Some(dir) = staging.as_ref() {
            return Ok(dir.clone());
        }
        let dir = open_staging(&self.config)?;
        *staging = Some(dir.clone());
        Ok(dir)
    }

    fn new_local(&self, key: &str) -> FsResult<Arc<LocalFile>> {
        self.staging()?
            .create()
            .map(Arc::new)
            .map_err(|e| FsError::staging(format!("staging {key}"), e))
    }

    /// Make staged file `id` have local bytes (downloading them from the staging branch unless `truncate`).
    async fn materialize(&self, writer: &BranchWriter, id: u64, truncate: bool) -> FsResult<Arc<LocalFile>> {
        let (key, size) = {
            let state = writer.state();
            let file = state
                .files
                .get(&id)
                .ok_or_else(|| FsError::stale(format!("staged file {id} is gone")))?;
            if let Some(local) = &file.local {
                let local = local.clone();
                drop(state);
                if truncate && local.size() > 0 {
                    local.set_len(0).map_err(|e| FsError::staging("truncating", e))?;
                    if let Some(file) = writer.state().files.get_mut(&id) {
                        file.touch();
                    }
                }
                return Ok(local);
            }
            (file.key.clone(), file.remote_size)
        };
        let local = if truncate {
            self.new_local(&key)?
        } else {
            self.download(&writer.repo, &writer.staging, &key, size).await?
        };
        let mut state = writer.state();
        let file = state
            .files
            .get_mut(&id)
            .ok_or_else(|| FsError::stale(format!("staged file {id} is gone")))?;
        file.local = Some(local.clone());
        if truncate {
            file.touch();
        }
        Ok(local)
    }

    /// The staged file behind inode `inode` for a change, staging a branch object (or a retired staged file) first.
    /// Returns the writer, the id and the inode now bound to the file.
    async fn stage_inode(&self, inode: &Arc<Inode>, truncate: bool) -> FsResult<(Arc<BranchWriter>, u64)> {
        let (location, key) = match &inode.kind {
            NodeKind::StagedFile { location, id } => {
                let writer = self
                    .loaded_writer(location)
                    .await?
                    .ok_or_else(|| self.write_refusal(inode, "write"))?;
                if self.staged_is_live(location, *id) {
                    return Ok((writer, *id));
                }
                let key = writer.state().retired.get(id).cloned();
                match key {
                    Some(key) => (location.clone(), key),
                    None => return Err(FsError::stale(format!("staged file {id} is gone"))),
                }
            }
            NodeKind::File { location, key, .. } | NodeKind::Symlink { location, key, .. } => {
                (location.clone(), key.clone())
            }
            _ => return Err(self.write_refusal(inode, "write")),
        };
        let writer = self
            .loaded_writer(&location)
            .await?
            .ok_or_else(|| self.write_refusal(inode, "write"))?;
        let current = self
            .client
            .stat_object(&location.repo, location.read_ref(), &key)
            .await
            .map_err(|e| FsError::lakefs(format!("stat {key}"), e))?;
        let local = if truncate {
            self.new_local(&key)?
        } else {
            self.download(&location.repo, location.read_ref(), &key, current.size)
                .await?
        };
        let id = self.insert_staged(&writer, &key, Some(local), None, current.metadata.clone(), truncate);
        if let Some(file) = writer.state().files.get_mut(&id) {
            file.mtime = UNIX_EPOCH + Duration::from_secs(current.mtime.max(0).unsigned_abs());
        }
        let kind = NodeKind::StagedFile {
            location: location.clone(),
            id,
        };
        self.table.rebind(inode.ino, inode.parent, &inode.name, kind);
        Ok((writer, id))
    }

    /// Upload staged file `id` to the staging branch if it is dirty. Errors are recorded for `status`.
    pub(crate) async fn upload(&self, writer: &BranchWriter, id: u64) -> FsResult<()> {
        let snapshot = {
            let state = writer.state();
            match state.files.get(&id) {
                Some(file) if file.dirty && state.overlay.get(&file.key) == Some(&Overlay::Staged(id)) => Some((
                    file.key.clone(),
                    file.local.clone(),
                    file.metadata.clone(),
                    file.generation,
                )),
                _ => None,
            }
        };
        let Some((key, local, metadata, generation)) = snapshot else {
            return Ok(());
        };
        let result = async {
            self.ensure_staging_branch(writer).await?;
            let local = local.ok_or_else(|| FsError::io(format!("{key}: no local bytes to upload")))?;
            local
                .sync()
                .map_err(|e| FsError::staging(format!("syncing {key}"), e))?;
            self.client
                .upload_file(&writer.repo, &writer.staging, &key, local.path(), &metadata)
                .await
                .map_err(|e| FsError::lakefs(format!("uploading {key} to {}", writer.staging), e))
        }
        .await;
        let mut state = writer.state();
        match result {
            Ok(info) => {
                if let Some(file) = state.files.get_mut(&id) {
                    if file.generation == generation {
                        file.dirty = false;
                    }
                    file.remote = Some(info);
                }
                state.last_upload_error = None;
                drop(state);
                self.journal_if_clean(writer, id);
                Ok(())
            }
            Err(err) => {
                state.last_upload_error = Some(format!("{err}"));
                Err(err)
            }
        }
    }

    /// Upload every dirty staged file of `writer`.
    async fn upload_all(&self, writer: &BranchWriter) -> FsResult<()> {
        let ids: Vec<u64> = {
            let state = writer.state();
            state
                .overlay
                .values()
                .filter_map(|o| match o {
                    Overlay::Staged(id) if state.files.get(id).is_some_and(|f| f.dirty) => Some(*id),
                    _ => None,
                })
                .collect()
        };
        for id in ids {
            self.upload(writer, id).await?;
        }
        Ok(())
    }

    // ---- POSIX calls ----------------------------------------------------------------------------------------

    /// Create and open a regular file.
    pub async fn create(&self, parent: InodeNo, name: &str, mode: u32) -> FsResult<(Entry, Opened)> {
        Self::check_name(name)?;
        let dir = self.inode(parent)?;
        let (writer, location, prefix) = self.writable_dir(&dir, "create").await?;
        let key = format!("{prefix}{name}");
        if writer.has_local_below(&format!("{key}/")) {
            return Err(FsError::is_a_directory(key));
        }
        let local = self.new_local(&key)?;
        let metadata = self.permissions_metadata(mode, None, None);
        let id = self.insert_staged(&writer, &key, Some(local.clone()), None, metadata, true);
        self.forget_negative(parent, name);
        let inode = self.bind_staged(parent, name, &location, &writer, id);
        self.table.remember(&inode);
        let opened = self.open_staged_handle(&writer, id, Some(local), true)?;
        Ok((self.entry_of(&inode), opened))
    }

    /// `::lakefs::posix-permissions` for a mode that differs from the mount's default (none otherwise).
    fn permissions_metadata(&self, mode: u32, uid: Option<u32>, gid: Option<u32>) -> BTreeMap<String, String> {
        let mut metadata = BTreeMap::new();
        let perm = mode & 0o7777;
        if perm != u32::from(self.config.file_mode) || uid.is_some() || gid.is_some() {
            metadata.insert(
                META_POSIX_PERMISSIONS.to_string(),
                serde_json::json!({
                    "UID": uid.unwrap_or(self.config.uid),
                    "GID": gid.unwrap_or(self.config.gid),
                    "Mode": libc::S_IFREG | perm,
                })
                .to_string(),
            );
        }
        metadata
    }

    fn open_staged_handle(
        &self,
        writer: &Arc<BranchWriter>,
        id: u64,
        local: Option<Arc<LocalFile>>,
        write: bool,
    ) -> FsResult<Opened> {
        if write {
            self.journal(writer, id)?;
        }
        if let Some(file) = writer.state().files.get_mut(&id) {
            file.handles += 1;
        }
        let fh = self.new_handle();
        lock(&self.files).insert(
            fh,
            Arc::new(OpenFile::Staged {
                writer: writer.clone(),
                id,
                local,
                write,
            }),
        );
        Ok(Opened {
            fh,
            direct_io: false,
            keep_cache: false,
        })
    }

    /// `open` of a file for writing (or with `O_TRUNC`): stage it, downloading its bytes unless truncated.
    pub(crate) async fn open_for_write(&self, inode: &Arc<Inode>, mode: OpenMode) -> FsResult<Opened> {
        if let NodeKind::ControlFile { location, file } = &inode.kind {
            if !file.is_writable() {
                return Err(FsError::access_denied(format!("{} is read-only", file.name())));
            }
            if self.writer(location).is_none() {
                return Err(self.write_refusal(inode, "control operation"));
            }
            let fh = self.new_handle();
            lock(&self.files).insert(
                fh,
                Arc::new(OpenFile::ControlWrite {
                    location: location.clone(),
                    file: *file,
                }),
            );
            return Ok(Opened {
                fh,
                direct_io: true,
                keep_cache: false,
            });
        }
        let (writer, id) = self.stage_inode(inode, mode.truncate).await?;
        let local = self.materialize(&writer, id, mode.truncate).await?;
        self.open_staged_handle(&writer, id, Some(local), mode.write)
    }

    /// `open` of a staged file for reading.
    pub(crate) async fn open_staged_read(
        &self,
        inode: &Arc<Inode>,
        location: &Arc<RefLocation>,
        id: u64,
    ) -> FsResult<Opened> {
        let writer = self.writer(location);
        let live = writer.as_ref().filter(|_| self.staged_is_live(location, id));
        if let Some(writer) = live {
            let (local, remote, key) = {
                let state = writer.state();
                let file = state
                    .files
                    .get(&id)
                    .ok_or_else(|| FsError::stale(format!("staged file {id} is gone")))?;
                (file.local.clone(), file.remote.clone(), file.key.clone())
            };
            if let Some(local) = local {
                return self.open_staged_handle(writer, id, Some(local), false);
            }
            let object = match remote {
                Some(remote) => remote,
                None => self
                    .client
                    .stat_object(&writer.repo, &writer.staging, &key)
                    .await
                    .map_err(|e| FsError::lakefs(format!("stat {key} on {}", writer.staging), e))?,
            };
            return Ok(self.object_reader(&writer.repo, &writer.staging, &key, &object));
        }
        // Retired: the key shows the branch now.
        let key = writer
            .as_ref()
            .and_then(|w| w.state().retired.get(&id).cloned())
            .or_else(|| inode.state().object.as_ref().map(|o| o.path.clone()))
            .ok_or_else(|| FsError::stale(format!("staged file {id} is gone")))?;
        let object = self
            .client
            .stat_object(&location.repo, location.read_ref(), &key)
            .await
            .map_err(|e| FsError::lakefs(format!("stat {key}"), e).with_errno(libc::ESTALE))?;
        Ok(self.object_reader(&location.repo, location.read_ref(), &key, &object))
    }

    fn object_reader(&self, repo: &str, read_ref: &str, key: &str, object: &ObjectInfo) -> Opened {
        let version = ObjectVersion {
            repo: repo.to_string(),
            read_ref: read_ref.to_string(),
            key: key.to_string(),
            checksum: object.checksum.clone(),
            size: object.size,
        };
        let tuning = ReadTuning {
            block_size: self.config.block_size,
            initial_window: self.config.initial_read_window,
            max_window: self.config.max_read_window,
        };
        let reader = ObjectReader::new(self.client.clone(), self.cache.clone(), version, tuning);
        let fh = self.new_handle();
        lock(&self.files).insert(fh, Arc::new(OpenFile::Object(reader)));
        Opened {
            fh,
            direct_io: false,
            keep_cache: false,
        }
    }

    /// `write(2)`: into the staging file, or a control operation.
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let file = lock(&self.files)
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::bad_handle(format!("file handle {fh}")))?;
        let written = u32::try_from(data.len()).map_err(|_| FsError::invalid("write too large"))?;
        match &*file {
            OpenFile::Staged {
                writer,
                id,
                local: Some(local),
                write: true,
            } => {
                local
                    .write_at(offset, data)
                    .map_err(|e| FsError::staging("writing", e))?;
                if let Some(file) = writer.state().files.get_mut(id) {
                    file.touch();
                }
                Ok(written)
            }
            OpenFile::ControlWrite { location, file } => {
                self.control_operation(location, *file, data).await?;
                Ok(written)
            }
            _ => Err(FsError::bad_handle(format!("file handle {fh} is not open for writing"))),
        }
    }

    /// `flush` (every `close`) and `fsync`: upload the file if it changed. The upload's error is the caller's.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let file = lock(&self.files).get(&fh).cloned();
        if let Some(file) = file {
            if let OpenFile::Staged {
                writer,
                id,
                write: true,
                ..
            } = &*file
            {
                let _guard = writer.operation.lock().await;
                return self.upload(writer, *id).await;
            }
        }
        Ok(())
    }

    /// Bookkeeping when a staged handle closes.
    pub(crate) fn release_staged(&self, writer: &BranchWriter, id: u64) {
        let mut state = writer.state();
        if let Some(file) = state.files.get_mut(&id) {
            file.handles = file.handles.saturating_sub(1);
        }
        if !state.shows(id) {
            drop_if_unused(&mut state, id);
        }
        drop(state);
        self.journal_if_clean(writer, id);
    }

    pub async fn setattr(&self, ino: InodeNo, change: SetAttr) -> FsResult<Entry> {
        let inode = self.inode(ino)?;
        match &inode.kind {
            NodeKind::ControlFile { file, .. } if file.is_writable() => return Ok(self.entry_of(&inode)),
            kind if kind.is_dir() => {
                // Directories have no object to carry attributes; accept and keep the defaults.
                if let Some(location) = kind.location() {
                    if self.writer(location).is_none() {
                        return Err(self.write_refusal(&inode, "setattr"));
                    }
                }
                return Ok(self.entry_of(&inode));
            }
            NodeKind::File { .. } | NodeKind::Symlink { .. } | NodeKind::StagedFile { .. } => {}
            _ => return Err(self.write_refusal(&inode, "setattr")),
        }
        if change == SetAttr::default() {
            return self.getattr(ino).await;
        }
        let truncate_all = change.size == Some(0);
        let (writer, id) = self.stage_inode(&inode, truncate_all).await?;
        let local = self.materialize(&writer, id, truncate_all).await?;
        let handles = {
            if let Some(size) = change.size {
                local.set_len(size).map_err(|e| FsError::staging("truncating", e))?;
            }
            let mut state = writer.state();
            let file = state
                .files
                .get_mut(&id)
                .ok_or_else(|| FsError::stale(format!("staged file {id} is gone")))?;
            file.touch();
            if change.mode.is_some() || change.uid.is_some() || change.gid.is_some() {
                let current: serde_json::Value = file
                    .metadata
                    .get(META_POSIX_PERMISSIONS)
                    .and_then(|v| serde_json::from_str(v).ok())
                    .unwrap_or_default();
                let field = |name: &str, default: u32| {
                    current
                        .get(name)
                        .and_then(serde_json::Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or(default)
                };
                let mode = change
                    .mode
                    .unwrap_or_else(|| field("Mode", libc::S_IFREG | u32::from(self.config.file_mode)));
                let value = serde_json::json!({
                    "UID": change.uid.unwrap_or_else(|| field("UID", self.config.uid)),
                    "GID": change.gid.unwrap_or_else(|| field("GID", self.config.gid)),
                    "Mode": libc::S_IFREG | (mode & 0o7777),
                });
                file.metadata
                    .insert(META_POSIX_PERMISSIONS.to_string(), value.to_string());
            }
            if let Some(mtime) = change.mtime {
                file.mtime = mtime;
                file.metadata
                    .insert(META_CLIENT_MTIME.to_string(), unix_seconds(mtime).to_string());
            }
            file.handles
        };
        if handles == 0 {
            // No close will follow: upload now so the change is on the staging branch when this call returns.
            let _guard = writer.operation.lock().await;
            self.journal(&writer, id)?;
            self.upload(&writer, id).await?;
        }
        let inode = self.inode(ino)?;
        Ok(self.entry_of(&inode))
    }

    pub async fn mkdir(&self, parent: InodeNo, name: &str) -> FsResult<Entry> {
        Self::check_name(name)?;
        let dir = self.inode(parent)?;
        let (writer, location, prefix) = self.writable_dir(&dir, "mkdir").await?;
        if let Ok(existing) = self.lookup(parent, name).await {
            self.table.forget(existing.attr.ino, 1);
            return Err(FsError::exists(format!("{prefix}{name}")));
        }
        let sub = format!("{prefix}{name}/");
        writer.state().local_dirs.insert(sub.clone());
        self.forget_negative(parent, name);
        let inode = self.bind_directory(parent, name, &location, sub);
        self.table.remember(&inode);
        Ok(self.entry_of(&inode))
    }

    pub async fn symlink(&self, parent: InodeNo, name: &str, target: &str) -> FsResult<Entry> {
        Self::check_name(name)?;
        let dir = self.inode(parent)?;
        let (writer, location, prefix) = self.writable_dir(&dir, "symlink").await?;
        let key = format!("{prefix}{name}");
        let local = self.new_local(&key)?;
        let mut metadata = BTreeMap::new();
        metadata.insert(META_SYMLINK_TARGET.to_string(), target.to_string());
        let id = self.insert_staged(&writer, &key, Some(local), None, metadata, true);
        {
            let _guard = writer.operation.lock().await;
            self.journal(&writer, id)?;
            self.upload(&writer, id).await?;
        }
        self.forget_negative(parent, name);
        let inode = self.bind_staged(parent, name, &location, &writer, id);
        self.table.remember(&inode);
        Ok(self.entry_of(&inode))
    }

    pub(crate) fn staged_symlink_target(&self, location: &RefLocation, id: u64, inode: &Inode) -> FsResult<String> {
        self.writer(location)
            .and_then(|w| w.staged_info(id))
            .or_else(|| inode.state().object.clone())
            .and_then(|info| info.metadata.get(META_SYMLINK_TARGET).cloned())
            .ok_or_else(|| FsError::invalid(format!("inode {} is not a symlink", inode.ino)))
    }

    pub async fn unlink(&self, parent: InodeNo, name: &str) -> FsResult<()> {
        let dir = self.inode(parent)?;
        let (writer, _location, prefix) = self.writable_dir(&dir, "unlink").await?;
        let entry = self.lookup(parent, name).await?;
        if entry.attr.kind == FileKind::Directory {
            return Err(FsError::is_a_directory(format!("{prefix}{name}")));
        }
        // The lookup above handed the kernel a reference it does not know about.
        let key = format!("{prefix}{name}");
        let _guard = writer.operation.lock().await;
        self.delete_key(&writer, &key).await?;
        if let Some(child) = self.table.child(parent, name) {
            self.table.forget(child.ino, 1);
        }
        self.table.unbind(parent, name);
        Ok(())
    }

    /// Hide `key` in this mount and stage its deletion on the staging branch.
    async fn delete_key(&self, writer: &BranchWriter, key: &str) -> FsResult<()> {
        self.ensure_staging_branch(writer).await?;
        self.client
            .remove_object(&writer.repo, &writer.staging, key)
            .await
            .map_err(|e| FsError::lakefs(format!("deleting {key} on {}", writer.staging), e))?;
        let mut state = writer.state();
        if let Some(Overlay::Staged(old)) = state.overlay.insert(key.to_string(), Overlay::Deleted) {
            drop_if_unused(&mut state, old);
        }
        keep_parent_dir(&mut state, key);
        Ok(())
    }

    pub async fn rmdir(&self, parent: InodeNo, name: &str) -> FsResult<()> {
        let dir = self.inode(parent)?;
        let (writer, location, prefix) = self.writable_dir(&dir, "rmdir").await?;
        let sub = format!("{prefix}{name}/");
        let entry = self.lookup(parent, name).await?;
        if let Some(child) = self.table.child(parent, name) {
            self.table.forget(child.ino, 1);
        }
        if entry.attr.kind != FileKind::Directory {
            return Err(FsError::not_a_directory(sub));
        }
        let nonempty = {
            let state = writer.state();
            state
                .overlay
                .range(sub.clone()..)
                .take_while(|(k, _)| k.starts_with(&sub))
                .any(|(_, o)| matches!(o, Overlay::Staged(_)))
                || state
                    .local_dirs
                    .range(sub.clone()..)
                    .any(|d| d.starts_with(&sub) && *d != sub)
        };
        if nonempty || !self.branch_keys_below(&writer, &location, &sub).await?.is_empty() {
            return Err(FsError::not_empty(sub));
        }
        writer.state().local_dirs.remove(&sub);
        self.table.unbind(parent, name);
        Ok(())
    }

    /// `rename(2)` within one branch: files move by server-side copy (or by re-keying a staged file), directories
    /// key by key. From this mount's view the move is atomic: the overlay changes under one lock at the end of
    /// each key's move, and nothing reaches the branch before a commit.
    pub async fn rename(
        &self,
        parent: InodeNo,
        name: &str,
        new_parent: InodeNo,
        new_name: &str,
        no_replace: bool,
    ) -> FsResult<()> {
        Self::check_name(new_name)?;
        let src_dir = self.inode(parent)?;
        let dst_dir = self.inode(new_parent)?;
        let (writer, location, src_prefix) = self.writable_dir(&src_dir, "rename").await?;
        let (dst_writer, _, dst_prefix) = self.writable_dir(&dst_dir, "rename").await?;
        if !Arc::ptr_eq(&writer, &dst_writer) {
            return Err(FsError::cross_device("rename across branches"));
        }
        let source = self.lookup(parent, name).await?;
        let source_inode = self.inode(source.attr.ino)?;
        self.table.forget(source.attr.ino, 1);
        let target = self.lookup(new_parent, new_name).await.ok();
        if let Some(target) = &target {
            self.table.forget(target.attr.ino, 1);
            if no_replace {
                return Err(FsError::exists(format!("{dst_prefix}{new_name}")));
            }
            if target.attr.ino == source.attr.ino {
                return Ok(());
            }
        }
        let src_key = format!("{src_prefix}{name}");
        let dst_key = format!("{dst_prefix}{new_name}");
        let _guard = writer.operation.lock().await;
        if source.attr.kind == FileKind::Directory {
            let (src, dst) = (format!("{src_key}/"), format!("{dst_key}/"));
            if dst.starts_with(&src) {
                return Err(FsError::invalid("cannot move a directory into itself"));
            }
            if let Some(target) = &target {
                if target.attr.kind != FileKind::Directory {
                    return Err(FsError::not_a_directory(dst_key));
                }
                if self.dir_in_view(&writer, &location, &dst).await? {
                    return Err(FsError::not_empty(dst_key));
                }
            }
            let staged: Vec<String> = {
                let state = writer.state();
                state
                    .overlay
                    .range(src.clone()..)
                    .take_while(|(k, _)| k.starts_with(&src))
                    .filter(|(_, o)| matches!(o, Overlay::Staged(_)))
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            let from_branch = self.branch_keys_below(&writer, &location, &src).await?;
            for key in staged.into_iter().chain(from_branch) {
                let moved = format!("{dst}{}", &key[src.len()..]);
                self.move_key(&writer, &location, &key, &moved).await?;
            }
            {
                let mut state = writer.state();
                let local: Vec<String> = state
                    .local_dirs
                    .range(src.clone()..)
                    .take_while(|d| d.starts_with(&src))
                    .cloned()
                    .collect();
                for dir in local {
                    state.local_dirs.remove(&dir);
                    state.local_dirs.insert(format!("{dst}{}", &dir[src.len()..]));
                }
                // An empty directory moved stays visible at its new name.
                state.local_dirs.insert(dst.clone());
            }
            self.table.unbind(new_parent, new_name);
            let kind = NodeKind::Directory {
                location: location.clone(),
                prefix: dst.clone(),
                ref_root: false,
            };
            self.table.rebind(source_inode.ino, new_parent, new_name, kind);
            self.rebind_below(&writer, &location, source_inode.ino, &dst);
        } else {
            if target.as_ref().is_some_and(|t| t.attr.kind == FileKind::Directory) {
                return Err(FsError::is_a_directory(dst_key));
            }
            let id = self.move_key(&writer, &location, &src_key, &dst_key).await?;
            self.table.unbind(new_parent, new_name);
            let kind = NodeKind::StagedFile {
                location: location.clone(),
                id,
            };
            self.table.rebind(source_inode.ino, new_parent, new_name, kind);
        }
        self.forget_negative(new_parent, new_name);
        self.forget_negative(parent, name);
        Ok(())
    }

    /// Move one key; returns the id of the staged file now at `dst`.
    async fn move_key(&self, writer: &BranchWriter, location: &RefLocation, src: &str, dst: &str) -> FsResult<u64> {
        self.ensure_staging_branch(writer).await?;
        let (repo, staging) = (&writer.repo, &writer.staging);
        match writer.key_view(src) {
            KeyView::Staged(id) => {
                let (dirty, uploaded) = {
                    let state = writer.state();
                    let file = state
                        .files
                        .get(&id)
                        .ok_or_else(|| FsError::stale(format!("staged file {id} is gone")))?;
                    (file.dirty, file.remote.is_some() || file.local.is_none())
                };
                let copied = if !dirty && uploaded {
                    Some(
                        self.client
                            .copy_object(repo, staging, staging, src, dst)
                            .await
                            .map_err(|e| FsError::lakefs(format!("copying {src} to {dst}"), e))?,
                    )
                } else {
                    None
                };
                self.client
                    .remove_object(repo, staging, src)
                    .await
                    .map_err(|e| FsError::lakefs(format!("deleting {src}"), e))?;
                let handles = {
                    let mut state = writer.state();
                    if let Some(Overlay::Staged(old)) = state.overlay.insert(dst.to_string(), Overlay::Staged(id)) {
                        if old != id {
                            drop_if_unused(&mut state, old);
                        }
                    }
                    state.overlay.insert(src.to_string(), Overlay::Deleted);
                    keep_parent_dir(&mut state, src);
                    let file = state
                        .files
                        .get_mut(&id)
                        .ok_or_else(|| FsError::stale(format!("staged file {id} is gone")))?;
                    file.key = dst.to_string();
                    match copied {
                        Some(info) => {
                            file.remote_size = info.size;
                            file.remote = Some(info);
                        }
                        None => file.touch(),
                    }
                    file.handles
                };
                if handles == 0 {
                    self.journal(writer, id)?;
                    self.upload(writer, id).await?;
                }
                Ok(id)
            }
            KeyView::Deleted => Err(FsError::not_found(src.to_string())),
            KeyView::Branch => {
                let info = self
                    .client
                    .copy_object(repo, staging, location.read_ref(), src, dst)
                    .await
                    .map_err(|e| FsError::lakefs(format!("copying {src} to {dst}"), e))?;
                self.client
                    .remove_object(repo, staging, src)
                    .await
                    .map_err(|e| FsError::lakefs(format!("deleting {src}"), e))?;
                let metadata = info.metadata.clone();
                let id = self.insert_staged(writer, dst, None, Some(info), metadata, false);
                let mut state = writer.state();
                state.overlay.insert(src.to_string(), Overlay::Deleted);
                keep_parent_dir(&mut state, src);
                Ok(id)
            }
        }
    }

    /// After a directory moved, give every inode below it the identity it has at its new place.
    fn rebind_below(&self, writer: &BranchWriter, location: &Arc<RefLocation>, dir: InodeNo, prefix: &str) {
        for name in self.table.children_names(dir) {
            let Some(child) = self.table.child(dir, &name) else {
                continue;
            };
            match &child.kind {
                NodeKind::Directory { .. } => {
                    let sub = format!("{prefix}{name}/");
                    let kind = NodeKind::Directory {
                        location: location.clone(),
                        prefix: sub.clone(),
                        ref_root: false,
                    };
                    self.table.rebind(child.ino, dir, &name, kind);
                    self.rebind_below(writer, location, child.ino, &sub);
                }
                _ => match writer.key_view(&format!("{prefix}{name}")) {
                    KeyView::Staged(id) => {
                        let kind = NodeKind::StagedFile {
                            location: location.clone(),
                            id,
                        };
                        self.table.rebind(child.ino, dir, &name, kind);
                    }
                    _ => self.table.unbind(dir, &name),
                },
            }
        }
    }

    // ---- control operations ---------------------------------------------------------------------------------

    async fn control_operation(&self, location: &Arc<RefLocation>, file: ControlFile, data: &[u8]) -> FsResult<()> {
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

/// A directory this mount emptied stays visible (as a local directory) until `rmdir`, as on any file system.
fn keep_parent_dir(state: &mut WriteState, key: &str) {
    if let Some((parent, _)) = key.rsplit_once('/') {
        state.local_dirs.insert(format!("{parent}/"));
    }
}

/// Forget staged file `id` unless a handle still holds it (its local bytes go with it).
fn drop_if_unused(state: &mut WriteState, id: u64) {
    if state.files.get(&id).is_some_and(|f| f.handles == 0) {
        if let Some(file) = state.files.remove(&id) {
            state.retired.insert(id, file.key);
        }
    }
}

/// Bytes of a staged handle's read.
pub(crate) fn read_local(local: &LocalFile, offset: u64, size: u32) -> FsResult<Bytes> {
    local
        .read_at(offset, size)
        .map(Bytes::from)
        .map_err(|e| FsError::staging("reading", e))
}

#[cfg(test)]
mod tests;
