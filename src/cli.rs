//! Command line: clap definitions and dispatch. Everything here turns arguments into plain config structs and
//! hands them to the subsystem that runs them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::server::auth::Credentials;
use crate::server::ServerConfig;

mod generate;
pub mod mounts;
pub mod operation;
pub mod status;

#[derive(Parser, Debug)]
#[command(
    name = "lakefs-fuse",
    version,
    about = "Mount lakeFS repositories, branches, tags and commits as a filesystem"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the embedded lakeFS-compatible server (REST /api/v1 and S3 gateway on one port).
    Serve(ServeArgs),
    /// Mount lakeFS at MOUNTPOINT: `lakefs://` (all repositories), `lakefs://REPO` (its branches) or
    /// `lakefs://REPO/REF[/PREFIX]` (one ref). Daemonizes once the mount is live unless `-f` is given.
    Mount(Box<MountArgs>),
    /// Commit what a mount wrote to a branch, with progress (as `.lakefs/commit` does).
    ///
    /// Uploads the files still pending, commits the staging branch and merges it into the branch, in one atomic
    /// step. PATH is a mounted branch directory or any path inside it; any running mount works. A progress bar
    /// on stderr (when it is a terminal) follows the uploads and the commit; the new commit id is printed on
    /// stdout. The full error - hook name and output, conflicting paths - goes to stderr, and the exit code
    /// says what kind it was: 3 not inside a mounted ref, 4 read-only ref (tag, commit, read-only mount),
    /// 5 nothing to commit, 6 conflict, 7 rejected by a hook, 8 invalid request, 9 server error,
    /// 10 access denied, 11 no staging space, 1 anything else, 2 usage error.
    Commit(operation::CommitArgs),
    /// Commit a mounted branch (if anything is pending) and merge it into another branch.
    ///
    /// What `.lakefs/merge` does: everything `commit` does when this mount has something to commit, then an
    /// atomic merge of the branch into TARGET; the target's pre-merge hooks decide. Prints the merge commit id;
    /// progress and exit codes as for `commit` (7: a pre-merge hook refused, 6: conflict without --strategy).
    Merge(operation::MergeArgs),
    /// Summarise lakefs-fuse mounts: server, refs, staging branches, uploads, changes, cache, errors.
    ///
    /// Reads each mount's `.lakefs/status.json`: the server endpoint, the mounted source and ref, every branch
    /// written through the mount with its staging branch, pending uploads and uncommitted changes, the running
    /// and last control operation with its full result or error, the last upload error, and data cache use.
    /// Without MOUNTPOINT, every lakefs-fuse mount in /proc/self/mountinfo. Exits 1 when a mount cannot
    /// report (its daemon died, the server is down), 3 when MOUNTPOINT is not a lakefs-fuse mount.
    Status(status::StatusArgs),
    /// Write man pages or shell completions into a directory (used when packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

#[derive(Args, Debug, Default)]
pub struct MountArgs {
    /// lakefs://, lakefs://REPO or lakefs://REPO/REF[/PREFIX]
    pub source: String,
    /// An existing, empty directory.
    pub mountpoint: PathBuf,
    /// Stay in the foreground (logs go to stderr).
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Comma-separated mount options, as in fstab (repeatable): endpoint=, access_key_id=, secret_access_key=,
    /// config=, uid=, gid=, file_mode=, dir_mode=, metadata_ttl=, max_memory=, cache_dir=, cache_size=,
    /// max_staging=, upload_eager, threads=, read_ahead_kb= (kernel readahead, default 1024; 0 keeps the kernel's),
    /// timeout=, read_only (or ro), allow_other, debug, log_file=,
    /// metrics=ADDRESS (Prometheus metrics on http://ADDRESS/metrics, e.g. metrics=127.0.0.1:9464). Generic options
    /// (rw, defaults, noauto, _netdev, nofail, user, x-systemd.*) are ignored.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// lakeFS server URL (`/api/v1` is appended when it has no path).
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub access_key_id: Option<String>,
    /// Prefer LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY or the config file: a secret on the command line is hidden
    /// from `ps` once the mount starts, but is visible for a moment before.
    #[arg(long)]
    pub secret_access_key: Option<String>,
    /// lakectl configuration file (default: LAKECTL_CONFIG_FILE, else ~/.lakectl.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub uid: Option<u32>,
    #[arg(long)]
    pub gid: Option<u32>,
    /// Octal permission bits of files (default 0644).
    #[arg(long)]
    pub file_mode: Option<String>,
    /// Octal permission bits of directories (default 0755).
    #[arg(long)]
    pub dir_mode: Option<String>,
    /// How long branch metadata is trusted, e.g. 1s, 500ms (default 1s).
    #[arg(long)]
    pub metadata_ttl: Option<String>,
    /// Memory for object data - cached blocks and GETs in flight together - e.g. 256M (default 160M).
    #[arg(long)]
    pub max_memory: Option<String>,
    /// Directory for an on-disk data cache.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Size of the on-disk data cache, e.g. 10G (default 10G; no disk cache without cache_dir).
    #[arg(long)]
    pub cache_size: Option<String>,
    /// FUSE worker threads (default 16).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Refuse every write.
    #[arg(long)]
    pub read_only: bool,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root).
    #[arg(long)]
    pub allow_other: bool,
    /// Log at debug level.
    #[arg(long)]
    pub debug: bool,
    /// Accepted for mount(8) compatibility (`-n`: no mtab, `-s`: sloppy, `-v`: verbose); ignored.
    #[arg(short = 'n', hide = true)]
    pub no_mtab: bool,
    #[arg(short = 's', hide = true)]
    pub sloppy: bool,
    #[arg(short = 'v', hide = true)]
    pub verbose: bool,
    /// mount(8) helper `-f` ("fake"): check the arguments, mount nothing. `mount.lakefs -f` arrives here.
    #[arg(long, hide = true)]
    pub fake: bool,
    /// mount(8) passes `-t TYPE` to helpers of subtyped filesystems; accepted and ignored.
    #[arg(short = 't', hide = true, value_name = "TYPE")]
    pub fs_type: Option<String>,
}

impl MountArgs {
    /// `-o` options first, then long flags over them.
    pub fn into_request(self) -> anyhow::Result<crate::mount::MountRequest> {
        use crate::mount::options::{parse_duration, parse_mode, parse_size, MountOptions};
        let mut options = MountOptions::default();
        for list in &self.options {
            options.apply_o(list)?;
        }
        fn flag<T>(name: &str, result: Result<T, String>) -> anyhow::Result<T> {
            result.map_err(|e| anyhow::anyhow!("--{name}: {e}"))
        }
        options.endpoint = self.endpoint.or(options.endpoint);
        options.access_key_id = self.access_key_id.or(options.access_key_id);
        options.secret_access_key = self.secret_access_key.or(options.secret_access_key);
        options.config = self.config.or(options.config);
        options.uid = self.uid.or(options.uid);
        options.gid = self.gid.or(options.gid);
        if let Some(mode) = self.file_mode {
            options.file_mode = Some(flag("file-mode", parse_mode(&mode))?);
        }
        if let Some(mode) = self.dir_mode {
            options.dir_mode = Some(flag("dir-mode", parse_mode(&mode))?);
        }
        if let Some(ttl) = self.metadata_ttl {
            options.metadata_ttl = Some(flag("metadata-ttl", parse_duration(&ttl))?);
        }
        if let Some(size) = self.max_memory {
            options.max_memory = Some(flag("max-memory", parse_size(&size))?);
        }
        options.cache_dir = self.cache_dir.or(options.cache_dir);
        if let Some(size) = self.cache_size {
            options.cache_size = Some(flag("cache-size", parse_size(&size))?);
        }
        options.threads = self.threads.or(options.threads);
        options.read_only |= self.read_only;
        options.allow_other |= self.allow_other;
        options.debug |= self.debug;
        Ok(crate::mount::MountRequest {
            source: self.source,
            mountpoint: self.mountpoint,
            foreground: self.foreground,
            options,
        })
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Directory holding blobs and the metadata database; created if missing.
    #[arg(long, env = "LAKEFS_FUSE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "LAKEFS_FUSE_LISTEN")]
    pub listen: SocketAddr,
    /// Access key id clients must use (default: lakeFS quickstart's, only on loopback).
    #[arg(long, env = "LAKEFS_FUSE_ACCESS_KEY_ID", requires = "secret_access_key")]
    pub access_key_id: Option<String>,
    /// Secret access key; prefer the environment variable so it does not show in `ps`.
    #[arg(
        long,
        env = "LAKEFS_FUSE_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "access_key_id"
    )]
    pub secret_access_key: Option<String>,
    /// Accept lakeFS quickstart's public keys even when listening off loopback (only on a network where every
    /// client may have full access).
    #[arg(long)]
    pub allow_quickstart_keys_off_loopback: bool,
    /// Testing only: inject faults into responses, e.g. `seed=1,unavailable=0.05,reset=0.02,latency=0.1@50ms`
    /// (see docs/RELIABILITY.md).
    #[arg(long, hide = true, env = "LAKEFS_FUSE_SERVE_FAULTS")]
    pub faults: Option<String>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let configured = self.access_key_id.as_deref().zip(self.secret_access_key.as_deref());
        let credentials = Credentials::for_listener(self.listen, configured, self.allow_quickstart_keys_off_loopback)?;
        let mut config = ServerConfig::new(self.data_dir, self.listen, credentials);
        config.allow_quickstart_off_loopback = self.allow_quickstart_keys_off_loopback;
        config.faults = self
            .faults
            .as_deref()
            .map(crate::lakefs::fault::FaultSpec::parse)
            .transpose()?;
        Ok(config)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse_from(mount_helper_args(std::env::args_os()));
    let result = match cli.command {
        Command::Serve(args) => {
            init_logging("info");
            run_serve(args)
        }
        Command::Mount(args) => {
            let fake = args.fake;
            (*args).into_request().and_then(|request| {
                // A secret given on the command line is hidden from `ps` before anything else happens.
                if let Some(secret) = &request.options.secret_access_key {
                    crate::mount::argv::scrub_from_argv(secret)
                        .context("hiding secret_access_key from the command line")?;
                }
                if fake {
                    return Ok(());
                }
                crate::mount::log::init(&request);
                crate::mount::run_mount(request)
            })
        }
        Command::Generate(args) => generate::run(args),
        Command::Commit(args) => return operation::run_commit(args),
        Command::Merge(args) => return operation::run_merge(args),
        Command::Status(args) => return status::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lakefs-fuse: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Invoked as `mount.lakefs SOURCE DIR [-sfnv] [-o OPTIONS] [-t TYPE]` (by mount(8) and fstab), behave as
/// `lakefs-fuse mount ...`. The helper convention gives `-f` another meaning than `lakefs-fuse mount -f`: "fake"
/// (mount nothing) rather than "foreground", so the helper's `-f` becomes `--fake`; flag clusters such as `-fv` are
/// split first. Option values (`-o ...`, `-t ...`) are passed through untouched.
fn mount_helper_args(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = args.collect();
    let invoked_as = args
        .first()
        .and_then(|a| PathBuf::from(a).file_name().map(|n| n.to_os_string()));
    if invoked_as.as_deref() != Some(std::ffi::OsStr::new("mount.lakefs")) {
        return args;
    }
    let rest = args.split_off(1);
    args.push("mount".into());
    let mut rest = rest.into_iter();
    while let Some(arg) = rest.next() {
        match arg.to_str() {
            Some("-o" | "-t") => {
                args.push(arg);
                args.extend(rest.next());
            }
            Some(flags)
                if flags.len() > 1 && flags.starts_with('-') && flags[1..].chars().all(|c| "sfnv".contains(c)) =>
            {
                for flag in flags[1..].chars() {
                    args.push(if flag == 'f' {
                        "--fake".into()
                    } else {
                        format!("-{flag}").into()
                    });
                }
            }
            _ => args.push(arg),
        }
    }
    args
}

/// Logs go to stderr; `LAKEFS_FUSE_LOG` takes an EnvFilter directive (default `default_level`).
fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKEFS_FUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = crate::server::start(config).await?;
        tracing::info!(endpoint = %server.base_url(), "lakefs-fuse server ready");
        // The ready line on stdout is what scripts wait for.
        println!("listening on {}", server.base_url());
        tokio::select! {
            result = server.join() => result.context("server stopped"),
            _ = shutdown_signal() => Ok(()),
        }
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_override_o_options() {
        let cli = Cli::parse_from([
            "lakefs-fuse",
            "mount",
            "lakefs://repo/main",
            "/mnt",
            "-f",
            "-o",
            "rw,endpoint=http://o:1,uid=5",
            "-o",
            "metadata_ttl=2s",
            "--endpoint",
            "http://flag:2",
            "--file-mode",
            "600",
        ]);
        let Command::Mount(args) = cli.command else {
            panic!("not a mount")
        };
        let request = (*args).into_request().unwrap();
        assert!(request.foreground);
        assert_eq!(request.options.endpoint.as_deref(), Some("http://flag:2"));
        assert_eq!(request.options.uid, Some(5));
        assert_eq!(request.options.file_mode, Some(0o600));
        assert_eq!(request.options.metadata_ttl, Some(std::time::Duration::from_secs(2)));
    }

    #[test]
    fn the_metrics_option_takes_a_socket_address() {
        let parse = |o: &str| {
            let cli = Cli::try_parse_from(["lakefs-fuse", "mount", "lakefs://repo/main", "/mnt", "-o", o]).unwrap();
            let Command::Mount(args) = cli.command else {
                panic!("not a mount")
            };
            (*args).into_request().map(|r| r.options.metrics)
        };
        assert_eq!(
            parse("metrics=127.0.0.1:9464").unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(parse("metrics=localhost").is_err());
        assert!(parse("metrics").is_err());
        assert_eq!(parse("ro").unwrap(), None);
    }

    #[test]
    fn the_mount_helper_name_implies_the_mount_subcommand() {
        let args = mount_helper_args(
            ["/sbin/mount.lakefs", "lakefs://repo", "/mnt", "-o", "rw"]
                .map(Into::into)
                .into_iter(),
        );
        let cli = Cli::parse_from(args);
        assert!(matches!(cli.command, Command::Mount(ref m) if m.source == "lakefs://repo"));
    }

    fn helper(args: &[&str]) -> MountArgs {
        let argv = std::iter::once("/usr/sbin/mount.lakefs").chain(args.iter().copied());
        let cli = Cli::try_parse_from(mount_helper_args(argv.map(Into::into))).unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("not a mount")
        };
        *args
    }

    #[test]
    fn the_mount_helper_takes_f_as_fake_and_accepts_s_n_v_t() {
        let args = helper(&[
            "lakefs://repo/main",
            "/mnt/x",
            "-s",
            "-f",
            "-n",
            "-v",
            "-o",
            "ro,noauto",
            "-t",
            "lakefs",
        ]);
        assert!(args.fake && args.sloppy && args.no_mtab && args.verbose);
        assert!(!args.foreground, "-f means fake for a mount helper");
        assert_eq!(args.fs_type.as_deref(), Some("lakefs"));
        assert!(args.into_request().unwrap().options.read_only);

        let args = helper(&["-fv", "lakefs://repo/main", "/mnt/x", "-o", "rw"]);
        assert!(args.fake && args.verbose && !args.sloppy);
        assert!(!args.into_request().unwrap().options.read_only);

        // The long foreground flag still works for the helper.
        let args = helper(&["lakefs://r/main", "/mnt/x", "--foreground", "-o", "ro"]);
        assert!(!args.fake && args.foreground);

        // Invoked as lakefs-fuse, -f stays "foreground".
        let cli = Cli::parse_from(mount_helper_args(
            ["lakefs-fuse", "mount", "lakefs://r/main", "/mnt/x", "-f"]
                .map(Into::into)
                .into_iter(),
        ));
        assert!(matches!(cli.command, Command::Mount(ref m) if m.foreground && !m.fake));
    }

    #[test]
    fn fstab_generic_options_are_accepted() {
        let args = helper(&[
            "lakefs://repo/main",
            "/mnt/x",
            "-o",
            "rw,defaults,noauto,_netdev,nofail,user=alice,users,x-systemd.automount,x-systemd.idle-timeout=60",
            "-o",
            "config=/etc/lakefs-fuse/lakectl.yaml",
        ]);
        let request = args.into_request().unwrap();
        assert!(!request.options.read_only && !request.foreground);
        assert_eq!(
            request.options.config,
            Some(PathBuf::from("/etc/lakefs-fuse/lakectl.yaml"))
        );
    }
}
