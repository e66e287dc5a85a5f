//! The API as a separate process on an ephemeral port (printed on stdout as `listening <addr>`),
//! for tests that need two API processes. Same set-up as `api serve`.

use poem::listener::{Acceptor, Listener, TcpListener};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::install_crypto_provider();
    let Ok(settings) = shared::Settings::from_env() else { return std::process::ExitCode::FAILURE };
    shared::telemetry::init(&settings.log_format);
    let Ok(infra) = shared::Infra::connect(settings).await else { return std::process::ExitCode::FAILURE };
    let Ok(acceptor) = TcpListener::bind("127.0.0.1:0").into_acceptor().await else {
        return std::process::ExitCode::FAILURE;
    };
    let addr = acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied());
    let Some(addr) = addr else { return std::process::ExitCode::FAILURE };
    println!("listening {addr}");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match api::serve(api::NoDelay(acceptor), api::AppState::new(infra), shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
