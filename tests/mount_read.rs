//! Real mounts of the embedded server: the `lakefs-fuse` binary mounts in the foreground as a child process and
//! the tests use ordinary tools (`ls`, `stat`, `cat`, `find`, `head`, `md5sum`) on it.
//!
//! Needs /dev/fuse and fusermount3; run with `cargo test --features fuse_tests --test mount_read`. Every mount is
//! held by a guard that unmounts (`fusermount3 -u`, then `-uz`) and kills the child on drop, so a failing test
//! leaves nothing mounted.

#![cfg(feature = "fuse_tests")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lakefs_fuse::server::auth::Credentials;
use lakefs_fuse::server::{ServerConfig, ServerHandle};
use md5::{Digest, Md5};
use serde_json::json;

const ACCESS_KEY_ID: &str = "AKIAIOSFOLQUICKSTART";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// The embedded server on a loopback port, with clients to populate it.
struct Server {
    runtime: tokio::runtime::Runtime,
    handle: Option<ServerHandle>,
    url: String,
    http: reqwest::Client,
    s3: aws_sdk_s3::Client,
    _data: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let data = tempfile::tempdir().unwrap();
        let config = ServerConfig::new(
            data.path().to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
            Credentials::quickstart(),
        );
        let handle = runtime
            .block_on(lakefs_fuse::server::start(config))
            .expect("server starts");
        let url = handle.base_url().trim_end_matches('/').to_string();
        let credentials = aws_credential_types::Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "test");
        let s3_config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(credentials)
            .force_path_style(true)
            .build();
        Self {
            runtime,
            handle: Some(handle),
            url,
            http: reqwest::Client::new(),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            _data: data,
        }
    }

    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.url))
            .basic_auth(ACCESS_KEY_ID, Some(SECRET_ACCESS_KEY))
    }

    fn send(&self, request: reqwest::RequestBuilder) -> String {
        self.runtime.block_on(async {
            let response = request.send().await.expect("request sent");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert!(status.is_success(), "{status}: {body}");
            body
        })
    }

    fn create_repository(&self, repo: &str) {
        let body = json!({"name": repo, "storage_namespace": format!("local://{repo}"), "default_branch": "main"});
        self.send(self.api(reqwest::Method::POST, "/repositories").json(&body));
    }

    fn upload(&self, repo: &str, branch: &str, path: &str, data: impl Into<Vec<u8>>) {
        let request = self
            .api(
                reqwest::Method::POST,
                &format!("/repositories/{repo}/branches/{branch}/objects"),
            )
            .query(&[("path", path)])
            .header("Content-Type", "application/octet-stream")
            .body(data.into());
        self.send(request);
    }

    fn s3_put(&self, repo: &str, branch: &str, path: &str, data: impl Into<Vec<u8>>) {
        let body = aws_sdk_s3::primitives::ByteStream::from(data.into());
        self.runtime
            .block_on(
                self.s3
                    .put_object()
                    .bucket(repo)
                    .key(format!("{branch}/{path}"))
                    .body(body)
                    .send(),
            )
            .expect("S3 put");
    }

    fn commit(&self, repo: &str, branch: &str, message: &str) -> String {
        let body = self.send(
            self.api(
                reqwest::Method::POST,
                &format!("/repositories/{repo}/branches/{branch}/commits"),
            )
            .json(&json!({"message": message})),
        );
        let commit: serde_json::Value = serde_json::from_str(&body).unwrap();
        commit["id"].as_str().expect("commit id").to_string()
    }

    fn tag(&self, repo: &str, tag: &str, reference: &str) {
        self.send(
            self.api(reqwest::Method::POST, &format!("/repositories/{repo}/tags"))
                .json(&json!({"id": tag, "ref": reference})),
        );
    }

    fn branch(&self, repo: &str, name: &str, source: &str) {
        self.send(
            self.api(reqwest::Method::POST, &format!("/repositories/{repo}/branches"))
                .json(&json!({"name": name, "source": source})),
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = self.runtime.block_on(handle.shutdown());
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(path.as_ref()))
}

/// A running mount; unmounts and kills the child on drop.
struct Mount {
    dir: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

fn mount_command(server: &Server, source: &str, dir: &Path, options: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakefs-fuse"));
    command
        .arg("mount")
        .arg(source)
        .arg(dir)
        .arg("-o")
        .arg(format!("endpoint={},{options}", server.url));
    // Credentials come from the environment, as they should in real use: never on the command line.
    command
        .env("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("HOME", dir.parent().unwrap_or(Path::new("/")))
        .env("LAKEFS_FUSE_LOG", "info,lakefs_fuse=debug");
    command
}

impl Mount {
    fn start(server: &Server, source: &str, options: &str) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("mount.log");
        let child = mount_command(server, source, dir.path(), options)
            .arg("-f")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start lakefs-fuse");
        let mut mount = Mount {
            dir,
            child: Some(child),
            log,
            _log_dir: log_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(mount.path()) {
            if let Some(status) = mount.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "lakefs-fuse exited with {status} before mounting:\n{}",
                    mount.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not come up:\n{}",
                mount.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        mount
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn join(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unmount(path: &Path) {
    if !is_mounted(path) {
        return;
    }
    let ok = Command::new("fusermount3")
        .arg("-u")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok && is_mounted(path) {
        let _ = Command::new("fusermount3").arg("-uz").arg(path).status();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        unmount(self.dir.path());
        if let Some(mut child) = self.child.take() {
            // The child exits by itself after the unmount; kill it if it does not.
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- lakefs-fuse log ---\n{}", self.log_text());
        }
    }
}

/// Run a tool and return its stdout, asserting success.
fn run(program: &str, args: &[&str], cwd: &Path) -> String {
    String::from_utf8(run_bytes(program, args, cwd)).expect("utf-8 output")
}

fn run_bytes(program: &str, args: &[&str], cwd: &Path) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run tool");
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

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

    // Without -f the command returns once the mount is live; the daemon logs to LAKEFS_FUSE_LOG_FILE.
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("daemon.log");
    let status = mount_command(&server, "lakefs://checks/main", dir.path(), "")
        .env("LAKEFS_FUSE_LOG_FILE", &log)
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
    let mut child = mount.child.take().expect("child");
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
