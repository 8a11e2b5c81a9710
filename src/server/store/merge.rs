//! Three-way merge (lakefs-api.md §6), merge base, revert, and branch resets.
//!
//! Per path, with identities compared as [`ObjectEntry::same_identity`] (absent = X):
//! source unchanged since base -> keep dest; else dest unchanged since base -> take source; else both sides made
//! the same change -> keep it; else conflict. That is exactly the §6 table: `A B C`, `A B X`, `A X B` and `X B C`
//! conflict, `A B B` and `X B B` agree, and a change on one side wins over no change on the other.
//!
//! The merge base is the common ancestor with the highest generation: all ancestors of one side are marked, then
//! the other side is walked newest-generation first and the first marked commit wins. Merge and revert build the
//! result tree and write the commit and the branch move in one redb write transaction; a conflict without a
//! strategy returns before anything is written.
//!
//! Merge, revert, cherry-pick and hard reset require a clean branch. Staged entries identical to the head (and
//! tombstones of absent paths) do not make a branch dirty, but they are dropped when the head moves: over the new
//! head they would no longer be no-ops.

use std::collections::{BinaryHeap, HashSet};

use super::commits::{self, new_commit, CommitDraft};
use super::diff::ThreeWay;
use super::meta::{self, Kv, BRANCHES, COMMITS, REPOSITORIES, STAGING, TAGS, TREES};
use super::refs::{self, ReadRefs, RefTables};
use super::repos::{require_branch, require_repository};
use super::tree::{self, Record, ViewCursor, ViewSource, EMPTY_TREE};
use super::{
    Commit, CommitId, CommitRequest, MergeBase, MergeRequest, MergeStrategy, ObjectEntry, ResetKind, Store, StoreError,
};

/// Metadata key recording the strategy of a merge commit.
pub(super) const MERGE_STRATEGY_KEY: &str = ".lakefs.merge.strategy";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PathOutcome {
    KeepDest,
    TakeSource,
    Conflict,
}

/// Same version for merge purposes (raw records first, identity if the bytes differ).
fn same(a: Option<&[u8]>, b: Option<&[u8]>) -> Result<bool, StoreError> {
    Ok(match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a == b || meta::from_json::<ObjectEntry>(a)?.same_identity(&meta::from_json::<ObjectEntry>(b)?)
        }
        _ => false,
    })
}

/// The §6 table for one path.
pub(super) fn resolve_path(
    base: Option<&[u8]>,
    source: Option<&[u8]>,
    dest: Option<&[u8]>,
) -> Result<PathOutcome, StoreError> {
    Ok(if same(source, base)? || same(dest, source)? {
        PathOutcome::KeepDest
    } else if same(dest, base)? {
        PathOutcome::TakeSource
    } else {
        PathOutcome::Conflict
    })
}

/// Merges `source_tree` into `dest_tree` relative to `base_tree`, stores the result and returns its id. Conflicts
/// fail with [`StoreError::MergeConflict`] under [`MergeStrategy::Default`] and are resolved one way otherwise.
///
/// When one side did not change since the base the result is the other side's tree, found without reading a
/// single entry: the common "merge a work branch into an idle branch" costs O(1).
fn three_way_merge(
    trees: &mut redb::Table<&'static [u8], &'static [u8]>,
    staging: &redb::Table<&'static [u8], &'static [u8]>,
    base_tree: &str,
    source_tree: &str,
    dest_tree: &str,
    strategy: MergeStrategy,
) -> Result<String, StoreError> {
    if source_tree == base_tree || source_tree == dest_tree {
        return Ok(dest_tree.to_string());
    }
    if dest_tree == base_tree {
        return Ok(source_tree.to_string());
    }
    let (records, conflicts) = {
        let trees = &*trees;
        let view = |id: &str| ViewSource {
            tree_id: id.to_string(),
            staging: None,
        };
        let mut walk = ThreeWay {
            base: ViewCursor::new(trees, staging, &view(base_tree), b"")?,
            source: ViewCursor::new(trees, staging, &view(source_tree), b"")?,
            dest: ViewCursor::new(trees, staging, &view(dest_tree), b"")?,
        };
        let mut records: Vec<Record> = Vec::new();
        let mut conflicts = Vec::new();
        while let Some((path, base, source, dest)) = walk.next_path()? {
            let winner = match resolve_path(base.as_deref(), source.as_deref(), dest.as_deref())? {
                PathOutcome::KeepDest => dest,
                PathOutcome::TakeSource => source,
                PathOutcome::Conflict => {
                    conflicts.push(meta::utf8(&path)?.to_string());
                    match strategy {
                        MergeStrategy::SourceWins => source,
                        MergeStrategy::DestWins | MergeStrategy::Default => dest,
                    }
                }
            };
            if let Some(value) = winner {
                records.push((path, value));
            }
        }
        (records, conflicts)
    };
    if !conflicts.is_empty() && strategy == MergeStrategy::Default {
        return Err(StoreError::MergeConflict { paths: conflicts });
    }
    tree::store_tree(trees, &records)
}

/// Which way [`Store::replay_impl`] applies a commit's change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Replay {
    Revert,
    CherryPick,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ByGeneration(i64, String);

/// The best common ancestor of `a` and `b`, if they have one.
pub(super) fn find_merge_base<T: Kv>(
    tables: &RefTables<'_, T>,
    repo: &str,
    a: &Commit,
    b: &Commit,
) -> Result<Option<CommitId>, StoreError> {
    let mut ancestors_of_a = HashSet::new();
    let mut stack = vec![a.id.clone()];
    while let Some(id) = stack.pop() {
        if ancestors_of_a.insert(id.clone()) {
            stack.extend(tables.require_commit(repo, &id)?.parents);
        }
    }
    let mut heap = BinaryHeap::from([ByGeneration(b.generation, b.id.clone())]);
    let mut seen = HashSet::from([b.id.clone()]);
    while let Some(ByGeneration(_, id)) = heap.pop() {
        if ancestors_of_a.contains(&id) {
            return Ok(Some(id));
        }
        for parent in tables.require_commit(repo, &id)?.parents {
            if seen.insert(parent.clone()) {
                let generation = tables.require_commit(repo, &parent)?.generation;
                heap.push(ByGeneration(generation, parent));
            }
        }
    }
    Ok(None)
}

impl Store {
    pub(super) fn merge_base_impl(&self, repo: &str, source: &str, destination: &str) -> Result<MergeBase, StoreError> {
        let txn = self.db().begin_read()?;
        let read_refs = ReadRefs::open(&txn, repo)?;
        let tables = read_refs.tables();
        let source = tables.resolve_commit(repo, source)?;
        let destination = tables.resolve_commit(repo, destination)?;
        let base = find_merge_base(&tables, repo, &source, &destination)?
            .ok_or_else(|| StoreError::RefNotFound("merge base".to_string()))?;
        Ok(MergeBase {
            source_commit_id: source.id,
            destination_commit_id: destination.id,
            base_commit_id: base,
        })
    }

    pub(super) fn merge_impl(
        &self,
        repo: &str,
        source: &str,
        destination: &str,
        request: MergeRequest,
    ) -> Result<Commit, StoreError> {
        let txn = self.db().begin_write()?;
        let commit = {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let mut branches = txn.open_table(BRANCHES)?;
            let mut commits = txn.open_table(COMMITS)?;
            let mut trees = txn.open_table(TREES)?;
            let mut staging = txn.open_table(STAGING)?;
            let dest_record = require_branch(&branches, repo, destination)?;
            let (source_commit, dest_head, base_tree) = {
                let tags = txn.open_table(TAGS)?;
                let tables = RefTables::new(&branches, &tags, &commits);
                let source_commit = tables.resolve_commit(repo, source)?;
                let dest_head = tables.require_commit(repo, &dest_record.head)?;
                let base_tree = match find_merge_base(&tables, repo, &dest_head, &source_commit)? {
                    Some(id) => tables.require_commit(repo, &id)?.meta_range_id,
                    None => EMPTY_TREE.to_string(),
                };
                (source_commit, dest_head, base_tree)
            };
            let dirty = commits::staged_changes(&trees, &staging, repo, destination, &dest_head.meta_range_id, true)?;
            if !dirty.is_empty() {
                return Err(StoreError::DirtyBranch);
            }
            // Leftovers identical to the old head would show through over the new one: drop them.
            meta::remove_prefix(&mut staging, &meta::key_prefix(&[repo, destination]))?;
            let tree_id = three_way_merge(
                &mut trees,
                &staging,
                &base_tree,
                &source_commit.meta_range_id,
                &dest_head.meta_range_id,
                request.strategy,
            )?;
            if tree_id == dest_head.meta_range_id && !request.allow_empty {
                return Err(StoreError::NoChanges);
            }
            let mut parents = vec![dest_head.id.clone()];
            let mut generation = dest_head.generation;
            if !request.squash {
                parents.push(source_commit.id.clone());
                generation = generation.max(source_commit.generation);
            }
            let mut metadata = request.metadata;
            metadata.insert(MERGE_STRATEGY_KEY.to_string(), request.strategy.as_str().to_string());
            let commit = new_commit(CommitDraft {
                parents,
                committer: request.committer,
                message: request
                    .message
                    .unwrap_or_else(|| format!("Merge '{source}' into '{destination}'")),
                creation_date: super::now(),
                meta_range_id: tree_id,
                metadata,
                generation: generation + 1,
            })?;
            commits::store_commit_and_move(
                &mut commits,
                &mut branches,
                repo,
                destination,
                dest_record.hidden,
                &commit,
            )?;
            commit
        };
        txn.commit()?;
        Ok(commit)
    }

    pub(super) fn reset_branch_impl(&self, repo: &str, branch: &str, kind: ResetKind) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            require_branch(&txn.open_table(BRANCHES)?, repo, branch)?;
            let mut staging = txn.open_table(STAGING)?;
            match kind {
                ResetKind::Object(path) => {
                    refs::validate_path(&path)?;
                    staging.remove(meta::key(&[repo, branch, &path]).as_slice())?;
                }
                ResetKind::CommonPrefix(prefix) => {
                    let mut key = meta::key_prefix(&[repo, branch]);
                    key.extend_from_slice(prefix.as_bytes());
                    meta::remove_prefix(&mut staging, &key)?;
                }
                ResetKind::All => meta::remove_prefix(&mut staging, &meta::key_prefix(&[repo, branch]))?,
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub(super) fn hard_reset_branch_impl(&self, repo: &str, branch: &str, ref_expr: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let mut branches = txn.open_table(BRANCHES)?;
            let commits = txn.open_table(COMMITS)?;
            let record = require_branch(&branches, repo, branch)?;
            let target = {
                let tags = txn.open_table(TAGS)?;
                RefTables::new(&branches, &tags, &commits).resolve_commit(repo, ref_expr)?
            };
            let head = super::objects::head_commit(&commits, repo, &record.head)?;
            let (trees, mut staging) = (txn.open_table(TREES)?, txn.open_table(STAGING)?);
            if !commits::staged_changes(&trees, &staging, repo, branch, &head.meta_range_id, true)?.is_empty() {
                return Err(StoreError::DirtyBranch);
            }
            let moved = meta::BranchRecord {
                head: target.id,
                hidden: record.hidden,
            };
            branches.insert(meta::key(&[repo, branch]).as_slice(), meta::to_json(&moved)?.as_slice())?;
            // Leftovers identical to the old head may differ from the new one: drop them.
            meta::remove_prefix(&mut staging, &meta::key_prefix(&[repo, branch]))?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Revert (apply the inverse of a commit's change) or cherry-pick (apply the change) onto `branch`: a
    /// three-way merge between the commit and its parent number `parent_number` (0 = the only parent), with the
    /// branch head as destination and no conflict strategy.
    pub(super) fn replay_impl(
        &self,
        repo: &str,
        branch: &str,
        ref_expr: &str,
        parent_number: u32,
        request: CommitRequest,
        replay: Replay,
    ) -> Result<Commit, StoreError> {
        let operation = match replay {
            Replay::Revert => "revert",
            Replay::CherryPick => "cherry-pick",
        };
        let txn = self.db().begin_write()?;
        let commit = {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let mut branches = txn.open_table(BRANCHES)?;
            let mut commits = txn.open_table(COMMITS)?;
            let mut trees = txn.open_table(TREES)?;
            let mut staging = txn.open_table(STAGING)?;
            let record = require_branch(&branches, repo, branch)?;
            let (reverted, parent_tree, head) = {
                let tags = txn.open_table(TAGS)?;
                let tables = RefTables::new(&branches, &tags, &commits);
                let reverted = tables.resolve_commit(repo, ref_expr)?;
                let parent_index = match (reverted.parents.len(), parent_number) {
                    (n, 0) if n > 1 => {
                        return Err(StoreError::NameConflict(format!(
                            "{operation} {}: a merge commit needs a parent number",
                            reverted.id
                        )))
                    }
                    (_, 0) => 0,
                    (n, p) if (p as usize) <= n => p as usize - 1,
                    (_, p) => {
                        return Err(StoreError::InvalidArgument(format!(
                            "{operation}: no parent number {p}"
                        )))
                    }
                };
                let parent_tree = match reverted.parents.get(parent_index) {
                    Some(id) => tables.require_commit(repo, id)?.meta_range_id,
                    None => EMPTY_TREE.to_string(),
                };
                let head = tables.require_commit(repo, &record.head)?;
                (reverted, parent_tree, head)
            };
            if !commits::staged_changes(&trees, &staging, repo, branch, &head.meta_range_id, true)?.is_empty() {
                return Err(StoreError::DirtyBranch);
            }
            // Leftovers identical to the old head would show through over the new one: drop them.
            meta::remove_prefix(&mut staging, &meta::key_prefix(&[repo, branch]))?;
            let (base, source) = match replay {
                Replay::Revert => (&reverted.meta_range_id, &parent_tree),
                Replay::CherryPick => (&parent_tree, &reverted.meta_range_id),
            };
            let tree_id = three_way_merge(
                &mut trees,
                &staging,
                base,
                source,
                &head.meta_range_id,
                MergeStrategy::Default,
            )?;
            if tree_id == head.meta_range_id && !request.allow_empty {
                return Err(StoreError::NoChanges);
            }
            let message = match replay {
                _ if !request.message.is_empty() => request.message,
                Replay::Revert => format!("Revert {}", reverted.id),
                Replay::CherryPick => reverted.message,
            };
            let metadata = match replay {
                Replay::CherryPick if request.metadata.is_empty() => reverted.metadata,
                _ => request.metadata,
            };
            let commit = new_commit(CommitDraft {
                parents: vec![head.id.clone()],
                committer: request.committer,
                message,
                creation_date: request.date.unwrap_or_else(super::now),
                meta_range_id: tree_id,
                metadata,
                generation: head.generation + 1,
            })?;
            commits::store_commit_and_move(&mut commits, &mut branches, repo, branch, record.hidden, &commit)?;
            commit
        };
        txn.commit()?;
        Ok(commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(content: &str, metadata: &[(&str, &str)]) -> Vec<u8> {
        let mut e = crate::server::store::tests::entry(content);
        e.metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        meta::to_json(&e).unwrap()
    }

    #[test]
    fn merge_table_of_lakefs() {
        use PathOutcome::*;
        let (a, b, c) = (raw("a", &[]), raw("b", &[]), raw("c", &[]));
        let (a, b, c) = (Some(a.as_slice()), Some(b.as_slice()), Some(c.as_slice()));
        let x: Option<&[u8]> = None;
        // (base, source, dest) -> outcome, row by row from lakefs-api.md §6.
        let rows = [
            (a, a, a, KeepDest),
            (a, b, b, KeepDest),
            (a, b, c, Conflict),
            (a, a, b, KeepDest),
            (a, b, a, TakeSource),
            (a, x, x, KeepDest),
            (a, b, x, Conflict),
            (a, x, b, Conflict),
            (a, a, x, KeepDest),
            (a, x, a, TakeSource),
            (x, b, c, Conflict),
            (x, b, b, KeepDest),
            (x, b, x, TakeSource),
            (x, x, c, KeepDest),
        ];
        for (i, (base, source, dest, expected)) in rows.into_iter().enumerate() {
            assert_eq!(resolve_path(base, source, dest).unwrap(), expected, "row {i}");
        }
    }

    #[test]
    fn metadata_only_change_is_a_change_and_mtime_is_not() {
        let a = raw("a", &[]);
        let a_meta = raw("a", &[("k", "v")]);
        let mut later = crate::server::store::tests::entry("a");
        later.mtime += 1000;
        let a_later = meta::to_json(&later).unwrap();
        assert_eq!(
            resolve_path(Some(&a), Some(&a_meta), Some(&a)).unwrap(),
            PathOutcome::TakeSource
        );
        assert_eq!(
            resolve_path(Some(&a), Some(&a_later), Some(&a)).unwrap(),
            PathOutcome::KeepDest
        );
    }
}
