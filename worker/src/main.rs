//! `worker` binary: settings, tracing, then `worker::run` until SIGTERM or Ctrl-C.

/// mimalloc returns freed memory to the OS promptly; glibc keeps per-thread arenas (argon2 allocates
/// 19 MiB per hash on the blocking pool), which inflated the resident set under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::install_crypto_provider();
    let settings = match shared::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    shared::telemetry::init(&settings.log_format);
    match worker::run(settings, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker failed");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
