//! Commits: ids, the commit operation, `GET /commits/{ref}` and the log.
//!
//! A commit id is the SHA-256 of the commit's content (parents, committer, message, date, tree, metadata,
//! generation, version), so it is stable and verifiable. Committing reads the staging area, drops staged entries
//! identical to the head's (they are no change, lakefs-api.md §6), builds the new tree and, in the same redb
//! write transaction, stores the commit, moves the branch head and clears the staging area: a crash leaves either
//! the old head with its staged changes or the new head with none.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::ops::Bound;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::meta::{self, BranchRecord, Kv, BRANCHES, COMMITS, REPOSITORIES, STAGING, TREES};
use super::refs::{self, ReadRefs};
use super::repos::{require_branch, require_repository};
use super::tree::{self, Record, SortedCursor, EMPTY_TREE};
use super::{Commit, CommitRequest, LogRequest, ObjectEntry, Page, Store, StoreError};

/// Commit format version reported in `Commit.version`.
const COMMIT_VERSION: i32 = 1;

/// Everything that goes into a commit id.
#[derive(Serialize)]
pub(super) struct CommitDraft {
    pub parents: Vec<String>,
    pub committer: String,
    pub message: String,
    pub creation_date: i64,
    pub meta_range_id: String,
    pub metadata: BTreeMap<String, String>,
    pub generation: i64,
}

pub(super) fn new_commit(draft: CommitDraft) -> Result<Commit, StoreError> {
    #[derive(Serialize)]
    struct Hashed<'a> {
        draft: &'a CommitDraft,
        version: i32,
    }
    let bytes = meta::to_json(&Hashed {
        draft: &draft,
        version: COMMIT_VERSION,
    })?;
    let id = hex::encode(Sha256::digest(&bytes));
    Ok(Commit {
        id,
        parents: draft.parents,
        committer: draft.committer,
        message: draft.message,
        creation_date: draft.creation_date,
        meta_range_id: draft.meta_range_id,
        metadata: draft.metadata,
        generation: draft.generation,
        version: COMMIT_VERSION,
    })
}

/// Effective uncommitted changes of a branch: path -> new entry JSON, or `None` for a deletion. Staged entries
/// identical to the head's and tombstones of paths the head does not have are not changes.
pub(super) type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

pub(super) fn staged_changes(
    trees: &impl Kv,
    staging: &impl Kv,
    repo: &str,
    branch: &str,
    head_tree: &str,
    stop_at_first: bool,
) -> Result<Changes, StoreError> {
    let mut changes = Changes::new();
    let mut cursor = SortedCursor::new(staging, meta::key_prefix(&[repo, branch]), b"");
    cursor.seek(Bound::Unbounded)?;
    while let Some((path, value)) = cursor.next()? {
        let committed = tree::tree_get(trees, head_tree, meta::utf8(&path)?)?;
        let change = match (value.is_empty(), committed) {
            (true, None) => continue,
            (true, Some(_)) => None,
            (false, Some(old)) if old.same_identity(&meta::from_json::<ObjectEntry>(&value)?) => continue,
            (false, _) => Some(value),
        };
        changes.insert(path, change);
        if stop_at_first {
            break;
        }
    }
    Ok(changes)
}

/// Sorted records of `tree_id` with `changes` applied.
pub(super) fn apply_changes(trees: &impl Kv, tree_id: &str, changes: &Changes) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    let mut pending = changes.iter().peekable();
    let push_change = |out: &mut Vec<Record>, path: &Vec<u8>, change: &Option<Vec<u8>>| {
        if let Some(value) = change {
            out.push((path.clone(), value.clone()));
        }
    };
    if tree_id != EMPTY_TREE {
        let mut cursor = SortedCursor::new(trees, meta::key_prefix(&[tree_id]), b"");
        cursor.seek(Bound::Unbounded)?;
        while let Some((path, value)) = cursor.next()? {
            while let Some((p, change)) = pending.next_if(|(p, _)| **p < path) {
                push_change(&mut out, p, change);
            }
            match pending.next_if(|(p, _)| **p == path) {
                Some((p, change)) => push_change(&mut out, p, change),
                None => out.push((path, value)),
            }
        }
    }
    for (p, change) in pending {
        push_change(&mut out, p, change);
    }
    Ok(out)
}

/// Inserts `commit` and points `branch` at it.
pub(super) fn store_commit_and_move(
    commits: &mut redb::Table<&'static [u8], &'static [u8]>,
    branches: &mut redb::Table<&'static [u8], &'static [u8]>,
    repo: &str,
    branch: &str,
    hidden: bool,
    commit: &Commit,
) -> Result<(), StoreError> {
    commits.insert(
        meta::key(&[repo, &commit.id]).as_slice(),
        meta::to_json(commit)?.as_slice(),
    )?;
    let record = BranchRecord {
        head: commit.id.clone(),
        hidden,
    };
    branches.insert(
        meta::key(&[repo, branch]).as_slice(),
        meta::to_json(&record)?.as_slice(),
    )?;
    Ok(())
}

/// True when the two trees differ under `prefix` (identity-wise).
fn trees_differ_under(trees: &impl Kv, a: &str, b: &str, prefix: &str) -> Result<bool, StoreError> {
    if a == b {
        return Ok(false);
    }
    let open = |id: &str| -> Result<Option<SortedCursor<'_, _>>, StoreError> {
        if id == EMPTY_TREE {
            return Ok(None);
        }
        let mut c = SortedCursor::new(trees, meta::key_prefix(&[id]), prefix.as_bytes());
        c.seek(Bound::Unbounded)?;
        Ok(Some(c))
    };
    let (mut ca, mut cb) = (open(a)?, open(b)?);
    loop {
        let ra = match &mut ca {
            Some(c) => c.next()?,
            None => None,
        };
        let rb = match &mut cb {
            Some(c) => c.next()?,
            None => None,
        };
        match (ra, rb) {
            (None, None) => return Ok(false),
            (Some((pa, va)), Some((pb, vb))) => {
                if pa != pb {
                    return Ok(true);
                }
                if va != vb {
                    let ea: ObjectEntry = meta::from_json(&va)?;
                    if !ea.same_identity(&meta::from_json(&vb)?) {
                        return Ok(true);
                    }
                }
            }
            _ => return Ok(true),
        }
    }
}

/// Heap order of the log: newest generation first, then newest date, then id (for determinism).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct LogKey(i64, i64, String);

impl Store {
    pub(super) fn commit_impl(&self, repo: &str, branch: &str, request: CommitRequest) -> Result<Commit, StoreError> {
        let txn = self.db().begin_write()?;
        let commit = {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let mut branches = txn.open_table(BRANCHES)?;
            let mut commits = txn.open_table(COMMITS)?;
            let mut trees = txn.open_table(TREES)?;
            let mut staging = txn.open_table(STAGING)?;
            let record = require_branch(&branches, repo, branch)?;
            let head: Commit = meta::get_json(&commits, &meta::key(&[repo, &record.head]))?
                .ok_or_else(|| StoreError::Internal(format!("branch {branch} points at a missing commit")))?;
            let changes = staged_changes(&trees, &staging, repo, branch, &head.meta_range_id, false)?;
            if changes.is_empty() && !request.allow_empty {
                return Err(StoreError::NoChanges);
            }
            let tree_id = if changes.is_empty() {
                head.meta_range_id.clone()
            } else {
                let records = apply_changes(&trees, &head.meta_range_id, &changes)?;
                tree::store_tree(&mut trees, &records)?
            };
            let commit = new_commit(CommitDraft {
                parents: vec![head.id.clone()],
                committer: request.committer,
                message: request.message,
                creation_date: request.date.unwrap_or_else(super::now),
                meta_range_id: tree_id,
                metadata: request.metadata,
                generation: head.generation + 1,
            })?;
            store_commit_and_move(&mut commits, &mut branches, repo, branch, record.hidden, &commit)?;
            meta::remove_prefix(&mut staging, &meta::key_prefix(&[repo, branch]))?;
            commit
        };
        txn.commit()?;
        Ok(commit)
    }

    pub(super) fn get_commit_impl(&self, repo: &str, ref_expr: &str) -> Result<Commit, StoreError> {
        let txn = self.db().begin_read()?;
        let read_refs = ReadRefs::open(&txn, repo)?;
        read_refs.tables().resolve_commit(repo, ref_expr)
    }

    pub(super) fn log_impl(
        &self,
        repo: &str,
        ref_expr: &str,
        request: &LogRequest,
    ) -> Result<Page<Commit>, StoreError> {
        let amount = request.amount.max(1);
        let txn = self.db().begin_read()?;
        let read_refs = ReadRefs::open(&txn, repo)?;
        let trees = txn.open_table(TREES)?;
        let tables = read_refs.tables();
        let start = tables.resolve_commit(repo, ref_expr)?;
        let stop_at = match &request.stop_at {
            Some(expr) if !expr.is_empty() => Some(tables.resolve_commit(repo, expr)?.id),
            _ => None,
        };
        for object in &request.objects {
            refs::validate_path(object)?;
        }
        let filtered = !request.objects.is_empty() || !request.prefixes.is_empty();

        // Queued commits by id; the heap orders their keys.
        let mut queued = HashMap::new();
        let mut heap = BinaryHeap::new();
        heap.push(LogKey(start.generation, start.creation_date, start.id.clone()));
        queued.insert(start.id.clone(), Some(start));
        let mut passed_after = request.after.is_empty();
        let mut items = Vec::new();
        while let Some(LogKey(_, _, id)) = heap.pop() {
            let Some(commit) = queued.get_mut(&id).and_then(Option::take) else {
                continue;
            };
            if request.since.is_some_and(|since| commit.creation_date < since) {
                continue; // older than `since`, and so are its ancestors
            }
            let parents: &[String] = if request.first_parent {
                &commit.parents[..commit.parents.len().min(1)]
            } else {
                &commit.parents
            };
            let mut first_parent_tree = EMPTY_TREE.to_string();
            for (i, parent_id) in parents.iter().enumerate() {
                let parent = tables.require_commit(repo, parent_id)?;
                if i == 0 {
                    first_parent_tree = parent.meta_range_id.clone();
                }
                if !queued.contains_key(&parent.id) {
                    heap.push(LogKey(parent.generation, parent.creation_date, parent.id.clone()));
                    queued.insert(parent.id.clone(), Some(parent));
                }
            }
            let stop_here = stop_at.as_deref() == Some(commit.id.as_str());
            let matches = !filtered || {
                let mut touched = false;
                for object in &request.objects {
                    let now = tree::tree_get(&trees, &commit.meta_range_id, object)?;
                    let before = tree::tree_get(&trees, &first_parent_tree, object)?;
                    touched |= match (&now, &before) {
                        (Some(a), Some(b)) => !a.same_identity(b),
                        (None, None) => false,
                        _ => true,
                    };
                }
                for prefix in &request.prefixes {
                    touched = touched || trees_differ_under(&trees, &commit.meta_range_id, &first_parent_tree, prefix)?;
                }
                touched
            };
            if !passed_after {
                passed_after = commit.id == request.after;
            } else if matches {
                if items.len() == amount {
                    return Ok(Page { items, has_more: true });
                }
                items.push(commit);
                if request.limit && items.len() == amount {
                    break;
                }
            }
            if stop_here {
                break;
            }
        }
        Ok(Page { items, has_more: false })
    }
}
