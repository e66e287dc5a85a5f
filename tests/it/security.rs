//! The security sweep: a second broker's ADMIN and AGENT reach none of the first broker's objects
//! through any operation of the published route table; forged, expired and wrong-algorithm tokens
//! are refused; logins are throttled; webhooks need their signatures; secrets stay out of logs and
//! error bodies; injection payloads are stored inert; CSV exports neutralise formulas.

use std::collections::{BTreeMap, BTreeSet};

use poem::http::{Method, StatusCode};
use poem::test::TestResponse;
use serde_json::{Value, json};

use poem::test::{TestForm, TestFormField};

use crate::common::{PASSWORD, TestApp, User, body, expect_error, phone};

/// Sends `method path` as `user` with an optional JSON body.
async fn send(app: &TestApp, user: Option<&User>, method: &Method, path: &str, b: Option<&Value>) -> TestResponse {
    let client = app.client();
    let mut req = match *method {
        Method::GET => client.get(path),
        Method::POST => client.post(path),
        Method::PUT => client.put(path),
        Method::PATCH => client.patch(path),
        Method::DELETE => client.delete(path),
        _ => panic!("unexpected method {method}"),
    };
    if let Some(u) = user {
        req = req.header("authorization", u.bearer());
    }
    match b {
        Some(b) => req.body_json(b).send().await,
        None => req.send().await,
    }
}

/// Status and body text of a response.
async fn status_and_text(resp: TestResponse) -> (u16, String, Option<String>) {
    let status = resp.0.status().as_u16();
    let ct = resp.0.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = resp.0.into_body().into_string().await.expect("body");
    (status, text, ct)
}

async fn created(resp: TestResponse) -> Value {
    let status = resp.0.status().as_u16();
    let b = body(resp).await;
    assert!((200..=202).contains(&status), "fixture not created ({status}): {b}");
    b
}

// ---------------------------------------------------------------------------------------------
// 1. Cross-tenant access, generated from the route table

/// Operations that are not called with a user token at all: they authenticate the sender with
/// the channel's own secret (covered by `webhooks_without_a_valid_signature_are_refused_and_store_nothing`).
const OWN_AUTH: &[(&str, &str)] = &[
    ("webhooks_broker_telegram", "Telegram's secret token header, not a user token"),
    ("webhooks_broker_whatsapp_verify", "Meta's verify token, not a user token"),
    ("webhooks_broker_whatsapp", "Meta's X-Hub-Signature-256, not a user token"),
];

/// Operations only the SUPERADMIN may call: another broker's ADMIN (and AGENT) must get 403 there,
/// whatever the id.
const SUPERADMIN_ONLY: &[(&str, &str)] = &[
    ("brokers_update", "broker writes are the platform's (SPEC §15)"),
    ("brokers_deactivate", "broker writes are the platform's (SPEC §15)"),
    ("admin_chat_config_get", "the platform's view of any broker's channel credentials"),
    ("admin_chat_config_put", "the platform's view of any broker's channel credentials"),
    ("admin_chat_config_register_webhook", "the platform's view of any broker's channel credentials"),
];

/// Path parameters that name no object of a broker: the same values exist for every broker, so
/// the check there is only that B's answer carries none of A's data.
const NOT_OBJECTS: &[(&str, &str, &str)] = &[
    ("stage", "entrada", "a pipeline stage name, shared by every broker"),
    ("agent_type", "perfilador", "a template agent type, shared by every broker"),
];

/// The fixture (one of broker A's objects) that a path parameter names, or `None` when the
/// parameter is unknown to this test (which then fails, naming the route).
fn object_of(path: &str, param: &str) -> Option<&'static str> {
    Some(match param {
        "broker_id" => "broker",
        "user_id" => "agent",
        "version_id" => "prompt_version",
        "id" if path.starts_with("/api/v1/admin/tasks/") => "dead_job",
        "id" if path.starts_with("/api/v1/kb/") => "kb_entry",
        "job_id" if path.starts_with("/api/v1/leads/bulk-import/") => "import_job",
        "lead_id" => "lead",
        "appointment_id" => "appointment",
        "slot_id" => "availability_slot",
        "block_id" => "calendar_block",
        "template_id" => "template",
        "campaign_id" => "campaign",
        "step_id" => "campaign_step",
        "call_id" => "call",
        _ => return None,
    })
}

/// One operation of the published document.
#[derive(Clone, Debug)]
struct Op {
    id: String,
    method: Method,
    path: String,
    params: Vec<String>,
    /// Whether the operation takes a `broker_id` query parameter (the SUPERADMIN's choice of broker).
    broker_query: bool,
    body_schema: Option<Value>,
}

fn operations() -> Vec<Op> {
    let spec: Value = serde_json::from_str(&api::openapi::spec_json()).expect("spec is JSON");
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(m) = method.to_uppercase().parse::<Method>() else { continue };
            let params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().expect("name").into()).collect()
                })
                .unwrap_or_default();
            let broker_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query" && p["name"] == "broker_id"));
            let body_schema = op["requestBody"]["content"]["application/json"]["schema"].clone();
            ops.push(Op {
                broker_query,
                id: op["operationId"].as_str().expect("operationId").into(),
                method: m,
                path: path.clone(),
                params,
                body_schema: (!body_schema.is_null()).then(|| resolve(&spec, &body_schema)),
            });
        }
    }
    ops
}

fn resolve(spec: &Value, schema: &Value) -> Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().expect("ref name");
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema.clone(),
    }
}

/// The smallest body the schema accepts: its required properties with neutral values.
fn minimal_body(schema: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let prop = &schema["properties"][name];
        let v = match prop["type"].as_str() {
            Some("integer") | Some("number") => json!(1),
            Some("boolean") => json!(false),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => prop["enum"].get(0).cloned().unwrap_or_else(|| json!("x")),
        };
        out.insert(name.to_string(), v);
    }
    Value::Object(out)
}

/// The body B sends to `op`: valid on its own terms (B's own objects where it names one), so a
/// validation error never hides the tenancy check.
fn body_for(op: &Op, b_lead: i64, b_agent: i64) -> Option<Value> {
    let schema = op.body_schema.as_ref()?;
    Some(match op.id.as_str() {
        "prompt_versions_create" => json!({"version_tag": "b-sweep", "content": "b"}),
        "leads_update" => json!({"name": "B was here"}),
        "leads_assign" => json!({"agent_id": b_agent}),
        "leads_move_stage" => json!({"stage": "perfilamiento"}),
        "pipeline_lead_move_stage" => json!({"new_stage": "perfilamiento"}),
        "pipeline_lead_assign" => json!({"agent_id": b_agent}),
        "conversations_human_message" | "conversations_send_message" => json!({"text": "hola de B"}),
        "kb_update" => json!({"title": "B was here"}),
        "appointments_update" => json!({"notes": "B was here"}),
        "calendar_availability_update" => json!({"notes": "B was here"}),
        "templates_update" => json!({"content": "B was here"}),
        "templates_render" => json!({"lead_id": b_lead}),
        "campaigns_update" => json!({"name": "B was here"}),
        "campaigns_add_step" => json!({"step_number": 9, "action": "send_message", "message_text": "B"}),
        "campaigns_update_step" => json!({"message_text": "B was here"}),
        "campaigns_apply" => json!({"lead_ids": [b_lead]}),
        "brokers_update" => json!({"name": "B was here"}),
        "broker_users_update" => json!({"name": "B was here"}),
        _ => minimal_body(schema),
    })
}

/// One broker's objects of every kind, each carrying `marker` in a text field where it has one.
struct Fixtures {
    ids: BTreeMap<&'static str, i64>,
    marker: String,
}

async fn fixtures_of(app: &TestApp, admin: &User, agent: &User) -> Fixtures {
    let marker = format!("Zorro{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut ids = BTreeMap::new();
    ids.insert("broker", admin.broker_id.expect("broker"));
    ids.insert("agent", agent.id);
    let n = &marker[5..13];
    let lead = app
        .lead(
            admin,
            json!({"phone": phone(), "name": format!("{marker} Pérez"), "email": format!("{n}@correo.cl"),
                   "notes": marker, "assigned_to": agent.id}),
        )
        .await;
    let lead_id = lead["id"].as_i64().expect("lead id");
    ids.insert("lead", lead_id);

    let post = |path: &'static str, b: Value| async move {
        created(send(app, Some(admin), &Method::POST, path, Some(&b)).await).await
    };
    let start = chrono::Utc::now() + chrono::Duration::days(3);
    let appt = post(
        "/api/v1/appointments",
        json!({"lead_id": lead_id, "start_time": start.to_rfc3339(), "notes": marker, "agent_id": agent.id}),
    )
    .await;
    ids.insert("appointment", appt["id"].as_i64().expect("appointment id"));
    let slot = post(
        "/api/broker/calendar/availability",
        json!({"day_of_week": 0, "start_time": "09:00", "end_time": "12:00", "notes": marker}),
    )
    .await;
    ids.insert("availability_slot", slot["id"].as_i64().expect("slot id"));
    let block = post(
        "/api/broker/calendar/blocks",
        json!({"start_time": (start + chrono::Duration::days(1)).to_rfc3339(),
               "end_time": (start + chrono::Duration::days(1) + chrono::Duration::hours(2)).to_rfc3339(), "reason": marker}),
    )
    .await;
    ids.insert("calendar_block", block["id"].as_i64().expect("block id"));
    let template = post(
        "/api/v1/templates",
        json!({"name": marker, "channel": "telegram", "agent_type": "perfilador", "content": format!("Hola {{{{name}}}} {marker}")}),
    )
    .await;
    ids.insert("template", template["id"].as_i64().expect("template id"));
    let campaign = post("/api/v1/campaigns", json!({"name": marker, "description": marker})).await;
    let campaign_id = campaign["id"].as_i64().expect("campaign id");
    ids.insert("campaign", campaign_id);
    let step = created(
        send(
            app,
            Some(admin),
            &Method::POST,
            &format!("/api/v1/campaigns/{campaign_id}/steps"),
            Some(&json!({"step_number": 1, "action": "send_message", "message_text": marker})),
        )
        .await,
    )
    .await;
    ids.insert("campaign_step", step["id"].as_i64().expect("step id"));
    let kb = post("/api/v1/kb", json!({"title": marker, "content": format!("{marker} vende casas en Ñuñoa")})).await;
    ids.insert("kb_entry", kb["id"].as_i64().expect("kb id"));
    let version =
        post("/api/broker/config/prompt-versions", json!({"version_tag": format!("v-{n}"), "content": marker})).await;
    ids.insert("prompt_version", version["id"].as_i64().expect("version id"));
    let call = post("/api/v1/calls", json!({"lead_id": lead_id, "call_purpose": "calificacion_inicial"})).await;
    ids.insert("call", call["id"].as_i64().expect("call id"));

    let task_id = uuid::Uuid::new_v4().to_string();
    let dead = shared::tasks::DeadJob {
        queue: "noop".into(),
        task_id: task_id.clone(),
        payload: json!({"id": 1, "broker_id": admin.broker_id, "note": marker}),
        broker_id: admin.broker_id,
        lead_id: Some(lead_id),
        attempts: 1,
        errors: vec![(chrono::Utc::now(), format!("provider said no to {marker}"))],
    };
    ids.insert("dead_job", shared::tasks::record(app.infra(), dead).await.expect("dead job"));

    let csv = format!("phone,name\n{},{marker} Import\n", phone());
    let resp = app
        .client()
        .post("/api/v1/leads/bulk-import?async=true")
        .header("authorization", admin.bearer())
        .multipart(
            TestForm::new().field(
                TestFormField::bytes(csv.into_bytes())
                    .name("file")
                    .filename(format!("{marker}.csv"))
                    .content_type("text/csv"),
            ),
        )
        .send()
        .await;
    ids.insert("import_job", created(resp).await["job_id"].as_i64().expect("job id"));
    Fixtures { ids, marker }
}

/// A digest of every row of `broker`'s in each table that has a `broker_id`, to prove another
/// broker's calls changed nothing of it.
async fn snapshot(app: &TestApp, broker: i64) -> BTreeMap<String, String> {
    use sea_orm::ConnectionTrait;
    let db = app.db();
    let tables = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT table_name::text FROM information_schema.columns \
             WHERE column_name = 'broker_id' AND table_schema = 'public' ORDER BY 1",
        ))
        .await
        .expect("tables");
    let mut out = BTreeMap::new();
    for t in tables {
        let table: String = t.try_get_by_index(0).expect("name");
        let sql = format!(
            "SELECT count(*)::text || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) \
             FROM {table} t WHERE broker_id = {broker}"
        );
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
            .await
            .expect("digest")
            .expect("row");
        out.insert(table, row.try_get_by_index::<String>(0).expect("digest"));
    }
    out
}

fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    before.iter().filter(|(t, d)| after.get(*t) != Some(d)).map(|(t, _)| t.clone()).collect()
}

/// An id no broker has.
const MISSING_ID: i64 = 1_999_999_999;

/// The outcome of one call of the sweep.
struct Outcome {
    status: u16,
    code: Value,
    text: String,
}

async fn call(app: &TestApp, user: &User, op: &Op, path: &str, b: Option<&Value>) -> Outcome {
    let (status, text, _) = status_and_text(send(app, Some(user), &op.method, path, b).await).await;
    let code = serde_json::from_str::<Value>(&text).map(|v| v["code"].clone()).unwrap_or(Value::Null);
    Outcome { status, code, text }
}

fn fill(path: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = path.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Every operation whose path names an object, called by broker B's ADMIN and AGENT with broker
/// A's ids: 404 or 403 (the same answer as for an id nobody has, so existence is not revealed),
/// never 2xx or 5xx, never A's data; and A's objects are unchanged afterwards.
#[tokio::test]
async fn another_brokers_admin_and_agent_reach_none_of_a_brokers_objects_on_any_route() {
    let vapi = crate::voice::fake_vapi().await;
    let base = vapi.base.clone();
    let app = TestApp::spawn_with(move |k| match k {
        "RATE_LIMITS" => Some("off".into()),
        "VAPI_BASE_URL" => Some(base.clone()),
        "VAPI_API_KEY" => Some("vapi-key-test".into()),
        "VAPI_PHONE_NUMBER_ID" => Some("pn_env".into()),
        "VAPI_ASSISTANT_ID" => Some("asst_env".into()),
        "VAPI_WEBHOOK_SECRET" => Some("whsec_sweep_0123456789".into()),
        _ => None,
    })
    .await;
    let a_admin = app.new_broker().await;
    let a_agent = app.user_in(&a_admin, "agent").await;
    let fx = fixtures_of(&app, &a_admin, &a_agent).await;
    let b_admin = app.new_broker().await;
    let b_agent = app.user_in(&b_admin, "agent").await;
    let b_lead = app.lead(&b_admin, json!({"phone": phone(), "name": "Lead de B", "assigned_to": b_agent.id})).await;
    let b_lead = b_lead["id"].as_i64().expect("id");
    let a_lead_before =
        body(send(&app, Some(&a_admin), &Method::GET, &format!("/api/v1/leads/{}", fx.ids["lead"]), None).await).await;
    let a_before = snapshot(&app, fx.ids["broker"]).await;

    let own_auth: BTreeSet<&str> = OWN_AUTH.iter().map(|(id, _)| *id).collect();
    let superadmin_only: BTreeSet<&str> = SUPERADMIN_ONLY.iter().map(|(id, _)| *id).collect();
    let mut unmapped = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut controls = 0;
    for op in operations().into_iter().filter(|o| !o.params.is_empty()) {
        if own_auth.contains(op.id.as_str()) {
            continue;
        }
        let mut theirs = BTreeMap::new();
        let mut missing = BTreeMap::new();
        let mut names_object = false;
        for p in &op.params {
            if let Some((_, value, _)) = NOT_OBJECTS.iter().find(|(name, _, _)| name == p) {
                theirs.insert(p.clone(), value.to_string());
                missing.insert(p.clone(), value.to_string());
            } else if let Some(key) = object_of(&op.path, p) {
                names_object = true;
                let id = *fx.ids.get(key).unwrap_or_else(|| panic!("no fixture {key} for {} {}", op.method, op.path));
                theirs.insert(p.clone(), id.to_string());
                missing.insert(p.clone(), MISSING_ID.to_string());
            } else {
                unmapped.push(format!("{} {} ({}): path parameter `{p}`", op.method, op.path, op.id));
            }
        }
        if theirs.len() != op.params.len() {
            continue;
        }
        let b = body_for(&op, b_lead, b_agent.id);
        // Control: A's own ADMIN reads the same path, so B's refusals are about tenancy, not a bad path.
        if names_object && op.method == Method::GET && !superadmin_only.contains(op.id.as_str()) {
            let own = call(&app, &a_admin, &op, &fill(&op.path, &theirs), None).await;
            if !(200..300).contains(&own.status) {
                failures.push(format!(
                    "A's ADMIN GET {} ({}): {} {}",
                    fill(&op.path, &theirs),
                    op.id,
                    own.status,
                    own.text
                ));
            }
            controls += 1;
        }
        for (who, user) in [("B's ADMIN", &b_admin), ("B's AGENT", &b_agent)] {
            checked += 1;
            let got = call(&app, user, &op, &fill(&op.path, &theirs), b.as_ref()).await;
            let label = format!("{who} {} {} ({})", op.method, fill(&op.path, &theirs), op.id);
            if got.text.contains(&fx.marker) {
                failures.push(format!("{label}: answer carries broker A's data: {}", got.text));
            }
            if got.status >= 500 {
                failures.push(format!("{label}: server error {}: {}", got.status, got.text));
                continue;
            }
            if !names_object {
                continue;
            }
            if superadmin_only.contains(op.id.as_str()) {
                if got.status != 403 {
                    failures.push(format!("{label}: SUPERADMIN-only route answered {}: {}", got.status, got.text));
                }
                continue;
            }
            if !matches!(got.status, 403 | 404) {
                failures.push(format!("{label}: expected 404 or 403, got {}: {}", got.status, got.text));
                continue;
            }
            let none = call(&app, user, &op, &fill(&op.path, &missing), b.as_ref()).await;
            if (none.status, &none.code) != (got.status, &got.code) {
                failures.push(format!(
                    "{label}: answers {} {} for A's object but {} {} for a missing one (reveals existence)",
                    got.status, got.code, none.status, none.code
                ));
            }
        }
    }
    // `?broker_id=` names a broker only the SUPERADMIN may choose: B's users get 403/404 or their
    // own broker's data, never A's (the digest below proves no write reached A either).
    let mut broker_queries = 0;
    for op in operations().into_iter().filter(|o| o.broker_query && !own_auth.contains(o.id.as_str())) {
        let mut values = BTreeMap::new();
        for p in &op.params {
            let value = match object_of(&op.path, p) {
                Some(_) => MISSING_ID.to_string(),
                None => NOT_OBJECTS.iter().find(|(n, _, _)| n == p).map(|(_, v, _)| v.to_string()).unwrap_or_default(),
            };
            values.insert(p.clone(), value);
        }
        let path = fill(&op.path, &values);
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{sep}broker_id={}", fx.ids["broker"]);
        let b = body_for(&op, b_lead, b_agent.id);
        for (who, user) in [("B's ADMIN", &b_admin), ("B's AGENT", &b_agent)] {
            broker_queries += 1;
            let got = call(&app, user, &op, &path, b.as_ref()).await;
            let label = format!("{who} {} {path} ({})", op.method, op.id);
            if got.text.contains(&fx.marker) {
                failures.push(format!("{label}: answer carries broker A's data: {}", got.text));
            }
            if got.status >= 500 {
                failures.push(format!("{label}: server error {}: {}", got.status, got.text));
            }
        }
    }
    assert!(
        unmapped.is_empty(),
        "routes whose path parameters have no fixture in security.rs (add one to `object_of` and `fixtures_of`, or to NOT_OBJECTS / OWN_AUTH with a reason):\n{}",
        unmapped.join("\n")
    );
    assert!(failures.is_empty(), "{} of {checked} calls leaked or failed:\n{}", failures.len(), failures.join("\n"));
    assert!(
        checked > 100 && controls > 15 && broker_queries > 20,
        "the sweep covered only {checked} calls ({controls} controls, {broker_queries} broker queries)"
    );

    // Nothing of A's changed, and A's objects are all still there.
    let touched = changed(&a_before, &snapshot(&app, fx.ids["broker"]).await);
    assert!(touched.is_empty(), "B's calls changed broker A's rows in {touched:?}");
    let a_lead_after =
        body(send(&app, Some(&a_admin), &Method::GET, &format!("/api/v1/leads/{}", fx.ids["lead"]), None).await).await;
    assert_eq!(a_lead_before, a_lead_after);
    for path in [
        format!("/api/v1/appointments/{}", fx.ids["appointment"]),
        format!("/api/v1/templates/{}", fx.ids["template"]),
        format!("/api/v1/campaigns/{}", fx.ids["campaign"]),
        format!("/api/v1/kb/{}", fx.ids["kb_entry"]),
        format!("/api/v1/calls/{}", fx.ids["call"]),
        format!("/api/v1/admin/tasks/{}", fx.ids["dead_job"]),
        format!("/api/broker/config/prompt-versions/{}", fx.ids["prompt_version"]),
        format!("/api/brokers/{}", fx.ids["broker"]),
    ] {
        let (status, text, _) = status_and_text(send(&app, Some(&a_admin), &Method::GET, &path, None).await).await;
        assert_eq!(status, 200, "A lost {path}: {text}");
    }
    let users = body(send(&app, Some(&a_admin), &Method::GET, "/api/broker/users", None).await).await;
    assert!(users.to_string().contains(&a_agent.email), "A's agent is still listed: {users}");
    let me = send(&app, Some(&a_agent), &Method::GET, "/auth/me", None).await;
    me.assert_status_is_ok();
}

// ---------------------------------------------------------------------------------------------
// 2. Tokens

fn b64(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// `header.claims` signed with HMAC-SHA256 under `key`, whatever `alg` the header names.
fn hmac_token(header: &Value, claims: &Value, key: &[u8]) -> String {
    let msg = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(key),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("sign");
    format!("{msg}.{sig}")
}

async fn me_with(app: &TestApp, token: &str) -> TestResponse {
    app.client().get("/auth/me").header("authorization", format!("Bearer {token}")).send().await
}

/// Tampered, expired, wrong-algorithm (HS512, RS256 key confusion, `none` in any case), claim-less
/// and unknown-subject tokens are all 401 `not_authenticated` with a `detail`, while the same
/// claims signed properly pass (so every refusal is the forgery's doing).
#[tokio::test]
async fn forged_expired_and_wrong_algorithm_tokens_are_401() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let key = app.infra().settings.jwt_secret().to_vec();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": admin.id.to_string(), "email": admin.email, "role": "ADMIN",
                        "broker_id": admin.broker_id, "iat": now, "exp": now + 600});
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let good = hmac_token(&hs256, &claims, &key);
    me_with(&app, &good).await.assert_status_is_ok();

    let with = |patch: Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let (head, payload, sig) = {
        let p: Vec<&str> = good.split('.').collect();
        (p[0].to_string(), p[1].to_string(), p[2].to_string())
    };
    let flipped = {
        let mut s: Vec<char> = sig.chars().collect();
        s[0] = if s[0] == 'A' { 'B' } else { 'A' };
        s.into_iter().collect::<String>()
    };
    let superadmin_claims = b64(with(json!({"role": "SUPERADMIN", "broker_id": null})).to_string().as_bytes());
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .expect("hs512");
    let none = |alg: &str, sig: &str| {
        format!("{}.{payload}.{sig}", b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes()))
    };
    let cases: Vec<(&str, String)> = vec![
        ("tampered signature", format!("{head}.{payload}.{flipped}")),
        ("tampered claims", format!("{head}.{superadmin_claims}.{sig}")),
        ("signature removed", format!("{head}.{payload}.")),
        ("expired", hmac_token(&hs256, &with(json!({"iat": now - 7200, "exp": now - 1})), &key)),
        ("HS512 with the right key", hs512),
        ("RS256 header, HMAC-signed with the key", hmac_token(&json!({"alg": "RS256", "typ": "JWT"}), &claims, &key)),
        (
            "RS256 header, junk signature",
            format!("{}.{payload}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(&[7u8; 256])),
        ),
        ("alg none", none("none", "")),
        ("alg None", none("None", "")),
        ("alg NONE with the real signature", none("NONE", &sig)),
        ("no alg", hmac_token(&json!({"typ": "JWT"}), &claims, &key)),
        ("missing exp", hmac_token(&hs256, &with(json!({"exp": null})), &key)),
        ("exp as a string", hmac_token(&hs256, &with(json!({"exp": (now + 600).to_string()})), &key)),
        ("missing sub", hmac_token(&hs256, &with(json!({"sub": null})), &key)),
        ("sub not a number", hmac_token(&hs256, &with(json!({"sub": "admin"})), &key)),
        ("sub of nobody", hmac_token(&hs256, &with(json!({"sub": "1999999999"})), &key)),
        ("signed with another key", hmac_token(&hs256, &claims, b"another-secret-key-of-32-bytes!!")),
        ("two parts", format!("{head}.{payload}")),
        ("not base64", "@@@.###.$$$".to_string()),
    ];
    for (what, token) in cases {
        let resp = me_with(&app, &token).await;
        assert_eq!(resp.0.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"), "{what}");
        let b = expect_error(resp, 401, "not_authenticated").await;
        assert!(b["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}: {b}");
        let leads = send(&app, None, &Method::GET, "/api/v1/leads", None).await;
        assert_eq!(leads.0.status(), StatusCode::UNAUTHORIZED);
    }
}

/// A deleted user's token is 401; a deactivated user's (and a deactivated broker's) is refused at
/// once with 403 `user_inactive` / `forbidden` (SPEC §4: `is_active` is re-checked on each request).
#[tokio::test]
async fn tokens_of_deleted_and_deactivated_users_stop_working_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let doomed = app.user_in(&admin, "agent").await;
    me_with(&app, &agent.token).await.assert_status_is_ok();
    me_with(&app, &doomed.token).await.assert_status_is_ok();

    let resp = send(&app, Some(&admin), &Method::DELETE, &format!("/api/broker/users/{}", agent.id), None).await;
    resp.assert_status_is_ok();
    expect_error(me_with(&app, &agent.token).await, 403, "user_inactive").await;
    expect_error(send(&app, Some(&agent), &Method::GET, "/api/v1/leads", None).await, 403, "user_inactive").await;
    let login =
        app.client().post("/auth/login").body_json(&json!({"email": agent.email, "password": PASSWORD})).send().await;
    expect_error(login, 403, "user_inactive").await;

    use sea_orm::ConnectionTrait;
    app.db().execute_unprepared(&format!("DELETE FROM users WHERE id = {}", doomed.id)).await.expect("delete user");
    app.infra().users.invalidate(doomed.id);
    expect_error(me_with(&app, &doomed.token).await, 401, "not_authenticated").await;
}

// ---------------------------------------------------------------------------------------------
// 3. Brute force

/// Wrong passwords for one account are throttled after five attempts a minute, and neither a
/// forged `X-Forwarded-For` (not trusted by default) nor case and space variants of the email
/// open a fresh budget; once throttled, even the right password is refused.
#[tokio::test]
async fn password_guessing_is_throttled_whatever_the_header_and_email_tricks() {
    let app = TestApp::spawn().await;
    app.register("victima@corredor.cl", "Victima").await;
    let variants = [
        "victima@corredor.cl",
        "VICTIMA@corredor.cl",
        " victima@corredor.cl ",
        "Victima@Corredor.CL",
        "victima@corredor.cl",
    ];
    for (i, email) in variants.iter().enumerate() {
        let resp = app
            .client()
            .post("/auth/login")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .body_json(&json!({"email": email, "password": format!("Adivina{i}!")}))
            .send()
            .await;
        expect_error(resp, 401, "invalid_credentials").await;
    }
    let resp = app
        .client()
        .post("/auth/login")
        .header("x-forwarded-for", "198.51.100.7")
        .body_json(&json!({"email": "victima@corredor.cl", "password": PASSWORD}))
        .send()
        .await;
    assert!(resp.0.headers().get("retry-after").is_some(), "429 carries Retry-After");
    expect_error(resp, 429, "rate_limited").await;
}

// ---------------------------------------------------------------------------------------------
// 4. Webhook signatures

const TG_SECRET: &str = "tg-sweep-secret_1";
const WA_APP_SECRET: &str = "wa-sweep-app-secret";
const WA_VERIFY: &str = "wa-sweep-verify";
const WA_PHONE_ID: &str = "106540352249999";
const VAPI_SECRET: &str = "whsec_sweep_0123456789";

async fn count(app: &TestApp, sql: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    let row = app
        .db()
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_string()))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index::<i64>(0).expect("count")
}

async fn stored(app: &TestApp) -> (i64, i64, i64) {
    (
        count(app, "SELECT count(*) FROM chat_messages").await,
        count(app, "SELECT count(*) FROM leads").await,
        count(app, "SELECT count(*) FROM voice_calls").await,
    )
}

async fn raw_post(app: &TestApp, path: &str, headers: &[(&str, String)], raw: &str) -> TestResponse {
    let client = app.client();
    let mut req = client.post(path).content_type("application/json");
    for (k, v) in headers {
        req = req.header(*k, v.clone());
    }
    req.body(raw.to_string()).send().await
}

/// Every webhook refuses a missing or wrong credential (Telegram and VAPI 401, WhatsApp 403, as
/// SPEC §15 says) and stores nothing; the same deliveries with the right credentials are stored,
/// so the refusals are the credentials' doing.
#[tokio::test]
async fn webhooks_without_a_valid_signature_are_refused_and_store_nothing() {
    let fake = crate::fake_channels::fake_channels().await;
    let base = fake.base.clone();
    let app = TestApp::spawn_with(move |k| match k {
        "TELEGRAM_API_BASE" | "WHATSAPP_API_BASE" => Some(base.clone()),
        "VAPI_WEBHOOK_SECRET" => Some(VAPI_SECRET.into()),
        "VAPI_API_KEY" => Some("vapi-key".into()),
        "WHATSAPP_VERIFY_TOKEN" => Some("platform-verify".into()),
        "WHATSAPP_APP_SECRET" => Some("platform-app-secret".into()),
        "TELEGRAM_WEBHOOK_SECRET" => Some("platform-tg-secret".into()),
        "TELEGRAM_BOT_TOKEN" => Some("123456:platform-bot".into()),
        _ => None,
    })
    .await;
    let admin = app.new_broker().await;
    let broker = admin.broker_id.expect("broker");
    let resp = send(
        &app,
        Some(&admin),
        &Method::PUT,
        "/api/broker/chat-config",
        Some(&json!({"enabled_providers": ["webchat", "telegram", "whatsapp"],
            "provider_configs": {"telegram": {"bot_token": "123456:AAHbroker-bot-token-sweep0001", "webhook_secret": TG_SECRET},
                                 "whatsapp": {"phone_number_id": WA_PHONE_ID, "access_token": "EAAG-sweep",
                                              "app_secret": WA_APP_SECRET, "verify_token": WA_VERIFY}}})),
    )
    .await;
    let (st, tx, _) = status_and_text(resp).await;
    assert_eq!(st, 200, "{tx}");
    let before = stored(&app).await;

    let tg = crate::fake_channels::tg_update(1, 4242, 1, "hola").to_string();
    let tg_path = format!("/webhooks/chat/{broker}/telegram");
    let tg_header = "X-Telegram-Bot-Api-Secret-Token";
    for (what, headers) in [
        ("no secret", vec![]),
        ("empty secret", vec![(tg_header, String::new())]),
        ("wrong secret", vec![(tg_header, "nope".to_string())]),
        ("secret with a suffix", vec![(tg_header, format!("{TG_SECRET}x"))]),
        ("secret's prefix", vec![(tg_header, TG_SECRET[..TG_SECRET.len() - 1].to_string())]),
        ("platform secret on a broker bot", vec![(tg_header, "platform-tg-secret".to_string())]),
    ] {
        let resp = raw_post(&app, &tg_path, &headers, &tg).await;
        assert_eq!(resp.0.status(), StatusCode::UNAUTHORIZED, "telegram: {what}");
        expect_error(resp, 401, "not_authenticated").await;
    }
    for headers in [vec![], vec![(tg_header, TG_SECRET.to_string())]] {
        let resp = raw_post(&app, "/webhooks/telegram", &headers, &tg).await;
        assert!(matches!(resp.0.status().as_u16(), 401 | 404), "platform telegram: {}", resp.0.status());
    }

    let wa = crate::fake_channels::wa_text(WA_PHONE_ID, "56912345678", "wamid.sweep1", "hola").to_string();
    let sig = |secret: &str, body: &str| crate::fake_channels::wa_signature(secret, body.as_bytes());
    let wa_path = format!("/webhooks/chat/{broker}/whatsapp");
    let hub = "X-Hub-Signature-256";
    let good_sig = sig(WA_APP_SECRET, &wa);
    for (what, headers) in [
        ("no signature", vec![]),
        ("empty signature", vec![(hub, String::new())]),
        ("wrong secret", vec![(hub, sig("other", &wa))]),
        ("signature of another body", vec![(hub, sig(WA_APP_SECRET, &format!("{wa} ")))]),
        ("without the sha256= prefix", vec![(hub, good_sig.trim_start_matches("sha256=").to_string())]),
        ("not hex", vec![(hub, "sha256=zz".to_string())]),
        ("truncated", vec![(hub, good_sig[..good_sig.len() - 2].to_string())]),
        ("sha1 form", vec![("X-Hub-Signature", good_sig.replace("sha256=", "sha1="))]),
    ] {
        let resp = raw_post(&app, &wa_path, &headers, &wa).await;
        assert_eq!(resp.0.status(), StatusCode::FORBIDDEN, "whatsapp: {what}");
        let b = body(resp).await;
        assert!(b["code"].is_string() && !b["detail"].is_null(), "whatsapp {what}: {b}");
    }
    let resp = raw_post(&app, "/webhooks/whatsapp", &[(hub, sig("other", &wa))], &wa).await;
    assert!(matches!(resp.0.status().as_u16(), 403 | 404), "platform whatsapp: {}", resp.0.status());
    for path in [wa_path.clone(), "/webhooks/whatsapp".to_string()] {
        let q = format!("{path}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=123");
        let resp = app.client().get(q).send().await;
        assert_eq!(resp.0.status(), StatusCode::FORBIDDEN, "verify {path}");
    }

    let vapi = json!({"message": {"type": "status-update", "status": "ringing", "timestamp": 1,
                                  "call": {"id": "ext-sweep", "metadata": {"broker_id": broker}}}})
    .to_string();
    let now = chrono::Utc::now().timestamp();
    for path in ["/api/v1/calls/webhook", "/api/v1/calls/webhooks/voice"] {
        for (what, headers) in [
            ("no secret", vec![]),
            ("wrong secret", vec![("x-vapi-secret", "nope".to_string())]),
            ("empty secret", vec![("x-vapi-secret", String::new())]),
            (
                "HMAC with another key",
                vec![
                    ("x-vapi-signature", shared::voice::webhook::sign("other", &now.to_string(), vapi.as_bytes())),
                    ("x-vapi-timestamp", now.to_string()),
                ],
            ),
        ] {
            let resp = raw_post(&app, path, &headers, &vapi).await;
            assert_eq!(resp.0.status(), StatusCode::UNAUTHORIZED, "vapi {path}: {what}");
            expect_error(resp, 401, "not_authenticated").await;
        }
    }
    assert_eq!(stored(&app).await, before, "a refused webhook stored something");

    // The same deliveries, correctly signed, are taken.
    raw_post(&app, &tg_path, &[(tg_header, TG_SECRET.to_string())], &tg).await.assert_status_is_ok();
    raw_post(&app, &wa_path, &[(hub, good_sig)], &wa).await.assert_status_is_ok();
    let after = stored(&app).await;
    assert_eq!(after.0, before.0 + 2, "both signed messages stored");
}

// ---------------------------------------------------------------------------------------------
// 5. Secrets stay out of logs and error bodies

/// An API process of its own (`it-api`, set up as `api serve`) logging at the most verbose level,
/// with everything it writes (stdout and stderr) kept; killed when dropped.
struct LoggedApi {
    child: std::process::Child,
    base: String,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for LoggedApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LoggedApi {
    async fn start(app: &TestApp, env: &[(&str, String)]) -> Self {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_it-api"));
        cmd.env("DATABASE_URL", format!("{}/{}", crate::common::server_url(), app.db_name))
            .env("REDIS_URL", crate::common::redis_url())
            .env("REDIS_PREFIX", app.infra().prefix())
            .env("DB_MAX_CONNECTIONS", "3")
            .env("RUST_LOG", "trace")
            .env("LOG_FORMAT", "json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the API process");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (stream, tx) in [(Box::new(stdout) as Box<dyn std::io::Read + Send>, Some(tx)), (Box::new(stderr), None)] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                    if let (Some(tx), Some(addr)) = (&tx, line.strip_prefix("listening ")) {
                        let _ = tx.send(addr.trim().to_string());
                    }
                    let mut l = logs.lock().expect("logs");
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(30)))
            .await
            .expect("join")
            .expect("the API process printed its address");
        LoggedApi { child, base: format!("http://{addr}"), logs }
    }

    fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }

    /// (status, body) of `method path` with an optional token and JSON body.
    async fn call(&self, method: Method, path: &str, token: Option<&str>, b: Option<&Value>) -> (u16, String) {
        let client = reqwest::Client::new();
        let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method");
        let mut req = client.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = b {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }
}

/// Logins with wrong passwords, weak passwords, channel and voice credentials (set, read back,
/// refused by validation, used against a failing provider): none of the secrets appears in any
/// response body or in anything the API process writes, logging at the most verbose level.
#[tokio::test]
async fn secrets_never_reach_logs_or_error_bodies() {
    let fake = crate::fake_channels::fake_channels().await;
    // Telegram is unreachable (a port nobody listens on): its client fails with the bot token in the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
    let app = TestApp::spawn().await;
    let api = LoggedApi::start(
        &app,
        &[
            ("TELEGRAM_API_BASE", format!("http://{closed}")),
            ("WHATSAPP_API_BASE", fake.base.clone()),
            ("PUBLIC_BASE_URL", "https://api.corredor.test".into()),
            ("PROVIDER_TIMEOUT_MS", "3000".into()),
        ],
    )
    .await;

    let n = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let good_password = format!("Bueno#{n}9");
    let wrong_password = format!("Wr0ng!{n}pw");
    let weak_password = format!("weak{n}");
    let bot_token = format!("7012345678:AAH{n}botToken");
    let tg_secret = format!("tgSecret{n}");
    let wa_token = format!("EAAGwaToken{n}");
    let wa_app_secret = format!("waAppSecret{n}");
    let wa_verify = format!("waVerify{n}");
    let vapi_key = format!("vapiKey{n}");
    let vapi_secret = format!("vapiWhsec{n}");
    let secrets = [
        &good_password,
        &wrong_password,
        &weak_password,
        &bot_token,
        &tg_secret,
        &wa_token,
        &wa_app_secret,
        &wa_verify,
        &vapi_key,
        &vapi_secret,
    ];
    let email = format!("dueno-{n}@corredor.cl");
    let mut bodies = Vec::new();

    let (status, text) = api
        .call(
            Method::POST,
            "/auth/register",
            None,
            Some(&json!({"email": email, "password": good_password, "broker_name": format!("Segura {n}")})),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let token =
        serde_json::from_str::<Value>(&text).expect("JSON")["access_token"].as_str().expect("token").to_string();
    let broker_id = {
        let (_, me) = api.call(Method::GET, "/auth/me", Some(&token), None).await;
        serde_json::from_str::<Value>(&me).expect("JSON")["broker_id"].as_i64().expect("broker")
    };
    for who in [email.as_str(), "nadie@corredor.cl"] {
        bodies.push(
            api.call(Method::POST, "/auth/login", None, Some(&json!({"email": who, "password": wrong_password}))).await,
        );
    }
    bodies.push(
        api.call(
            Method::POST,
            "/auth/register",
            None,
            Some(&json!({"email": format!("w{n}@corredor.cl"), "password": weak_password, "broker_name": "Debil"})),
        )
        .await,
    );
    bodies.push(
        api.call(
            Method::POST,
            "/api/broker/users",
            Some(&token),
            Some(&json!({"email": format!("u{n}@corredor.cl"), "password": weak_password, "name": "U"})),
        )
        .await,
    );
    let config = json!({"enabled_providers": ["webchat", "telegram", "whatsapp"],
        "provider_configs": {"telegram": {"bot_token": bot_token, "webhook_secret": tg_secret},
                             "whatsapp": {"phone_number_id": "106540352240000", "access_token": wa_token,
                                          "app_secret": wa_app_secret, "verify_token": wa_verify}}});
    for (method, path, b) in [
        (Method::PUT, "/api/broker/chat-config", Some(config.clone())),
        (Method::GET, "/api/broker/chat-config", None),
        // Refused by validation: the error must not echo the value.
        (
            Method::PUT,
            "/api/broker/chat-config",
            Some(
                json!({"provider_configs": {"telegram": {"bot_token": bot_token, "webhook_secret": format!("{tg_secret} !bad")}}}),
            ),
        ),
        (
            Method::PUT,
            "/api/broker/voice/config",
            Some(json!({"provider_credentials": {"api_key": vapi_key, "webhook_secret": vapi_secret}})),
        ),
        (Method::GET, "/api/broker/voice/config", None),
        (
            Method::PUT,
            "/api/broker/voice/config",
            Some(
                json!({"provider_credentials": {"api_key": vapi_key, "webhook_secret": vapi_secret}, "recording_enabled": "yes"}),
            ),
        ),
    ] {
        bodies.push(api.call(method, path, Some(&token), b.as_ref()).await);
    }
    // The provider fails while the bot token is in its URL.
    bodies.push(
        api.call(
            Method::POST,
            "/api/broker/chat-config/register-webhook",
            Some(&token),
            Some(&json!({"provider": "telegram"})),
        )
        .await,
    );
    // The WhatsApp verification with the broker's token echoes only the challenge.
    let q = format!(
        "/webhooks/chat/{broker_id}/whatsapp?hub.mode=subscribe&hub.verify_token={wa_verify}&hub.challenge=777"
    );
    bodies.push(api.call(Method::GET, &q, None, None).await);
    // A forged webhook carrying a secret-looking header is refused without echoing it.
    bodies.push(
        api.call(Method::POST, &format!("/webhooks/chat/{broker_id}/telegram"), None, Some(&json!({"update_id": 1})))
            .await,
    );

    let statuses: Vec<u16> = bodies.iter().map(|(s, _)| *s).collect();
    assert_eq!(&statuses[..4], &[401, 401, 422, 422], "{bodies:?}");
    assert_eq!((statuses[4], statuses[7]), (200, 200), "configs saved: {bodies:?}");
    assert!(statuses[6] == 422 && statuses[9] == 422, "validation refused the bad values: {statuses:?}");
    assert!(statuses[10] >= 400, "the failing provider is reported: {:?}", bodies[10]);
    assert_eq!(bodies[11], (200, "777".to_string()));
    // Give the process a moment to flush its last lines, then read everything it wrote.
    let mut log_text = api.logs();
    for _ in 0..50 {
        if log_text.matches("request finished").count() >= bodies.len() + 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        log_text = api.logs();
    }
    assert!(
        log_text.matches("request finished").count() >= bodies.len() + 2 && log_text.contains("/auth/login"),
        "the capture holds every request:\n{log_text}"
    );
    assert!(log_text.contains("TRACE") || log_text.contains("\"level\":\"TRACE\""), "the most verbose level is on");
    for secret in secrets {
        for (status, text) in &bodies {
            assert!(!text.contains(secret.as_str()), "a response ({status}) carries {secret}: {text}");
        }
        if let Some(at) = log_text.find(secret.as_str()) {
            let from = log_text[..at].rfind('\n').map_or(0, |i| i + 1);
            let to = log_text[at..].find('\n').map_or(log_text.len(), |i| at + i);
            panic!("the logs carry {secret}: {}", &log_text[from..to]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Injection payloads are data

const SQLI: &str = "Robert'); DROP TABLE leads; --";
const XSS: &str = "<script>alert(1)</script>";

/// SQL and script payloads in names, notes, tags, metadata, search and filters are stored and
/// returned as plain data: JSON with `application/json` and `nosniff`, the table intact.
#[tokio::test]
async fn injection_payloads_are_stored_inert_and_returned_as_json() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app
        .lead(
            &admin,
            json!({"phone": phone(), "name": SQLI, "notes": format!("{XSS} {SQLI}"), "tags": [XSS, "1' OR '1'='1"],
                   "lead_metadata": {"x": "<img src=x onerror=alert(1)>", "y": "'; SELECT pg_sleep(5); --"}}),
        )
        .await;
    let id = lead["id"].as_i64().expect("id");
    let resp = send(&app, Some(&admin), &Method::GET, &format!("/api/v1/leads/{id}"), None).await;
    let (status, text, ct) = status_and_text(resp).await;
    assert_eq!(status, 200);
    assert!(ct.as_deref().is_some_and(|c| c.starts_with("application/json")), "{ct:?}");
    let got: Value = serde_json::from_str(&text).expect("JSON");
    let got = if got["lead"].is_object() { got["lead"].clone() } else { got };
    assert_eq!(got["name"], SQLI, "stored verbatim");
    // Notes are cleaned of markup on the way in (`clean_text`); the SQL stays as written.
    assert_eq!(got["notes"], shared::text::clean_text(&format!("{XSS} {SQLI}")));
    assert!(got["notes"].as_str().is_some_and(|n| n.ends_with(SQLI) && !n.contains('<')), "{got}");
    assert_eq!(got["tags"], json!([shared::text::clean_text(XSS), "1' OR '1'='1"]));
    assert_eq!(got["lead_metadata"]["x"], "<img src=x onerror=alert(1)>");
    // A `<` that opens no tag is text, not markup.
    let plain = app.lead(&admin, json!({"phone": phone(), "name": "Juan <3", "notes": "presupuesto < 3000 UF"})).await;
    assert_eq!((plain["name"].as_str(), plain["notes"].as_str()), (Some("Juan <3"), Some("presupuesto < 3000 UF")));

    for q in [
        format!("/api/v1/leads?search={}", urlencode(SQLI)),
        format!("/api/v1/leads?search={}", urlencode("' OR 1=1 --")),
        format!("/api/v1/leads?search={}", urlencode("%")),
        format!("/api/v1/leads?tags={}", urlencode("x') OR ('1'='1")),
        format!("/api/v1/leads?status={}", urlencode("cold' OR '1'='1")),
        format!("/api/v1/kb/search?q={}", urlencode(SQLI)),
        format!("/api/v1/templates?channel={}", urlencode("telegram' --")),
    ] {
        let resp = send(&app, Some(&admin), &Method::GET, &q, None).await;
        let (status, text, ct) = status_and_text(resp).await;
        assert!(status < 500, "{q}: {status} {text}");
        assert!(ct.as_deref().is_some_and(|c| c.starts_with("application/json")), "{q}: {ct:?}");
    }
    let hits = body(
        send(&app, Some(&admin), &Method::GET, &format!("/api/v1/leads?search={}", urlencode("' OR 1=1 --")), None)
            .await,
    )
    .await;
    assert_eq!(hits["total"], 0, "an injected OR matched nothing: {hits}");
    assert_eq!(count(&app, "SELECT count(*) FROM leads").await, 2, "the table is intact");

    let resp = send(&app, Some(&admin), &Method::GET, "/api/v1/leads", None).await;
    assert_eq!(resp.0.headers().get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
    let resp = send(&app, None, &Method::GET, &format!("/api/v1/leads/{}", urlencode(XSS)), None).await;
    let (status, text, ct) = status_and_text(resp).await;
    assert!(matches!(status, 401 | 404 | 422 | 400), "{status}");
    assert!(!text.contains(XSS) && !ct.as_deref().is_some_and(|c| c.contains("html")), "{ct:?} {text}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 7. CSV formula injection

/// Every text cell of the costs export that a spreadsheet would run as a formula (`=`, `+`, `-`,
/// `@`, tab, carriage return) starts with `'`; other cells are unchanged.
#[tokio::test]
async fn csv_exports_neutralise_formulas_in_every_text_column() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let b = admin.broker_id.expect("broker");
    let payloads =
        ["=HYPERLINK(\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tleading tab", "\rleading cr", "plain"];
    for p in payloads {
        app.db()
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "INSERT INTO llm_calls (broker_id, provider, model, call_type, input_tokens, output_tokens, \
                 estimated_cost_usd, latency_ms, error, fallback_used) VALUES ($1, $2, $2, $2, 1, 1, 0.001, 5, $2, false)",
                vec![b.into(), p.into()],
            ))
            .await
            .expect("insert");
    }
    let resp = send(&app, Some(&admin), &Method::GET, "/api/v1/admin/costs/export?period=today", None).await;
    let (status, text, _) = status_and_text(resp).await;
    assert_eq!(status, 200, "{text}");
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect("column");
    let text_cols = [col("provider"), col("model"), col("call_type"), col("error")];
    let mut seen = BTreeSet::new();
    for row in reader.records() {
        let row = row.expect("a well-formed CSV row");
        for &c in &text_cols {
            let cell = &row[c];
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "formula cell {cell:?} in {row:?}");
            let original = cell.strip_prefix('\'').unwrap_or(cell);
            assert_eq!(cell.starts_with('\''), original != "plain", "{cell:?}");
            seen.insert(original.to_string());
        }
    }
    for p in payloads {
        assert!(seen.contains(p), "{p:?} exported (neutralised) in {seen:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Cross-tenant ids inside request bodies, generated from the route table

/// Body fields that name an object, and the fixture (of broker A) B puts there.
fn body_object(op_path: &str, field: &str) -> Option<&'static str> {
    Some(match field {
        "lead_id" | "lead_ids" => "lead",
        "agent_id" | "assigned_to" => "agent",
        "broker_id" => "broker",
        "campaign_id" => "campaign",
        "template_id" | "message_template_id" => "template",
        "ids" if op_path.starts_with("/api/v1/admin/tasks/") => "dead_job",
        _ => return None,
    })
}

/// Id-like body fields that name nothing of a broker.
const NOT_OBJECT_FIELDS: &[(&str, &str)] = &[("phone_number_id", "the provider's (VAPI, WhatsApp) phone number id")];

/// Operations that may answer 2xx to a foreign id in the body because they report per item or
/// fall back to the caller's own scope; for them the proof is that nothing of A's changed and
/// nothing of A's is shown.
const REPORTS_PER_ITEM: &[(&str, &str)] = &[
    ("tasks_bulk_retry", "answers {retried, skipped, failed}; a foreign id is skipped"),
    ("tasks_bulk_discard", "answers {discarded, skipped, failed}; a foreign id is skipped"),
    ("campaigns_apply", "answers per lead; a foreign lead is not enrolled"),
    ("kb_search", "`broker_id` is the SUPERADMIN's choice; an ADMIN searches its own broker"),
];

/// The body B sends to an operation without the foreign id: valid and about B's own objects.
fn base_body(op: &Op, b: &Fixtures, b_complete_lead: i64) -> Value {
    let n = uuid::Uuid::new_v4().simple().to_string();
    let later = chrono::Utc::now() + chrono::Duration::days(9);
    match op.id.as_str() {
        "broker_users_create" => json!({"email": format!("x{}@test.cl", &n[..8]), "password": PASSWORD, "name": "X"}),
        "tasks_bulk_retry" | "tasks_bulk_discard" => json!({"ids": [b.ids["dead_job"]]}),
        "leads_create" => json!({"phone": phone()}),
        "leads_assign" | "pipeline_lead_assign" => json!({"agent_id": b.ids["agent"]}),
        "chat_test" | "chat_stream" => json!({"message": "hola", "lead_id": b.ids["lead"]}),
        "kb_create" => json!({"title": "B", "content": "contenido de B"}),
        "kb_search" => json!({"query": "casas en Ñuñoa"}),
        "appointments_create" => json!({"lead_id": b_complete_lead, "start_time": later.to_rfc3339()}),
        "appointments_update" => json!({"notes": "B"}),
        "calendar_availability_create" => json!({"day_of_week": 2, "start_time": "09:00", "end_time": "10:00"}),
        "calendar_availability_update" => json!({"notes": "B"}),
        "calendar_blocks_create" => json!({"start_time": later.to_rfc3339(),
                                           "end_time": (later + chrono::Duration::hours(1)).to_rfc3339()}),
        "templates_create" => json!({"name": format!("t{}", &n[..8]), "channel": "telegram", "content": "hola"}),
        "templates_render" => json!({"lead_id": b.ids["lead"]}),
        "campaigns_create" => json!({"name": format!("c{}", &n[..8])}),
        "campaigns_add_step" => json!({"step_number": 7, "action": "send_message", "message_text": "hola"}),
        "campaigns_update_step" => json!({"message_text": "hola"}),
        "campaigns_apply" => json!({"lead_ids": [b.ids["lead"]]}),
        "calls_create" | "calls_initiate" => json!({"lead_id": b.ids["lead"]}),
        _ => op.body_schema.as_ref().map(minimal_body).unwrap_or(Value::Null),
    }
}

/// Every body field that names an object, set by broker B's ADMIN and AGENT to broker A's
/// object (the rest of the body valid and B's own): refused with a 4xx (or, for operations that
/// report per item, answered without effect), never 5xx, never showing A's data, and not one of
/// A's rows changed.
#[tokio::test]
async fn foreign_ids_in_request_bodies_are_refused_on_every_route() {
    let vapi = crate::voice::fake_vapi().await;
    let base = vapi.base.clone();
    let app = TestApp::spawn_with(move |k| match k {
        "RATE_LIMITS" => Some("off".into()),
        "VAPI_BASE_URL" => Some(base.clone()),
        "VAPI_API_KEY" => Some("vapi-key-test".into()),
        "VAPI_PHONE_NUMBER_ID" => Some("pn_env".into()),
        "VAPI_ASSISTANT_ID" => Some("asst_env".into()),
        "VAPI_WEBHOOK_SECRET" => Some("whsec_sweep_0123456789".into()),
        _ => None,
    })
    .await;
    let a_admin = app.new_broker().await;
    let a_agent = app.user_in(&a_admin, "agent").await;
    let a = fixtures_of(&app, &a_admin, &a_agent).await;
    let b_admin = app.new_broker().await;
    let b_agent = app.user_in(&b_admin, "agent").await;
    let b = fixtures_of(&app, &b_admin, &b_agent).await;
    let activate = format!("/api/v1/campaigns/{}/activate", b.ids["campaign"]);
    send(&app, Some(&b_admin), &Method::PUT, &activate, None).await.assert_status_is_ok();
    let b_complete_lead = crate::appointments::complete_lead(&app, &b_admin).await;
    let a_before = snapshot(&app, a.ids["broker"]).await;

    let superadmin_only: BTreeSet<&str> = SUPERADMIN_ONLY.iter().map(|(id, _)| *id).collect();
    let own_auth: BTreeSet<&str> = OWN_AUTH.iter().map(|(id, _)| *id).collect();
    let per_item: BTreeSet<&str> = REPORTS_PER_ITEM.iter().map(|(id, _)| *id).collect();
    let mut unmapped = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in operations() {
        let Some(schema) = &op.body_schema else { continue };
        if own_auth.contains(op.id.as_str()) || superadmin_only.contains(op.id.as_str()) {
            continue;
        }
        let fields: Vec<(String, Value)> = schema["properties"]
            .as_object()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (field, prop) in fields {
            let id_like = field.ends_with("_id") || field.ends_with("_ids") || field == "ids" || field == "assigned_to";
            if !id_like || NOT_OBJECT_FIELDS.iter().any(|(f, _)| *f == field) {
                continue;
            }
            let Some(key) = body_object(&op.path, &field) else {
                unmapped.push(format!("{} {} ({}): body field `{field}`", op.method, op.path, op.id));
                continue;
            };
            let foreign = a.ids[key];
            let mut body_json = base_body(&op, &b, b_complete_lead);
            body_json[field.as_str()] = if prop["type"] == "array" { json!([foreign]) } else { json!(foreign) };
            let mut path_values = BTreeMap::new();
            for p in &op.params {
                let value = match object_of(&op.path, p) {
                    Some(k) => b.ids[k].to_string(),
                    None => {
                        NOT_OBJECTS.iter().find(|(n, _, _)| n == p).map(|(_, v, _)| v.to_string()).unwrap_or_default()
                    }
                };
                path_values.insert(p.clone(), value);
            }
            let path = fill(&op.path, &path_values);
            for (who, user) in [("B's ADMIN", &b_admin), ("B's AGENT", &b_agent)] {
                checked += 1;
                let got = call(&app, user, &op, &path, Some(&body_json)).await;
                let label = format!("{who} {} {path} ({}) with A's {key} in `{field}`", op.method, op.id);
                if got.text.contains(&a.marker) {
                    failures.push(format!("{label}: answer carries broker A's data: {}", got.text));
                }
                if got.status >= 500 {
                    failures.push(format!("{label}: server error {}: {}", got.status, got.text));
                } else if (200..300).contains(&got.status) && !per_item.contains(op.id.as_str()) && field != "broker_id"
                {
                    failures.push(format!("{label}: accepted with {}: {}", got.status, got.text));
                }
            }
        }
    }
    assert!(
        unmapped.is_empty(),
        "body fields naming objects without a fixture in security.rs (add them to `body_object`, or to NOT_OBJECT_FIELDS with a reason):\n{}",
        unmapped.join("\n")
    );
    assert!(failures.is_empty(), "{} of {checked} calls leaked or failed:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 40, "the sweep covered only {checked} calls");
    let touched = changed(&a_before, &snapshot(&app, a.ids["broker"]).await);
    assert!(touched.is_empty(), "B's calls changed broker A's rows in {touched:?}");
}

// ---------------------------------------------------------------------------------------------
// 9. Paging parameters at the edge of their types (found by schemathesis)

/// Every operation that pages (`skip`, `page`, `offset`) answers a huge page number with 2xx or
/// 4xx, never a 5xx or a dropped connection.
#[tokio::test]
async fn huge_paging_parameters_are_answered_on_every_route() {
    let app = TestApp::spawn_with(|k| (k == "RATE_LIMITS").then(|| "off".to_string())).await;
    let admin = app.new_broker().await;
    let root = app.superadmin().await;
    let spec: Value = serde_json::from_str(&api::openapi::spec_json()).expect("spec");
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in operations().into_iter().filter(|o| o.method == Method::GET && o.params.is_empty()) {
        let params = spec["paths"][&op.path]["get"]["parameters"].as_array().cloned().unwrap_or_default();
        for p in params.iter().filter(|p| p["in"] == "query") {
            let name = p["name"].as_str().unwrap_or_default();
            if !matches!(name, "skip" | "page" | "offset") {
                continue;
            }
            for value in ["10000000000000000000", "9223372036854775807", "18446744073709551615"] {
                for user in [&admin, &root] {
                    checked += 1;
                    let path = format!("{}?{name}={value}", op.path);
                    let got = call(&app, user, &op, &path, None).await;
                    if got.status >= 500 {
                        failures.push(format!("GET {path} ({}): {} {}", op.id, got.status, got.text));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} calls failed:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 30, "only {checked} paged calls");
}
