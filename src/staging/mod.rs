//! Local staging files and the naming of staging branches.
//!
//! Data written through the mount lands in a local file first: random writes, appends, truncation, sparse files and
//! rewrite-in-place all work on an ordinary file, and the whole file is uploaded to the staging branch when the
//! writer closes or fsyncs it. This module owns those files:
//!
//! - [`StagingDir`] is one directory per mount (`<root>/<mount id>/`), a byte budget (`max_staging`; a write that
//!   would grow the staged bytes past it fails with ENOSPC) and a counter naming the files.
//! - [`LocalFile`] is one staged file. Dropping the last reference deletes it from disk; an open descriptor keeps
//!   the bytes readable, so a handle that outlives a commit or discard still reads what it wrote.
//! - [`staging_branch_name`] derives `_fuse-<branch>-<id>` from host, mountpoint, repository and branch, so that a
//!   mount restarted on the same host and mountpoint finds the staging branch it left and resumes it.
//!
//! Crash safety: a file whose bytes may not be on the staging branch - open for writing, waiting for its
//! background upload, or whose upload failed - is named in the journal ([`journal`], an append-only log) with its
//! repository, staging branch, key and metadata until its upload finished. A mount restarted after a crash keeps
//! the journalled files, and the filesystem uploads them when it loads the branch's staging state
//! ([`StagingDir::take_recovered`]).
//! Files the journal does not name are leftovers and are removed when the directory opens.
//!
//! Privacy: staged files hold data not yet committed and the journal names repositories and keys, so the mount's
//! directory is created (or tightened to) 0700 and every file in it 0600, whatever the umask; the default root may
//! be the shared temporary directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod journal;
use journal::Journal;

/// Prefix of every staging branch; `_` keeps it apart from branch names people choose.
pub const STAGING_BRANCH_PREFIX: &str = "_fuse-";

/// `_fuse-<branch>-<8 hex>`: the hex is the start of SHA-256 over host, mountpoint, repository and branch.
pub fn staging_branch_name(host: &str, mountpoint: &str, repo: &str, branch: &str) -> String {
    let mut digest = Sha256::new();
    for part in [host, mountpoint, repo, branch] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let hash = hex::encode(digest.finalize());
    format!("{STAGING_BRANCH_PREFIX}{branch}-{}", &hash[..8])
}

/// The host name, for staging branch ids; empty when the kernel does not say.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The directory under which mounts keep staging files when no `cache_dir` is given:
/// `$XDG_RUNTIME_DIR/lakefs-fuse`, else `$XDG_CACHE_HOME/lakefs-fuse` or `~/.cache/lakefs-fuse`, else the
/// system temporary directory.
pub fn default_staging_root() -> PathBuf {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(runtime) = from_env("XDG_RUNTIME_DIR") {
        return runtime.join("lakefs-fuse");
    }
    if let Some(cache) = from_env("XDG_CACHE_HOME") {
        return cache.join("lakefs-fuse");
    }
    if let Some(home) = from_env("HOME") {
        return home.join(".cache").join("lakefs-fuse");
    }
    std::env::temp_dir().join("lakefs-fuse")
}

/// Creates `dir` (and missing parents) readable by its owner only, and tightens it to 0700 if it already existed.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let metadata = std::fs::metadata(dir)?;
    if metadata.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Options that create a file readable by its owner only.
pub(crate) fn private_file_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("staging budget of {limit} bytes exhausted ({used} bytes staged, {wanted} more wanted)")]
    NoSpace { limit: u64, used: u64, wanted: u64 },
    #[error("staging file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl StagingError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A local file whose bytes may not be on the staging branch yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpload {
    pub repo: String,
    pub branch: String,
    pub staging: String,
    pub key: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

const DATA_SUFFIX: &str = ".data";

/// The staging directory of one mount and its byte budget.
#[derive(Debug)]
pub struct StagingDir {
    dir: PathBuf,
    limit: u64,
    used: AtomicU64,
    next: AtomicU64,
    journal: Mutex<Journal>,
    /// Journalled files of an earlier run, not yet taken over.
    recovered: Mutex<BTreeMap<String, PendingUpload>>,
}

impl StagingDir {
    /// Whether `root/<mount_id>/` holds a journal, i.e. an earlier run may have left files to upload.
    pub fn has_journal(root: &Path, mount_id: &str) -> bool {
        Journal::exists(&root.join(mount_id))
    }

    /// Open (create) `root/<mount_id>/`: journalled files of an earlier run are kept for
    /// [`Self::take_recovered`], other leftovers are removed.
    pub fn open(root: &Path, mount_id: &str, limit: u64) -> Result<Arc<Self>, StagingError> {
        let dir = root.join(mount_id);
        create_private_dir(&dir).map_err(|e| StagingError::io(&dir, e))?;
        let journal_path = dir.join(journal::JOURNAL_LOG);
        let mut journal = Journal::open(&dir).map_err(|e| StagingError::io(&journal_path, e))?;
        let mut present = BTreeMap::new();
        let mut highest = 0;
        let entries = std::fs::read_dir(&dir).map_err(|e| StagingError::io(&dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(number) = name.strip_suffix(DATA_SUFFIX) else {
                continue;
            };
            match journal.entries().get(&name) {
                Some(pending) => {
                    highest = highest.max(number.parse::<u64>().unwrap_or(0));
                    present.insert(name, pending.clone());
                }
                None => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        journal
            .retain(|name| present.contains_key(name))
            .map_err(|e| StagingError::io(&journal_path, e))?;
        Ok(Arc::new(Self {
            dir,
            limit,
            used: AtomicU64::new(0),
            next: AtomicU64::new(highest + 1),
            journal: Mutex::new(journal),
            recovered: Mutex::new(present),
        }))
    }

    /// Take over the journalled files of an earlier run for `repo`/`branch` (each file with what it is).
    pub fn take_recovered(self: &Arc<Self>, repo: &str, branch: &str) -> Vec<(PendingUpload, LocalFile)> {
        let names: Vec<String> = lock(&self.recovered)
            .iter()
            .filter(|(_, p)| p.repo == repo && p.branch == branch)
            .map(|(name, _)| name.clone())
            .collect();
        let mut out = Vec::new();
        for name in names {
            let Some(pending) = lock(&self.recovered).remove(&name) else {
                continue;
            };
            let path = self.dir.join(&name);
            let opened = std::fs::OpenOptions::new().read(true).write(true).open(&path);
            match opened.and_then(|file| file.metadata().map(|m| (file, m.len()))) {
                Ok((file, size)) => {
                    // Recovered bytes count against the budget even if that overshoots it: they must not be lost.
                    self.used.fetch_add(size, Ordering::SeqCst);
                    out.push((
                        pending,
                        LocalFile {
                            staging: self.clone(),
                            name,
                            path,
                            file,
                            size: AtomicU64::new(size),
                            shrunk_to: AtomicU64::new(u64::MAX),
                        },
                    ));
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "journalled staging file unreadable"),
            }
        }
        out
    }

    /// Journal `file` as possibly not uploaded, as `pending` (idempotent; written before returning).
    pub fn journal_pending(&self, file: &LocalFile, pending: PendingUpload) -> Result<(), StagingError> {
        lock(&self.journal)
            .pending(&file.name, pending)
            .map_err(|e| StagingError::io(&self.dir.join(journal::JOURNAL_LOG), e))
    }

    /// `file`'s bytes are on the staging branch (or no longer wanted).
    pub fn journal_done(&self, file: &LocalFile) {
        if let Err(e) = lock(&self.journal).done(&file.name) {
            tracing::warn!(error = %e, "updating the staging journal");
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Bytes currently staged.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// A new empty staged file.
    pub fn create(self: &Arc<Self>) -> Result<LocalFile, StagingError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{n}{DATA_SUFFIX}");
        let path = self.dir.join(&name);
        let file = private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StagingError::io(&path, e))?;
        Ok(LocalFile {
            staging: self.clone(),
            name,
            path,
            file,
            size: AtomicU64::new(0),
            shrunk_to: AtomicU64::new(u64::MAX),
        })
    }

    fn reserve(&self, wanted: u64) -> Result<(), StagingError> {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            let next = used.saturating_add(wanted);
            if next > self.limit {
                return Err(StagingError::NoSpace {
                    limit: self.limit,
                    used,
                    wanted,
                });
            }
            match self
                .used
                .compare_exchange(used, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| Some(u.saturating_sub(bytes)));
    }
}

/// One local staging file. Its logical size counts against the budget (sparse holes included: the budget
/// bounds what an upload may have to send).
#[derive(Debug)]
pub struct LocalFile {
    staging: Arc<StagingDir>,
    /// File name inside the staging directory (the journal's key).
    name: String,
    path: PathBuf,
    file: File,
    size: AtomicU64,
    /// Smallest length a truncation set since [`Self::reset_shrink_mark`] (`u64::MAX`: none), so that an upload of
    /// the file in parts can tell whether bytes it already sent were cut off.
    shrunk_to: AtomicU64,
}

impl LocalFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    /// Write `data` at `offset`, growing the file (and the budget) as needed.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StagingError> {
        let end = offset.saturating_add(data.len() as u64);
        // A non-empty write extends the file itself: no separate `ftruncate` per appending write.
        self.grow_to(end, data.is_empty())?;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| StagingError::io(&self.path, e))
    }

    /// Bytes `offset..offset+size`, short at the end of the file.
    pub fn read_at(&self, offset: u64, size: u32) -> Result<Vec<u8>, StagingError> {
        let len = self.size();
        if offset >= len {
            return Ok(Vec::new());
        }
        let want = (len - offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; want];
        let mut done = 0;
        while done < want {
            let n = self
                .file
                .read_at(&mut buf[done..], offset + done as u64)
                .map_err(|e| StagingError::io(&self.path, e))?;
            if n == 0 {
                // A hole at the end that the file system did not materialise reads as zeros.
                break;
            }
            done += n;
        }
        Ok(buf)
    }

    /// Set the length: shrinking frees budget, growing reserves it (the new bytes read as zeros).
    pub fn set_len(&self, len: u64) -> Result<(), StagingError> {
        let old = self.size();
        if len > old {
            self.grow_to(len, true)?;
        } else if len < old {
            self.staging.release(old - len);
            self.size.store(len, Ordering::SeqCst);
            self.shrunk_to.fetch_min(len, Ordering::SeqCst);
        }
        self.file.set_len(len).map_err(|e| StagingError::io(&self.path, e))
    }

    /// Account for the file growing to `end` bytes; `set_len`: also extend the file on disk (else the caller's
    /// write does).
    fn grow_to(&self, end: u64, set_len: bool) -> Result<(), StagingError> {
        loop {
            let old = self.size();
            if end <= old {
                return Ok(());
            }
            self.staging.reserve(end - old)?;
            if self
                .size
                .compare_exchange(old, end, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                if !set_len {
                    return Ok(());
                }
                return self.file.set_len(end).map_err(|e| StagingError::io(&self.path, e));
            }
            self.staging.release(end - old);
        }
    }

    /// The smallest length the file was truncated to since the last [`Self::reset_shrink_mark`], if any.
    pub fn shrunk_to(&self) -> Option<u64> {
        Some(self.shrunk_to.load(Ordering::SeqCst)).filter(|&len| len != u64::MAX)
    }

    pub fn reset_shrink_mark(&self) {
        self.shrunk_to.store(u64::MAX, Ordering::SeqCst);
    }

    pub fn sync(&self) -> Result<(), StagingError> {
        self.file.sync_data().map_err(|e| StagingError::io(&self.path, e))
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        self.staging.journal_done(self);
        self.staging.release(self.size());
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn pending(key: &str) -> PendingUpload {
        PendingUpload {
            repo: "repo".into(),
            branch: "main".into(),
            staging: "_fuse-main-x".into(),
            key: key.into(),
            metadata: BTreeMap::new(),
        }
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn staged_files_and_the_journal_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        // A pre-existing, world-readable mount directory is tightened.
        std::fs::create_dir_all(tmp.path().join("shared")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path().join("shared"), std::fs::Permissions::from_mode(0o777)).unwrap();
        for id in ["new", "shared"] {
            let staging = StagingDir::open(tmp.path(), id, 100).unwrap();
            let file = staging.create().unwrap();
            file.write_at(0, b"uncommitted").unwrap();
            staging.journal_pending(&file, pending("a/secret")).unwrap();
            assert_eq!(mode(staging.path()), 0o700, "{id}");
            assert_eq!(mode(&staging.path().join(journal::JOURNAL_LOG)), 0o600, "{id}");
            assert_eq!(mode(&file.path), 0o600, "{id}");
        }
    }

    #[test]
    fn journalled_files_survive_a_restart_and_others_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let staging = StagingDir::open(tmp.path(), "m", 100).unwrap();
            let kept = staging.create().unwrap();
            kept.write_at(0, b"unsent").unwrap();
            staging.journal_pending(&kept, pending("a/kept")).unwrap();
            let done = staging.create().unwrap();
            staging.journal_pending(&done, pending("a/done")).unwrap();
            staging.journal_done(&done);
            let _unjournalled = staging.create().unwrap();
            // A crash: nothing is dropped.
            std::mem::forget(kept);
            std::mem::forget(done);
            std::mem::forget(_unjournalled);
        }
        assert!(StagingDir::has_journal(tmp.path(), "m"));
        let staging = StagingDir::open(tmp.path(), "m", 100).unwrap();
        assert!(staging.take_recovered("repo", "other").is_empty());
        let recovered = staging.take_recovered("repo", "main");
        assert_eq!(recovered.len(), 1);
        let (what, file) = &recovered[0];
        assert_eq!(what.key, "a/kept");
        assert_eq!(file.read_at(0, 100).unwrap(), b"unsent");
        assert_eq!(staging.used(), 6);
        let files = std::fs::read_dir(staging.path()).unwrap().count();
        assert_eq!(files, 2, "the journal and the one recovered file");
        let fresh = staging.create().unwrap();
        assert_ne!(fresh.path(), file.path(), "new files never reuse a recovered name");
    }

    #[test]
    fn branch_names_are_stable_and_distinct() {
        let a = staging_branch_name("host", "/mnt/lake", "repo", "main");
        assert_eq!(a, staging_branch_name("host", "/mnt/lake", "repo", "main"));
        assert!(a.starts_with("_fuse-main-"), "{a}");
        assert_eq!(a.len(), "_fuse-main-".len() + 8);
        assert_ne!(a, staging_branch_name("host", "/mnt/other", "repo", "main"));
        assert_ne!(a, staging_branch_name("other", "/mnt/lake", "repo", "main"));
        assert_ne!(a, staging_branch_name("host", "/mnt/lake", "repo2", "main"));
    }

    #[test]
    fn writes_reads_truncates_and_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = StagingDir::open(tmp.path(), "m", 100).unwrap();
        let file = staging.create().unwrap();
        file.write_at(10, b"hello").unwrap();
        assert_eq!(file.size(), 15);
        assert_eq!(staging.used(), 15);
        let data = file.read_at(0, 100).unwrap();
        assert_eq!(&data[..10], &[0u8; 10]);
        assert_eq!(&data[10..], b"hello");
        file.set_len(12).unwrap();
        assert_eq!(file.read_at(0, 100).unwrap().len(), 12);
        assert_eq!(staging.used(), 12);
        let err = file.write_at(0, &[1u8; 101]).unwrap_err();
        assert!(matches!(err, StagingError::NoSpace { .. }), "{err}");
        assert_eq!(staging.used(), 12, "a refused write reserves nothing");
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists());
        assert_eq!(staging.used(), 0);
    }

    #[test]
    fn leftovers_of_an_earlier_run_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("m")).unwrap();
        std::fs::write(tmp.path().join("m/7.data"), b"old").unwrap();
        let staging = StagingDir::open(tmp.path(), "m", 100).unwrap();
        assert!(!staging.path().join("7.data").exists());
    }
}
