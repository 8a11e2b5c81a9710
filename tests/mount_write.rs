//! Real mounts of the embedded server, written to with ordinary tools and syscalls: every write pattern the write
//! model promises, the control files (`commit`, `merge`, `status`, `staging`), hooks, conflicts, read-only refs and
//! a restarted mount resuming its staging branch.
//!
//! Needs /dev/fuse and fusermount3; run with `cargo test --features fuse_tests --test mount_write`.

#![cfg(feature = "fuse_tests")]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{action_file, run, unmount, Mount, Server};

/// Write `text` to a control file in one write(2); the errno of the operation, if it failed.
fn control(root: &Path, file: &str, text: &str) -> Result<(), i32> {
    fs::write(root.join(".lakefs").join(file), text).map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn read(path: &Path) -> String {
    String::from_utf8(fs::read(path).unwrap()).unwrap()
}

fn sh(cwd: &Path, script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn write_patterns_reach_the_branch_only_with_the_commit() {
    let server = Server::start();
    server.create_repository("repo");
    server.upload("repo", "main", "existing.txt", "0123456789");
    server.upload("repo", "main", "trunc.txt", "abcdefghij");
    server.upload("repo", "main", "edit.txt", "line one\nline two\n");
    server.upload("repo", "main", "olddir/keep.csv", "k");
    server.commit("repo", "main", "initial");
    let mount = Mount::start(&server, "lakefs://repo/main", "");
    let root = mount.path();

    // create + write, append, overwrite in place (no O_TRUNC), truncate, sparse write, fsync.
    fs::write(root.join("new.txt"), "hello\n").unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(root.join("new.txt"))
        .unwrap()
        .write_all(b"world\n")
        .unwrap();
    let file = fs::OpenOptions::new()
        .write(true)
        .open(root.join("existing.txt"))
        .unwrap();
    file.write_all_at(b"AB", 2).unwrap();
    file.sync_all().unwrap();
    drop(file);
    run("truncate", &["-s", "4", "trunc.txt"], root);
    let sparse = fs::File::create(root.join("sparse.bin")).unwrap();
    sparse.write_all_at(b"end", 1 << 20).unwrap();
    drop(sparse);
    // Editors: sed -i writes a temp file and renames it over; vim with backupcopy=no renames the original away.
    run("sed", &["-i", "s/hello/HELLO/", "new.txt"], root);
    run(
        "vim",
        &[
            "-Es",
            "-u",
            "NONE",
            "-c",
            "set backupcopy=no writebackup",
            "-c",
            "%s/two/2/",
            "-c",
            "wq",
            "edit.txt",
        ],
        root,
    );
    // cp -r of a local tree, mv, rm, mkdir, rmdir.
    let local = tempfile::tempdir().unwrap();
    fs::create_dir_all(local.path().join("tree/sub")).unwrap();
    fs::write(local.path().join("tree/a.txt"), "A").unwrap();
    fs::write(local.path().join("tree/sub/b.txt"), "B").unwrap();
    run(
        "cp",
        &["-r", &local.path().join("tree").to_string_lossy(), "copied"],
        root,
    );
    run("mv", &["new.txt", "moved.txt"], root);
    run("rm", &["olddir/keep.csv"], root);
    assert_eq!(
        run("ls", &["olddir"], root),
        "",
        "an emptied directory stays until rmdir"
    );
    run("rmdir", &["olddir"], root);
    run("mkdir", &["empty"], root);
    // chmod, utimens, symlink; hard links are refused.
    run("chmod", &["600", "moved.txt"], root);
    run("touch", &["-m", "-d", "@1000000", "moved.txt"], root);
    run("ln", &["-s", "moved.txt", "link"], root);
    let err = fs::hard_link(root.join("moved.txt"), root.join("hard")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");

    // What this mount shows.
    assert_eq!(
        run("ls", &[], root),
        "copied\nedit.txt\nempty\nexisting.txt\nlink\nmoved.txt\nsparse.bin\ntrunc.txt\n"
    );
    assert_eq!(read(&root.join("moved.txt")), "HELLO\nworld\n");
    assert_eq!(read(&root.join("existing.txt")), "01AB456789");
    assert_eq!(read(&root.join("trunc.txt")), "abcd");
    assert_eq!(read(&root.join("edit.txt")), "line one\nline 2\n");
    assert_eq!(read(&root.join("copied/sub/b.txt")), "B");
    let sparse = fs::read(root.join("sparse.bin")).unwrap();
    assert_eq!(sparse.len(), (1 << 20) + 3);
    assert!(sparse[..1 << 20].iter().all(|b| *b == 0));
    let meta = fs::metadata(root.join("moved.txt")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.mtime(), 1_000_000);
    assert_eq!(fs::read_link(root.join("link")).unwrap(), Path::new("moved.txt"));

    // Nothing reached main; the staging branch is hidden from listings.
    let staging = read(&root.join(".lakefs/staging")).trim().to_string();
    assert!(staging.starts_with("_fuse-main-"), "{staging}");
    assert!(server.has_branch("repo", &staging));
    assert_eq!(server.branches("repo"), ["main"]);
    assert_eq!(
        server.paths("repo", "main"),
        ["edit.txt", "existing.txt", "olddir/keep.csv", "trunc.txt"]
    );
    assert_eq!(server.get("repo", "main", "existing.txt").unwrap(), b"0123456789");

    control(root, "commit", "all write patterns\n").unwrap();
    assert_eq!(
        server.paths("repo", "main"),
        [
            "copied/a.txt",
            "copied/sub/b.txt",
            "edit.txt",
            "existing.txt",
            "link",
            "moved.txt",
            "sparse.bin",
            "trunc.txt"
        ]
    );
    assert_eq!(server.get("repo", "main", "moved.txt").unwrap(), b"HELLO\nworld\n");
    assert_eq!(server.get("repo", "main", "existing.txt").unwrap(), b"01AB456789");
    assert_eq!(server.get("repo", "main", "trunc.txt").unwrap(), b"abcd");
    assert_eq!(server.get("repo", "main", "edit.txt").unwrap(), b"line one\nline 2\n");
    let head = read(&root.join(".lakefs/head")).trim().to_string();
    assert_eq!(read(&root.join(".lakefs/commit")).trim(), head);
    assert_eq!(control(root, "commit", "again\n"), Err(libc::ENODATA));
    let status = read(&root.join(".lakefs/status"));
    assert!(status.contains("uncommitted changes: 0"), "{status}");
    assert!(
        status.contains("commit failed") && status.contains("nothing to commit"),
        "{status}"
    );
    // After the commit the same names read from main with the same attributes.
    assert_eq!(read(&root.join("moved.txt")), "HELLO\nworld\n");
    assert_eq!(
        fs::metadata(root.join("moved.txt")).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn ingest_branch_merge_with_hooks_and_conflicts() {
    let server = Server::with_committed("repo", &[("base.csv", "id\n1\n")]);
    server.branch("repo", "ingest", "main");
    // An S3 writer (Airbyte, boto3) leaves a sync uncommitted on the ingest branch.
    server.s3_put("repo", "ingest", "sync/part-0.csv", "id\n2\n");
    server.s3_put("repo", "ingest", "sync/part-1.csv", "id\n3\n");
    let hooks = server.start_webhook("schema check failed: column 'amount' is missing");
    let reject = action_file("schema check", "pre-merge", "main", &format!("{hooks}/reject"));
    server.upload("repo", "ingest", "_lakefs_actions/check.yaml", reject);

    let mount = Mount::start(&server, "lakefs://repo/ingest", "");
    let root = mount.path();
    assert_eq!(run("ls", &["sync"], root), "part-0.csv\npart-1.csv\n");
    assert_eq!(read(&root.join("sync/part-1.csv")), "id\n3\n");

    let output = sh(root, "echo main > .lakefs/merge");
    assert!(!output.status.success(), "the hook must refuse the merge");
    assert_eq!(control(root, "merge", "main\n"), Err(libc::EPERM));
    let status = read(&root.join(".lakefs/status"));
    assert!(status.contains("column 'amount' is missing"), "{status}");
    assert_eq!(server.paths("repo", "main"), ["base.csv"], "main is unchanged");

    let accept = action_file("schema check", "pre-merge", "main", &format!("{hooks}/accept"));
    server.upload("repo", "ingest", "_lakefs_actions/check.yaml", accept);
    let output = sh(root, "echo main > .lakefs/merge");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(server.get("repo", "main", "sync/part-0.csv").unwrap(), b"id\n2\n");
    assert_eq!(server.get("repo", "main", "sync/part-1.csv").unwrap(), b"id\n3\n");
    assert!(read(&root.join(".lakefs/merge")).contains("ingest into main"));

    // A conflict: this mount and another client change base.csv differently.
    fs::write(root.join("base.csv"), "id\nours\n").unwrap();
    server.upload("repo", "main", "base.csv", "id\ntheirs\n");
    server.commit("repo", "main", "their change");
    assert_eq!(
        control(root, "merge", r#"{"into":"main","message":"with a conflict"}"#),
        Err(libc::EBUSY)
    );
    let status = read(&root.join(".lakefs/status"));
    assert!(status.contains("conflict") && status.contains("base.csv"), "{status}");
    assert_eq!(server.get("repo", "main", "base.csv").unwrap(), b"id\ntheirs\n");
    assert_eq!(control(root, "merge", "no-such-branch"), Err(libc::EINVAL));
}

#[test]
fn tags_are_read_only() {
    let server = Server::with_committed("repo", &[("f", "x")]);
    server.tag("repo", "v1", "main");
    let mount = Mount::start(&server, "lakefs://repo", "");
    let tag = mount.join("v1");
    assert_eq!(read(&tag.join("f")), "x");
    let erofs = |result: std::io::Result<()>| result.unwrap_err().raw_os_error();
    assert_eq!(erofs(fs::write(tag.join("new"), "n")), Some(libc::EROFS));
    assert_eq!(erofs(fs::write(tag.join("f"), "n")), Some(libc::EROFS));
    assert_eq!(erofs(fs::remove_file(tag.join("f"))), Some(libc::EROFS));
    assert_eq!(erofs(fs::create_dir(tag.join("d"))), Some(libc::EROFS));
    assert_eq!(control(&tag, "commit", "m"), Err(libc::EROFS));
    // The branch next to it is writable.
    fs::write(mount.join("main/new"), "n").unwrap();
    assert_eq!(read(&mount.join("main/new")), "n");
}

#[test]
fn a_restarted_mount_resumes_its_staging_branch() {
    let server = Server::with_committed("repo", &[("old", "o")]);
    let dir = tempfile::tempdir().unwrap();
    let staging = {
        let mount = Mount::start_at(&server, "lakefs://repo/main", "", dir.path());
        fs::write(mount.join("kept.txt"), "written before the restart").unwrap();
        fs::remove_file(mount.join("old")).unwrap();
        read(&mount.join(".lakefs/staging"))
    };
    let mount = Mount::start_at(&server, "lakefs://repo/main", "", dir.path());
    assert_eq!(read(&mount.join(".lakefs/staging")), staging);
    assert_eq!(run("ls", &[], mount.path()), "kept.txt\n");
    assert_eq!(read(&mount.join("kept.txt")), "written before the restart");
    assert_eq!(server.paths("repo", "main"), ["old"]);
    control(mount.path(), "commit", "resumed").unwrap();
    assert_eq!(server.paths("repo", "main"), ["kept.txt"]);
}

#[test]
fn a_mount_killed_with_open_files_uploads_them_when_restarted() {
    let server = Server::with_committed("repo", &[("old", "o")]);
    let dir = tempfile::tempdir().unwrap();
    let mut mount = Mount::start_at(&server, "lakefs://repo/main", "", dir.path());
    let staging = read(&mount.join(".lakefs/staging")).trim().to_string();
    let mut open = fs::File::create(mount.join("open.txt")).unwrap();
    open.write_all(b"written, never closed").unwrap();
    assert_eq!(
        server.get("repo", &staging, "open.txt"),
        None,
        "not uploaded before close"
    );
    mount.kill();
    drop(open);
    drop(mount);
    let mount = Mount::start_at(&server, "lakefs://repo/main", "", dir.path());
    assert_eq!(
        server.get("repo", &staging, "open.txt").as_deref(),
        Some(&b"written, never closed"[..]),
        "the restarted mount uploads what the journal names"
    );
    assert_eq!(read(&mount.join("open.txt")), "written, never closed");
    control(mount.path(), "commit", "recovered").unwrap();
    assert_eq!(
        server.get("repo", "main", "open.txt").unwrap(),
        b"written, never closed"
    );
}

#[test]
fn large_files_upload_in_parts_and_the_staging_budget_is_enforced() {
    let server = Server::start();
    server.create_repository("repo");
    let mount = Mount::start(&server, "lakefs://repo/main", "");
    // Above the 16 MiB multipart threshold: two parts, the second one short.
    let big: Vec<u8> = (0..20 * 1024 * 1024 + 7u32).map(|i| (i % 251) as u8).collect();
    fs::write(mount.join("big.bin"), &big).unwrap();
    control(mount.path(), "commit", "big").unwrap();
    assert!(
        server.get("repo", "main", "big.bin").unwrap() == big,
        "multipart upload must keep every byte"
    );
    drop(mount);

    let small = Mount::start(&server, "lakefs://repo/main", "max_staging=1M");
    let err = fs::write(small.join("too-big.bin"), vec![1u8; 2 * 1024 * 1024]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // The partial file holds the budget until it goes.
    assert_eq!(
        fs::write(small.join("fits.bin"), vec![1u8; 1000])
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOSPC)
    );
    fs::remove_file(small.join("too-big.bin")).unwrap();
    fs::write(small.join("fits.bin"), vec![1u8; 1000]).unwrap();
}

#[test]
fn fifos_device_nodes_and_directory_modes_through_the_kernel() {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
    let server = Server::start();
    server.create_repository("repo");
    let mount = Mount::start(&server, "lakefs://repo/main", "");
    let root = mount.path();

    run("mkfifo", &["-m", "640", "pipe"], root);
    run("mknod", &["tty", "c", "5", "0"], root);
    let pipe = fs::symlink_metadata(root.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o7777, 0o640);
    let tty = fs::symlink_metadata(root.join("tty")).unwrap();
    assert!(tty.file_type().is_char_device());
    assert_eq!(tty.rdev(), libc::makedev(5, 0));
    fs::set_permissions(root.join("pipe"), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(fs::symlink_metadata(root.join("pipe")).unwrap().file_type().is_fifo());

    // Directory mode from mkdir(2) and chmod, kept by this mount.
    fs::DirBuilder::new().mode(0o750).create(root.join("dir")).unwrap();
    assert_eq!(fs::metadata(root.join("dir")).unwrap().mode() & 0o7777, 0o750);
    fs::set_permissions(root.join("dir"), fs::Permissions::from_mode(0o711)).unwrap();
    assert_eq!(fs::metadata(root.join("dir")).unwrap().mode() & 0o7777, 0o711);

    // Committed, the special files stay what they are for every reader.
    control(root, "commit", "special files").unwrap();
    drop(mount);
    let fresh = Mount::start(&server, "lakefs://repo/main", "");
    let pipe = fs::symlink_metadata(fresh.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o7777, 0o600);
    assert!(fs::symlink_metadata(fresh.join("tty"))
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn mkdir_in_a_repository_creates_a_branch_and_rmdir_is_refused() {
    let server = Server::with_committed("repo", &[("f", "x")]);
    let mount = Mount::start(&server, "lakefs://repo", "");
    fs::create_dir(mount.join("dev")).unwrap();
    assert!(server.has_branch("repo", "dev"));
    assert!(run("ls", &[], mount.path()).lines().any(|l| l == "dev"));
    assert_eq!(read(&mount.join("dev/f")), "x", "made from the default branch");
    fs::write(mount.join("dev/new"), "n").unwrap();
    control(&mount.join("dev"), "commit", "on the new branch").unwrap();
    assert_eq!(server.get("repo", "dev", "new").as_deref(), Some(&b"n"[..]));
    assert_eq!(server.get("repo", "main", "new"), None);

    let errno = |result: std::io::Result<()>| result.unwrap_err().raw_os_error();
    assert_eq!(errno(fs::create_dir(mount.join("dev"))), Some(libc::EEXIST));
    assert_eq!(errno(fs::create_dir(mount.join("bad.name"))), Some(libc::EINVAL));
    assert!(
        mount.log_text().contains("may contain only letters"),
        "the reason is logged"
    );
    assert_eq!(errno(fs::remove_dir(mount.join("dev"))), Some(libc::EPERM));
    assert!(server.has_branch("repo", "dev"));
}

#[test]
fn upload_eager_uploads_sequential_and_rewritten_files_intact() {
    let server = Server::with_committed("repo", &[("seed", "s")]);
    let mount = Mount::start(&server, "lakefs://repo/main", "upload_eager");
    let data: Vec<u8> = (0..40u32 << 20).map(|i| (i % 253) as u8).collect();
    {
        let mut file = fs::File::create(mount.join("sequential.bin")).unwrap();
        for chunk in data.chunks(1 << 20) {
            file.write_all(chunk).unwrap();
        }
        // fsync waits for the upload (a close would start it in the background).
        file.sync_all().unwrap();
    }
    let mut rewritten = data.clone();
    {
        let mut file = fs::File::create(mount.join("rewritten.bin")).unwrap();
        for chunk in data.chunks(1 << 20) {
            file.write_all(chunk).unwrap();
        }
        file.write_all_at(b"changed", 100).unwrap();
        rewritten[100..107].copy_from_slice(b"changed");
        file.sync_all().unwrap();
    }
    let staging = read(&mount.join(".lakefs/staging")).trim().to_string();
    assert!(server.get("repo", &staging, "sequential.bin").unwrap() == data);
    assert!(server.get("repo", &staging, "rewritten.bin").unwrap() == rewritten);
    assert!(
        mount.log_text().contains("eager upload spoiled"),
        "the rewrite fell back to a whole upload"
    );
    control(mount.path(), "commit", "eager").unwrap();
    assert!(server.get("repo", "main", "sequential.bin").unwrap() == data);
}

#[test]
fn closed_files_upload_in_the_background_and_the_daemon_finishes_them_after_unmount() {
    let server = Server::with_committed("repo", &[("old", "o")]);
    let dir = tempfile::tempdir().unwrap();
    let mut mount = Mount::start_at(&server, "lakefs://repo/main", "", dir.path());
    let staging = read(&mount.join(".lakefs/staging")).trim().to_string();
    fs::create_dir(mount.join("many")).unwrap();
    let count = 300;
    for i in 0..count {
        fs::write(mount.join(&format!("many/f{i:03}")), format!("file {i}\n")).unwrap();
    }
    // Read-your-writes whether or not the upload has happened yet.
    assert_eq!(read(&mount.join("many/f123")), "file 123\n");
    let mut child = mount.take_child().expect("mount process");
    unmount(mount.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit:\n{}",
            mount.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}:\n{}", mount.log_text());
    let uploaded = server
        .paths("repo", &staging)
        .into_iter()
        .filter(|p| p.starts_with("many/"))
        .count();
    assert_eq!(
        uploaded, count,
        "every closed file reached the staging branch before the daemon exited"
    );
    drop(mount);
    let mount = Mount::start_at(&server, "lakefs://repo/main", "", dir.path());
    control(mount.path(), "commit", "written before the unmount").unwrap();
    assert_eq!(server.get("repo", "main", "many/f299").unwrap(), b"file 299\n");
    assert_eq!(server.paths("repo", "main").len(), count + 1);
}
