//! A table of hostile and malformed inputs sent to every endpoint that takes input: each must get a
//! 4xx with a `detail` and a `code`, never a 5xx.

use serde_json::{Value, json};

use crate::common::{TestApp, body, phone};

/// Bodies no endpoint accepts.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut deep = String::new();
    for _ in 0..10_000 {
        deep.push('[');
    }
    vec![
        ("malformed JSON", b"{\"email\": ".to_vec(), "application/json"),
        ("empty body", Vec::new(), "application/json"),
        ("JSON null", b"null".to_vec(), "application/json"),
        ("JSON array", b"[1,2,3]".to_vec(), "application/json"),
        ("JSON string", b"\"hola\"".to_vec(), "application/json"),
        ("wrong content type", b"email=a@b.cl".to_vec(), "application/x-www-form-urlencoded"),
        ("text content type", b"{}".to_vec(), "text/plain"),
        ("invalid UTF-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'], "application/json"),
        ("deeply nested", deep.into_bytes(), "application/json"),
        ("over 1 MiB", format!("{{\"x\": \"{}\"}}", "a".repeat(1_100_000)).into_bytes(), "application/json"),
    ]
}

/// Field values of the wrong kind, far too long, or hostile.
fn bad_values() -> Vec<Value> {
    vec![
        json!(12345),
        json!(true),
        json!([]),
        json!({}),
        json!("x".repeat(100_000)),
        json!("\u{0000}\u{0007}"),
        json!("'; DROP TABLE leads; --"),
        json!("<script>alert(1)</script>"),
        json!("🏠🏡".repeat(300)),
        json!(-1),
        json!(1e308),
    ]
}

fn assert_4xx(what: &str, status: u16, b: &Value) {
    assert!((400..500).contains(&status), "{what}: got {status}: {b}");
    assert!(b["code"].is_string(), "{what}: no code: {b}");
    assert!(!b["detail"].is_null(), "{what}: no detail: {b}");
}

#[tokio::test]
async fn malformed_bodies_are_4xx_on_every_json_endpoint() {
    let app = TestApp::spawn_with(|k| (k == "RATE_LIMITS").then(|| "off".to_string())).await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let id = lead["id"].as_i64().unwrap();
    let endpoints: Vec<(&str, String)> = vec![
        ("POST", "/auth/register".into()),
        ("POST", "/auth/login".into()),
        ("POST", "/api/v1/leads".into()),
        ("PUT", format!("/api/v1/leads/{id}")),
        ("PUT", format!("/api/v1/leads/{id}/assign")),
        ("PUT", format!("/api/v1/leads/{id}/pipeline")),
        ("POST", "/api/brokers".into()),
        ("PUT", format!("/api/brokers/{}", admin.broker_id.unwrap())),
        ("POST", "/api/broker/users".into()),
        ("PUT", format!("/api/broker/users/{}", admin.id)),
        ("POST", "/api/v1/chat/test".into()),
    ];
    for (method, path) in &endpoints {
        for (what, bytes, content_type) in bad_bodies() {
            let client = app.client();
            let req = match *method {
                "POST" => client.post(path),
                _ => client.put(path),
            };
            let resp = req.header("authorization", admin.bearer()).content_type(content_type).body(bytes).send().await;
            let status = resp.0.status().as_u16();
            let b = body(resp).await;
            // An endpoint's role check may answer first (403) for the SUPERADMIN-only ones; all else must be 413/422.
            assert_4xx(&format!("{method} {path} with {what}"), status, &b);
            if status != 403 {
                let expected = if what == "over 1 MiB" { 413 } else { 422 };
                assert_eq!(status, expected, "{method} {path} with {what}: {b}");
            }
        }
    }
}

#[tokio::test]
async fn wrong_typed_and_hostile_field_values_are_4xx_or_stored_inert() {
    let app = TestApp::spawn_with(|k| (k == "RATE_LIMITS").then(|| "off".to_string())).await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let id = lead["id"].as_i64().unwrap();
    let cases: Vec<(&str, String, Value, Vec<&str>)> = vec![
        (
            "POST",
            "/auth/register".into(),
            json!({"email": "v@x.cl", "password": "Seguro123!", "broker_name": "V"}),
            vec!["email", "password", "broker_name"],
        ),
        ("POST", "/auth/login".into(), json!({"email": "v@x.cl", "password": "Seguro123!"}), vec!["email", "password"]),
        (
            "POST",
            "/api/v1/leads".into(),
            json!({"phone": "+56911112222", "name": "N", "email": "n@x.cl"}),
            vec!["phone", "name", "email", "tags", "lead_metadata", "broker_id", "assigned_to", "notes"],
        ),
        (
            "PUT",
            format!("/api/v1/leads/{id}"),
            json!({"name": "N"}),
            vec!["phone", "name", "email", "status", "tags", "lead_metadata", "notes"],
        ),
        ("PUT", format!("/api/v1/leads/{id}/assign"), json!({"agent_id": admin.id}), vec!["agent_id"]),
        ("PUT", format!("/api/v1/leads/{id}/pipeline"), json!({"stage": "entrada"}), vec!["stage"]),
        (
            "POST",
            "/api/v1/chat/test".into(),
            json!({"message": "hola", "lead_id": id}),
            vec!["message", "lead_id", "provider"],
        ),
        (
            "POST",
            "/api/broker/users".into(),
            json!({"email": "u@x.cl", "password": "Seguro123!", "name": "U"}),
            vec!["email", "password", "name", "role", "broker_id"],
        ),
    ];
    for (method, path, valid, fields) in &cases {
        for field in fields {
            for value in bad_values() {
                let mut payload = valid.clone();
                payload[*field] = value.clone();
                let client = app.client();
                let req = match *method {
                    "POST" => client.post(path),
                    _ => client.put(path),
                };
                let resp = req.header("authorization", admin.bearer()).body_json(&payload).send().await;
                let status = resp.0.status().as_u16();
                let b = body(resp).await;
                let what = format!(
                    "{method} {path} with {field} = {}",
                    value.to_string().chars().take(40).collect::<String>()
                );
                assert!(status < 500, "{what}: got {status}: {b}");
                if status >= 400 {
                    assert_4xx(&what, status, &b);
                }
            }
        }
    }
    // Whatever was accepted was stored inert: names never keep markup.
    let page =
        body(app.client().get("/api/v1/leads?limit=200").header("authorization", admin.bearer()).send().await).await;
    for l in page["data"].as_array().unwrap() {
        assert!(!l["name"].as_str().unwrap_or_default().contains("<script"), "{l}");
    }
}

#[tokio::test]
async fn malformed_query_and_path_parameters_are_422() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    for path in [
        "/api/v1/leads/abc",
        "/api/v1/leads/99999999999999999999999",
        "/api/v1/leads/-1.5",
        "/api/v1/leads?skip=abc",
        "/api/v1/leads?limit=1e9",
        "/api/v1/leads?min_score=NaN",
        "/api/v1/leads?max_score=-3",
        "/api/brokers?limit=100000",
        "/api/brokers/xyz",
        "/api/broker/users?broker_id=nope",
        "/api/v1/admin/audit-log?page=0",
        "/api/v1/leads?search=a%00b",
    ] {
        let resp = app.client().get(path).header("authorization", admin.bearer()).send().await;
        let status = resp.0.status().as_u16();
        let b = body(resp).await;
        assert_eq!(status, 422, "{path}: {b}");
        assert_eq!(b["code"], "validation_error", "{path}");
        assert!(b["detail"][0]["loc"].is_array(), "{path}: {b}");
    }
    let search = format!("/api/v1/leads?search={}", "a".repeat(201));
    let resp = app.client().get(search).header("authorization", admin.bearer()).send().await;
    assert_eq!(resp.0.status().as_u16(), 422);
}

#[tokio::test]
async fn unicode_survives_intact() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app
        .lead(
            &admin,
            json!({"phone": phone(), "name": "Ñandú Çağlar 李雷 🏠", "lead_metadata": {"nota": "señal ✓ ümlaut"}}),
        )
        .await;
    assert_eq!(lead["name"], "Ñandú Çağlar 李雷 🏠");
    assert_eq!(lead["lead_metadata"]["nota"], "señal ✓ ümlaut");
}
