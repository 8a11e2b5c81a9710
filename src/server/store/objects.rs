//! Object reads through a ref view and staged writes on a branch.
//!
//! A write touches only the branch's staging area. Concurrent writes share one redb transaction (one disk
//! flush; see [`super::group`]), each still checked and answered on its own. `If-None-Match: *` checks
//! existence and writes in the same transaction, so two racing creators cannot both succeed. A delete stages a
//! tombstone only when the head commit has the path; otherwise it just drops the staged entry (lakefs-api.md
//! §4.5), so a never-committed key leaves nothing behind.

use super::group::StagedPut;
use super::list;
use super::meta::{self, Kv, BRANCHES, COMMITS, REPOSITORIES, STAGING, TREES};
use super::refs::{self, ReadRefs, Resolved};
use super::repos::{require_branch, require_repository};
use super::tree::{self, ViewCursor, ViewSource};
use super::{Commit, ListEntry, ObjectEntry, Page, PageRequest, RefView, Store, StoreError};

/// The entries a resolved ref shows.
pub(super) fn view_source(commits: &impl Kv, repo: &str, resolved: &Resolved) -> Result<ViewSource, StoreError> {
    let commit = head_commit(commits, repo, resolved.view.commit_id())?;
    let staging = match &resolved.view {
        RefView::Branch { branch, .. } => Some((repo.to_string(), branch.clone())),
        RefView::BranchHead { .. } | RefView::Commit(_) => None,
    };
    Ok(ViewSource {
        tree_id: commit.meta_range_id,
        staging,
    })
}

/// A commit a branch or ref points at; missing means a corrupt database.
pub(super) fn head_commit(commits: &impl Kv, repo: &str, id: &str) -> Result<Commit, StoreError> {
    meta::get_json(commits, &meta::key(&[repo, id]))?
        .ok_or_else(|| StoreError::Internal(format!("reference to missing commit {id}")))
}

impl Store {
    pub(super) fn resolve_ref_impl(&self, repo: &str, ref_expr: &str) -> Result<RefView, StoreError> {
        let txn = self.db().begin_read()?;
        let read_refs = ReadRefs::open(&txn, repo)?;
        Ok(read_refs.tables().resolve(repo, ref_expr)?.view)
    }

    pub(super) fn stat_object_impl(&self, repo: &str, ref_expr: &str, path: &str) -> Result<ObjectEntry, StoreError> {
        refs::validate_path(path)?;
        let txn = self.db().begin_read()?;
        let read_refs = ReadRefs::open(&txn, repo)?;
        let resolved = read_refs.tables().resolve(repo, ref_expr)?;
        let source = view_source(&read_refs.commits, repo, &resolved)?;
        let (trees, staging) = (txn.open_table(TREES)?, txn.open_table(STAGING)?);
        tree::view_get(&trees, &staging, &source, path)?.ok_or(StoreError::ObjectNotFound)
    }

    pub(super) fn list_objects_impl(
        &self,
        repo: &str,
        ref_expr: &str,
        page: &PageRequest,
        delimiter: Option<&str>,
    ) -> Result<Page<ListEntry>, StoreError> {
        let txn = self.db().begin_read()?;
        let read_refs = ReadRefs::open(&txn, repo)?;
        let resolved = read_refs.tables().resolve(repo, ref_expr)?;
        let source = view_source(&read_refs.commits, repo, &resolved)?;
        let (trees, staging) = (txn.open_table(TREES)?, txn.open_table(STAGING)?);
        let mut cursor = ViewCursor::new(&trees, &staging, &source, page.prefix.as_bytes())?;
        list::list_view(&mut cursor, &page.prefix, &page.after, page.amount, delimiter)
    }

    pub(super) fn put_object_impl(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        entry: ObjectEntry,
        if_none_match: bool,
    ) -> Result<ObjectEntry, StoreError> {
        refs::validate_path(path)?;
        let put = StagedPut {
            repo: repo.to_string(),
            branch: branch.to_string(),
            path: path.to_string(),
            value: meta::to_json(&entry)?,
            if_none_match,
        };
        self.group_commit().submit(put, |batch| self.stage_puts(batch))?;
        Ok(entry)
    }

    /// Stage every put of `batch` in one transaction: each gets its own result (a missing branch or a failed
    /// precondition fails only that put), and a failed commit fails them all.
    fn stage_puts(&self, batch: &[StagedPut]) -> Vec<Result<(), StoreError>> {
        let staged = || -> Result<Vec<Result<(), StoreError>>, StoreError> {
            let txn = self.db().begin_write()?;
            let mut results = Vec::with_capacity(batch.len());
            {
                let (repositories, branches, commits) = (
                    txn.open_table(REPOSITORIES)?,
                    txn.open_table(BRANCHES)?,
                    txn.open_table(COMMITS)?,
                );
                let (trees, mut staging) = (txn.open_table(TREES)?, txn.open_table(STAGING)?);
                for put in batch {
                    let checked = (|| {
                        require_repository(&repositories, &put.repo)?;
                        let record = require_branch(&branches, &put.repo, &put.branch)?;
                        if put.if_none_match {
                            // Sees the puts of this batch staged before it, as a transaction of its own would.
                            let head = head_commit(&commits, &put.repo, &record.head)?;
                            let source = ViewSource {
                                tree_id: head.meta_range_id,
                                staging: Some((put.repo.clone(), put.branch.clone())),
                            };
                            if tree::view_get(&trees, &staging, &source, &put.path)?.is_some() {
                                return Err(StoreError::PreconditionFailed("path already exists".to_string()));
                            }
                        }
                        Ok(())
                    })();
                    if checked.is_ok() {
                        staging.insert(
                            meta::key(&[&put.repo, &put.branch, &put.path]).as_slice(),
                            put.value.as_slice(),
                        )?;
                    }
                    results.push(checked);
                }
            }
            txn.commit()?;
            Ok(results)
        };
        match staged() {
            Ok(results) => results,
            Err(err) => {
                let message = err.to_string();
                batch
                    .iter()
                    .map(|_| Err(StoreError::Internal(message.clone())))
                    .collect()
            }
        }
    }

    pub(super) fn put_objects_impl(
        &self,
        repo: &str,
        branch: &str,
        objects: &[(String, ObjectEntry)],
    ) -> Result<(), StoreError> {
        for (path, _) in objects {
            refs::validate_path(path)?;
        }
        let txn = self.db().begin_write()?;
        {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            require_branch(&txn.open_table(BRANCHES)?, repo, branch)?;
            let mut staging = txn.open_table(STAGING)?;
            for (path, entry) in objects {
                staging.insert(
                    meta::key(&[repo, branch, path]).as_slice(),
                    meta::to_json(entry)?.as_slice(),
                )?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub(super) fn delete_object_impl(&self, repo: &str, branch: &str, path: &str) -> Result<(), StoreError> {
        refs::validate_path(path)?;
        let failures = self.delete_objects_impl(repo, branch, &[path.to_string()])?;
        match failures.into_iter().next() {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }

    pub(super) fn delete_objects_impl(
        &self,
        repo: &str,
        branch: &str,
        paths: &[String],
    ) -> Result<Vec<(String, StoreError)>, StoreError> {
        let mut failures = Vec::new();
        let txn = self.db().begin_write()?;
        {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let record = require_branch(&txn.open_table(BRANCHES)?, repo, branch)?;
            let head = head_commit(&txn.open_table(COMMITS)?, repo, &record.head)?;
            let trees = txn.open_table(TREES)?;
            let mut staging = txn.open_table(STAGING)?;
            for path in paths {
                if let Err(error) = refs::validate_path(path) {
                    failures.push((path.clone(), error));
                    continue;
                }
                let key = meta::key(&[repo, branch, path]);
                if tree::tree_get(&trees, &head.meta_range_id, path)?.is_some() {
                    staging.insert(key.as_slice(), &b""[..])?;
                } else {
                    staging.remove(key.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(failures)
    }
}
