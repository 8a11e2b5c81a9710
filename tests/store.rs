//! Integration tests of the server store through its public API: commit/merge/conflict semantics, persistence
//! across reopen, crash safety under SIGKILL, and a model-based property test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lakefs_fuse::server::store::{
    CommitRequest, DiffKind, DiffType, ListEntry, LogRequest, MergeRequest, MergeStrategy, ObjectEntry, Page,
    PageRequest, RefView, ResetKind, Store, StoreError,
};
use proptest::prelude::*;
use sha2::Digest;

fn page(prefix: &str, after: &str, amount: usize) -> PageRequest {
    PageRequest {
        prefix: prefix.to_string(),
        after: after.to_string(),
        amount,
    }
}

/// An entry for `content` as a front end would build it (no blob file behind it unless written).
fn entry(content: &str) -> ObjectEntry {
    ObjectEntry {
        blob: hex::encode(sha2::Sha256::digest(content.as_bytes())),
        checksum: hex::encode(md5::Md5::digest(content.as_bytes())),
        size: content.len() as u64,
        mtime: 1_700_000_000,
        content_type: "text/plain".to_string(),
        metadata: BTreeMap::new(),
    }
}

fn put(store: &Store, branch: &str, path: &str, content: &str) {
    store.put_object("repo", branch, path, entry(content), false).unwrap();
}

fn commit(store: &Store, branch: &str, message: &str) -> String {
    let request = CommitRequest {
        message: message.to_string(),
        committer: "tester".to_string(),
        ..Default::default()
    };
    store.commit("repo", branch, request).unwrap().id
}

fn content_of(store: &Store, r: &str, path: &str) -> Option<String> {
    match store.stat_object("repo", r, path) {
        Ok(e) => Some(e.checksum),
        Err(StoreError::ObjectNotFound) => None,
        Err(e) => panic!("stat {r}/{path}: {e}"),
    }
}

fn md5_of(content: &str) -> String {
    hex::encode(md5::Md5::digest(content.as_bytes()))
}

/// Every object path visible through `r`, paging `amount` at a time.
fn all_paths(store: &Store, r: &str, prefix: &str, amount: usize, delimiter: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let p: Page<ListEntry> = store
            .list_objects("repo", r, &page(prefix, &after, amount), delimiter)
            .unwrap();
        assert!(p.items.len() <= amount);
        out.extend(p.items.iter().map(|e| e.path().to_string()));
        if !p.has_more {
            return out;
        }
        after = p
            .items
            .last()
            .expect("has_more implies a non-empty page")
            .path()
            .to_string();
    }
}

fn open_repo(dir: &Path) -> Store {
    let store = Store::open(dir).unwrap();
    store.create_repository("repo", "local://repo", "main").unwrap();
    store
}

#[test]
fn merge_brings_source_changes_and_records_both_parents() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_repo(dir.path());
    put(&store, "main", "shared", "v1");
    put(&store, "main", "doomed", "d");
    commit(&store, "main", "base");
    store.create_branch("repo", "feature", "main", false).unwrap();
    put(&store, "feature", "new", "n");
    put(&store, "feature", "shared", "v2");
    store.delete_object("repo", "feature", "doomed").unwrap();
    let feature_head = commit(&store, "feature", "work");
    put(&store, "main", "main-only", "m");
    let main_head = commit(&store, "main", "main work");

    let three_dot = store
        .diff_refs("repo", "main", "feature", DiffKind::ThreeDot, &page("", "", 100), None)
        .unwrap();
    let kinds: Vec<(&str, DiffType)> = three_dot.items.iter().map(|d| (d.path.as_str(), d.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("doomed", DiffType::Removed),
            ("new", DiffType::Added),
            ("shared", DiffType::Changed)
        ]
    );
    let two_dot = store
        .diff_refs("repo", "main", "feature", DiffKind::TwoDot, &page("", "", 100), None)
        .unwrap();
    assert_eq!(two_dot.items.len(), 4, "two-dot also shows main-only as removed");

    let base = store.merge_base("repo", "feature", "main").unwrap();
    assert_eq!(base.source_commit_id, feature_head);
    assert_eq!(base.destination_commit_id, main_head);

    let merged = store.merge("repo", "feature", "main", MergeRequest::default()).unwrap();
    assert_eq!(merged.parents, vec![main_head.clone(), feature_head.clone()]);
    assert_eq!(merged.message, "Merge 'feature' into 'main'");
    assert_eq!(
        merged.metadata.get(".lakefs.merge.strategy").map(String::as_str),
        Some("default")
    );
    assert_eq!(
        all_paths(&store, "main", "", 100, None),
        vec!["main-only", "new", "shared"]
    );
    assert_eq!(content_of(&store, "main", "shared"), Some(md5_of("v2")));
    assert_eq!(store.get_commit("repo", "main^2").unwrap().id, feature_head);
    assert_eq!(store.get_commit("repo", "main^1").unwrap().id, main_head);

    // Nothing new on feature now.
    assert!(matches!(
        store.merge("repo", "feature", "main", MergeRequest::default()),
        Err(StoreError::NoChanges)
    ));
    let empty = MergeRequest {
        allow_empty: true,
        ..Default::default()
    };
    store.merge("repo", "feature", "main", empty).unwrap();

    // The log walks both parents, newest first, without duplicates, paged by commit id.
    let log = store
        .log(
            "repo",
            "main",
            &LogRequest {
                amount: 100,
                ..Default::default()
            },
        )
        .unwrap();
    let ids: Vec<&str> = log.items.iter().map(|c| c.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), unique.len());
    assert_eq!(ids.len(), 6, "initial, base, work, main work and two merges: {ids:?}");
    assert!(ids.contains(&feature_head.as_str()));
    let first = store
        .log(
            "repo",
            "main",
            &LogRequest {
                amount: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(first.has_more);
    let rest = LogRequest {
        amount: 100,
        after: first.items[2].id.clone(),
        ..Default::default()
    };
    let second = store.log("repo", "main", &rest).unwrap();
    assert_eq!(first.items.len() + second.items.len(), ids.len());
    assert!(!second.has_more);
    let first_parent = store.log(
        "repo",
        "main",
        &LogRequest {
            amount: 100,
            first_parent: true,
            ..Default::default()
        },
    );
    assert!(!first_parent.unwrap().items.iter().any(|c| c.id == feature_head));
    let touching = LogRequest {
        amount: 100,
        objects: vec!["new".to_string()],
        ..Default::default()
    };
    let touching: Vec<String> = store
        .log("repo", "main", &touching)
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(touching.contains(&feature_head), "{touching:?}");
    assert!(!touching.contains(&main_head));
}

#[test]
fn conflicts_fail_without_strategy_and_resolve_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_repo(dir.path());
    put(&store, "main", "f", "base");
    put(&store, "main", "g", "base");
    commit(&store, "main", "base");
    store.create_branch("repo", "a", "main", false).unwrap();
    put(&store, "a", "f", "from-a");
    store.delete_object("repo", "a", "g").unwrap();
    commit(&store, "a", "a");
    put(&store, "main", "f", "from-main");
    put(&store, "main", "g", "changed-on-main");
    let main_head = commit(&store, "main", "main");

    match store.merge("repo", "a", "main", MergeRequest::default()) {
        Err(StoreError::MergeConflict { paths }) => assert_eq!(paths, vec!["f", "g"]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.get_branch("repo", "main").unwrap().head,
        main_head,
        "nothing written on conflict"
    );
    let three_dot = store
        .diff_refs("repo", "main", "a", DiffKind::ThreeDot, &page("", "", 100), None)
        .unwrap();
    assert!(three_dot.items.iter().all(|d| d.kind == DiffType::Conflict));

    let dest_wins = MergeRequest {
        strategy: MergeStrategy::DestWins,
        allow_empty: true,
        ..Default::default()
    };
    let c = store.merge("repo", "a", "main", dest_wins).unwrap();
    assert_eq!(c.metadata[".lakefs.merge.strategy"], "dest-wins");
    assert_eq!(content_of(&store, "main", "f"), Some(md5_of("from-main")));
    assert_eq!(content_of(&store, "main", "g"), Some(md5_of("changed-on-main")));

    store.create_branch("repo", "b", &main_head, false).unwrap();
    let source_wins = MergeRequest {
        strategy: MergeStrategy::SourceWins,
        squash: true,
        ..Default::default()
    };
    let c = store.merge("repo", "a", "b", source_wins).unwrap();
    assert_eq!(c.parents.len(), 1, "squash merge has one parent");
    assert_eq!(content_of(&store, "b", "f"), Some(md5_of("from-a")));
    assert_eq!(content_of(&store, "b", "g"), None);

    // A dirty destination is refused.
    put(&store, "b", "dirt", "x");
    assert!(matches!(
        store.merge("repo", "main", "b", MergeRequest::default()),
        Err(StoreError::DirtyBranch)
    ));
    assert!(matches!(
        store.hard_reset_branch("repo", "b", "main"),
        Err(StoreError::DirtyBranch)
    ));
    store.reset_branch("repo", "b", ResetKind::All).unwrap();
    store.hard_reset_branch("repo", "b", "main").unwrap();
    assert_eq!(
        store.get_branch("repo", "b").unwrap().head,
        store.get_branch("repo", "main").unwrap().head
    );
}

#[test]
fn revert_undoes_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_repo(dir.path());
    put(&store, "main", "a", "1");
    commit(&store, "main", "one");
    put(&store, "main", "a", "2");
    put(&store, "main", "b", "new");
    let two = commit(&store, "main", "two");
    let reverted = store.revert("repo", "main", &two, 0, CommitRequest::default()).unwrap();
    assert_eq!(reverted.message, format!("Revert {two}"));
    assert_eq!(content_of(&store, "main", "a"), Some(md5_of("1")));
    assert_eq!(content_of(&store, "main", "b"), None);
    // Reverting again: the change is already gone, nothing to do.
    let again = store.revert("repo", "main", &two, 0, CommitRequest::default());
    assert!(
        matches!(
            again,
            Err(StoreError::MergeConflict { .. }) | Err(StoreError::NoChanges)
        ),
        "{again:?}"
    );
    assert!(matches!(
        store.revert("repo", "main", &two, 2, CommitRequest::default()),
        Err(StoreError::InvalidArgument(_))
    ));
}

#[test]
fn resets_drop_staged_changes_selectively() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_repo(dir.path());
    put(&store, "main", "keep/1", "k");
    commit(&store, "main", "c");
    put(&store, "main", "dir/a", "a");
    put(&store, "main", "dir/b", "b");
    put(&store, "main", "other", "o");
    store.delete_object("repo", "main", "keep/1").unwrap();
    store
        .reset_branch("repo", "main", ResetKind::Object("other".to_string()))
        .unwrap();
    store
        .reset_branch("repo", "main", ResetKind::CommonPrefix("dir/".to_string()))
        .unwrap();
    assert_eq!(all_paths(&store, "main", "", 10, None), Vec::<String>::new());
    let diff = store.diff_branch("repo", "main", &page("", "", 10), None).unwrap();
    assert_eq!(diff.items.len(), 1);
    store.reset_branch("repo", "main", ResetKind::All).unwrap();
    assert_eq!(all_paths(&store, "main", "", 10, None), vec!["keep/1"]);
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2);
    {
        let store = open_repo(dir.path());
        put(&store, "main", "x/1", "one");
        c1 = commit(&store, "main", "c1");
        store.create_branch("repo", "dev", "main", true).unwrap();
        put(&store, "dev", "x/2", "two");
        c2 = commit(&store, "dev", "c2");
        put(&store, "dev", "staged", "s");
        store.delete_object("repo", "dev", "x/1").unwrap();
        store.create_tag("repo", "v1", &c1).unwrap();
        let run = lakefs_fuse::server::store::ActionRun {
            run_id: "run-1".to_string(),
            branch: "dev".to_string(),
            start_time: "2026-01-01T00:00:00Z".to_string(),
            end_time: None,
            event_type: "pre-commit".to_string(),
            status: "completed".to_string(),
            commit_id: c2.clone(),
            hooks: vec![],
        };
        store.record_action_run("repo", &run).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get_repository("repo").unwrap().default_branch, "main");
    assert_eq!(store.get_branch("repo", "main").unwrap().head, c1);
    let dev = store.get_branch("repo", "dev").unwrap();
    assert_eq!((dev.head.as_str(), dev.hidden), (c2.as_str(), true));
    assert_eq!(store.get_tag("repo", "v1").unwrap().commit_id, c1);
    assert_eq!(all_paths(&store, "dev", "", 10, None), vec!["staged", "x/2"]);
    assert_eq!(all_paths(&store, "dev@", "", 10, None), vec!["x/1", "x/2"]);
    assert_eq!(store.get_action_run("repo", "run-1").unwrap().commit_id, c2);
    assert_eq!(
        store
            .list_action_runs("repo", Some("dev"), None, &page("", "", 10))
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(store
        .list_action_runs("repo", Some("main"), None, &page("", "", 10))
        .unwrap()
        .items
        .is_empty());
    store.delete_repository("repo").unwrap();
    assert!(matches!(
        store.get_branch("repo", "dev"),
        Err(StoreError::RepositoryNotFound)
    ));
    store.create_repository("repo", "local://again", "trunk").unwrap();
    assert_eq!(all_paths(&store, "trunk", "", 10, None), Vec::<String>::new());
    assert!(matches!(
        store.get_branch("repo", "dev"),
        Err(StoreError::BranchNotFound(_))
    ));
}

#[test]
fn large_prefix_lists_quickly_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_repo(dir.path());
    const N: usize = 100_000;
    let objects: Vec<(String, ObjectEntry)> = (0..N).map(|i| (format!("big/{i:06}"), entry(&i.to_string()))).collect();
    store.put_objects("repo", "main", &objects).unwrap();
    put(&store, "main", "after", "a");
    let started = Instant::now();
    commit(&store, "main", "big");
    eprintln!("commit of {N} objects: {:?}", started.elapsed());
    let started = Instant::now();
    let flat = all_paths(&store, "main", "big/", 1000, None);
    assert_eq!(flat.len(), N);
    assert!(flat.windows(2).all(|w| w[0] < w[1]));
    let grouped = all_paths(&store, "main", "", 1000, Some("/"));
    assert_eq!(grouped, vec!["after", "big/"]);
    eprintln!("listing {N} objects page by page: {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "listing took {:?}",
        started.elapsed()
    );
    // Staged changes over the big committed tree page the same way.
    store.delete_object("repo", "main", "big/000000").unwrap();
    put(&store, "main", "big/000000x", "x");
    let started = Instant::now();
    let first = store
        .list_objects("repo", "main", &page("big/", "big/099990", 1000), None)
        .unwrap();
    assert_eq!(first.items.len(), 9);
    let grouped = store
        .list_objects("repo", "main", &page("", "", 1000), Some("/"))
        .unwrap();
    assert_eq!(grouped.items.len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "seek took {:?}",
        started.elapsed()
    );
}

#[test]
fn racing_if_none_match_writers_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_repo(dir.path());
    let winners: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                scope.spawn(move || store.put_object("repo", "main", "once", entry(&i.to_string()), true))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join().unwrap() {
                Ok(_) => 1,
                Err(StoreError::PreconditionFailed(_)) => 0,
                Err(e) => panic!("unexpected {e}"),
            })
            .sum()
    });
    assert_eq!(winners, 1);
}

#[test]
fn commits_racing_with_writes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_repo(dir.path());
    std::thread::scope(|scope| {
        let writer = store.clone();
        scope.spawn(move || {
            for i in 0..200 {
                put(&writer, "main", &format!("w/{i:03}"), "x");
            }
        });
        for _ in 0..20 {
            match store.commit(
                "repo",
                "main",
                CommitRequest {
                    message: "c".into(),
                    ..Default::default()
                },
            ) {
                Ok(_) | Err(StoreError::NoChanges) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert_eq!(all_paths(&store, "main", "w/", 1000, None).len(), 200);
    let request = CommitRequest {
        message: "last".into(),
        allow_empty: true,
        ..Default::default()
    };
    store.commit("repo", "main", request).unwrap();
    assert_eq!(all_paths(&store, "main@", "w/", 1000, None).len(), 200);
    assert!(store
        .diff_branch("repo", "main", &page("", "", 10), None)
        .unwrap()
        .items
        .is_empty());
}

// ---- crash safety ----

const CRASH_DIR_ENV: &str = "LAKEFS_FUSE_STORE_CRASH_DIR";

/// Child side of [`acknowledged_writes_survive_sigkill`]: writes until killed, printing each acknowledgement.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else { return };
    let store = Store::open(Path::new(&dir)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for i in 0..1_000_000u64 {
        let body = format!("object number {i}");
        let chunks = vec![Ok::<_, std::io::Error>(Bytes::from(body.clone()))];
        let blob = runtime
            .block_on(store.write_blob(futures::stream::iter(chunks)))
            .unwrap();
        let path = format!("k/{i:06}");
        let object = ObjectEntry {
            blob: blob.id.clone(),
            checksum: blob.md5,
            size: blob.size,
            mtime: i as i64,
            content_type: "text/plain".to_string(),
            metadata: BTreeMap::new(),
        };
        store.put_object("repo", "main", &path, object, false).unwrap();
        println!("ACK put {path} {}", blob.id);
        if i % 7 == 6 {
            let c = store.commit(
                "repo",
                "main",
                CommitRequest {
                    message: format!("c{i}"),
                    ..Default::default()
                },
            );
            println!("ACK commit {}", c.unwrap().id);
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_repo(dir.path()));
    /// Kills the child even if an assertion fails first.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
            .env(CRASH_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut puts = Vec::new();
    let mut commits = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ACK", "put", path, blob] => puts.push((path.to_string(), blob.to_string())),
            ["ACK", "commit", id] => commits.push(id.to_string()),
            _ => continue,
        }
        if puts.len() >= 60 || Instant::now() > deadline {
            break; // kill while the child is still writing
        }
    }
    drop(child); // SIGKILL, mid-write
    assert!(puts.len() >= 10, "child acknowledged only {} writes", puts.len());

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0,
        "temp files swept"
    );
    for (path, blob) in &puts {
        let e = store
            .stat_object("repo", "main", path)
            .unwrap_or_else(|e| panic!("{path} lost: {e}"));
        assert_eq!(&e.blob, blob);
        let data = std::fs::read(store.blob_path(blob)).unwrap();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&data)),
            *blob,
            "blob content of {path}"
        );
    }
    let log = store
        .log(
            "repo",
            "main",
            &LogRequest {
                amount: 1000,
                ..Default::default()
            },
        )
        .unwrap();
    for id in &commits {
        assert!(
            log.items.iter().any(|c| &c.id == id),
            "acknowledged commit {id} missing from the log"
        );
    }
    // Consistency: every commit's tree lists, and every listed entry's blob is there.
    for c in &log.items {
        for (path, e) in objects(&store, &c.id) {
            assert!(store.blob_path(&e.blob).exists(), "{path} in {} has no blob", c.id);
        }
    }
    // The store keeps working after the crash.
    put(&store, "main", "after-crash", "x");
    commit(&store, "main", "after crash");
}

fn objects(store: &Store, r: &str) -> Vec<(String, ObjectEntry)> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let p = store.list_objects("repo", r, &page("", &after, 1000), None).unwrap();
        for item in &p.items {
            if let ListEntry::Object { path, entry } = item {
                out.push((path.clone(), entry.clone()));
            }
        }
        if !p.has_more {
            return out;
        }
        after = p.items.last().unwrap().path().to_string();
    }
}

// ---- model test ----

const KEYS: [&str; 8] = ["a", "a/b", "a/c/d", "b", "b/x", "c/", "c/y", "d"];

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    Commit,
    ResetAll,
    ResetObject(usize),
    ResetPrefix(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS.len(), 0u8..3).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..KEYS.len()).prop_map(Op::Delete),
        2 => Just(Op::Commit),
        1 => Just(Op::ResetAll),
        1 => (0..KEYS.len()).prop_map(Op::ResetObject),
        1 => (0..KEYS.len()).prop_map(Op::ResetPrefix),
    ]
}

/// Expected delimiter listing of a model.
fn grouped(model: &BTreeMap<String, u8>, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in model.keys().filter(|k| k.starts_with(prefix)) {
        let item = match key[prefix.len()..].find('/') {
            Some(i) => key[..prefix.len() + i + 1].to_string(),
            None => key.clone(),
        };
        if out.last() != Some(&item) {
            out.push(item);
        }
    }
    out
}

fn check_view(store: &Store, r: &str, model: &BTreeMap<String, u8>) -> Result<(), TestCaseError> {
    let listed = objects(store, r);
    let expected: Vec<(String, String)> = model.iter().map(|(k, v)| (k.clone(), md5_of(&v.to_string()))).collect();
    let actual: Vec<(String, String)> = listed.into_iter().map(|(p, e)| (p, e.checksum)).collect();
    prop_assert_eq!(actual, expected, "flat listing of {}", r);
    for prefix in ["", "a/", "c/"] {
        for amount in [1, 2, 5] {
            prop_assert_eq!(
                all_paths(store, r, prefix, amount, Some("/")),
                grouped(model, prefix),
                "{} {}",
                r,
                prefix
            );
        }
    }
    Ok(())
}

fn model_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: model_cases(), ..ProptestConfig::default() })]

    #[test]
    fn branch_and_commit_views_follow_a_map_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_repo(dir.path());
        let mut committed: BTreeMap<String, u8> = BTreeMap::new();
        let mut staged = committed.clone();
        let mut last_commit = store.get_commit("repo", "main").unwrap().id;
        let mut commits_made = 0;
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    store.put_object("repo", "main", KEYS[k], entry(&v.to_string()), false).unwrap();
                    staged.insert(KEYS[k].to_string(), v);
                }
                Op::Delete(k) => {
                    store.delete_object("repo", "main", KEYS[k]).unwrap();
                    staged.remove(KEYS[k]);
                }
                Op::Commit => {
                    let result = store.commit("repo", "main", CommitRequest::default());
                    if staged == committed {
                        prop_assert!(matches!(result, Err(StoreError::NoChanges)), "{:?}", result);
                    } else {
                        last_commit = result.unwrap().id;
                        commits_made += 1;
                        committed = staged.clone();
                    }
                }
                Op::ResetAll => {
                    store.reset_branch("repo", "main", ResetKind::All).unwrap();
                    staged = committed.clone();
                }
                Op::ResetObject(k) => {
                    store.reset_branch("repo", "main", ResetKind::Object(KEYS[k].to_string())).unwrap();
                    match committed.get(KEYS[k]) {
                        Some(v) => staged.insert(KEYS[k].to_string(), *v),
                        None => staged.remove(KEYS[k]),
                    };
                }
                Op::ResetPrefix(k) => {
                    let prefix = KEYS[k];
                    store.reset_branch("repo", "main", ResetKind::CommonPrefix(prefix.to_string())).unwrap();
                    staged.retain(|key, _| !key.starts_with(prefix));
                    for (key, v) in committed.range(prefix.to_string()..).take_while(|(key, _)| key.starts_with(prefix)) {
                        staged.insert(key.clone(), *v);
                    }
                }
            }
            check_view(&store, "main", &staged)?;
            check_view(&store, "main@", &committed)?;
            check_view(&store, &last_commit, &committed)?;
            let diff = store.diff_branch("repo", "main", &page("", "", 1000), None).unwrap();
            let changed: Vec<String> = diff.items.iter().map(|d| d.path.clone()).collect();
            let expected: Vec<String> = KEYS
                .iter()
                .filter(|k| staged.get(**k) != committed.get(**k))
                .map(|k| k.to_string())
                .collect();
            prop_assert_eq!(&changed, &expected);
            let two_dot = store.diff_refs("repo", &last_commit, "main$", DiffKind::TwoDot, &page("", "", 1000), None);
            let two_dot: Vec<String> = two_dot.unwrap().items.into_iter().map(|d| d.path).collect();
            prop_assert_eq!(&two_dot, &expected);
        }
        let log = store.log("repo", "main", &LogRequest { amount: 1000, ..Default::default() }).unwrap();
        prop_assert_eq!(log.items.len(), commits_made + 1);
        prop_assert_eq!(&log.items[0].id, &last_commit);
        prop_assert_eq!(store.resolve_ref("repo", "main@").unwrap(), RefView::BranchHead {
            branch: "main".to_string(),
            head: last_commit,
        });
    }
}

// ---- merge model test ----

/// Random edits of one branch: `Some(v)` puts version `v`, `None` deletes.
fn edits() -> impl Strategy<Value = Vec<(usize, Option<u8>)>> {
    prop::collection::vec((0..KEYS.len(), prop::option::weighted(0.7, 0u8..3)), 0..6)
}

fn strategy() -> impl Strategy<Value = MergeStrategy> {
    prop_oneof![
        Just(MergeStrategy::Default),
        Just(MergeStrategy::DestWins),
        Just(MergeStrategy::SourceWins)
    ]
}

/// Applies `edits` to `branch` and its model, then commits if anything changed.
fn edit_and_commit(store: &Store, branch: &str, model: &mut BTreeMap<String, u8>, edits: &[(usize, Option<u8>)]) {
    let before = model.clone();
    for (k, v) in edits {
        match v {
            Some(v) => {
                store
                    .put_object("repo", branch, KEYS[*k], entry(&v.to_string()), false)
                    .unwrap();
                model.insert(KEYS[*k].to_string(), *v);
            }
            None => {
                store.delete_object("repo", branch, KEYS[*k]).unwrap();
                model.remove(KEYS[*k]);
            }
        }
    }
    let result = store.commit(
        "repo",
        branch,
        CommitRequest {
            message: "edit".into(),
            ..Default::default()
        },
    );
    match result {
        Ok(_) => assert_ne!(&before, model),
        Err(StoreError::NoChanges) => assert_eq!(&before, model),
        Err(e) => panic!("commit: {e}"),
    }
}

/// The §6 table over whole maps: the merged map and the conflicting keys.
fn model_merge(
    base: &BTreeMap<String, u8>,
    source: &BTreeMap<String, u8>,
    dest: &BTreeMap<String, u8>,
    strategy: MergeStrategy,
) -> (BTreeMap<String, u8>, Vec<String>) {
    let mut merged = BTreeMap::new();
    let mut conflicts = Vec::new();
    for key in KEYS {
        let (b, s, d) = (base.get(key), source.get(key), dest.get(key));
        let winner = if s == b || d == s {
            d
        } else if d == b {
            s
        } else {
            conflicts.push(key.to_string());
            if strategy == MergeStrategy::SourceWins {
                s
            } else {
                d
            }
        };
        if let Some(v) = winner {
            merged.insert(key.to_string(), *v);
        }
    }
    (merged, conflicts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: model_cases(), ..ProptestConfig::default() })]

    #[test]
    fn merges_follow_the_lakefs_table(
        initial in edits(),
        rounds in prop::collection::vec((edits(), edits(), strategy()), 1..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_repo(dir.path());
        let mut dest = BTreeMap::new();
        edit_and_commit(&store, "main", &mut dest, &initial);
        store.create_branch("repo", "src", "main", false).unwrap();
        let mut source = dest.clone();
        let mut base = dest.clone();
        for (source_edits, dest_edits, strategy) in rounds {
            edit_and_commit(&store, "src", &mut source, &source_edits);
            edit_and_commit(&store, "main", &mut dest, &dest_edits);
            let (merged, conflicts) = model_merge(&base, &source, &dest, strategy);
            let request = MergeRequest { strategy, ..Default::default() };
            let before = store.get_branch("repo", "main").unwrap().head;
            match store.merge("repo", "src", "main", request) {
                Err(StoreError::MergeConflict { paths }) => {
                    prop_assert_eq!(strategy, MergeStrategy::Default);
                    prop_assert_eq!(paths, conflicts);
                    prop_assert_eq!(store.get_branch("repo", "main").unwrap().head, before);
                }
                Err(StoreError::NoChanges) => {
                    prop_assert!(strategy != MergeStrategy::Default || conflicts.is_empty());
                    prop_assert_eq!(&merged, &dest);
                }
                Ok(commit) => {
                    prop_assert!(strategy != MergeStrategy::Default || conflicts.is_empty());
                    prop_assert_ne!(&merged, &dest);
                    prop_assert_eq!(commit.parents.len(), 2);
                    check_view(&store, "main", &merged)?;
                    dest = merged;
                    base = source.clone();
                }
                Err(e) => panic!("merge: {e}"),
            }
        }
    }
}
