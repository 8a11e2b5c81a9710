//! The POSIX calls of the write side: create, open for writing, write, flush/fsync, setattr, mkdir, symlink,
//! unlink, rmdir and rename, over the overlay and staging files of [`super`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{drop_if_unused, keep_parent_dir, unix_seconds, BranchWriter, DirMeta, KeyView, Overlay, Owner, SetAttr};
use crate::fs::attr::FileKind;
use crate::fs::inode::{Inode, InodeNo, NodeKind, RefLocation};
use crate::fs::prefetch::{ObjectReader, ObjectVersion};
use crate::fs::{lock, Entry, Filesystem, FsError, FsResult, OpenFile, OpenMode, Opened};
use crate::lakefs::{LakeFs, ObjectInfo, META_CLIENT_MTIME, META_POSIX_PERMISSIONS, META_SYMLINK_TARGET};
use crate::staging::LocalFile;

/// How often `open` stages a file again when commits keep retiring it before a handle holds it.
const MAX_STAGE_ATTEMPTS: usize = 5;

impl<L: LakeFs> Filesystem<L> {
    /// Create and open a regular file owned by the mount's default user.
    pub async fn create(&self, parent: InodeNo, name: &str, mode: u32) -> FsResult<(Entry, Opened)> {
        let owner = self.default_owner();
        self.create_as(parent, name, mode, owner).await
    }

    fn default_owner(&self) -> Owner {
        Owner {
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    /// Create and open a regular file owned by `owner` (recorded when it is not the mount's default user).
    pub async fn create_as(&self, parent: InodeNo, name: &str, mode: u32, owner: Owner) -> FsResult<(Entry, Opened)> {
        Self::check_name(name)?;
        let dir = self.inode(parent)?;
        let (writer, location, prefix) = self.writable_dir(&dir, "create").await?;
        let key = format!("{prefix}{name}");
        Self::check_key(&key)?;
        if writer.has_local_below(&format!("{key}/")) {
            return Err(FsError::is_a_directory(key));
        }
        let local = self.new_local(&key)?;
        let metadata = self.permissions_metadata(libc::S_IFREG | (mode & 0o7777), owner, 0);
        let id = self.insert_staged(&writer, &key, Some(local.clone()), None, metadata, true);
        self.dir_entries_changed(&writer, &prefix);
        self.forget_negative(parent, name);
        let inode = self.bind_staged(parent, name, &location, &writer, id);
        self.table.remember(&inode);
        let opened = self.open_staged_handle(&writer, id, Some(local), true)?;
        Ok((self.entry_of(&inode), opened))
    }

    /// `::lakefs::posix-permissions` for a new file of full `st_mode` `mode`: recorded when anything differs from
    /// what an object without the key shows (a regular file with `file_mode`, owned by the mount's user).
    fn permissions_metadata(&self, mode: u32, owner: Owner, rdev: u32) -> BTreeMap<String, String> {
        let mut metadata = BTreeMap::new();
        let (file_type, perm) = (mode & libc::S_IFMT, mode & 0o7777);
        if file_type != libc::S_IFREG || perm != u32::from(self.config.file_mode) || owner != self.default_owner() {
            let mut value = serde_json::json!({ "UID": owner.uid, "GID": owner.gid, "Mode": file_type | perm });
            if matches!(file_type, libc::S_IFCHR | libc::S_IFBLK) {
                value["Rdev"] = rdev.into();
            }
            metadata.insert(META_POSIX_PERMISSIONS.to_string(), value.to_string());
        }
        metadata
    }

    /// `mknod(2)`: a FIFO, socket or device node is an empty object whose recorded mode names its type (see
    /// [`crate::fs::attr`]); `S_IFREG` makes an empty regular file. Uploaded at once, as no close follows.
    pub async fn mknod(&self, parent: InodeNo, name: &str, mode: u32, rdev: u32, owner: Owner) -> FsResult<Entry> {
        Self::check_name(name)?;
        let mode = match mode & libc::S_IFMT {
            0 => libc::S_IFREG | mode,
            libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => mode,
            _ => return Err(FsError::invalid(format!("mknod: file type {:o}", mode & libc::S_IFMT))),
        };
        let dir = self.inode(parent)?;
        let (writer, location, prefix) = self.writable_dir(&dir, "mknod").await?;
        let key = format!("{prefix}{name}");
        Self::check_key(&key)?;
        if writer.has_local_below(&format!("{key}/")) {
            return Err(FsError::exists(key));
        }
        let metadata = self.permissions_metadata(mode, owner, rdev);
        self.stage_empty_object(parent, name, &writer, &location, &prefix, metadata)
            .await
    }

    /// Stage `prefix + name` in directory `parent` as an empty object with `metadata` and upload it at once (no
    /// close follows a mknod or symlink); returns its entry.
    async fn stage_empty_object(
        &self,
        parent: InodeNo,
        name: &str,
        writer: &Arc<BranchWriter>,
        location: &Arc<RefLocation>,
        prefix: &str,
        metadata: BTreeMap<String, String>,
    ) -> FsResult<Entry> {
        let key = format!("{prefix}{name}");
        let local = self.new_local(&key)?;
        let id = self.insert_staged(writer, &key, Some(local), None, metadata, true);
        {
            let _shared = writer.operation.read().await;
            self.journal(writer, id)?;
            self.upload(writer, id).await?;
        }
        self.dir_entries_changed(writer, prefix);
        self.forget_negative(parent, name);
        let inode = self.bind_staged(parent, name, location, writer, id);
        self.table.remember(&inode);
        Ok(self.entry_of(&inode))
    }

    /// A handle on staged file `id`. The handle is counted in the same step that checks the file is still shown:
    /// a commit running concurrently retires (and forgets) staged files nobody holds, and a handle on a forgotten
    /// file would take writes that no close ever uploads. `ESTALE` when that happened first (see
    /// [`Self::open_for_write`], which stages the file again).
    fn open_staged_handle(
        &self,
        writer: &Arc<BranchWriter>,
        id: u64,
        local: Option<Arc<LocalFile>>,
        write: bool,
    ) -> FsResult<Opened> {
        {
            let mut state = writer.state();
            if !state.shows(id) {
                return Err(FsError::stale(format!(
                    "staged file {id} was retired while being opened"
                )));
            }
            if let Some(file) = state.files.get_mut(&id) {
                file.handles += 1;
            }
        }
        if write {
            if let Err(err) = self.journal(writer, id) {
                if let Some(file) = writer.state().files.get_mut(&id) {
                    file.handles = file.handles.saturating_sub(1);
                }
                return Err(err);
            }
        }
        self.insert_staged_handle(writer, id, local, write)
    }

    /// A handle on staged file `id`, whose `handles` count the caller already raised.
    fn insert_staged_handle(
        &self,
        writer: &Arc<BranchWriter>,
        id: u64,
        local: Option<Arc<LocalFile>>,
        write: bool,
    ) -> FsResult<Opened> {
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
        // A commit may retire the staged file between staging it and counting the handle; stage it again then
        // (from the branch, which now holds the committed bytes).
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (writer, id) = self.stage_inode(inode, mode.truncate).await?;
            let local = self.materialize(&writer, id, mode.truncate).await?;
            match self.open_staged_handle(&writer, id, Some(local), mode.write) {
                Err(err) if err.errno == libc::ESTALE && attempts < MAX_STAGE_ATTEMPTS => continue,
                other => return other,
            }
        }
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
            .and_then(|w| w.state().retired.get(&id).map(|r| r.key.clone()))
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
        let reader = ObjectReader::new(
            self.client.clone(),
            self.cache.clone(),
            version,
            self.config.read_tuning(),
        );
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
                self.eager_progress(writer, *id, local, offset).await;
                Ok(written)
            }
            OpenFile::ControlWrite { location, file } => {
                self.control_operation(location, *file, data).await?;
                Ok(written)
            }
            _ => Err(FsError::bad_handle(format!("file handle {fh} is not open for writing"))),
        }
    }

    /// `flush` (every `close`): start the file's upload in the background, or with `-o sync_close` upload it
    /// and return the upload's error (see [`super::background`]).
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        if self.config.sync_close {
            return self.fsync(fh).await;
        }
        if let Some((writer, id)) = self.written_file(fh) {
            if writer.state().files.get(&id).is_some_and(|f| f.dirty) {
                self.upload_later(&writer, id);
            }
        }
        Ok(())
    }

    /// `fsync`: upload the file if it changed, and return the upload's error.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        match self.written_file(fh) {
            Some((writer, id)) => {
                let _shared = writer.operation.read().await;
                self.upload(&writer, id).await
            }
            None => Ok(()),
        }
    }

    /// The staged file behind handle `fh` when it is open for writing.
    fn written_file(&self, fh: u64) -> Option<(Arc<BranchWriter>, u64)> {
        let file = lock(&self.files).get(&fh).cloned()?;
        match &*file {
            OpenFile::Staged {
                writer,
                id,
                write: true,
                ..
            } => Some((writer.clone(), *id)),
            _ => None,
        }
    }

    /// Bookkeeping when a staged handle closes.
    pub(crate) fn release_staged(&self, writer: &BranchWriter, id: u64) {
        let mut state = writer.state();
        if let Some(file) = state.files.get_mut(&id) {
            file.handles = file.handles.saturating_sub(1);
        }
        if !state.shows(id) {
            if let Some(abandoned) = drop_if_unused(&mut state, id) {
                self.abort_eager(abandoned);
            }
        }
        drop(state);
        self.journal_if_clean(writer, id);
    }

    pub async fn setattr(&self, ino: InodeNo, change: SetAttr) -> FsResult<Entry> {
        let inode = self.inode(ino)?;
        match &inode.kind {
            NodeKind::ControlFile { file, .. } if file.is_writable() => return Ok(self.entry_of(&inode)),
            NodeKind::Directory { location, prefix, .. } => {
                // Directories have no object to carry attributes: they are kept in memory (see `DirMeta`).
                let Some(writer) = self.writer(location) else {
                    return Err(self.write_refusal(&inode, "setattr"));
                };
                let now = std::time::SystemTime::now();
                writer.update_dir_meta(prefix, self.default_dir_meta(), |meta| {
                    if let Some(mode) = change.mode {
                        meta.perm = (mode & 0o7777) as u16;
                    }
                    meta.uid = change.uid.unwrap_or(meta.uid);
                    meta.gid = change.gid.unwrap_or(meta.gid);
                    meta.mtime = change.mtime.unwrap_or(meta.mtime);
                    meta.ctime = now;
                });
                return Ok(self.entry_of(&inode));
            }
            kind if kind.is_dir() => {
                // Repository and server roots: nothing to keep the attributes in.
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
                let recorded = field("Mode", libc::S_IFREG | u32::from(self.config.file_mode));
                let mode = change.mode.unwrap_or(recorded);
                // The file type stays what it was (a FIFO or device node keeps its type through chmod).
                let file_type = match recorded & libc::S_IFMT {
                    0 => libc::S_IFREG,
                    file_type => file_type,
                };
                let mut value = serde_json::json!({
                    "UID": change.uid.unwrap_or_else(|| field("UID", self.config.uid)),
                    "GID": change.gid.unwrap_or_else(|| field("GID", self.config.gid)),
                    "Mode": file_type | (mode & 0o7777),
                });
                if let Some(rdev) = current.get("Rdev") {
                    value["Rdev"] = rdev.clone();
                }
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
            let _guard = writer.operation.read().await;
            self.journal(&writer, id)?;
            self.upload(&writer, id).await?;
        }
        let inode = self.inode(ino)?;
        Ok(self.entry_of(&inode))
    }

    pub async fn mkdir(&self, parent: InodeNo, name: &str) -> FsResult<Entry> {
        let (mode, owner) = (u32::from(self.config.dir_mode), self.default_owner());
        self.mkdir_as(parent, name, mode, owner).await
    }

    /// `mkdir(2)` by `owner` with permission bits `mode` (kept in memory, see [`DirMeta`]).
    pub async fn mkdir_as(&self, parent: InodeNo, name: &str, mode: u32, owner: Owner) -> FsResult<Entry> {
        Self::check_name(name)?;
        let dir = self.inode(parent)?;
        if let NodeKind::Repository { repo } = &dir.kind {
            return self.create_branch_dir(parent, repo, name).await;
        }
        let (writer, location, prefix) = self.writable_dir(&dir, "mkdir").await?;
        if let Ok(existing) = self.lookup(parent, name).await {
            self.table.forget(existing.attr.ino, 1);
            return Err(FsError::exists(format!("{prefix}{name}")));
        }
        let sub = format!("{prefix}{name}/");
        Self::check_key(&sub)?;
        writer.state().local_dirs.insert(sub.clone());
        let now = std::time::SystemTime::now();
        let meta = DirMeta {
            perm: (mode & 0o7777) as u16,
            uid: owner.uid,
            gid: owner.gid,
            mtime: now,
            ctime: now,
        };
        writer.update_dir_meta(&sub, meta, |m| *m = meta);
        self.dir_entries_changed(&writer, &prefix);
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
        Self::check_key(&key)?;
        let metadata = BTreeMap::from([(META_SYMLINK_TARGET.to_string(), target.to_string())]);
        self.stage_empty_object(parent, name, &writer, &location, &prefix, metadata)
            .await
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
        let _guard = writer.operation.write().await;
        self.delete_key(&writer, &key).await?;
        self.dir_entries_changed(&writer, &prefix);
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
            if let Some(abandoned) = drop_if_unused(&mut state, old) {
                self.abort_eager(abandoned);
            }
        }
        keep_parent_dir(&mut state, key);
        Ok(())
    }

    pub async fn rmdir(&self, parent: InodeNo, name: &str) -> FsResult<()> {
        let dir = self.inode(parent)?;
        if let NodeKind::Repository { repo } = &dir.kind {
            return Err(self.refuse_branch_removal(repo, name));
        }
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
        {
            let mut state = writer.state();
            state.local_dirs.remove(&sub);
            state.dir_meta.remove(&sub);
        }
        self.dir_entries_changed(&writer, &prefix);
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
        Self::check_key(&dst_key)?;
        let _guard = writer.operation.write().await;
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
            writer.move_dir_meta(&src, &dst);
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
        self.dir_entries_changed(&writer, &src_prefix);
        self.dir_entries_changed(&writer, &dst_prefix);
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
                            if let Some(abandoned) = drop_if_unused(&mut state, old) {
                                self.abort_eager(abandoned);
                            }
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
}
