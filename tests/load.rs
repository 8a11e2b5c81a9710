//! Load: 32 threads doing mixed reads, writes, deletes, listings and commits on two branches of one real mount
//! (`lakefs://repo`, so `main/` and `dev/` are both mounted branch directories), against the embedded server.
//!
//! Each worker owns a few files on one branch (`w<N>-f<K>` in the branch root) and is their only writer, so a
//! reference model (path -> bytes, per branch) knows exactly what each of them holds after every `close`. Workers
//! also read and list what other workers own, where only the documented errors may appear (ENOENT: deleted
//! meanwhile; ESTALE: replaced while read). Commits through `.lakefs/commit` may answer ENODATA (nothing to
//! commit); no other error is allowed anywhere. One known issue is counted rather than failed: right after a
//! commit, a worker may read its own file at its previous size until `metadata_ttl` passes; the read must be
//! right 1.5 s later (docs/RELIABILITY.md).
//!
//! Checked: no unexpected error; no deadlock (every worker finishes by an overall deadline); the mount's RSS,
//! sampled throughout, stays under a bound; after a final commit each branch on the server, and the mount's view
//! of it, equal the model byte for byte.
//!
//! Short form (30 s of load) by default; `LAKEFS_FUSE_LONG_TESTS=1` runs 5 minutes. Needs /dev/fuse:
//! `cargo test --release --features fuse_tests --test load -- --nocapture` prints the numbers.

#![cfg(feature = "fuse_tests")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Mount, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WORKERS: usize = 32;
const FILES_PER_WORKER: usize = 6;
const BRANCHES: [&str; 2] = ["main", "dev"];
const SEED_FILES: usize = 20;
/// `-o max_memory=` of the mount under load, and the RSS the process must stay under.
const MAX_MEMORY: &str = "64M";
const RSS_BOUND: u64 = 512 << 20;

type Model = Arc<Vec<Mutex<BTreeMap<String, Vec<u8>>>>>;

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    bytes_written: AtomicU64,
    reads: AtomicU64,
    bytes_verified: AtomicU64,
    foreign_reads: AtomicU64,
    listings: AtomicU64,
    deletes: AtomicU64,
    commits: AtomicU64,
    empty_commits: AtomicU64,
    tolerated: AtomicU64,
    stale_own_reads: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

fn load_duration() -> Duration {
    if std::env::var("LAKEFS_FUSE_LONG_TESTS").is_ok_and(|v| v == "1") {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(30)
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

fn content(worker: usize, file: usize, version: u64, rng: &mut StdRng) -> Vec<u8> {
    let line = format!("worker {worker} file {file} version {version}\n");
    let len = rng.random_range(1..=256 << 10);
    line.into_bytes().into_iter().cycle().take(len).collect()
}

/// One worker's loop; every unexpected error is pushed to `errors`.
#[allow(clippy::too_many_arguments)]
fn worker(
    id: usize,
    root: PathBuf,
    model: Model,
    counters: Arc<Counters>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let branch_index = id % BRANCHES.len();
    let branch_dir = root.join(BRANCHES[branch_index]);
    let mut rng = StdRng::seed_from_u64(id as u64);
    let mut version = 0u64;
    let fail = |what: String| errors.lock().unwrap().push(format!("worker {id}: {what}"));
    let own = |file: usize| format!("w{id}-f{file}");
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.random_range(0..100);
        let file = rng.random_range(0..FILES_PER_WORKER);
        let name = own(file);
        let path = branch_dir.join(&name);
        match roll {
            0..35 => {
                version += 1;
                let data = content(id, file, version, &mut rng);
                let written = match fs::write(&path, &data) {
                    // Known issue (see the reads below): right after a commit the kernel may still hold an entry
                    // of a file this worker deleted before it, and the open then finds nothing. It must heal.
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        std::thread::sleep(Duration::from_millis(1500));
                        let again = fs::write(&path, &data);
                        if again.is_ok() {
                            bump(&counters.stale_own_reads, 1);
                        }
                        again
                    }
                    other => other,
                };
                match written {
                    Ok(()) => {
                        bump(&counters.writes, 1);
                        bump(&counters.bytes_written, data.len() as u64);
                        model[branch_index].lock().unwrap().insert(name, data);
                    }
                    Err(e) => fail(format!("write {name}: {e}")),
                }
            }
            35..60 => {
                let expected = model[branch_index].lock().unwrap().get(&name).cloned();
                match (fs::read(&path), expected) {
                    (Ok(got), Some(want)) if got == want => {
                        bump(&counters.reads, 1);
                        bump(&counters.bytes_verified, got.len() as u64);
                    }
                    (Ok(got), Some(want)) => {
                        // Known issue: right after a commit the mount may serve its own file's previous
                        // attributes until `metadata_ttl` (1 s) passes. Counted and reported; it must heal.
                        std::thread::sleep(Duration::from_millis(1500));
                        match fs::read(&path) {
                            Ok(again) if again == want => bump(&counters.stale_own_reads, 1),
                            again => fail(format!(
                                "read {name}: {} bytes, expected {}, still wrong after 1.5 s: {:?}",
                                got.len(),
                                want.len(),
                                again.map(|a| a.len())
                            )),
                        }
                    }
                    (Ok(_), None) => {
                        // The same known issue for a delete: the deleted file may show until metadata_ttl passes.
                        std::thread::sleep(Duration::from_millis(1500));
                        match fs::read(&path) {
                            Err(e) if e.kind() == ErrorKind::NotFound => bump(&counters.stale_own_reads, 1),
                            again => fail(format!(
                                "read {name}: exists though deleted, still after 1.5 s: {:?}",
                                again.map(|a| a.len())
                            )),
                        }
                    }
                    (Err(e), None) if e.kind() == ErrorKind::NotFound => bump(&counters.reads, 1),
                    (Err(e), Some(want)) if e.raw_os_error() == Some(libc::ESTALE) => {
                        // The same known issue: opened with the attributes of the version before the commit, the
                        // read finds the object replaced. It must heal.
                        std::thread::sleep(Duration::from_millis(1500));
                        match fs::read(&path) {
                            Ok(again) if again == want => bump(&counters.stale_own_reads, 1),
                            again => fail(format!(
                                "read {name}: ESTALE, still wrong after 1.5 s: {:?}",
                                again.map(|a| a.len())
                            )),
                        }
                    }
                    (Err(e), _) => fail(format!("read {name}: {e}")),
                }
            }
            60..75 => {
                // Another worker's file on the same branch: may be mid-write, deleted or replaced.
                let other = rng.random_range(0..WORKERS / BRANCHES.len()) * BRANCHES.len() + branch_index;
                let path = branch_dir.join(format!("w{other}-f{file}"));
                match fs::read(&path) {
                    Ok(_) => bump(&counters.foreign_reads, 1),
                    Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESTALE) => {
                        bump(&counters.tolerated, 1)
                    }
                    Err(e) => fail(format!("read w{other}-f{file}: {e}")),
                }
            }
            75..85 => match own_listing(&branch_dir, id) {
                Ok(mine) => {
                    let expected = || -> Vec<String> {
                        model[branch_index]
                            .lock()
                            .unwrap()
                            .keys()
                            .filter(|k| k.starts_with(&format!("w{id}-")))
                            .cloned()
                            .collect()
                    };
                    if mine != expected() {
                        // Known issue (see above): the listing may lag the mount's own changes until
                        // metadata_ttl passes; it must be right 1.5 s later.
                        std::thread::sleep(Duration::from_millis(1500));
                        match own_listing(&branch_dir, id) {
                            Ok(again) if again == expected() => bump(&counters.stale_own_reads, 1),
                            again => fail(format!(
                                "listing shows {mine:?}, expected {:?}, after 1.5 s {again:?}",
                                expected()
                            )),
                        }
                    }
                    bump(&counters.listings, 1);
                }
                Err(e) => fail(format!("readdir: {e}")),
            },
            85..92 => {
                let existed = model[branch_index].lock().unwrap().contains_key(&name);
                match fs::remove_file(&path) {
                    Ok(()) if existed => {
                        model[branch_index].lock().unwrap().remove(&name);
                        bump(&counters.deletes, 1);
                    }
                    Ok(()) => fail(format!("delete {name}: succeeded but did not exist")),
                    Err(e) if e.kind() == ErrorKind::NotFound && !existed => bump(&counters.tolerated, 1),
                    Err(e) => fail(format!("delete {name}: {e}")),
                }
            }
            _ => match commit(&branch_dir, &format!("load worker {id}")) {
                Ok(true) => bump(&counters.commits, 1),
                Ok(false) => bump(&counters.empty_commits, 1),
                Err(e) => fail(format!("commit: {e}")),
            },
        }
    }
}

/// The names in `branch_dir` that worker `id` owns, sorted.
fn own_listing(branch_dir: &Path, id: usize) -> std::io::Result<Vec<String>> {
    let mut mine = Vec::new();
    for entry in fs::read_dir(branch_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("w{id}-")) {
            mine.push(name);
        }
    }
    mine.sort();
    Ok(mine)
}

/// `Ok(false)` when there was nothing to commit (ENODATA, documented).
fn commit(branch_dir: &Path, message: &str) -> std::io::Result<bool> {
    match fs::write(branch_dir.join(".lakefs/commit"), message) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(false),
        Err(e) => Err(e),
    }
}

#[test]
fn mixed_load_on_two_branches() {
    let duration = load_duration();
    let server = Server::start();
    server.create_repository("repo");
    let mut seed = BTreeMap::new();
    for i in 0..SEED_FILES {
        let data = format!("seed {i}\n").repeat(100 * (i + 1)).into_bytes();
        server.upload("repo", "main", &format!("seed-{i}"), data.clone());
        seed.insert(format!("seed-{i}"), data);
    }
    server.commit("repo", "main", "seed");
    server.branch("repo", "dev", "main");
    let model: Model = Arc::new(BRANCHES.iter().map(|_| Mutex::new(seed.clone())).collect());

    let mut mount = Mount::start(&server, "lakefs://repo", &format!("max_memory={MAX_MEMORY}"));
    let mut child = mount.take_child().expect("mount process");
    let pid = child.id();
    let root = mount.path().to_path_buf();
    let counters = Arc::new(Counters::default());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let max_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_rss) = (stop.clone(), max_rss.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = rss_bytes(pid) {
                    max_rss.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    let started = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for id in 0..WORKERS {
        let (root, model, counters, errors, stop, done) = (
            root.clone(),
            model.clone(),
            counters.clone(),
            errors.clone(),
            stop.clone(),
            done_tx.clone(),
        );
        std::thread::spawn(move || {
            worker(id, root, model, counters, errors, stop);
            let _ = done.send(id);
        });
    }
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    // Every worker finishes its current operation well within this: a longer wait is a deadlock.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finished = 0;
    while finished < WORKERS {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(_) => finished += 1,
            Err(_) => panic!(
                "deadlock: {} of {WORKERS} workers still blocked 120 s after the load stopped",
                WORKERS - finished
            ),
        }
    }
    let load_time = started.elapsed();
    let _ = sampler.join();

    // Publish everything, then compare the server and the mount with the model.
    for branch in BRANCHES {
        commit(&root.join(branch), "final").unwrap_or_else(|e| panic!("final commit of {branch}: {e}"));
    }
    let mut verified = 0u64;
    for (index, branch) in BRANCHES.iter().enumerate() {
        let expected = model[index].lock().unwrap().clone();
        let on_server = server.paths("repo", branch);
        let expected_paths: Vec<String> = expected.keys().cloned().collect();
        assert_eq!(on_server, expected_paths, "paths committed on {branch}");
        for (path, data) in &expected {
            let on_server = server.get("repo", branch, path);
            assert!(
                on_server.as_deref() == Some(data.as_slice()),
                "{branch}/{path} differs on the server: {:?} bytes, expected {}; the mount has {:?} bytes; \
                 errors seen: {:?}",
                on_server.as_ref().map(Vec::len),
                data.len(),
                fs::read(root.join(branch).join(path)).map(|d| d.len()),
                errors.lock().unwrap().iter().take(10).collect::<Vec<_>>()
            );
            assert!(
                fs::read(root.join(branch).join(path)).unwrap() == *data,
                "{branch}/{path} differs in the mount"
            );
            verified += data.len() as u64;
        }
    }
    let max_rss = max_rss.load(Ordering::Relaxed);
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} unexpected errors, first ones:\n{}",
        errors.len(),
        errors.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    let c = &counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "load: {WORKERS} workers for {:.1} s: {} writes ({} MiB), {} verified reads ({} MiB), {} foreign reads, \
         {} listings, {} deletes, {} commits, {} empty commits (ENODATA), {} tolerated ENOENT/ESTALE, {} stale own \
         reads/listings healed within metadata_ttl; final \
         {} MiB verified on server and mount; mount max RSS {} MiB (max_memory={MAX_MEMORY})",
        load_time.as_secs_f64(),
        load(&c.writes),
        load(&c.bytes_written) >> 20,
        load(&c.reads),
        load(&c.bytes_verified) >> 20,
        load(&c.foreign_reads),
        load(&c.listings),
        load(&c.deletes),
        load(&c.commits),
        load(&c.empty_commits),
        load(&c.tolerated),
        load(&c.stale_own_reads),
        verified >> 20,
        max_rss >> 20,
    );
    assert!(load(&c.writes) > 0 && load(&c.commits) > 0, "the load did nothing");
    assert!(max_rss > 0, "RSS was never sampled");
    assert!(max_rss < RSS_BOUND, "mount RSS reached {} MiB", max_rss >> 20);
    drop(mount);
    let _ = child.kill();
    let _ = child.wait();
}
