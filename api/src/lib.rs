//! The Corredor HTTP API as a library: `app` builds the endpoint (tests call it directly), `serve`
//! runs it on any acceptor with graceful shutdown, `cli` holds the binary's subcommands.

pub mod body;
pub mod cli;
pub mod error;
pub mod json_out;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod security;
pub mod state;
pub mod ws;

use std::future::Future;
use std::time::Duration;

use poem::listener::Acceptor;
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoResponse, Route, Server, get};

pub use state::AppState;

/// Requests with a larger body are refused with 413 before they are read.
pub const MAX_BODY_BYTES: usize = 60 * 1024 * 1024;

/// An endpoint made by `make` on its first request.
struct Lazy {
    make: fn() -> poem::endpoint::BoxEndpoint<'static, poem::Response>,
    built: std::sync::OnceLock<poem::endpoint::BoxEndpoint<'static, poem::Response>>,
}

impl Lazy {
    fn new(make: fn() -> poem::endpoint::BoxEndpoint<'static, poem::Response>) -> Self {
        Lazy { make, built: std::sync::OnceLock::new() }
    }
}

impl Endpoint for Lazy {
    type Output = poem::Response;

    async fn call(&self, req: poem::Request) -> poem::Result<poem::Response> {
        self.built.get_or_init(self.make).call(req).await
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> impl Endpoint {
    let api = openapi::service();
    // The documentation pages embed the whole spec (close to a megabyte each): built on their first
    // request rather than held by every idle process.
    let swagger = Lazy::new(|| openapi::swagger_ui().boxed());
    let redoc = Lazy::new(|| openapi::redoc().boxed());
    let spec = Lazy::new(|| openapi::spec_endpoint().boxed());
    let settings = &state.infra.settings;
    let cors = Cors::new()
        .allow_origins(settings.allowed_origins.iter().map(String::as_str))
        .allow_credentials(true)
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allow_headers(["authorization", "content-type", "accept", "origin", "x-requested-with", "x-request-id"])
        .expose_headers(["x-request-id", "retry-after"]);
    let metrics = state.metrics.clone();
    Route::new()
        .nest("/", api)
        .nest("/docs", swagger)
        .nest("/redoc", redoc)
        .at("/openapi.json", spec)
        .at("/metrics", get(routes::utility::metrics))
        .at("/ws/:broker_id/:user_id", get(ws::connect))
        .before(|mut req| async move {
            // The reference service served the broker collection with a trailing slash too.
            if req.uri().path() == "/api/brokers/" {
                let target = match req.uri().query() {
                    Some(q) => format!("/api/brokers?{q}"),
                    None => "/api/brokers".to_string(),
                };
                if let Ok(uri) = target.parse() {
                    *req.uri_mut() = uri;
                }
            }
            // PostgreSQL text cannot hold NUL; refuse it in the path or query before any handler sees it.
            let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0');
            if req.uri().path_and_query().is_some_and(|pq| has_nul(pq.as_str())) {
                return Err(error::ApiError(shared::Error::invalid(
                    "validation_error",
                    shared::error::FieldError {
                        loc: vec!["query".into()],
                        msg: "NUL characters are not allowed".into(),
                        kind: "string_nul".into(),
                    },
                ))
                .into());
            }
            // Refuse declared oversize bodies before reading them; JSON bodies are also read with a limit.
            let declared = req.header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            if declared > MAX_BODY_BYTES {
                return Err(
                    error::ApiError(shared::Error::PayloadTooLarge("The request body is too large".into())).into()
                );
            }
            Ok(req)
        })
        .data(state)
        .with(poem::middleware::CatchPanic::new().with_handler(error::panicked))
        .around(|ep, req| async move {
            let path = req.uri().path().to_string();
            Ok(match ep.call(req).await {
                Ok(resp) => resp.into_response(),
                Err(err) => error::catch_all(err, &path),
            })
        })
        .with(cors)
        // Every answer is JSON, CSV or the docs' HTML: never let a browser sniff a stored payload into HTML.
        .with(poem::middleware::SetHeader::new().overriding("x-content-type-options", "nosniff"))
        .around(move |ep, req| metrics::observe(ep, req, metrics.clone()))
}

/// Wraps a TCP acceptor so every connection has `TCP_NODELAY`: a response written in more than one
/// segment must not wait on the client's delayed ACK (Nagle), which showed as ~40 ms tail latency.
pub struct NoDelay<A>(pub A);

impl<A: Acceptor<Io = tokio::net::TcpStream>> Acceptor for NoDelay<A> {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<poem::web::LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(Self::Io, poem::web::LocalAddr, poem::web::RemoteAddr, poem::http::uri::Scheme)> {
        let (io, local, remote, scheme) = self.0.accept().await?;
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        Ok((io, local, remote, scheme))
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most 25 s.
pub async fn serve<A: Acceptor + 'static>(
    acceptor: A,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(state), shutdown, Some(Duration::from_secs(25)))
        .await
}
