//! The inode table: numbers the kernel holds, what each number stands for, and when a number may go.
//!
//! - Numbers come from a monotonic counter and are never reused (root = 1), so the generation is always 0.
//! - A node's *identity* is fixed for its life: its parent, its name and its [`NodeKind`], which includes the
//!   version of what it shows (the commit of a pinned ref, the checksum of an object). When the server shows a
//!   different version under the same name, a new inode is allocated and the name repointed; the old inode lives
//!   on until the kernel forgets it. Reusing an inode across versions would let the page cache mix old and new
//!   bytes of a file.
//! - Mutable state (the object's stats, until when they are trusted, the lookup count) sits behind a per-inode
//!   mutex. Lock order: the table lock before any inode's state lock, never the reverse.
//! - Lookup counts: every reply that hands an entry to the kernel (lookup, readdirplus except `.`/`..`) adds one;
//!   `forget` subtracts. At zero the inode leaves the table, and its name too if the name still points at it.
//!   Open handles keep their own `Arc<Inode>`, so a forgotten or replaced inode stays readable through them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::lakefs::ObjectInfo;

/// An inode number as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeNo(pub u64);

impl InodeNo {
    pub const ROOT: InodeNo = InodeNo(1);
}

impl std::fmt::Display for InodeNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a ref in the tree reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefTarget {
    /// A listed branch: reads use the branch name and see its uncommitted changes; may become writable.
    Branch(String),
    /// Any other ref (tag, commit id, `main~1`), pinned to the commit it resolved to; read-only.
    Commit(String),
}

/// A repository and a ref in it, shared by every node below one ref root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefLocation {
    pub repo: String,
    /// The name as it appears in the tree (or in the mount source).
    pub name: String,
    pub target: RefTarget,
}

impl RefLocation {
    /// The ref to put into read requests.
    pub fn read_ref(&self) -> &str {
        match &self.target {
            RefTarget::Branch(branch) => branch,
            RefTarget::Commit(id) => id,
        }
    }

    /// Whether everything below this ref is immutable (never expires from caches).
    pub fn is_immutable(&self) -> bool {
        matches!(self.target, RefTarget::Commit(_))
    }
}

/// Files in `.lakefs/` (DESIGN section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFile {
    /// The commit id the mount currently shows.
    Head,
    /// Human-readable state of the mounted ref.
    Status,
    /// The same, and the whole mount's, as JSON (`lakefs-fuse status`, and the progress of `commit`/`merge`).
    StatusJson,
    /// Name of the staging branch.
    Staging,
    /// Write a message: commit this mount's changes and merge them into the branch. Reads the last commit id.
    Commit,
    /// Write a target branch: commit, then merge the branch into the target. Reads the last merge result.
    Merge,
    /// Write anything: drop this mount's uncommitted changes.
    Discard,
}

impl ControlFile {
    pub const ALL: [ControlFile; 7] = [
        ControlFile::Head,
        ControlFile::Status,
        ControlFile::StatusJson,
        ControlFile::Staging,
        ControlFile::Commit,
        ControlFile::Merge,
        ControlFile::Discard,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Status => "status",
            Self::StatusJson => "status.json",
            Self::Staging => "staging",
            Self::Commit => "commit",
            Self::Merge => "merge",
            Self::Discard => "discard",
        }
    }

    /// Whether writing the file runs an operation.
    pub fn is_writable(self) -> bool {
        matches!(self, Self::Commit | Self::Merge | Self::Discard)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Name of the control directory in every ref root.
pub const CONTROL_DIR: &str = ".lakefs";

/// What an inode stands for; part of its identity, so it never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// Whole-server root: one directory per repository.
    Server,
    /// One directory per branch of `repo`.
    Repository { repo: String },
    /// A directory of objects: the keys under `prefix` (empty or ending in `/`) at `location`.
    Directory {
        location: Arc<RefLocation>,
        prefix: String,
        ref_root: bool,
    },
    /// An object, identified by its key and content checksum.
    File {
        location: Arc<RefLocation>,
        key: String,
        checksum: String,
    },
    /// An object carrying `::lakefs::symlink-target`.
    Symlink {
        location: Arc<RefLocation>,
        key: String,
        target: String,
    },
    /// A file this mount wrote (or renamed, or changed the metadata of) and has not committed yet: its bytes are
    /// in a local staging file or on the staging branch. `id` names the staged file in its branch's writer; it
    /// stays the same across writes and renames, so the kernel's inode follows the file.
    StagedFile { location: Arc<RefLocation>, id: u64 },
    /// `.lakefs/` of a ref root.
    ControlDir { location: Arc<RefLocation> },
    ControlFile {
        location: Arc<RefLocation>,
        file: ControlFile,
    },
}

impl NodeKind {
    pub fn is_dir(&self) -> bool {
        matches!(
            self,
            Self::Server | Self::Repository { .. } | Self::Directory { .. } | Self::ControlDir { .. }
        )
    }

    pub fn location(&self) -> Option<&Arc<RefLocation>> {
        match self {
            Self::Server | Self::Repository { .. } => None,
            Self::Directory { location, .. }
            | Self::File { location, .. }
            | Self::Symlink { location, .. }
            | Self::StagedFile { location, .. }
            | Self::ControlDir { location }
            | Self::ControlFile { location, .. } => Some(location),
        }
    }
}

/// Until when cached metadata is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Forever,
    Until(Instant),
}

impl Validity {
    pub fn is_valid(self, now: Instant) -> bool {
        match self {
            Self::Forever => true,
            Self::Until(deadline) => now < deadline,
        }
    }
}

#[derive(Debug)]
pub struct InodeState {
    /// Stats of the object behind a file or symlink, as last seen.
    pub object: Option<ObjectInfo>,
    pub validity: Validity,
    pub lookup_count: u64,
    /// A rename or restaging gave this inode's number to a new `Inode`; this one is only what older handles and
    /// snapshots still hold, and its lookup count is no longer the kernel's.
    pub superseded: bool,
}

#[derive(Debug)]
pub struct Inode {
    pub ino: InodeNo,
    pub parent: InodeNo,
    pub name: String,
    pub kind: NodeKind,
    state: Mutex<InodeState>,
}

impl Inode {
    pub fn state(&self) -> MutexGuard<'_, InodeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The inode's metadata is still trusted at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.state().validity.is_valid(now)
    }
}

/// Name bindings, grouped by parent so listing one directory's bindings costs its own size only.
#[derive(Debug, Default)]
struct Names(HashMap<InodeNo, HashMap<String, InodeNo>>);

impl Names {
    fn get(&self, parent: InodeNo, name: &str) -> Option<&InodeNo> {
        self.0.get(&parent)?.get(name)
    }

    fn insert(&mut self, parent: InodeNo, name: &str, ino: InodeNo) -> Option<InodeNo> {
        let children = self.0.entry(parent).or_default();
        match children.get_mut(name) {
            Some(bound) => Some(std::mem::replace(bound, ino)),
            None => children.insert(name.to_string(), ino),
        }
    }

    fn remove(&mut self, parent: InodeNo, name: &str) -> Option<InodeNo> {
        let children = self.0.get_mut(&parent)?;
        let removed = children.remove(name);
        if children.is_empty() {
            self.0.remove(&parent);
        }
        removed
    }

    fn children(&self, parent: InodeNo) -> Vec<String> {
        self.0
            .get(&parent)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn count(&self, parent: InodeNo) -> usize {
        self.0.get(&parent).map_or(0, HashMap::len)
    }
}

#[derive(Debug)]
struct TableInner {
    next: u64,
    inodes: HashMap<InodeNo, Arc<Inode>>,
    names: Names,
}

#[derive(Debug)]
pub struct InodeTable {
    inner: Mutex<TableInner>,
}

impl InodeTable {
    pub fn new(root: NodeKind) -> Self {
        let root = Arc::new(Inode {
            ino: InodeNo::ROOT,
            parent: InodeNo::ROOT,
            name: String::new(),
            kind: root,
            state: Mutex::new(InodeState {
                object: None,
                validity: Validity::Forever,
                lookup_count: 1,
                superseded: false,
            }),
        });
        let mut inodes = HashMap::new();
        inodes.insert(InodeNo::ROOT, root);
        Self {
            inner: Mutex::new(TableInner {
                next: 2,
                inodes,
                names: Names::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, ino: InodeNo) -> Option<Arc<Inode>> {
        self.lock().inodes.get(&ino).cloned()
    }

    /// The inode currently bound to `name` in `parent`.
    pub fn child(&self, parent: InodeNo, name: &str) -> Option<Arc<Inode>> {
        let inner = self.lock();
        let ino = inner.names.get(parent, name)?;
        inner.inodes.get(ino).cloned()
    }

    /// Bind `name` in `parent` to a node of `kind`: the existing inode when its identity is the same (its state is
    /// refreshed), a new inode otherwise.
    pub fn upsert(
        &self,
        parent: InodeNo,
        name: &str,
        kind: NodeKind,
        object: Option<ObjectInfo>,
        validity: Validity,
    ) -> Arc<Inode> {
        let mut inner = self.lock();
        if let Some(existing) = inner.names.get(parent, name).and_then(|ino| inner.inodes.get(ino)) {
            if existing.kind == kind {
                let mut state = existing.state();
                state.object = object;
                state.validity = validity;
                drop(state);
                return existing.clone();
            }
        }
        let ino = InodeNo(inner.next);
        inner.next += 1;
        let inode = Arc::new(Inode {
            ino,
            parent,
            name: name.to_string(),
            kind,
            state: Mutex::new(InodeState {
                object,
                validity,
                lookup_count: 0,
                superseded: false,
            }),
        });
        inner.inodes.insert(ino, inode.clone());
        // A replaced inode keeps its number until forgotten, but no longer answers to the name.
        if let Some(old) = inner.names.insert(parent, name, ino) {
            let unreferenced = inner.inodes.get(&old).is_some_and(|i| i.state().lookup_count == 0);
            if unreferenced && old != InodeNo::ROOT {
                inner.inodes.remove(&old);
            }
        }
        inode
    }

    /// Drop the binding of `name` in `parent` (the server no longer has it); the inode lives until forgotten.
    pub fn unbind(&self, parent: InodeNo, name: &str) {
        let mut inner = self.lock();
        if let Some(ino) = inner.names.remove(parent, name) {
            let unreferenced = inner.inodes.get(&ino).is_some_and(|i| i.state().lookup_count == 0);
            if unreferenced && ino != InodeNo::ROOT {
                inner.inodes.remove(&ino);
            }
        }
    }

    /// Names currently bound in `parent`.
    pub fn children_names(&self, parent: InodeNo) -> Vec<String> {
        self.lock().names.children(parent)
    }

    /// How many names are bound in `parent`.
    pub fn children_count(&self, parent: InodeNo) -> usize {
        self.lock().names.count(parent)
    }

    /// Unbind every name in `parent` for which `keep` is false (as [`InodeTable::unbind`] does for one).
    pub fn unbind_children_except(&self, parent: InodeNo, keep: impl Fn(&str) -> bool) {
        let mut inner = self.lock();
        let gone: Vec<String> = match inner.names.0.get(&parent) {
            Some(children) => children.keys().filter(|name| !keep(name)).cloned().collect(),
            None => return,
        };
        for name in gone {
            if let Some(ino) = inner.names.remove(parent, &name) {
                let unreferenced = inner.inodes.get(&ino).is_some_and(|i| i.state().lookup_count == 0);
                if unreferenced && ino != InodeNo::ROOT {
                    inner.inodes.remove(&ino);
                }
            }
        }
    }

    /// [`InodeTable::remember`] for each of `inodes`, under one lock (a readdirplus reply of many entries).
    pub fn remember_all<'a>(&self, inodes: impl IntoIterator<Item = &'a Arc<Inode>>) {
        let mut inner = self.lock();
        for inode in inodes {
            let mut state = inode.state();
            // Counted means still in the table (forget removes an inode only at zero, under the table lock),
            // so the usual case - the kernel still holds the entry from the last listing - skips the map.
            if state.lookup_count == 0 || state.superseded {
                inner.inodes.entry(inode.ino).or_insert_with(|| inode.clone());
            }
            state.lookup_count += 1;
        }
    }

    /// The kernel now holds one more reference to `inode`. An inode forgotten since the caller found it (a
    /// `forget` racing this reply) goes back into the table, so the number the kernel receives stays valid.
    pub fn remember(&self, inode: &Arc<Inode>) {
        self.remember_all(std::iter::once(inode));
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&self, ino: InodeNo, count: u64) {
        if ino == InodeNo::ROOT {
            return;
        }
        let mut inner = self.lock();
        let Some(inode) = inner.inodes.get(&ino).cloned() else {
            return;
        };
        let mut state = inode.state();
        state.lookup_count = state.lookup_count.saturating_sub(count);
        if state.lookup_count > 0 {
            return;
        }
        drop(state);
        inner.inodes.remove(&ino);
        if inner.names.get(inode.parent, &inode.name) == Some(&ino) {
            inner.names.remove(inode.parent, &inode.name);
        }
    }

    /// Drop `inode` if the kernel holds no reference to it (an entry a listing created but never handed out
    /// with a lookup count). Keeps the table from growing with every directory ever listed.
    pub fn drop_if_unreferenced(&self, inode: &Arc<Inode>) {
        self.drop_all_if_unreferenced(std::iter::once(inode));
    }

    /// [`InodeTable::drop_if_unreferenced`] for each of `inodes`, under one lock (a directory handle's snapshot).
    pub fn drop_all_if_unreferenced<'a>(&self, inodes: impl IntoIterator<Item = &'a Arc<Inode>>) {
        let mut inner = self.lock();
        for inode in inodes {
            if inode.ino == InodeNo::ROOT || inode.state().lookup_count > 0 {
                continue;
            }
            if inner.inodes.get(&inode.ino).is_some_and(|i| Arc::ptr_eq(i, inode)) {
                inner.inodes.remove(&inode.ino);
            }
            if inner.names.get(inode.parent, &inode.name) == Some(&inode.ino) {
                inner.names.remove(inode.parent, &inode.name);
            }
        }
    }

    /// Give inode `ino` a new place and identity (a rename, or a file that became staged), keeping its number and
    /// lookup count. Handles opened earlier keep the old `Arc<Inode>`. Whatever `parent/name` pointed at before
    /// loses the name.
    pub fn rebind(&self, ino: InodeNo, parent: InodeNo, name: &str, kind: NodeKind) -> Option<Arc<Inode>> {
        let mut inner = self.lock();
        let old = inner.inodes.get(&ino).cloned()?;
        if inner.names.get(old.parent, &old.name) == Some(&ino) {
            inner.names.remove(old.parent, &old.name);
        }
        let mut state = old.state();
        state.superseded = true;
        let inode = Arc::new(Inode {
            ino,
            parent,
            name: name.to_string(),
            kind,
            state: Mutex::new(InodeState {
                object: state.object.clone(),
                validity: state.validity,
                lookup_count: state.lookup_count,
                superseded: false,
            }),
        });
        drop(state);
        inner.inodes.insert(ino, inode.clone());
        if let Some(replaced) = inner.names.insert(parent, name, ino) {
            let unreferenced = inner.inodes.get(&replaced).is_some_and(|i| i.state().lookup_count == 0);
            if replaced != ino && unreferenced && replaced != InodeNo::ROOT {
                inner.inodes.remove(&replaced);
            }
        }
        Some(inode)
    }

    /// Number of inodes in the table (root included).
    pub fn len(&self) -> usize {
        self.lock().inodes.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Arc<RefLocation> {
        Arc::new(RefLocation {
            repo: "r".into(),
            name: "main".into(),
            target: RefTarget::Branch("main".into()),
        })
    }

    fn file(checksum: &str) -> NodeKind {
        NodeKind::File {
            location: location(),
            key: "f".into(),
            checksum: checksum.into(),
        }
    }

    #[test]
    fn same_identity_keeps_the_inode_new_checksum_gets_a_new_one() {
        let table = InodeTable::new(NodeKind::Server);
        let a = table.upsert(InodeNo::ROOT, "f", file("c1"), None, Validity::Forever);
        assert!(a.ino.0 > 1);
        let again = table.upsert(InodeNo::ROOT, "f", file("c1"), None, Validity::Forever);
        assert_eq!(a.ino, again.ino);
        table.remember(&a);
        let changed = table.upsert(InodeNo::ROOT, "f", file("c2"), None, Validity::Forever);
        assert_ne!(changed.ino, a.ino);
        assert!(changed.ino > a.ino, "numbers are monotonic");
        assert_eq!(table.child(InodeNo::ROOT, "f").unwrap().ino, changed.ino);
        // The old inode is still known to the kernel and stays until forgotten.
        assert!(table.get(a.ino).is_some());
        table.forget(a.ino, 1);
        assert!(table.get(a.ino).is_none());
        assert_eq!(
            table.child(InodeNo::ROOT, "f").unwrap().ino,
            changed.ino,
            "forget must not unbind the new inode"
        );
    }

    #[test]
    fn forget_removes_only_at_zero_and_never_the_root() {
        let table = InodeTable::new(NodeKind::Server);
        let a = table.upsert(InodeNo::ROOT, "f", file("c1"), None, Validity::Forever);
        table.remember(&a);
        table.remember(&a);
        table.forget(a.ino, 1);
        assert!(table.get(a.ino).is_some());
        table.forget(a.ino, 1);
        assert!(table.get(a.ino).is_none());
        assert!(table.child(InodeNo::ROOT, "f").is_none());
        table.forget(InodeNo::ROOT, 10);
        assert!(table.get(InodeNo::ROOT).is_some());
    }

    #[test]
    fn remembering_a_just_forgotten_inode_puts_it_back() {
        let table = InodeTable::new(NodeKind::Server);
        let a = table.upsert(InodeNo::ROOT, "f", file("c1"), None, Validity::Forever);
        table.remember(&a);
        table.forget(a.ino, 1);
        assert!(table.get(a.ino).is_none());
        table.remember(&a);
        assert_eq!(table.get(a.ino).map(|i| i.ino), Some(a.ino));
    }

    #[test]
    fn remembering_an_inode_superseded_by_a_rename_restores_its_number_once_forgotten() {
        let table = InodeTable::new(NodeKind::Server);
        let old = table.upsert(InodeNo::ROOT, "f", file("c1"), None, Validity::Forever);
        table.remember(&old);
        let renamed = table.rebind(old.ino, InodeNo::ROOT, "g", file("c1")).unwrap();
        table.forget(renamed.ino, 1);
        assert!(table.get(old.ino).is_none());
        // An older snapshot hands the number out again through the superseded inode.
        table.remember_all([&old]);
        assert!(
            table.get(old.ino).is_some(),
            "the number the kernel receives stays valid"
        );
    }

    #[test]
    fn batch_remember_and_drop_count_each_inode() {
        let table = InodeTable::new(NodeKind::Server);
        let inodes: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|name| table.upsert(InodeNo::ROOT, name, file(name), None, Validity::Forever))
            .collect();
        table.remember_all(&inodes[..2]);
        table.remember_all(&inodes[..1]);
        table.drop_all_if_unreferenced(&inodes);
        assert_eq!(table.children_count(InodeNo::ROOT), 2, "c was never handed out");
        table.forget(inodes[1].ino, 1);
        assert!(table.get(inodes[1].ino).is_none());
        table.forget(inodes[0].ino, 1);
        assert!(table.get(inodes[0].ino).is_some(), "a was handed out twice");
        table.unbind_children_except(InodeNo::ROOT, |name| name != "a");
        assert_eq!(table.children_count(InodeNo::ROOT), 0);
        assert!(table.get(inodes[0].ino).is_some(), "unbinding keeps a held inode");
    }

    #[test]
    fn unbind_keeps_a_remembered_inode_reachable_by_number() {
        let table = InodeTable::new(NodeKind::Server);
        let a = table.upsert(InodeNo::ROOT, "f", file("c1"), None, Validity::Forever);
        table.remember(&a);
        table.unbind(InodeNo::ROOT, "f");
        assert!(table.child(InodeNo::ROOT, "f").is_none());
        assert!(table.get(a.ino).is_some());
    }
}
