//! Command line: clap definitions and dispatch. Everything here turns arguments into plain config structs and
//! hands them to the subsystem that runs them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::server::auth::Credentials;
use crate::server::ServerConfig;

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
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let credentials = match (self.access_key_id, self.secret_access_key) {
            (Some(id), Some(secret)) => {
                let mut c = Credentials::new();
                c.add(&id, &secret);
                c
            }
            _ => Credentials::default_for(self.listen).with_context(|| {
                format!(
                    "refusing to serve on {} with the public quickstart keys: set LAKEFS_FUSE_ACCESS_KEY_ID and \
                     LAKEFS_FUSE_SECRET_ACCESS_KEY, or listen on 127.0.0.1",
                    self.listen
                )
            })?,
        };
        Ok(ServerConfig::new(self.data_dir, self.listen, credentials))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => run_serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lakefs-fuse: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `LAKEFS_FUSE_LOG` takes an EnvFilter directive (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKEFS_FUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
