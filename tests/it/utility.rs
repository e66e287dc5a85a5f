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
