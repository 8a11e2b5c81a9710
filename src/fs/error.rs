//! Errors of the filesystem core and the one place they become errno values.
//!
//! Every operation of the core returns [`FsError`]: an errno, a message for the log (and later for
//! `.lakefs/status`), the lakeFS error behind it when there is one, and the level to log it at - an expected miss
//! such as a failed lookup is DEBUG, a server failure is WARN. [`ToErrno`] is implemented once per source error
//! type; nothing else in the crate picks errno values for lakeFS errors.
//!
//! | lakeFS error                           | errno  |
//! |----------------------------------------|--------|
//! | NotFound                               | ENOENT |
//! | Unauthorized, Forbidden                | EACCES |
//! | BadRequest                             | EINVAL |
//! | PreconditionFailed (hook rejected)     | EPERM  |
//! | Conflict                               | EBUSY  |
//! | RateLimited, Unavailable, Timeout, Transport, Protocol (after retries) | EIO |

use std::fmt;

use crate::lakefs::LakeFsError;
use crate::staging::StagingError;

/// Picks the errno for a source error type.
pub trait ToErrno {
    fn to_errno(&self) -> i32;
}

impl ToErrno for LakeFsError {
    fn to_errno(&self) -> i32 {
        match self {
            LakeFsError::NotFound(_) => libc::ENOENT,
            LakeFsError::Unauthorized(_) | LakeFsError::Forbidden(_) => libc::EACCES,
            LakeFsError::BadRequest(_) => libc::EINVAL,
            LakeFsError::PreconditionFailed(_) => libc::EPERM,
            LakeFsError::Conflict(_) => libc::EBUSY,
            LakeFsError::RateLimited(_)
            | LakeFsError::Unavailable(_)
            | LakeFsError::Timeout(_)
            | LakeFsError::Transport(_)
            | LakeFsError::Protocol(_) => libc::EIO,
        }
    }
}

impl ToErrno for StagingError {
    fn to_errno(&self) -> i32 {
        match self {
            StagingError::NoSpace { .. } => libc::ENOSPC,
            StagingError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => libc::ENOSPC,
            StagingError::Io { .. } => libc::EIO,
        }
    }
}

/// How loudly an error deserves to be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorLevel {
    /// Expected in normal use (lookup of a missing name, write to a read-only ref).
    Debug,
    /// Something the user should probably know about.
    Warn,
}

#[derive(Debug, Clone)]
pub struct FsError {
    pub errno: i32,
    pub message: String,
    pub source: Option<LakeFsError>,
    pub level: ErrorLevel,
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl FsError {
    fn new(errno: i32, level: ErrorLevel, message: impl Into<String>) -> Self {
        Self {
            errno,
            message: message.into(),
            source: None,
            level,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(libc::ENOENT, ErrorLevel::Debug, message)
    }
    pub fn not_a_directory(message: impl Into<String>) -> Self {
        Self::new(libc::ENOTDIR, ErrorLevel::Debug, message)
    }
    pub fn is_a_directory(message: impl Into<String>) -> Self {
        Self::new(libc::EISDIR, ErrorLevel::Debug, message)
    }
    pub fn read_only(message: impl Into<String>) -> Self {
        Self::new(libc::EROFS, ErrorLevel::Debug, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(libc::EINVAL, ErrorLevel::Debug, message)
    }
    pub fn name_too_long(message: impl Into<String>) -> Self {
        Self::new(libc::ENAMETOOLONG, ErrorLevel::Debug, message)
    }
    pub fn bad_handle(message: impl Into<String>) -> Self {
        Self::new(libc::EBADF, ErrorLevel::Warn, message)
    }
    /// The object changed on the server while this handle was reading it.
    pub fn stale(message: impl Into<String>) -> Self {
        Self::new(libc::ESTALE, ErrorLevel::Warn, message)
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(libc::EIO, ErrorLevel::Warn, message)
    }
    /// A commit or merge found nothing to do.
    pub fn no_data(message: impl Into<String>) -> Self {
        Self::new(libc::ENODATA, ErrorLevel::Debug, message)
    }
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(libc::EACCES, ErrorLevel::Debug, message)
    }
    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(libc::EEXIST, ErrorLevel::Debug, message)
    }
    pub fn not_empty(message: impl Into<String>) -> Self {
        Self::new(libc::ENOTEMPTY, ErrorLevel::Debug, message)
    }
    pub fn not_permitted(message: impl Into<String>) -> Self {
        Self::new(libc::EPERM, ErrorLevel::Warn, message)
    }
    pub fn cross_device(message: impl Into<String>) -> Self {
        Self::new(libc::EXDEV, ErrorLevel::Debug, message)
    }

    /// Wrap a local staging error with what the filesystem was doing.
    pub fn staging(context: impl std::fmt::Display, err: StagingError) -> Self {
        Self::new(err.to_errno(), ErrorLevel::Warn, format!("{context}: {err}"))
    }

    /// The same error with a different errno (a lakeFS answer that means something else in context).
    pub fn with_errno(mut self, errno: i32) -> Self {
        self.errno = errno;
        self
    }

    /// Wrap a lakeFS error with what the filesystem was doing.
    pub fn lakefs(context: impl Into<String>, err: LakeFsError) -> Self {
        let level = match err {
            LakeFsError::NotFound(_) => ErrorLevel::Debug,
            _ => ErrorLevel::Warn,
        };
        Self {
            errno: err.to_errno(),
            message: context.into(),
            source: Some(err),
            level,
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lakefs_errors_map_to_the_documented_errno() {
        let table = [
            (LakeFsError::NotFound(String::new()), libc::ENOENT),
            (LakeFsError::Unauthorized(String::new()), libc::EACCES),
            (LakeFsError::Forbidden(String::new()), libc::EACCES),
            (LakeFsError::BadRequest(String::new()), libc::EINVAL),
            (LakeFsError::PreconditionFailed(String::new()), libc::EPERM),
            (LakeFsError::Conflict(String::new()), libc::EBUSY),
            (LakeFsError::RateLimited(String::new().into()), libc::EIO),
            (LakeFsError::Unavailable(String::new().into()), libc::EIO),
            (LakeFsError::Timeout(String::new()), libc::EIO),
            (LakeFsError::Transport(String::new()), libc::EIO),
            (LakeFsError::Protocol(String::new()), libc::EIO),
        ];
        for (err, errno) in table {
            assert_eq!(err.to_errno(), errno, "{err:?}");
            assert_eq!(FsError::lakefs("op", err.clone()).errno, errno, "{err:?}");
        }
    }

    #[test]
    fn constructors_carry_their_errno_and_level() {
        assert_eq!(FsError::not_found("x").errno, libc::ENOENT);
        assert_eq!(FsError::not_a_directory("x").errno, libc::ENOTDIR);
        assert_eq!(FsError::is_a_directory("x").errno, libc::EISDIR);
        assert_eq!(FsError::read_only("x").errno, libc::EROFS);
        assert_eq!(FsError::invalid("x").errno, libc::EINVAL);
        assert_eq!(FsError::name_too_long("x").errno, libc::ENAMETOOLONG);
        assert_eq!(FsError::stale("x").errno, libc::ESTALE);
        assert_eq!(FsError::io("x").errno, libc::EIO);
        assert_eq!(FsError::not_found("x").level, ErrorLevel::Debug);
        assert_eq!(
            FsError::lakefs("x", LakeFsError::Timeout(String::new())).level,
            ErrorLevel::Warn
        );
    }

    #[test]
    fn display_keeps_the_server_message() {
        let err = FsError::lakefs(
            "reading a/b",
            LakeFsError::Forbidden("cannot write to protected branch".into()),
        );
        assert_eq!(
            err.to_string(),
            "reading a/b: forbidden: cannot write to protected branch"
        );
    }
}
