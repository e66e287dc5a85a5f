//! `api` binary: see `api::cli` for the subcommands.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    api::cli::main().await
}
