//! Names (lakefs-api.md §2.1) and ref expressions (§2.2).
//!
//! A ref expression is a base name followed by modifiers, each starting with `~`, `^`, `@` or `$`. The base
//! resolves, in lakeFS's `revResolve` order, as (1) an existing full 64-hex commit id, (2) a branch, (3) a tag,
//! (4) a unique commit-id prefix (ambiguous = not found). `~N` follows the first parent N times, `^N` picks the
//! N-th parent (`^0` is the commit itself); `@` (head only) and `$` (staging, explicitly) are valid only as the
//! sole modifier of a branch.
//!
//! Awkward cases: a tag may contain `~` (legacy) but then cannot be used as a ref, because parsing splits it; a
//! branch named like a hex prefix wins over the prefix.

use std::ops::Bound;
use std::sync::LazyLock;

use regex::Regex;

use redb::{ReadOnlyTable, ReadTransaction};

use super::meta::{self, BranchRecord, Kv, BRANCHES, COMMITS, REPOSITORIES, TAGS};
use super::repos::require_repository;
use super::{Commit, CommitId, RefView, StoreError};

static REPOSITORY_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9-]{2,62}$").expect("valid regex"));
static BRANCH_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[0-9A-Za-z_][-0-9A-Za-z_]*$").expect("valid regex"));

/// Longest object path lakeFS accepts, in bytes.
pub(super) const MAX_PATH_LEN: usize = 1024;

pub(super) const STAGING_NOT_A_COMMIT: &str = "reference to staging area with $ is not a commit";

pub(super) fn validate_repository_id(id: &str) -> Result<(), StoreError> {
    if REPOSITORY_ID.is_match(id) {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "repository: invalid value: '{id}'"
        )))
    }
}

pub(super) fn validate_branch_id(id: &str) -> Result<(), StoreError> {
    if BRANCH_ID.is_match(id) {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!("branch: invalid value: '{id}'")))
    }
}

pub(super) fn validate_tag_id(id: &str) -> Result<(), StoreError> {
    let invalid = id.is_empty()
        || id == "@"
        || id.ends_with('.')
        || id.ends_with(".lock")
        || id.contains("..")
        || id.contains("@{")
        || id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/^:?*[\\".contains(c));
    if invalid {
        Err(StoreError::InvalidArgument(format!("tag: invalid value: '{id}'")))
    } else {
        Ok(())
    }
}

pub(super) fn validate_path(path: &str) -> Result<(), StoreError> {
    if path.is_empty() {
        return Err(StoreError::InvalidArgument("path: required value is empty".to_string()));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "path: longer than {MAX_PATH_LEN} bytes"
        )));
    }
    Ok(())
}

pub(super) fn is_commit_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Modifier {
    /// `~N`: first parent, N times.
    Ancestor(u32),
    /// `^N`: the N-th parent (0 = itself).
    Parent(u32),
    /// `@`: branch head without staging.
    Head,
    /// `$`: branch staging view.
    Staging,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ParsedRef<'a> {
    pub base: &'a str,
    pub modifiers: Vec<Modifier>,
}

/// Splits a ref expression into base and modifiers, checking only syntax.
pub(super) fn parse_ref(expr: &str) -> Result<ParsedRef<'_>, StoreError> {
    let invalid = || StoreError::InvalidRef(format!("invalid ref: '{expr}'"));
    if expr.is_empty() || expr.chars().any(char::is_whitespace) {
        return Err(invalid());
    }
    let split = expr.find(['~', '^', '@', '$']).unwrap_or(expr.len());
    let base = &expr[..split];
    if base.is_empty() {
        return Err(invalid());
    }
    let mut modifiers = Vec::new();
    let mut rest = &expr[split..];
    while let Some(op) = rest.chars().next() {
        // After the first modifier `op` may be any character, multi-byte ones included.
        rest = &rest[op.len_utf8()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        rest = tail;
        let n = if number.is_empty() {
            None
        } else {
            Some(number.parse::<u32>().map_err(|_| invalid())?)
        };
        modifiers.push(match op {
            '~' => Modifier::Ancestor(n.unwrap_or(1)),
            '^' => Modifier::Parent(n.unwrap_or(1)),
            '@' if n.is_none() => Modifier::Head,
            '$' if n.is_none() => Modifier::Staging,
            _ => return Err(invalid()),
        });
    }
    let head_or_staging = modifiers
        .iter()
        .any(|m| matches!(m, Modifier::Head | Modifier::Staging));
    if head_or_staging && modifiers.len() > 1 {
        return Err(invalid());
    }
    Ok(ParsedRef { base, modifiers })
}

/// What a resolved expression names, with the distinction [`RefView`] does not carry: explicit `$`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Resolved {
    pub view: RefView,
    pub explicit_staging: bool,
}

type ReadTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// The ref tables of a read transaction on a repository known to exist: how every read that resolves a ref
/// starts.
pub(super) struct ReadRefs {
    pub branches: ReadTable,
    pub tags: ReadTable,
    pub commits: ReadTable,
}

impl ReadRefs {
    pub fn open(txn: &ReadTransaction, repo: &str) -> Result<Self, StoreError> {
        require_repository(&txn.open_table(REPOSITORIES)?, repo)?;
        Ok(Self {
            branches: txn.open_table(BRANCHES)?,
            tags: txn.open_table(TAGS)?,
            commits: txn.open_table(COMMITS)?,
        })
    }

    pub fn tables(&self) -> RefTables<'_, ReadTable> {
        RefTables::new(&self.branches, &self.tags, &self.commits)
    }
}

/// Tables needed to resolve refs.
pub(super) struct RefTables<'t, T: Kv> {
    pub branches: &'t T,
    pub tags: &'t T,
    pub commits: &'t T,
}

impl<'t, T: Kv> RefTables<'t, T> {
    pub fn new(branches: &'t T, tags: &'t T, commits: &'t T) -> Self {
        Self {
            branches,
            tags,
            commits,
        }
    }

    pub fn commit(&self, repo: &str, id: &str) -> Result<Option<Commit>, StoreError> {
        meta::get_json(self.commits, &meta::key(&[repo, id]))
    }

    pub fn branch(&self, repo: &str, name: &str) -> Result<Option<BranchRecord>, StoreError> {
        meta::get_json(self.branches, &meta::key(&[repo, name]))
    }

    fn tag(&self, repo: &str, name: &str) -> Result<Option<CommitId>, StoreError> {
        match meta::get_raw(self.tags, &meta::key(&[repo, name]))? {
            Some(raw) => Ok(Some(meta::utf8(&raw)?.to_string())),
            None => Ok(None),
        }
    }

    /// The unique commit whose id starts with `prefix`, if exactly one does.
    fn commit_by_prefix(&self, repo: &str, prefix: &str) -> Result<Option<CommitId>, StoreError> {
        let kp = meta::key_prefix(&[repo]);
        let mut start = kp.clone();
        start.extend_from_slice(prefix.as_bytes());
        let upper = meta::successor(&start);
        let upper = match &upper {
            Some(u) => Bound::Excluded(u.as_slice()),
            None => Bound::Unbounded,
        };
        let mut found = None;
        for item in self
            .commits
            .range::<&[u8]>((Bound::Included(start.as_slice()), upper))?
            .take(2)
        {
            let (k, _) = item?;
            if found.is_some() {
                return Ok(None);
            }
            found = Some(meta::utf8(&k.value()[kp.len()..])?.to_string());
        }
        Ok(found)
    }

    pub fn require_commit(&self, repo: &str, id: &str) -> Result<Commit, StoreError> {
        self.commit(repo, id)?
            .ok_or_else(|| StoreError::RefNotFound(id.to_string()))
    }

    pub fn resolve(&self, repo: &str, expr: &str) -> Result<Resolved, StoreError> {
        let parsed = parse_ref(expr)?;
        let not_found = || StoreError::RefNotFound(expr.to_string());
        let base = parsed.base;
        let mut branch = None;
        let commit_id = if is_commit_id(base) && self.commit(repo, base)?.is_some() {
            base.to_string()
        } else if let Some(record) = self.branch(repo, base)? {
            branch = Some(base);
            record.head
        } else if let Some(commit) = self.tag(repo, base)? {
            commit
        } else if base.len() < 64 && is_lower_hex(base) {
            self.commit_by_prefix(repo, base)?.ok_or_else(not_found)?
        } else {
            return Err(not_found());
        };

        match (parsed.modifiers.as_slice(), branch) {
            ([], Some(b)) => {
                return Ok(Resolved {
                    view: RefView::Branch {
                        branch: b.to_string(),
                        head: commit_id,
                    },
                    explicit_staging: false,
                })
            }
            ([Modifier::Staging], Some(b)) => {
                return Ok(Resolved {
                    view: RefView::Branch {
                        branch: b.to_string(),
                        head: commit_id,
                    },
                    explicit_staging: true,
                })
            }
            ([Modifier::Head], Some(b)) => {
                return Ok(Resolved {
                    view: RefView::BranchHead {
                        branch: b.to_string(),
                        head: commit_id,
                    },
                    explicit_staging: false,
                })
            }
            ([Modifier::Head | Modifier::Staging], None) => {
                return Err(StoreError::InvalidRef(format!(
                    "'{expr}': @ and $ apply only to a branch"
                )))
            }
            _ => {}
        }

        let mut commit = self.require_commit(repo, &commit_id)?;
        for modifier in &parsed.modifiers {
            match *modifier {
                Modifier::Ancestor(n) => {
                    for _ in 0..n {
                        let parent = commit.parents.first().ok_or_else(not_found)?.clone();
                        commit = self.require_commit(repo, &parent)?;
                    }
                }
                Modifier::Parent(0) => {}
                Modifier::Parent(n) => {
                    let parent = commit
                        .parents
                        .get(n as usize - 1)
                        .ok_or_else(|| StoreError::InvalidRef(format!("'{expr}': commit has no parent number {n}")))?;
                    let parent = parent.clone();
                    commit = self.require_commit(repo, &parent)?;
                }
                // parse_ref allows these only as the sole modifier, which is handled above.
                Modifier::Head | Modifier::Staging => {
                    return Err(StoreError::InvalidRef(format!("invalid ref: '{expr}'")))
                }
            }
        }
        Ok(Resolved {
            view: RefView::Commit(commit.id),
            explicit_staging: false,
        })
    }

    /// Resolves an expression that must name a commit (`$` rejected); a branch means its head.
    pub fn resolve_commit(&self, repo: &str, expr: &str) -> Result<Commit, StoreError> {
        let resolved = self.resolve(repo, expr)?;
        if resolved.explicit_staging {
            return Err(StoreError::InvalidRef(STAGING_NOT_A_COMMIT.to_string()));
        }
        self.require_commit(repo, resolved.view.commit_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in ["abc", "a-b", "0ab", "my-repo-1", &"a".repeat(63)] {
            assert!(validate_repository_id(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "-ab", "Abc", "a_b", "a.b", "", &"a".repeat(64)] {
            assert!(validate_repository_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn branch_names() {
        for ok in ["main", "_x", "a-b", "feature_1", "0"] {
            assert!(validate_branch_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a/b", "a.b", "a~1", "a^", "a@", "é"] {
            assert!(validate_branch_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_names() {
        for ok in ["v1.0", "release-2024", "a~b", "x_y"] {
            assert!(validate_tag_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "@", "v1.", "a.lock", "a..b", "a/b", "a@{b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b", "a b",
        ] {
            assert!(validate_tag_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(validate_path("a//b/").is_ok());
        assert!(validate_path("").is_err());
        assert!(validate_path(&"x".repeat(1024)).is_ok());
        assert!(validate_path(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn parse_ref_expressions() {
        let p = parse_ref("main").unwrap();
        assert_eq!((p.base, p.modifiers), ("main", vec![]));
        let p = parse_ref("main~2^2").unwrap();
        assert_eq!(
            (p.base, p.modifiers),
            ("main", vec![Modifier::Ancestor(2), Modifier::Parent(2)])
        );
        let p = parse_ref("v1.0^").unwrap();
        assert_eq!((p.base, p.modifiers), ("v1.0", vec![Modifier::Parent(1)]));
        assert_eq!(parse_ref("main~").unwrap().modifiers, vec![Modifier::Ancestor(1)]);
        assert_eq!(parse_ref("main^0").unwrap().modifiers, vec![Modifier::Parent(0)]);
        assert_eq!(parse_ref("main@").unwrap().modifiers, vec![Modifier::Head]);
        assert_eq!(parse_ref("main$").unwrap().modifiers, vec![Modifier::Staging]);
        for bad in [
            "",
            "~1",
            "main@~1",
            "main~1@",
            "main$@",
            "main@1",
            "a b",
            "main~x",
            "main~99999999999",
            "main~1é",
            "main^€",
        ] {
            assert!(matches!(parse_ref(bad), Err(StoreError::InvalidRef(_))), "{bad}");
        }
    }

    proptest::proptest! {
        /// Any expression parses or is refused without panicking; a parsed one splits into a base (no modifier
        /// characters, no whitespace) and modifiers that account for the rest.
        #[test]
        fn ref_expressions_never_panic(
            expr in proptest::prop_oneof![
                "\\PC{0,40}",
                "[a-z0-9_.-]{0,8}([~^@$][0-9]{0,12}|[é€ \\x00/]){0,6}",
            ]
        ) {
            if let Ok(parsed) = parse_ref(&expr) {
                proptest::prop_assert!(!parsed.base.is_empty());
                proptest::prop_assert!(expr.starts_with(parsed.base));
                proptest::prop_assert!(!parsed.base.contains(['~', '^', '@', '$']));
                proptest::prop_assert!(!expr.chars().any(char::is_whitespace));
                proptest::prop_assert!(parsed.modifiers.len() <= expr.len() - parsed.base.len());
            }
        }

        /// Names the server accepts can never act as a path component that moves: no `/`, no `..`, no NUL,
        /// never `.` or `..` themselves.
        #[test]
        fn accepted_names_cannot_traverse(name in proptest::prop_oneof![
            "\\PC{0,20}",
            "[a-z0-9./\\x00-]{0,12}",
        ]) {
            let traverses = |n: &str| n == "." || n == ".." || n.contains('/') || n.contains('\0') || n.contains("..");
            if validate_repository_id(&name).is_ok() {
                proptest::prop_assert!(!traverses(&name) && !name.contains('.'), "repository {:?}", name);
            }
            if validate_branch_id(&name).is_ok() {
                proptest::prop_assert!(!traverses(&name) && !name.contains('.'), "branch {:?}", name);
            }
            if validate_tag_id(&name).is_ok() {
                proptest::prop_assert!(!traverses(&name), "tag {:?}", name);
            }
        }
    }
}
