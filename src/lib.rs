//! lakefs-fuse: mount lakeFS repositories as a filesystem, and a small lakeFS-compatible server.
//!
//! Dependencies point one way: `cli`/`main` -> {`fuse`, `server`}; `fuse` -> `fs` -> {`cache`, `staging`} ->
//! `lakefs`. The server shares no types with the client side, so a mismatch with real lakeFS cannot hide behind
//! shared request/response structs.

pub mod cache;
pub mod cli;
pub mod fs;
pub mod fuse;
pub mod lakefs;
pub mod metrics;
pub mod mount;
pub mod server;
pub mod staging;
