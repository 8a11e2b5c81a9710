fn main() -> std::process::ExitCode {
    // fuser's worker threads get Rust's default 2 MiB stack, and they poll each request's future: an upload
    // through the client layers (aws-sdk-s3 under retries, metrics, fault injection) needs more than that in
    // debug builds. Threads read this once, on the first spawn, so it is set before any thread exists.
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", (8usize << 20).to_string());
    }
    lakefs_fuse::cli::main()
}
