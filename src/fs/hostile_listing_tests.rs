//! Listings a broken or hostile server might send, served verbatim by `MockLakeFs::script_listing`: duplicate
//! names, `.`/`..`/empty/`//` segments, NUL, 4 KiB names, a file and a directory of one name, keys outside the
//! listed prefix, and pages whose cursor repeats or goes back.
//!
//! Invariants, for every such listing: readdir finishes (no loop on a cursor that does not advance), returns each
//! name once, and only names a directory entry can carry; a lookup of each listed name answers without panicking,
//! and the kind it reports is the one readdir reported.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::names::invalid_name_reason;
use super::*;
use crate::lakefs::mock::MockLakeFs;
use crate::lakefs::{ListEntry, ObjectInfo, Page};

fn object(path: &str) -> ListEntry {
    ListEntry::Object(ObjectInfo {
        path: path.to_string(),
        size: 3,
        mtime: 1_700_000_000,
        checksum: format!("{:032x}", path.len()),
        metadata: Default::default(),
    })
}

fn prefix(path: &str) -> ListEntry {
    ListEntry::Prefix(path.to_string())
}

fn page(items: Vec<ListEntry>, next_after: Option<&str>) -> Page<ListEntry> {
    Page {
        items,
        next_after: next_after.map(str::to_string),
    }
}

async fn mount(mock: &Arc<MockLakeFs>) -> Arc<Filesystem<MockLakeFs>> {
    let config = FsConfig {
        metadata_ttl: Duration::from_millis(200),
        ..FsConfig::default()
    };
    Filesystem::new(mock.clone(), Source::parse("lakefs://repo/main").unwrap(), config)
        .await
        .unwrap()
}

/// Reads the root directory and checks the invariants; returns (name, kind) pairs.
async fn checked_root_listing(fs: &Filesystem<MockLakeFs>) -> Vec<(String, FileKind)> {
    let fh = fs.opendir(InodeNo::ROOT).await.unwrap();
    let mut entries: Vec<DirEntry> = Vec::new();
    let listed = tokio::time::timeout(
        Duration::from_secs(10),
        fs.readdir(InodeNo::ROOT, fh, 0, false, &mut entries),
    )
    .await;
    fs.releasedir(fh);
    listed.expect("readdir finishes").expect("readdir succeeds");
    let names: Vec<(String, FileKind)> = entries
        .into_iter()
        .filter(|e| e.name != "." && e.name != "..")
        .map(|e| (e.name, e.attr.kind))
        .collect();
    let unique: BTreeSet<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(unique.len(), names.len(), "duplicate names in {names:?}");
    for (name, kind) in &names {
        assert_eq!(invalid_name_reason(name), None, "{name:?} listed");
        // A lookup answers (found or not) and never contradicts the listing's kind.
        if let Ok(Ok(entry)) = tokio::time::timeout(Duration::from_secs(10), fs.lookup(InodeNo::ROOT, name)).await {
            assert_eq!(entry.attr.kind, *kind, "{name:?}");
        }
    }
    names
}

#[tokio::test]
async fn malformed_listing_pages_never_crash_the_mount() {
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "main");
    let long = "n".repeat(4096);
    let pages = vec![
        page(
            vec![
                object("a"),
                object("a"),
                object("."),
                object(".."),
                object(""),
                object("x//y"),
                object("nul\0name"),
                object(&long),
                object("d"),
                prefix("d/"),
                prefix("../"),
                prefix("./"),
                prefix("//"),
                prefix("/"),
                prefix("e/f/"),
                object("/abs"),
            ],
            Some("m"),
        ),
        // Overlaps the first page and moves the cursor back: the listing must stop here.
        page(vec![object("a"), object("b"), prefix("d/")], Some("b")),
        page(vec![object("never-reached")], None),
    ];
    mock.script_listing("repo", "main", "", pages);
    let fs = mount(&mock).await;
    let listed = checked_root_listing(&fs).await;
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "d"]);
    assert_eq!(
        listed[2].1,
        FileKind::Directory,
        "a directory wins over a file of the same name"
    );
}

#[tokio::test]
async fn a_cursor_that_never_advances_ends_the_listing() {
    let mock = Arc::new(MockLakeFs::new());
    mock.create_repository("repo", "main");
    // Every call returns the same page with the same cursor.
    mock.script_listing("repo", "main", "", vec![page(vec![object("same")], Some("same"))]);
    let fs = mount(&mock).await;
    let names = checked_root_listing(&fs).await;
    assert_eq!(names.len(), 1);
    assert!(
        mock.requests("list_objects") <= 4,
        "{} listing calls",
        mock.requests("list_objects")
    );
}

fn hostile_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{1,2}",
        Just(".".to_string()),
        Just("..".to_string()),
        Just(String::new()),
        Just("\0".to_string()),
        Just("n".repeat(4096)),
        Just("é".repeat(128)),
        "\\PC{0,6}",
    ]
}

fn hostile_entry() -> impl Strategy<Value = ListEntry> {
    (prop::collection::vec(hostile_segment(), 1..4), any::<bool>()).prop_map(|(segments, is_prefix)| {
        let path = segments.join("/");
        if is_prefix {
            prefix(&format!("{path}/"))
        } else {
            object(&path)
        }
    })
}

fn hostile_page() -> impl Strategy<Value = Page<ListEntry>> {
    (
        prop::collection::vec(hostile_entry(), 0..12),
        prop::option::of(prop_oneof!["[a-c]{0,2}", Just("zzz".to_string()), "\\PC{0,4}"]),
    )
        .prop_map(|(items, next_after)| Page { items, next_after })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of pages: readdir finishes with unique, valid names; lookups answer consistently.
    #[test]
    fn arbitrary_listing_pages_keep_the_readdir_invariants(pages in prop::collection::vec(hostile_page(), 1..5)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mock = Arc::new(MockLakeFs::new());
            mock.create_repository("repo", "main");
            mock.script_listing("repo", "main", "", pages);
            let fs = mount(&mock).await;
            checked_root_listing(&fs).await;
        });
    }
}
