fn main() -> std::process::ExitCode {
    // fuser's worker threads get Rust's default 2 MiB stack, and they poll each request's future: an upload
    // through the client layers (aws-sdk-s3 under retries, metrics, fault injection) needs more than that in
    // debug builds. Threads read this once, on the first spawn, so it is set before any thread exists.
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", (8usize << 20).to_string());
    }
    keep_freed_memory();
    lakefs_fuse::cli::main()
}

/// Object data moves through the mount in blocks of about 1 MiB that are allocated and freed constantly. By
/// default glibc serves each from a fresh mmap (or trims the heap after freeing it), so every block costs page
/// faults and zeroing of new pages: a third of the CPU time of a sequential read. Keeping freed memory for reuse
/// stops that; what the mount holds stays bounded by `max_memory`, which the block cache enforces.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
