//! Real mounts of the embedded server: the `lakefs-fuse` binary mounts in the foreground as a child process and
//! the tests use ordinary tools (`ls`, `stat`, `cat`, `find`, `head`, `md5sum`) on it.
//!
//! Needs /dev/fuse and fusermount3; run with `cargo test --features fuse_tests --test mount_read`. The harness
//! (server, clients, the [`Mount`] guard that unmounts on drop) is shared with the write tests in `common/`.

#![cfg(feature = "fuse_tests")]

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use md5::{Digest, Md5};

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn big_data() -> Vec<u8> {
    (0..5 * 1024 * 1024 + 123u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[test]
fn whole_server_mount_lists_and_reads() {
    let server = Server::start();
    server.create_repository("sales");
    server.upload("sales", "main", "README.md", "hello lake\n");
    server.upload("sales", "main", "data/2024/jan.csv", "id,amount\n1,10\n");
    server.upload("sales", "main", "data/2024/feb.csv", "id,amount\n2,20\n");
    let big = big_data();
    server.upload("sales", "main", "blobs/big.bin", big.clone());
    server.commit("sales", "main", "initial data");
    server.branch("sales", "dev", "main");

    let mount = Mount::start(&server, "lakefs://", "metadata_ttl=1s");
    let root = mount.path();
    assert_eq!(lines(&run("ls", &[], root)), ["sales"]);
    assert_eq!(lines(&run("ls", &["sales"], root)), ["dev", "main"]);
    assert_eq!(lines(&run("ls", &["sales/main"], root)), ["README.md", "blobs", "data"]);
    assert_eq!(run("cat", &["sales/main/README.md"], root), "hello lake\n");
    assert_eq!(
        run("stat", &["-c", "%s %F", "sales/main/data/2024/jan.csv"], root),
        "15 regular file\n"
    );
    assert_eq!(run("stat", &["-c", "%F", "sales/main/data"], root), "directory\n");

    let found = run("find", &["sales/main", "-type", "f"], root);
    let mut found: Vec<_> = lines(&found);
    found.sort();
    assert_eq!(
        found,
        [
            "sales/main/README.md",
            "sales/main/blobs/big.bin",
            "sales/main/data/2024/feb.csv",
            "sales/main/data/2024/jan.csv"
        ]
    );
    let long = run("ls", &["-l", "sales/main/data/2024"], root);
    assert!(long.contains("jan.csv") && long.contains(" 15 "), "{long}");

    assert_eq!(
        run("head", &["-c", "9", "sales/main/data/2024/feb.csv"], root),
        "id,amount"
    );
    // A random read in the middle returns the right bytes.
    let middle = run_bytes(
        "dd",
        &[
            "if=sales/main/blobs/big.bin",
            "bs=1",
            "skip=3000000",
            "count=16",
            "status=none",
        ],
        root,
    );
    assert_eq!(&middle[..], &big[3_000_000..3_000_016]);
    let md5 = run("md5sum", &["sales/main/blobs/big.bin"], root);
    assert!(md5.starts_with(&hex::encode(Md5::digest(&big))), "{md5}");
    let mut file = std::fs::File::open(mount.join("sales/dev/blobs/big.bin")).unwrap();
    let mut read_back = Vec::new();
    file.read_to_end(&mut read_back).unwrap();
    assert!(read_back == big, "the branch dev reads the same bytes");

    let missing = std::fs::metadata(mount.join("sales/main/nope")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    let head = std::fs::read_to_string(mount.join("sales/main/.lakefs/head")).unwrap();
    assert_eq!(head.trim().len(), 64, "{head}");
}

#[test]
fn tags_commits_and_expressions_are_pinned_and_read_only() {
    let server = Server::start();
    server.create_repository("pinned");
    server.upload("pinned", "main", "state.txt", "v1\n");
    let first = server.commit("pinned", "main", "first");
    server.tag("pinned", "v1", "main");
    server.upload("pinned", "main", "state.txt", "version two\n");
    server.commit("pinned", "main", "second");

    let mount = Mount::start(&server, "lakefs://pinned", "metadata_ttl=1s");
    let root = mount.path();
    assert_eq!(run("cat", &["main/state.txt"], root), "version two\n");
    assert_eq!(run("cat", &["v1/state.txt"], root), "v1\n");
    assert_eq!(run("cat", &[&format!("{first}/state.txt")], root), "v1\n");
    assert_eq!(run("cat", &["main~1/state.txt"], root), "v1\n");
    assert_eq!(
        lines(&run("ls", &[], root)),
        ["main"],
        "tags and commits are not listed"
    );

    // tags@NAME names a tag explicitly (lakeFS refuses a branch and a tag of the same name, but a mount must not
    // depend on that).
    assert_eq!(run("cat", &["tags@v1/state.txt"], root), "v1\n");

    let err = std::fs::write(mount.join("v1/state.txt"), "nope").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::write(mount.join("v1/new.txt"), "nope").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    drop(mount);

    // A mount of the tag alone is a read-only mount.
    let tag_mount = Mount::start(&server, "lakefs://pinned/v1", "");
    assert_eq!(run("cat", &["state.txt"], tag_mount.path()), "v1\n");
    let err = std::fs::write(tag_mount.join("state.txt"), "nope").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
}

#[test]
fn changes_by_another_client_appear_after_metadata_ttl() {
    let server = Server::start();
    server.create_repository("ingest");
    server.upload("ingest", "main", "sync/part-0.json", "{\"n\":0}\n");
    let mount = Mount::start(&server, "lakefs://ingest/main", "metadata_ttl=1s");
    let root = mount.path();
    assert_eq!(lines(&run("ls", &["sync"], root)), ["part-0.json"]);
    assert_eq!(run("cat", &["sync/part-0.json"], root), "{\"n\":0}\n");

    // Another writer (an S3 client such as an ingestion tool) changes the branch, uncommitted.
    server.s3_put("ingest", "main", "sync/part-1.json", "{\"n\":1}\n");
    server.s3_put("ingest", "main", "sync/part-0.json", "{\"n\":\"zero\"}\n");
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(lines(&run("ls", &["sync"], root)), ["part-0.json", "part-1.json"]);
    assert_eq!(run("cat", &["sync/part-1.json"], root), "{\"n\":1}\n");
    assert_eq!(run("cat", &["sync/part-0.json"], root), "{\"n\":\"zero\"}\n");
}

#[test]
fn bad_settings_fail_before_mounting_and_daemon_mode_reports_ready() {
    let server = Server::start();
    server.create_repository("checks");
    let dir = tempfile::tempdir().unwrap();

    let output = mount_command(&server, "lakefs://checks/main", dir.path(), "")
        .env("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "wrong")
        .arg("-f")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("credentials"), "{stderr}");

    let output = mount_command(&server, "lakefs://checks/nope", dir.path(), "")
        .arg("-f")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = mount_command(&server, "lakefs://checks/main", &dir.path().join("missing"), "")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    assert!(!is_mounted(dir.path()));

    // Without -f the command returns once the mount is live; the daemon logs to `-o log_file=`.
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("daemon.log");
    let status = mount_command(
        &server,
        "lakefs://checks/main",
        dir.path(),
        &format!("log_file={}", log.display()),
    )
    .status()
    .unwrap();
    assert!(status.success());
    let mounted = is_mounted(dir.path());
    let listing = std::fs::read_dir(dir.path()).map(|entries| entries.count());
    unmount(dir.path());
    assert!(mounted, "the daemon reported ready before the mount was live");
    assert_eq!(listing.unwrap(), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("unmounted") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("unmounted"), "daemon log: {text}");
}

#[test]
fn sigterm_unmounts_cleanly() {
    let server = Server::start();
    server.create_repository("signals");
    server.upload("signals", "main", "f", "x");
    let mut mount = Mount::start(&server, "lakefs://signals/main", "");
    assert_eq!(run("cat", &["f"], mount.path()), "x");
    let mut child = mount.take_child().expect("child");
    // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "lakefs-fuse did not exit on SIGTERM:\n{}",
            mount.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}:\n{}", mount.log_text());
    assert!(!is_mounted(mount.path()), "still mounted after SIGTERM");
}

/// The kernel's readahead for the mount, in KiB, once it has been set (the mount sets it just after going live).
fn read_ahead_kb(mount: &Mount, expected: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(mount.path()).unwrap().dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(device),
        libc::minor(device)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let kb: u32 = std::fs::read_to_string(&path).unwrap().trim().parse().unwrap();
        if kb == expected || Instant::now() > deadline {
            return kb;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_kernel_readahead_is_raised_unless_turned_off() {
    let server = Server::start();
    server.create_repository("sales");
    let kept = Mount::start(&server, "lakefs://sales/main", "read_ahead_kb=0");
    assert_eq!(read_ahead_kb(&kept, 128), 128, "the kernel's default for FUSE");
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: sysfs is read-only, the mount keeps the kernel's readahead");
        return;
    }
    let raised = Mount::start(&server, "lakefs://sales/main", "");
    assert_eq!(read_ahead_kb(&raised, 1024), 1024);
    let chosen = Mount::start(&server, "lakefs://sales/main", "read_ahead_kb=256");
    assert_eq!(read_ahead_kb(&chosen, 256), 256);
}
