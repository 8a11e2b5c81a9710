//! The embedded lakeFS-compatible server (`lakefs-fuse serve`).
//!
//! One port, two front ends, as in lakeFS (lakefs-api.md §1.1): requests that carry an AWS signature (or whose
//! `Host` is a gateway domain) go to the S3 gateway ([`gateway`]); `/api/v1/...` goes to the REST API ([`api`]);
//! `/_health` answers `alive!`. Both front ends call [`store::Store`] and share nothing else, so protocol parsing
//! stays apart from storage.

pub mod api;
pub mod auth;
pub mod faults;
pub mod gateway;
pub mod hooks;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use self::auth::Credentials;
use self::store::Store;
use crate::lakefs::fault::{FaultPlan, FaultSpec};

/// Settings of one server instance; tests build it directly with `listen = 127.0.0.1:0`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub credentials: Credentials,
    /// Region reported by GetBucketLocation.
    pub region: String,
    /// Host names that select the S3 gateway (path-style) and, as parent domains, virtual-host style.
    pub gateway_domains: Vec<String>,
    /// Accept lakeFS quickstart's public keys on a non-loopback listener (see [`auth`]).
    pub allow_quickstart_off_loopback: bool,
    /// Fault mode for testing clients (see [`faults`]); `None` serves faithfully.
    pub faults: Option<FaultSpec>,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr, credentials: Credentials) -> Self {
        ServerConfig {
            data_dir,
            listen,
            credentials,
            region: "us-east-1".to_string(),
            gateway_domains: vec!["s3.local.lakefs.io".to_string()],
            allow_quickstart_off_loopback: false,
            faults: None,
        }
    }
}

/// Everything a request handler needs.
pub struct ServerState {
    pub store: Store,
    pub config: ServerConfig,
    /// Client for webhooks.
    pub http: reqwest::Client,
    /// The fault mode's plan, when on.
    pub faults: Option<FaultPlan>,
    /// Running SHA-256 of in-progress multipart uploads (gateway).
    pub(crate) multipart_hashes: gateway::multipart::RunningHashes,
}

/// A running server; dropping it does not stop it, call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` - the endpoint for both REST (`/api/v1` appended by clients) and S3.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.map_err(std::io::Error::other)?
    }

    /// Waits until the server stops (it does not stop by itself).
    pub async fn join(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Opens the store, binds the listener and starts serving in the background.
pub async fn start(config: ServerConfig) -> anyhow::Result<ServerHandle> {
    config
        .credentials
        .check_listener(config.listen, config.allow_quickstart_off_loopback)?;
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir)).await??;
    let http = reqwest::Client::builder().build()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let faults = config.faults.clone().map(FaultPlan::new);
    if let Some(spec) = &config.faults {
        tracing::warn!(?spec, "fault mode: injecting faults into responses");
    }
    let state = Arc::new(ServerState {
        store,
        config,
        http,
        faults,
        multipart_hashes: Default::default(),
    });
    let app = axum::Router::new()
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(state.clone(), faults::inject))
        .with_state(state);
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service())
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(ServerHandle { addr, shutdown, task })
}

/// The one-port split of lakefs-api.md §1.1.
async fn dispatch(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    if gateway::is_gateway_request(&state, &request) {
        return gateway::handle(state, request).await;
    }
    let path = request.uri().path();
    if path == "/_health" {
        return "alive!".into_response();
    }
    if path == "/api/v1" || path.starts_with("/api/v1/") {
        return api::handle(state, request).await;
    }
    (axum::http::StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}
