//! Trees, staging areas and the merged view of the two.
//!
//! A commit's tree is stored flat in the `trees` table as `tree_id\0path -> ObjectEntry`. The tree id is the
//! SHA-256 of the sorted `(path, entry)` records, so identical trees are stored once; the empty tree has id `""`
//! and no records. A commit copies the whole tree (O(n) writes for n objects): simple and crash-safe, at the cost
//! of write amplification for very large, frequently committed repositories.
//!
//! A branch's staging area lives in `staging` as `repo\0branch\0path -> entry`, an empty value being a tombstone.
//! [`ViewCursor`] walks a tree and optionally a staging area in key order, staging winning and tombstones hiding
//! entries, and can *seek*: listing with a delimiter jumps over a whole common prefix with one B-tree descent
//! instead of reading its children.

use std::ops::Bound;

use sha2::{Digest, Sha256};

use super::meta::{self, Kv};
use super::{ObjectEntry, StoreError};

/// One stored record: a path (or name) and its encoded value, both as bytes.
pub(super) type Record = (Vec<u8>, Vec<u8>);

/// Id of the tree with no entries.
pub(super) const EMPTY_TREE: &str = "";

/// A sorted stream of `(path, value)` under one key prefix (a tree or a staging area), restricted to paths
/// starting with a path prefix, that can be repositioned.
pub(super) struct SortedCursor<'t, T: Kv> {
    table: &'t T,
    key_prefix: Vec<u8>,
    path_prefix: Vec<u8>,
    upper: Option<Vec<u8>>,
    iter: Option<redb::Range<'t, &'static [u8], &'static [u8]>>,
    peeked: Option<Record>,
}

impl<'t, T: Kv> SortedCursor<'t, T> {
    pub fn new(table: &'t T, key_prefix: Vec<u8>, path_prefix: &[u8]) -> Self {
        let mut full = key_prefix.clone();
        full.extend_from_slice(path_prefix);
        let upper = meta::successor(&full);
        SortedCursor {
            table,
            key_prefix,
            path_prefix: path_prefix.to_vec(),
            upper,
            iter: None,
            peeked: None,
        }
    }

    /// Positions the cursor at the first path matching `from` (and the path prefix).
    pub fn seek(&mut self, from: Bound<&[u8]>) -> Result<(), StoreError> {
        self.peeked = None;
        let mut prefix_start = self.key_prefix.clone();
        prefix_start.extend_from_slice(&self.path_prefix);
        let lower = match from {
            Bound::Included(p) | Bound::Excluded(p) if p >= self.path_prefix.as_slice() => {
                let mut k = self.key_prefix.clone();
                k.extend_from_slice(p);
                if matches!(from, Bound::Included(_)) {
                    Bound::Included(k)
                } else {
                    Bound::Excluded(k)
                }
            }
            _ => Bound::Included(prefix_start),
        };
        if let (Some(upper), Bound::Included(l) | Bound::Excluded(l)) = (&self.upper, &lower) {
            if l >= upper {
                self.iter = None;
                return Ok(());
            }
        }
        let upper = match &self.upper {
            Some(u) => Bound::Excluded(u.as_slice()),
            None => Bound::Unbounded,
        };
        self.iter = Some(self.table.range::<&[u8]>((meta::as_slice_bound(&lower), upper))?);
        Ok(())
    }

    pub fn peek(&mut self) -> Result<Option<&Record>, StoreError> {
        if self.peeked.is_none() {
            if let Some(iter) = &mut self.iter {
                match iter.next() {
                    Some(item) => {
                        let (k, v) = item?;
                        self.peeked = Some((k.value()[self.key_prefix.len()..].to_vec(), v.value().to_vec()));
                    }
                    None => self.iter = None,
                }
            }
        }
        Ok(self.peeked.as_ref())
    }

    pub fn next(&mut self) -> Result<Option<Record>, StoreError> {
        self.peek()?;
        Ok(self.peeked.take())
    }
}

/// Where a view's entries come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ViewSource {
    pub tree_id: String,
    /// `(repo, branch)` whose staging area is laid over the tree.
    pub staging: Option<(String, String)>,
}

/// Sorted `(path, entry JSON)` of a tree, optionally overlaid with a staging area; tombstones are skipped.
pub(super) struct ViewCursor<'t, T: Kv> {
    tree: Option<SortedCursor<'t, T>>,
    staging: Option<SortedCursor<'t, T>>,
    pending: Option<Record>,
}

impl<'t, T: Kv> ViewCursor<'t, T> {
    /// A cursor over paths starting with `path_prefix`, positioned at the first of them.
    pub fn new(trees: &'t T, staging: &'t T, source: &ViewSource, path_prefix: &[u8]) -> Result<Self, StoreError> {
        let tree = (source.tree_id != EMPTY_TREE)
            .then(|| SortedCursor::new(trees, meta::key_prefix(&[&source.tree_id]), path_prefix));
        let staging = source
            .staging
            .as_ref()
            .map(|(repo, branch)| SortedCursor::new(staging, meta::key_prefix(&[repo, branch]), path_prefix));
        let mut cursor = ViewCursor {
            tree,
            staging,
            pending: None,
        };
        cursor.seek(Bound::Unbounded)?;
        Ok(cursor)
    }

    pub fn seek(&mut self, from: Bound<&[u8]>) -> Result<(), StoreError> {
        self.pending = None;
        if let Some(t) = &mut self.tree {
            t.seek(from)?;
        }
        if let Some(s) = &mut self.staging {
            s.seek(from)?;
        }
        Ok(())
    }

    /// The next visible `(path, entry JSON)` without consuming it.
    pub fn peek_raw(&mut self) -> Result<Option<&Record>, StoreError> {
        if self.pending.is_none() {
            self.pending = self.advance()?;
        }
        Ok(self.pending.as_ref())
    }

    /// The next visible `(path, entry JSON)`.
    pub fn next_raw(&mut self) -> Result<Option<Record>, StoreError> {
        match self.pending.take() {
            Some(record) => Ok(Some(record)),
            None => self.advance(),
        }
    }

    fn advance(&mut self) -> Result<Option<Record>, StoreError> {
        loop {
            let tree_key = match &mut self.tree {
                Some(t) => t.peek()?.map(|(k, _)| k.clone()),
                None => None,
            };
            let staged_key = match &mut self.staging {
                Some(s) => s.peek()?.map(|(k, _)| k.clone()),
                None => None,
            };
            let take_staged = match (&tree_key, &staged_key) {
                (None, None) => return Ok(None),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(t), Some(s)) => {
                    if t == s {
                        if let Some(tree) = &mut self.tree {
                            tree.next()?;
                        }
                    }
                    s <= t
                }
            };
            if take_staged {
                let Some(staging) = &mut self.staging else {
                    return Ok(None);
                };
                let Some((path, value)) = staging.next()? else {
                    return Ok(None);
                };
                if value.is_empty() {
                    continue; // tombstone
                }
                return Ok(Some((path, value)));
            }
            let Some(tree) = &mut self.tree else { return Ok(None) };
            return tree.next();
        }
    }
}

/// Looks one path up in a view.
pub(super) fn view_get(
    trees: &impl Kv,
    staging: &impl Kv,
    source: &ViewSource,
    path: &str,
) -> Result<Option<ObjectEntry>, StoreError> {
    if let Some((repo, branch)) = &source.staging {
        if let Some(raw) = meta::get_raw(staging, &meta::key(&[repo, branch, path]))? {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Ok(Some(meta::from_json(&raw)?))
            };
        }
    }
    tree_get(trees, &source.tree_id, path)
}

pub(super) fn tree_get(trees: &impl Kv, tree_id: &str, path: &str) -> Result<Option<ObjectEntry>, StoreError> {
    if tree_id == EMPTY_TREE {
        return Ok(None);
    }
    meta::get_json(trees, &meta::key(&[tree_id, path]))
}

/// Content address of a sorted list of `(path, entry JSON)` records.
pub(super) fn tree_id_of(records: &[Record]) -> String {
    if records.is_empty() {
        return EMPTY_TREE.to_string();
    }
    let mut hasher = Sha256::new();
    for (path, value) in records {
        hasher.update((path.len() as u64).to_be_bytes());
        hasher.update(path);
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    }
    hex::encode(hasher.finalize())
}

/// Stores a tree built from sorted records unless an identical one exists; returns its id.
pub(super) fn store_tree(
    trees: &mut redb::Table<&'static [u8], &'static [u8]>,
    records: &[Record],
) -> Result<String, StoreError> {
    let id = tree_id_of(records);
    if id == EMPTY_TREE || meta::any_with_prefix(trees, &meta::key_prefix(&[&id]))? {
        return Ok(id);
    }
    let mut key = meta::key_prefix(&[&id]);
    let base_len = key.len();
    for (path, value) in records {
        key.truncate(base_len);
        key.extend_from_slice(path);
        trees.insert(key.as_slice(), value.as_slice())?;
    }
    Ok(id)
}
