//! Shared harness of the mount tests: the embedded server on a loopback port with REST and S3 clients to act as
//! other clients, and a [`Mount`] guard that runs `lakefs-fuse mount -f` as a child and unmounts (then kills the
//! child) on drop, so a failing test leaves nothing mounted.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lakefs_fuse::server::auth::Credentials;
use lakefs_fuse::server::{ServerConfig, ServerHandle};
use serde_json::json;

pub const ACCESS_KEY_ID: &str = "AKIAIOSFOLQUICKSTART";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// The embedded server on a loopback port, with clients to populate it.
pub struct Server {
    pub runtime: tokio::runtime::Runtime,
    handle: Option<ServerHandle>,
    pub url: String,
    http: reqwest::Client,
    s3: aws_sdk_s3::Client,
    _data: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Self {
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

    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.url))
            .basic_auth(ACCESS_KEY_ID, Some(SECRET_ACCESS_KEY))
    }

    pub fn send(&self, request: reqwest::RequestBuilder) -> String {
        self.runtime.block_on(async {
            let response = request.send().await.expect("request sent");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert!(status.is_success(), "{status}: {body}");
            body
        })
    }

    /// A server with repository `repo` whose `main` holds `files` (path, content) in one commit, "initial".
    pub fn with_committed(repo: &str, files: &[(&str, &str)]) -> Self {
        let server = Self::start();
        server.create_repository(repo);
        for (path, data) in files {
            server.upload(repo, "main", path, *data);
        }
        server.commit(repo, "main", "initial");
        server
    }

    pub fn create_repository(&self, repo: &str) {
        let body = json!({"name": repo, "storage_namespace": format!("local://{repo}"), "default_branch": "main"});
        self.send(self.api(reqwest::Method::POST, "/repositories").json(&body));
    }

    pub fn upload(&self, repo: &str, branch: &str, path: &str, data: impl Into<Vec<u8>>) {
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

    pub fn s3_put(&self, repo: &str, branch: &str, path: &str, data: impl Into<Vec<u8>>) {
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

    pub fn commit(&self, repo: &str, branch: &str, message: &str) -> String {
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

    pub fn tag(&self, repo: &str, tag: &str, reference: &str) {
        self.send(
            self.api(reqwest::Method::POST, &format!("/repositories/{repo}/tags"))
                .json(&json!({"id": tag, "ref": reference})),
        );
    }

    pub fn branch(&self, repo: &str, name: &str, source: &str) {
        self.send(
            self.api(reqwest::Method::POST, &format!("/repositories/{repo}/branches"))
                .json(&json!({"name": name, "source": source})),
        );
    }
}

impl Server {
    /// An object's bytes as another REST client reads them; `None` when it does not exist.
    pub fn get(&self, repo: &str, reference: &str, path: &str) -> Option<Vec<u8>> {
        self.runtime.block_on(async {
            let response = self
                .api(
                    reqwest::Method::GET,
                    &format!("/repositories/{repo}/refs/{reference}/objects"),
                )
                .query(&[("path", path)])
                .send()
                .await
                .expect("request sent");
            match response.status() {
                reqwest::StatusCode::NOT_FOUND => None,
                status if status.is_success() => Some(response.bytes().await.unwrap().to_vec()),
                status => panic!("GET {path}: {status}"),
            }
        })
    }

    /// Every object path on `reference`, as another client lists them.
    pub fn paths(&self, repo: &str, reference: &str) -> Vec<String> {
        let body = self.send(
            self.api(
                reqwest::Method::GET,
                &format!("/repositories/{repo}/refs/{reference}/objects/ls"),
            )
            .query(&[("amount", "1000")]),
        );
        let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
        listing["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["path"].as_str().unwrap().to_string())
            .collect()
    }

    /// Branch names as another client lists them (hidden branches are not listed).
    pub fn branches(&self, repo: &str) -> Vec<String> {
        let body = self.send(self.api(reqwest::Method::GET, &format!("/repositories/{repo}/branches")));
        let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
        listing["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Whether branch `name` exists (hidden or not).
    pub fn has_branch(&self, repo: &str, name: &str) -> bool {
        self.runtime.block_on(async {
            self.api(reqwest::Method::GET, &format!("/repositories/{repo}/branches/{name}"))
                .send()
                .await
                .expect("request sent")
                .status()
                .is_success()
        })
    }

    /// A webhook receiver on 127.0.0.1: `/accept` answers 200, `/reject` 400 with `message` as the body.
    pub fn start_webhook(&self, message: &'static str) -> String {
        self.runtime.block_on(async {
            let app = axum::Router::new()
                .route("/accept", axum::routing::post(|| async { "ok" }))
                .route(
                    "/reject",
                    axum::routing::post(move || async move { (axum::http::StatusCode::BAD_REQUEST, message) }),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            format!("http://{addr}")
        })
    }
}

/// An action file with one webhook for `event` on `branches`.
pub fn action_file(name: &str, event: &str, branches: &str, url: &str) -> String {
    format!(
        "name: {name}\non:\n  {event}:\n    branches: [{branches}]\nhooks:\n  - id: check\n    type: webhook\n    \
         properties:\n      url: {url}\n      timeout: 10s\n"
    )
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = self.runtime.block_on(handle.shutdown());
        }
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(path.as_ref()))
}

/// A running mount; unmounts and kills the child on drop.
pub struct Mount {
    dir: PathBuf,
    _owned: Option<tempfile::TempDir>,
    child: Option<Child>,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

pub fn mount_command(server: &Server, source: &str, dir: &Path, options: &str) -> Command {
    mount_command_url(&server.url, source, dir, options)
}

/// The mount command for a server at `url` (for servers run as separate processes).
pub fn mount_command_url(url: &str, source: &str, dir: &Path, options: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakefs-fuse"));
    command
        .arg("mount")
        .arg(source)
        .arg(dir)
        .arg("-o")
        .arg(format!("endpoint={url},{options}"));
    // Credentials come from the environment, as they should in real use: never on the command line.
    command
        .env("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("HOME", dir.parent().unwrap_or(Path::new("/")))
        .env("LAKEFS_FUSE_LOG", "info,lakefs_fuse=debug");
    command
}

impl Mount {
    pub fn start(server: &Server, source: &str, options: &str) -> Mount {
        let owned = tempfile::tempdir().unwrap();
        let mut mount = Self::start_at(server, source, options, owned.path());
        mount._owned = Some(owned);
        mount
    }

    /// Mount at an existing empty directory (the same path again resumes the same staging branches).
    pub fn start_at(server: &Server, source: &str, options: &str, dir: &Path) -> Mount {
        Self::start_at_url(&server.url, source, options, dir)
    }

    /// Mount from the server at `url` at an existing empty directory.
    pub fn start_at_url(url: &str, source: &str, options: &str, dir: &Path) -> Mount {
        let dir = dir.to_path_buf();
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("mount.log");
        let child = mount_command_url(url, source, &dir, options)
            .arg("-f")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start lakefs-fuse");
        let mut mount = Mount {
            dir,
            _owned: None,
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

    /// Take the mount process over (to signal it); the guard still unmounts on drop.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// `kill -9` the mount process and detach the dead mount, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.dir).status();
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn unmount(path: &Path) {
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
        unmount(&self.dir);
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
pub fn run(program: &str, args: &[&str], cwd: &Path) -> String {
    String::from_utf8(run_bytes(program, args, cwd)).expect("utf-8 output")
}

pub fn run_bytes(program: &str, args: &[&str], cwd: &Path) -> Vec<u8> {
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
