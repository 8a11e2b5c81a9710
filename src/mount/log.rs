//! Where a mount's log goes.
//!
//! - In the foreground (`lakefs-fuse mount -f`), logs go to stderr, which the terminal or a service manager
//!   collects.
//! - A daemonized mount has no terminal once the parent has exited. With `-o log_file=PATH` its stdout and stderr
//!   are pointed at PATH (opened for appending by the parent, so a bad path fails the mount command, not the daemon
//!   silently); this also catches panics and anything else written to stderr. Without it, the daemon logs to
//!   syslog (ident `lakefs-fuse`, facility daemon), which journald and rsyslog both collect - the usual home of
//!   FUSE daemons' logs (`journalctl -t lakefs-fuse`).
//!
//! Until the mount is live everything goes to stderr, so start-up errors reach the user's terminal. The switch to
//! syslog is a process-wide flag that the log writer checks for every event.
//!
//! `LAKEFS_FUSE_LOG` takes an `EnvFilter` directive; otherwise the level is `info` (fuser's: `warn`), or with
//! `-o debug` every FUSE request and lakeFS call of this crate (and fuser's per-request lines) at debug level.

use std::ffi::CString;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tracing_subscriber::fmt::MakeWriter;

use super::MountRequest;

/// Set once a daemonized mount without a log file has detached: from then on events go to syslog.
static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

/// The default filter: fuser's own info lines ("Mounting ...") would be noise on a mount command's terminal.
const DEFAULT_FILTER: &str = "info,fuser=warn";

/// The filter `-o debug` selects when `LAKEFS_FUSE_LOG` is not set.
const DEBUG_FILTER: &str = "info,lakefs_fuse=debug,fuser=debug";

/// Install the global subscriber for a mount. Call once, before daemonizing.
pub fn init(request: &MountRequest) {
    let default = if request.options.debug {
        DEBUG_FILTER
    } else {
        DEFAULT_FILTER
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKEFS_FUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(LogWriter);
    let daemon_to_syslog = !request.foreground && request.options.log_file.is_none();
    let _ = if daemon_to_syslog {
        // syslog stamps its own time and has no colours.
        builder.with_ansi(false).without_time().try_init()
    } else {
        // A log file must not collect escape codes; a terminal may have them.
        let ansi = request.options.log_file.is_none() && std::io::stderr().is_terminal();
        builder.with_ansi(ansi).try_init()
    };
}

/// Open the log file for appending (created 0640 when missing), so errors show before anything is mounted.
pub fn open_log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("log_file {}", path.display()))
}

/// Detach stdin/stdout/stderr from the terminal once the mount is live: stdin from /dev/null, stdout and stderr to
/// `log_file` when given, else to /dev/null with the log switched to syslog.
pub fn detach_stdio(log_file: Option<&std::fs::File>) {
    use std::os::fd::AsRawFd;
    let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") else {
        return;
    };
    let output = log_file.map_or(null.as_raw_fd(), |f| f.as_raw_fd());
    // SAFETY: dup2 onto the standard descriptors from descriptors that stay open for the duration of the calls.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(output, 1);
        libc::dup2(output, 2);
    }
    if log_file.is_none() {
        switch_to_syslog();
    }
}

/// Point stderr at the log file in the foreground, once the mount is live.
pub fn redirect_stderr(log_file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let _ = std::io::stderr().flush();
    // SAFETY: dup2 onto stderr from an open descriptor.
    unsafe { libc::dup2(log_file.as_raw_fd(), 2) };
}

fn switch_to_syslog() {
    // SAFETY: the ident is a 'static C string, as openlog requires (it keeps the pointer).
    unsafe {
        libc::openlog(
            c"lakefs-fuse".as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        )
    };
    TO_SYSLOG.store(true, Ordering::Release);
}

/// The subscriber's writer: stderr, or one syslog message per event after [`switch_to_syslog`].
struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.writer(libc::LOG_INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        self.writer(syslog_priority(meta.level()))
    }
}

impl LogWriter {
    fn writer(&self, priority: libc::c_int) -> EventWriter {
        if TO_SYSLOG.load(Ordering::Acquire) {
            EventWriter::Syslog {
                priority,
                line: Vec::with_capacity(256),
            }
        } else {
            EventWriter::Stderr(std::io::stderr())
        }
    }
}

fn syslog_priority(level: &tracing::Level) -> libc::c_int {
    match *level {
        tracing::Level::ERROR => libc::LOG_ERR,
        tracing::Level::WARN => libc::LOG_WARNING,
        tracing::Level::INFO => libc::LOG_INFO,
        _ => libc::LOG_DEBUG,
    }
}

/// Writes one formatted event; a syslog event is sent as one message when the writer is dropped.
enum EventWriter {
    Stderr(std::io::Stderr),
    Syslog { priority: libc::c_int, line: Vec<u8> },
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            EventWriter::Stderr(stderr) => stderr.write(buf),
            EventWriter::Syslog { line, .. } => {
                line.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            EventWriter::Stderr(stderr) => stderr.flush(),
            EventWriter::Syslog { .. } => Ok(()),
        }
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if let EventWriter::Syslog { priority, line } = self {
            if let Some(message) = syslog_message(line) {
                // SAFETY: both strings are NUL-terminated; "%s" keeps the message from being read as a format.
                unsafe { libc::syslog(*priority, c"%s".as_ptr(), message.as_ptr()) };
            }
        }
    }
}

/// The event as one C string: the level's padding and the trailing newline dropped, interior NULs (impossible in
/// practice) replaced.
fn syslog_message(line: &[u8]) -> Option<CString> {
    let trimmed = line.strip_suffix(b"\n").unwrap_or(line).trim_ascii_start();
    if trimmed.is_empty() {
        return None;
    }
    let cleaned: Vec<u8> = trimmed.iter().map(|&b| if b == 0 { b'?' } else { b }).collect();
    CString::new(cleaned).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syslog_message_is_one_line_without_nuls() {
        assert_eq!(syslog_message(b" INFO mounted\n").unwrap().as_bytes(), b"INFO mounted");
        assert_eq!(syslog_message(b"a\0b").unwrap().as_bytes(), b"a?b");
        assert!(syslog_message(b"\n").is_none());
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(syslog_priority(&tracing::Level::ERROR), libc::LOG_ERR);
        assert_eq!(syslog_priority(&tracing::Level::WARN), libc::LOG_WARNING);
        assert_eq!(syslog_priority(&tracing::Level::TRACE), libc::LOG_DEBUG);
    }

    #[test]
    fn the_log_file_is_appended_to_and_closed_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mount.log");
        let mut file = open_log_file(&path).unwrap();
        writeln!(file, "one").unwrap();
        drop(file);
        let mut file = open_log_file(&path).unwrap();
        writeln!(file, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "others get nothing: {mode:o}");
        assert!(open_log_file(&dir.path().join("missing/dir/x.log")).is_err());
    }
}
