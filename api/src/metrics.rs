//! Prometheus metrics and the request middleware that feeds them: request id, tracing span,
//! latency histogram by operation, access log.

use std::time::Instant;

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";

/// The request id of the current request (echoed from the client or generated).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[allow(clippy::expect_used)] // static, valid metric definitions
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("corredor".into()), None).unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by operation, method and status"),
            &["operation", "method", "status"],
        )
        .expect("valid counter definition");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by operation")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["operation", "method"],
        )
        .expect("valid histogram definition");
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(latency.clone()));
        Self { registry, requests, latency }
    }

    fn observe(&self, operation: &str, method: &str, status: &str, secs: f64) {
        self.requests.with_label_values(&[operation, method, status]).inc();
        self.latency.with_label_values(&[operation, method]).observe(secs);
    }

    /// Prometheus text exposition, with extra gauge lines appended.
    pub fn render(&self, extra: &str) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        text.push_str(extra);
        text
    }
}

fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Wraps the whole app: assigns the request id, opens the request's span, records metrics.
pub async fn observe<E: Endpoint>(ep: E, mut req: Request, metrics: std::sync::Arc<Metrics>) -> poem::Result<Response> {
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let started = Instant::now();
    let result = ep.call(req).instrument(span.clone()).await;
    let mut resp = match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let elapsed = started.elapsed();
    let operation = resp.data::<poem_openapi::OperationId>().map(|o| o.0).unwrap_or(if resp.status() == 404 {
        "unmatched"
    } else {
        "other"
    });
    metrics.observe(operation, method.as_str(), resp.status().as_str(), elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    span.in_scope(|| {
        tracing::info!(status = resp.status().as_u16(), latency_ms = elapsed.as_secs_f64() * 1000.0, "request finished")
    });
    Ok(resp)
}
