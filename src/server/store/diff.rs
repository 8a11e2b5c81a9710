//! Diffs: the branch's uncommitted changes, two-dot (tree vs tree) and three-dot (what merging would bring).
//!
//! Each kind is a sorted, seekable stream of changed paths ([`list::Seekable`]), so prefix, `after`, delimiter
//! and paging are the listing's ([`list::paginate`]); with a delimiter a changed "directory" is reported once as
//! `prefix_changed` and skipped. The branch diff walks only the staging area and looks each path up in the head
//! tree, so its cost follows the number of staged entries, not the tree size.

use std::ops::Bound;

use super::list::{self, Seekable};
use super::merge::{resolve_path, PathOutcome};
use super::meta::{self, Kv, BRANCHES, COMMITS, REPOSITORIES, STAGING, TREES};
use super::objects::view_source;
use super::refs::{ReadRefs, STAGING_NOT_A_COMMIT};
use super::repos::{require_branch, require_repository};
use super::tree::{self, SortedCursor, ViewCursor, ViewSource};
use super::{DiffEntry, DiffKind, DiffType, ObjectEntry, Page, PageRequest, RefView, Store, StoreError};

fn decode(raw: Option<&[u8]>) -> Result<Option<ObjectEntry>, StoreError> {
    raw.map(meta::from_json).transpose()
}

/// The diff entry turning `from` into `to`; `None` when they are the same version.
fn change(path: &str, from: Option<ObjectEntry>, to: Option<ObjectEntry>) -> Option<DiffEntry> {
    let kind = match (&from, &to) {
        (None, None) => return None,
        (Some(a), Some(b)) if a.same_identity(b) => return None,
        (None, Some(_)) => DiffType::Added,
        (Some(_), None) => DiffType::Removed,
        (Some(_), Some(_)) => DiffType::Changed,
    };
    let size = to.as_ref().or(from.as_ref()).map(|e| e.size);
    Some(DiffEntry {
        path: path.to_string(),
        kind,
        is_prefix: false,
        size,
        right: to,
    })
}

/// Peeks the smallest next path among `cursors`.
fn min_path<T: Kv>(cursors: &mut [&mut ViewCursor<'_, T>]) -> Result<Option<Vec<u8>>, StoreError> {
    let mut min: Option<Vec<u8>> = None;
    for cursor in cursors.iter_mut() {
        if let Some((path, _)) = cursor.peek_raw()? {
            if min.as_ref().is_none_or(|m| path < m) {
                min = Some(path.clone());
            }
        }
    }
    Ok(min)
}

/// Takes the record at `path` from `cursor` if it is there.
fn take_at<T: Kv>(cursor: &mut ViewCursor<'_, T>, path: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    if cursor.peek_raw()?.is_some_and(|(p, _)| p.as_slice() == path) {
        Ok(cursor.next_raw()?.map(|(_, v)| v))
    } else {
        Ok(None)
    }
}

/// Direct comparison of two views.
pub(super) struct TwoWay<'t, T: Kv> {
    pub left: ViewCursor<'t, T>,
    pub right: ViewCursor<'t, T>,
}

impl<T: Kv> Seekable for TwoWay<'_, T> {
    type Item = DiffEntry;

    fn seek(&mut self, from: Bound<&[u8]>) -> Result<(), StoreError> {
        self.left.seek(from)?;
        self.right.seek(from)
    }

    fn next_item(&mut self) -> Result<Option<(Vec<u8>, DiffEntry)>, StoreError> {
        loop {
            let Some(path) = min_path(&mut [&mut self.left, &mut self.right])? else {
                return Ok(None);
            };
            let left = take_at(&mut self.left, &path)?;
            let right = take_at(&mut self.right, &path)?;
            if left.is_some() && left == right {
                continue;
            }
            if let Some(entry) = change(meta::utf8(&path)?, decode(left.as_deref())?, decode(right.as_deref())?) {
                return Ok(Some((path, entry)));
            }
        }
    }
}

/// What merging `source` into `dest` (with merge base `base`) would change on `dest`, conflicts included.
pub(super) struct ThreeWay<'t, T: Kv> {
    pub base: ViewCursor<'t, T>,
    pub source: ViewCursor<'t, T>,
    pub dest: ViewCursor<'t, T>,
}

impl<T: Kv> ThreeWay<'_, T> {
    /// The next path present on any side with its three raw entries.
    #[allow(clippy::type_complexity)]
    pub fn next_path(
        &mut self,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>)>, StoreError> {
        let Some(path) = min_path(&mut [&mut self.base, &mut self.source, &mut self.dest])? else {
            return Ok(None);
        };
        let base = take_at(&mut self.base, &path)?;
        let source = take_at(&mut self.source, &path)?;
        let dest = take_at(&mut self.dest, &path)?;
        Ok(Some((path, base, source, dest)))
    }
}

impl<T: Kv> Seekable for ThreeWay<'_, T> {
    type Item = DiffEntry;

    fn seek(&mut self, from: Bound<&[u8]>) -> Result<(), StoreError> {
        self.base.seek(from)?;
        self.source.seek(from)?;
        self.dest.seek(from)
    }

    fn next_item(&mut self) -> Result<Option<(Vec<u8>, DiffEntry)>, StoreError> {
        while let Some((path, base, source, dest)) = self.next_path()? {
            let name = meta::utf8(&path)?.to_string();
            match resolve_path(base.as_deref(), source.as_deref(), dest.as_deref())? {
                PathOutcome::KeepDest => {}
                PathOutcome::TakeSource => {
                    if let Some(entry) = change(&name, decode(dest.as_deref())?, decode(source.as_deref())?) {
                        return Ok(Some((path, entry)));
                    }
                }
                PathOutcome::Conflict => {
                    let right = decode(source.as_deref())?;
                    let size = right.as_ref().map(|e| e.size);
                    let entry = DiffEntry {
                        path: name,
                        kind: DiffType::Conflict,
                        is_prefix: false,
                        size,
                        right,
                    };
                    return Ok(Some((path, entry)));
                }
            }
        }
        Ok(None)
    }
}

/// The branch's uncommitted changes: staged entries compared with the head tree.
struct StagedDiff<'t, T: Kv> {
    staging: SortedCursor<'t, T>,
    trees: &'t T,
    head_tree: String,
}

impl<T: Kv> Seekable for StagedDiff<'_, T> {
    type Item = DiffEntry;

    fn seek(&mut self, from: Bound<&[u8]>) -> Result<(), StoreError> {
        self.staging.seek(from)
    }

    fn next_item(&mut self) -> Result<Option<(Vec<u8>, DiffEntry)>, StoreError> {
        while let Some((path, value)) = self.staging.next()? {
            let name = meta::utf8(&path)?;
            let committed = tree::tree_get(self.trees, &self.head_tree, name)?;
            let staged = if value.is_empty() {
                None
            } else {
                Some(meta::from_json(&value)?)
            };
            if let Some(entry) = change(name, committed, staged) {
                return Ok(Some((path, entry)));
            }
        }
        Ok(None)
    }
}

fn paginate_diff<S: Seekable<Item = DiffEntry>>(
    source: &mut S,
    page: &PageRequest,
    delimiter: Option<&str>,
) -> Result<Page<DiffEntry>, StoreError> {
    let make_prefix = |path: String| DiffEntry {
        path,
        kind: DiffType::PrefixChanged,
        is_prefix: true,
        size: None,
        right: None,
    };
    list::paginate(
        source,
        &page.prefix,
        &page.after,
        page.amount,
        delimiter,
        make_prefix,
        |_, entry| Ok(Some(entry)),
    )
}

impl Store {
    pub(super) fn diff_branch_impl(
        &self,
        repo: &str,
        branch: &str,
        page: &PageRequest,
        delimiter: Option<&str>,
    ) -> Result<Page<DiffEntry>, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        let record = require_branch(&txn.open_table(BRANCHES)?, repo, branch)?;
        let commits = txn.open_table(COMMITS)?;
        let head = super::objects::head_commit(&commits, repo, &record.head)?;
        let (trees, staging) = (txn.open_table(TREES)?, txn.open_table(STAGING)?);
        let mut source = StagedDiff {
            staging: SortedCursor::new(&staging, meta::key_prefix(&[repo, branch]), page.prefix.as_bytes()),
            trees: &trees,
            head_tree: head.meta_range_id,
        };
        paginate_diff(&mut source, page, delimiter)
    }

    pub(super) fn diff_refs_impl(
        &self,
        repo: &str,
        left: &str,
        right: &str,
        kind: DiffKind,
        page: &PageRequest,
        delimiter: Option<&str>,
    ) -> Result<Page<DiffEntry>, StoreError> {
        let txn = self.db().begin_read()?;
        let read_refs = ReadRefs::open(&txn, repo)?;
        let (trees, staging) = (txn.open_table(TREES)?, txn.open_table(STAGING)?);
        let tables = read_refs.tables();
        let left_commit = tables.resolve_commit(repo, left)?;
        let right_resolved = tables.resolve(repo, right)?;
        let right_source = if right_resolved.explicit_staging {
            if kind == DiffKind::ThreeDot {
                return Err(StoreError::InvalidRef(STAGING_NOT_A_COMMIT.to_string()));
            }
            view_source(&read_refs.commits, repo, &right_resolved)?
        } else {
            // A plain branch compares its head commit: refs diffs are between commits.
            let commit = tables.require_commit(repo, right_resolved.view.commit_id())?;
            view_source(
                &read_refs.commits,
                repo,
                &super::refs::Resolved {
                    view: RefView::Commit(commit.id),
                    explicit_staging: false,
                },
            )?
        };
        let left_source = ViewSource {
            tree_id: left_commit.meta_range_id.clone(),
            staging: None,
        };
        let prefix = page.prefix.as_bytes();
        match kind {
            DiffKind::TwoDot if left_source.tree_id == right_source.tree_id => {
                // Same tree: only the right side's staged changes (if any) can differ; no tree walk needed.
                let Some((_, branch)) = &right_source.staging else {
                    return Ok(Page {
                        items: vec![],
                        has_more: false,
                    });
                };
                let mut source = StagedDiff {
                    staging: SortedCursor::new(&staging, meta::key_prefix(&[repo, branch]), prefix),
                    trees: &trees,
                    head_tree: right_source.tree_id.clone(),
                };
                paginate_diff(&mut source, page, delimiter)
            }
            DiffKind::TwoDot => {
                let mut source = TwoWay {
                    left: ViewCursor::new(&trees, &staging, &left_source, prefix)?,
                    right: ViewCursor::new(&trees, &staging, &right_source, prefix)?,
                };
                paginate_diff(&mut source, page, delimiter)
            }
            DiffKind::ThreeDot => {
                let right_commit = tables.require_commit(repo, right_resolved.view.commit_id())?;
                let base_id = super::merge::find_merge_base(&tables, repo, &left_commit, &right_commit)?;
                let base_tree = match &base_id {
                    Some(id) => tables.require_commit(repo, id)?.meta_range_id,
                    None => tree::EMPTY_TREE.to_string(),
                };
                let base_source = ViewSource {
                    tree_id: base_tree,
                    staging: None,
                };
                let mut source = ThreeWay {
                    base: ViewCursor::new(&trees, &staging, &base_source, prefix)?,
                    source: ViewCursor::new(&trees, &staging, &right_source, prefix)?,
                    dest: ViewCursor::new(&trees, &staging, &left_source, prefix)?,
                };
                paginate_diff(&mut source, page, delimiter)
            }
        }
    }
}
