//! Prefixes known to hold nothing on a branch, so that looking up names below them needs no request.
//!
//! Creating many files in a new directory looks every new name up first (the kernel's `LOOKUP` before `CREATE`),
//! and each miss would cost a stat and a listing on the server. When a lookup finds that `DIR/` holds nothing on
//! the branch (its listing came back empty: typically `mkdir DIR`, which looks `DIR` up first), that is
//! remembered for `metadata_ttl`, the staleness every other cached answer has too. Lookups below `DIR/` are
//! then answered from the overlay alone. Once the entry is stale, one listing of `DIR/` (one request, not two
//! per name) confirms it for another `metadata_ttl`, or drops it.
//!
//! This mount's own commit, merge or discard changes the branch: [`EmptyPrefixes::clear`] forgets everything
//! and bumps a generation, and an answer fetched across that change is not recorded ([`EmptyPrefixes::record`]
//! takes the generation seen before the request).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use lru::LruCache;

/// Prefixes remembered at most.
const CAPACITY: usize = 16_384;

/// What is known about a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emptiness {
    /// Nothing below it on the branch, as of less than `metadata_ttl` ago.
    Empty,
    /// Was empty once; worth one listing to confirm.
    Stale,
    Unknown,
}

type Key = (String, String, String);

#[derive(Debug)]
pub(crate) struct EmptyPrefixes {
    entries: Mutex<LruCache<Key, Instant>>,
    generation: AtomicU64,
}

impl Default for EmptyPrefixes {
    fn default() -> Self {
        Self {
            entries: Mutex::new(LruCache::new(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN))),
            generation: AtomicU64::new(0),
        }
    }
}

fn key(repo: &str, branch: &str, prefix: &str) -> Key {
    (repo.to_string(), branch.to_string(), prefix.to_string())
}

impl EmptyPrefixes {
    /// Take before asking the server; hand to [`Self::record`] with the answer.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn check(&self, repo: &str, branch: &str, prefix: &str, now: Instant) -> Emptiness {
        match super::lock(&self.entries).get(&key(repo, branch, prefix)) {
            Some(until) if *until > now => Emptiness::Empty,
            Some(_) => Emptiness::Stale,
            None => Emptiness::Unknown,
        }
    }

    /// `prefix` held nothing on the branch when asked at `generation`; trust that until `until`.
    pub fn record(&self, repo: &str, branch: &str, prefix: &str, until: Instant, generation: u64) {
        let mut entries = super::lock(&self.entries);
        // Checked under the lock that `clear` takes too, so a clear cannot slip in between.
        if self.generation() == generation {
            entries.put(key(repo, branch, prefix), until);
        }
    }

    pub fn forget(&self, repo: &str, branch: &str, prefix: &str) {
        super::lock(&self.entries).pop(&key(repo, branch, prefix));
    }

    /// The branch changed through this mount: forget everything, and ignore answers fetched before.
    pub fn clear(&self) {
        let mut entries = super::lock(&self.entries);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_to_stale_and_a_clear_voids_answers_fetched_before_it() {
        let prefixes = EmptyPrefixes::default();
        let now = Instant::now();
        assert_eq!(prefixes.check("r", "main", "d/", now), Emptiness::Unknown);
        let asked = prefixes.generation();
        prefixes.record("r", "main", "d/", now + Duration::from_secs(1), asked);
        assert_eq!(prefixes.check("r", "main", "d/", now), Emptiness::Empty);
        assert_eq!(prefixes.check("r", "other", "d/", now), Emptiness::Unknown);
        assert_eq!(
            prefixes.check("r", "main", "d/", now + Duration::from_secs(2)),
            Emptiness::Stale
        );
        let asked = prefixes.generation();
        prefixes.clear();
        assert_eq!(prefixes.check("r", "main", "d/", now), Emptiness::Unknown);
        prefixes.record("r", "main", "e/", now + Duration::from_secs(1), asked);
        assert_eq!(
            prefixes.check("r", "main", "e/", now),
            Emptiness::Unknown,
            "fetched before the clear"
        );
    }
}
