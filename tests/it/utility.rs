//! `/`, `/health`, `/docs`, `/redoc`, `/openapi.json`, `/metrics`, request ids, CORS.

use crate::common::{TestApp, body};

#[tokio::test]
async fn root_points_to_the_docs() {
    let app = TestApp::spawn().await;
    let resp = app.client().get("/").send().await;
    resp.assert_status_is_ok();
    let b = body(resp).await;
    assert_eq!(b["docs"], "/docs");
    assert_eq!(b["message"], "Corredor API");
}

#[tokio::test]
async fn health_reports_every_dependency() {
    let app = TestApp::spawn().await;
    let resp = app.client().get("/health").send().await;
    resp.assert_status_is_ok();
    let b = body(resp).await;
    assert_eq!(b["status"], "healthy");
    assert_eq!(b["database"], "ok");
    assert_eq!(b["redis"], "ok");
    for breaker in ["llm", "embeddings", "calendar", "telegram", "whatsapp", "vapi"] {
        assert_eq!(b["circuit_breakers"][breaker], "closed", "{breaker}");
    }
    assert!(b["cache"]["hit_rate"].is_number());
    assert!(b["queues"].is_object());
    assert_eq!(b["websocket"]["connections"], 0);
}

#[tokio::test]
async fn every_response_carries_a_request_id_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let echoed = app.client().get("/health").header("x-request-id", "abc-123").send().await;
    assert_eq!(echoed.0.headers().get("x-request-id").unwrap(), "abc-123");
    let generated = app.client().get("/nope").send().await;
    let id = generated.0.headers().get("x-request-id").unwrap().to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    // Unprintable or oversized ids are replaced, not echoed.
    let long = "x".repeat(300);
    let replaced = app.client().get("/health").header("x-request-id", long.as_str()).send().await;
    assert_ne!(replaced.0.headers().get("x-request-id").unwrap().to_str().unwrap(), long);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = TestApp::spawn().await;
    let resp = app.client().get("/api/v1/nothing-here").send().await;
    let b = crate::common::expect_error(resp, 404, "not_found").await;
    assert!(b["detail"].is_string());
    let resp = app.client().delete("/auth/login").send().await;
    crate::common::expect_error(resp, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn docs_redoc_and_the_spec_are_served() {
    let app = TestApp::spawn().await;
    for path in ["/docs", "/redoc"] {
        let resp = app.client().get(path).send().await;
        resp.assert_status_is_ok();
        let html = resp.0.into_body().into_string().await.unwrap();
        assert!(html.to_lowercase().contains("<html"), "{path}");
    }
    let spec = body(app.client().get("/openapi.json").send().await).await;
    assert_eq!(spec["info"]["title"], "Corredor API");
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/me",
        "/api/v1/leads",
        "/api/v1/leads/{lead_id}",
        "/api/v1/leads/bulk-import",
        "/api/v1/leads/{lead_id}/assign",
        "/api/v1/leads/{lead_id}/pipeline",
        "/api/v1/leads/{lead_id}/export",
        "/api/brokers",
        "/api/brokers/{broker_id}",
        "/api/broker/users",
        "/api/broker/users/{user_id}",
        "/health",
        "/",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the spec");
    }
    assert!(spec["components"]["securitySchemes"].as_object().is_some_and(|s| !s.is_empty()));
    let create = &spec["paths"]["/api/v1/leads"]["post"]["responses"];
    for status in ["201", "401", "409", "422"] {
        assert!(create[status].is_object(), "POST /api/v1/leads documents {status}");
    }
}

/// The committed `openapi.json` is what clients generate code from; it must match the server.
/// Regenerate it with `cargo run -p api -- openapi > openapi.json`.
#[test]
fn committed_openapi_json_matches_the_server() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json"))
        .expect("openapi.json at the repository root");
    let current = api::openapi::spec_json();
    let committed: serde_json::Value = serde_json::from_str(&committed).expect("valid JSON");
    let current: serde_json::Value = serde_json::from_str(&current).unwrap();
    assert!(committed == current, "openapi.json is stale: run `cargo run -p api -- openapi > openapi.json`");
}

#[tokio::test]
async fn metrics_expose_request_latency_by_operation() {
    let app = TestApp::spawn().await;
    app.client().get("/health").send().await.assert_status_is_ok();
    let resp = app.client().get("/metrics").send().await;
    resp.assert_status_is_ok();
    let text = resp.0.into_body().into_string().await.unwrap();
    assert!(
        text.contains("corredor_http_request_duration_seconds_bucket{method=\"GET\",operation=\"health\""),
        "{text}"
    );
    assert!(text.contains("corredor_http_requests_total{method=\"GET\",operation=\"health\",status=\"200\"} 1"));
}

#[tokio::test]
async fn cors_allows_the_configured_origins_only() {
    let app = TestApp::spawn_with(|k| (k == "ALLOWED_ORIGINS").then(|| "https://panel.corredor.cl".to_string())).await;
    let ok = app
        .client()
        .options("/api/v1/leads")
        .header("origin", "https://panel.corredor.cl")
        .header("access-control-request-method", "GET")
        .send()
        .await;
    assert_eq!(ok.0.headers().get("access-control-allow-origin").unwrap(), "https://panel.corredor.cl");
    let denied = app
        .client()
        .options("/api/v1/leads")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await;
    assert!(denied.0.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn health_is_503_when_the_database_is_unreachable() {
    let app = TestApp::spawn().await;
    // Point a second app at a database server that does not exist.
    let settings = shared::Settings::from_lookup(|k| match k {
        "DATABASE_URL" => Some(format!("{}/{}", crate::common::server_url(), app.db_name)),
        "REDIS_URL" => Some(crate::common::redis_url()),
        _ => None,
    })
    .unwrap();
    let infra = shared::Infra::connect(settings).await.unwrap();
    infra.db.clone().close().await.unwrap();
    let broken = api::AppState::new(infra);
    let resp = poem::test::TestClient::new(api::app(broken)).get("/health").send().await;
    resp.assert_status(poem::http::StatusCode::SERVICE_UNAVAILABLE);
    let b = body(resp).await;
    assert_eq!(b["status"], "unhealthy");
    assert!(b["database"].as_str().unwrap().starts_with("error"));
}
