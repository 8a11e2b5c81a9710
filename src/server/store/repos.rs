//! Repositories, branches and tags.

use super::commits::{new_commit, CommitDraft};
use super::meta::{self, BranchRecord, Kv, ACTION_RUNS, BRANCHES, COMMITS, REPOSITORIES, SETTINGS, STAGING, TAGS};
use super::refs::{self, RefTables};
use super::tree::EMPTY_TREE;
use super::{Branch, CommitId, Page, PageRequest, Repository, Store, StoreError, Tag};

pub(super) fn require_repository(repositories: &impl Kv, id: &str) -> Result<Repository, StoreError> {
    meta::get_json(repositories, id.as_bytes())?.ok_or(StoreError::RepositoryNotFound)
}

pub(super) fn require_branch(branches: &impl Kv, repo: &str, name: &str) -> Result<BranchRecord, StoreError> {
    meta::get_json(branches, &meta::key(&[repo, name]))?.ok_or_else(|| StoreError::BranchNotFound(name.to_string()))
}

impl Store {
    pub(super) fn create_repository_impl(
        &self,
        id: &str,
        storage_namespace: &str,
        default_branch: &str,
    ) -> Result<Repository, StoreError> {
        refs::validate_repository_id(id)?;
        refs::validate_branch_id(default_branch)?;
        let txn = self.db().begin_write()?;
        let repository = {
            let mut repositories = txn.open_table(REPOSITORIES)?;
            if meta::get_raw(&repositories, id.as_bytes())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("repository '{id}'")));
            }
            let repository = Repository {
                id: id.to_string(),
                storage_namespace: storage_namespace.to_string(),
                default_branch: default_branch.to_string(),
                creation_date: super::now(),
                read_only: false,
            };
            repositories.insert(id.as_bytes(), meta::to_json(&repository)?.as_slice())?;
            let mut commits = txn.open_table(COMMITS)?;
            let commit = new_commit(CommitDraft {
                parents: vec![],
                committer: String::new(),
                message: "Repository created".to_string(),
                creation_date: repository.creation_date,
                meta_range_id: EMPTY_TREE.to_string(),
                metadata: Default::default(),
                generation: 1,
            })?;
            commits.insert(
                meta::key(&[id, &commit.id]).as_slice(),
                meta::to_json(&commit)?.as_slice(),
            )?;
            let mut branches = txn.open_table(BRANCHES)?;
            let record = BranchRecord {
                head: commit.id,
                hidden: false,
            };
            branches.insert(
                meta::key(&[id, default_branch]).as_slice(),
                meta::to_json(&record)?.as_slice(),
            )?;
            repository
        };
        txn.commit()?;
        Ok(repository)
    }

    pub(super) fn get_repository_impl(&self, id: &str) -> Result<Repository, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, id)
    }

    pub(super) fn list_repositories_impl(&self, page: &PageRequest) -> Result<Page<Repository>, StoreError> {
        let txn = self.db().begin_read()?;
        let repositories = txn.open_table(REPOSITORIES)?;
        meta::scan_page(&repositories, b"", page, |_, value| Ok(Some(meta::from_json(value)?)))
    }

    pub(super) fn delete_repository_impl(&self, id: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            let mut repositories = txn.open_table(REPOSITORIES)?;
            if repositories.remove(id.as_bytes())?.is_none() {
                return Err(StoreError::RepositoryNotFound);
            }
            let below = meta::key_prefix(&[id]);
            for table in [BRANCHES, TAGS, COMMITS, STAGING, ACTION_RUNS, SETTINGS] {
                meta::remove_prefix(&mut txn.open_table(table)?, &below)?;
            }
            // Trees are content-addressed and may be shared with other repositories; they stay.
        }
        txn.commit()?;
        Ok(())
    }

    pub(super) fn create_branch_impl(
        &self,
        repo: &str,
        name: &str,
        source: &str,
        hidden: bool,
    ) -> Result<CommitId, StoreError> {
        refs::validate_branch_id(name)?;
        let txn = self.db().begin_write()?;
        let head = {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let mut branches = txn.open_table(BRANCHES)?;
            let tags = txn.open_table(TAGS)?;
            let commits = txn.open_table(COMMITS)?;
            let tables = RefTables::new(&branches, &tags, &commits);
            let commit = tables.resolve_commit(repo, source)?;
            let key = meta::key(&[repo, name]);
            if meta::get_raw(&branches, &key)?.is_some() {
                return Err(StoreError::AlreadyExists(format!("branch '{name}'")));
            }
            if meta::get_raw(&tags, &key)?.is_some()
                || (refs::is_commit_id(name) && meta::get_raw(&commits, &key)?.is_some())
            {
                return Err(StoreError::NameConflict(format!("branch '{name}'")));
            }
            let record = BranchRecord {
                head: commit.id.clone(),
                hidden,
            };
            branches.insert(key.as_slice(), meta::to_json(&record)?.as_slice())?;
            commit.id
        };
        txn.commit()?;
        Ok(head)
    }

    pub(super) fn get_branch_impl(&self, repo: &str, name: &str) -> Result<Branch, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        let record = require_branch(&txn.open_table(BRANCHES)?, repo, name)?;
        Ok(Branch {
            id: name.to_string(),
            head: record.head,
            hidden: record.hidden,
        })
    }

    pub(super) fn list_branches_impl(
        &self,
        repo: &str,
        page: &PageRequest,
        show_hidden: bool,
    ) -> Result<Page<Branch>, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        let branches = txn.open_table(BRANCHES)?;
        meta::scan_page(&branches, &meta::key_prefix(&[repo]), page, |name, value| {
            let record: BranchRecord = meta::from_json(value)?;
            Ok((show_hidden || !record.hidden).then(|| Branch {
                id: name.to_string(),
                head: record.head,
                hidden: record.hidden,
            }))
        })
    }

    pub(super) fn delete_branch_impl(&self, repo: &str, name: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            let repository = require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let mut branches = txn.open_table(BRANCHES)?;
            require_branch(&branches, repo, name)?;
            if repository.default_branch == name {
                return Err(StoreError::Forbidden(
                    "cannot delete repository default branch".to_string(),
                ));
            }
            branches.remove(meta::key(&[repo, name]).as_slice())?;
            meta::remove_prefix(&mut txn.open_table(STAGING)?, &meta::key_prefix(&[repo, name]))?;
        }
        txn.commit()?;
        Ok(())
    }

    pub(super) fn create_tag_impl(&self, repo: &str, id: &str, ref_expr: &str) -> Result<Tag, StoreError> {
        refs::validate_tag_id(id)?;
        let txn = self.db().begin_write()?;
        let tag = {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let branches = txn.open_table(BRANCHES)?;
            let mut tags = txn.open_table(TAGS)?;
            let commits = txn.open_table(COMMITS)?;
            let commit = RefTables::new(&branches, &tags, &commits).resolve_commit(repo, ref_expr)?;
            let key = meta::key(&[repo, id]);
            if meta::get_raw(&tags, &key)?.is_some() {
                return Err(StoreError::AlreadyExists(format!("tag '{id}'")));
            }
            if meta::get_raw(&branches, &key)?.is_some()
                || (refs::is_commit_id(id) && meta::get_raw(&commits, &key)?.is_some())
            {
                return Err(StoreError::NameConflict(format!("tag '{id}'")));
            }
            tags.insert(key.as_slice(), commit.id.as_bytes())?;
            Tag {
                id: id.to_string(),
                commit_id: commit.id,
            }
        };
        txn.commit()?;
        Ok(tag)
    }

    pub(super) fn get_tag_impl(&self, repo: &str, id: &str) -> Result<Tag, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        let raw = meta::get_raw(&txn.open_table(TAGS)?, &meta::key(&[repo, id]))?.ok_or(StoreError::TagNotFound)?;
        Ok(Tag {
            id: id.to_string(),
            commit_id: meta::utf8(&raw)?.to_string(),
        })
    }

    pub(super) fn list_tags_impl(&self, repo: &str, page: &PageRequest) -> Result<Page<Tag>, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        let tags = txn.open_table(TAGS)?;
        meta::scan_page(&tags, &meta::key_prefix(&[repo]), page, |name, value| {
            Ok(Some(Tag {
                id: name.to_string(),
                commit_id: meta::utf8(value)?.to_string(),
            }))
        })
    }

    pub(super) fn delete_tag_impl(&self, repo: &str, id: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            if txn
                .open_table(TAGS)?
                .remove(meta::key(&[repo, id]).as_slice())?
                .is_none()
            {
                return Err(StoreError::TagNotFound);
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub(super) fn set_repository_read_only_impl(&self, id: &str, read_only: bool) -> Result<Repository, StoreError> {
        let txn = self.db().begin_write()?;
        let repository = {
            let mut repositories = txn.open_table(REPOSITORIES)?;
            let mut repository = require_repository(&repositories, id)?;
            repository.read_only = read_only;
            repositories.insert(id.as_bytes(), meta::to_json(&repository)?.as_slice())?;
            repository
        };
        txn.commit()?;
        Ok(repository)
    }

    pub(super) fn get_setting_impl(&self, repo: &str, name: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        match meta::get_raw(&txn.open_table(SETTINGS)?, &meta::key(&[repo, name]))? {
            Some(raw) => Ok(Some(meta::utf8(&raw)?.to_string())),
            None => Ok(None),
        }
    }

    pub(super) fn set_setting_impl(&self, repo: &str, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        if name.is_empty() || name.contains('\0') {
            return Err(StoreError::InvalidArgument("setting: invalid name".to_string()));
        }
        let txn = self.db().begin_write()?;
        {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let mut settings = txn.open_table(SETTINGS)?;
            let key = meta::key(&[repo, name]);
            match value {
                Some(value) => settings.insert(key.as_slice(), value.as_bytes())?,
                None => settings.remove(key.as_slice())?,
            };
        }
        txn.commit()?;
        Ok(())
    }
}
