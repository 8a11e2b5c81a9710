//! The write model against `MockLakeFs`: staging branch lifecycle, overlay, local files, control operations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use crate::fs::{DirEntry, Entry, FileKind, Filesystem, FsConfig, FsResult, InodeNo, OpenMode, Owner, SetAttr, Source};
use crate::lakefs::mock::MockLakeFs;
use crate::lakefs::{LakeFs, LakeFsError, META_POSIX_PERMISSIONS, META_SYMLINK_TARGET};

struct Harness {
    mock: Arc<MockLakeFs>,
    fs: Arc<Filesystem<MockLakeFs>>,
    _staging: tempfile::TempDir,
}

fn config(staging: &std::path::Path) -> FsConfig {
    FsConfig {
        metadata_ttl: Duration::ZERO,
        block_size: 4096,
        staging_dir: Some(staging.to_path_buf()),
        max_staging: 1 << 20,
        host: "test-host".into(),
        mountpoint: "/mnt/test".into(),
        ..FsConfig::default()
    }
}

async fn harness_on(mock: Arc<MockLakeFs>, source: &str) -> Harness {
    harness_with(mock, source, |config| config).await
}

/// A mount of `source` with the test configuration as `change` alters it.
async fn harness_with(mock: Arc<MockLakeFs>, source: &str, change: impl FnOnce(FsConfig) -> FsConfig) -> Harness {
    let staging = tempfile::tempdir().unwrap();
    let config = change(config(staging.path()));
    let fs = Filesystem::new(mock.clone(), Source::parse(source).unwrap(), config)
        .await
        .unwrap();
    Harness {
        mock,
        fs,
        _staging: staging,
    }
}

/// A mock server with repository `repo` (default branch `main`).
fn repo_server() -> Arc<MockLakeFs> {
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "main");
    mock
}

async fn harness() -> Harness {
    harness_on(repo_server(), "lakefs://repo/main").await
}

impl Harness {
    async fn walk(&self, path: &str) -> FsResult<Entry> {
        let mut entry = self.fs.getattr(InodeNo::ROOT).await?;
        for name in path.split('/').filter(|s| !s.is_empty()) {
            entry = self.fs.lookup(entry.attr.ino, name).await?;
        }
        Ok(entry)
    }

    /// Parent inode and last name of `path`.
    async fn parent(&self, path: &str) -> FsResult<(InodeNo, String)> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        Ok((self.walk(dir).await?.attr.ino, name.to_string()))
    }

    /// `open(O_WRONLY|O_CREAT|O_TRUNC)`, write, close.
    async fn write_file(&self, path: &str, data: &[u8]) -> FsResult<()> {
        let fh = match self.walk(path).await {
            Ok(entry) => {
                self.fs
                    .open(
                        entry.attr.ino,
                        OpenMode {
                            write: true,
                            truncate: true,
                        },
                    )
                    .await?
                    .fh
            }
            Err(_) => {
                self.mkdir_p(path.rsplit_once('/').map_or("", |(dir, _)| dir)).await?;
                let (parent, name) = self.parent(path).await?;
                self.fs.create(parent, &name, 0o644).await?.1.fh
            }
        };
        self.fs.write(fh, 0, data).await?;
        self.close(fh).await
    }

    /// Like [`Self::write_file`], but the upload `close` started may still run when this returns.
    async fn write_file_in_background(&self, path: &str, data: &[u8]) -> FsResult<()> {
        self.mkdir_p(path.rsplit_once('/').map_or("", |(dir, _)| dir)).await?;
        let (parent, name) = self.parent(path).await?;
        let fh = match self.fs.lookup(parent, &name).await {
            Ok(entry) => {
                let mode = OpenMode {
                    write: true,
                    truncate: true,
                };
                self.fs.open(entry.attr.ino, mode).await?.fh
            }
            Err(_) => self.fs.create(parent, &name, 0o644).await?.1.fh,
        };
        self.fs.write(fh, 0, data).await?;
        let flushed = self.fs.flush(fh).await;
        self.fs.release(fh);
        flushed
    }

    /// `close(2)`, then wait for the upload it started in the background, so that a test sees it on the server.
    async fn close(&self, fh: u64) -> FsResult<()> {
        let flushed = self.fs.flush(fh).await;
        self.fs.release(fh);
        self.settle().await;
        flushed
    }

    /// Wait for the background uploads.
    async fn settle(&self) {
        assert!(
            self.fs.wait_for_uploads(Duration::from_secs(10)).await,
            "uploads did not finish"
        );
    }

    /// `mkdir -p`.
    async fn mkdir_p(&self, dir: &str) -> FsResult<()> {
        let mut ino = self.walk("").await?.attr.ino;
        for name in dir.split('/').filter(|s| !s.is_empty()) {
            ino = match self.fs.lookup(ino, name).await {
                Ok(entry) => entry.attr.ino,
                Err(_) => self.fs.mkdir(ino, name).await?.attr.ino,
            };
        }
        Ok(())
    }

    async fn write_at(&self, path: &str, offset: u64, data: &[u8]) -> FsResult<()> {
        let entry = self.walk(path).await?;
        let opened = self
            .fs
            .open(
                entry.attr.ino,
                OpenMode {
                    write: true,
                    truncate: false,
                },
            )
            .await?;
        self.fs.write(opened.fh, offset, data).await?;
        self.close(opened.fh).await
    }

    async fn cat(&self, path: &str) -> FsResult<Vec<u8>> {
        let entry = self.walk(path).await?;
        let opened = self.fs.open(entry.attr.ino, OpenMode::default()).await?;
        let mut out = Vec::new();
        loop {
            let chunk = self.fs.read(opened.fh, out.len() as u64, 1000).await?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        self.fs.release(opened.fh);
        Ok(out)
    }

    async fn ls(&self, path: &str) -> Vec<String> {
        let ino = self.walk(path).await.unwrap().attr.ino;
        let fh = self.fs.opendir(ino).await.unwrap();
        let mut entries: Vec<DirEntry> = Vec::new();
        self.fs.readdir(ino, fh, 0, false, &mut entries).await.unwrap();
        self.fs.releasedir(fh);
        entries
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect()
    }

    async fn control(&self, file: &str, data: &str) -> FsResult<()> {
        let entry = self.walk(&format!(".lakefs/{file}")).await?;
        let opened = self
            .fs
            .open(
                entry.attr.ino,
                OpenMode {
                    write: true,
                    truncate: true,
                },
            )
            .await?;
        let result = self.fs.write(opened.fh, 0, data.as_bytes()).await.map(|_| ());
        self.fs.release(opened.fh);
        result
    }

    async fn status(&self) -> String {
        String::from_utf8(self.cat(".lakefs/status").await.unwrap()).unwrap()
    }

    async fn unlink(&self, path: &str) -> FsResult<()> {
        let (parent, name) = self.parent(path).await?;
        self.fs.unlink(parent, &name).await
    }

    async fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        let (parent, name) = self.parent(from).await?;
        let (new_parent, new_name) = self.parent(to).await?;
        self.fs.rename(parent, &name, new_parent, &new_name, false).await
    }

    fn staging(&self) -> String {
        crate::staging::staging_branch_name("test-host", "/mnt/test", "repo", "main")
    }

    fn on(&self, reference: &str) -> BTreeMap<String, Vec<u8>> {
        self.mock
            .snapshot("repo", reference)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.to_vec()))
            .collect()
    }
}

fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[tokio::test]
async fn first_write_creates_a_hidden_staging_branch_and_branch_readers_see_nothing() {
    let h = harness().await;
    assert_eq!(
        h.mock.is_hidden_branch("repo", &h.staging()),
        None,
        "no branch before a write"
    );
    h.write_file("a.txt", b"hello").await.unwrap();
    assert_eq!(h.mock.is_hidden_branch("repo", &h.staging()), Some(true));
    assert_eq!(h.on(&h.staging()), files(&[("a.txt", "hello")]));
    assert!(h.on("main").is_empty(), "main must not see uncommitted writes");
    assert_eq!(h.cat("a.txt").await.unwrap(), b"hello");
    assert_eq!(h.ls("").await, ["a.txt"]);
    let staging = String::from_utf8(h.cat(".lakefs/staging").await.unwrap()).unwrap();
    assert_eq!(staging.trim(), h.staging());
}

#[tokio::test]
async fn commit_merges_everything_into_the_branch_and_then_has_nothing_to_do() {
    let h = harness().await;
    h.write_file("dir/a", b"1").await.unwrap();
    h.write_file("b", b"2").await.unwrap();
    h.control("commit", "first\n").await.unwrap();
    assert_eq!(h.on("main"), files(&[("b", "2"), ("dir/a", "1")]));
    let head = h.mock.get_branch("repo", "main").await.unwrap().commit_id;
    assert_eq!(
        String::from_utf8(h.cat(".lakefs/commit").await.unwrap())
            .unwrap()
            .trim(),
        head
    );
    assert_eq!(h.on(&h.staging()), h.on("main"), "S is reset to B's new head");
    let err = h.control("commit", "again").await.unwrap_err();
    assert_eq!(err.errno, libc::ENODATA, "{err}");
    assert_eq!(
        h.cat("dir/a").await.unwrap(),
        b"1",
        "committed files read from the branch"
    );
    assert!(h.status().await.contains("uncommitted changes: 0"));
}

#[tokio::test]
async fn nothing_written_commit_is_enodata_and_bad_input_is_einval() {
    let h = harness().await;
    assert_eq!(h.control("commit", "msg").await.unwrap_err().errno, libc::ENODATA);
    assert_eq!(h.control("commit", "  \n").await.unwrap_err().errno, libc::EINVAL);
    assert_eq!(h.control("commit", "{not json").await.unwrap_err().errno, libc::EINVAL);
    assert_eq!(h.control("merge", "").await.unwrap_err().errno, libc::EINVAL);
    assert_eq!(h.control("merge", "nope").await.unwrap_err().errno, libc::EINVAL);
    assert_eq!(h.control("merge", "main").await.unwrap_err().errno, libc::EINVAL);
}

#[tokio::test]
async fn other_clients_see_their_own_writes_and_ours_after_the_commit() {
    let h = harness().await;
    h.mock.put_object("repo", "main", "theirs", "t").unwrap();
    h.write_file("ours", b"o").await.unwrap();
    assert_eq!(h.ls("").await, ["ours", "theirs"]);
    h.control("commit", r#"{"message":"m","metadata":{"k":"v"}}"#)
        .await
        .unwrap();
    assert_eq!(h.on("main"), files(&[("ours", "o"), ("theirs", "t")]));
    // Both are committed: main has no uncommitted changes left.
    assert!(h.mock.diff_branch("repo", "main", "").await.unwrap().items.is_empty());
}

#[tokio::test]
async fn overwrite_in_place_append_truncate_and_sparse_writes() {
    let h = harness().await;
    h.mock.put_object("repo", "main", "f", "abcdef").unwrap();
    h.mock.commit("repo", "main").unwrap();
    h.write_at("f", 2, b"XY").await.unwrap();
    assert_eq!(h.cat("f").await.unwrap(), b"abXYef");
    h.write_at("f", 6, b"gh").await.unwrap();
    assert_eq!(h.cat("f").await.unwrap(), b"abXYefgh");
    let ino = h.walk("f").await.unwrap().attr.ino;
    let entry =
        h.fs.setattr(
            ino,
            SetAttr {
                size: Some(3),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(entry.attr.size, 3);
    assert_eq!(
        h.on(&h.staging())["f"],
        b"abX",
        "truncate without a handle uploads at once"
    );
    h.write_at("f", 10, b"Z").await.unwrap();
    let mut expected = b"abX".to_vec();
    expected.resize(10, 0);
    expected.push(b'Z');
    assert_eq!(h.cat("f").await.unwrap(), expected);
    assert_eq!(h.walk("f").await.unwrap().attr.size, 11);
    h.write_file("f", b"new").await.unwrap();
    assert_eq!(h.cat("f").await.unwrap(), b"new");
    assert_eq!(h.on("main")["f"], b"abcdef");
}

#[tokio::test]
async fn unlink_hides_the_file_and_the_commit_deletes_it() {
    let h = harness().await;
    h.mock.put_object("repo", "main", "d/x", "1").unwrap();
    h.mock.put_object("repo", "main", "d/y", "2").unwrap();
    h.mock.commit("repo", "main").unwrap();
    h.unlink("d/x").await.unwrap();
    assert_eq!(h.ls("d").await, ["y"]);
    assert_eq!(h.walk("d/x").await.unwrap_err().errno, libc::ENOENT);
    h.unlink("d/y").await.unwrap();
    assert!(h.ls("d").await.is_empty(), "an emptied directory stays until rmdir");
    let root = h.walk("").await.unwrap().attr.ino;
    h.fs.rmdir(root, "d").await.unwrap();
    assert!(h.ls("").await.is_empty());
    assert_eq!(h.on("main").len(), 2);
    h.control("commit", "rm").await.unwrap();
    assert!(h.on("main").is_empty());
}

#[tokio::test]
async fn rename_files_and_directories() {
    let h = harness().await;
    h.mock.put_object("repo", "main", "src/a", "A").unwrap();
    h.mock.put_object("repo", "main", "src/sub/b", "B").unwrap();
    h.mock.commit("repo", "main").unwrap();
    h.write_file("src/c", b"C").await.unwrap();
    // Editor pattern: write a temp file, rename it over the original.
    h.write_file("src/.a.swp", b"A2").await.unwrap();
    h.rename("src/.a.swp", "src/a").await.unwrap();
    assert_eq!(h.cat("src/a").await.unwrap(), b"A2");
    assert_eq!(h.ls("src").await, ["a", "c", "sub"]);
    h.rename("src", "dst").await.unwrap();
    assert_eq!(h.walk("src").await.unwrap_err().errno, libc::ENOENT);
    assert_eq!(h.ls("dst").await, ["a", "c", "sub"]);
    assert_eq!(h.cat("dst/sub/b").await.unwrap(), b"B");
    assert_eq!(h.cat("dst/c").await.unwrap(), b"C");
    h.control("commit", "mv").await.unwrap();
    assert_eq!(
        h.on("main"),
        files(&[("dst/a", "A2"), ("dst/c", "C"), ("dst/sub/b", "B")])
    );
}

#[tokio::test]
async fn mkdir_is_local_until_a_file_lands_and_rmdir_refuses_non_empty() {
    let h = harness().await;
    let root = h.walk("").await.unwrap().attr.ino;
    h.fs.mkdir(root, "empty").await.unwrap();
    assert_eq!(h.fs.mkdir(root, "empty").await.unwrap_err().errno, libc::EEXIST);
    assert_eq!(h.ls("").await, ["empty"]);
    assert_eq!(h.walk("empty").await.unwrap().attr.kind, FileKind::Directory);
    h.write_file("empty/f", b"x").await.unwrap();
    assert_eq!(h.fs.rmdir(root, "empty").await.unwrap_err().errno, libc::ENOTEMPTY);
    h.unlink("empty/f").await.unwrap();
    h.fs.rmdir(root, "empty").await.unwrap();
    assert!(h.ls("").await.is_empty());
    assert!(h.on(&h.staging()).is_empty());
}

#[tokio::test]
async fn directories_keep_mode_owner_and_times_changed_through_the_mount() {
    let h = harness().await;
    let root = h.walk("").await.unwrap().attr.ino;
    let user = Owner { uid: 65534, gid: 65533 };
    let dir = h.fs.mkdir_as(root, "d", 0o711, user).await.unwrap();
    assert_eq!((dir.attr.perm, dir.attr.uid, dir.attr.gid), (0o711, 65534, 65533));
    // chmod and chown of a directory stick; the ctime moves, an explicit mtime is kept.
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let change = SetAttr {
        mode: Some(0o700),
        uid: Some(1),
        mtime: Some(mtime),
        ..SetAttr::default()
    };
    let entry = h.fs.setattr(dir.attr.ino, change).await.unwrap();
    assert_eq!((entry.attr.perm, entry.attr.uid, entry.attr.gid), (0o700, 1, 65533));
    assert_eq!(entry.attr.mtime, mtime);
    assert!(entry.attr.ctime > mtime);
    // Adding an entry moves the parent's mtime and ctime.
    h.write_file("d/f", b"x").await.unwrap();
    let after = h.walk("d").await.unwrap().attr;
    assert!(after.mtime > mtime);
    assert_eq!(after.perm, 0o700);
    // The attributes follow a rename and go with rmdir.
    let d = h.walk("").await.unwrap().attr.ino;
    h.fs.rename(d, "d", d, "e", false).await.unwrap();
    assert_eq!(h.walk("e").await.unwrap().attr.perm, 0o700);
    h.unlink("e/f").await.unwrap();
    h.fs.rmdir(root, "e").await.unwrap();
    let again = h.fs.mkdir(root, "e").await.unwrap();
    assert_eq!(again.attr.perm, FsConfig::default().dir_mode);
}

#[tokio::test]
async fn chmod_utimens_and_symlinks_use_the_reserved_metadata_keys() {
    let h = harness().await;
    h.write_file("f", b"data").await.unwrap();
    let ino = h.walk("f").await.unwrap().attr.ino;
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let entry =
        h.fs.setattr(
            ino,
            SetAttr {
                mode: Some(0o600),
                mtime: Some(mtime),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(entry.attr.perm, 0o600);
    assert_eq!(entry.attr.mtime, mtime);
    let metadata = h.mock.metadata("repo", &h.staging(), "f").unwrap();
    let perms: serde_json::Value = serde_json::from_str(&metadata[META_POSIX_PERMISSIONS]).unwrap();
    assert_eq!(perms["Mode"], 0o100600);
    assert_eq!(metadata[crate::lakefs::META_CLIENT_MTIME], "1000000");
    let root = h.walk("").await.unwrap().attr.ino;
    let link = h.fs.symlink(root, "link", "f").await.unwrap();
    assert_eq!(link.attr.kind, FileKind::Symlink);
    assert_eq!(h.fs.readlink(link.attr.ino).await.unwrap(), "f");
    assert_eq!(
        h.mock.metadata("repo", &h.staging(), "link").unwrap()[META_SYMLINK_TARGET],
        "f"
    );
    h.control("commit", "meta").await.unwrap();
    // After the commit the same names read from the branch, with the same attributes.
    assert_eq!(h.walk("f").await.unwrap().attr.perm, 0o600);
    assert_eq!(h.walk("link").await.unwrap().attr.kind, FileKind::Symlink);
}

#[tokio::test]
async fn merge_conflict_is_ebusy_names_the_path_and_a_retry_after_the_fix_succeeds() {
    let h = harness().await;
    h.mock.put_object("repo", "main", "shared", "base").unwrap();
    h.mock.commit("repo", "main").unwrap();
    h.write_file("shared", b"ours").await.unwrap();
    h.write_file("other", b"o").await.unwrap();
    h.mock.put_object("repo", "main", "shared", "theirs").unwrap();
    h.mock.commit("repo", "main").unwrap();
    let err = h.control("commit", "clash").await.unwrap_err();
    assert_eq!(err.errno, libc::EBUSY, "{err}");
    let status = h.status().await;
    assert!(status.contains("shared"), "{status}");
    assert_eq!(h.on("main")["shared"], b"theirs");
    assert!(!h.on("main").contains_key("other"), "nothing reaches main on failure");
    assert_eq!(
        h.cat("shared").await.unwrap(),
        b"ours",
        "the mount still shows its writes"
    );
    assert_eq!(h.cat("other").await.unwrap(), b"o");
    // Fix: the other side takes our version; the retry merges the commit already on S.
    h.mock.put_object("repo", "main", "shared", "ours").unwrap();
    h.mock.commit("repo", "main").unwrap();
    h.control("commit", "retry").await.unwrap();
    assert_eq!(h.on("main")["other"], b"o");
}

#[tokio::test]
async fn merge_hook_refusal_is_eperm_with_the_message_in_status() {
    let h = harness().await;
    h.mock.create_branch("repo", "ingest", "main", false).unwrap();
    let h = harness_on(h.mock.clone(), "lakefs://repo/ingest").await;
    h.mock.put_object("repo", "ingest", "sync/1.csv", "a,b").unwrap();
    assert_eq!(
        h.ls("sync").await,
        ["1.csv"],
        "other clients' uncommitted files are visible"
    );
    h.mock.set_merge_hook(Some(Box::new(|dest| {
        (dest == "main").then(|| "schema check failed: column x".into())
    })));
    let err = h.control("merge", "main").await.unwrap_err();
    assert_eq!(err.errno, libc::EPERM, "{err}");
    assert!(h.status().await.contains("schema check failed: column x"));
    assert!(h.on("main").is_empty());
    h.mock.set_merge_hook(None);
    h.control("merge", r#"{"into":"main","message":"expose"}"#)
        .await
        .unwrap();
    assert_eq!(h.on("main"), files(&[("sync/1.csv", "a,b")]));
    let merge = String::from_utf8(h.cat(".lakefs/merge").await.unwrap()).unwrap();
    assert!(merge.contains("ingest into main"), "{merge}");
}

#[tokio::test]
async fn discard_drops_every_uncommitted_change() {
    let h = harness().await;
    h.mock.put_object("repo", "main", "keep", "k").unwrap();
    h.mock.commit("repo", "main").unwrap();
    h.write_file("new", b"n").await.unwrap();
    h.unlink("keep").await.unwrap();
    h.control("discard", "\n").await.unwrap();
    assert_eq!(h.ls("").await, ["keep"]);
    assert!(h.on(&h.staging()).contains_key("keep"));
    assert!(!h.on(&h.staging()).contains_key("new"));
    assert_eq!(h.control("commit", "m").await.unwrap_err().errno, libc::ENODATA);
}

#[tokio::test]
async fn a_restarted_mount_resumes_its_staging_branch() {
    let h = harness().await;
    h.mock.put_object("repo", "main", "gone", "g").unwrap();
    h.mock.commit("repo", "main").unwrap();
    h.write_file("kept", b"written before the restart").await.unwrap();
    h.unlink("gone").await.unwrap();
    let again = harness_on(h.mock.clone(), "lakefs://repo/main").await;
    assert_eq!(again.ls("").await, ["kept"]);
    assert_eq!(again.cat("kept").await.unwrap(), b"written before the restart");
    again.write_at("kept", 0, b"W").await.unwrap();
    assert_eq!(again.cat("kept").await.unwrap(), b"Written before the restart");
    again.control("commit", "resumed").await.unwrap();
    assert_eq!(again.on("main"), files(&[("kept", "Written before the restart")]));
}

#[tokio::test]
async fn tags_and_read_only_mounts_refuse_every_change_with_erofs() {
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "main");
    mock.put_object("repo", "main", "f", "x").unwrap();
    mock.commit("repo", "main").unwrap();
    mock.create_tag("repo", "v1", "main").unwrap();
    let h = harness_on(mock.clone(), "lakefs://repo/v1").await;
    let root = h.walk("").await.unwrap().attr.ino;
    let file = h.walk("f").await.unwrap().attr.ino;
    let write = OpenMode {
        write: true,
        truncate: false,
    };
    assert_eq!(h.fs.open(file, write).await.unwrap_err().errno, libc::EROFS);
    assert_eq!(h.fs.create(root, "n", 0o644).await.unwrap_err().errno, libc::EROFS);
    assert_eq!(h.fs.mkdir(root, "d").await.unwrap_err().errno, libc::EROFS);
    assert_eq!(h.fs.unlink(root, "f").await.unwrap_err().errno, libc::EROFS);
    assert_eq!(
        h.fs.rename(root, "f", root, "g", false).await.unwrap_err().errno,
        libc::EROFS
    );
    assert_eq!(h.control("commit", "m").await.unwrap_err().errno, libc::EROFS);

    let read_only = harness_with(mock.clone(), "lakefs://repo/main", |c| FsConfig {
        read_only: true,
        ..c
    })
    .await;
    assert_eq!(
        read_only.fs.create(InodeNo::ROOT, "n", 0o644).await.unwrap_err().errno,
        libc::EROFS
    );
    assert_eq!(mock.is_hidden_branch("repo", &h.staging()), None);
}

#[tokio::test]
async fn background_upload_errors_reach_status_fsync_and_commit_and_lose_nothing() {
    let h = harness().await;
    h.write_file("f", b"first").await.unwrap();
    h.mock
        .fail_next("upload_file", LakeFsError::Unavailable("server down".into()));
    h.write_file("f", b"second")
        .await
        .expect("close returns before the upload, so its error is not close's");
    let status = h.status().await;
    assert!(status.contains("pending uploads: 1"), "{status}");
    assert!(status.contains("server down"), "{status}");
    assert_eq!(h.cat("f").await.unwrap(), b"second", "the local bytes stay");

    // fsync uploads and reports the upload's error.
    let entry = h.walk("f").await.unwrap();
    let mode = OpenMode {
        write: true,
        truncate: false,
    };
    let opened = h.fs.open(entry.attr.ino, mode).await.unwrap();
    h.fs.write(opened.fh, 6, b"!").await.unwrap();
    h.mock
        .fail_next("upload_file", LakeFsError::Unavailable("server down".into()));
    assert_eq!(h.fs.fsync(opened.fh).await.unwrap_err().errno, libc::EIO);
    h.close(opened.fh).await.unwrap();

    h.control("commit", "after the outage").await.unwrap();
    assert_eq!(h.on("main")["f"], b"second!");
}

#[tokio::test]
async fn with_sync_close_upload_errors_reach_close() {
    let h = harness_with(repo_server(), "lakefs://repo/main", |c| FsConfig {
        sync_close: true,
        ..c
    })
    .await;
    let (fs, mock) = (&h.fs, &h.mock);
    let (_, opened) = fs.create(InodeNo::ROOT, "f", 0o644).await.unwrap();
    fs.write(opened.fh, 0, b"data").await.unwrap();
    mock.fail_next("upload_file", LakeFsError::Unavailable("server down".into()));
    assert_eq!(fs.flush(opened.fh).await.unwrap_err().errno, libc::EIO);
    fs.flush(opened.fh).await.unwrap();
    fs.release(opened.fh);
    assert_eq!(fs.uploads_running(), 0, "nothing left for the background");
    let staging_branch = crate::staging::staging_branch_name("test-host", "/mnt/test", "repo", "main");
    assert_eq!(&mock.snapshot("repo", &staging_branch).unwrap()["f"][..], b"data");
}

#[tokio::test]
async fn close_returns_before_the_upload_and_a_commit_waits_for_it() {
    let h = harness().await;
    h.mock.set_upload_delay(Duration::from_millis(200));
    let root = h.walk("").await.unwrap().attr.ino;
    let started = std::time::Instant::now();
    for i in 0..20 {
        let (_, opened) = h.fs.create(root, &format!("f{i}"), 0o644).await.unwrap();
        h.fs.write(opened.fh, 0, format!("file {i}").as_bytes()).await.unwrap();
        h.fs.flush(opened.fh).await.unwrap();
        h.fs.release(opened.fh);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "20 closes waited for uploads: {:?}",
        started.elapsed()
    );
    assert!(h.fs.uploads_running() > 0);
    assert_eq!(
        h.cat("f7").await.unwrap(),
        b"file 7",
        "read-your-writes before the upload"
    );
    h.control("commit", "twenty files").await.unwrap();
    let main = h.on("main");
    assert_eq!((0..20).filter(|i| main.contains_key(&format!("f{i}"))).count(), 20);
    assert_eq!(main["f7"], b"file 7");
}

#[tokio::test]
async fn writes_past_the_staging_budget_fail_with_enospc() {
    let h = harness().await;
    let root = h.walk("").await.unwrap().attr.ino;
    let (_, opened) = h.fs.create(root, "big", 0o644).await.unwrap();
    let err = h.fs.write(opened.fh, 0, &vec![0u8; (1 << 20) + 1]).await.unwrap_err();
    assert_eq!(err.errno, libc::ENOSPC);
    h.fs.write(opened.fh, 0, b"fits").await.unwrap();
    h.fs.flush(opened.fh).await.unwrap();
    h.fs.release(opened.fh);
}

#[tokio::test]
async fn special_files_and_files_of_other_users_keep_type_owner_and_device_through_chmod_and_commit() {
    let h = harness().await;
    let root = h.walk("").await.unwrap().attr.ino;
    let user = Owner { uid: 65534, gid: 65534 };
    let fifo = h.fs.mknod(root, "fifo", libc::S_IFIFO | 0o640, 0, user).await.unwrap();
    assert_eq!(
        (fifo.attr.kind, fifo.attr.perm, fifo.attr.uid),
        (FileKind::Fifo, 0o640, 65534)
    );
    let dev =
        h.fs.mknod(root, "dev", libc::S_IFCHR | 0o600, 0x0103, user)
            .await
            .unwrap();
    assert_eq!((dev.attr.kind, dev.attr.rdev), (FileKind::CharDevice, 0x0103));
    // Uploaded at once: the staging branch has the type in the recorded mode.
    let metadata = h.mock.metadata("repo", &h.staging(), "fifo").unwrap();
    let perms: serde_json::Value = serde_json::from_str(&metadata[META_POSIX_PERMISSIONS]).unwrap();
    assert_eq!(perms["Mode"], libc::S_IFIFO | 0o640);
    // chmod changes the permission bits only; chown keeps the device number.
    let entry =
        h.fs.setattr(
            fifo.attr.ino,
            SetAttr {
                mode: Some(0o604),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((entry.attr.kind, entry.attr.perm), (FileKind::Fifo, 0o604));
    let entry =
        h.fs.setattr(
            dev.attr.ino,
            SetAttr {
                uid: Some(7),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (entry.attr.kind, entry.attr.rdev, entry.attr.uid),
        (FileKind::CharDevice, 0x0103, 7)
    );
    // A regular file created by another user is that user's, with the mount's default mode.
    let (file, opened) = h.fs.create_as(root, "mine", 0o644, user).await.unwrap();
    h.fs.flush(opened.fh).await.unwrap();
    h.fs.release(opened.fh);
    assert_eq!(
        (file.attr.uid, file.attr.gid, file.attr.kind),
        (65534, 65534, FileKind::RegularFile)
    );
    // Directories are not special files.
    let err = h.fs.mknod(root, "d", libc::S_IFDIR | 0o755, 0, user).await.unwrap_err();
    assert_eq!(err.errno, libc::EINVAL);
    h.control("commit", "special").await.unwrap();
    assert_eq!(h.walk("fifo").await.unwrap().attr.kind, FileKind::Fifo);
    assert_eq!(h.walk("fifo").await.unwrap().attr.perm, 0o604);
    assert_eq!(h.walk("dev").await.unwrap().attr.rdev, 0x0103);
    assert_eq!(h.walk("mine").await.unwrap().attr.uid, 65534);
}

#[tokio::test]
async fn paths_longer_than_a_lakefs_key_are_enametoolong_to_create_and_absent_to_look_up() {
    let h = harness().await;
    let segment = "d".repeat(250);
    let mut dir = h.walk("").await.unwrap().attr.ino;
    for _ in 0..4 {
        dir = h.fs.mkdir(dir, &segment).await.unwrap().attr.ino; // 4 * 251 = 1004 bytes of prefix
    }
    let long = "f".repeat(30);
    assert_eq!(
        h.fs.create(dir, &long, 0o644).await.unwrap_err().errno,
        libc::ENAMETOOLONG
    );
    assert_eq!(h.fs.mkdir(dir, &long).await.unwrap_err().errno, libc::ENAMETOOLONG);
    assert_eq!(
        h.fs.symlink(dir, &long, "t").await.unwrap_err().errno,
        libc::ENAMETOOLONG
    );
    assert_eq!(h.fs.lookup(dir, &long).await.unwrap_err().errno, libc::ENOENT);
    // A name that still fits works.
    h.fs.create(dir, "short", 0o644).await.unwrap();
}

#[tokio::test]
async fn hard_links_are_refused() {
    let h = harness().await;
    let root = h.walk("").await.unwrap().attr.ino;
    assert_eq!(h.fs.refuse_write(root, "link").errno, libc::EPERM);
}

/// One step of the random model test.
#[derive(Debug, Clone)]
enum Step {
    /// Write a whole file; `true`: wait for its background upload, `false`: leave it in flight.
    Write(u8, Vec<u8>, bool),
    WriteAt(u8, u8, Vec<u8>),
    Truncate(u8, u8),
    Rename(u8, u8),
    Unlink(u8),
    Commit,
    Discard,
}

fn step() -> impl Strategy<Value = Step> {
    let name = 0u8..4;
    let data = proptest::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        3 => (name.clone(), data.clone(), any::<bool>()).prop_map(|(n, d, s)| Step::Write(n, d, s)),
        2 => (name.clone(), 0u8..16, data).prop_map(|(n, o, d)| Step::WriteAt(n, o, d)),
        1 => (name.clone(), 0u8..16).prop_map(|(n, s)| Step::Truncate(n, s)),
        1 => (name.clone(), name.clone()).prop_map(|(a, b)| Step::Rename(a, b)),
        1 => name.prop_map(Step::Unlink),
        1 => Just(Step::Commit),
        1 => Just(Step::Discard),
    ]
}

fn key(n: u8) -> String {
    format!("d/f{n}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random sequences against a model: `view` is what the mount shows, `committed` what the branch holds.
    #[test]
    fn random_sequences_match_the_model(steps in proptest::collection::vec(step(), 1..14)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let h = harness().await;
            // Uploads left in flight overlap the next steps.
            h.mock.set_upload_delay(Duration::from_millis(2));
            let mut view: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut committed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            // `d` exists once made, until a discard drops local directories.
            let mut dir_exists = false;
            for step in steps {
                match step {
                    Step::Write(n, data, settle) => {
                        dir_exists = true;
                        if settle {
                            h.write_file(&key(n), &data).await.unwrap();
                        } else {
                            h.write_file_in_background(&key(n), &data).await.unwrap();
                        }
                        view.insert(key(n), data);
                    }
                    Step::WriteAt(n, offset, data) => {
                        let Some(current) = view.get_mut(&key(n)) else { continue };
                        h.write_at(&key(n), u64::from(offset), &data).await.unwrap();
                        let end = usize::from(offset) + data.len();
                        if current.len() < end {
                            current.resize(end, 0);
                        }
                        current[usize::from(offset)..end].copy_from_slice(&data);
                    }
                    Step::Truncate(n, size) => {
                        let Some(current) = view.get_mut(&key(n)) else { continue };
                        let ino = h.walk(&key(n)).await.unwrap().attr.ino;
                        let change = SetAttr { size: Some(u64::from(size)), ..SetAttr::default() };
                        h.fs.setattr(ino, change).await.unwrap();
                        current.resize(usize::from(size), 0);
                    }
                    Step::Rename(a, b) => {
                        if a == b || !view.contains_key(&key(a)) {
                            continue;
                        }
                        h.rename(&key(a), &key(b)).await.unwrap();
                        let data = view.remove(&key(a)).unwrap();
                        view.insert(key(b), data);
                    }
                    Step::Unlink(n) => {
                        if view.remove(&key(n)).is_some() {
                            h.unlink(&key(n)).await.unwrap();
                        }
                    }
                    Step::Commit => {
                        let result = h.control("commit", "step").await;
                        if view == committed {
                            prop_assert_eq!(result.unwrap_err().errno, libc::ENODATA);
                        } else {
                            result.unwrap();
                            committed = view.clone();
                        }
                    }
                    Step::Discard => {
                        h.control("discard", "").await.unwrap();
                        view = committed.clone();
                        dir_exists = !committed.is_empty();
                    }
                }
                for (path, data) in &view {
                    prop_assert_eq!(&h.cat(path).await.unwrap(), data, "{}", path);
                }
                let listed: Vec<String> = if !dir_exists {
                    prop_assert_eq!(h.walk("d").await.unwrap_err().errno, libc::ENOENT);
                    Vec::new()
                } else {
                    h.ls("d").await.into_iter().map(|n| format!("d/{n}")).collect()
                };
                prop_assert_eq!(listed, view.keys().cloned().collect::<Vec<_>>());
                prop_assert_eq!(&h.on("main"), &committed);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn files_not_uploaded_at_a_crash_are_uploaded_by_the_restarted_mount() {
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "main");
    let staging = tempfile::tempdir().unwrap();
    let source = || Source::parse("lakefs://repo/main").unwrap();
    let fs = Filesystem::new(mock.clone(), source(), config(staging.path()))
        .await
        .unwrap();
    let (_, opened) = fs.create(InodeNo::ROOT, "open.txt", 0o644).await.unwrap();
    fs.write(opened.fh, 0, b"written, never closed").await.unwrap();
    let (_, closed) = fs.create(InodeNo::ROOT, "closed.txt", 0o644).await.unwrap();
    fs.write(closed.fh, 0, b"closed").await.unwrap();
    fs.flush(closed.fh).await.unwrap();
    fs.release(closed.fh);
    assert!(fs.wait_for_uploads(Duration::from_secs(10)).await);
    let staging_branch = crate::staging::staging_branch_name("test-host", "/mnt/test", "repo", "main");
    assert!(!mock.snapshot("repo", &staging_branch).unwrap().contains_key("open.txt"));
    // kill -9: nothing is dropped, nothing more is uploaded.
    std::mem::forget(fs);

    let fs = Filesystem::new(mock.clone(), source(), config(staging.path()))
        .await
        .unwrap();
    let on_staging = mock.snapshot("repo", &staging_branch).unwrap();
    assert_eq!(&on_staging["open.txt"][..], b"written, never closed");
    assert_eq!(&on_staging["closed.txt"][..], b"closed");
    let entry = fs.lookup(InodeNo::ROOT, "open.txt").await.unwrap();
    assert_eq!(entry.attr.size, 21);
    drop(fs);
    // Uploaded and clean: a third start finds nothing left to recover.
    let fs = Filesystem::new(mock.clone(), source(), config(staging.path()))
        .await
        .unwrap();
    assert_eq!(
        mock.requests("upload_file"),
        2,
        "one upload before the crash, one recovery, none after"
    );
    drop(fs);
}

#[tokio::test]
async fn a_write_to_an_open_file_during_a_commit_is_uploaded_by_its_close() {
    // The harness must outlive the merge hook, which writes through it while the commit runs.
    let h: &'static Harness = Box::leak(Box::new(harness().await));
    let (parent, name) = h.parent("open.txt").await.unwrap();
    let fh = h.fs.create(parent, &name, 0o644).await.unwrap().1.fh;
    h.fs.write(fh, 0, b"before").await.unwrap();
    // Between the commit's uploads and its end, the writer (which takes no operation lock) writes again.
    h.mock.set_merge_hook(Some(Box::new(move |_| {
        futures::executor::block_on(h.fs.write(fh, 0, b"during the commit")).unwrap();
        None
    })));
    h.control("commit", "first").await.unwrap();
    h.mock.set_merge_hook(None);
    assert_eq!(h.on("main"), files(&[("open.txt", "before")]));
    h.fs.flush(fh).await.unwrap();
    h.fs.release(fh);
    h.control("commit", "second").await.unwrap();
    assert_eq!(h.on("main"), files(&[("open.txt", "during the commit")]));
    assert_eq!(h.cat("open.txt").await.unwrap(), b"during the commit");
}

#[tokio::test]
async fn a_file_created_during_a_commit_is_uploaded_by_its_close() {
    let h: &'static Harness = Box::leak(Box::new(harness().await));
    h.write_file("existing.txt", b"x").await.unwrap();
    let created = Arc::new(std::sync::Mutex::new(None));
    let slot = created.clone();
    h.mock.set_merge_hook(Some(Box::new(move |_| {
        futures::executor::block_on(async {
            let (parent, name) = h.parent("new.txt").await.unwrap();
            let fh = h.fs.create(parent, &name, 0o644).await.unwrap().1.fh;
            h.fs.write(fh, 0, b"created meanwhile").await.unwrap();
            *slot.lock().unwrap() = Some(fh);
        });
        None
    })));
    h.control("commit", "first").await.unwrap();
    h.mock.set_merge_hook(None);
    let fh = created.lock().unwrap().take().unwrap();
    h.fs.flush(fh).await.unwrap();
    h.fs.release(fh);
    assert_eq!(h.cat("new.txt").await.unwrap(), b"created meanwhile");
    h.control("commit", "second").await.unwrap();
    assert_eq!(
        h.on("main"),
        files(&[("existing.txt", "x"), ("new.txt", "created meanwhile")])
    );
}

#[tokio::test]
async fn a_truncating_rewrite_during_a_commit_is_uploaded_by_its_close() {
    let h: &'static Harness = Box::leak(Box::new(harness().await));
    h.write_file("f", b"old").await.unwrap();
    h.control("commit", "old").await.unwrap();
    let ino = h.walk("f").await.unwrap().attr.ino;
    let mode = OpenMode {
        write: true,
        truncate: true,
    };
    let fh = h.fs.open(ino, mode).await.unwrap().fh;
    h.mock.set_merge_hook(Some(Box::new(move |_| {
        futures::executor::block_on(h.fs.write(fh, 0, b"new data")).unwrap();
        None
    })));
    h.control("commit", "truncated").await.unwrap();
    h.mock.set_merge_hook(None);
    h.fs.flush(fh).await.unwrap();
    h.fs.release(fh);
    assert_eq!(h.cat("f").await.unwrap(), b"new data");
    h.control("commit", "rewritten").await.unwrap();
    assert_eq!(h.on("main"), files(&[("f", "new data")]));
    assert_eq!(h.cat("f").await.unwrap(), b"new data");
}

/// Bytes written to an open file while a commit runs (after the commit uploaded the file) must still be uploaded
/// by the file's close and reach the next commit.
#[tokio::test]
async fn a_write_landing_during_a_commit_is_uploaded_at_close() {
    use crate::lakefs::fault::{FaultPlan, FaultyLakeFs};
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "main");
    // Every call takes 50 ms, so the commit is still running when the write lands.
    let plan = Arc::new(FaultPlan::parse("latency=1@50ms").unwrap());
    let slow = Arc::new(FaultyLakeFs::new(mock.clone(), plan));
    let staging = tempfile::tempdir().unwrap();
    let fs = Filesystem::new(
        slow,
        Source::parse("lakefs://repo/main").unwrap(),
        config(staging.path()),
    )
    .await
    .unwrap();
    let root = fs.getattr(InodeNo::ROOT).await.unwrap().attr.ino;
    async fn open_commit<L: LakeFs>(fs: &Filesystem<L>, root: InodeNo) -> u64 {
        let dir = fs.lookup(root, ".lakefs").await.unwrap().attr.ino;
        let file = fs.lookup(dir, "commit").await.unwrap().attr.ino;
        let mode = OpenMode {
            write: true,
            truncate: true,
        };
        fs.open(file, mode).await.unwrap().fh
    }
    // A first file creates the staging branch, so the commit below starts with the upload.
    let (_, other) = fs.create(root, "other", 0o644).await.unwrap();
    fs.flush(other.fh).await.unwrap();
    fs.release(other.fh);
    let (_, opened) = fs.create(root, "f", 0o644).await.unwrap();
    fs.write(opened.fh, 0, b"first").await.unwrap();
    let commit = open_commit(&fs, root).await;
    let (committed, written) = tokio::join!(fs.write(commit, 0, b"during\n"), async {
        // After the commit's upload of "first" (at ~50 ms), before its merge and reset (~250-300 ms).
        tokio::time::sleep(Duration::from_millis(125)).await;
        fs.write(opened.fh, 0, b"second, longer").await
    });
    committed.unwrap();
    written.unwrap();
    fs.release(commit);
    fs.flush(opened.fh).await.unwrap();
    fs.release(opened.fh);
    let commit = open_commit(&fs, root).await;
    fs.write(commit, 0, b"after\n").await.unwrap();
    fs.release(commit);
    assert_eq!(
        &mock.snapshot("repo", "main").unwrap()["f"][..],
        b"second, longer",
        "the bytes written during the commit were lost"
    );
}

/// Files created, written and closed while commits keep running concurrently all reach the branch: a commit never
/// retires a file between its creation and its first handle, nor one whose bytes it did not upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_written_during_concurrent_commits_all_reach_the_branch() {
    use crate::lakefs::fault::{FaultPlan, FaultyLakeFs};
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "main");
    let plan = Arc::new(FaultPlan::parse("latency=1@2ms").unwrap());
    let slow = Arc::new(FaultyLakeFs::new(mock.clone(), plan));
    let staging = tempfile::tempdir().unwrap();
    let fs = Arc::new(
        Filesystem::new(
            slow,
            Source::parse("lakefs://repo/main").unwrap(),
            config(staging.path()),
        )
        .await
        .unwrap(),
    );
    let root = fs.getattr(InodeNo::ROOT).await.unwrap().attr.ino;
    async fn commit<L: LakeFs>(fs: &Filesystem<L>, root: InodeNo) -> FsResult<()> {
        let dir = fs.lookup(root, ".lakefs").await?.attr.ino;
        let file = fs.lookup(dir, "commit").await?.attr.ino;
        let mode = OpenMode {
            write: true,
            truncate: true,
        };
        let fh = fs.open(file, mode).await?.fh;
        let result = fs.write(fh, 0, b"concurrent\n").await.map(|_| ());
        fs.release(fh);
        result
    }
    const FILES: usize = 80;
    let writer = tokio::spawn({
        let fs = fs.clone();
        async move {
            for i in 0..FILES {
                let (_, opened) = fs.create(root, &format!("f{i}"), 0o644).await.unwrap();
                fs.write(opened.fh, 0, format!("contents of f{i}").as_bytes())
                    .await
                    .unwrap();
                fs.flush(opened.fh).await.unwrap();
                fs.release(opened.fh);
            }
        }
    });
    while !writer.is_finished() {
        match commit(&fs, root).await {
            Ok(()) => {}
            Err(err) if err.errno == libc::ENODATA => {}
            Err(err) => panic!("commit: {err}"),
        }
    }
    writer.await.unwrap();
    let _ = commit(&fs, root).await;
    let on_main = mock.snapshot("repo", "main").unwrap();
    let missing: Vec<usize> = (0..FILES)
        .filter(|i| on_main.get(&format!("f{i}")).map(|b| &b[..]) != Some(format!("contents of f{i}").as_bytes()))
        .collect();
    assert!(missing.is_empty(), "files lost or wrong on main: {missing:?}");
}

#[tokio::test]
async fn mkdir_in_a_repository_creates_a_branch_and_rmdir_of_a_branch_is_refused() {
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "trunk");
    mock.put_object("repo", "trunk", "data.csv", "a,b\n").unwrap();
    mock.commit("repo", "trunk").unwrap();
    mock.put_object("repo", "trunk", "uncommitted", "x").unwrap();
    mock.create_tag("repo", "v1", "trunk").unwrap();
    let h = harness_on(mock.clone(), "lakefs://").await;
    let repo = h.walk("repo").await.unwrap().attr.ino;

    let entry = h.fs.mkdir(repo, "feature-1").await.unwrap();
    assert_eq!(entry.attr.kind, FileKind::Directory);
    assert_eq!(
        mock.is_hidden_branch("repo", "feature-1"),
        Some(false),
        "a listed branch"
    );
    assert_eq!(
        mock.snapshot("repo", "feature-1").unwrap().keys().collect::<Vec<_>>(),
        ["data.csv"],
        "made from the default branch's head commit"
    );
    assert!(h.ls("repo").await.contains(&"feature-1".to_string()));
    h.write_file("repo/feature-1/new.txt", b"new").await.unwrap();
    assert_eq!(h.ls("repo/feature-1").await, ["data.csv", "new.txt"]);

    let errno = |r: FsResult<Entry>| r.err().map(|e| e.errno);
    assert_eq!(errno(h.fs.mkdir(repo, "feature-1").await), Some(libc::EEXIST));
    assert_eq!(errno(h.fs.mkdir(repo, "v1").await), Some(libc::EEXIST), "a tag's name");
    let requests = mock.total_requests();
    for bad in ["bad.name", "-x", "a~1", "_fuse-trunk-0123abcd"] {
        assert_eq!(errno(h.fs.mkdir(repo, bad).await), Some(libc::EINVAL), "{bad}");
    }
    assert_eq!(mock.total_requests(), requests, "invalid names never reach the server");

    let refused = h.fs.rmdir(repo, "feature-1").await.unwrap_err();
    assert_eq!(refused.errno, libc::EPERM);
    assert_eq!(mock.is_hidden_branch("repo", "feature-1"), Some(false), "still there");

    let root = h.walk("").await.unwrap().attr.ino;
    assert!(
        h.fs.mkdir(root, "newrepo").await.is_err(),
        "repositories are not made by mkdir"
    );
}

#[tokio::test]
async fn mkdir_of_a_branch_on_a_read_only_mount_is_erofs() {
    let h = harness_with(repo_server(), "lakefs://repo", |c| FsConfig { read_only: true, ..c }).await;
    let (fs, mock) = (&h.fs, &h.mock);
    let err = fs.mkdir(InodeNo::ROOT, "dev").await.unwrap_err();
    assert_eq!(err.errno, libc::EROFS);
    assert_eq!(fs.rmdir(InodeNo::ROOT, "main").await.unwrap_err().errno, libc::EROFS);
    assert_eq!(mock.is_hidden_branch("repo", "dev"), None);
}

async fn eager_harness() -> Harness {
    harness_with(repo_server(), "lakefs://repo/main", |c| FsConfig {
        upload_eager: true,
        max_staging: 64 << 20,
        ..c
    })
    .await
}

/// Let spawned part uploads and aborts run.
async fn settle() {
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn upload_eager_sends_full_parts_while_writing_and_the_tail_on_close() {
    use crate::fs::write::eager::EAGER_PART_SIZE;
    let h = eager_harness().await;
    let data: Vec<u8> = (0..EAGER_PART_SIZE * 7 / 2).map(|i| (i % 251) as u8).collect();
    let (_, opened) = h.fs.create(InodeNo::ROOT, "big.bin", 0o644).await.unwrap();
    for (i, chunk) in data.chunks(8192).enumerate() {
        h.fs.write(opened.fh, (i * 8192) as u64, chunk).await.unwrap();
    }
    settle().await;
    assert_eq!(h.mock.requests("create_multipart"), 1);
    assert_eq!(h.mock.requests("upload_part"), 3, "the full parts went before close");
    h.close(opened.fh).await.unwrap();
    assert_eq!(h.mock.requests("upload_part"), 4, "close sent only the tail");
    assert_eq!(h.mock.requests("complete_multipart"), 1);
    assert_eq!(h.mock.requests("upload_file"), 0);
    assert_eq!(h.mock.open_multipart_uploads(), 0);
    let staged = h.mock.snapshot("repo", &h.staging()).unwrap();
    assert_eq!(staged["big.bin"].as_ref(), &data[..]);
    assert!(h.fs.flush(opened.fh).await.is_ok());
}

#[tokio::test]
async fn upload_eager_falls_back_to_a_whole_upload_when_sent_bytes_change() {
    use crate::fs::write::eager::EAGER_PART_SIZE;
    let h = eager_harness().await;
    let mut data = vec![7u8; (EAGER_PART_SIZE * 2) as usize];
    let (_, opened) = h.fs.create(InodeNo::ROOT, "f", 0o644).await.unwrap();
    for (i, chunk) in data.chunks(16384).enumerate() {
        h.fs.write(opened.fh, (i * 16384) as u64, chunk).await.unwrap();
    }
    settle().await;
    assert_eq!(h.mock.requests("upload_part"), 2);
    // Seek back and rewrite a byte of the first part: the parts sent are stale now.
    h.fs.write(opened.fh, 10, b"X").await.unwrap();
    data[10] = b'X';
    h.fs.flush(opened.fh).await.unwrap();
    h.fs.release(opened.fh);
    settle().await;
    assert_eq!(h.mock.requests("complete_multipart"), 0);
    assert_eq!(h.mock.requests("upload_file"), 1, "uploaded whole");
    assert_eq!(h.mock.open_multipart_uploads(), 0, "the spoiled upload was aborted");
    assert_eq!(h.mock.snapshot("repo", &h.staging()).unwrap()["f"].as_ref(), &data[..]);

    // A truncation below the bytes sent spoils it as well, even when the file grows back past them.
    let entry = h.walk("f").await.unwrap();
    let opened =
        h.fs.open(
            entry.attr.ino,
            OpenMode {
                write: true,
                truncate: false,
            },
        )
        .await
        .unwrap();
    let more = vec![9u8; (EAGER_PART_SIZE / 2) as usize];
    h.fs.write(opened.fh, EAGER_PART_SIZE * 2, &more).await.unwrap();
    h.fs.write(opened.fh, EAGER_PART_SIZE * 5 / 2, &more).await.unwrap();
    settle().await;
    let parts = h.mock.requests("upload_part");
    assert!(parts > 2, "a new eager upload started");
    h.fs.setattr(
        entry.attr.ino,
        SetAttr {
            size: Some(5),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    let tail = vec![1u8; (EAGER_PART_SIZE * 3) as usize];
    h.fs.write(opened.fh, EAGER_PART_SIZE * 3, &tail).await.unwrap();
    h.fs.flush(opened.fh).await.unwrap();
    h.fs.release(opened.fh);
    settle().await;
    let mut expected = data[..5].to_vec();
    expected.resize((EAGER_PART_SIZE * 3) as usize, 0);
    expected.extend_from_slice(&tail);
    assert_eq!(
        h.mock.snapshot("repo", &h.staging()).unwrap()["f"].as_ref(),
        &expected[..]
    );
    assert_eq!(h.mock.requests("complete_multipart"), 0);
    assert_eq!(h.mock.open_multipart_uploads(), 0);
}

#[tokio::test]
async fn a_committed_file_shows_its_final_size_to_the_kernel() {
    let h = harness().await;
    let (parent, name) = h.parent("f").await.unwrap();
    let (entry, opened) = h.fs.create(parent, &name, 0o644).await.unwrap();
    assert_eq!(entry.attr.size, 0);
    // Writes through a handle never ask for attributes: the kernel tracks the size itself.
    h.fs.write(opened.fh, 0, b"final bytes").await.unwrap();
    h.fs.flush(opened.fh).await.unwrap();
    h.fs.release(opened.fh);
    h.control("commit", "c").await.unwrap();
    // The kernel's cached entry still names the inode from `create`; its attributes are the committed file's.
    assert_eq!(h.fs.getattr(entry.attr.ino).await.unwrap().attr.size, 11);
}

#[tokio::test]
async fn a_truncating_open_of_a_file_deleted_meanwhile_starts_it_afresh() {
    let h = harness().await;
    h.write_file("f", b"old").await.unwrap();
    h.control("commit", "old").await.unwrap();
    let ino = h.walk("f").await.unwrap().attr.ino;
    // Another client deletes the file after the kernel looked it up.
    h.mock.delete_object("repo", "main", "f").unwrap();
    h.mock.commit("repo", "main").unwrap();
    let mode = OpenMode {
        write: true,
        truncate: true,
    };
    let fh = h.fs.open(ino, mode).await.unwrap().fh;
    h.fs.write(fh, 0, b"new").await.unwrap();
    h.fs.flush(fh).await.unwrap();
    h.fs.release(fh);
    assert_eq!(h.cat("f").await.unwrap(), b"new");
    assert_eq!(
        h.mock.snapshot("repo", "main").unwrap().get("f"),
        None,
        "not committed yet"
    );
}

#[tokio::test]
async fn new_names_in_a_directory_empty_on_the_branch_need_no_requests_until_the_ttl_ends() {
    let ttl = Duration::from_millis(300);
    let h = harness_with(repo_server(), "lakefs://repo/main", |c| FsConfig {
        metadata_ttl: ttl,
        ..c
    })
    .await;
    let (fs, mock) = (&h.fs, &h.mock);
    assert_eq!(fs.lookup(InodeNo::ROOT, "new").await.unwrap_err().errno, libc::ENOENT);
    let dir = fs.mkdir(InodeNo::ROOT, "new").await.unwrap().attr.ino;
    let (stats, lists) = (mock.requests("stat_object"), mock.requests("list_objects"));
    for i in 0..50 {
        let name = format!("f{i}");
        assert_eq!(fs.lookup(dir, &name).await.unwrap_err().errno, libc::ENOENT);
        let (_, opened) = fs.create(dir, &name, 0o644).await.unwrap();
        fs.flush(opened.fh).await.unwrap();
        fs.release(opened.fh);
    }
    assert_eq!(
        (mock.requests("stat_object"), mock.requests("list_objects")),
        (stats, lists),
        "lookups below a directory known empty asked the server"
    );
    // Another client writes below it: visible once the emptiness is older than the TTL (one listing).
    mock.put_object("repo", "main", "new/theirs", "x").unwrap();
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(fs.lookup(dir, "theirs").await.unwrap().attr.size, 1);
    assert_eq!(
        fs.lookup(dir, "f7").await.unwrap().attr.size,
        0,
        "own files come from the overlay"
    );
}

#[tokio::test]
async fn an_eager_upload_of_a_file_deleted_while_written_is_aborted() {
    use crate::fs::write::eager::EAGER_PART_SIZE;
    let h = eager_harness().await;
    let root = h.walk("").await.unwrap().attr.ino;
    let (_, opened) = h.fs.create(root, "scratch.bin", 0o644).await.unwrap();
    let data = vec![7u8; (EAGER_PART_SIZE * 2) as usize];
    h.fs.write(opened.fh, 0, &data).await.unwrap();
    settle().await;
    assert_eq!(h.mock.open_multipart_uploads(), 1, "parts went while writing");
    h.fs.unlink(root, "scratch.bin").await.unwrap();
    h.close(opened.fh).await.unwrap();
    settle().await;
    assert_eq!(h.mock.open_multipart_uploads(), 0, "the abandoned upload was aborted");
    assert!(!h
        .mock
        .snapshot("repo", &h.staging())
        .unwrap()
        .contains_key("scratch.bin"));
}
