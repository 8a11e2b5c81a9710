//! Core tests against `MockLakeFs`: no kernel, no server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::lakefs::mock::MockLakeFs;
use crate::lakefs::LakeFsError;

fn config() -> FsConfig {
    FsConfig {
        metadata_ttl: Duration::from_millis(200),
        block_size: 4096,
        ..FsConfig::default()
    }
}

fn server() -> Arc<MockLakeFs> {
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "main");
    mock
}

async fn mount(mock: &Arc<MockLakeFs>, source: &str) -> Arc<Filesystem<MockLakeFs>> {
    Filesystem::new(mock.clone(), Source::parse(source).unwrap(), config())
        .await
        .unwrap()
}

/// Resolve a `/`-separated path from the root.
async fn walk(fs: &Filesystem<MockLakeFs>, path: &str) -> FsResult<Entry> {
    let mut entry = fs.getattr(InodeNo::ROOT).await?;
    for name in path.split('/').filter(|s| !s.is_empty()) {
        entry = fs.lookup(entry.attr.ino, name).await?;
    }
    Ok(entry)
}

async fn list(fs: &Filesystem<MockLakeFs>, ino: InodeNo) -> Vec<String> {
    let fh = fs.opendir(ino).await.unwrap();
    let mut entries: Vec<DirEntry> = Vec::new();
    fs.readdir(ino, fh, 0, false, &mut entries).await.unwrap();
    fs.releasedir(fh);
    entries
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n != "." && n != "..")
        .collect()
}

async fn cat(fs: &Filesystem<MockLakeFs>, path: &str) -> FsResult<Vec<u8>> {
    let entry = walk(fs, path).await?;
    let opened = fs.open(entry.attr.ino, OpenMode::default()).await?;
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(opened.fh, out.len() as u64, 1000).await?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(opened.fh);
    Ok(out)
}

/// Accepts at most `room` entries per call, like a small kernel buffer.
struct SmallBuffer {
    room: usize,
    got: Vec<DirEntry>,
}

impl DirectoryReplier for SmallBuffer {
    fn add(&mut self, entry: &DirEntry) -> bool {
        if self.got.len() == self.room {
            return true;
        }
        self.got.push(entry.clone());
        false
    }
}

#[tokio::test]
async fn whole_server_mount_shows_repositories_branches_and_objects() {
    let mock = server();
    mock.create_repository("other", "dev");
    mock.put_object("repo", "main", "data/a.csv", "a,b\n").unwrap();
    mock.put_object("repo", "main", "README", "hi").unwrap();
    mock.create_branch("repo", "feature", "main", false).unwrap();
    mock.create_branch("repo", "_fuse-main-1", "main", true).unwrap();
    let fs = mount(&mock, "lakefs://").await;

    assert_eq!(list(&fs, InodeNo::ROOT).await, ["other", "repo"]);
    let repo = walk(&fs, "repo").await.unwrap();
    assert_eq!(
        list(&fs, repo.attr.ino).await,
        ["feature", "main"],
        "hidden branches stay hidden"
    );
    let main = walk(&fs, "repo/main").await.unwrap();
    assert_eq!(list(&fs, main.attr.ino).await, ["README", "data"]);
    let file = walk(&fs, "repo/main/data/a.csv").await.unwrap();
    assert_eq!(file.attr.kind, FileKind::RegularFile);
    assert_eq!(file.attr.size, 4);
    assert_eq!(cat(&fs, "repo/main/data/a.csv").await.unwrap(), b"a,b\n");
    assert_eq!(
        walk(&fs, "repo/main/data").await.unwrap().attr.kind,
        FileKind::Directory
    );

    assert_eq!(walk(&fs, "nope").await.unwrap_err().errno, libc::ENOENT);
    assert_eq!(walk(&fs, "repo/nope").await.unwrap_err().errno, libc::ENOENT);
    assert_eq!(walk(&fs, "repo/main/README/x").await.unwrap_err().errno, libc::ENOTDIR);
    assert_eq!(
        walk(&fs, "repo/main/data/missing").await.unwrap_err().errno,
        libc::ENOENT
    );
    let long = "x".repeat(256);
    assert_eq!(
        fs.lookup(main.attr.ino, &long).await.unwrap_err().errno,
        libc::ENAMETOOLONG
    );
    let dir = walk(&fs, "repo/main/data").await.unwrap();
    assert_eq!(
        fs.open(dir.attr.ino, OpenMode::default()).await.unwrap_err().errno,
        libc::EISDIR
    );
}

#[tokio::test]
async fn bad_sources_fail_before_mounting() {
    let mock = server();
    for source in ["lakefs://nope", "lakefs://repo/nope", "lakefs://repo/main~5"] {
        let err = Filesystem::new(mock.clone(), Source::parse(source).unwrap(), config())
            .await
            .unwrap_err();
        assert_eq!(err.errno, libc::ENOENT, "{source}");
    }
}

#[tokio::test]
async fn listing_primes_attributes_so_stat_after_readdir_needs_no_request() {
    let mock = server();
    for i in 0..20 {
        mock.put_object("repo", "main", &format!("f{i:02}"), vec![0u8; i])
            .unwrap();
    }
    let fs = mount(&mock, "lakefs://repo/main").await;
    let fh = fs.opendir(InodeNo::ROOT).await.unwrap();
    let mut entries: Vec<DirEntry> = Vec::new();
    fs.readdir(InodeNo::ROOT, fh, 0, true, &mut entries).await.unwrap();
    let before = mock.total_requests();
    for entry in entries.iter().filter(|e| e.name.starts_with('f')) {
        let looked_up = fs.lookup(InodeNo::ROOT, &entry.name).await.unwrap();
        assert_eq!(looked_up.attr.ino, entry.ino);
        assert_eq!(looked_up.attr.size, entry.attr.size);
        fs.getattr(entry.ino).await.unwrap();
    }
    assert_eq!(mock.total_requests(), before, "attributes came from the listing");
}

#[tokio::test]
async fn releasedir_drops_listed_inodes_the_kernel_never_received() {
    let mock = server();
    for i in 0..10 {
        mock.put_object("repo", "main", &format!("f{i}"), "x").unwrap();
    }
    let fs = mount(&mock, "lakefs://repo/main").await;
    let base = fs.table.len();
    let fh = fs.opendir(InodeNo::ROOT).await.unwrap();
    let mut buffer = SmallBuffer {
        room: 5,
        got: Vec::new(),
    };
    fs.readdir(InodeNo::ROOT, fh, 0, true, &mut buffer).await.unwrap();
    assert_eq!(fs.table.len(), base + 10);
    fs.releasedir(fh);
    // ".", ".." and f0..f2 went to the kernel with readdirplus; f3..f9 did not.
    assert_eq!(fs.table.len(), base + 3);
    let kept = &buffer.got[2];
    assert_eq!(fs.getattr(kept.ino).await.unwrap().attr.ino, kept.ino);
}

#[tokio::test]
async fn readdirplus_in_small_replies_hands_out_every_entry_once_with_one_lookup_each() {
    let mock = server();
    for i in 0..100 {
        mock.put_object("repo", "main", &format!("f{i:03}"), "x").unwrap();
    }
    let fs = mount(&mock, "lakefs://repo/main").await;
    let fh = fs.opendir(InodeNo::ROOT).await.unwrap();
    let mut got: Vec<DirEntry> = Vec::new();
    loop {
        let mut buffer = SmallBuffer {
            room: 7,
            got: Vec::new(),
        };
        let offset = got.last().map_or(0, |e| e.offset);
        fs.readdir(InodeNo::ROOT, fh, offset, true, &mut buffer).await.unwrap();
        if buffer.got.is_empty() {
            break;
        }
        got.extend(buffer.got);
    }
    fs.releasedir(fh);
    let names: Vec<_> = got.iter().map(|e| e.name.clone()).collect();
    let expected: Vec<_> = [".".to_string(), "..".to_string()]
        .into_iter()
        .chain((0..100).map(|i| format!("f{i:03}")))
        .collect();
    assert_eq!(names, expected);
    assert!(
        got.windows(2).all(|w| w[1].offset == w[0].offset + 1),
        "cookies are consecutive"
    );
    // Each file was handed out once, so one forget each lets it go.
    for entry in &got[2..] {
        assert!(fs.table.get(entry.ino).is_some());
        fs.forget(entry.ino, 1);
        assert!(
            fs.table.get(entry.ino).is_none(),
            "{} counted more than once",
            entry.name
        );
    }
}

#[tokio::test]
async fn a_listing_unbinds_names_gone_and_forgets_misses_of_names_it_shows() {
    let mock = server();
    for name in ["a", "b", "c"] {
        mock.put_object("repo", "main", name, "x").unwrap();
    }
    let fs = mount(&mock, "lakefs://repo/main").await;
    assert_eq!(walk(&fs, "later").await.unwrap_err().errno, libc::ENOENT);
    let b = fs.lookup(InodeNo::ROOT, "b").await.unwrap();
    mock.put_object("repo", "main", "later", "now").unwrap();
    mock.delete_object("repo", "main", "b").unwrap();
    assert_eq!(list(&fs, InodeNo::ROOT).await, ["a", "c", "later"]);
    assert!(
        fs.table.child(InodeNo::ROOT, "b").is_none(),
        "b is gone from the server"
    );
    assert!(fs.table.get(b.attr.ino).is_some(), "the kernel still holds b's inode");
    assert_eq!(
        walk(&fs, "later").await.unwrap().attr.size,
        3,
        "the listing showed `later`: the cached miss is gone"
    );
}

/// A branch directory of `count` committed objects, listed in pages of 10.
async fn large_committed_directory(count: usize) -> (Arc<MockLakeFs>, Arc<Filesystem<MockLakeFs>>) {
    let mock = server();
    for i in 0..count {
        mock.put_object("repo", "main", &format!("dir/f{i:03}"), "x").unwrap();
    }
    mock.commit("repo", "main").unwrap();
    mock.set_page_size(10);
    let fs = mount(&mock, "lakefs://repo/main").await;
    (mock, fs)
}

#[tokio::test]
async fn an_expired_listing_of_an_unchanged_branch_revalidates_without_listing_again() {
    let (mock, fs) = large_committed_directory(55).await;
    let dir = walk(&fs, "dir").await.unwrap().attr.ino;
    assert_eq!(list(&fs, dir).await.len(), 55);
    let pages = mock.requests("list_objects");
    assert_eq!(list(&fs, dir).await.len(), 55);
    assert_eq!(
        mock.requests("list_objects"),
        pages,
        "within the TTL the listing is reused"
    );
    let checks = mock.requests("has_uncommitted_changes");
    tokio::time::sleep(config().metadata_ttl).await;
    assert_eq!(list(&fs, dir).await.len(), 55);
    assert_eq!(
        mock.requests("list_objects"),
        pages,
        "an unchanged branch is not listed again"
    );
    assert_eq!(
        mock.requests("has_uncommitted_changes"),
        checks + 1,
        "one cheap check instead"
    );

    // An uncommitted change under the prefix, then a commit: each makes the next expired listing fetch again.
    mock.put_object("repo", "main", "dir/new", "y").unwrap();
    tokio::time::sleep(config().metadata_ttl).await;
    assert_eq!(list(&fs, dir).await.len(), 56);
    assert!(mock.requests("list_objects") > pages);
    mock.commit("repo", "main").unwrap();
    mock.delete_object("repo", "main", "dir/f000").unwrap();
    mock.commit("repo", "main").unwrap();
    tokio::time::sleep(config().metadata_ttl).await;
    let names = list(&fs, dir).await;
    assert_eq!(names.len(), 55);
    assert!(!names.contains(&"f000".to_string()) && names.contains(&"new".to_string()));
}

#[tokio::test]
async fn expired_attributes_of_listed_entries_revalidate_with_their_directory() {
    let (mock, fs) = large_committed_directory(30).await;
    let dir = walk(&fs, "dir").await.unwrap().attr.ino;
    let fh = fs.opendir(dir).await.unwrap();
    let mut entries: Vec<DirEntry> = Vec::new();
    fs.readdir(dir, fh, 0, true, &mut entries).await.unwrap();
    tokio::time::sleep(config().metadata_ttl).await;
    let stats = mock.requests("stat_object");
    for entry in entries.iter().filter(|e| e.name.starts_with('f')) {
        let again = fs.getattr(entry.ino).await.unwrap();
        assert_eq!(again.attr.size, 1);
        assert!(again.ttl > Duration::ZERO);
        fs.lookup(dir, &entry.name).await.unwrap();
    }
    assert_eq!(mock.requests("stat_object"), stats, "no request per entry");
    assert_eq!(
        mock.requests("has_uncommitted_changes"),
        2 + 1,
        "one revalidation for the directory"
    );
    fs.releasedir(fh);

    // A changed object is not vouched for by the old listing.
    mock.put_object("repo", "main", "dir/f001", "changed").unwrap();
    tokio::time::sleep(config().metadata_ttl).await;
    let f001 = entries.iter().find(|e| e.name == "f001").unwrap();
    assert_eq!(fs.getattr(f001.ino).await.unwrap().ttl, Duration::ZERO);
    assert_eq!(fs.lookup(dir, "f001").await.unwrap().attr.size, 7);
}

#[tokio::test]
async fn uncommitted_changes_elsewhere_do_not_invalidate_a_listing() {
    let (mock, fs) = large_committed_directory(25).await;
    let dir = walk(&fs, "dir").await.unwrap().attr.ino;
    list(&fs, dir).await;
    let pages = mock.requests("list_objects");
    mock.put_object("repo", "main", "elsewhere/x", "y").unwrap();
    tokio::time::sleep(config().metadata_ttl).await;
    assert_eq!(list(&fs, dir).await.len(), 25);
    assert_eq!(mock.requests("list_objects"), pages);
}

#[tokio::test]
async fn a_listing_taken_while_the_branch_was_dirty_is_listed_again_after_the_ttl() {
    let (mock, fs) = large_committed_directory(25).await;
    mock.put_object("repo", "main", "dir/staged", "y").unwrap();
    let dir = walk(&fs, "dir").await.unwrap().attr.ino;
    assert_eq!(list(&fs, dir).await.len(), 26);
    let pages = mock.requests("list_objects");
    // Undo the staged change without moving the head: only a new listing can show it.
    mock.delete_object("repo", "main", "dir/staged").unwrap();
    tokio::time::sleep(config().metadata_ttl).await;
    assert_eq!(list(&fs, dir).await.len(), 25);
    assert!(mock.requests("list_objects") > pages);
}

#[tokio::test]
async fn small_listings_make_no_extra_requests() {
    let (mock, fs) = large_committed_directory(5).await;
    let dir = walk(&fs, "dir").await.unwrap().attr.ino;
    list(&fs, dir).await;
    let (pages, heads) = (mock.requests("list_objects"), mock.requests("get_branch"));
    tokio::time::sleep(config().metadata_ttl).await;
    list(&fs, dir).await;
    assert_eq!(mock.requests("has_uncommitted_changes"), 0);
    assert_eq!(mock.requests("get_branch"), heads);
    assert_eq!(mock.requests("list_objects"), pages + 1, "one page, listed again");
}

#[tokio::test]
async fn readdir_offsets_serve_one_snapshot_while_the_server_changes() {
    let mock = server();
    for i in 0..10 {
        mock.put_object("repo", "main", &format!("f{i}"), "x").unwrap();
    }
    mock.set_page_size(3);
    let fs = mount(&mock, "lakefs://repo/main").await;
    let fh = fs.opendir(InodeNo::ROOT).await.unwrap();
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let mut buffer = SmallBuffer {
            room: 4,
            got: Vec::new(),
        };
        fs.readdir(InodeNo::ROOT, fh, offset, false, &mut buffer).await.unwrap();
        if buffer.got.is_empty() {
            break;
        }
        // Another writer changes the directory between two readdir calls.
        mock.delete_object("repo", "main", "f7").unwrap();
        mock.put_object("repo", "main", "f35", "new").unwrap();
        offset = buffer.got.last().unwrap().offset;
        seen.extend(buffer.got.into_iter().map(|e| e.name));
    }
    let expected: Vec<String> = [".", ".."]
        .into_iter()
        .map(String::from)
        .chain((0..10).map(|i| format!("f{i}")))
        .collect();
    assert_eq!(seen, expected, "each entry exactly once, as of the snapshot");

    // A repeated offset (interrupted call) is served again from the snapshot.
    let mut again = SmallBuffer {
        room: 2,
        got: Vec::new(),
    };
    fs.readdir(InodeNo::ROOT, fh, 5, false, &mut again).await.unwrap();
    assert_eq!(
        again.got.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["f3", "f4"]
    );

    // Rewinding takes a new snapshot; the listing it comes from is trusted for the metadata TTL.
    tokio::time::sleep(config().metadata_ttl).await;
    let mut fresh: Vec<DirEntry> = Vec::new();
    fs.readdir(InodeNo::ROOT, fh, 0, false, &mut fresh).await.unwrap();
    let names: Vec<_> = fresh.iter().map(|e| e.name.as_str()).collect();
    assert!(names.contains(&"f35") && !names.contains(&"f7"), "{names:?}");
    fs.releasedir(fh);
    let mut none: Vec<DirEntry> = Vec::new();
    assert_eq!(
        fs.readdir(InodeNo::ROOT, fh, 0, false, &mut none)
            .await
            .unwrap_err()
            .errno,
        libc::EBADF
    );
}

#[tokio::test]
async fn names_that_cannot_be_files_are_hidden() {
    let mock = server();
    for key in [
        "ok",
        "a//b",
        "./x",
        "../y",
        "clash",
        "clash/inner",
        &"n".repeat(300),
        "dir/",
    ] {
        mock.put_object("repo", "main", key, "x").unwrap();
    }
    let fs = mount(&mock, "lakefs://repo/main").await;
    assert_eq!(list(&fs, InodeNo::ROOT).await, ["a", "clash", "dir", "ok"]);
    let a = walk(&fs, "a").await.unwrap();
    assert!(
        list(&fs, a.attr.ino).await.is_empty(),
        "the empty segment of a//b is hidden"
    );
    assert_eq!(
        walk(&fs, "clash").await.unwrap().attr.kind,
        FileKind::Directory,
        "directory wins"
    );
    assert_eq!(list(&fs, walk(&fs, "clash").await.unwrap().attr.ino).await, ["inner"]);
    let dir = walk(&fs, "dir").await.unwrap();
    assert_eq!(dir.attr.kind, FileKind::Directory);
    assert!(
        list(&fs, dir.attr.ino).await.is_empty(),
        "a directory marker is not an entry"
    );
}

#[tokio::test]
async fn tags_commits_and_expressions_are_pinned_and_read_only() {
    let mock = server();
    mock.put_object("repo", "main", "f", "one").unwrap();
    let first = mock.commit("repo", "main").unwrap();
    mock.create_tag("repo", "v1", "main").unwrap();
    mock.put_object("repo", "main", "f", "two!").unwrap();
    mock.commit("repo", "main").unwrap();
    let fs = mount(&mock, "lakefs://repo").await;

    assert_eq!(cat(&fs, "v1/f").await.unwrap(), b"one");
    assert_eq!(cat(&fs, &format!("{first}/f")).await.unwrap(), b"one");
    assert_eq!(cat(&fs, &format!("{}/f", &first[..12])).await.unwrap(), b"one");
    assert_eq!(cat(&fs, "main~1/f").await.unwrap(), b"one");
    assert_eq!(cat(&fs, "main/f").await.unwrap(), b"two!");
    assert_eq!(
        list(&fs, InodeNo::ROOT).await,
        ["main"],
        "tags and commits are not listed"
    );

    let tagged = walk(&fs, "v1/f").await.unwrap();
    let err = fs
        .open(
            tagged.attr.ino,
            OpenMode {
                write: true,
                truncate: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::EROFS);
    assert_eq!(tagged.ttl, IMMUTABLE_TTL);

    // The branch moves on; the pinned tag does not.
    mock.put_object("repo", "main", "f", "three").unwrap();
    mock.commit("repo", "main").unwrap();
    assert_eq!(cat(&fs, "v1/f").await.unwrap(), b"one");

    // A branch wins over a tag of the same name; the tag stays reachable as tags@NAME.
    mock.create_tag("repo", "feature", &first).unwrap();
    mock.create_branch("repo", "feature", "main", false).unwrap();
    assert_eq!(cat(&fs, "feature/f").await.unwrap(), b"three");
    assert_eq!(cat(&fs, "tags@feature/f").await.unwrap(), b"one");
    assert_eq!(walk(&fs, "tags@nope").await.unwrap_err().errno, libc::ENOENT);
}

#[tokio::test]
async fn a_ref_mount_of_a_tag_is_read_only_and_never_expires() {
    let mock = server();
    mock.put_object("repo", "main", "d/f", "data").unwrap();
    mock.commit("repo", "main").unwrap();
    mock.create_tag("repo", "v1", "main").unwrap();
    let fs = mount(&mock, "lakefs://repo/v1").await;
    assert!(fs.is_read_only());
    walk(&fs, "d/f").await.unwrap();
    tokio::time::sleep(config().metadata_ttl * 2).await;
    let before = mock.total_requests();
    walk(&fs, "d/f").await.unwrap();
    assert_eq!(walk(&fs, "d/none").await.unwrap_err().errno, libc::ENOENT);
    let after_miss = mock.total_requests();
    tokio::time::sleep(config().metadata_ttl * 2).await;
    walk(&fs, "d/f").await.unwrap();
    assert_eq!(walk(&fs, "d/none").await.unwrap_err().errno, libc::ENOENT);
    assert_eq!(
        mock.total_requests(),
        after_miss,
        "immutable metadata and misses never expire"
    );
    assert!(after_miss > before, "the first miss asked the server");
    assert!(!mount(&mock, "lakefs://repo/main").await.is_read_only());
}

#[tokio::test]
async fn branch_metadata_expires_after_the_ttl_and_a_changed_object_gets_a_new_inode() {
    let mock = server();
    mock.put_object("repo", "main", "f", "old").unwrap();
    let fs = mount(&mock, "lakefs://repo/main").await;
    let old = walk(&fs, "f").await.unwrap();
    assert_eq!(old.ttl, config().metadata_ttl);
    mock.put_object("repo", "main", "f", "newer").unwrap();
    mock.put_object("repo", "main", "g", "x").unwrap();

    let requests = mock.total_requests();
    assert_eq!(
        walk(&fs, "f").await.unwrap().attr.ino,
        old.attr.ino,
        "within the TTL the cache answers"
    );
    assert_eq!(walk(&fs, "g").await.unwrap().attr.size, 1);
    assert!(mock.total_requests() > requests);
    let cached = mock.total_requests();
    assert_eq!(walk(&fs, "f").await.unwrap().attr.size, 3);
    assert_eq!(mock.total_requests(), cached);

    tokio::time::sleep(config().metadata_ttl + Duration::from_millis(50)).await;
    let new = walk(&fs, "f").await.unwrap();
    assert_ne!(new.attr.ino, old.attr.ino);
    assert_eq!(new.attr.size, 5);
    assert_eq!(cat(&fs, "f").await.unwrap(), b"newer");
    // The old inode still reports what it showed.
    assert_eq!(fs.getattr(old.attr.ino).await.unwrap().attr.size, 3);
}

#[tokio::test]
async fn negative_lookups_are_cached_for_the_ttl_on_branches() {
    let mock = server();
    let fs = mount(&mock, "lakefs://repo/main").await;
    assert_eq!(walk(&fs, "later").await.unwrap_err().errno, libc::ENOENT);
    let requests = mock.total_requests();
    assert_eq!(walk(&fs, "later").await.unwrap_err().errno, libc::ENOENT);
    assert_eq!(mock.total_requests(), requests);
    mock.put_object("repo", "main", "later", "now").unwrap();
    tokio::time::sleep(config().metadata_ttl + Duration::from_millis(50)).await;
    assert_eq!(walk(&fs, "later").await.unwrap().attr.size, 3);
}

#[tokio::test]
async fn the_same_content_through_another_ref_is_read_from_the_cache() {
    let mock = server();
    let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    mock.put_object("repo", "main", "blob", data.clone()).unwrap();
    let commit = mock.commit("repo", "main").unwrap();
    mock.create_tag("repo", "v1", "main").unwrap();
    let fs = mount(&mock, "lakefs://repo").await;
    assert_eq!(cat(&fs, "main/blob").await.unwrap(), data);
    let gets = mock.requests("get_object_range");
    assert!(gets > 0);
    assert_eq!(cat(&fs, "v1/blob").await.unwrap(), data);
    assert_eq!(cat(&fs, &format!("{commit}/blob")).await.unwrap(), data);
    assert_eq!(
        mock.requests("get_object_range"),
        gets,
        "blocks are keyed by checksum, not ref"
    );
}

#[tokio::test]
async fn symlinks_and_client_mtime_come_from_reserved_metadata() {
    let mock = server();
    let mut meta = BTreeMap::new();
    meta.insert(
        crate::lakefs::META_SYMLINK_TARGET.to_string(),
        "target/file".to_string(),
    );
    mock.put_object_with_metadata("repo", "main", "link", "", meta).unwrap();
    let mut meta = BTreeMap::new();
    meta.insert(crate::lakefs::META_CLIENT_MTIME.to_string(), "1234".to_string());
    mock.put_object_with_metadata("repo", "main", "timed", "x", meta)
        .unwrap();
    let fs = mount(&mock, "lakefs://repo/main").await;
    let link = walk(&fs, "link").await.unwrap();
    assert_eq!(link.attr.kind, FileKind::Symlink);
    assert_eq!(fs.readlink(link.attr.ino).await.unwrap(), "target/file");
    let timed = walk(&fs, "timed").await.unwrap();
    assert_eq!(timed.attr.mtime, std::time::UNIX_EPOCH + Duration::from_secs(1234));
}

#[tokio::test]
async fn control_directory_is_reachable_but_not_listed() {
    let mock = server();
    mock.put_object("repo", "main", "f", "x").unwrap();
    let head = mock.commit("repo", "main").unwrap();
    let fs = mount(&mock, "lakefs://repo/main/").await;
    assert_eq!(list(&fs, InodeNo::ROOT).await, ["f"]);
    let control = walk(&fs, ".lakefs").await.unwrap();
    assert_eq!(
        list(&fs, control.attr.ino).await,
        ["head", "status", "status.json", "staging", "commit", "merge", "discard"]
    );
    assert_eq!(
        String::from_utf8(cat(&fs, ".lakefs/head").await.unwrap()).unwrap(),
        format!("{head}\n")
    );
    let status = String::from_utf8(cat(&fs, ".lakefs/status").await.unwrap()).unwrap();
    assert!(status.contains("ref: main") && status.contains(&head), "{status}");
    let json = cat(&fs, ".lakefs/status.json").await.unwrap();
    let report: crate::fs::write::control::StatusReport = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        (report.reference.head.as_str(), report.reference.kind.as_str()),
        (head.as_str(), "branch")
    );
    assert_eq!(report.mount.source, "lakefs://repo/main");
    let branch = report.branch.expect("a branch of a read-write mount has write state");
    assert_eq!((branch.pending_uploads, branch.sequence), (0, 0));
    assert_eq!(walk(&fs, "f/.lakefs").await.unwrap_err().errno, libc::ENOTDIR);
}

#[tokio::test]
async fn a_prefix_mount_shows_only_the_prefix() {
    let mock = server();
    mock.put_object("repo", "main", "data/x/1", "1").unwrap();
    mock.put_object("repo", "main", "data/y", "2").unwrap();
    mock.put_object("repo", "main", "other", "3").unwrap();
    let fs = mount(&mock, "lakefs://repo/main/data").await;
    assert_eq!(list(&fs, InodeNo::ROOT).await, ["x", "y"]);
    assert_eq!(cat(&fs, "x/1").await.unwrap(), b"1");
}

#[tokio::test]
async fn server_errors_reach_the_caller_with_their_errno() {
    let mock = server();
    mock.put_object("repo", "main", "f", "data").unwrap();
    mock.put_object("repo", "main", "d/g", "data").unwrap();
    let fs = mount(&mock, "lakefs://repo/main").await;
    let file = walk(&fs, "f").await.unwrap();
    let opened = fs.open(file.attr.ino, OpenMode::default()).await.unwrap();
    // One failure is absorbed by the read's own second attempt; two reach the caller, and nothing sticks.
    mock.inject_failure("get_object_range", LakeFsError::Unavailable("503".into()), 1);
    assert_eq!(&fs.read(opened.fh, 0, 4).await.unwrap()[..], b"data");
    let other = fs.open(file.attr.ino, OpenMode::default()).await.unwrap();
    fs.data_cache().memory.clear();
    mock.inject_failure("get_object_range", LakeFsError::Unavailable("503".into()), 2);
    assert_eq!(fs.read(other.fh, 0, 4).await.unwrap_err().errno, libc::EIO);
    assert_eq!(
        &fs.read(other.fh, 0, 4).await.unwrap()[..],
        b"data",
        "a later read succeeds"
    );

    let dir = walk(&fs, "d").await.unwrap();
    let fh = fs.opendir(dir.attr.ino).await.unwrap();
    mock.inject_failure(
        "list_objects",
        LakeFsError::Unauthorized("error authenticating request".into()),
        1,
    );
    let mut entries: Vec<DirEntry> = Vec::new();
    let err = fs.readdir(dir.attr.ino, fh, 0, false, &mut entries).await.unwrap_err();
    assert_eq!(err.errno, libc::EACCES);
    assert!(err.to_string().contains("error authenticating request"), "{err}");
    mock.inject_failure("stat_object", LakeFsError::Timeout("slow".into()), 1);
    assert_eq!(
        walk(&fs, "missing").await.unwrap_err().errno,
        libc::EIO,
        "a failed lookup is not a miss"
    );
    assert_eq!(walk(&fs, "missing").await.unwrap_err().errno, libc::ENOENT);
}

#[tokio::test]
async fn forget_drops_inodes_the_kernel_no_longer_holds() {
    let mock = server();
    mock.put_object("repo", "main", "f", "x").unwrap();
    let fs = mount(&mock, "lakefs://repo/main").await;
    let first = fs.lookup(InodeNo::ROOT, "f").await.unwrap();
    let second = fs.lookup(InodeNo::ROOT, "f").await.unwrap();
    assert_eq!(first.attr.ino, second.attr.ino);
    fs.forget(first.attr.ino, 1);
    assert!(fs.getattr(first.attr.ino).await.is_ok());
    fs.forget(first.attr.ino, 1);
    assert_eq!(fs.getattr(first.attr.ino).await.unwrap_err().errno, libc::ENOENT);
}

/// A model tree: key -> content; directories are implied.
fn model_children(keys: &BTreeSet<String>, prefix: &str) -> Vec<String> {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    for key in keys {
        if let Some(rest) = key.strip_prefix(prefix) {
            match rest.split_once('/') {
                Some((dir, _)) => {
                    dirs.insert(dir.to_string());
                }
                None => {
                    files.insert(rest.to_string());
                }
            }
        }
    }
    let mut names: BTreeSet<String> = files.difference(&dirs).cloned().collect();
    names.extend(dirs);
    names.into_iter().collect()
}

fn model_dirs(keys: &BTreeSet<String>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::from([String::new()]);
    for key in keys {
        let mut prefix = String::new();
        let segments: Vec<&str> = key.split('/').collect();
        for segment in &segments[..segments.len() - 1] {
            prefix.push_str(segment);
            prefix.push('/');
            dirs.insert(prefix.clone());
        }
    }
    dirs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn readdir_of_every_directory_matches_the_model(
        keys in proptest::collection::btree_set("[ab]{1,2}(/[abc]{1,2}){0,3}", 1..30),
        page in 1u32..5,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mock = server();
            for key in &keys {
                mock.put_object("repo", "main", key, key.clone()).unwrap();
            }
            mock.set_page_size(page);
            let fs = mount(&mock, "lakefs://repo/main").await;
            for dir in model_dirs(&keys) {
                let entry = walk(&fs, &dir).await.unwrap();
                prop_assert_eq!(entry.attr.kind, FileKind::Directory);
                let listed = list(&fs, entry.attr.ino).await;
                prop_assert_eq!(&listed, &model_children(&keys, &dir), "directory {:?}", dir);
                for name in listed {
                    let path = format!("{dir}{name}");
                    let child = walk(&fs, &path).await.unwrap();
                    if keys.contains(&path) && child.attr.kind == FileKind::RegularFile {
                        prop_assert_eq!(cat(&fs, &path).await.unwrap(), path.as_bytes().to_vec());
                    }
                }
            }
            Ok(())
        })?;
    }
}
