fn main() -> std::process::ExitCode {
    lakefs_fuse::cli::main()
}
