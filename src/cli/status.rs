//! `lakefs-fuse status [MOUNTPOINT] [--json]`: one mount, or every lakefs-fuse mount of this mount namespace,
//! summarised from the `.lakefs/status.json` each mount serves (see [`super::mounts`] for how it is found).
//!
//! A mount that cannot be read (its daemon died: ENOTCONN; the server is down: EIO) is still listed, with the
//! error, so the command is useful exactly when something is wrong.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::mounts::{self, LocateError};
use crate::fs::write::control::{BranchReport, StatusReport};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A lakefs-fuse mountpoint (or a path inside one); default: every lakefs-fuse mount.
    pub mountpoint: Option<PathBuf>,
    /// Print a JSON array with one object per mount (`mountpoint`, and `status` as `.lakefs/status.json` has it
    /// or `error`).
    #[arg(long)]
    pub json: bool,
}

/// One mount's status, or why it could not be read.
#[derive(Debug, serde::Serialize)]
pub struct MountStatus {
    pub mountpoint: PathBuf,
    pub status: Option<StatusReport>,
    pub error: Option<String>,
}

fn mount_status(mountpoint: &Path) -> MountStatus {
    let result = match mounts::any_ref_root(mountpoint) {
        Some(root) => mounts::read_status(&root).map_err(|e| e.to_string()),
        None => Err(match std::fs::read_dir(mountpoint) {
            Err(err) => format!("cannot read the mount: {err}"),
            Ok(_) => "no .lakefs/status.json at or below the mountpoint: an empty server or repository, or a mount \
                      run by a lakefs-fuse without status.json"
                .into(),
        }),
    };
    let (status, error) = match result {
        Ok(status) => (Some(status), None),
        Err(error) => (None, Some(error)),
    };
    MountStatus {
        mountpoint: mountpoint.to_path_buf(),
        status,
        error,
    }
}

pub fn run(args: StatusArgs) -> ExitCode {
    let mountpoints = match &args.mountpoint {
        Some(path) => match mounts::lakefs_mount_of(path) {
            Ok(mountpoint) => vec![mountpoint],
            Err(err) => {
                eprintln!("lakefs-fuse: {err}");
                let code = match err {
                    LocateError::NotInMount(_) | LocateError::NotInRef { .. } => 3,
                    _ => 1,
                };
                return ExitCode::from(code);
            }
        },
        None => match mounts::read_mounts() {
            Ok(all) => all
                .into_iter()
                .filter(|m| m.is_lakefs())
                .map(|m| m.mountpoint)
                .collect(),
            Err(err) => {
                eprintln!("lakefs-fuse: reading /proc/self/mountinfo: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    let statuses: Vec<MountStatus> = mountpoints.iter().map(|m| mount_status(m)).collect();
    if args.json {
        match serde_json::to_string_pretty(&statuses) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("lakefs-fuse: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else if statuses.is_empty() {
        println!("no lakefs-fuse mounts");
    } else {
        let text: Vec<String> = statuses.iter().map(render).collect();
        print!("{}", text.join("\n"));
    }
    // A mount that cannot report is a failure worth an exit code.
    if statuses.iter().any(|s| s.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The human-readable summary of one mount.
pub fn render(mount: &MountStatus) -> String {
    let mut out = String::new();
    let Some(status) = &mount.status else {
        let _ = writeln!(
            out,
            "{}: cannot read the mount's status: {}",
            mount.mountpoint.display(),
            mount.error.as_deref().unwrap_or("unknown error")
        );
        return out;
    };
    let m = &status.mount;
    let _ = writeln!(
        out,
        "{}: {} ({})",
        mount.mountpoint.display(),
        m.source,
        if m.read_only { "read-only" } else { "read-write" }
    );
    let _ = writeln!(out, "  server:      {}", m.endpoint);
    let r = &status.reference;
    // A ref mount shows its ref; repository and server mounts show every branch they wrote.
    if m.source.matches('/').count() > 2 {
        let _ = writeln!(
            out,
            "  ref:         {}/{} ({}, head {})",
            r.repository, r.name, r.kind, r.head
        );
    }
    let c = &m.cache;
    let _ = write!(
        out,
        "  data cache:  {} of {} in memory, {} hits, {} misses",
        human_bytes(c.memory_bytes),
        human_bytes(c.memory_limit),
        c.hits,
        c.misses
    );
    if let (Some(used), Some(limit)) = (c.disk_bytes, c.disk_limit) {
        let _ = write!(out, "; {} of {} on disk", human_bytes(used), human_bytes(limit));
    }
    out.push('\n');
    if m.branches.is_empty() {
        let _ = writeln!(out, "  no branch written through this mount");
    }
    for branch in &m.branches {
        render_branch(&mut out, branch);
    }
    out
}

fn render_branch(out: &mut String, b: &BranchReport) {
    let _ = writeln!(
        out,
        "  branch {}/{}: staging branch {}{}",
        b.repository,
        b.branch,
        b.staging_branch,
        if b.staging_created { "" } else { " (not created yet)" }
    );
    let _ = writeln!(
        out,
        "    pending uploads: {}, uncommitted changes: {} ({} written, {} deleted), local directories: {}",
        b.pending_uploads,
        b.uncommitted_written + b.uncommitted_deleted,
        b.uncommitted_written,
        b.uncommitted_deleted,
        b.local_directories
    );
    if let Some(running) = &b.running {
        let _ = writeln!(
            out,
            "    running: {} ({}, {:.1}s)",
            running.kind.name(),
            running.phase.describe(),
            running.elapsed_ms as f64 / 1000.0
        );
    }
    if let Some(last) = &b.last_operation {
        let result = if last.ok {
            "ok".to_string()
        } else {
            format!("failed, {}", last.errno.as_deref().unwrap_or("error"))
        };
        let _ = writeln!(
            out,
            "    last operation: {} ({result}): {}",
            last.kind.name(),
            last.message
        );
    }
    if let Some(error) = &b.last_upload_error {
        let _ = writeln!(out, "    last upload error: {error}");
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(160 * 1024 * 1024), "160.0 MiB");
    }

    #[test]
    fn a_mount_without_status_reports_its_error() {
        let text = render(&MountStatus {
            mountpoint: "/mnt/x".into(),
            status: None,
            error: Some("Transport endpoint is not connected".into()),
        });
        assert!(text.contains("/mnt/x") && text.contains("not connected"), "{text}");
    }

    #[test]
    fn a_branch_summary_names_counts_and_the_last_error() {
        let report: BranchReport = serde_json::from_value(serde_json::json!({
            "repository": "repo", "branch": "ingest", "staging_branch": "_fuse-ingest-0a1b2c3d",
            "staging_created": true, "pending_uploads": 2, "uncommitted_written": 3, "uncommitted_deleted": 1,
            "local_directories": 0, "last_upload_error": null, "last_commit": null, "sequence": 1,
            "running": null,
            "last_operation": {"sequence": 1, "kind": "merge", "ok": false, "errno": "EPERM",
                               "message": "hook schema-check: column missing", "id": null},
        }))
        .unwrap();
        let mut text = String::new();
        render_branch(&mut text, &report);
        assert!(
            text.contains("repo/ingest") && text.contains("_fuse-ingest-0a1b2c3d"),
            "{text}"
        );
        assert!(
            text.contains("pending uploads: 2") && text.contains("uncommitted changes: 4"),
            "{text}"
        );
        assert!(text.contains("merge (failed, EPERM): hook schema-check"), "{text}");
    }
}
