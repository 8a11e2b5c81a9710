//! Action runs (lakefs-api.md §5.5): stored per repository under their run id. Run ids are chosen by the caller
//! so that they sort newest first, so ascending key order is the listing order.

use super::meta::{self, ACTION_RUNS, REPOSITORIES};
use super::repos::require_repository;
use super::{ActionRun, Page, PageRequest, Store, StoreError};

impl Store {
    pub(super) fn record_action_run_impl(&self, repo: &str, run: &ActionRun) -> Result<(), StoreError> {
        if run.run_id.is_empty() || run.run_id.contains('\0') {
            return Err(StoreError::InvalidArgument("action run: invalid run id".to_string()));
        }
        let txn = self.db().begin_write()?;
        {
            require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
            let mut runs = txn.open_table(ACTION_RUNS)?;
            runs.insert(
                meta::key(&[repo, &run.run_id]).as_slice(),
                meta::to_json(run)?.as_slice(),
            )?;
        }
        txn.commit()?;
        Ok(())
    }

    pub(super) fn list_action_runs_impl(
        &self,
        repo: &str,
        branch: Option<&str>,
        commit: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ActionRun>, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        let runs = txn.open_table(ACTION_RUNS)?;
        meta::scan_page(&runs, &meta::key_prefix(&[repo]), page, |_, value| {
            let run: ActionRun = meta::from_json(value)?;
            let wanted = branch.is_none_or(|b| run.branch == b) && commit.is_none_or(|c| run.commit_id == c);
            Ok(wanted.then_some(run))
        })
    }

    pub(super) fn get_action_run_impl(&self, repo: &str, run_id: &str) -> Result<ActionRun, StoreError> {
        let txn = self.db().begin_read()?;
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        meta::get_json(&txn.open_table(ACTION_RUNS)?, &meta::key(&[repo, run_id]))?
            .ok_or_else(|| StoreError::RefNotFound(format!("action run '{run_id}'")))
    }
}
