//! The metadata database: one redb file (`DATA_DIR/meta.redb`) with byte-string keys and JSON values.
//!
//! Every table maps `&[u8]` to `&[u8]`. Keys are the record's natural path with `\0` between components, so a
//! prefix scan of `repo\0` (or `repo\0branch\0`) is one redb range. `\0` cannot occur in repository, branch or tag
//! names (validated), and an object path, which may contain anything, is always the *last* component, so a `\0`
//! inside it cannot confuse a scan:
//!
//! | table          | key                       | value                                      |
//! |----------------|---------------------------|--------------------------------------------|
//! | `repositories` | `repo`                    | [`Repository`] JSON                        |
//! | `branches`     | `repo\0branch`            | [`BranchRecord`] JSON                      |
//! | `tags`         | `repo\0tag`               | commit id (ASCII)                          |
//! | `commits`      | `repo\0commit_id`         | [`Commit`] JSON                            |
//! | `trees`        | `tree_id\0path`           | [`ObjectEntry`] JSON                       |
//! | `staging`      | `repo\0branch\0path`      | [`ObjectEntry`] JSON, or empty = tombstone |
//! | `action_runs`  | `repo\0run_id`            | [`ActionRun`] JSON                         |
//! | `settings`     | `repo\0name`              | opaque text (e.g. branch protection JSON)  |
//!
//! Every write transaction uses redb's default `Durability::Immediate`: when `commit()` returns the change is on
//! disk, so an acknowledged write survives `kill -9` and power loss.

use std::ops::Bound;

use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Page, PageRequest, StoreError};

pub(super) type KvTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(super) const REPOSITORIES: KvTable = TableDefinition::new("repositories");
pub(super) const BRANCHES: KvTable = TableDefinition::new("branches");
pub(super) const TAGS: KvTable = TableDefinition::new("tags");
pub(super) const COMMITS: KvTable = TableDefinition::new("commits");
pub(super) const TREES: KvTable = TableDefinition::new("trees");
pub(super) const STAGING: KvTable = TableDefinition::new("staging");
pub(super) const ACTION_RUNS: KvTable = TableDefinition::new("action_runs");
pub(super) const SETTINGS: KvTable = TableDefinition::new("settings");

/// Every table, for creating them all when the database is first opened.
pub(super) const ALL_TABLES: [KvTable; 8] = [
    REPOSITORIES,
    BRANCHES,
    TAGS,
    COMMITS,
    TREES,
    STAGING,
    ACTION_RUNS,
    SETTINGS,
];

/// Stored form of a branch (the id is the key).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct BranchRecord {
    pub head: String,
    #[serde(default)]
    pub hidden: bool,
}

/// Readable table of the `&[u8] -> &[u8]` kind, from a read or a write transaction.
pub(super) trait Kv: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> Kv for T {}

/// `a\0b\0c`: a complete key.
pub(super) fn key(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// `a\0b\0`: the prefix shared by every key below `parts`.
pub(super) fn key_prefix(parts: &[&str]) -> Vec<u8> {
    let mut out = key(parts);
    out.push(0);
    out
}

/// The smallest byte string greater than every string starting with `prefix`; `None` if there is none.
pub(super) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < u8::MAX {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Internal(format!("encode record: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("corrupt record: {e}")))
}

pub(super) fn utf8(bytes: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes).map_err(|_| StoreError::Internal("corrupt key: not UTF-8".to_string()))
}

pub(super) fn get_raw(table: &impl Kv, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table.get(key)?.map(|guard| guard.value().to_vec()))
}

pub(super) fn get_json<T: DeserializeOwned>(table: &impl Kv, key: &[u8]) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        Some(guard) => Ok(Some(from_json(guard.value())?)),
        None => Ok(None),
    }
}

/// True when at least one key starts with `prefix`.
pub(super) fn any_with_prefix(table: &impl Kv, prefix: &[u8]) -> Result<bool, StoreError> {
    let upper = successor(prefix);
    let upper = match &upper {
        Some(u) => Bound::Excluded(u.as_slice()),
        None => Bound::Unbounded,
    };
    let mut range = table.range::<&[u8]>((Bound::Included(prefix), upper))?;
    Ok(range.next().transpose()?.is_some())
}

/// The key range `[lower, upper)` in which names under `key_prefix` start with `page.prefix` and sort strictly
/// after `page.after`. `None` when the range is empty.
/// A key range as owned bounds.
pub(super) type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

pub(super) fn page_bounds(key_prefix: &[u8], prefix: &str, after: &str) -> Option<KeyRange> {
    let mut with_prefix = key_prefix.to_vec();
    with_prefix.extend_from_slice(prefix.as_bytes());
    let upper = match successor(&with_prefix) {
        Some(u) => Bound::Excluded(u),
        None => Bound::Unbounded,
    };
    let lower = if after.as_bytes() >= prefix.as_bytes() {
        let mut k = key_prefix.to_vec();
        k.extend_from_slice(after.as_bytes());
        if let Bound::Excluded(u) = &upper {
            if &k >= u {
                return None;
            }
        }
        Bound::Excluded(k)
    } else {
        Bound::Included(with_prefix)
    };
    Some((lower, upper))
}

/// One page of a simple name-keyed listing (repositories, branches, tags, action runs). `decode` gets the name
/// (the key after `key_prefix`) and the value and returns `None` to skip the record.
pub(super) fn scan_page<T>(
    table: &impl Kv,
    key_prefix: &[u8],
    page: &PageRequest,
    mut decode: impl FnMut(&str, &[u8]) -> Result<Option<T>, StoreError>,
) -> Result<Page<T>, StoreError> {
    let amount = page.amount.max(1);
    let mut items = Vec::new();
    let Some((lower, upper)) = page_bounds(key_prefix, &page.prefix, &page.after) else {
        return Ok(Page { items, has_more: false });
    };
    let lower = as_slice_bound(&lower);
    let upper = as_slice_bound(&upper);
    for item in table.range::<&[u8]>((lower, upper))? {
        let (k, v) = item?;
        let name = utf8(&k.value()[key_prefix.len()..])?.to_string();
        if let Some(decoded) = decode(&name, v.value())? {
            if items.len() == amount {
                return Ok(Page { items, has_more: true });
            }
            items.push(decoded);
        }
    }
    Ok(Page { items, has_more: false })
}

pub(super) fn as_slice_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Removes every key in `[prefix, successor(prefix))`. Collecting the keys and removing them one by one is several
/// times faster than redb's `retain_in` for large ranges (a 100,000-entry staging area).
pub(super) fn remove_prefix(
    table: &mut redb::Table<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<(), StoreError> {
    let upper = successor(prefix);
    let upper = match &upper {
        Some(u) => Bound::Excluded(u.as_slice()),
        None => Bound::Unbounded,
    };
    let keys: Vec<Vec<u8>> = table
        .range::<&[u8]>((Bound::Included(prefix), upper))?
        .map(|item| item.map(|(k, _)| k.value().to_vec()))
        .collect::<Result<_, _>>()?;
    for key in keys {
        table.remove(key.as_slice())?;
    }
    Ok(())
}

macro_rules! internal_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Internal(e.to_string())
            }
        }
    )*};
}

internal_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_increments_the_last_byte_that_can_grow() {
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
        assert_eq!(successor(b""), None);
    }

    #[test]
    fn page_bounds_respect_prefix_and_after() {
        let (lo, hi) = page_bounds(b"r\0", "b", "").unwrap();
        assert_eq!(lo, Bound::Included(b"r\0b".to_vec()));
        assert_eq!(hi, Bound::Excluded(b"r\0c".to_vec()));
        let (lo, _) = page_bounds(b"r\0", "b", "bx").unwrap();
        assert_eq!(lo, Bound::Excluded(b"r\0bx".to_vec()));
        assert!(page_bounds(b"r\0", "b", "c").is_none());
        let (lo, _) = page_bounds(b"r\0", "b", "a").unwrap();
        assert_eq!(lo, Bound::Included(b"r\0b".to_vec()));
    }
}
