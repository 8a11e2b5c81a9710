//! `lakefs-fuse commit PATH -m MSG` and `lakefs-fuse merge PATH --into TARGET`: the control files
//! `.lakefs/commit` and `.lakefs/merge` driven from the command line, for scripts and people who want a progress
//! bar and an exit code that says what went wrong.
//!
//! The command is written as one JSON line in one `write(2)`, as `echo` would; the mount runs the operation
//! inside that call, so the call blocks until the commit or merge is done. Meanwhile a second thread polls
//! `.lakefs/status.json` and draws the progress: a bar while pending uploads drain, then the phase (committing,
//! merging). The errno of the write says what kind of failure it was; the full message (hook name and output,
//! conflicting paths) comes from the operation's outcome in `status.json`, matched by its sequence number so an
//! older outcome is never mistaken for ours.
//!
//! Exit codes ([`Failure`]) are part of the interface: see `docs/SEMANTICS.md`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::mounts::{self, LocateError};
use crate::fs::inode::CONTROL_DIR;
use crate::fs::write::control::{OperationKind, OperationOutcome, Phase, StatusReport};

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// A mounted branch directory, or any path inside one.
    pub path: PathBuf,
    /// Commit message.
    #[arg(short, long)]
    pub message: String,
    /// Commit metadata KEY=VALUE (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// A mounted branch directory, or any path inside one: the branch to merge (after committing what this
    /// mount wrote to it).
    pub path: PathBuf,
    /// The branch to merge into.
    #[arg(long, value_name = "TARGET")]
    pub into: String,
    /// How conflicts are resolved; without it a conflict fails the merge.
    #[arg(long, value_enum)]
    pub strategy: Option<Strategy>,
    /// Message of the merge commit (default: Merge 'BRANCH' into 'TARGET').
    #[arg(short, long)]
    pub message: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The merged branch's version wins.
    SourceWins,
    /// The target's version wins.
    DestWins,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::SourceWins => "source-wins",
            Self::DestWins => "dest-wins",
        }
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE with a non-empty KEY, got {text:?}")),
    }
}

/// The kinds of failure, each with its own exit code (2 is clap's, for usage errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Anything not listed below.
    Other,
    /// PATH is not inside a mounted ref of a lakefs-fuse mount.
    NotInMount,
    /// The ref is a tag or commit, or the mount is read-only (EROFS).
    ReadOnly,
    /// Nothing to commit or merge (ENODATA).
    NoChanges,
    /// Merge conflict (EBUSY).
    Conflict,
    /// A pre-commit or pre-merge hook refused (EPERM).
    HookRejected,
    /// Invalid message, metadata or target (EINVAL).
    Invalid,
    /// The server failed or could not be reached, uploads included (EIO).
    Server,
    /// Credentials refused (EACCES).
    AccessDenied,
    /// The local staging space is full (ENOSPC).
    NoSpace,
}

impl Failure {
    pub const ALL: [Failure; 10] = [
        Failure::Other,
        Failure::NotInMount,
        Failure::ReadOnly,
        Failure::NoChanges,
        Failure::Conflict,
        Failure::HookRejected,
        Failure::Invalid,
        Failure::Server,
        Failure::AccessDenied,
        Failure::NoSpace,
    ];

    pub fn code(self) -> u8 {
        match self {
            Self::Other => 1,
            Self::NotInMount => 3,
            Self::ReadOnly => 4,
            Self::NoChanges => 5,
            Self::Conflict => 6,
            Self::HookRejected => 7,
            Self::Invalid => 8,
            Self::Server => 9,
            Self::AccessDenied => 10,
            Self::NoSpace => 11,
        }
    }

    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::EROFS => Self::ReadOnly,
            libc::ENODATA => Self::NoChanges,
            libc::EBUSY => Self::Conflict,
            libc::EPERM => Self::HookRejected,
            libc::EINVAL => Self::Invalid,
            libc::EIO | libc::ENOTCONN | libc::ETIMEDOUT => Self::Server,
            libc::EACCES => Self::AccessDenied,
            libc::ENOSPC => Self::NoSpace,
            _ => Self::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Other => "failed",
            Self::NotInMount => "not in a mounted ref",
            Self::ReadOnly => "read-only ref",
            Self::NoChanges => "no changes",
            Self::Conflict => "conflict",
            Self::HookRejected => "rejected by a hook",
            Self::Invalid => "invalid request",
            Self::Server => "server error",
            Self::AccessDenied => "access denied",
            Self::NoSpace => "no space",
        }
    }

    /// What the user can do next.
    fn hint(self, kind: OperationKind) -> Option<&'static str> {
        match self {
            Self::NoChanges if kind == OperationKind::Merge => Some("the target already has everything on this branch"),
            Self::NoChanges => Some("nothing was written through this mount since the last commit"),
            Self::Conflict => Some(
                "the paths above changed on both sides; change them to agree, or merge with --strategy \
                 source-wins|dest-wins",
            ),
            Self::HookRejected => Some("fix what the hook reports and run the command again; nothing was lost"),
            Self::Server => Some("check that the server is reachable; `lakefs-fuse status` shows the mount's state"),
            Self::ReadOnly => Some("tags, commits and read-only mounts cannot be committed to; mount a branch"),
            Self::AccessDenied => Some("check the mount's credentials (access key id and secret)"),
            Self::NoSpace => Some("free space in the staging directory or raise -o max_staging="),
            Self::Other | Self::NotInMount | Self::Invalid => None,
        }
    }
}

/// A failed command: its kind and the full message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OperationError {
    pub failure: Failure,
    pub message: String,
}

impl OperationError {
    fn new(failure: Failure, message: impl Into<String>) -> Self {
        Self {
            failure,
            message: message.into(),
        }
    }
}

impl From<LocateError> for OperationError {
    fn from(err: LocateError) -> Self {
        let failure = match err {
            LocateError::NotInMount(_) | LocateError::NotInRef { .. } => Failure::NotInMount,
            LocateError::Inaccessible { .. } | LocateError::BadStatus { .. } => Failure::Other,
        };
        Self::new(failure, err.to_string())
    }
}

/// The JSON line written to `.lakefs/commit`.
pub fn commit_command(args: &CommitArgs) -> String {
    let metadata: BTreeMap<&str, &str> = args.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    serde_json::json!({"message": args.message, "metadata": metadata}).to_string()
}

/// The JSON line written to `.lakefs/merge`.
pub fn merge_command(args: &MergeArgs) -> String {
    let mut command = serde_json::json!({"into": args.into});
    if let Some(strategy) = args.strategy {
        command["strategy"] = strategy.name().into();
    }
    if let Some(message) = &args.message {
        command["message"] = message.as_str().into();
    }
    command.to_string()
}

pub fn run_commit(args: CommitArgs) -> ExitCode {
    if args.message.trim().is_empty() {
        return report(
            OperationKind::Commit,
            Err(OperationError::new(Failure::Invalid, "the commit message is empty")),
        );
    }
    let command = commit_command(&args);
    report(OperationKind::Commit, run(&args.path, OperationKind::Commit, &command))
}

pub fn run_merge(args: MergeArgs) -> ExitCode {
    let command = merge_command(&args);
    report(OperationKind::Merge, run(&args.path, OperationKind::Merge, &command))
}

/// Print the outcome: the new commit id on stdout, or the error on stderr; the exit code says which.
fn report(kind: OperationKind, result: Result<OperationOutcome, OperationError>) -> ExitCode {
    match result {
        Ok(outcome) => {
            match &outcome.id {
                Some(id) => println!("{id}"),
                None => println!("{}", outcome.message),
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!(
                "lakefs-fuse: {} failed ({}): {}",
                kind.name(),
                err.failure.label(),
                err.message
            );
            if let Some(hint) = err.failure.hint(kind) {
                eprintln!("lakefs-fuse: {hint}");
            }
            ExitCode::from(err.failure.code())
        }
    }
}

/// Write `command` to the control file of `kind` in the ref holding `path`, with progress, and return the
/// operation's outcome.
fn run(path: &Path, kind: OperationKind, command: &str) -> Result<OperationOutcome, OperationError> {
    let root = mounts::ref_root_of(path)?;
    let before = mounts::read_status(&root)?;
    let Some(branch) = before.branch.as_ref().filter(|_| before.reference.writable) else {
        return Err(OperationError::new(
            Failure::ReadOnly,
            format!(
                "{} ({} of {}) is not a writable branch",
                root.display(),
                before.reference.name,
                before.reference.repository
            ),
        ));
    };
    let after_sequence = branch.sequence;
    let control = root.join(CONTROL_DIR).join(kind.name());

    let progress = Progress::start(mounts::status_file(&root), kind, after_sequence);
    let written = write_command(&control, command);
    progress.finish();

    let outcome = mounts::read_status(&root)
        .ok()
        .and_then(|status| own_outcome(&status, kind, after_sequence));
    match (written, outcome) {
        (Ok(()), Some(outcome)) if outcome.ok => Ok(outcome),
        // Success, but the outcome was already replaced by a later operation: nothing more to say.
        (Ok(()), _) => Ok(OperationOutcome {
            sequence: after_sequence + 1,
            kind,
            ok: true,
            errno: None,
            message: format!("{} done", kind.name()),
            id: None,
        }),
        (Err(err), outcome) => {
            let failure = err.raw_os_error().map_or(Failure::Other, Failure::from_errno);
            let message = match outcome.filter(|o| !o.ok) {
                Some(outcome) => outcome.message,
                None => format!("writing {}: {err}", control.display()),
            };
            Err(OperationError::new(failure, message))
        }
    }
}

/// One `write(2)` of the whole command: the mount runs one operation per write.
fn write_command(control: &Path, command: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(control)?;
    let line = format!("{command}\n");
    let written = file.write(line.as_bytes())?;
    if written != line.len() {
        return Err(std::io::Error::other(format!(
            "short write to {}: {written} of {} bytes",
            control.display(),
            line.len()
        )));
    }
    Ok(())
}

/// The outcome of the operation started after `after_sequence`, if it is the latest.
fn own_outcome(status: &StatusReport, kind: OperationKind, after_sequence: u64) -> Option<OperationOutcome> {
    status
        .branch
        .as_ref()?
        .last_operation
        .clone()
        .filter(|o| o.kind == kind && o.sequence > after_sequence)
}

/// The progress display: a thread polling `status.json` while the command's write blocks. Nothing is drawn
/// when stderr is not a terminal.
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const POLL_INTERVAL: Duration = Duration::from_millis(150);

impl Progress {
    fn start(status_file: PathBuf, kind: OperationKind, after_sequence: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self { stop, thread: None };
        }
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || show_progress(&status_file, kind, after_sequence, &stop))
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn show_progress(status_file: &Path, kind: OperationKind, after_sequence: u64, stop: &AtomicBool) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let spinner = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let uploads = ProgressStyle::with_template("{spinner} {msg} {wide_bar} {pos}/{len} files [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(spinner.clone());
    bar.set_message(format!("{}: starting", kind.name()));
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut showing_uploads = false;
    while !stop.load(Ordering::Relaxed) {
        let branch = std::fs::read_to_string(status_file)
            .ok()
            .and_then(|text| serde_json::from_str::<StatusReport>(&text).ok())
            .and_then(|status| status.branch);
        let Some(branch) = branch else {
            std::thread::sleep(POLL_INTERVAL);
            continue;
        };
        match branch.running.as_ref().filter(|r| r.sequence > after_sequence) {
            Some(running) => {
                if running.phase == Phase::Uploading && running.uploads_at_start > 0 {
                    if !showing_uploads {
                        bar.set_style(uploads.clone());
                        showing_uploads = true;
                    }
                    let total = running.uploads_at_start as u64;
                    bar.set_length(total);
                    bar.set_position(total.saturating_sub(branch.pending_uploads as u64));
                } else if showing_uploads {
                    bar.set_style(spinner.clone());
                    showing_uploads = false;
                }
                bar.set_message(format!("{}: {}", kind.name(), running.phase.describe()));
            }
            // Not started yet: an upload (a file being closed) or another operation holds the branch.
            None if branch.pending_uploads > 0 || branch.running.is_some() => bar.set_message(format!(
                "{}: waiting for the branch's uploads and operations in progress ({} files pending)",
                kind.name(),
                branch.pending_uploads
            )),
            None => {}
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn commit_arguments_become_a_json_command() {
        let cli = Cli::try_parse_from([
            "lakefs-fuse",
            "commit",
            "/mnt/lake/repo/main/dir",
            "-m",
            "add \"sales\" data",
            "--metadata",
            "owner=data-team",
            "--metadata",
            "ticket=a=b",
        ])
        .unwrap();
        let Command::Commit(args) = cli.command else {
            panic!("not a commit")
        };
        let json: serde_json::Value = serde_json::from_str(&commit_command(&args)).unwrap();
        assert_eq!(json["message"], "add \"sales\" data");
        assert_eq!(json["metadata"]["owner"], "data-team");
        assert_eq!(json["metadata"]["ticket"], "a=b", "only the first = splits");
        // The mount's own parser accepts what the CLI writes.
        let parsed = crate::fs::write::control::CommitCommand::parse(commit_command(&args).as_bytes()).unwrap();
        assert_eq!(parsed.0.metadata.len(), 2);

        for bad in ["novalue", "=v"] {
            let result = Cli::try_parse_from(["lakefs-fuse", "commit", "/p", "-m", "m", "--metadata", bad]);
            assert!(result.is_err(), "{bad}");
        }
        assert!(
            Cli::try_parse_from(["lakefs-fuse", "commit", "/p"]).is_err(),
            "a message is required"
        );
    }

    #[test]
    fn merge_arguments_become_a_json_command() {
        let cli = Cli::try_parse_from([
            "lakefs-fuse",
            "merge",
            "/mnt/lake/repo/ingest",
            "--into",
            "main",
            "--strategy",
            "dest-wins",
            "-m",
            "publish",
        ])
        .unwrap();
        let Command::Merge(args) = cli.command else {
            panic!("not a merge")
        };
        let command = merge_command(&args);
        let parsed = crate::fs::write::control::MergeCommand::parse(command.as_bytes()).unwrap();
        assert_eq!(parsed.into, "main");
        assert_eq!(parsed.strategy, Some(crate::lakefs::MergeStrategy::DestWins));
        assert_eq!(parsed.message.as_deref(), Some("publish"));

        let cli = Cli::try_parse_from(["lakefs-fuse", "merge", "/p", "--into", "main"]).unwrap();
        let Command::Merge(args) = cli.command else {
            panic!("not a merge")
        };
        assert_eq!(merge_command(&args), r#"{"into":"main"}"#);
        assert!(Cli::try_parse_from(["lakefs-fuse", "merge", "/p", "--into", "main", "--strategy", "mine"]).is_err());
        assert!(
            Cli::try_parse_from(["lakefs-fuse", "merge", "/p"]).is_err(),
            "--into is required"
        );
    }

    #[test]
    fn every_failure_has_its_own_exit_code() {
        let mut codes: Vec<u8> = Failure::ALL.iter().map(|f| f.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Failure::ALL.len());
        assert!(
            !codes.contains(&0) && !codes.contains(&2),
            "0 is success, 2 is clap's usage error"
        );
        assert_eq!(Failure::from_errno(libc::ENODATA), Failure::NoChanges);
        assert_eq!(Failure::from_errno(libc::EPERM), Failure::HookRejected);
        assert_eq!(Failure::from_errno(libc::EBUSY), Failure::Conflict);
        assert_eq!(Failure::from_errno(libc::EROFS), Failure::ReadOnly);
        assert_eq!(Failure::from_errno(libc::E2BIG), Failure::Other);
    }

    #[test]
    fn only_a_newer_outcome_of_the_same_kind_is_ours() {
        let outcome = |sequence, kind| OperationOutcome {
            sequence,
            kind,
            ok: true,
            errno: None,
            message: String::new(),
            id: Some("c1".into()),
        };
        let status = |last| -> StatusReport {
            serde_json::from_value(serde_json::json!({
                "format": 1,
                "ref": {"repository": "r", "name": "main", "type": "branch", "head": "h", "writable": true},
                "branch": {
                    "repository": "r", "branch": "main", "staging_branch": "_fuse-main-1", "staging_created": true,
                    "pending_uploads": 0, "uncommitted_written": 0, "uncommitted_deleted": 0,
                    "local_directories": 0, "last_upload_error": null, "last_commit": null, "sequence": 3,
                    "running": null, "last_operation": last,
                },
                "mount": {"source": "lakefs://r/main", "endpoint": "e", "mountpoint": "/m", "read_only": false,
                          "cache": {"memory_bytes": 0, "memory_limit": 1, "hits": 0, "misses": 0,
                                    "disk_bytes": null, "disk_limit": null},
                          "branches": []},
            }))
            .unwrap()
        };
        let mine = status(serde_json::to_value(outcome(3, OperationKind::Commit)).unwrap());
        assert!(own_outcome(&mine, OperationKind::Commit, 2).is_some());
        assert!(
            own_outcome(&mine, OperationKind::Commit, 3).is_none(),
            "an older outcome"
        );
        assert!(own_outcome(&mine, OperationKind::Merge, 2).is_none(), "another kind");
        assert!(own_outcome(&status(serde_json::Value::Null), OperationKind::Commit, 0).is_none());
    }
}
