//! The write side (DESIGN section 3): a staging branch per mounted branch, an overlay of this mount's own
//! uncommitted changes, local staging files, and the commit/merge/discard operations of `.lakefs/`.
//!
//! For each writable branch `B` the mount keeps one [`BranchWriter`]:
//! - `S = _fuse-<B>-<id>` is created hidden from `B`'s head on the first change that needs the server (an upload,
//!   a delete, a copy); until then `S` may not exist. A restarted mount finds it with `GET branch` and rebuilds
//!   the overlay from the server: the three-dot diff `B...S` (changes committed on `S` by a commit whose merge
//!   then failed) plus `S`'s uncommitted diff.
//! - The overlay maps keys to `Overlay::Staged` (the key shows a staged file: local bytes, or the object on `S`)
//!   or `Overlay::Deleted` (the key is hidden). Every other key shows `B` as it is now, so other clients' writes
//!   to `B` stay visible. Directories are implied by keys, plus local-only directories made with `mkdir`.
//! - A staged file keeps its id for life; the kernel's inode for it is `NodeKind::StagedFile { id }`, so renames
//!   and writes never change the inode the kernel holds.
//!
//! Data path: writes land in a [`LocalFile`]; `flush` (every `close`) starts the upload of a dirty file to `S` in
//! the background ([`background`]), `fsync` and the control operations wait for it. An upload races no write: a
//! generation counter taken before the upload decides whether the file is still dirty afterwards.
//! Files that may hold bytes the staging branch lacks (open for writing, queued, or a failed upload) are named in
//! the staging journal ([`crate::staging`]); a restarted mount uploads them when it loads the branch's overlay.
//!
//! Changes of `S` go through the branch's operation lock: uploads hold it shared (and their file's own lock),
//! deletes, copies and the control operations exclusively; plain data writes take neither (they only touch the
//! local file).
//!
//! Layout: this module holds the model (writers, overlay, staged files, uploads, the journal hooks); `posix` the
//! POSIX calls on top of it; `control` the `.lakefs/` operations.
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
use super::inode::{Inode, InodeNo, NodeKind, RefLocation, RefTarget};
use super::names::{invalid_name_reason, NAME_MAX};
use super::{lock, Filesystem, FsError, FsResult};
use crate::lakefs::{DiffKind, LakeFs, LakeFsError, ListRequest, ObjectInfo, META_SYMLINK_TARGET};
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
    /// Its upload in parts while it is written (`-o upload_eager`).
    pub eager: eager::EagerState,
    /// Held for the whole of an upload, so that two uploads of this file never race.
    upload_lock: Arc<tokio::sync::Mutex<()>>,
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
    /// Staged files dropped since the last commit or discard, by id: their key now shows the branch. Older ones
    /// are forgotten (inodes keep their key in their last-seen stats), so this stays small.
    retired: HashMap<u64, Retired>,
    /// Local-only directories (`mkdir`), as prefixes ending in `/`.
    local_dirs: BTreeSet<String>,
    /// Mode, owner and times of directories changed through this mount, by prefix ("" is the branch root).
    dir_meta: HashMap<String, DirMeta>,
    last_operation: Option<String>,
    last_commit: Option<String>,
    last_merge: Option<String>,
    last_upload_error: Option<String>,
    /// The running control operation and the last outcome, for `status.json`.
    control: control::ControlState,
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
    /// Held shared by uploads and exclusively by the other changes of the staging branch (copies, deletes) and
    /// the control operations (see [`background`]).
    operation: tokio::sync::RwLock<()>,
}

impl BranchWriter {
    fn new(repo: &str, branch: &str, staging: String) -> Self {
        Self {
            repo: repo.to_string(),
            branch: branch.to_string(),
            staging,
            state: Mutex::new(WriteState::default()),
            load: tokio::sync::Mutex::new(()),
            operation: tokio::sync::RwLock::new(()),
        }
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        lock(&self.state)
    }

    /// The attributes this mount gave directory `prefix`, if it changed any.
    pub(crate) fn dir_meta(&self, prefix: &str) -> Option<DirMeta> {
        self.state().dir_meta.get(prefix).copied()
    }

    /// Change the attributes of directory `prefix`, starting from `defaults` when it has none yet.
    pub(crate) fn update_dir_meta(&self, prefix: &str, defaults: DirMeta, change: impl FnOnce(&mut DirMeta)) {
        change(self.state().dir_meta.entry(prefix.to_string()).or_insert(defaults));
    }

    /// Directory `prefix` moved to `to`: its attributes and those of every directory below it follow.
    pub(crate) fn move_dir_meta(&self, prefix: &str, to: &str) {
        let mut state = self.state();
        let moved: Vec<String> = state
            .dir_meta
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for key in moved {
            if let Some(meta) = state.dir_meta.remove(&key) {
                state.dir_meta.insert(format!("{to}{}", &key[prefix.len()..]), meta);
            }
        }
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

    /// The overlay holds anything (staged file, deletion, local directory) below `prefix` (ending in `/`).
    pub(crate) fn has_overlay_below(&self, prefix: &str) -> bool {
        let state = self.state();
        let below = |key: Option<&String>| key.is_some_and(|k| k.starts_with(prefix));
        below(state.overlay.range(prefix.to_string()..).next().map(|(k, _)| k))
            || below(state.local_dirs.range(prefix.to_string()..).next())
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

    /// The final stats of staged file `id`, if the last commit or discard retired it.
    fn retired_info(&self, id: u64) -> Option<ObjectInfo> {
        self.state().retired.get(&id).map(|r| r.info.clone())
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
/// Mode, owner and times of a directory as this mount changed them (`mkdir` with a mode, `chmod`, `chown`,
/// `utimens`, entries added or removed). lakeFS has no directory objects to carry them, so they live in memory
/// for the mount's lifetime: a remount shows the mount's defaults again. Other clients never see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirMeta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

impl DirMeta {
    pub fn apply(&self, attr: &mut super::Attr) {
        attr.perm = self.perm;
        attr.uid = self.uid;
        attr.gid = self.gid;
        attr.mtime = self.mtime;
        attr.ctime = self.ctime;
    }
}

/// The user a new file belongs to: the caller of `create`/`mknod`, as the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
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

    /// What a directory shows before this mount changes it: the mount's defaults.
    pub(crate) fn default_dir_meta(&self) -> DirMeta {
        DirMeta {
            perm: self.config.dir_mode,
            uid: self.config.uid,
            gid: self.config.gid,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
        }
    }

    /// An entry was added to or removed from directory `prefix`: its mtime and ctime become now.
    pub(crate) fn dir_entries_changed(&self, writer: &BranchWriter, prefix: &str) {
        let now = SystemTime::now();
        writer.update_dir_meta(prefix, self.default_dir_meta(), |meta| {
            meta.mtime = now;
            meta.ctime = now;
        });
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
                                    eager: eager::EagerState::Idle,
                                    upload_lock: Arc::default(),
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

    /// A new key must fit lakeFS's key length.
    fn check_key(key: &str) -> FsResult<()> {
        if key.len() > super::names::KEY_MAX {
            return Err(FsError::name_too_long(format!(
                "{} bytes: lakeFS keys are at most {} bytes",
                key.len(),
                super::names::KEY_MAX
            )));
        }
        Ok(())
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
            .and_then(|w| w.staged_info(id).or_else(|| w.retired_info(id)))
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
                eager: eager::EagerState::Idle,
                upload_lock: Arc::default(),
            },
        );
        if let Some(Overlay::Staged(old)) = state.overlay.insert(key.to_string(), Overlay::Staged(id)) {
            if let Some(abandoned) = drop_if_unused(&mut state, old) {
                self.abort_eager(abandoned);
            }
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
                // Retired by a commit or discard: the key, from the writer or as the inode last showed it.
                let key = writer.state().retired.get(id).map(|r| r.key.clone());
                let key = key.or_else(|| inode.state().object.as_ref().map(|o| o.path.clone()));
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
        let current = match self.client.stat_object(&location.repo, location.read_ref(), &key).await {
            Ok(current) => Some(current),
            // Gone since the kernel looked it up (deleted by another client, or a lookup answered from an entry
            // cached across a commit). A truncating open needs none of its bytes: it starts the file afresh.
            Err(LakeFsError::NotFound(_)) if truncate => None,
            Err(e) => return Err(FsError::lakefs(format!("stat {key}"), e)),
        };
        let local = match &current {
            Some(current) if !truncate => {
                self.download(&location.repo, location.read_ref(), &key, current.size)
                    .await?
            }
            _ => self.new_local(&key)?,
        };
        let metadata = current
            .as_ref()
            .or(inode.state().object.as_ref())
            .map(|o| o.metadata.clone())
            .unwrap_or_default();
        let id = self.insert_staged(&writer, &key, Some(local), None, metadata, truncate);
        if let Some(current) = &current {
            if let Some(file) = writer.state().files.get_mut(&id) {
                file.mtime = UNIX_EPOCH + Duration::from_secs(current.mtime.max(0).unsigned_abs());
            }
        }
        let kind = NodeKind::StagedFile {
            location: location.clone(),
            id,
        };
        self.table.rebind(inode.ino, inode.parent, &inode.name, kind);
        Ok((writer, id))
    }

    /// Upload staged file `id` to the staging branch if it is dirty. Errors are recorded for `status`. The
    /// caller holds the branch's operation lock (shared is enough).
    pub(crate) async fn upload(&self, writer: &BranchWriter, id: u64) -> FsResult<()> {
        let Some(upload_lock) = writer.state().files.get(&id).map(|f| f.upload_lock.clone()) else {
            return Ok(());
        };
        let _uploading = upload_lock.lock().await;
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
            // No fsync of the local file first: the upload reads it back through the page cache, and the server
            // makes the uploaded bytes durable.
            let local = local.ok_or_else(|| FsError::io(format!("{key}: no local bytes to upload")))?;
            if let Some(info) = self.finish_eager(writer, id, &key, &local).await {
                return Ok(info);
            }
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

    /// Upload every dirty staged file of `writer`, several at a time; the first error, once all finished.
    async fn upload_all(&self, writer: &BranchWriter) -> FsResult<()> {
        use futures::stream::StreamExt;
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
        let results: Vec<FsResult<()>> = futures::stream::iter(ids)
            .map(|id| self.upload(writer, id))
            .buffer_unordered(background::UPLOADS_IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

/// A directory this mount emptied stays visible (as a local directory) until `rmdir`, as on any file system.
fn keep_parent_dir(state: &mut WriteState, key: &str) {
    if let Some((parent, _)) = key.rsplit_once('/') {
        state.local_dirs.insert(format!("{parent}/"));
    }
}

/// A staged file a commit or discard dropped: where it was, and what it last was. The kernel may still ask for
/// the attributes of its inode (its cached entry outlives the commit), and they must be the final ones, not
/// whatever the inode held when it was last asked.
#[derive(Debug, Clone)]
pub(crate) struct Retired {
    pub key: String,
    pub info: ObjectInfo,
}

/// Forget staged file `id` unless a handle still holds it (its local bytes go with it). Returns its eager upload
/// if one was running, for the caller to abort (a multipart upload nobody completes would linger on the server).
#[must_use]
fn drop_if_unused(state: &mut WriteState, id: u64) -> Option<eager::EagerUpload> {
    if state.files.get(&id).is_none_or(|f| f.handles != 0) {
        return None;
    }
    let mut file = state.files.remove(&id)?;
    let info = file.info();
    let eager = match std::mem::take(&mut file.eager) {
        eager::EagerState::Running(upload) => Some(upload),
        _ => None,
    };
    state.retired.insert(id, Retired { key: file.key, info });
    eager
}

/// Bytes of a staged handle's read.
pub(crate) fn read_local(local: &LocalFile, offset: u64, size: u32) -> FsResult<Bytes> {
    local
        .read_at(offset, size)
        .map(Bytes::from)
        .map_err(|e| FsError::staging("reading", e))
}

pub(crate) mod background;
mod branches;
pub mod control;
mod eager;
mod posix;

pub use self::control::{CommitCommand, MergeCommand};

#[cfg(test)]
mod tests;
