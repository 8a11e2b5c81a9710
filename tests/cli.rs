//! `lakefs-fuse commit`, `merge` and `status` against a real mount of the embedded server: ids printed, the
//! documented exit codes and messages for "no changes" and a rejecting pre-merge hook, status of pending and
//! uncommitted work, and paths that are not in a mounted branch.
//!
//! Needs /dev/fuse and fusermount3; run with `cargo test --features fuse_tests --test cli`.

#![cfg(feature = "fuse_tests")]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{action_file, Mount, Server};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lakefs-fuse"))
        .args(args)
        .output()
        .expect("run lakefs-fuse")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A file held open for writing by another process, so its bytes stay pending. (The test process itself cannot
/// hold it: every child it spawns closes its inherited copy of the descriptor at exec, and that close uploads the
/// file. Nor can a shell: `exec >FILE` opens the file, dups it onto stdout and closes the original, and if that
/// close's upload starts after the write it takes the bytes along.) Python opens it once and closes it at exit.
struct HeldOpen(Child);

impl HeldOpen {
    fn write(path: &Path, text: &str) -> Self {
        let child = Command::new("python3")
            .arg("-c")
            .arg(
                "import os, sys\n\
                 fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n\
                 os.write(fd, sys.argv[2].encode())\n\
                 sys.stdin.read()",
            )
            .args([path_arg(path), text])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::metadata(path).map_or(0, |m| m.len()) < text.len() as u64 {
            assert!(Instant::now() < deadline, "the writer did not write {}", path.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }

    fn close(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

impl Drop for HeldOpen {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn head(server: &Server, branch: &str) -> String {
    let body = server.send(server.api(reqwest::Method::GET, &format!("/repositories/repo/branches/{branch}")));
    let branch: serde_json::Value = serde_json::from_str(&body).unwrap();
    branch["commit_id"].as_str().expect("commit id").to_string()
}

fn status_json(mountpoint: &Path) -> serde_json::Value {
    let output = cli(&["status", "--json", path_arg(mountpoint)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mounts: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(mounts.as_array().map(Vec::len), Some(1), "{mounts}");
    mounts[0]["status"].clone()
}

#[test]
fn commit_and_merge_print_ids_and_fail_with_documented_codes() {
    let server = Server::with_committed("repo", &[("base.csv", "id\n1\n")]);
    server.branch("repo", "ingest", "main");
    let mount = Mount::start(&server, "lakefs://repo", "");
    let ingest = mount.join("ingest");

    // One file written and closed, one still open for writing: uncommitted 2, pending upload 1.
    fs::create_dir(ingest.join("sales")).unwrap();
    fs::write(ingest.join("sales/q1.csv"), "id,amount\n1,10\n").unwrap();
    let mut writer = HeldOpen::write(&ingest.join("sales/q2.csv"), "id,amount\n2,20\n");

    let status = status_json(mount.path());
    let branch = &status["mount"]["branches"][0];
    assert_eq!(branch["branch"], "ingest", "{status}");
    assert_eq!(branch["uncommitted_written"], 2, "{status}");
    assert_eq!(branch["pending_uploads"], 1, "{status}");
    assert!(
        status["mount"]["endpoint"].as_str().unwrap().starts_with(&server.url),
        "{status}"
    );
    assert_eq!(status["mount"]["source"], "lakefs://repo");

    let human = cli(&["status"]);
    let text = stdout(&human);
    assert!(text.contains(path_arg(mount.path())), "every mount is listed: {text}");
    assert!(
        text.contains("branch repo/ingest") && text.contains("pending uploads: 1, uncommitted changes: 2"),
        "{text}"
    );

    // Commit from a path deep inside the branch: the open file's bytes are uploaded too.
    let output = cli(&[
        "commit",
        path_arg(&ingest.join("sales/q1.csv")),
        "-m",
        "sales for q1 and q2",
        "--metadata",
        "source=cli-test",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let id = stdout(&output).trim().to_string();
    assert_eq!(id, head(&server, "ingest"), "the printed id is the branch's new head");
    assert_eq!(
        server.get("repo", "ingest", "sales/q2.csv").unwrap(),
        b"id,amount\n2,20\n"
    );
    writer.close();

    // Nothing new: exit code 5 and a message that says so.
    let output = cli(&["commit", path_arg(&ingest), "-m", "again"]);
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("commit failed (no changes)") && stderr(&output).contains("nothing to commit"),
        "{}",
        stderr(&output)
    );

    // A pre-merge hook on main refuses: exit code 7, the hook's output on stderr, main unchanged.
    let hooks = server.start_webhook("schema check failed: column 'region' is missing");
    let reject = action_file("schema check", "pre-merge", "main", &format!("{hooks}/reject"));
    server.upload("repo", "ingest", "_lakefs_actions/check.yaml", reject);
    let main_before = head(&server, "main");
    let output = cli(&["merge", path_arg(&ingest), "--into", "main"]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("column 'region' is missing"),
        "{}",
        stderr(&output)
    );
    assert_eq!(head(&server, "main"), main_before);
    let status = status_json(mount.path());
    let last = &status["mount"]["branches"][0]["last_operation"];
    assert_eq!(
        (&last["kind"], &last["ok"], &last["errno"]),
        (&"merge".into(), &false.into(), &"EPERM".into())
    );

    // The hook accepts: the merge commit's id is printed and is main's head.
    let accept = action_file("schema check", "pre-merge", "main", &format!("{hooks}/accept"));
    server.upload("repo", "ingest", "_lakefs_actions/check.yaml", accept);
    let output = cli(&["merge", path_arg(&ingest), "--into", "main", "-m", "publish q1 and q2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), head(&server, "main"));
    assert_eq!(
        server.get("repo", "main", "sales/q1.csv").unwrap(),
        b"id,amount\n1,10\n"
    );
    let text = stdout(&cli(&["status", path_arg(mount.path())]));
    assert!(text.contains("last operation: merge (ok)"), "{text}");

    // This mount and another client change the same file: exit code 6, the path in the message.
    fs::write(ingest.join("sales/q1.csv"), "id,amount\n1,11\n").unwrap();
    server.upload("repo", "main", "sales/q1.csv", "id,amount\n1,12\n");
    server.commit("repo", "main", "their change");
    let output = cli(&["merge", path_arg(&ingest), "--into", "main"]);
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("conflict") && stderr(&output).contains("sales/q1.csv"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn paths_that_are_not_a_writable_mounted_branch_are_refused() {
    let server = Server::with_committed("repo", &[("f", "x")]);
    server.tag("repo", "v1", "main");
    let mount = Mount::start(&server, "lakefs://repo", "");

    let outside = tempfile::tempdir().unwrap();
    let output = cli(&["commit", path_arg(outside.path()), "-m", "m"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not inside a lakefs-fuse mount"),
        "{}",
        stderr(&output)
    );

    // The repository level of the mount holds no ref.
    let output = cli(&["merge", path_arg(mount.path()), "--into", "main"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("not inside a ref"), "{}", stderr(&output));

    // A tag is read-only.
    let output = cli(&["commit", path_arg(&mount.join("v1")), "-m", "m"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));

    let output = cli(&["status", path_arg(outside.path())]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
}

#[test]
fn the_metrics_endpoint_counts_requests_bytes_and_pending_uploads() {
    let server = Server::with_committed("repo", &[("data.csv", "id\n1\n2\n")]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mount = Mount::start(&server, "lakefs://repo/main", &format!("metrics=127.0.0.1:{port}"));
    assert_eq!(fs::read(mount.join("data.csv")).unwrap(), b"id\n1\n2\n");
    let mut writer = HeldOpen::write(&mount.join("new.csv"), "id\n3\n");

    let text = server.runtime.block_on(async {
        let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
        assert!(response.status().is_success());
        response.text().await.unwrap()
    });
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(value("lakefs_fuse_fuse_request_duration_seconds_count{op=\"lookup\"}") >= 1.0);
    assert!(value("lakefs_fuse_fuse_request_duration_seconds_count{op=\"read\"}") >= 1.0);
    assert!(value("lakefs_fuse_lakefs_request_duration_seconds_count{op=\"get_object_range\"}") >= 1.0);
    assert!(value("lakefs_fuse_bytes_down_total") >= 7.0);
    assert_eq!(value("lakefs_fuse_pending_uploads"), 1.0);
    assert_eq!(value("lakefs_fuse_uncommitted_changes"), 1.0);
    writer.close();
}
