//! Fault tests: real mounts of `lakefs-fuse serve` (run as a separate process, so it can be killed with -9 and
//! restarted on the same port and data directory) while things go wrong:
//!
//! - the server is killed and restarted during a copy into the mount,
//! - the mount is killed during writes and restarted,
//! - the staging disk fills up (root only: a small tmpfs as `cache_dir`),
//! - the server's fault mode answers with 5xx, throttling, resets, truncated bodies and delays.
//!
//! The guarantee checked everywhere: every file whose `close` returned 0 is on the branch, byte for byte (MD5),
//! after the next `.lakefs/commit`; nothing is lost. A [`Generations`] pair runs through every test: a committer
//! writes the same generation number into a set of files and commits, and a reader on a second mount reads each
//! commit the branch points at - every commit must hold the whole set with one generation (no partial commit).
//!
//! Short forms run by default; `LAKEFS_FUSE_LONG_TESTS=1` makes them long (2 GiB copy, more rounds).
//! Needs /dev/fuse and fusermount3; run with `cargo test --features fuse_tests --test faults`.

#![cfg(feature = "fuse_tests")]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use common::{is_mounted, Mount, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

const MIB: usize = 1 << 20;

fn long_tests() -> bool {
    std::env::var("LAKEFS_FUSE_LONG_TESTS").is_ok_and(|v| v == "1")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `lakefs-fuse serve` as a child process on a fixed port and data directory, killable and restartable.
struct ServeProcess {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    faults: Option<String>,
    log: PathBuf,
}

impl ServeProcess {
    fn start(data_dir: &Path, log: &Path, faults: Option<&str>) -> Self {
        let mut server = ServeProcess {
            child: None,
            port: free_port(),
            data_dir: data_dir.to_path_buf(),
            faults: faults.map(str::to_string),
            log: log.to_path_buf(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_lakefs-fuse"));
        command
            .args(["serve", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env_remove("LAKEFS_FUSE_SERVE_FAULTS")
            .env("LAKEFS_FUSE_LOG", "info,lakefs_fuse::server::faults=debug")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(spec) = &self.faults {
            command.args(["--faults", spec]);
        }
        self.child = Some(command.spawn().expect("start lakefs-fuse serve"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.healthy() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "server exited with {status}:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /_health` over a plain socket (the fault mode never touches it).
    fn healthy(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /_health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.contains("alive!")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port and data directory, with `faults` (or none).
    fn restart(&mut self, faults: Option<&str>) {
        self.kill();
        self.faults = faults.map(str::to_string);
        self.spawn();
    }

    /// Faults the server's fault mode injected so far (one debug line each in its log).
    fn injected_faults(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("injecting fault")
            .count()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Blocking REST calls that ride out a faulty or restarting server (transport errors, 5xx and 429 are retried).
struct Api {
    url: String,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Api {
    fn new(url: &str) -> Self {
        Api {
            url: url.to_string(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> (u16, Vec<u8>) {
        let mut last = String::new();
        for _ in 0..100 {
            let mut request = self
                .http
                .request(method.clone(), format!("{}/api/v1{path}", self.url))
                .basic_auth(ACCESS_KEY_ID, Some(SECRET_ACCESS_KEY))
                .query(query);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let outcome = self.runtime.block_on(async {
                let response = request.send().await?;
                let status = response.status().as_u16();
                Ok::<_, reqwest::Error>((status, response.bytes().await?.to_vec()))
            });
            match outcome {
                Ok((status, body)) if status < 500 && status != 429 => return (status, body),
                Ok((status, body)) => last = format!("{status}: {}", String::from_utf8_lossy(&body)),
                Err(err) => last = err.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{method} {path} kept failing: {last}");
    }

    fn create_repository(&self, repo: &str) {
        let body =
            serde_json::json!({"name": repo, "storage_namespace": format!("local://{repo}"), "default_branch": "main"});
        let (status, answer) = self.call(reqwest::Method::POST, "/repositories", &[], Some(body));
        assert!(
            status == 201 || status == 409,
            "{status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// Upload `data` to `path` on `branch` and commit it, as another client.
    fn put_and_commit(&self, repo: &str, branch: &str, path: &str, data: &[u8]) {
        let runtime = &self.runtime;
        let url = format!("{}/api/v1/repositories/{repo}/branches/{branch}/objects", self.url);
        let status = runtime.block_on(async {
            self.http
                .post(url)
                .basic_auth(ACCESS_KEY_ID, Some(SECRET_ACCESS_KEY))
                .query(&[("path", path)])
                .body(data.to_vec())
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert_eq!(status.ok(), Some(201), "upload {path}");
        let body = serde_json::json!({"message": format!("add {path}")});
        let (status, _) = self.call(
            reqwest::Method::POST,
            &format!("/repositories/{repo}/branches/{branch}/commits"),
            &[],
            Some(body),
        );
        assert_eq!(status, 201, "commit {path}");
    }

    /// The commit `branch` points at now.
    fn branch_head(&self, repo: &str, branch: &str) -> String {
        let (status, body) = self.call(
            reqwest::Method::GET,
            &format!("/repositories/{repo}/branches/{branch}"),
            &[],
            None,
        );
        assert_eq!(status, 200, "branch {branch}");
        let info: serde_json::Value = serde_json::from_slice(&body).expect("branch JSON");
        info["commit_id"].as_str().expect("commit_id").to_string()
    }

    /// An object's bytes on `reference`; `None` when it does not exist.
    fn get(&self, repo: &str, reference: &str, path: &str) -> Option<Vec<u8>> {
        let (status, body) = self.call(
            reqwest::Method::GET,
            &format!("/repositories/{repo}/refs/{reference}/objects"),
            &[("path", path)],
            None,
        );
        match status {
            404 => None,
            200 => Some(body),
            other => panic!("GET {path}: {other}"),
        }
    }
}

/// Deterministic bytes for a file name (xorshift seeded from the name), so any reader can check them.
fn content(name: &str, size: usize) -> Vec<u8> {
    let mut state = name.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    out
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn errno(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or(-1)
}

/// Create, write and close `path`, returning the errno of the first failing step - `close` included, which is
/// where the upload's outcome is reported (std's `File` drops close errors, so the descriptor is closed here).
fn write_file(path: &Path, data: &[u8]) -> Result<(), i32> {
    write_file_steps(path, data).map_err(|(errno, _)| errno)
}

/// [`write_file`], telling whether the failure was `close`'s (the bytes are written, their upload failed).
fn write_file_steps(path: &Path, data: &[u8]) -> Result<(), (i32, bool)> {
    let mut file = fs::File::create(path).map_err(|e| (errno(&e), false))?;
    file.write_all(data).map_err(|e| (errno(&e), false))?;
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by `File` and is closed exactly once.
    if unsafe { libc::close(fd) } != 0 {
        return Err((errno(&std::io::Error::last_os_error()), true));
    }
    Ok(())
}

/// Write `text` to a control file in one write(2).
fn control(root: &Path, file: &str, text: &str) -> Result<(), i32> {
    let mut handle = fs::OpenOptions::new()
        .write(true)
        .open(root.join(".lakefs").join(file))
        .map_err(|e| errno(&e))?;
    handle.write_all(text.as_bytes()).map_err(|e| errno(&e))
}

/// Commit until it succeeds (or there is nothing left to commit), riding out a faulty server.
fn commit_everything(root: &Path, message: &str) {
    let mut errors = Vec::new();
    for _ in 0..60 {
        match control(root, "commit", message) {
            Ok(()) | Err(libc::ENODATA) => return,
            Err(e) => errors.push(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("commit kept failing: {errors:?}");
}

/// One file the writer tried to write, and what its `close` said.
#[derive(Debug, Clone)]
struct Written {
    name: String,
    size: usize,
    md5: String,
    result: Result<(), i32>,
    /// Whether the mount holds the bytes: `close` returned 0, or only the upload in `close` failed.
    queued: bool,
}

/// Files `data/<prefix>-<i>-<size>` of `sizes`, written one after the other under `root`.
fn write_files(root: &Path, prefix: &str, sizes: &[usize], pause: &AtomicBool) -> Vec<Written> {
    let mut written = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        while pause.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let name = format!("{prefix}-{i:04}-{size}");
        let data = content(&name, size);
        let result = fs::create_dir_all(root.join("data"))
            .map_err(|e| (errno(&e), false))
            .and_then(|()| write_file_steps(&root.join("data").join(&name), &data));
        written.push(Written {
            name,
            size,
            md5: md5_hex(&data),
            queued: matches!(result, Ok(()) | Err((_, true))),
            result: result.map_err(|(errno, _)| errno),
        });
    }
    written
}

/// What the final check found.
#[derive(Debug, Default)]
struct Verified {
    files: usize,
    bytes: u64,
}

/// Every file in `written` whose close returned 0 (with `queued`: also those whose close failed after the bytes
/// were written) is on `main`, byte for byte. `root` is the writing mount, whose status and staging branch are
/// reported for anything missing.
fn verify_committed(api: &Api, root: &Path, written: &[Written], queued: bool) -> Verified {
    let mut verified = Verified::default();
    let mut problems = Vec::new();
    for file in written.iter().filter(|w| w.result.is_ok() || (queued && w.queued)) {
        let path = format!("data/{}", file.name);
        match api.get("repo", "main", &path) {
            Some(got) if got.len() == file.size && md5_hex(&got) == file.md5 => {
                verified.files += 1;
                verified.bytes += got.len() as u64;
            }
            Some(got) => problems.push(format!(
                "{} (close {:?}): {} bytes, wrong content",
                file.name,
                file.result,
                got.len()
            )),
            None => problems.push(format!("{} (close {:?}): missing", file.name, file.result)),
        }
    }
    if !problems.is_empty() {
        let staging = fs::read_to_string(root.join(".lakefs/staging")).unwrap_or_default();
        let on_staging: Vec<bool> = written
            .iter()
            .filter(|w| problems.iter().any(|p| p.starts_with(&w.name)))
            .map(|w| api.get("repo", staging.trim(), &format!("data/{}", w.name)).is_some())
            .collect();
        let status = fs::read_to_string(root.join(".lakefs/status")).unwrap_or_default();
        panic!("lost on main: {problems:#?}\non the staging branch {staging}: {on_staging:?}\nstatus:\n{status}");
    }
    verified
}

const GENERATION_FILES: usize = 4;

/// The all-or-nothing check that runs through every test (see the module docs).
struct Generations {
    stop: Arc<AtomicBool>,
    /// Holds the committer while the writing mount is down (so it cannot write into the bare mountpoint).
    pause: Arc<AtomicBool>,
    /// Held by the committer for a whole round (write the set, commit): other commits take it too, so they never
    /// publish half a round.
    round: Arc<Mutex<()>>,
    committer: Option<JoinHandle<(u64, u64)>>,
    reader: Option<JoinHandle<(u64, u64)>>,
    violations: Arc<Mutex<Vec<String>>>,
    /// Commits the reader has checked so far.
    checked: Arc<AtomicU64>,
}

/// Counts of the generation loops; printed in each test's summary line.
#[derive(Debug)]
#[allow(dead_code)]
struct GenerationReport {
    commits: u64,
    commit_errors: u64,
    checks: u64,
    read_errors: u64,
}

impl Generations {
    /// `writer` is a mount of `lakefs://repo/main`; `reader` a mount of `lakefs://repo`.
    fn start(writer: &Path, reader: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let round = Arc::new(Mutex::new(()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let checked = Arc::new(AtomicU64::new(0));
        let committer = std::thread::spawn({
            let (stop, pause, root, round) = (stop.clone(), pause.clone(), writer.to_path_buf(), round.clone());
            move || {
                let (mut commits, mut errors) = (0, 0);
                let mut generation = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    if pause.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    generation += 1;
                    let round_guard = round.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = fs::create_dir_all(root.join("gen"));
                    let mut complete = true;
                    for k in 0..GENERATION_FILES {
                        let text = format!("generation {generation} file {k}\n");
                        let path = root.join("gen").join(format!("file-{k}"));
                        // A close failing with EIO keeps the bytes queued, so they are committed; a failed open
                        // or write leaves the file old or short, and committing the round would publish that.
                        complete &= matches!(
                            write_file_steps(&path, text.as_bytes()),
                            Ok(()) | Err((libc::EIO, true))
                        );
                    }
                    if !complete {
                        errors += 1;
                        continue;
                    }
                    match control(&root, "commit", &format!("generation {generation}\n")) {
                        Ok(()) => commits += 1,
                        Err(_) => errors += 1,
                    }
                    drop(round_guard);
                    std::thread::sleep(Duration::from_millis(300));
                }
                (commits, errors)
            }
        });
        let reader = std::thread::spawn({
            let (stop, root, violations, checked) =
                (stop.clone(), reader.to_path_buf(), violations.clone(), checked.clone());
            move || {
                let (mut checks, mut errors) = (0, 0);
                let mut newest = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    match check_generation(&root) {
                        Ok(Some(generation)) => {
                            checks += 1;
                            checked.fetch_add(1, Ordering::SeqCst);
                            if generation < newest {
                                violations
                                    .lock()
                                    .unwrap()
                                    .push(format!("main went back from generation {newest} to {generation}"));
                            }
                            newest = newest.max(generation);
                        }
                        Ok(None) => {}
                        Err(Violation::Partial(what)) => violations.lock().unwrap().push(what),
                        Err(Violation::Unavailable) => errors += 1,
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                (checks, errors)
            }
        });
        Generations {
            stop,
            pause,
            round,
            committer: Some(committer),
            reader: Some(reader),
            violations,
            checked,
        }
    }

    /// Stop both loops and assert the reader never saw a partial commit.
    fn finish(mut self) -> GenerationReport {
        // A workload can end before any round was committed and read (closes return before their uploads):
        // let the loops run until the reader has checked a commit, or a minute passed.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.checked.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::SeqCst);
        let (commits, commit_errors) = self.committer.take().unwrap().join().expect("committer");
        let (checks, read_errors) = self.reader.take().unwrap().join().expect("reader");
        let violations = self.violations.lock().unwrap().clone();
        assert!(violations.is_empty(), "partial commits seen: {violations:#?}");
        GenerationReport {
            commits,
            commit_errors,
            checks,
            read_errors,
        }
    }
}

impl Drop for Generations {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

enum Violation {
    /// The mount could not answer (server down, mount restarting): not a violation.
    Unavailable,
    Partial(String),
}

/// Read the commit `main` points at through its commit id: `None` before the first generation commit, else its
/// generation - provided every file holds the same one.
fn check_generation(root: &Path) -> Result<Option<u64>, Violation> {
    let head = fs::read_to_string(root.join("main/.lakefs/head")).map_err(|_| Violation::Unavailable)?;
    let head = head.trim();
    if head.is_empty() {
        return Err(Violation::Unavailable);
    }
    let dir = root.join(head).join("gen");
    let names: BTreeSet<String> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|_| Violation::Unavailable)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(Violation::Unavailable),
    };
    let expected: BTreeSet<String> = (0..GENERATION_FILES).map(|k| format!("file-{k}")).collect();
    if names != expected {
        return Err(Violation::Partial(format!("commit {head} has gen files {names:?}")));
    }
    let mut generations = BTreeSet::new();
    for k in 0..GENERATION_FILES {
        let text = fs::read_to_string(dir.join(format!("file-{k}"))).map_err(|_| Violation::Unavailable)?;
        let generation = text
            .strip_prefix("generation ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|g| g.parse::<u64>().ok())
            .ok_or_else(|| Violation::Partial(format!("commit {head}: file-{k} holds {text:?}")))?;
        if text != format!("generation {generation} file {k}\n") {
            return Err(Violation::Partial(format!("commit {head}: file-{k} holds {text:?}")));
        }
        generations.insert(generation);
    }
    if generations.len() != 1 {
        return Err(Violation::Partial(format!(
            "commit {head} mixes generations {generations:?}"
        )));
    }
    Ok(generations.into_iter().next())
}

/// A server, its repository, a writing mount of `main` and a reading mount of the repository.
struct Fixture {
    // Field order is drop order: mounts go before the server.
    generations: Option<Generations>,
    reader: Mount,
    writer: Option<Mount>,
    api: Api,
    server: ServeProcess,
    writer_dir: PathBuf,
    writer_options: String,
    _dirs: tempfile::TempDir,
}

impl Fixture {
    fn start(server_faults: Option<&str>, writer_options: &str) -> Self {
        let dirs = tempfile::tempdir().expect("tempdir");
        for sub in ["data", "writer", "reader"] {
            fs::create_dir(dirs.path().join(sub)).expect("mkdir");
        }
        let server = ServeProcess::start(&dirs.path().join("data"), &dirs.path().join("serve.log"), server_faults);
        let api = Api::new(&server.url());
        api.create_repository("repo");
        let writer_dir = dirs.path().join("writer");
        let writer = Mount::start_at_url(&server.url(), "lakefs://repo/main", writer_options, &writer_dir);
        // The reader's small memory budget makes it read from the server, not from its cache.
        let reader = Mount::start_at_url(
            &server.url(),
            "lakefs://repo",
            "read_only,metadata_ttl=200ms,max_memory=8M",
            &dirs.path().join("reader"),
        );
        let generations = Generations::start(writer.path(), reader.path());
        Fixture {
            generations: Some(generations),
            reader,
            writer: Some(writer),
            api,
            server,
            writer_dir,
            writer_options: writer_options.to_string(),
            _dirs: dirs,
        }
    }

    fn writer_root(&self) -> PathBuf {
        self.writer_dir.clone()
    }

    /// Commit everything from the test itself, between two rounds of the generation committer.
    fn commit(&self, message: &str) {
        let round = self.generations.as_ref().map(|g| g.round.clone());
        let _round = round.as_ref().map(|r| r.lock().unwrap_or_else(|p| p.into_inner()));
        commit_everything(&self.writer_root(), message);
    }

    fn finish_generations(&mut self) -> GenerationReport {
        let report = self.generations.take().expect("generations running").finish();
        assert!(report.checks > 0, "the reader never checked a commit: {report:?}");
        assert!(report.commits > 0, "no generation was ever committed: {report:?}");
        report
    }
}

fn sizes(total: usize, file: usize) -> Vec<usize> {
    // Mostly `file` bytes, every fifth file odd-sized, so part boundaries and short tails are covered.
    (0..total / file)
        .map(|i| if i % 5 == 4 { file + 4099 * i } else { file })
        .collect()
}

#[test]
fn server_killed_and_restarted_during_a_copy_loses_nothing_acknowledged() {
    let started = Instant::now();
    let mut fixture = Fixture::start(None, "timeout=120");
    let (total, file, restarts) = if long_tests() {
        (2048 * MIB, 32 * MIB, 6)
    } else {
        (100 * MIB, 2 * MIB, 2)
    };
    let plan = sizes(total, file);
    let count = plan.len();
    let done = Arc::new(AtomicU64::new(0));
    let pause = Arc::new(AtomicBool::new(false));
    let copier = std::thread::spawn({
        let (root, done, pause) = (fixture.writer_root(), done.clone(), pause.clone());
        move || {
            let mut all = Vec::new();
            for (chunk, sizes) in plan.chunks(4).enumerate() {
                all.extend(write_files(&root, &format!("copy{chunk:03}"), sizes, &pause));
                done.fetch_add(sizes.len() as u64, Ordering::SeqCst);
            }
            all
        }
    });
    for restart in 1..=restarts {
        // Kill at evenly spread points of the copy.
        let at = (count * restart / (restarts + 1)) as u64;
        while done.load(Ordering::SeqCst) < at && !copier.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
        }
        fixture.server.kill();
        std::thread::sleep(Duration::from_millis(700));
        fixture.server.restart(None);
    }
    let written = copier.join().expect("copier");
    let generations = fixture.finish_generations();
    commit_everything(&fixture.writer_root(), "after the restarts");
    let verified = verify_committed(&fixture.api, &fixture.writer_root(), &written, false);
    let failed: Vec<_> = written.iter().filter(|w| w.result.is_err()).collect();
    eprintln!(
        "server restarts: {restarts}, files {count}, closed ok {}, writer errors {:?}, verified {} files / {} bytes, \
         {generations:?}, {:.1}s",
        verified.files,
        failed.iter().map(|w| w.result).collect::<Vec<_>>(),
        verified.files,
        verified.bytes,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(verified.files, count - failed.len());
}

#[test]
fn mount_killed_during_writes_resumes_and_loses_nothing_acknowledged() {
    let started = Instant::now();
    let mut fixture = Fixture::start(None, "");
    let (rounds, files_per_round, file) = if long_tests() { (8, 24, 4 * MIB) } else { (2, 12, MIB) };
    let mut written = Vec::new();
    let mut committed = 0;
    for round in 0..rounds {
        let pause = Arc::new(AtomicBool::new(false));
        let plan = sizes(files_per_round * file, file);
        let writer = std::thread::spawn({
            let (root, pause) = (fixture.writer_root(), pause.clone());
            move || write_files(&root, &format!("round{round}"), &plan, &pause)
        });
        // Kill while the writer is about halfway.
        let halfway = fixture.writer_root().join("data");
        let deadline = Instant::now() + Duration::from_secs(120);
        while fs::read_dir(&halfway).map(|d| d.count()).unwrap_or(0) < committed + files_per_round / 2
            && !writer.is_finished()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        pause.store(true, Ordering::SeqCst);
        let generations_pause = fixture.generations.as_ref().expect("generations").pause.clone();
        generations_pause.store(true, Ordering::SeqCst);
        fixture.writer.as_mut().expect("writer mount").kill();
        // A writer may have created a directory in the bare mountpoint in the instant it was detached.
        let dir = fixture.writer_dir.clone();
        std::thread::sleep(Duration::from_millis(300));
        if !is_mounted(&dir) {
            for entry in fs::read_dir(&dir).expect("mountpoint").flatten() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        drop(fixture.writer.take());
        fixture.writer = Some(Mount::start_at_url(
            &fixture.server.url(),
            "lakefs://repo/main",
            &fixture.writer_options,
            &dir,
        ));
        pause.store(false, Ordering::SeqCst);
        generations_pause.store(false, Ordering::SeqCst);
        written.extend(writer.join().expect("writer"));
        committed = written.len();
    }
    let generations = fixture.finish_generations();
    commit_everything(&fixture.writer_root(), "after the mount restarts");
    let verified = verify_committed(&fixture.api, &fixture.writer_root(), &written, false);
    let failed = written.iter().filter(|w| w.result.is_err()).count();
    eprintln!(
        "mount kills: {rounds}, files {}, writer errors {failed}, verified {} files / {} bytes, {generations:?}, {:.1}s",
        written.len(),
        verified.files,
        verified.bytes,
        started.elapsed().as_secs_f64()
    );
    assert!(verified.files >= written.len() - failed);
}

/// A tmpfs mounted for the test's lifetime; unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -t tmpfs failed");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_staging_disk_gives_enospc_and_recovers_when_space_returns() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping a_full_staging_disk_gives_enospc_and_recovers_when_space_returns: needs root for tmpfs");
        return;
    }
    let started = Instant::now();
    let cache = tempfile::tempdir().expect("tempdir");
    let tmpfs = Tmpfs::mount(cache.path(), "24m");
    let mut fixture = Fixture::start(None, &format!("cache_dir={}", cache.path().display()));
    let root = fixture.writer_root();
    let keep = content("keep", 3 * MIB);
    write_file(&root.join("keep.bin"), &keep).expect("write keep.bin");
    fixture.commit("keep");

    let big = content("big", 40 * MIB);
    let err = write_file(&root.join("big.bin"), &big).expect_err("40 MiB cannot fit a 24 MiB staging disk");
    assert_eq!(err, libc::ENOSPC, "the writer gets ENOSPC");
    // Reads and listings go on while the disk is full.
    assert_eq!(fs::read(root.join("keep.bin")).expect("read while full"), keep);
    assert!(fs::read_dir(&root)
        .expect("list while full")
        .flatten()
        .any(|e| e.file_name() == "keep.bin"));
    // Space returns: writes and the commit work again.
    fs::remove_file(root.join("big.bin")).expect("remove the partial file");
    let after = content("after", 2 * MIB);
    write_file(&root.join("after.bin"), &after).expect("write after space returned");
    let generations = fixture.finish_generations();
    commit_everything(&root, "after the disk was full");
    assert_eq!(fixture.api.get("repo", "main", "after.bin").expect("after.bin"), after);
    assert_eq!(fixture.api.get("repo", "main", "keep.bin").expect("keep.bin"), keep);
    assert_eq!(fixture.api.get("repo", "main", "big.bin"), None);
    eprintln!("disk full: {generations:?}, {:.1}s", started.elapsed().as_secs_f64());
    drop(fixture);
    drop(tmpfs);
}

/// The server's fault mode: a few percent of requests fail in every way it knows.
const SERVER_FAULTS: &str =
    "seed=7,unavailable=0.03,error=0.02,slowdown=0.02,reset=0.02,truncate=0.02,stall=0.005@1s,latency=0.05@30ms";

#[test]
fn server_faults_never_give_wrong_data_and_writes_are_committed_intact() {
    let started = Instant::now();
    let mut fixture = Fixture::start(Some(SERVER_FAULTS), "");
    let (count, file, read_passes) = if long_tests() { (200, 3 * MIB, 5) } else { (30, MIB, 2) };
    let never = AtomicBool::new(false);
    let written = write_files(&fixture.writer_root(), "faulty", &sizes(count * file, file), &never);
    let generations = fixture.finish_generations();
    commit_everything(&fixture.writer_root(), "under faults");
    // Reads through the faulty server: the right bytes or EIO, never anything else.
    let head = fixture.api.branch_head("repo", "main");
    let pinned = fixture.reader.path().join(&head).join("data");
    let (mut good, mut eio) = (0u64, 0u64);
    for _ in 0..read_passes {
        for file in written.iter().filter(|w| w.queued) {
            match fs::read(pinned.join(&file.name)) {
                Ok(data) => {
                    assert_eq!(md5_hex(&data), file.md5, "{} read wrong data", file.name);
                    good += 1;
                }
                Err(e) if errno(&e) == libc::EIO => eio += 1,
                Err(e) => {
                    let on_server = fixture
                        .api
                        .get("repo", &head, &format!("data/{}", file.name))
                        .map(|d| md5_hex(&d) == file.md5);
                    panic!(
                        "{}: {e} (on the server at that commit, intact: {on_server:?})",
                        file.name
                    );
                }
            }
        }
    }
    let injected = fixture.server.injected_faults();
    // Every file, even one whose close failed, was kept queued and reached the commit.
    fixture.server.restart(None);
    let verified = verify_committed(&fixture.api, &fixture.writer_root(), &written, true);
    eprintln!(
        "server faults: {injected} injected, {} files written ({} errors, {} of them in close), reads {good} ok / {eio} EIO, \
         verified {} files / {} bytes, {generations:?}, {:.1}s",
        written.len(),
        written.iter().filter(|w| w.result.is_err()).count(),
        written.iter().filter(|w| w.result.is_err() && w.queued).count(),
        verified.files,
        verified.bytes,
        started.elapsed().as_secs_f64()
    );
    assert!(injected > 0, "the fault mode injected nothing");
    assert!(good > 0);
}

#[test]
fn a_stalled_server_gives_eio_within_the_timeout_instead_of_hanging() {
    let dirs = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dirs.path().join("mnt")).expect("mkdir");
    let mut server = ServeProcess::start(&dirs.path().join("data"), &dirs.path().join("serve.log"), None);
    let api = Api::new(&server.url());
    api.create_repository("repo");
    let data = content("stalled", 3 * MIB);
    api.put_and_commit("repo", "main", "stalled.bin", &data);
    let mount = Mount::start_at_url(
        &server.url(),
        "lakefs://repo/main",
        "timeout=3",
        &dirs.path().join("mnt"),
    );
    assert_eq!(
        fs::metadata(mount.join("stalled.bin")).expect("stat").len(),
        data.len() as u64
    );
    // Every request now waits a minute before it is answered.
    server.restart(Some("stall=1@60s"));
    let started = Instant::now();
    let err = fs::read(mount.join("stalled.bin")).expect_err("no data can arrive");
    let waited = started.elapsed();
    assert_eq!(errno(&err), libc::EIO, "{err}");
    assert!(waited < Duration::from_secs(20), "the read hung for {waited:?}");
    // Back to normal: the same file reads correctly.
    server.restart(None);
    assert_eq!(
        md5_hex(&fs::read(mount.join("stalled.bin")).expect("read")),
        md5_hex(&data)
    );
    eprintln!("stalled server: EIO after {:.1}s with timeout=3", waited.as_secs_f64());
}

#[test]
fn client_side_faults_of_debug_faults_are_retried_by_the_mount() {
    let started = Instant::now();
    let mut fixture = Fixture::start(
        None,
        "debug_faults=seed=11+unavailable=0.05+slowdown=0.03+reset=0.04+truncate=0.04+latency=0.1@5ms",
    );
    let never = AtomicBool::new(false);
    let written = write_files(&fixture.writer_root(), "client", &sizes(12 * MIB, MIB), &never);
    let generations = fixture.finish_generations();
    fixture.commit("under client faults");
    // Read back through the faulty client: right bytes or EIO.
    let (mut good, mut eio) = (0, 0);
    for file in written.iter().filter(|w| w.queued) {
        match fs::read(fixture.writer_root().join("data").join(&file.name)) {
            Ok(data) => {
                assert_eq!(md5_hex(&data), file.md5, "{} read wrong data", file.name);
                good += 1;
            }
            Err(e) => {
                assert_eq!(errno(&e), libc::EIO, "{}: {e}", file.name);
                eio += 1;
            }
        }
    }
    let verified = verify_committed(&fixture.api, &fixture.writer_root(), &written, true);
    eprintln!(
        "client faults: {} files, reads {good} ok / {eio} EIO, verified {} files / {} bytes, {generations:?}, {:.1}s",
        written.len(),
        verified.files,
        verified.bytes,
        started.elapsed().as_secs_f64()
    );
    assert!(good > 0);
}
