//! Security of a real mount: who may enter it, and where its secret may (not) be found.
//!
//! - Without `allow_other` only the mounting user reaches the files; with it, `default_permissions` makes the
//!   kernel apply the mode bits (checked as `nobody` through `setpriv`).
//! - The secret access key never shows in `/proc/PID/cmdline` (a secret given as `-o secret_access_key=` is
//!   scrubbed), in a debug log, or in a file others can read (staging files, journal, disk cache).
//! - A lakectl config file holding a secret is refused when group or others can read it.
//!
//! Needs /dev/fuse, fusermount3 and root (to switch to `nobody`); run with
//! `cargo test --features fuse_tests --test mount_security`.

#![cfg(feature = "fuse_tests")]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{mount_command, Mount, Server, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

/// Runs `cat path` as `nobody`; true when it read the file.
fn nobody_can_read(path: &Path) -> (bool, String) {
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .output()
        .expect("setpriv");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A mountpoint `nobody` can reach (the parent is traversable), kept alive by the returned guard.
fn reachable_mountpoint() -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    fs::set_permissions(parent.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dir = parent.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    (parent, dir)
}

fn mount_options_of(path: &Path) -> String {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(path.as_ref()))
        .and_then(|line| line.split_whitespace().nth(3))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn other_users_are_kept_out_unless_allowed_and_then_modes_apply() {
    if !is_root() {
        eprintln!("skipped: needs root to act as nobody");
        return;
    }
    let server = Server::start();
    server.create_repository("repo");
    server.upload("repo", "main", "data.txt", "private data");
    server.commit("repo", "main", "data");

    // Default: no allow_other, so nobody cannot even stat the mount, whatever the mode bits say.
    let (_parent, dir) = reachable_mountpoint();
    let mount = Mount::start_at(&server, "lakefs://repo/main", "file_mode=0644", &dir);
    let options = mount_options_of(mount.path());
    assert!(options.contains("default_permissions"), "{options}");
    assert!(!options.contains("allow_other"), "{options}");
    assert_eq!(fs::read_to_string(mount.join("data.txt")).unwrap(), "private data");
    let (read, stderr) = nobody_can_read(&mount.join("data.txt"));
    assert!(!read && stderr.contains("Permission denied"), "{stderr}");
    drop(mount);

    // allow_other with 0600 files owned by root: the kernel refuses nobody (default_permissions).
    let (_parent, dir) = reachable_mountpoint();
    let mount = Mount::start_at(&server, "lakefs://repo/main", "allow_other,file_mode=0600,uid=0", &dir);
    assert!(mount_options_of(mount.path()).contains("allow_other"));
    assert_eq!(fs::read_to_string(mount.join("data.txt")).unwrap(), "private data");
    let (read, stderr) = nobody_can_read(&mount.join("data.txt"));
    assert!(!read && stderr.contains("Permission denied"), "{stderr}");
    drop(mount);

    // The positive control: allow_other with 0644 lets nobody read, so the refusals above were the modes.
    let (_parent, dir) = reachable_mountpoint();
    let mount = Mount::start_at(&server, "lakefs://repo/main", "allow_other,file_mode=0644", &dir);
    let (read, stderr) = nobody_can_read(&mount.join("data.txt"));
    assert!(read, "{stderr}");
}

/// Every file under `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            out.push(entry.path());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    out
}

#[test]
fn the_secret_stays_out_of_ps_logs_and_shared_files() {
    let server = Server::start();
    server.create_repository("repo");
    server.upload("repo", "main", "big.bin", vec![7u8; 3 << 20]);
    server.commit("repo", "main", "data");
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let dir = work.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    // The secret on the command line, as a careless fstab entry would pass it, with debug logging.
    let options = format!(
        "access_key_id={ACCESS_KEY_ID},secret_access_key={SECRET_ACCESS_KEY},debug,cache_dir={}",
        cache.display()
    );
    let mut mount = Mount::start_at(&server, "lakefs://repo/main", &options, &dir);
    let mut child = mount.take_child().unwrap();
    let cmdline = fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("secret_access_key=*"), "{cmdline}");
    assert!(!cmdline.contains(SECRET_ACCESS_KEY), "ps shows the secret: {cmdline}");
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(SECRET_ACCESS_KEY), "/proc/mounts shows the secret");
    let ps = Command::new("ps")
        .args(["-o", "args=", "-p"])
        .arg(child.id().to_string())
        .output();
    if let Ok(ps) = ps {
        assert!(!String::from_utf8_lossy(&ps.stdout).contains(SECRET_ACCESS_KEY));
    }

    // Exercise reads (disk cache), writes (staging, journal) and a commit, all logged at debug level.
    assert_eq!(fs::read(mount.join("big.bin")).unwrap().len(), 3 << 20);
    let file = mount.join("new.txt");
    let mut writer = fs::File::create(&file).unwrap();
    std::io::Write::write_all(&mut writer, b"uncommitted").unwrap();
    // While the file is open its data and journal entry sit in the staging directory.
    let mut seen_staged = false;
    for path in walk(&cache) {
        let metadata = fs::metadata(&path).unwrap();
        let mode = metadata.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
        seen_staged |= path.extension().is_some_and(|e| e == "data");
        if metadata.is_file() {
            let bytes = fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(SECRET_ACCESS_KEY),
                "{} holds the secret",
                path.display()
            );
        }
    }
    assert!(seen_staged, "no staged file found under {}", cache.display());
    drop(writer);
    fs::write(mount.join(".lakefs/commit"), "security test").unwrap();
    assert_eq!(server.get("repo", "main", "new.txt").unwrap(), b"uncommitted");

    std::thread::sleep(Duration::from_millis(200));
    let log = mount.log_text();
    assert!(log.contains("DEBUG"), "not a debug log:\n{log}");
    assert!(!log.contains(SECRET_ACCESS_KEY), "the log shows the secret");
    drop(mount);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_readable_config_file_with_a_secret_is_refused() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("lakectl.yaml");
    fs::write(
        &config,
        format!(
            "credentials:\n  access_key_id: {ACCESS_KEY_ID}\n  secret_access_key: {SECRET_ACCESS_KEY}\nserver:\n  \
             endpoint_url: {}\n",
            server.url
        ),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let dir = work.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    let output = mount_command(&server, "lakefs://", &dir, &format!("config={}", config.display()))
        .env_remove("LAKECTL_CREDENTIALS_ACCESS_KEY_ID")
        .env_remove("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")
        .arg("-f")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("too open") && stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains(SECRET_ACCESS_KEY), "{stderr}");
    assert!(!common::is_mounted(&dir));

    // Private, the same file works.
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
    let mount = Mount::start_at(&server, "lakefs://", &format!("config={}", config.display()), &dir);
    assert!(fs::read_dir(mount.path()).is_ok());
}
