//! Store-level unit tests: behaviour through the public methods on a temporary data directory.

use std::collections::BTreeMap;

use super::*;

pub(super) fn entry(content: &str) -> ObjectEntry {
    let blob = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes()));
    ObjectEntry {
        blob,
        checksum: format!("{:x}", <md5::Md5 as sha2::Digest>::digest(content.as_bytes())),
        size: content.len() as u64,
        mtime: 1_700_000_000,
        content_type: "application/octet-stream".to_string(),
        metadata: BTreeMap::new(),
    }
}

fn page(prefix: &str, after: &str, amount: usize) -> PageRequest {
    PageRequest {
        prefix: prefix.to_string(),
        after: after.to_string(),
        amount,
    }
}

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_repository("repo", "local://repo", "main").unwrap();
    (dir, store)
}

fn commit(store: &Store, branch: &str, message: &str) -> Commit {
    let request = CommitRequest {
        message: message.to_string(),
        ..Default::default()
    };
    store.commit("repo", branch, request).unwrap()
}

fn paths(page: &Page<ListEntry>) -> Vec<String> {
    page.items.iter().map(|e| e.path().to_string()).collect()
}

#[test]
fn new_repository_has_the_lakefs_initial_commit() {
    let (_dir, store) = setup();
    let c = store.get_commit("repo", "main").unwrap();
    assert_eq!(c.message, "Repository created");
    assert_eq!(c.committer, "");
    assert!(c.parents.is_empty());
    assert_eq!(c.generation, 1);
    assert_eq!(c.meta_range_id, "");
    assert_eq!(c.id.len(), 64);
    assert!(matches!(
        store.create_repository("repo", "local://x", "main"),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_repository("Bad_Name", "local://x", "main"),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        store.get_repository("nope"),
        Err(StoreError::RepositoryNotFound)
    ));
}

#[test]
fn if_none_match_refuses_existing_paths_including_committed_ones() {
    let (_dir, store) = setup();
    store.put_object("repo", "main", "a", entry("1"), true).unwrap();
    let err = store.put_object("repo", "main", "a", entry("2"), true).unwrap_err();
    assert!(
        matches!(err, StoreError::PreconditionFailed(ref m) if m == "path already exists"),
        "{err:?}"
    );
    commit(&store, "main", "c1");
    assert!(matches!(
        store.put_object("repo", "main", "a", entry("3"), true),
        Err(StoreError::PreconditionFailed(_))
    ));
    store.delete_object("repo", "main", "a").unwrap();
    store.put_object("repo", "main", "a", entry("4"), true).unwrap();
    assert_eq!(
        store.stat_object("repo", "main", "a").unwrap().checksum,
        entry("4").checksum
    );
}

#[test]
fn tombstones_hide_committed_objects_until_commit() {
    let (_dir, store) = setup();
    store.put_object("repo", "main", "keep", entry("k"), false).unwrap();
    store.put_object("repo", "main", "gone", entry("g"), false).unwrap();
    let c1 = commit(&store, "main", "c1");
    store.delete_object("repo", "main", "gone").unwrap();
    assert!(matches!(
        store.stat_object("repo", "main", "gone"),
        Err(StoreError::ObjectNotFound)
    ));
    assert!(store.stat_object("repo", "main@", "gone").is_ok());
    assert!(store.stat_object("repo", &c1.id, "gone").is_ok());
    let listed = store.list_objects("repo", "main", &page("", "", 100), None).unwrap();
    assert_eq!(paths(&listed), vec!["keep"]);
    let diff = store.diff_branch("repo", "main", &page("", "", 100), None).unwrap();
    assert_eq!(diff.items.len(), 1);
    assert_eq!(
        (diff.items[0].path.as_str(), diff.items[0].kind),
        ("gone", DiffType::Removed)
    );
    let c2 = commit(&store, "main", "c2");
    assert!(matches!(
        store.stat_object("repo", &c2.id, "gone"),
        Err(StoreError::ObjectNotFound)
    ));
    assert!(store.stat_object("repo", &c1.id, "gone").is_ok());
}

#[test]
fn deleting_an_uncommitted_object_leaves_no_change() {
    let (_dir, store) = setup();
    store.put_object("repo", "main", "tmp", entry("t"), false).unwrap();
    store.delete_object("repo", "main", "tmp").unwrap();
    store.delete_object("repo", "main", "never-existed").unwrap();
    assert!(store
        .diff_branch("repo", "main", &page("", "", 100), None)
        .unwrap()
        .items
        .is_empty());
    let request = CommitRequest {
        message: "x".into(),
        ..Default::default()
    };
    assert!(matches!(
        store.commit("repo", "main", request),
        Err(StoreError::NoChanges)
    ));
}

#[test]
fn restaging_the_committed_version_is_no_change() {
    let (_dir, store) = setup();
    store.put_object("repo", "main", "a", entry("same"), false).unwrap();
    let c1 = commit(&store, "main", "c1");
    let mut again = entry("same");
    again.mtime += 100;
    store.put_object("repo", "main", "a", again, false).unwrap();
    assert!(store
        .diff_branch("repo", "main", &page("", "", 100), None)
        .unwrap()
        .items
        .is_empty());
    let request = CommitRequest {
        message: "x".into(),
        ..Default::default()
    };
    assert!(matches!(
        store.commit("repo", "main", request),
        Err(StoreError::NoChanges)
    ));
    let empty = CommitRequest {
        message: "empty".into(),
        allow_empty: true,
        ..Default::default()
    };
    let c2 = store.commit("repo", "main", empty).unwrap();
    assert_eq!(c2.meta_range_id, c1.meta_range_id);
    assert_eq!(c2.parents, vec![c1.id.clone()]);
    assert_eq!(c2.generation, c1.generation + 1);
}

#[test]
fn listing_with_delimiter_pages_across_common_prefixes() {
    let (_dir, store) = setup();
    for p in ["a", "b/1", "b/2", "b/c/3", "c", "d/x", "e/", "e/f"] {
        store.put_object("repo", "main", p, entry(p), false).unwrap();
    }
    // Half committed, half staged: the merged view must page the same way.
    commit(&store, "main", "c1");
    store.put_object("repo", "main", "b/0", entry("b0"), false).unwrap();
    store.delete_object("repo", "main", "d/x").unwrap();
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let p = store
            .list_objects("repo", "main", &page("", &after, 2), Some("/"))
            .unwrap();
        all.extend(paths(&p));
        if !p.has_more {
            break;
        }
        after = p.items.last().unwrap().path().to_string();
    }
    assert_eq!(all, vec!["a", "b/", "c", "e/"]);
    let inside = store
        .list_objects("repo", "main", &page("b/", "", 10), Some("/"))
        .unwrap();
    assert_eq!(paths(&inside), vec!["b/0", "b/1", "b/2", "b/c/"]);
    assert!(!inside.has_more);
    let e = store
        .list_objects("repo", "main", &page("e/", "", 10), Some("/"))
        .unwrap();
    assert_eq!(paths(&e), vec!["e/", "e/f"]);
    let flat = store.list_objects("repo", "main", &page("b", "b/1", 2), None).unwrap();
    assert_eq!(
        (paths(&flat), flat.has_more),
        (vec!["b/2".to_string(), "b/c/3".to_string()], false)
    );
}

#[test]
fn refs_resolve_in_lakefs_order() {
    let (_dir, store) = setup();
    let c0 = store.get_commit("repo", "main").unwrap();
    store.put_object("repo", "main", "a", entry("a"), false).unwrap();
    let c1 = commit(&store, "main", "c1");
    store.put_object("repo", "main", "b", entry("b"), false).unwrap();
    let c2 = commit(&store, "main", "c2");
    assert_eq!(
        store.resolve_ref("repo", "main~").unwrap(),
        RefView::Commit(c1.id.clone())
    );
    assert_eq!(
        store.resolve_ref("repo", "main~2").unwrap(),
        RefView::Commit(c0.id.clone())
    );
    assert_eq!(
        store.resolve_ref("repo", "main^^").unwrap(),
        RefView::Commit(c0.id.clone())
    );
    assert_eq!(
        store.resolve_ref("repo", "main^0").unwrap(),
        RefView::Commit(c2.id.clone())
    );
    assert!(matches!(
        store.resolve_ref("repo", "main~3"),
        Err(StoreError::RefNotFound(_))
    ));
    assert!(matches!(
        store.resolve_ref("repo", "main^2"),
        Err(StoreError::InvalidRef(_))
    ));
    assert_eq!(
        store.resolve_ref("repo", "main@").unwrap(),
        RefView::BranchHead {
            branch: "main".into(),
            head: c2.id.clone()
        }
    );
    assert_eq!(
        store.resolve_ref("repo", "main").unwrap(),
        RefView::Branch {
            branch: "main".into(),
            head: c2.id.clone()
        }
    );
    assert_eq!(
        store.resolve_ref("repo", &c1.id[..10]).unwrap(),
        RefView::Commit(c1.id.clone())
    );
    assert!(matches!(
        store.get_commit("repo", "main$"),
        Err(StoreError::InvalidRef(_))
    ));
    store.create_tag("repo", "v1", "main~1").unwrap();
    assert_eq!(store.get_commit("repo", "v1").unwrap().id, c1.id);
    assert_eq!(store.get_commit("repo", "v1~1").unwrap().id, c0.id);
    assert!(matches!(
        store.resolve_ref("repo", "v1@"),
        Err(StoreError::InvalidRef(_))
    ));
    assert!(matches!(
        store.resolve_ref("repo", "nope"),
        Err(StoreError::RefNotFound(_))
    ));
    // A branch named like a commit prefix wins over the prefix.
    let prefix = &c1.id[..6];
    if prefix.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        store.create_branch("repo", prefix, &c2.id, false).unwrap();
        assert_eq!(store.get_commit("repo", prefix).unwrap().id, c2.id);
    }
}

#[test]
fn branch_and_tag_names_must_not_clash() {
    let (_dir, store) = setup();
    store.create_tag("repo", "v1", "main").unwrap();
    assert!(matches!(
        store.create_branch("repo", "v1", "main", false),
        Err(StoreError::NameConflict(_))
    ));
    store.create_branch("repo", "dev", "main", false).unwrap();
    assert!(matches!(
        store.create_tag("repo", "dev", "main"),
        Err(StoreError::NameConflict(_))
    ));
    assert!(matches!(
        store.create_branch("repo", "dev", "main", false),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_tag("repo", "v1", "main"),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_branch("repo", "x", "main$", false),
        Err(StoreError::InvalidRef(_))
    ));
    assert!(matches!(
        store.create_branch("repo", "bad/name", "main", false),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        store.create_tag("repo", "bad..tag", "main"),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        store.delete_branch("repo", "main"),
        Err(StoreError::Forbidden(_))
    ));
    store.delete_branch("repo", "dev").unwrap();
    assert!(matches!(
        store.get_branch("repo", "dev"),
        Err(StoreError::BranchNotFound(_))
    ));
    store.delete_tag("repo", "v1").unwrap();
    assert!(matches!(store.get_tag("repo", "v1"), Err(StoreError::TagNotFound)));
}

#[test]
fn hidden_branches_are_listed_only_on_request() {
    let (_dir, store) = setup();
    store.create_branch("repo", "shown", "main", false).unwrap();
    store.create_branch("repo", "secret", "main", true).unwrap();
    let ids = |show| -> Vec<String> {
        store
            .list_branches("repo", &page("", "", 100), show)
            .unwrap()
            .items
            .into_iter()
            .map(|b| b.id)
            .collect()
    };
    assert_eq!(ids(false), vec!["main", "shown"]);
    assert_eq!(ids(true), vec!["main", "secret", "shown"]);
    let first = store.list_branches("repo", &page("", "", 1), true).unwrap();
    assert!(first.has_more);
    let last = store.list_branches("repo", &page("", "secret", 1), true).unwrap();
    assert_eq!((last.items[0].id.as_str(), last.has_more), ("shown", false));
}

#[test]
fn staged_changes_are_per_branch() {
    let (_dir, store) = setup();
    store.create_branch("repo", "dev", "main", false).unwrap();
    store.put_object("repo", "dev", "x", entry("x"), false).unwrap();
    assert!(store.stat_object("repo", "dev", "x").is_ok());
    assert!(matches!(
        store.stat_object("repo", "main", "x"),
        Err(StoreError::ObjectNotFound)
    ));
    assert!(matches!(
        store.stat_object("repo", "dev@", "x"),
        Err(StoreError::ObjectNotFound)
    ));
    assert!(matches!(
        store.put_object("repo", "nope", "x", entry("x"), false),
        Err(StoreError::BranchNotFound(_))
    ));
    assert!(matches!(
        store.put_object("repo", "main", "", entry("x"), false),
        Err(StoreError::InvalidArgument(_))
    ));
}

#[test]
fn diffs_group_by_delimiter_and_page() {
    let (_dir, store) = setup();
    for p in ["a/1", "a/2", "b", "c/x/1"] {
        store.put_object("repo", "main", p, entry(p), false).unwrap();
    }
    let c1 = commit(&store, "main", "c1");
    store
        .put_object("repo", "main", "a/2", entry("changed"), false)
        .unwrap();
    store.put_object("repo", "main", "a/3", entry("new"), false).unwrap();
    store.delete_object("repo", "main", "b").unwrap();
    let grouped = store.diff_branch("repo", "main", &page("", "", 10), Some("/")).unwrap();
    let got: Vec<(&str, DiffType, bool)> = grouped
        .items
        .iter()
        .map(|d| (d.path.as_str(), d.kind, d.is_prefix))
        .collect();
    assert_eq!(
        got,
        vec![("a/", DiffType::PrefixChanged, true), ("b", DiffType::Removed, false)]
    );
    let first = store.diff_branch("repo", "main", &page("a/", "", 1), None).unwrap();
    assert_eq!(
        (first.items[0].path.as_str(), first.items[0].kind, first.has_more),
        ("a/2", DiffType::Changed, true)
    );
    let second = store.diff_branch("repo", "main", &page("a/", "a/2", 1), None).unwrap();
    assert_eq!(
        (second.items[0].path.as_str(), second.items[0].kind, second.has_more),
        ("a/3", DiffType::Added, false)
    );
    assert_eq!(second.items[0].right.as_ref().map(|e| e.size), Some(3));

    // Refs diffs compare commits; `branch$` on the right of a two-dot diff adds the staged changes.
    let head_only = store
        .diff_refs("repo", &c1.id, "main", DiffKind::TwoDot, &page("", "", 10), None)
        .unwrap();
    assert!(head_only.items.is_empty());
    let staged = store
        .diff_refs("repo", &c1.id, "main$", DiffKind::TwoDot, &page("", "", 10), None)
        .unwrap();
    assert_eq!(staged.items.len(), 3);
    assert!(matches!(
        store.diff_refs("repo", "main$", "main", DiffKind::TwoDot, &page("", "", 10), None),
        Err(StoreError::InvalidRef(_))
    ));
    assert!(matches!(
        store.diff_refs("repo", &c1.id, "main$", DiffKind::ThreeDot, &page("", "", 10), None),
        Err(StoreError::InvalidRef(_))
    ));
}

#[test]
fn action_runs_list_in_run_id_order_with_filters() {
    let (_dir, store) = setup();
    let run = |id: &str, branch: &str, commit: &str| ActionRun {
        run_id: id.to_string(),
        branch: branch.to_string(),
        start_time: "2026-01-01T00:00:00Z".to_string(),
        end_time: Some("2026-01-01T00:00:01Z".to_string()),
        event_type: "pre-commit".to_string(),
        status: "completed".to_string(),
        commit_id: commit.to_string(),
        hooks: vec![],
    };
    store.record_action_run("repo", &run("r2", "main", "c2")).unwrap();
    store.record_action_run("repo", &run("r1", "dev", "c1")).unwrap();
    store.record_action_run("repo", &run("r3", "main", "")).unwrap();
    let ids = |branch: Option<&str>, commit: Option<&str>, after: &str| -> Vec<String> {
        let page = store
            .list_action_runs("repo", branch, commit, &page("", after, 10))
            .unwrap();
        page.items.into_iter().map(|r| r.run_id).collect()
    };
    assert_eq!(ids(None, None, ""), vec!["r1", "r2", "r3"]);
    assert_eq!(ids(Some("main"), None, ""), vec!["r2", "r3"]);
    assert_eq!(ids(None, Some("c1"), ""), vec!["r1"]);
    assert_eq!(ids(None, None, "r1"), vec!["r2", "r3"]);
    assert_eq!(store.get_action_run("repo", "r3").unwrap().commit_id, "");
    assert!(matches!(
        store.get_action_run("repo", "nope"),
        Err(StoreError::RefNotFound(_))
    ));
    assert!(matches!(
        store.record_action_run("nope", &run("x", "main", "")),
        Err(StoreError::RepositoryNotFound)
    ));
}

#[test]
fn settings_and_read_only_flag_persist_per_repository() {
    let (_dir, store) = setup();
    assert_eq!(store.get_setting("repo", "branch_protection").unwrap(), None);
    store
        .set_setting("repo", "branch_protection", Some(r#"[{"pattern":"main"}]"#))
        .unwrap();
    assert_eq!(
        store.get_setting("repo", "branch_protection").unwrap().as_deref(),
        Some(r#"[{"pattern":"main"}]"#)
    );
    store.set_setting("repo", "branch_protection", None).unwrap();
    assert_eq!(store.get_setting("repo", "branch_protection").unwrap(), None);
    assert!(store.set_repository_read_only("repo", true).unwrap().read_only);
    assert!(store.get_repository("repo").unwrap().read_only);
    assert!(matches!(
        store.get_setting("nope", "x"),
        Err(StoreError::RepositoryNotFound)
    ));
}

#[test]
fn open_sweeps_stale_temp_files_but_keeps_multipart_state() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    std::fs::write(dir.path().join("tmp").join("dead.part"), b"half a body").unwrap();
    std::fs::write(dir.path().join("multipart").join("upload-1"), b"part").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert!(store.multipart_dir().join("upload-1").exists());
}

#[test]
fn log_filters_by_path_date_and_stop_point() {
    let (_dir, store) = setup();
    let at = |date: i64, path: &str, content: &str| {
        store.put_object("repo", "main", path, entry(content), false).unwrap();
        let request = CommitRequest {
            message: path.to_string(),
            date: Some(date),
            ..Default::default()
        };
        store.commit("repo", "main", request).unwrap().id
    };
    let c1 = at(1_000, "data/a", "1");
    let c2 = at(2_000, "other", "2");
    let c3 = at(3_000, "data/b", "3");
    let c4 = at(4_000, "data/a", "4");
    let ids = |request: LogRequest| -> Vec<String> {
        store
            .log("repo", "main", &request)
            .unwrap()
            .items
            .into_iter()
            .map(|c| c.id)
            .collect()
    };
    let all = ids(LogRequest {
        amount: 100,
        ..Default::default()
    });
    assert_eq!(all.len(), 5);
    assert_eq!(&all[..4], &[c4.clone(), c3.clone(), c2.clone(), c1.clone()]);
    let prefix = LogRequest {
        amount: 100,
        prefixes: vec!["data/".into()],
        ..Default::default()
    };
    assert_eq!(ids(prefix), vec![c4.clone(), c3.clone(), c1.clone()]);
    let object = LogRequest {
        amount: 100,
        objects: vec!["data/a".into()],
        ..Default::default()
    };
    assert_eq!(ids(object), vec![c4.clone(), c1.clone()]);
    let limited = LogRequest {
        amount: 1,
        objects: vec!["data/a".into()],
        limit: true,
        ..Default::default()
    };
    let page = store.log("repo", "main", &limited).unwrap();
    assert_eq!((page.items.len(), page.has_more), (1, false));
    let since = LogRequest {
        amount: 100,
        since: Some(2_000),
        ..Default::default()
    };
    assert_eq!(ids(since), vec![c4.clone(), c3.clone(), c2.clone()]);
    let stop = LogRequest {
        amount: 100,
        stop_at: Some(c3.clone()),
        ..Default::default()
    };
    assert_eq!(ids(stop), vec![c4.clone(), c3.clone()]);
    let after = LogRequest {
        amount: 100,
        after: c2.clone(),
        ..Default::default()
    };
    assert_eq!(ids(after).len(), 2, "c1 and the initial commit follow c2");
}

#[test]
fn reverting_a_merge_commit_needs_a_parent_number() {
    let (_dir, store) = setup();
    store.put_object("repo", "main", "base", entry("b"), false).unwrap();
    commit(&store, "main", "base");
    store.create_branch("repo", "dev", "main", false).unwrap();
    store.put_object("repo", "dev", "feature", entry("f"), false).unwrap();
    commit(&store, "dev", "feature");
    let merge = store.merge("repo", "dev", "main", MergeRequest::default()).unwrap();
    let no_parent = store.revert("repo", "main", &merge.id, 0, CommitRequest::default());
    assert!(matches!(no_parent, Err(StoreError::NameConflict(_))), "{no_parent:?}");
    let bad_parent = store.revert("repo", "main", &merge.id, 3, CommitRequest::default());
    assert!(
        matches!(bad_parent, Err(StoreError::InvalidArgument(_))),
        "{bad_parent:?}"
    );
    let reverted = store
        .revert("repo", "main", &merge.id, 1, CommitRequest::default())
        .unwrap();
    assert_eq!(reverted.parents, vec![merge.id.clone()]);
    assert!(matches!(
        store.stat_object("repo", "main", "feature"),
        Err(StoreError::ObjectNotFound)
    ));
    assert!(store.stat_object("repo", "main", "base").is_ok());
}

#[test]
fn cherry_pick_applies_one_commit_elsewhere() {
    let (_dir, store) = setup();
    store.put_object("repo", "main", "base", entry("b"), false).unwrap();
    commit(&store, "main", "base");
    store.create_branch("repo", "dev", "main", false).unwrap();
    store.put_object("repo", "dev", "first", entry("1"), false).unwrap();
    commit(&store, "dev", "first");
    store.put_object("repo", "dev", "second", entry("2"), false).unwrap();
    let mut request = CommitRequest {
        message: "second".into(),
        ..Default::default()
    };
    request.metadata.insert("k".into(), "v".into());
    let second = store.commit("repo", "dev", request).unwrap();
    let picked = store
        .cherry_pick("repo", "main", &second.id, 0, CommitRequest::default())
        .unwrap();
    assert_eq!(
        (picked.message.as_str(), picked.metadata.get("k").map(String::as_str)),
        ("second", Some("v"))
    );
    assert!(store.stat_object("repo", "main", "second").is_ok());
    assert!(matches!(
        store.stat_object("repo", "main", "first"),
        Err(StoreError::ObjectNotFound)
    ));
    let again = store.cherry_pick("repo", "main", &second.id, 0, CommitRequest::default());
    assert!(matches!(again, Err(StoreError::NoChanges)), "{again:?}");
}

#[test]
fn bulk_delete_reports_invalid_paths_and_deletes_the_rest() {
    let (_dir, store) = setup();
    store
        .put_object("repo", "main", "committed", entry("c"), false)
        .unwrap();
    commit(&store, "main", "c1");
    store.put_object("repo", "main", "staged", entry("s"), false).unwrap();
    let paths = vec![
        "committed".to_string(),
        "staged".to_string(),
        String::new(),
        "missing".to_string(),
    ];
    let failures = store.delete_objects("repo", "main", &paths).unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "");
    assert!(matches!(failures[0].1, StoreError::InvalidArgument(_)));
    assert!(store
        .list_objects("repo", "main", &page("", "", 10), None)
        .unwrap()
        .items
        .is_empty());
    let diff = store.diff_branch("repo", "main", &page("", "", 10), None).unwrap();
    assert_eq!(diff.items.len(), 1, "only the committed path leaves a tombstone");
    assert!(matches!(
        store.delete_objects("repo", "nope", &paths),
        Err(StoreError::BranchNotFound(_))
    ));
    assert!(matches!(
        store.delete_repository("nope"),
        Err(StoreError::RepositoryNotFound)
    ));
}

#[test]
fn merge_drops_staged_leftovers_identical_to_the_old_head() {
    let (_dir, store) = setup();
    store.put_object("repo", "main", "f", entry("1"), false).unwrap();
    commit(&store, "main", "c1");
    store.create_branch("repo", "src", "main", false).unwrap();
    store.delete_object("repo", "src", "f").unwrap();
    commit(&store, "src", "delete f");
    // Re-staging the committed version is no change, so main is clean and the merge may run...
    store.put_object("repo", "main", "f", entry("1"), false).unwrap();
    store.merge("repo", "src", "main", MergeRequest::default()).unwrap();
    // ...but the leftover must not resurrect `f` over the merged head.
    assert!(matches!(
        store.stat_object("repo", "main", "f"),
        Err(StoreError::ObjectNotFound)
    ));
    assert!(store
        .diff_branch("repo", "main", &page("", "", 10), None)
        .unwrap()
        .items
        .is_empty());
}
