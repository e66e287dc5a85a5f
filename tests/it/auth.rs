//! `/auth`: registration, login, `/auth/me`, tokens and rate limits.

use jsonwebtoken_free::*;
use serde_json::json;

use crate::common::{PASSWORD, TestApp, body, expect_error};

mod jsonwebtoken_free {
    //! Hand-built tokens, to prove the server rejects what it did not sign.
    use base64_free::encode;

    pub fn unsigned_token(claims: &serde_json::Value) -> String {
        format!("{}.{}.", encode(br#"{"alg":"none","typ":"JWT"}"#), encode(claims.to_string().as_bytes()))
    }

    pub fn hs256_with_wrong_key(claims: &serde_json::Value) -> String {
        format!(
            "{}.{}.{}",
            encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            encode(claims.to_string().as_bytes()),
            encode(b"not-a-real-signature-of-32-bytes")
        )
    }

    mod base64_free {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        /// URL-safe base64 without padding.
        pub fn encode(bytes: &[u8]) -> String {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}

#[tokio::test]
async fn register_returns_a_token_for_a_new_admin_with_its_own_broker() {
    let app = TestApp::spawn().await;
    let resp = app
        .client()
        .post("/auth/register")
        .body_json(&json!({"email": "Admin@Inmobiliaria-Activa.cl", "password": PASSWORD, "broker_name": "Inmobiliaria Activa"}))
        .send()
        .await;
    resp.assert_status_is_ok();
    let b = body(resp).await;
    assert_eq!(b["token_type"], "bearer");
    let me = app
        .client()
        .get("/auth/me")
        .header("authorization", format!("Bearer {}", b["access_token"].as_str().unwrap()))
        .send()
        .await;
    me.assert_status_is_ok();
    let me = body(me).await;
    assert_eq!(me["email"], "admin@inmobiliaria-activa.cl");
    assert_eq!(me["role"], "ADMIN");
    assert_eq!(me["name"], "Inmobiliaria Activa");
    assert_eq!(me["is_active"], true);
    assert!(me["broker_id"].as_i64().is_some());
}

#[tokio::test]
async fn registering_a_taken_email_is_400_email_taken() {
    let app = TestApp::spawn().await;
    app.register("dup@x.cl", "Uno").await;
    let resp = app
        .client()
        .post("/auth/register")
        .body_json(&json!({"email": "DUP@x.cl", "password": PASSWORD, "broker_name": "Dos"}))
        .send()
        .await;
    expect_error(resp, 400, "email_taken").await;
}

#[tokio::test]
async fn weak_passwords_and_bad_emails_are_422_naming_the_field() {
    let app = TestApp::spawn_with(|k| (k == "RATE_LIMITS").then(|| "off".to_string())).await;
    for (password, why) in [("Short1!", "short"), ("NoDigits!!", "digit"), ("NoSpecial123", "special")] {
        let resp = app
            .client()
            .post("/auth/register")
            .body_json(&json!({"email": "a@b.cl", "password": password, "broker_name": "X"}))
            .send()
            .await;
        let b = expect_error(resp, 422, "weak_password").await;
        assert_eq!(b["detail"][0]["loc"], json!(["body", "password"]), "{why}");
    }
    let resp = app
        .client()
        .post("/auth/register")
        .body_json(&json!({"email": "not-an-email", "password": PASSWORD, "broker_name": "X"}))
        .send()
        .await;
    let b = expect_error(resp, 422, "validation_error").await;
    assert_eq!(b["detail"][0]["loc"], json!(["body", "email"]));
    let resp =
        app.client().post("/auth/register").body_json(&json!({"email": "a@b.cl", "password": PASSWORD})).send().await;
    let b = expect_error(resp, 422, "validation_error").await;
    assert_eq!(b["detail"][0]["loc"], json!(["body", "broker_name"]));
    assert_eq!(b["detail"][0]["type"], "missing");
}

#[tokio::test]
async fn login_accepts_the_right_password_only() {
    let app = TestApp::spawn().await;
    let admin = app.register("ana@x.cl", "Ana Propiedades").await;
    let ok =
        app.client().post("/auth/login").body_json(&json!({"email": " ANA@x.cl ", "password": PASSWORD})).send().await;
    ok.assert_status_is_ok();
    assert_eq!(body(ok).await["token_type"], "bearer");

    let wrong =
        app.client().post("/auth/login").body_json(&json!({"email": "ana@x.cl", "password": "Wrong123!"})).send().await;
    assert_eq!(wrong.0.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    expect_error(wrong, 401, "invalid_credentials").await;
    let unknown =
        app.client().post("/auth/login").body_json(&json!({"email": "nadie@x.cl", "password": PASSWORD})).send().await;
    let b = expect_error(unknown, 401, "invalid_credentials").await;
    assert_eq!(b["detail"], "Invalid credentials");
    assert!(admin.id > 0);
}

#[tokio::test]
async fn token_carries_the_documented_claims() {
    let app = TestApp::spawn().await;
    let admin = app.register("claims@x.cl", "Claims").await;
    let claims = shared::auth::jwt::verify(&app.infra().settings, &admin.token).unwrap();
    assert_eq!(claims.sub, admin.id.to_string());
    assert_eq!(claims.email, "claims@x.cl");
    assert_eq!(claims.role, "ADMIN");
    assert_eq!(claims.broker_id, admin.broker_id);
    assert_eq!(claims.exp - claims.iat, 60 * 60);
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_with_www_authenticate() {
    let app = TestApp::spawn().await;
    let admin = app.register("t@x.cl", "T").await;
    let claims = json!({"sub": admin.id.to_string(), "email": "t@x.cl", "role": "SUPERADMIN", "iat": 1, "exp": 4_000_000_000i64});
    let tampered = {
        let parts: Vec<&str> = admin.token.split('.').collect();
        let forged = jsonwebtoken_free::unsigned_token(&claims);
        format!("{}.{}.{}", parts[0], forged.split('.').nth(1).unwrap(), parts[2])
    };
    for header in [
        None,
        Some("Bearer".to_string()),
        Some("Bearer garbage".to_string()),
        Some(format!("Basic {}", admin.token)),
        Some(format!("Bearer {}", unsigned_token(&claims))),
        Some(format!("Bearer {}", hs256_with_wrong_key(&claims))),
        Some(format!("Bearer {tampered}")),
    ] {
        let client = app.client();
        let mut req = client.get("/api/v1/leads");
        if let Some(h) = &header {
            req = req.header("authorization", h);
        }
        let resp = req.send().await;
        assert_eq!(
            resp.0.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{header:?}"
        );
        expect_error(resp, 401, "not_authenticated").await;
    }
}

#[tokio::test]
async fn expired_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let admin = app.register("exp@x.cl", "Exp").await;
    let settings = &app.infra().settings;
    let claims = shared::auth::Claims {
        sub: admin.id.to_string(),
        email: admin.email.clone(),
        role: "ADMIN".into(),
        broker_id: admin.broker_id,
        iat: chrono::Utc::now().timestamp() - 7200,
        exp: chrono::Utc::now().timestamp() - 10,
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(settings.jwt_secret()),
    )
    .unwrap();
    let resp = app.client().get("/auth/me").header("authorization", format!("Bearer {token}")).send().await;
    let b = expect_error(resp, 401, "not_authenticated").await;
    assert!(b["detail"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn role_and_broker_come_from_the_database_not_the_token() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    // A token minted (with the real key) claiming ADMIN for an AGENT is still treated as AGENT.
    let settings = &app.infra().settings;
    let forged = shared::auth::jwt::issue(settings, agent.id, &agent.email, "SUPERADMIN", None).unwrap();
    let me = app.client().get("/auth/me").header("authorization", format!("Bearer {forged}")).send().await;
    let me = body(me).await;
    assert_eq!(me["role"], "AGENT");
    assert_eq!(me["broker_id"], admin.broker_id.unwrap());
    let resp = app.client().get("/api/brokers").header("authorization", format!("Bearer {forged}")).send().await;
    let list = body(resp).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "an agent sees only its own broker: {list}");
}

#[tokio::test]
async fn deleted_users_tokens_stop_working() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    use sea_orm::EntityTrait;
    shared::entities::users::Entity::delete_by_id(admin.id).exec(app.db()).await.unwrap();
    app.infra().users.clear();
    let resp = app.client().get("/auth/me").header("authorization", admin.bearer()).send().await;
    expect_error(resp, 401, "not_authenticated").await;
}

#[tokio::test]
async fn login_is_throttled_after_five_attempts_a_minute() {
    let app = TestApp::spawn().await;
    app.register("brute@x.cl", "Brute").await;
    for _ in 0..5 {
        let r = app
            .client()
            .post("/auth/login")
            .body_json(&json!({"email": "brute@x.cl", "password": "Nope1234!"}))
            .send()
            .await;
        r.assert_status(poem::http::StatusCode::UNAUTHORIZED);
    }
    let resp =
        app.client().post("/auth/login").body_json(&json!({"email": "brute@x.cl", "password": PASSWORD})).send().await;
    let retry_after: u64 =
        resp.0.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap();
    assert!((1..=61).contains(&retry_after));
    expect_error(resp, 429, "rate_limited").await;
    // Another account from the same address is not affected.
    app.register("other@x.cl", "Other").await;
    app.client()
        .post("/auth/login")
        .body_json(&json!({"email": "other@x.cl", "password": PASSWORD}))
        .send()
        .await
        .assert_status_is_ok();
}

#[tokio::test]
async fn registration_is_limited_to_three_an_hour_per_address() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.register(&format!("r{i}@x.cl"), &format!("R{i}")).await;
    }
    let resp = app
        .client()
        .post("/auth/register")
        .body_json(&json!({"email": "r9@x.cl", "password": PASSWORD, "broker_name": "R9"}))
        .send()
        .await;
    expect_error(resp, 429, "rate_limited").await;
}

#[tokio::test]
async fn rate_limits_can_be_switched_off() {
    let app = TestApp::spawn_with(|k| (k == "RATE_LIMITS").then(|| "off".to_string())).await;
    for i in 0..5 {
        app.register(&format!("n{i}@x.cl"), &format!("N{i}")).await;
    }
}

#[tokio::test]
async fn superadmin_comes_from_the_cli_service_and_has_no_broker() {
    let app = TestApp::spawn().await;
    let root = app.superadmin().await;
    assert_eq!(root.broker_id, None);
    let me = body(app.client().get("/auth/me").header("authorization", root.bearer()).send().await).await;
    assert_eq!(me["role"], "SUPERADMIN");
    // Running it again resets the password without creating a second user.
    let created =
        shared::auth::service::upsert_superadmin(app.db(), "root@corredor.cl", "Otra-clave-9", true).await.unwrap();
    assert!(!created);
    let resp = app
        .client()
        .post("/auth/login")
        .body_json(&json!({"email": "root@corredor.cl", "password": "Otra-clave-9"}))
        .send()
        .await;
    resp.assert_status_is_ok();
    // A broker user's email cannot be taken over as superadmin.
    let admin = app.new_broker().await;
    let err = shared::auth::service::upsert_superadmin(app.db(), &admin.email, PASSWORD, true).await.unwrap_err();
    assert_eq!(err.code(), "email_taken");
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_get_distinct_brokers() {
    let app = TestApp::spawn_with(|k| (k == "RATE_LIMITS").then(|| "off".to_string())).await;
    let futures = (0..4).map(|i| {
        let app = &app;
        async move { app.register(&format!("c{i}@x.cl"), "Misma Corredora").await }
    });
    let users = futures_util::future::join_all(futures).await;
    let mut brokers: Vec<i64> = users.iter().map(|u| u.broker_id.unwrap()).collect();
    brokers.sort_unstable();
    brokers.dedup();
    assert_eq!(brokers.len(), 4);
}

#[tokio::test]
async fn authenticated_requests_are_limited_per_user() {
    let app = TestApp::spawn_with(|k| (k == "RATE_LIMIT_API_PER_MINUTE").then(|| "3".to_string())).await;
    let admin = app.new_broker().await; // `/auth/me` inside spends one request
    let agent_of_other = app.new_broker().await;
    for _ in 0..2 {
        app.client().get("/api/v1/leads").header("authorization", admin.bearer()).send().await.assert_status_is_ok();
    }
    let resp = app.client().get("/api/v1/leads").header("authorization", admin.bearer()).send().await;
    assert!(resp.0.headers().get("retry-after").is_some());
    expect_error(resp, 429, "rate_limited").await;
    // Another user has its own budget.
    app.client()
        .get("/api/v1/leads")
        .header("authorization", agent_of_other.bearer())
        .send()
        .await
        .assert_status_is_ok();
}
