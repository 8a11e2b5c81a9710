//! Running a mount: checks before mounting, daemonizing, the FUSE session, and a clean unmount on signals.
//!
//! Order of events, chosen so every predictable failure is reported on the user's terminal with a clear message
//! and a non-zero exit, before anything is mounted:
//! 1. parse the source, resolve connection settings ([`options`]), check the mountpoint and `/dev/fuse`;
//! 2. build the filesystem core, which makes one request proving the credentials and the repository/ref;
//! 3. without `-f`: fork; the child (in a new session) repeats step 2 with its own runtime, mounts, and reports
//!    "ready" or its error through a pipe; the parent exits 0 only on "ready", else prints the child's error.
//!    Forking happens before any runtime exists in the process that keeps running: tokio threads do not survive
//!    a fork;
//! 4. serve until SIGINT/SIGTERM (unmount, lazily if busy) or until someone unmounts with `fusermount3 -u`.
//!
//! Once the daemon has detached, it logs to `-o log_file=` or syslog (see [`log`]).
//!
//! [`run_mount_with`] takes the function that builds the [`LakeFs`] client, so tests can run the whole path
//! against any implementation.

pub mod argv;
pub mod log;
pub mod options;

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use self::options::{resolve_connection, MountOptions};
use crate::fs::{Filesystem, FsConfig, FsError, Source};
use crate::fuse::{FuseConfig, FuseFilesystem};
use crate::lakefs::fault::{FaultPlan, FaultyLakeFs};
use crate::lakefs::{ClientConfig, LakeFs, LakeFsError, RemoteLakeFs};

/// A mount as the command line asked for it.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub source: String,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub options: MountOptions,
}

/// The filesystem settings `options` ask for, over the defaults.
pub fn fs_config(options: &MountOptions) -> FsConfig {
    let defaults = FsConfig::default();
    FsConfig {
        uid: options.uid.unwrap_or(defaults.uid),
        gid: options.gid.unwrap_or(defaults.gid),
        file_mode: options.file_mode.unwrap_or(defaults.file_mode),
        dir_mode: options.dir_mode.unwrap_or(defaults.dir_mode),
        metadata_ttl: options.metadata_ttl.unwrap_or(defaults.metadata_ttl),
        max_memory: options.max_memory.unwrap_or(defaults.max_memory),
        read_only: options.read_only,
        cache_dir: options.cache_dir.clone(),
        cache_size: options.cache_size.unwrap_or(defaults.cache_size),
        // Staged writes live next to the cache when the user chose a cache directory.
        staging_dir: options.cache_dir.as_ref().map(|dir| dir.join("staging")),
        max_staging: options.max_staging.unwrap_or(defaults.max_staging),
        upload_eager: options.upload_eager.unwrap_or(defaults.upload_eager),
        sync_close: options.sync_close,
        ..defaults
    }
}

/// The mountpoint must be an existing, empty directory.
pub fn check_mountpoint(path: &Path) -> anyhow::Result<PathBuf> {
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("mountpoint {} does not exist", path.display()),
        _ => anyhow!("mountpoint {}: {e}", path.display()),
    })?;
    if !metadata.is_dir() {
        bail!("mountpoint {} is not a directory", path.display());
    }
    let mut entries = std::fs::read_dir(path).with_context(|| format!("mountpoint {}", path.display()))?;
    if entries.next().is_some() {
        bail!("mountpoint {} is not empty", path.display());
    }
    path.canonicalize()
        .with_context(|| format!("mountpoint {}", path.display()))
}

fn check_fuse_device() -> anyhow::Result<()> {
    if !Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing: load the fuse module (modprobe fuse) or give the container --device /dev/fuse");
    }
    // fuser opens the device before it falls back to fusermount3, so a user who cannot open it gets a bare EACCES
    // from the mount. Distributions make it 0666; some containers leave it 0600.
    // SAFETY: geteuid cannot fail; access reads the NUL-terminated path and nothing else.
    let usable = unsafe { libc::geteuid() == 0 || libc::access(c"/dev/fuse".as_ptr(), libc::R_OK | libc::W_OK) == 0 };
    if !usable {
        bail!("/dev/fuse is not readable and writable by this user: make it mode 0666 (chmod 666 /dev/fuse, as distributions ship it) or mount as root");
    }
    Ok(())
}

/// Turn the core's start-up error into a sentence about what the user got wrong.
fn explain_startup_error(err: FsError, source: &str, endpoint: &str) -> anyhow::Error {
    match &err.source {
        Some(LakeFsError::Unauthorized(_)) | Some(LakeFsError::Forbidden(_)) => {
            anyhow!("lakeFS at {endpoint} rejected the credentials ({err}); check the access key id and secret")
        }
        Some(LakeFsError::NotFound(_)) => anyhow!("{source}: not found on {endpoint} ({err})"),
        Some(LakeFsError::Transport(_)) | Some(LakeFsError::Timeout(_)) | Some(LakeFsError::Unavailable(_)) => {
            anyhow!("cannot reach lakeFS at {endpoint}: {err}")
        }
        _ => anyhow!("{source}: {err}"),
    }
}

fn build_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lakefs-fuse-rt")
        .build()
        .context("starting the async runtime")
}

/// Keep the allocator's footprint close to what the mount holds. By default glibc gives each busy thread its
/// own arena and, once a large buffer is freed, raises its mmap threshold so that later 1 MiB blocks come from
/// those arenas, where freed space is kept rather than returned: RSS then grows far past `max_memory`. So:
/// - a fixed mmap threshold of one block: block buffers get their own mappings, and the gateway client recycles
///   them ([`crate::lakefs::buffers`]) instead of faulting in fresh pages for every block;
/// - smaller buffers (the HTTP client's receive buffers, up to a few hundred KiB) come from the heap, which
///   keeps up to `M_TRIM_THRESHOLD` of freed space for reuse - with a 256 KiB threshold every one of them was a
///   fresh mapping too, and a 1 GiB read faulted in 2 GiB;
/// - two arenas bound the rest.
fn limit_allocator_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; it is called before the mount starts its threads.
    unsafe {
        libc::mallopt(
            libc::M_MMAP_THRESHOLD,
            crate::lakefs::buffers::MIN_POOLED as libc::c_int,
        );
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Mount with the real lakeFS client.
pub fn run_mount(request: MountRequest) -> anyhow::Result<()> {
    limit_allocator_retention();
    let Some(spec) = request.options.debug_faults.clone() else {
        return run_mount_with(request, |config| {
            Ok(crate::metrics::MeteredLakeFs::new(RemoteLakeFs::new(config)?))
        });
    };
    // Testing only: faults go between the retry policy and the real client, so they exercise the retries.
    let plan = Arc::new(FaultPlan::parse(&spec)?);
    tracing::warn!(spec, "injecting faults into lakeFS calls (debug_faults)");
    run_mount_with(request, move |config| {
        let faulty = FaultyLakeFs::new(RemoteLakeFs::new(config)?, plan.clone()).with_retry(config.retry.clone());
        Ok(crate::metrics::MeteredLakeFs::new(faulty))
    })
}

/// Mount with the client `make_client` builds (see the module docs for the order of events).
pub fn run_mount_with<L, F>(request: MountRequest, make_client: F) -> anyhow::Result<()>
where
    L: LakeFs,
    F: Fn(&ClientConfig) -> anyhow::Result<L>,
{
    let source = Source::parse(&request.source)?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let client_config = resolve_connection(&request.options, |name| std::env::var(name).ok(), home.as_deref())?;
    let mut fs_config = fs_config(&request.options);
    // The daemon changes to `/`: relative paths must be resolved before that.
    if let Some(dir) = fs_config.cache_dir.take() {
        fs_config.cache_dir = Some(std::path::absolute(&dir).with_context(|| format!("cache_dir {}", dir.display()))?);
    }
    let mountpoint = check_mountpoint(&request.mountpoint)?;
    if let Some(dir) = fs_config.staging_dir.take() {
        fs_config.staging_dir =
            Some(std::path::absolute(&dir).with_context(|| format!("staging dir {}", dir.display()))?);
    }
    // With the host name, the mountpoint names the staging branches, so a restarted mount resumes its own.
    fs_config.mountpoint = mountpoint.to_string_lossy().into_owned();
    fs_config.endpoint = client_config.endpoint.clone();
    check_fuse_device()?;
    let log_file = request
        .options
        .log_file
        .as_deref()
        .map(log::open_log_file)
        .transpose()?;
    let start = |runtime: &tokio::runtime::Runtime| -> anyhow::Result<Arc<Filesystem<L>>> {
        let client = Arc::new(make_client(&client_config)?);
        runtime
            .block_on(Filesystem::new(client, source.clone(), fs_config.clone()))
            .map_err(|e| explain_startup_error(e, &request.source, &client_config.endpoint))
    };
    let fuse_config = |fs: &Arc<Filesystem<L>>| FuseConfig {
        read_only: fs.is_read_only(),
        allow_other: request.options.allow_other,
        threads: request.options.threads.unwrap_or(16),
        fs_name: "lakefs".to_string(),
        read_ahead_kb: Some(request.options.read_ahead_kb.unwrap_or(DEFAULT_READ_AHEAD_KB)).filter(|kb| *kb > 0),
    };

    if request.foreground {
        let runtime = build_runtime()?;
        let fs = start(&runtime)?;
        let fuse = fuse_config(&fs);
        return serve(runtime, fs, &mountpoint, &fuse, request.options.metrics, |result| {
            if let (Ok(()), Some(file)) = (result, &log_file) {
                log::redirect_stderr(file);
            }
        });
    }

    // Validate in the parent, so mistakes show up here; then drop every thread before forking.
    {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        start(&runtime)?;
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
    daemonize(log_file.as_ref(), |report| {
        let runtime = build_runtime()?;
        let fs = start(&runtime)?;
        let fuse = fuse_config(&fs);
        serve(runtime, fs, &mountpoint, &fuse, request.options.metrics, report)
    })
}

/// Mount `fs` at `mountpoint` and serve it until a signal or an external unmount. `on_mounted` learns whether the
/// mount went live.
fn serve<L: LakeFs>(
    runtime: tokio::runtime::Runtime,
    fs: Arc<Filesystem<L>>,
    mountpoint: &Path,
    fuse: &FuseConfig,
    metrics: Option<std::net::SocketAddr>,
    on_mounted: impl FnOnce(Result<(), String>),
) -> anyhow::Result<()> {
    if let Some(address) = metrics {
        let listener = match runtime.block_on(tokio::net::TcpListener::bind(address)) {
            Ok(listener) => listener,
            Err(err) => {
                let err = anyhow!("metrics endpoint {address}: {err}");
                on_mounted(Err(format!("{err:#}")));
                return Err(err);
            }
        };
        let gauges = {
            let fs = fs.clone();
            move || fs.metrics_gauges()
        };
        runtime.spawn(crate::metrics::serve(listener, gauges));
        tracing::info!(%address, "metrics on http://{address}/metrics");
    }
    let adapter = FuseFilesystem::new(fs.clone(), runtime.handle().clone());
    let session = match fuser::Session::new(adapter, mountpoint, &fuse.to_fuser_config()) {
        Ok(session) => {
            match crate::fuse::NotifyStore::start(session.notifier()) {
                Ok(store) => fs.set_kernel_page_cache(Arc::new(store)),
                Err(err) => tracing::warn!(error = %err, "no page cache filling for random reads"),
            }
            session
        }
        Err(err) => {
            let err = anyhow!("mounting at {}: {err}", mountpoint.display());
            on_mounted(Err(format!("{err:#}")));
            return Err(err);
        }
    };
    let mut session = session;
    let mut unmounter = session.unmount_callable();
    // Report first: a daemon's log moves to its log file or syslog at that point.
    on_mounted(Ok(()));
    tracing::info!(mountpoint = %mountpoint.display(), read_only = fuse.read_only, "mounted");

    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("fuse-session".into()).spawn(move || {
        let _ = done_tx.send(session.run());
    })?;
    if let Some(kb) = fuse.read_ahead_kb {
        let mountpoint = mountpoint.to_path_buf();
        std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || match set_read_ahead(&mountpoint, kb) {
                Ok(()) => tracing::debug!(kb, "kernel readahead set"),
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    tracing::info!(kb, "kernel readahead left at its default: setting it needs root")
                }
                Err(err) => tracing::warn!(error = %err, kb, "kernel readahead left at its default"),
            })?;
    }
    let signalled = runtime.block_on(async {
        tokio::select! {
            result = &mut done_rx => Err(result),
            signal = shutdown_signal() => Ok(signal),
        }
    });
    match signalled {
        Err(result) => {
            tracing::info!(mountpoint = %mountpoint.display(), "unmounted");
            result.unwrap_or(Ok(())).context("FUSE session failed")?;
        }
        Ok(signal) => {
            tracing::info!(signal, mountpoint = %mountpoint.display(), "unmounting");
            if let Err(err) = unmounter.unmount() {
                tracing::warn!(error = %err, "unmount failed (busy?); detaching lazily");
                let _ = std::process::Command::new("fusermount3")
                    .arg("-uz")
                    .arg(mountpoint)
                    .status();
            }
            let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), done_rx).await });
        }
    }
    finish_uploads(&runtime, &fs);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The kernel's readahead for a mount, in KiB: one FUSE request of the largest size (256 pages), which is also
/// one block of the data cache. FUSE mounts start at 128 KiB, so a reader making 1 MiB reads has only a quarter
/// of a read requested ahead of it; measured on the 1 GiB sequential read (fio, 1 MiB reads): 7-10% faster
/// with 1024 than with 128, and slower again from 2048 on, where more concurrent requests cost more than they
/// hide. Small reads (128 KiB) run the same with either. The price is a higher peak RSS on long reads (about 75
/// to 120-150 MiB; not the block cache, which stayed under 50 MiB; probably run buffers, see docs/BENCHMARKS.md).
pub const DEFAULT_READ_AHEAD_KB: u32 = 1024;

/// Set the readahead of the mount at `mountpoint` through its backing device's `read_ahead_kb` in sysfs: the only
/// way to raise it, as the `max_readahead` of FUSE's INIT reply can only lower it. Writing needs root.
fn set_read_ahead(mountpoint: &Path, kb: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // The stat is served by the session, so it returns after INIT, whose reply would reset an earlier value.
    let device = std::fs::metadata(mountpoint)?.dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(device),
        libc::minor(device)
    );
    std::fs::write(path, kb.to_string())
}

/// How long an unmounted daemon keeps uploading files closed before the unmount.
const UNMOUNT_UPLOAD_GRACE: Duration = Duration::from_secs(300);

/// Let background uploads finish after the unmount: the daemon outlives the mount for them. What does not finish
/// stays in the staging journal, and the next mount of the same branch on this mountpoint uploads it.
fn finish_uploads<L: crate::lakefs::LakeFs>(runtime: &tokio::runtime::Runtime, fs: &Filesystem<L>) {
    let running = fs.uploads_running();
    if running == 0 {
        return;
    }
    tracing::info!(running, "finishing uploads of closed files");
    if !runtime.block_on(fs.wait_for_uploads(UNMOUNT_UPLOAD_GRACE)) {
        tracing::warn!(
            running = fs.uploads_running(),
            "uploads unfinished at exit; they stay journalled for the next mount of this branch here"
        );
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Fork; the child runs `child` with a reporter it must call once the mount is live (or failed); the parent waits
/// for that report and exits accordingly.
fn daemonize(
    log_file: Option<&std::fs::File>,
    child: impl FnOnce(&mut dyn FnMut(Result<(), String>)) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-element array for pipe(2) to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating the ready pipe");
    }
    // SAFETY: fork is called while this process runs a single thread (every runtime was shut down above).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid > 0 {
        // Parent: wait for the child's verdict.
        // SAFETY: both descriptors come from pipe(2) above and are owned here exactly once.
        let (mut reader, writer) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
        drop(writer);
        let mut message = String::new();
        reader
            .read_to_string(&mut message)
            .context("waiting for the mount to come up")?;
        return match message.strip_prefix("ready") {
            Some(_) => Ok(()),
            None if message.is_empty() => Err(anyhow!("the mount process exited before the mount was ready")),
            None => Err(anyhow!("{}", message.trim_start_matches("error: ").trim_end())),
        };
    }
    // Child.
    // SAFETY: as above; the child owns its copies of the descriptors.
    let (reader, writer) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
    drop(reader);
    // SAFETY: setsid has no memory-safety preconditions; it detaches from the controlling terminal.
    unsafe { libc::setsid() };
    let _ = std::env::set_current_dir("/");
    let mut writer = Some(writer);
    let mut report = |result: Result<(), String>| {
        if let Some(mut pipe) = writer.take() {
            let message = match &result {
                Ok(()) => "ready".to_string(),
                Err(err) => format!("error: {err}"),
            };
            let _ = pipe.write_all(message.as_bytes());
            if result.is_ok() {
                log::detach_stdio(log_file);
            }
        }
    };
    let result = child(&mut report);
    if let Err(err) = &result {
        report(Err(format!("{err:#}")));
    }
    result
}
