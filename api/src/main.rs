//! `api` binary: see `api::cli` for the subcommands.

/// mimalloc returns freed memory to the OS promptly; glibc keeps per-thread arenas (argon2 allocates
/// 19 MiB per hash on the blocking pool), which inflated the resident set under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    api::cli::main().await
}
