//! Branches as directories of a repository directory (DESIGN section 2): `mkdir REPO/NEW` creates branch `NEW`
//! from the repository's default branch; `rmdir REPO/BRANCH` is refused (EPERM), because deleting a branch
//! through a filesystem call is too easy to do by accident (`rm -r`) and cannot be undone.
//!
//! Awkward cases:
//! - A name lakeFS would reject is EINVAL with the reason in the log, before any request: a branch id is
//!   `^\w[-\w]*$` (letters, digits, `_`, `-`; not starting with `-`). Names starting with the staging-branch prefix
//!   `_fuse-` are refused too, so that no branch made by hand can be taken for a mount's staging branch.
//! - A name that already names a branch or a tag is EEXIST (both are looked up first; the server's 409 for a
//!   race or a full commit id maps to EEXIST as well).
//! - The kernel looked the name up before `mkdir` and may have cached the miss: the new directory is bound here,
//!   and this mount's negative entry for it is dropped.

use std::sync::Arc;

use crate::fs::inode::{InodeNo, NodeKind, RefLocation, RefTarget};
use crate::fs::{Entry, Filesystem, FsError, FsResult};
use crate::lakefs::{LakeFs, LakeFsError};
use crate::staging::STAGING_BRANCH_PREFIX;

/// Why `name` cannot be a new branch, or `None` when lakeFS accepts it.
pub(crate) fn invalid_branch_reason(name: &str) -> Option<&'static str> {
    let Some(first) = name.bytes().next() else {
        return Some("a branch name cannot be empty");
    };
    if first == b'-' {
        return Some("a branch name cannot start with '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Some("a branch name may contain only letters, digits, '_' and '-'");
    }
    if name.starts_with(STAGING_BRANCH_PREFIX) {
        return Some("names starting with '_fuse-' are reserved for the mount's staging branches");
    }
    None
}

impl<L: LakeFs> Filesystem<L> {
    /// `mkdir` in repository directory `parent`: create branch `name` from the default branch.
    pub(crate) async fn create_branch_dir(&self, parent: InodeNo, repo: &str, name: &str) -> FsResult<Entry> {
        if self.config.read_only {
            return Err(FsError::read_only(format!(
                "mkdir {repo}/{name}: the mount is read-only"
            )));
        }
        if let Some(reason) = invalid_branch_reason(name) {
            tracing::warn!(repo, branch = name, "mkdir refused: {reason}");
            return Err(FsError::invalid(format!("mkdir {repo}/{name}: {reason}")));
        }
        match self.client.get_branch(repo, name).await {
            Ok(_) => return Err(FsError::exists(format!("branch {name} exists in {repo}"))),
            Err(LakeFsError::NotFound(_)) => {}
            Err(err) => return Err(FsError::lakefs(format!("branch {name} in {repo}"), err)),
        }
        // A tag of that name would hide behind the new branch (a branch wins when resolving).
        match self.client.get_tag(repo, name).await {
            Ok(_) => return Err(FsError::exists(format!("{name} is a tag in {repo}"))),
            Err(LakeFsError::NotFound(_)) => {}
            Err(err) => return Err(FsError::lakefs(format!("tag {name} in {repo}"), err)),
        }
        let source = self
            .client
            .get_repository(repo)
            .await
            .map_err(|e| FsError::lakefs(format!("repository {repo}"), e))?
            .default_branch;
        match self.client.create_branch_from(repo, name, &source, false).await {
            Ok(()) => {}
            Err(LakeFsError::Conflict(why)) => {
                return Err(FsError::exists(format!("{name} already names a ref in {repo}: {why}")))
            }
            Err(err) => return Err(FsError::lakefs(format!("creating branch {name} in {repo}"), err)),
        }
        tracing::info!(repo, branch = name, source, "branch created by mkdir");
        let location = Arc::new(RefLocation {
            repo: repo.to_string(),
            name: name.to_string(),
            target: RefTarget::Branch(name.to_string()),
        });
        let kind = NodeKind::Directory {
            location,
            prefix: String::new(),
            ref_root: true,
        };
        self.forget_negative(parent, name);
        let inode = self.table.upsert(parent, name, kind, None, self.validity(None));
        self.table.remember(&inode);
        Ok(self.entry_of(&inode))
    }

    /// `rmdir` in repository directory `repo`: branches are not deleted through the filesystem.
    pub(crate) fn refuse_branch_removal(&self, repo: &str, name: &str) -> FsError {
        if self.config.read_only {
            return FsError::read_only(format!("rmdir {repo}/{name}: the mount is read-only"));
        }
        FsError::not_permitted(format!(
            "rmdir {repo}/{name}: branches are not deleted through the mount (use lakectl branch delete)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::invalid_branch_reason;

    #[test]
    fn branch_names_follow_lakefs_rules() {
        for good in ["dev", "feature-1", "_private", "A_b-9", "0"] {
            assert_eq!(invalid_branch_reason(good), None, "{good}");
        }
        for bad in [
            "",
            "-x",
            "a.b",
            "a/b",
            "a~1",
            "a^",
            "a@",
            "a b",
            "é",
            "_fuse-main-1234abcd",
        ] {
            assert!(invalid_branch_reason(bad).is_some(), "{bad:?}");
        }
    }
}
