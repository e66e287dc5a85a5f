//! `/api/broker/calendar/…`: availability windows and blocks (CRUD, validation, roles, tenancy),
//! and Google Calendar against a fake Google speaking its wire format: OAuth consent and callback
//! (signed state, form-encoded token exchange, encrypted refresh token), status and disconnect,
//! `calendar_sync` jobs (insert with a Meet link, patch, delete, token refresh, idempotency, a
//! permanent refusal dead-lettered with Google's answer) and free/busy in the offered slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use futures_util::StreamExt;
use poem::http::StatusCode;
use poem::web::Form;
use poem::{FromRequest, Request, RequestBody, Response};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use shared::appointments::sync::{self, Synced};
use shared::jobs::calendar_sync::{CalendarAction, CalendarSync};

use crate::appointments::{book, complete_lead, delete, expect, get, local, next_monday, post, put};
use crate::common::{TestApp, User, body, expect_error};

// ---------------------------------------------------------------------------------------------
// Live events

/// A subscription to a broker's live-event channel.
pub async fn subscribe(app: &TestApp, broker_id: i64) -> redis::aio::PubSub {
    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(shared::events::broker_channel(app.infra().prefix(), broker_id)).await.unwrap();
    pubsub
}

/// The next event called `name` (others are skipped), within 5 s.
pub async fn next_event(pubsub: &mut redis::aio::PubSub, name: &str) -> Value {
    let mut messages = pubsub.on_message();
    tokio::time::timeout(StdDuration::from_secs(5), async {
        loop {
            let msg = messages.next().await.expect("subscription open");
            let frame: Value = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
            if frame["event"] == name {
                return frame;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event"))
}

// ---------------------------------------------------------------------------------------------
// A fake Google (OAuth token endpoint, userinfo, Calendar v3 events and freeBusy)

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub auth: Option<String>,
    pub form: HashMap<String, String>,
    pub json: Value,
}

/// The Google account an access token belongs to: `main` for the broker's (code `good`), `NAME` for
/// the account of code `good:NAME` (tokens `NAME-access-…`).
pub fn account_of(token: &str) -> String {
    token.split_once("-access-").map_or("main", |(a, _)| a).to_string()
}

#[derive(Default)]
pub struct Google {
    pub seen: Vec<Seen>,
    /// Events by (account, event id).
    pub events: HashMap<(String, String), Value>,
    /// Busy intervals freeBusy reports for the `main` account (RFC 3339 pairs).
    pub busy: Vec<(String, String)>,
    /// Busy intervals of the other accounts.
    pub account_busy: HashMap<String, Vec<(String, String)>>,
    /// Never attach a Meet link, even when one is requested (Google may decline).
    pub no_meet: bool,
    pub fail_free_busy: bool,
    /// Answer every event insert with this status and body.
    pub fail_insert: Option<(u16, Value)>,
    /// Refuse the first access token with 401 (as if Google had revoked it early).
    pub reject_first_token: bool,
    pub refreshes: u32,
}

pub struct FakeGoogle {
    pub base: String,
    pub state: Arc<Mutex<Google>>,
}

impl FakeGoogle {
    pub fn seen(&self, method: &str, path_part: &str) -> Vec<Seen> {
        let g = self.state.lock().unwrap();
        g.seen.iter().filter(|s| s.method == method && s.path.contains(path_part)).cloned().collect()
    }

    pub fn set(&self, f: impl FnOnce(&mut Google)) {
        f(&mut self.state.lock().unwrap());
    }
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json; charset=UTF-8")
        .body(body.to_string())
}

fn google_error(status: u16, message: &str) -> Response {
    reply(status, json!({"error": {"code": status, "message": message, "errors": [{"message": message}]}}))
}

async fn handle(state: Arc<Mutex<Google>>, mut req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let auth = req.header("authorization").map(str::to_string);
    let is_form = req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let bytes = req.take_body().into_vec().await.unwrap_or_default();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let form = if is_form {
        let mut raw = RequestBody::new(poem::Body::from(bytes));
        Form::<HashMap<String, String>>::from_request(&req, &mut raw).await.map(|f| f.0).unwrap_or_default()
    } else {
        HashMap::new()
    };
    let mut g = state.lock().unwrap();
    g.seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        query,
        auth: auth.clone(),
        form: form.clone(),
        json: json.clone(),
    });
    if path == "/token" && method == "POST" {
        let field = |k: &str| form.get(k).map(String::as_str);
        return match field("grant_type") {
            Some("authorization_code")
                if field("code").is_some_and(|c| c == "good" || c.starts_with("good:"))
                    && field("client_secret") == Some("csecret") =>
            {
                let (access, refresh) = match field("code").and_then(|c| c.strip_prefix("good:")) {
                    Some(acct) => (format!("{acct}-access-1"), format!("{acct}-refresh-1")),
                    None => ("access-1".to_string(), "refresh-1".to_string()),
                };
                reply(
                    200,
                    json!({"access_token": access, "expires_in": 3599, "refresh_token": refresh,
                       "scope": "https://www.googleapis.com/auth/calendar openid email", "token_type": "Bearer"}),
                )
            }
            Some("refresh_token") if field("refresh_token").is_some_and(|r| r.ends_with("refresh-1")) => {
                g.refreshes += 1;
                let prefix = field("refresh_token").and_then(|r| r.strip_suffix("-refresh-1"));
                let access = match prefix {
                    Some(acct) => format!("{acct}-access-r{}", g.refreshes),
                    None => format!("access-r{}", g.refreshes),
                };
                reply(200, json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}))
            }
            _ => reply(400, json!({"error": "invalid_grant", "error_description": "Bad Request"})),
        };
    }
    let Some(token) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) else {
        return google_error(401, "Login Required");
    };
    if g.reject_first_token && token == "access-1" {
        return google_error(401, "Invalid Credentials");
    }
    let account = account_of(token);
    if path == "/oauth2/v2/userinfo" {
        let email =
            if account == "main" { "Agenda@Inmobiliaria.cl".to_string() } else { format!("{account}@inmobiliaria.cl") };
        return reply(200, json!({"id": "1", "email": email, "verified_email": true}));
    }
    if path == "/calendar/v3/freeBusy" && method == "POST" {
        if g.fail_free_busy {
            return google_error(500, "Backend Error");
        }
        let cal = json["items"][0]["id"].as_str().unwrap_or("primary").to_string();
        let intervals =
            if account == "main" { g.busy.clone() } else { g.account_busy.get(&account).cloned().unwrap_or_default() };
        let busy: Vec<Value> = intervals.iter().map(|(s, e)| json!({"start": s, "end": e})).collect();
        return reply(
            200,
            json!({"kind": "calendar#freeBusy", "timeMin": json["timeMin"], "timeMax": json["timeMax"],
                                  "calendars": {cal: {"busy": busy}}}),
        );
    }
    let no_meet = g.no_meet;
    let Some(rest) = path.strip_prefix("/calendar/v3/calendars/") else { return google_error(404, "Not Found") };
    let parts: Vec<&str> = rest.split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", [_, "events"]) => {
            if let Some((status, body)) = g.fail_insert.clone() {
                return reply(status, body);
            }
            let id = json["id"].as_str().unwrap_or("generated1").to_string();
            let id = (account, id);
            if g.events.contains_key(&id) {
                return google_error(409, "The requested identifier already exists.");
            }
            let mut event = json.clone();
            if event["conferenceData"]["createRequest"].is_object() && !g.no_meet {
                event["hangoutLink"] = json!("https://meet.google.com/abc-defg-hij");
            }
            event["htmlLink"] = json!(format!("https://www.google.com/calendar/event?eid={}", id.1));
            g.events.insert(id, event.clone());
            reply(200, event)
        }
        ("PATCH", [_, "events", id]) => match g.events.get_mut(&(account, id.to_string())) {
            Some(event) => {
                for (k, v) in json.as_object().cloned().unwrap_or_default() {
                    event[k] = v;
                }
                if json["conferenceData"]["createRequest"].is_object() && !no_meet {
                    event["hangoutLink"] = json!("https://meet.google.com/abc-defg-hij");
                }
                reply(200, event.clone())
            }
            None => google_error(404, "Not Found"),
        },
        ("DELETE", [_, "events", id]) => match g.events.remove(&(account, id.to_string())) {
            Some(_) => Response::builder().status(StatusCode::NO_CONTENT).finish(),
            None => google_error(410, "Resource has been deleted"),
        },
        _ => google_error(404, "Not Found"),
    }
}

pub async fn fake_google() -> FakeGoogle {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let state = Arc::new(Mutex::new(Google::default()));
    let shared_state = state.clone();
    let endpoint = poem::endpoint::make(move |req: Request| handle(shared_state.clone(), req));
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    FakeGoogle { base: format!("http://{addr}"), state }
}

/// An app whose Google settings point at `google`.
pub async fn app_with(google: &FakeGoogle) -> TestApp {
    let base = google.base.clone();
    TestApp::spawn_with(move |k| match k {
        "GOOGLE_API_BASE" | "GOOGLE_OAUTH_BASE" => Some(base.clone()),
        "GOOGLE_CLIENT_ID" => Some("cid.apps.googleusercontent.com".into()),
        "GOOGLE_CLIENT_SECRET" => Some("csecret".into()),
        "GOOGLE_REDIRECT_URI" => Some("http://api.test/api/broker/calendar/callback".into()),
        "FRONTEND_URL" => Some("http://front.test".into()),
        "PROVIDER_TIMEOUT_MS" => Some("3000".into()),
        _ => None,
    })
    .await
}

/// The `state` of a consent URL.
async fn consent_state(app: &TestApp, admin: &User) -> String {
    state_from(app, admin, "/api/broker/calendar/auth-url").await
}

/// The `state` of the consent URL an auth-url endpoint gives `user`.
pub async fn state_from(app: &TestApp, user: &User, path: &str) -> String {
    let b = expect(get(app, user, path).await, 200).await;
    let url = b["auth_url"].as_str().unwrap().to_string();
    let q = url.split_once('?').unwrap().1;
    q.split('&').find_map(|p| p.strip_prefix("state=")).unwrap().to_string()
}

pub async fn callback(app: &TestApp, query: &str) -> poem::test::TestResponse {
    app.client().get(format!("/api/broker/calendar/callback?{query}")).send().await
}

/// Connects `admin`'s broker through the real consent flow.
pub async fn connect(app: &TestApp, admin: &User) {
    let state = consent_state(app, admin).await;
    let resp = callback(app, &format!("code=good&state={state}")).await;
    assert_eq!(resp.0.status(), StatusCode::FOUND);
    assert_eq!(resp.0.headers()["location"], "http://front.test/settings?tab=calendar&status=success");
}

pub async fn scalar<T: sea_orm::TryGetable>(app: &TestApp, sql: &str) -> Option<T> {
    let row =
        app.db().query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql)).await.unwrap()?;
    Some(row.try_get_by_index(0).unwrap())
}

pub async fn pending(app: &TestApp, queue: &str) -> u64 {
    shared::jobs::stats(app.infra(), queue).await.unwrap().pending
}

// ---------------------------------------------------------------------------------------------
// Availability windows and blocks

#[tokio::test]
async fn availability_windows_are_created_listed_updated_and_deleted_by_admins() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let created = expect(
        post(
            &app,
            &admin,
            "/api/broker/calendar/availability",
            json!({"day_of_week": 0, "start_time": "09:00", "end_time": "13:30", "notes": "Mañanas"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["day_of_week"], 0);
    assert_eq!((created["start_time"].as_str(), created["end_time"].as_str()), (Some("09:00"), Some("13:30")));
    assert_eq!(created["slot_duration_minutes"], 60);
    assert_eq!(created["is_active"], true);
    assert_eq!(created["valid_from"], crate::appointments::today().to_string());
    assert!(created["valid_until"].is_null() && created["agent_id"].is_null());
    let id = created["id"].as_i64().unwrap();

    let listed = expect(get(&app, &agent, "/api/broker/calendar/availability").await, 200).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "agents may read the schedule");
    let path = format!("/api/broker/calendar/availability/{id}");
    let updated = expect(
        put(
            &app,
            &admin,
            &path,
            json!({"end_time": "14:00", "slot_duration_minutes": 30,
        "valid_until": "2099-12-31", "agent_id": agent.id, "is_active": false}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!((updated["end_time"].as_str(), updated["slot_duration_minutes"].as_i64()), (Some("14:00"), Some(30)));
    assert_eq!((updated["valid_until"].as_str(), updated["agent_id"].as_i64()), (Some("2099-12-31"), Some(agent.id)));
    assert_eq!(updated["is_active"], false);
    let cleared =
        expect(put(&app, &admin, &path, json!({"valid_until": null, "agent_id": null, "notes": null})).await, 200)
            .await;
    assert!(cleared["valid_until"].is_null() && cleared["agent_id"].is_null() && cleared["notes"].is_null());

    expect_error(
        post(
            &app,
            &agent,
            "/api/broker/calendar/availability",
            json!({"day_of_week": 1, "start_time": "09:00", "end_time": "10:00"}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_error(put(&app, &agent, &path, json!({"end_time": "15:00"})).await, 403, "forbidden").await;
    expect_error(delete(&app, &agent, &path).await, 403, "forbidden").await;
    let other = app.new_broker().await;
    expect_error(put(&app, &other, &path, json!({"end_time": "15:00"})).await, 404, "not_found").await;
    expect_error(delete(&app, &other, &path).await, 404, "not_found").await;
    assert!(
        expect(get(&app, &other, "/api/broker/calendar/availability").await, 200).await.as_array().unwrap().is_empty()
    );

    assert_eq!(expect(delete(&app, &admin, &path).await, 200).await["ok"], true);
    expect_error(delete(&app, &admin, &path).await, 404, "not_found").await;

    // SUPERADMIN names the broker.
    let root = app.superadmin().await;
    let window = json!({"day_of_week": 5, "start_time": "10:00", "end_time": "12:00"});
    expect_error(post(&app, &root, "/api/broker/calendar/availability", window.clone()).await, 422, "validation_error")
        .await;
    let q = format!("/api/broker/calendar/availability?broker_id={}", other.broker_id.unwrap());
    expect(post(&app, &root, &q, window).await, 201).await;
    assert_eq!(
        expect(get(&app, &other, "/api/broker/calendar/availability").await, 200).await.as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn availability_windows_are_validated() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;
    let stranger = app.user_in(&other, "agent").await;
    let base = json!({"day_of_week": 2, "start_time": "09:00", "end_time": "18:00"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (b, field, code) in [
        (with("day_of_week", json!(7)), "day_of_week", "validation_error"),
        (with("day_of_week", json!(-1)), "day_of_week", "validation_error"),
        (with("start_time", json!("25:00")), "start_time", "validation_error"),
        (with("start_time", json!("9am")), "start_time", "validation_error"),
        (with("end_time", json!("08:00")), "end_time", "validation_error"),
        (with("end_time", json!("09:00")), "end_time", "validation_error"),
        (with("slot_duration_minutes", json!(5)), "slot_duration_minutes", "validation_error"),
        (
            json!({"day_of_week": 2, "start_time": "09:00", "end_time": "18:00", "valid_from": "2026-05-10", "valid_until": "2026-05-09"}),
            "valid_until",
            "validation_error",
        ),
        (with("valid_from", json!("10/05/2026")), "valid_from", "validation_error"),
        (with("appointment_type", json!("picnic")), "appointment_type", "invalid_appointment_type"),
        (json!({"start_time": "09:00", "end_time": "18:00"}), "day_of_week", "validation_error"),
    ] {
        let err =
            expect_error(post(&app, &admin, "/api/broker/calendar/availability", b.clone()).await, 422, code).await;
        assert_eq!(err["detail"][0]["loc"][1], field, "{b}");
    }
    expect_error(
        post(&app, &admin, "/api/broker/calendar/availability", with("agent_id", json!(stranger.id))).await,
        404,
        "not_found",
    )
    .await;
    let id = expect(post(&app, &admin, "/api/broker/calendar/availability", base.clone()).await, 201).await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/broker/calendar/availability/{id}");
    expect_error(put(&app, &admin, &path, json!({"start_time": "19:00"})).await, 422, "validation_error").await;
    expect_error(put(&app, &admin, &path, json!({"valid_until": "2000-01-01"})).await, 422, "validation_error").await;
    expect_error(put(&app, &admin, "/api/broker/calendar/availability/x", json!({})).await, 422, "validation_error")
        .await;
    let unchanged = expect(get(&app, &admin, "/api/broker/calendar/availability").await, 200).await;
    assert_eq!(unchanged[0]["start_time"], "09:00");
}

#[tokio::test]
async fn blocks_are_created_listed_and_deleted_by_admins() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let monday = next_monday();
    let b = json!({"start_time": local(monday, 13, 0).to_rfc3339(), "end_time": format!("{monday}T15:00:00")});
    let block = expect(post(&app, &admin, "/api/broker/calendar/blocks", b.clone()).await, 201).await;
    assert_eq!(block["reason"], "blocked");
    assert_eq!(block["start_time"], local(monday, 13, 0).to_rfc3339());
    assert_eq!(block["end_time"], local(monday, 15, 0).to_rfc3339(), "a naive time is Santiago time");
    assert!(block["agent_id"].is_null());
    let listed = expect(get(&app, &agent, "/api/broker/calendar/blocks").await, 200).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    for (bad, field) in [
        (
            json!({"start_time": local(monday, 15, 0).to_rfc3339(), "end_time": local(monday, 13, 0).to_rfc3339()}),
            "end_time",
        ),
        (
            json!({"start_time": local(monday, 15, 0).to_rfc3339(), "end_time": local(monday, 15, 0).to_rfc3339()}),
            "end_time",
        ),
        (json!({"start_time": "mañana", "end_time": local(monday, 13, 0).to_rfc3339()}), "start_time"),
        (json!({"end_time": local(monday, 13, 0).to_rfc3339()}), "start_time"),
    ] {
        let err =
            expect_error(post(&app, &admin, "/api/broker/calendar/blocks", bad).await, 422, "validation_error").await;
        assert_eq!(err["detail"][0]["loc"][1], field);
    }
    expect_error(post(&app, &agent, "/api/broker/calendar/blocks", b.clone()).await, 403, "forbidden").await;
    let other = app.new_broker().await;
    let path = format!("/api/broker/calendar/blocks/{}", block["id"]);
    expect_error(delete(&app, &other, &path).await, 404, "not_found").await;
    expect_error(delete(&app, &agent, &path).await, 403, "forbidden").await;
    assert!(expect(get(&app, &other, "/api/broker/calendar/blocks").await, 200).await.as_array().unwrap().is_empty());
    assert_eq!(expect(delete(&app, &admin, &path).await, 200).await["ok"], true);
    expect_error(delete(&app, &admin, &path).await, 404, "not_found").await;
    let audit = expect(get(&app, &admin, "/api/v1/admin/audit-log?action=calendar_block_create").await, 200).await;
    assert_eq!(audit["total"], 1);
}

// ---------------------------------------------------------------------------------------------
// Google Calendar

#[tokio::test]
async fn without_google_settings_the_calendar_answers_calendar_not_configured() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    expect_error(get(&app, &admin, "/api/broker/calendar/auth-url").await, 400, "calendar_not_configured").await;
    let status = expect(get(&app, &admin, "/api/broker/calendar/status").await, 200).await;
    assert_eq!(
        status,
        json!({"connected": false, "email": null, "calendar_id": null, "connected_at": null, "configured": false})
    );
    // Appointments work offline: no Meet link, no sync job.
    let lead = complete_lead(&app, &admin).await;
    let a = book(&app, &admin, json!({"lead_id": lead, "start_time": local(next_monday(), 10, 0).to_rfc3339()})).await;
    assert!(a["meet_url"].is_null());
    assert_eq!(pending(&app, "calendar_sync").await, 0);
    expect_error(callback(&app, "code=x&state=y").await, 400, "invalid_state").await;
}

#[tokio::test]
async fn the_oauth_callback_stores_an_encrypted_refresh_token_and_redirects() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    expect_error(get(&app, &agent, "/api/broker/calendar/auth-url").await, 403, "forbidden").await;
    let url = expect(get(&app, &admin, "/api/broker/calendar/auth-url").await, 200).await["auth_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with("https://accounts.google.com/o/oauth2/v2/auth?"));
    assert!(url.contains("client_id=cid.apps.googleusercontent.com") && url.contains("access_type=offline"));
    assert!(!url.contains("csecret"));

    connect(&app, &admin).await;
    let exchange = google.seen("POST", "/token");
    assert_eq!(exchange.len(), 1);
    let form = &exchange[0].form;
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "good");
    assert_eq!(form["client_id"], "cid.apps.googleusercontent.com");
    assert_eq!(form["redirect_uri"], "http://api.test/api/broker/calendar/callback");
    assert_eq!(google.seen("GET", "/oauth2/v2/userinfo")[0].auth.as_deref(), Some("Bearer access-1"));

    let broker = admin.broker_id.unwrap();
    let stored: String =
        scalar(&app, &format!("SELECT refresh_token FROM broker_calendar_connections WHERE broker_id = {broker}"))
            .await
            .unwrap();
    assert!(stored.starts_with("enc:v1:") && !stored.contains("refresh-1"));
    assert_eq!(app.infra().cipher.decrypt(&stored).as_deref(), Some("refresh-1"));
    let status = expect(get(&app, &agent, "/api/broker/calendar/status").await, 200).await;
    assert_eq!((status["connected"].as_bool(), status["email"].as_str()), (Some(true), Some("agenda@inmobiliaria.cl")));
    assert_eq!((status["calendar_id"].as_str(), status["configured"].as_bool()), (Some("primary"), Some(true)));
    let audit = expect(get(&app, &admin, "/api/v1/admin/audit-log?action=calendar_connect").await, 200).await;
    assert_eq!(audit["total"], 1);

    expect_error(delete(&app, &agent, "/api/broker/calendar/disconnect").await, 403, "forbidden").await;
    let out = expect(delete(&app, &admin, "/api/broker/calendar/disconnect").await, 200).await;
    assert_eq!(out["ok"], true);
    assert_eq!(expect(get(&app, &admin, "/api/broker/calendar/status").await, 200).await["connected"], false);
}

#[tokio::test]
async fn a_bad_or_expired_state_is_400_and_stores_nothing_and_google_refusals_redirect_with_an_error() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    let broker = admin.broker_id.unwrap();
    let count = || scalar::<i64>(&app, "SELECT count(*) FROM broker_calendar_connections");

    let state = consent_state(&app, &admin).await;
    let mut tampered = state.clone();
    tampered.replace_range(tampered.len() - 3.., "abc");
    expect_error(callback(&app, &format!("code=good&state={tampered}")).await, 400, "invalid_state").await;
    expect_error(callback(&app, "code=good").await, 400, "invalid_state").await;
    // Expired ten minutes ago, signed with the right key.
    let secret = secrecy::ExposeSecret::expose_secret(&app.infra().settings.secret_key).to_string();
    let now = Utc::now().timestamp();
    let claims = json!({"aud": "corredor:google-calendar-oauth", "broker_id": broker, "user_id": admin.id, "iat": now - 1200, "exp": now - 600});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    expect_error(callback(&app, &format!("code=good&state={expired}")).await, 400, "invalid_state").await;
    // An access token is no state.
    expect_error(callback(&app, &format!("code=good&state={}", admin.token)).await, 400, "invalid_state").await;
    assert_eq!(count().await, Some(0));
    assert!(google.seen("POST", "/token").is_empty(), "Google was never asked");

    // Google refuses the code, or the user declines: back to the dashboard with an error.
    let resp = callback(&app, &format!("code=stale&state={state}")).await;
    assert_eq!(resp.0.status(), StatusCode::FOUND);
    assert_eq!(
        resp.0.headers()["location"],
        "http://front.test/settings?tab=calendar&status=error&reason=token_exchange_failed"
    );
    let resp = callback(&app, &format!("error=access_denied&state={state}")).await;
    assert_eq!(
        resp.0.headers()["location"],
        "http://front.test/settings?tab=calendar&status=error&reason=consent_denied"
    );
    assert_eq!(count().await, Some(0));
}

pub fn job(a: &Value, action: CalendarAction) -> CalendarSync {
    CalendarSync { broker_id: a["broker_id"].as_i64().unwrap(), appointment_id: a["id"].as_i64().unwrap(), action }
}

#[tokio::test]
async fn calendar_sync_creates_the_event_with_a_meet_link_then_patches_and_deletes_it() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    connect(&app, &admin).await;
    let lead = complete_lead(&app, &admin).await;
    let monday = next_monday();
    let a = book(
        &app,
        &admin,
        json!({"lead_id": lead, "start_time": local(monday, 10, 0).to_rfc3339(), "notes": "Primera reunión"}),
    )
    .await;
    assert!(a["meet_url"].is_null(), "the API does not call Google inline");
    assert!(google.seen("POST", "/events").is_empty());
    assert_eq!(pending(&app, "calendar_sync").await, 1);

    let done = sync::run(app.infra(), &job(&a, CalendarAction::Upsert), "t").await.unwrap();
    let Synced::Upserted(event) = done else { panic!("{done:?}") };
    let inserted = google.seen("POST", "/events");
    assert_eq!(inserted.len(), 1);
    let sent = &inserted[0];
    assert_eq!(sent.query, "conferenceDataVersion=1");
    assert_eq!(sent.path, "/calendar/v3/calendars/primary/events");
    assert_eq!(sent.auth.as_deref(), Some("Bearer access-1"));
    assert_eq!(sent.json["conferenceData"]["createRequest"]["conferenceSolutionKey"]["type"], "hangoutsMeet");
    assert_eq!(
        sent.json["start"],
        json!({"dateTime": local(monday, 10, 0).to_rfc3339(), "timeZone": "America/Santiago"})
    );
    assert_eq!(sent.json["summary"], "Reunión virtual con María José Pérez");
    let attendees: Vec<&str> =
        sent.json["attendees"].as_array().unwrap().iter().map(|x| x["email"].as_str().unwrap()).collect();
    assert!(attendees.contains(&agent.email.as_str()) && attendees.len() == 2, "{attendees:?}");
    assert!(sent.json["description"].as_str().unwrap().contains("Primera reunión"));
    let detail = expect(get(&app, &admin, &format!("/api/v1/appointments/{}", a["id"])).await, 200).await;
    assert_eq!(detail["meet_url"], "https://meet.google.com/abc-defg-hij");
    assert_eq!(detail["updated_at"], a["updated_at"], "storing the event is not a change of the appointment");
    let stored: String =
        scalar(&app, &format!("SELECT google_event_id FROM appointments WHERE id = {}", a["id"])).await.unwrap();
    assert_eq!(stored, event.id);

    // The same version again (a retry, a duplicate job): Google is not called.
    sync::run(app.infra(), &job(&a, CalendarAction::Upsert), "t2").await.unwrap();
    assert_eq!(google.seen("POST", "/events").len(), 1);
    assert!(google.seen("PATCH", "/events").is_empty());

    // A reschedule patches the event.
    let moved = expect(
        put(
            &app,
            &admin,
            &format!("/api/v1/appointments/{}", a["id"]),
            json!({"start_time": local(monday, 15, 0).to_rfc3339()}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(pending(&app, "calendar_sync").await, 2, "every change enqueues a sync");
    sync::run(app.infra(), &job(&moved, CalendarAction::Upsert), "t3").await.unwrap();
    let patched = google.seen("PATCH", "/events");
    assert_eq!(patched.len(), 1);
    assert_eq!(patched[0].path, format!("/calendar/v3/calendars/primary/events/{}", event.id));
    assert_eq!(patched[0].json["start"]["dateTime"], local(monday, 15, 0).to_rfc3339());
    assert!(patched[0].json.get("conferenceData").is_none(), "the Meet link exists already");

    // A cancel deletes it; a late upsert job of the cancelled appointment deletes too.
    expect(delete(&app, &admin, &format!("/api/v1/appointments/{}", a["id"])).await, 200).await;
    assert_eq!(pending(&app, "calendar_sync").await, 3);
    assert_eq!(sync::run(app.infra(), &job(&a, CalendarAction::Upsert), "t4").await.unwrap(), Synced::Deleted);
    assert_eq!(google.seen("DELETE", "/events").len(), 1);
    assert!(google.state.lock().unwrap().events.is_empty());
    // Deleting an event that is already gone (410) is success.
    let again = sync::run(app.infra(), &job(&a, CalendarAction::Delete), "t5").await.unwrap();
    assert_eq!(again, Synced::Deleted);

    // A disconnected broker: nothing to do.
    expect(delete(&app, &admin, "/api/broker/calendar/disconnect").await, 200).await;
    assert_eq!(
        sync::run(app.infra(), &job(&a, CalendarAction::Delete), "t6").await.unwrap(),
        Synced::Skipped("not_connected")
    );
}

#[tokio::test]
async fn access_tokens_are_refreshed_when_expired_or_refused() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    connect(&app, &admin).await;
    let lead = complete_lead(&app, &admin).await;
    let a = book(
        &app,
        &admin,
        json!({"lead_id": lead, "start_time": local(next_monday(), 10, 0).to_rfc3339(),
        "appointment_type": "property_visit", "property_address": "Los Leones 100, Providencia"}),
    )
    .await;
    // Google refuses the cached token: one refresh, then the call succeeds.
    google.set(|g| g.reject_first_token = true);
    sync::run(app.infra(), &job(&a, CalendarAction::Upsert), "t").await.unwrap();
    let refresh = google.seen("POST", "/token");
    assert_eq!(refresh.len(), 2, "the code exchange and one refresh");
    assert_eq!(refresh[1].form["grant_type"], "refresh_token");
    assert_eq!(refresh[1].form["refresh_token"], "refresh-1");
    let insert = google.seen("POST", "/events");
    assert_eq!(insert.last().unwrap().auth.as_deref(), Some("Bearer access-r1"));
    assert!(insert.last().unwrap().json.get("conferenceData").is_none(), "no Meet link for a property visit");
    assert_eq!(insert.last().unwrap().json["location"], "Los Leones 100, Providencia");
    // An expired cached token is refreshed before the call.
    app.db()
        .execute_unprepared(
            "UPDATE broker_calendar_connections SET access_token_expires_at = now() - interval '1 minute'",
        )
        .await
        .unwrap();
    let moved = expect(
        put(&app, &admin, &format!("/api/v1/appointments/{}", a["id"]), json!({"duration_minutes": 30})).await,
        200,
    )
    .await;
    sync::run(app.infra(), &job(&moved, CalendarAction::Upsert), "t2").await.unwrap();
    assert_eq!(google.seen("POST", "/token").len(), 3);
    assert_eq!(google.seen("PATCH", "/events").last().unwrap().auth.as_deref(), Some("Bearer access-r2"));
}

#[tokio::test]
async fn a_permanent_google_refusal_dead_letters_the_job_with_googles_answer() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    connect(&app, &admin).await;
    google.set(|g| g.fail_insert = Some((400, json!({"error": {"code": 400, "message": "Invalid attendee email."}}))));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(app.infra().clone(), "calendar-worker".into(), vec![], async {
        let _ = stopped.await;
    }));
    let lead = complete_lead(&app, &admin).await;
    let a = book(&app, &admin, json!({"lead_id": lead, "start_time": local(next_monday(), 10, 0).to_rfc3339()})).await;
    let mut dead = None;
    for _ in 0..200 {
        dead = scalar::<String>(&app, "SELECT last_error FROM dead_jobs WHERE queue = 'calendar_sync'").await;
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let error = dead.expect("a dead calendar_sync job");
    assert!(error.contains("HTTP 400") && error.contains("Invalid attendee email."), "{error}");
    let attempts: i32 = scalar(&app, "SELECT attempts FROM dead_jobs WHERE queue = 'calendar_sync'").await.unwrap();
    assert_eq!(attempts, 1, "a 4xx is not retried");
    let payload: Value = scalar(&app, "SELECT payload FROM dead_jobs WHERE queue = 'calendar_sync'").await.unwrap();
    assert_eq!(payload["appointment_id"], a["id"]);
    assert_eq!(google.seen("POST", "/events").len(), 1);
}

#[tokio::test]
async fn google_busy_times_leave_the_offered_slots_and_a_google_outage_only_degrades_them() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    let ana = app.user_in(&admin, "agent").await;
    app.user_in(&admin, "agent").await;
    connect(&app, &admin).await;
    let monday = next_monday();
    let day = format!("start_date={monday}&end_date={monday}");
    let times = |slots: &Value| {
        slots.as_array().unwrap().iter().map(|s| s["time"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };

    // An external event 10:00–11:30, and the event of our own appointment at 15:00 (Ana's).
    let lead = complete_lead(&app, &admin).await;
    let a = book(
        &app,
        &admin,
        json!({"lead_id": lead, "start_time": local(monday, 15, 0).to_rfc3339(), "agent_id": ana.id}),
    )
    .await;
    sync::run(app.infra(), &job(&a, CalendarAction::Upsert), "t").await.unwrap();
    google.set(|g| {
        g.busy = vec![
            (local(monday, 10, 0).to_rfc3339(), local(monday, 11, 30).to_rfc3339()),
            (local(monday, 15, 0).to_rfc3339(), local(monday, 16, 0).to_rfc3339()),
        ]
    });
    let anyone = expect(get(&app, &admin, &format!("/api/v1/appointments/available-slots?{day}")).await, 200).await;
    assert_eq!(times(&anyone), ["09:00", "12:00", "13:00", "14:00", "15:00", "16:00", "17:00"], "15:00 is only Ana's");
    let asked = google.seen("POST", "/freeBusy");
    assert_eq!(asked.last().unwrap().json["items"], json!([{"id": "primary"}]));
    let ana_free = expect(
        get(&app, &admin, &format!("/api/v1/appointments/available-slots?{day}&agent_id={}", ana.id)).await,
        200,
    )
    .await;
    assert_eq!(times(&ana_free), ["09:00", "12:00", "13:00", "14:00", "16:00", "17:00"]);

    // Google down: the slots come from our data alone, still 200.
    google.set(|g| g.fail_free_busy = true);
    for _ in 0..4 {
        let degraded =
            expect(get(&app, &admin, &format!("/api/v1/appointments/available-slots?{day}")).await, 200).await;
        assert_eq!(degraded.as_array().unwrap().len(), 9);
    }
    let health = body(app.client().get("/health").send().await).await;
    assert_eq!(health["circuit_breakers"]["calendar"], "open", "three failures open the breaker");
    let still = expect(get(&app, &admin, &format!("/api/v1/appointments/available-slots?{day}")).await, 200).await;
    assert_eq!(still.as_array().unwrap().len(), 9);
}

#[tokio::test]
async fn the_conversation_engine_gets_free_slots_and_books_through_the_same_rules() {
    use shared::appointments::service::{book as engine_book, next_free_slots};
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let lead = complete_lead(&app, &admin).await;
    expect(put(&app, &admin, &format!("/api/v1/leads/{lead}/assign"), json!({"agent_id": agent.id})).await, 200).await;
    let ctx = shared::Ctx::user(admin.id, admin.broker_id, shared::Role::Admin);
    let from = local(next_monday(), 0, 0).with_timezone(&Utc);
    let slots = next_free_slots(app.infra(), &ctx, Some(lead), from, 3).await.unwrap();
    assert_eq!(slots.iter().map(|s| s.time()).collect::<Vec<_>>(), ["09:00", "10:00", "11:00"]);
    assert_eq!(slots[0].date(), next_monday());
    let booked = engine_book(
        app.infra(),
        &ctx,
        shared::appointments::NewAppointment::new(lead, slots[0].start.with_timezone(&Utc)),
    )
    .await
    .unwrap();
    assert_eq!(booked.row.agent_id, Some(agent.id), "the lead's agent");
    assert_eq!(booked.agent_name.as_deref(), Some("agent user"));
    let next = next_free_slots(app.infra(), &ctx, Some(lead), from, 2).await.unwrap();
    assert_eq!(next.iter().map(|s| s.time()).collect::<Vec<_>>(), ["10:00", "11:00"]);
    let twice = engine_book(
        app.infra(),
        &ctx,
        shared::appointments::NewAppointment::new(lead, slots[0].start.with_timezone(&Utc)),
    )
    .await;
    assert_eq!(twice.unwrap_err().code(), "slot_unavailable");
    // Without a lead: any agent of the caller's broker; never before `from` or now.
    let past = next_free_slots(app.infra(), &ctx, None, Utc::now() - Duration::days(30), 1).await.unwrap();
    assert!(past[0].start > Utc::now());
    let other = app.new_broker().await;
    let other_ctx = shared::Ctx::user(other.id, other.broker_id, shared::Role::Admin);
    assert_eq!(next_free_slots(app.infra(), &other_ctx, Some(lead), from, 1).await.unwrap_err().code(), "not_found");
}
