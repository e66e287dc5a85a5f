//! `/`, `/health`, `/docs`, `/redoc`, `/openapi.json`, `/metrics`, request ids, CORS.

use serde_json::Value;

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

/// Every property of `schema` (and of the schemas inside it) that is not `required` and does not
/// admit `null`, as `Owner.property` paths. A bare `$ref` counts as not admitting it: OpenAPI 3.0
/// ignores a `nullable` beside it.
fn optional_but_not_nullable(schema: &Value, at: &str, out: &mut Vec<String>, seen: &mut usize) {
    let Some(obj) = schema.as_object() else { return };
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> =
            obj.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        for (name, prop) in props {
            if !required.contains(&name.as_str()) {
                *seen += 1;
                if prop["nullable"] != true || prop.get("$ref").is_some() {
                    out.push(format!("{at}.{name}"));
                }
            }
            optional_but_not_nullable(prop, &format!("{at}.{name}"), out, seen);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(inner) = obj.get(key) {
            optional_but_not_nullable(inner, &format!("{at}[{key}]"), out, seen);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, inner) in obj.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            optional_but_not_nullable(inner, &format!("{at}[{key}.{i}]"), out, seen);
        }
    }
}

/// Every schema of a document: the components and each inline body, response and parameter schema.
fn optional_not_nullable_in(spec: &Value) -> (Vec<String>, usize) {
    let (mut out, mut seen) = (Vec::new(), 0);
    for (name, schema) in spec["components"]["schemas"].as_object().into_iter().flatten() {
        optional_but_not_nullable(schema, name, &mut out, &mut seen);
    }
    fn inline(v: &Value, at: &str, out: &mut Vec<String>, seen: &mut usize) {
        match v {
            Value::Object(map) => {
                for (k, inner) in map {
                    if k == "schema" {
                        optional_but_not_nullable(inner, at, out, seen);
                    } else if !matches!(k.as_str(), "example" | "examples") {
                        inline(inner, &format!("{at} {k}"), out, seen);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| inline(i, at, out, seen)),
            _ => {}
        }
    }
    inline(&spec["paths"], "", &mut out, &mut seen);
    (out, seen)
}

/// The server writes `null` for an absent optional value, so the served spec must say every
/// optional property may be `null` (SPEC §3: the spec is complete). poem-openapi's own output does
/// not, which this check catches.
#[tokio::test]
async fn every_optional_property_of_the_served_spec_is_nullable() {
    let app = TestApp::spawn().await;
    let resp = app.client().get("/openapi.json").send().await;
    resp.assert_status_is_ok();
    let text = resp.0.into_body().into_string().await.unwrap();
    let served: Value = serde_json::from_str(&text).unwrap();

    let (missing, seen) = optional_not_nullable_in(&served);
    assert!(missing.is_empty(), "{} optional properties are not nullable: {missing:?}", missing.len());
    assert!(seen > 0, "the spec has no optional property at all");
    let raw: Value = serde_json::from_str(&api::openapi::service().spec()).unwrap();
    let (raw_missing, raw_seen) = optional_not_nullable_in(&raw);
    assert_eq!(raw_seen, seen, "the processing added or removed properties");
    assert!(!raw_missing.is_empty(), "poem-openapi now marks optional properties nullable itself");

    // The documentation pages show the same spec.
    for path in ["/docs", "/redoc"] {
        let html = app.client().get(path).send().await.0.into_body().into_string().await.unwrap();
        assert!(html.contains(&text), "{path} does not embed the served spec");
    }
}

/// Where `value` departs from `schema` (types, required and nullable properties, array items;
/// `$ref`s resolved in `spec`), as JSON-pointer-like paths. Counts the `null`s it checked.
fn departures(spec: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>, nulls: &mut usize) {
    if let Some(r) = schema["$ref"].as_str() {
        let target = spec.pointer(r.trim_start_matches('#')).unwrap_or(&Value::Null);
        return departures(spec, target, value, at, out, nulls);
    }
    if value.is_null() {
        *nulls += 1;
        if schema["nullable"] != true {
            out.push(format!("{at}: null, but the schema does not admit it: {schema}"));
        }
        return;
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        departures(spec, part, value, at, out, nulls);
    }
    let fits = match schema["type"].as_str() {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        _ => true,
    };
    if !fits {
        out.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            departures(spec, &schema["items"], item, &format!("{at}/{i}"), out, nulls);
        }
    }
    if let Some(obj) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !obj.contains_key(name) {
                out.push(format!("{at}/{name}: required but absent"));
            }
        }
        for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(v) = obj.get(name) {
                departures(spec, prop, v, &format!("{at}/{name}"), out, nulls);
            }
        }
    }
}

/// The 200 schema of `method path` in `spec`.
fn ok_schema<'s>(spec: &'s Value, path: &str, method: &str) -> &'s Value {
    let content = spec["paths"][path][method]["responses"]["200"]["content"].as_object().unwrap();
    &content.values().next().unwrap()["schema"]
}

/// A lead created with only a phone comes back with `null`s (email, name, score reasons, …); the
/// answers of `GET /api/v1/leads/{id}` and `GET /api/v1/leads` match the served schema, nulls
/// included, where poem-openapi's unprocessed spec would reject them.
#[tokio::test]
async fn a_lead_full_of_nulls_matches_the_served_schema() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, serde_json::json!({"phone": crate::common::phone()})).await;
    assert!(lead["email"].is_null(), "a lead created without email has email null: {lead}");
    let spec = body(app.client().get("/openapi.json").send().await).await;
    let raw: Value = serde_json::from_str(&api::openapi::service().spec()).unwrap();

    let one_path = format!("/api/v1/leads/{}", lead["id"]);
    for (path, documented) in [(one_path.as_str(), "/api/v1/leads/{lead_id}"), ("/api/v1/leads", "/api/v1/leads")] {
        let resp = app.client().get(path).header("authorization", admin.bearer()).send().await;
        resp.assert_status_is_ok();
        let answer = body(resp).await;
        let (mut out, mut nulls) = (Vec::new(), 0);
        departures(&spec, ok_schema(&spec, documented, "get"), &answer, "", &mut out, &mut nulls);
        assert!(out.is_empty(), "GET {path} departs from the served schema: {out:#?}");
        assert!(nulls > 0, "GET {path} answered without a single null: {answer}");
        let (mut raw_out, mut raw_nulls) = (Vec::new(), 0);
        departures(&raw, ok_schema(&raw, documented, "get"), &answer, "", &mut raw_out, &mut raw_nulls);
        assert!(!raw_out.is_empty(), "GET {path}: the unprocessed spec should reject its nulls");
    }
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
