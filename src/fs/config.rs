//! Plain configuration of the filesystem core and the parsing of `lakefs://` sources.

use std::time::Duration;

/// What the mount shows at its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `lakefs://`: one directory per repository.
    Server,
    /// `lakefs://REPO`: one directory per branch.
    Repository { repo: String },
    /// `lakefs://REPO/REF[/PREFIX]`: one ref, optionally below a prefix. `prefix` is empty or ends in `/`.
    Ref {
        repo: String,
        reference: String,
        prefix: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lakeFS URI {uri:?}: {reason}")]
pub struct SourceError {
    pub uri: String,
    pub reason: &'static str,
}

/// Repository ids as lakeFS validates them: `^[a-z0-9][a-z0-9-]{2,62}$`.
pub fn is_valid_repository_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (3..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

impl Source {
    /// Parse `lakefs://`, `lakefs://REPO`, `lakefs://REPO/REF` or `lakefs://REPO/REF/PREFIX`. Everything after
    /// the ref is the prefix, verbatim; a trailing `/` is added so it names a directory.
    pub fn parse(uri: &str) -> Result<Self, SourceError> {
        let error = |reason| SourceError {
            uri: uri.to_string(),
            reason,
        };
        let rest = uri
            .strip_prefix("lakefs://")
            .ok_or_else(|| error("must start with lakefs://"))?;
        if rest.is_empty() {
            return Ok(Self::Server);
        }
        let (repo, after_repo) = match rest.split_once('/') {
            Some((repo, after)) => (repo, Some(after)),
            None => (rest, None),
        };
        if repo.contains('@') {
            return Err(error("user info is not allowed"));
        }
        if !is_valid_repository_id(repo) {
            return Err(error(
                "repository ids are 3-63 characters of a-z, 0-9 and '-', not starting with '-'",
            ));
        }
        let repo = repo.to_string();
        let Some(after_repo) = after_repo.filter(|s| !s.is_empty()) else {
            return Ok(Self::Repository { repo });
        };
        let (reference, path) = match after_repo.split_once('/') {
            Some((reference, path)) => (reference, path),
            None => (after_repo, ""),
        };
        if reference.is_empty() || reference.chars().any(char::is_whitespace) {
            return Err(error("the ref must be non-empty and contain no whitespace"));
        }
        let prefix = if path.is_empty() || path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        Ok(Self::Ref {
            repo,
            reference: reference.to_string(),
            prefix,
        })
    }
}

/// Settings of the filesystem core; built by the CLI, or directly by tests.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits of files without `::lakefs::posix-permissions`.
    pub file_mode: u16,
    /// Permission bits of directories.
    pub dir_mode: u16,
    /// How long branch metadata (attributes, lookups, listings) is trusted.
    pub metadata_ttl: Duration,
    /// Refuse every write, whatever the ref.
    pub read_only: bool,
    /// Unit of data caching and of ranged GETs.
    pub block_size: u64,
    /// Bytes of object data in memory: cached blocks and the buffers of fetches in flight, together.
    pub max_memory: u64,
    /// First prefetch window of a sequential reader.
    pub initial_read_window: u64,
    /// Largest prefetch window.
    pub max_read_window: u64,
    /// Largest ranged GET of a sequential reader (whole blocks; see [`crate::fs::prefetch`]).
    pub max_read_request: u64,
    /// Negative lookups remembered at most.
    pub negative_cache_entries: usize,
    /// Directory of the on-disk data cache; none = memory only.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Bytes the disk cache may use.
    pub cache_size: u64,
    /// Root of the local staging files of written data; none = a default under the user's runtime or cache dir.
    pub staging_dir: Option<std::path::PathBuf>,
    /// Bytes of written data staged locally at most; a write past it fails with ENOSPC.
    pub max_staging: u64,
    /// Host name and canonical mountpoint: with repository and branch they name the staging branch, so a
    /// restarted mount resumes its own.
    pub host: String,
    pub mountpoint: String,
    /// The lakeFS API endpoint, for `.lakefs/status.json` only.
    pub endpoint: String,
    /// Upload a file's full parts while it is still being written (`-o upload_eager`, on by default), not all of
    /// it on close.
    pub upload_eager: bool,
    /// `close` waits for the file's upload and returns its error (`-o sync_close`); otherwise it uploads in the
    /// background.
    pub sync_close: bool,
}

impl FsConfig {
    /// How a handle reading an object fetches it.
    pub fn read_tuning(&self) -> crate::fs::prefetch::ReadTuning {
        crate::fs::prefetch::ReadTuning {
            block_size: self.block_size,
            initial_window: self.initial_read_window,
            max_window: self.max_read_window,
            max_request: self.max_read_request,
        }
    }
}

impl Default for FsConfig {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            metadata_ttl: Duration::from_secs(1),
            read_only: false,
            block_size: 1024 * 1024,
            max_memory: 160 * 1024 * 1024,
            initial_read_window: 1024 * 1024,
            max_read_window: 32 * 1024 * 1024,
            max_read_request: 4 * 1024 * 1024,
            negative_cache_entries: 100_000,
            cache_dir: None,
            cache_size: 10 * 1024 * 1024 * 1024,
            staging_dir: None,
            max_staging: 16 * 1024 * 1024 * 1024,
            host: crate::staging::host_name(),
            mountpoint: String::new(),
            endpoint: String::new(),
            upload_eager: true,
            sync_close: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any string parses or is refused without panicking; a parsed source is well formed.
        #[test]
        fn arbitrary_sources(uri in proptest::prop_oneof![
            "\\PC{0,60}",
            "lakefs://[a-z0-9@.-]{0,8}(/[a-zA-Z0-9~^@$. -]{0,6}){0,4}/?",
        ]) {
            match Source::parse(&uri) {
                Ok(Source::Server) => proptest::prop_assert_eq!(uri.as_str(), "lakefs://"),
                Ok(Source::Repository { repo }) => proptest::prop_assert!(is_valid_repository_id(&repo)),
                Ok(Source::Ref { repo, reference, prefix }) => {
                    proptest::prop_assert!(is_valid_repository_id(&repo));
                    proptest::prop_assert!(!reference.is_empty() && !reference.contains('/'));
                    proptest::prop_assert!(!reference.chars().any(char::is_whitespace));
                    proptest::prop_assert!(prefix.is_empty() || prefix.ends_with('/'));
                }
                Err(_) => {}
            }
        }
    }

    #[test]
    fn sources_parse_into_their_three_forms() {
        assert_eq!(Source::parse("lakefs://").unwrap(), Source::Server);
        assert_eq!(
            Source::parse("lakefs://repo").unwrap(),
            Source::Repository { repo: "repo".into() }
        );
        assert_eq!(
            Source::parse("lakefs://repo/").unwrap(),
            Source::Repository { repo: "repo".into() }
        );
        assert_eq!(
            Source::parse("lakefs://repo/main").unwrap(),
            Source::Ref {
                repo: "repo".into(),
                reference: "main".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Source::parse("lakefs://repo/main~1/data/raw").unwrap(),
            Source::Ref {
                repo: "repo".into(),
                reference: "main~1".into(),
                prefix: "data/raw/".into()
            }
        );
        assert_eq!(
            Source::parse("lakefs://repo/v1/data/").unwrap(),
            Source::Ref {
                repo: "repo".into(),
                reference: "v1".into(),
                prefix: "data/".into()
            }
        );
    }

    #[test]
    fn bad_sources_are_rejected() {
        for uri in [
            "s3://repo",
            "lakefs://Repo",
            "lakefs://ab",
            "lakefs://user@repo/main",
            "lakefs://-repo",
        ] {
            assert!(Source::parse(uri).is_err(), "{uri}");
        }
    }
}
