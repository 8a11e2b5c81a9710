//! The POSIX calls of the write side: create, open for writing, write, flush/fsync, setattr, mkdir, symlink,
//! unlink, rmdir and rename, over the overlay and staging files of [`super`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{drop_if_unused, keep_parent_dir, unix_seconds, BranchWriter, KeyView, Overlay, SetAttr};
use crate::fs::attr::FileKind;
use crate::fs::inode::{Inode, InodeNo, NodeKind, RefLocation};
use crate::fs::prefetch::{ObjectReader, ObjectVersion, ReadTuning};
use crate::fs::{lock, Entry, Filesystem, FsError, FsResult, OpenFile, OpenMode, Opened};
use crate::lakefs::{LakeFs, ObjectInfo, META_CLIENT_MTIME, META_POSIX_PERMISSIONS, META_SYMLINK_TARGET};
use crate::staging::LocalFile;

impl<L: LakeFs> Filesystem<L> {
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
        if let NodeKind::Repository { repo } = &dir.kind {
            return self.create_branch_dir(parent, repo, name).await;
        }
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
}
