//! Paging with prefix, `after` and delimiter over any sorted, seekable stream of paths (object listings and
//! diffs share it).
//!
//! Rules (lakefs-api.md §3): items are in byte order of their path; `after` is exclusive; with a delimiter, every
//! path that has the delimiter after the prefix collapses into one common prefix (up to and including the
//! delimiter). Once a common prefix is emitted, the stream *seeks* to the first path after everything under it,
//! so a directory of 100,000 objects costs one B-tree descent, not 100,000 reads. A common prefix given as
//! `after` likewise resumes after everything under it. `has_more` is true only when another item really follows
//! the page.

use std::ops::Bound;

use super::meta::{self, Kv};
use super::tree::{Record, ViewCursor};
use super::{ListEntry, Page, StoreError};

/// A sorted stream of `(path, item)` that can be repositioned.
pub(super) trait Seekable {
    type Item;
    fn seek(&mut self, from: Bound<&[u8]>) -> Result<(), StoreError>;
    /// The next `(path, item)`.
    #[allow(clippy::type_complexity)]
    fn next_item(&mut self) -> Result<Option<(Vec<u8>, Self::Item)>, StoreError>;
}

impl<T: Kv> Seekable for ViewCursor<'_, T> {
    type Item = Vec<u8>;

    fn seek(&mut self, from: Bound<&[u8]>) -> Result<(), StoreError> {
        ViewCursor::seek(self, from)
    }

    fn next_item(&mut self) -> Result<Option<Record>, StoreError> {
        self.next_raw()
    }
}

/// Where a path collapses into a common prefix: the prefix including the delimiter, if any.
fn common_prefix<'p>(path: &'p [u8], prefix: &[u8], delimiter: &[u8]) -> Option<&'p [u8]> {
    if delimiter.is_empty() || !path.starts_with(prefix) {
        return None;
    }
    let rest = &path[prefix.len()..];
    let at = rest.windows(delimiter.len()).position(|w| w == delimiter)?;
    Some(&path[..prefix.len() + at + delimiter.len()])
}

/// Seeks past everything under `common_prefix`; false when nothing can follow it.
fn skip_prefix<S: Seekable>(source: &mut S, common_prefix: &[u8]) -> Result<bool, StoreError> {
    match meta::successor(common_prefix) {
        Some(next) => {
            source.seek(Bound::Included(&next))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// One page from `source`, whose paths all start with `prefix` (the source enforces that).
pub(super) fn paginate<S: Seekable, Out>(
    source: &mut S,
    prefix: &str,
    after: &str,
    amount: usize,
    delimiter: Option<&str>,
    mut make_prefix: impl FnMut(String) -> Out,
    mut make_item: impl FnMut(String, S::Item) -> Result<Option<Out>, StoreError>,
) -> Result<Page<Out>, StoreError> {
    let amount = amount.max(1);
    let delimiter = delimiter.unwrap_or("").as_bytes();
    let prefix = prefix.as_bytes();
    let mut items = Vec::new();

    if after.is_empty() {
        source.seek(Bound::Unbounded)?;
    } else if let Some(cp) = common_prefix(after.as_bytes(), prefix, delimiter) {
        if !skip_prefix(source, cp)? {
            return Ok(Page { items, has_more: false });
        }
    } else {
        source.seek(Bound::Excluded(after.as_bytes()))?;
    }

    while let Some((path, item)) = source.next_item()? {
        if let Some(cp) = common_prefix(&path, prefix, delimiter) {
            if items.len() == amount {
                return Ok(Page { items, has_more: true });
            }
            items.push(make_prefix(meta::utf8(cp)?.to_string()));
            if !skip_prefix(source, cp)? {
                break;
            }
            continue;
        }
        let path = meta::utf8(&path)?.to_string();
        if let Some(out) = make_item(path, item)? {
            if items.len() == amount {
                return Ok(Page { items, has_more: true });
            }
            items.push(out);
        }
    }
    Ok(Page { items, has_more: false })
}

/// Object listing over a view.
pub(super) fn list_view<T: Kv>(
    cursor: &mut ViewCursor<'_, T>,
    prefix: &str,
    after: &str,
    amount: usize,
    delimiter: Option<&str>,
) -> Result<Page<ListEntry>, StoreError> {
    paginate(
        cursor,
        prefix,
        after,
        amount,
        delimiter,
        ListEntry::CommonPrefix,
        |path, raw| {
            Ok(Some(ListEntry::Object {
                path,
                entry: meta::from_json(&raw)?,
            }))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seekable stream over a fixed sorted list, counting how many items it yields.
    struct VecSource {
        paths: Vec<&'static str>,
        pos: usize,
        yielded: usize,
    }

    impl Seekable for VecSource {
        type Item = ();
        fn seek(&mut self, from: Bound<&[u8]>) -> Result<(), StoreError> {
            self.pos = self.paths.partition_point(|p| match from {
                Bound::Included(f) => p.as_bytes() < f,
                Bound::Excluded(f) => p.as_bytes() <= f,
                Bound::Unbounded => false,
            });
            Ok(())
        }
        fn next_item(&mut self) -> Result<Option<(Vec<u8>, ())>, StoreError> {
            let item = self.paths.get(self.pos).map(|p| (p.as_bytes().to_vec(), ()));
            self.pos += 1;
            self.yielded += usize::from(item.is_some());
            Ok(item)
        }
    }

    fn names(page: &Page<String>) -> Vec<&str> {
        page.items.iter().map(String::as_str).collect()
    }

    fn list(src: &mut VecSource, after: &str, amount: usize, delimiter: Option<&str>) -> Page<String> {
        paginate(src, "", after, amount, delimiter, |p| p, |p, ()| Ok(Some(p))).unwrap()
    }

    #[test]
    fn delimiter_pages_resume_after_common_prefixes() {
        let mut paths = vec!["a", "b/1", "b/2", "b/3", "c", "d/x/1", "d/y", "e"];
        paths.sort();
        let mut src = VecSource {
            paths,
            pos: 0,
            yielded: 0,
        };
        let p1 = list(&mut src, "", 2, Some("/"));
        assert_eq!((names(&p1), p1.has_more), (vec!["a", "b/"], true));
        let p2 = list(&mut src, "b/", 2, Some("/"));
        assert_eq!((names(&p2), p2.has_more), (vec!["c", "d/"], true));
        let p3 = list(&mut src, "d/", 2, Some("/"));
        assert_eq!((names(&p3), p3.has_more), (vec!["e"], false));
        let exact = list(&mut src, "", 5, Some("/"));
        assert_eq!(
            (names(&exact), exact.has_more),
            (vec!["a", "b/", "c", "d/", "e"], false)
        );
        let flat = list(&mut src, "b/1", 2, None);
        assert_eq!((names(&flat), flat.has_more), (vec!["b/2", "b/3"], true));
    }

    #[test]
    fn common_prefix_is_skipped_not_walked() {
        let mut paths: Vec<String> = (0..1000).map(|i| format!("big/{i:04}")).collect();
        paths.push("z".to_string());
        let leaked: Vec<&'static str> = paths.into_iter().map(|p| &*Box::leak(p.into_boxed_str())).collect();
        let mut src = VecSource {
            paths: leaked,
            pos: 0,
            yielded: 0,
        };
        let page = list(&mut src, "", 10, Some("/"));
        assert_eq!(names(&page), vec!["big/", "z"]);
        assert!(src.yielded <= 3, "walked {} items", src.yielded);
    }

    #[test]
    fn common_prefix_detection() {
        assert_eq!(common_prefix(b"a/b/c", b"a/", b"/"), Some(&b"a/b/"[..]));
        assert_eq!(common_prefix(b"a/b", b"a/", b"/"), None);
        assert_eq!(common_prefix(b"a/", b"a/", b"/"), None);
        assert_eq!(common_prefix(b"a::b", b"", b"::"), Some(&b"a::"[..]));
        assert_eq!(common_prefix(b"a/b", b"", b""), None);
    }
}
