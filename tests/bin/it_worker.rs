//! The worker binary's code as a separate process, for the crash-safety test (a test can only
//! locate binaries of its own package). Same three steps as `worker/src/main.rs`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::install_crypto_provider();
    let Ok(settings) = shared::Settings::from_env() else { return std::process::ExitCode::FAILURE };
    shared::telemetry::init(&settings.log_format);
    match worker::run(settings, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
