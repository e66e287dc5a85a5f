//! Voice calls through VAPI against a fake VAPI speaking its wire format: placing a call (`POST
//! /call`, once per call even when the job is retried), the webhook's authentication (secret, HMAC
//! with timestamp), realistic server-message sequences (duplicated and out of order), tool calls
//! in VAPI's result format, the end-of-call report qualifying the lead through the chat extractor
//! and the lead rules, the 5-active-calls limit, validation, tenancy and the broker's voice
//! configuration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use poem::http::StatusCode;
use poem::{Request, Response};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use shared::jobs::voice_call::VoiceCall;
use shared::jobs::voice_report::VoiceReport;
use worker::queue::JobCtx;

use crate::common::{TestApp, User, body, expect_error, phone};

const SECRET: &str = "whsec_test_0123456789";
const API_KEY: &str = "vapi-key-test";

// ---------------------------------------------------------------------------------------------
// A fake VAPI: `POST /call` recorded and answered like VAPI does

#[derive(Clone, Debug)]
pub struct Placed {
    pub auth: Option<String>,
    pub body: Value,
    pub id: String,
}

#[derive(Default)]
pub struct Vapi {
    pub placed: Vec<Placed>,
    /// Answer every `POST /call` with this status and body.
    pub fail: Option<(u16, Value)>,
}

pub struct FakeVapi {
    pub base: String,
    pub state: Arc<Mutex<Vapi>>,
}

impl FakeVapi {
    pub fn placed(&self) -> Vec<Placed> {
        self.state.lock().unwrap().placed.clone()
    }

    pub fn set(&self, f: impl FnOnce(&mut Vapi)) {
        f(&mut self.state.lock().unwrap());
    }
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

async fn handle(state: Arc<Mutex<Vapi>>, mut req: Request) -> Response {
    if req.method() != poem::http::Method::POST || req.uri().path() != "/call" {
        return reply(404, json!({"message": "Cannot find route", "error": "Not Found", "statusCode": 404}));
    }
    let auth = req.header("authorization").map(str::to_string);
    let raw = req.take_body().into_bytes().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let mut v = state.lock().unwrap();
    if let Some((status, answer)) = v.fail.clone() {
        return reply(status, answer);
    }
    let id = format!("019a{}", uuid::Uuid::new_v4().simple());
    v.placed.push(Placed { auth, body: body.clone(), id: id.clone() });
    reply(
        201,
        json!({
            "id": id, "orgId": "org_fake", "type": "outboundPhoneCall", "status": "queued",
            "assistantId": body["assistantId"], "phoneNumberId": body["phoneNumberId"],
            "customer": body["customer"], "createdAt": chrono::Utc::now().to_rfc3339(),
            "updatedAt": chrono::Utc::now().to_rfc3339(), "monitor": {"listenUrl": "wss://fake/listen"},
        }),
    )
}

pub async fn fake_vapi() -> FakeVapi {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let state = Arc::new(Mutex::new(Vapi::default()));
    let shared_state = state.clone();
    let endpoint = poem::endpoint::make(move |req: Request| handle(shared_state.clone(), req));
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    FakeVapi { base: format!("http://{addr}"), state }
}

/// An app whose VAPI settings point at `vapi`.
pub async fn app_with(vapi: &FakeVapi) -> TestApp {
    let base = vapi.base.clone();
    TestApp::spawn_with(move |k| match k {
        "VAPI_BASE_URL" => Some(base.clone()),
        "VAPI_API_KEY" => Some(API_KEY.into()),
        "VAPI_PHONE_NUMBER_ID" => Some("pn_env".into()),
        "VAPI_ASSISTANT_ID" => Some("asst_env".into()),
        "VAPI_WEBHOOK_SECRET" => Some(SECRET.into()),
        "PUBLIC_BASE_URL" => Some("https://api.corredor.test".into()),
        "PROVIDER_TIMEOUT_MS" => Some("3000".into()),
        "JOB_BACKOFF_BASE_MS" => Some("50".into()),
        "JOB_BACKOFF_MAX_MS" => Some("100".into()),
        _ => None,
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn job_ctx(attempt: u32) -> JobCtx {
    JobCtx { queue: "voice_call", task_id: "task-1".into(), attempt, worker: "test".into(), max_attempts: 5 }
}

async fn scalar<T: sea_orm::TryGetable>(app: &TestApp, sql: &str) -> Option<T> {
    let row = app.db().query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql)).await.unwrap();
    row.and_then(|r| r.try_get_by_index::<Option<T>>(0).unwrap())
}

async fn start_call(app: &TestApp, user: &User, body_json: Value) -> poem::test::TestResponse {
    app.client().post("/api/v1/calls").header("authorization", user.bearer()).body_json(&body_json).send().await
}

/// A lead and a call to it (stored as `initiated`, not yet dialled).
async fn call_for(app: &TestApp, user: &User) -> (i64, Value) {
    let lead = app.lead(user, json!({"phone": phone()})).await;
    let lead_id = lead["id"].as_i64().unwrap();
    let resp = start_call(app, user, json!({"lead_id": lead_id, "call_purpose": "calificacion_inicial"})).await;
    resp.assert_status(StatusCode::CREATED);
    (lead_id, body(resp).await)
}

/// Runs the `voice_call` job for `call` in-process, as the worker does.
async fn dial(app: &TestApp, call: &Value, attempt: u32) -> shared::Result<()> {
    let job = VoiceCall {
        broker_id: call["broker_id"].as_i64().unwrap(),
        lead_id: call["lead_id"].as_i64().unwrap(),
        call_id: call["id"].as_i64().unwrap(),
    };
    worker::jobs::voice_call::run(app.infra().clone(), job, job_ctx(attempt)).await
}

async fn report(app: &TestApp, call: &Value) -> shared::Result<()> {
    let job = VoiceReport {
        broker_id: call["broker_id"].as_i64().unwrap(),
        lead_id: call["lead_id"].as_i64().unwrap(),
        call_id: call["id"].as_i64().unwrap(),
    };
    let ctx = JobCtx { queue: "voice_report", ..job_ctx(1) };
    worker::jobs::voice_report::run(app.infra().clone(), job, ctx).await
}

async fn get_call(app: &TestApp, user: &User, id: i64) -> Value {
    let resp = app.client().get(format!("/api/v1/calls/{id}")).header("authorization", user.bearer()).send().await;
    resp.assert_status_is_ok();
    body(resp).await
}

/// A VAPI server message about `call` (`{"message": {"type", "timestamp", "call": {…}, …}}`).
fn event(call: &Value, ext: &str, kind: &str, fields: Value) -> Value {
    let mut message = json!({
        "type": kind,
        "timestamp": chrono::Utc::now().timestamp_millis(),
        "call": {
            "id": ext, "orgId": "org_fake", "type": "outboundPhoneCall", "phoneNumberId": "pn_env",
            "assistantId": "asst_env", "customer": {"number": call["phone_number"]},
            "metadata": {"call_id": call["id"], "lead_id": call["lead_id"], "broker_id": call["broker_id"]},
        },
    });
    for (k, v) in fields.as_object().cloned().unwrap_or_default() {
        message[k] = v;
    }
    json!({ "message": message })
}

fn status(call: &Value, ext: &str, s: &str) -> Value {
    event(call, ext, "status-update", json!({"status": s}))
}

fn said(call: &Value, ext: &str, role: &str, text: &str, at_ms: i64) -> Value {
    event(
        call,
        ext,
        "transcript",
        json!({"role": role, "transcriptType": "final", "transcript": text, "timestamp": at_ms}),
    )
}

async fn send(app: &TestApp, payload: &Value) -> poem::test::TestResponse {
    app.client()
        .post("/api/v1/calls/webhook")
        .header("x-vapi-secret", SECRET)
        .content_type("application/json")
        .body(payload.to_string())
        .send()
        .await
}

async fn send_ok(app: &TestApp, payload: &Value) -> Value {
    let resp = send(app, payload).await;
    resp.assert_status_is_ok();
    body(resp).await
}

/// The qualifying conversation: (role, text) in order.
const CONVERSATION: [(&str, &str); 12] = [
    ("assistant", "Hola, le habla Sofía de la corredora. ¿Con quién hablo?"),
    ("user", "Hola, me llamo Juan Pérez"),
    ("assistant", "Un gusto, Juan. ¿En qué comuna estás buscando?"),
    ("user", "Busco un departamento en Ñuñoa"),
    ("assistant", "Perfecto. ¿Cuál es tu ingreso mensual aproximado?"),
    ("user", "Gano 1.800.000 pesos al mes"),
    ("assistant", "¿Estás en DICOM o tienes deudas morosas?"),
    ("user", "No, no estoy en DICOM"),
    ("assistant", "¿Me das tu correo para enviarte opciones?"),
    ("user", "Claro, es juan.perez@correo.cl"),
    ("assistant", "¿Te gustaría agendar una visita?"),
    ("user", "Sí, quiero agendar una visita este sábado"),
];

/// The end-of-call report VAPI sends for [`CONVERSATION`].
fn end_of_call_report(call: &Value, ext: &str) -> Value {
    let mut messages = vec![json!({"role": "system", "message": "Eres Sofía, asistente de una corredora.", "time": 0,
                                   "secondsFromStart": 0})];
    let mut transcript = String::new();
    for (i, (role, text)) in CONVERSATION.iter().enumerate() {
        let role = if *role == "assistant" { "bot" } else { "user" };
        messages.push(json!({"role": role, "message": text, "time": 1_700_000_000_000i64 + i as i64 * 4000,
                             "endTime": 1_700_000_003_000i64 + i as i64 * 4000, "secondsFromStart": 1.5 + i as f64 * 4.0,
                             "duration": 3000}));
        transcript.push_str(&format!("{}: {text}\n", if role == "bot" { "AI" } else { "User" }));
    }
    event(
        call,
        ext,
        "end-of-call-report",
        json!({
            "endedReason": "customer-ended-call",
            "durationSeconds": 52.4,
            "cost": 0.11,
            "artifact": {
                "messages": messages,
                "transcript": transcript,
                "recordingUrl": "https://storage.vapi.ai/recordings/fake.wav",
                "recording": {"url": "https://storage.vapi.ai/recordings/fake.wav"},
            },
            "analysis": {"successEvaluation": "true"},
        }),
    )
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_call_is_placed_through_vapi_and_its_report_qualifies_the_lead() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let broker_id = admin.broker_id.unwrap();
    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut live = client.get_async_pubsub().await.unwrap();
    live.subscribe(shared::events::user_channel(app.infra().prefix(), broker_id, admin.id)).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(app.infra().clone(), "voice-worker".into(), vec![], async {
        let _ = stopped.await;
    }));

    // Start: stored as initiated, dialled by the worker.
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let lead_id = lead["id"].as_i64().unwrap();
    let before_score = lead["lead_score"].as_f64().unwrap();
    let resp = app
        .client()
        .post("/api/v1/calls/initiate")
        .header("authorization", admin.bearer())
        .body_json(&json!({"lead_id": lead_id, "call_purpose": "calificacion_inicial"}))
        .send()
        .await;
    resp.assert_status(StatusCode::CREATED);
    let call = body(resp).await;
    assert_eq!(call["status"], "initiated");
    assert_eq!(call["agent_user_id"], admin.id);
    let id = call["id"].as_i64().unwrap();
    wait_for("the call to be placed", || async {
        get_call(&app, &admin, id).await["call"]["external_call_id"].is_string()
    })
    .await;
    let placed = vapi.placed();
    assert_eq!(placed.len(), 1);
    let p = &placed[0];
    assert_eq!(p.auth.as_deref(), Some(format!("Bearer {API_KEY}").as_str()));
    assert_eq!(p.body["assistantId"], "asst_env");
    assert_eq!(p.body["phoneNumberId"], "pn_env");
    assert_eq!(p.body["customer"]["number"], lead["phone"]);
    assert_eq!(p.body["metadata"]["call_id"], id);
    assert_eq!(p.body["metadata"]["broker_id"], broker_id);
    assert_eq!(p.body["metadata"]["lead_id"], lead_id);
    assert_eq!(p.body["assistantOverrides"]["server"]["url"], "https://api.corredor.test/api/v1/calls/webhook");
    assert_eq!(get_call(&app, &admin, id).await["call"]["external_call_id"], p.id.as_str());
    let ext = p.id.clone();

    // The live part of the call.
    for s in ["queued", "ringing", "in-progress"] {
        assert_eq!(send_ok(&app, &status(&call, &ext, s)).await, json!({"ok": true}));
    }
    let detail = get_call(&app, &admin, id).await;
    assert_eq!(detail["call"]["status"], "answered");
    assert!(detail["call"]["started_at"].is_string());
    let speech = event(&call, &ext, "speech-update", json!({"status": "started", "role": "assistant"}));
    assert_eq!(send_ok(&app, &speech).await, json!({"status": "ignored"}));
    let partial = event(
        &call,
        &ext,
        "transcript",
        json!({"role": "user", "transcriptType": "partial", "transcript": "Hola, me"}),
    );
    send_ok(&app, &partial).await;
    let t0 = chrono::Utc::now().timestamp_millis();
    for (i, (role, text)) in CONVERSATION.iter().enumerate() {
        send_ok(&app, &said(&call, &ext, role, text, t0 + i as i64 * 4000)).await;
    }
    let detail = get_call(&app, &admin, id).await;
    let lines = detail["transcript_lines"].as_array().unwrap();
    assert_eq!(lines.len(), CONVERSATION.len(), "partials are not lines: {lines:?}");
    assert_eq!(lines[1]["speaker"], "customer");
    assert_eq!(lines[1]["text"], "Hola, me llamo Juan Pérez");
    assert_eq!(lines[0]["speaker"], "bot");

    // The agent who started the call saw it live.
    let mut frames = Vec::new();
    {
        let mut messages = live.on_message();
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
            frames.push(serde_json::from_str::<Value>(&msg.get_payload::<String>().unwrap()).unwrap());
        }
    }
    let statuses: Vec<&Value> =
        frames.iter().filter(|f| f["event"] == "call_status").map(|f| &f["data"]["status"]).collect();
    assert_eq!(statuses, ["ringing", "answered"], "queued changes nothing; {frames:?}");
    let transcripts = frames.iter().filter(|f| f["event"] == "call_transcript").count();
    assert_eq!(transcripts, CONVERSATION.len());
    assert!(frames.iter().all(|f| f["data"]["call_id"] == id));

    // The end: status, then the report, post-processed by the worker.
    send_ok(
        &app,
        &event(&call, &ext, "status-update", json!({"status": "ended", "endedReason": "customer-ended-call"})),
    )
    .await;
    assert_eq!(send_ok(&app, &end_of_call_report(&call, &ext)).await, json!({"ok": true}));
    wait_for("the report to be processed", || async {
        get_call(&app, &admin, id).await["call"]["post_processed"] == true
    })
    .await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();

    let detail = get_call(&app, &admin, id).await;
    let c = &detail["call"];
    assert_eq!(c["status"], "completed");
    assert_eq!(c["duration"], 52);
    assert_eq!(c["ended_reason"], "customer-ended-call");
    assert_eq!(c["recording_url"], "https://storage.vapi.ai/recordings/fake.wav");
    let transcript = c["transcript"].as_str().unwrap();
    assert!(transcript.starts_with("Asistente: Hola, le habla Sofía"), "{transcript}");
    assert!(transcript.contains("Cliente: Busco un departamento en Ñuñoa"));
    let summary = c["summary"].as_str().unwrap();
    assert!(summary.contains("Ñuñoa") && summary.contains("Juan Pérez"), "{summary}");
    let lines = detail["transcript_lines"].as_array().unwrap();
    assert_eq!(lines.len(), CONVERSATION.len(), "the report's lines replace the live ones");
    assert_eq!(lines[11]["text"], "Sí, quiero agendar una visita este sábado");
    assert_eq!(lines[11]["timestamp"], 1.5 + 11.0 * 4.0);

    // What the lead said landed on the lead, and the rules ran.
    let resp =
        app.client().get(format!("/api/v1/leads/{lead_id}")).header("authorization", admin.bearer()).send().await;
    resp.assert_status_is_ok();
    let lead = body(resp).await;
    let lead = if lead["lead"].is_object() { lead["lead"].clone() } else { lead };
    assert_eq!(lead["name"], "Juan Pérez");
    assert_eq!(lead["email"], "juan.perez@correo.cl");
    let meta = &lead["lead_metadata"];
    assert_eq!(meta["location"], "Ñuñoa");
    assert_eq!(meta["monthly_income"], 1_800_000);
    assert_eq!(meta["dicom_status"], "clean");
    assert_eq!(meta["property_type"], "departamento");
    assert_eq!(meta["intent"], "schedule_visit");
    assert_eq!(lead["calificacion"], "calificado");
    let score = lead["lead_score"].as_f64().unwrap();
    assert!(score > before_score, "score {before_score} → {score}");
    assert_ne!(lead["pipeline_stage"], "entrada");
    assert_eq!(c["stage_after_call"], lead["pipeline_stage"]);
    assert!((c["score_delta"].as_f64().unwrap() - (score - before_score)).abs() < 1e-9);
    let completed: i64 = scalar(
        &app,
        &format!("SELECT count(*) FROM activity_log WHERE lead_id = {lead_id} AND action_type = 'call_ended'"),
    )
    .await
    .unwrap();
    assert_eq!(completed, 1);
}

#[tokio::test]
async fn duplicated_and_out_of_order_events_change_a_call_once() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let (_, call) = call_for(&app, &admin).await;
    let id = call["id"].as_i64().unwrap();
    dial(&app, &call, 1).await.unwrap();
    let ext = vapi.placed()[0].id.clone();

    // In progress arrives before ringing; ringing and duplicates then change nothing.
    send_ok(&app, &status(&call, &ext, "in-progress")).await;
    send_ok(&app, &status(&call, &ext, "ringing")).await;
    send_ok(&app, &status(&call, &ext, "queued")).await;
    assert_eq!(get_call(&app, &admin, id).await["call"]["status"], "answered");
    let line = said(&call, &ext, "user", "Me llamo Ana Rojas", 1_700_000_000_000);
    send_ok(&app, &line).await;
    send_ok(&app, &line).await;
    let detail = get_call(&app, &admin, id).await;
    let lines = detail["transcript_lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["timestamp"], 0.0, "a line stamped before the call started sits at its start");
    // A line's offset is VAPI's timestamp against the call's start.
    let started: chrono::DateTime<chrono::Utc> = detail["call"]["started_at"].as_str().unwrap().parse().unwrap();
    send_ok(&app, &said(&call, &ext, "assistant", "Hola Ana", started.timestamp_millis() + 4_500)).await;
    let detail = get_call(&app, &admin, id).await;
    let lines = detail["transcript_lines"].as_array().unwrap();
    assert_eq!((lines.len(), &lines[1]["speaker"], &lines[1]["text"]), (2, &json!("bot"), &json!("Hola Ana")));
    assert!((lines[1]["timestamp"].as_f64().unwrap() - 4.5).abs() < 0.01, "{}", lines[1]);
    send_ok(&app, &said(&call, &ext, "assistant", "Hola Ana", started.timestamp_millis() + 4_500)).await;
    assert_eq!(get_call(&app, &admin, id).await["transcript_lines"].as_array().unwrap().len(), 2);

    // The report twice (VAPI redelivers), a late status after it; processed once.
    let ended = event(&call, &ext, "status-update", json!({"status": "ended", "endedReason": "customer-ended-call"}));
    let eoc = end_of_call_report(&call, &ext);
    send_ok(&app, &eoc).await;
    send_ok(&app, &ended).await;
    send_ok(&app, &eoc).await;
    send_ok(&app, &status(&call, &ext, "in-progress")).await;
    let queued: i64 = scalar(
        &app,
        &format!(
            "SELECT count(*) FROM performed_effects WHERE kind = 'voice_call' AND broker_id = {}",
            call["broker_id"]
        ),
    )
    .await
    .unwrap();
    assert_eq!(queued, 1);
    report(&app, &call).await.unwrap();
    report(&app, &call).await.unwrap();
    send_ok(&app, &eoc).await;
    report(&app, &call).await.unwrap();
    let detail = get_call(&app, &admin, id).await;
    assert_eq!(detail["call"]["status"], "completed");
    assert_eq!(detail["call"]["post_processed"], true);
    assert_eq!(detail["transcript_lines"].as_array().unwrap().len(), CONVERSATION.len());
    let lead_id = call["lead_id"].as_i64().unwrap();
    let completed: i64 = scalar(
        &app,
        &format!("SELECT count(*) FROM activity_log WHERE lead_id = {lead_id} AND action_type = 'call_ended'"),
    )
    .await
    .unwrap();
    assert_eq!(completed, 1, "the report is processed once");
    // A late live line after processing adds nothing.
    send_ok(&app, &said(&call, &ext, "user", "¿Aló?", 1_700_000_099_000)).await;
    assert_eq!(get_call(&app, &admin, id).await["transcript_lines"].as_array().unwrap().len(), CONVERSATION.len());

    // Hang on a finished call does not reopen or cancel it; on an active one it cancels.
    send_ok(&app, &event(&call, &ext, "hang", json!({}))).await;
    assert_eq!(get_call(&app, &admin, id).await["call"]["status"], "completed");
    let (_, other) = call_for(&app, &admin).await;
    dial(&app, &other, 1).await.unwrap();
    let other_ext = vapi.placed()[1].id.clone();
    send_ok(&app, &event(&other, &other_ext, "hang", json!({}))).await;
    let c = get_call(&app, &admin, other["id"].as_i64().unwrap()).await;
    assert_eq!(c["call"]["status"], "cancelled");
    assert!(c["call"]["completed_at"].is_string());

    // Events about calls we do not know are acknowledged and ignored.
    let stranger = json!({"id": 999_999, "lead_id": 1, "broker_id": 1, "phone_number": "+56911111111"});
    assert_eq!(send_ok(&app, &status(&stranger, "unknown-ext", "ringing")).await, json!({"ok": true}));
}

#[tokio::test]
async fn tool_calls_merge_once_per_id_and_answer_in_vapis_format() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let (lead_id, call) = call_for(&app, &admin).await;
    let id = call["id"].as_i64().unwrap();
    dial(&app, &call, 1).await.unwrap();
    let ext = vapi.placed()[0].id.clone();
    let tools = event(
        &call,
        &ext,
        "tool-calls",
        json!({
            "toolCallList": [
                {"id": "call_abc", "type": "function",
                 "function": {"name": "capture_lead_info",
                              "arguments": {"nombre": "Marta Díaz", "email": "marta@correo.cl", "comuna": "Providencia"}}},
                {"id": "call_def", "type": "function",
                 "function": {"name": "capture_financial_info", "arguments": "{\"monthly_income\": 1200000, \"dicom\": null}"}},
                {"id": "call_ghi", "type": "function", "function": {"name": "launch_rockets", "arguments": {}}},
            ],
        }),
    );
    let answer = send_ok(&app, &tools).await;
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["toolCallId"], "call_abc");
    assert!(results[0]["result"].is_string());
    assert_eq!(results[1]["toolCallId"], "call_def");
    assert!(results[2]["result"].as_str().unwrap().contains("launch_rockets"));
    let output = get_call(&app, &admin, id).await["call"]["call_output"].clone();
    assert_eq!(
        output,
        json!({"nombre": "Marta Díaz", "email": "marta@correo.cl", "comuna": "Providencia", "monthly_income": 1200000})
    );

    // The same tool call again is answered but not merged again (a later call with a new id is).
    let again = send_ok(&app, &tools).await;
    assert_eq!(again["results"][0]["toolCallId"], "call_abc");
    let old_shape = event(
        &call,
        &ext,
        "tool-calls",
        json!({"toolWithToolCallList": [{"type": "function", "function": {"name": "capture_lead_info"},
               "toolCall": {"id": "call_abc", "name": "capture_lead_info", "parameters": {"email": "otra@correo.cl"}}}]}),
    );
    assert_eq!(send_ok(&app, &old_shape).await["results"][0]["toolCallId"], "call_abc");
    assert_eq!(get_call(&app, &admin, id).await["call"]["call_output"]["email"], "marta@correo.cl");

    // What the tools captured reaches the lead with the report, even when nobody said it aloud.
    let mut eoc = end_of_call_report(&call, &ext);
    eoc["message"]["artifact"]["messages"] = json!([]);
    eoc["message"]["artifact"]["transcript"] = json!("AI: Hola.\nUser: Hola.");
    eoc["message"]["analysis"]["summary"] = json!("La clienta Marta busca en Providencia.");
    send_ok(&app, &eoc).await;
    report(&app, &call).await.unwrap();
    let detail = get_call(&app, &admin, id).await;
    assert_eq!(detail["call"]["summary"], "La clienta Marta busca en Providencia.", "VAPI's summary without an LLM");
    assert_eq!(detail["transcript_lines"].as_array().unwrap().len(), 2, "lines from the transcript text");
    let resp =
        app.client().get(format!("/api/v1/leads/{lead_id}")).header("authorization", admin.bearer()).send().await;
    let lead = body(resp).await;
    let lead = if lead["lead"].is_object() { lead["lead"].clone() } else { lead };
    assert_eq!(lead["name"], "Marta Díaz");
    assert_eq!(lead["email"], "marta@correo.cl");
    assert_eq!(lead["lead_metadata"]["location"], "Providencia");
    assert_eq!(lead["lead_metadata"]["monthly_income"], 1_200_000);
}

#[tokio::test]
async fn wrong_or_stale_webhook_credentials_are_401_and_change_nothing() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let (_, call) = call_for(&app, &admin).await;
    let id = call["id"].as_i64().unwrap();
    dial(&app, &call, 1).await.unwrap();
    let ext = vapi.placed()[0].id.clone();
    let payload = status(&call, &ext, "ringing").to_string();
    let client = app.client();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut req = client.post("/api/v1/calls/webhook").content_type("application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(payload.clone()).send()
    };
    let now = chrono::Utc::now().timestamp();
    let sign = |secret: &str, ts: i64| shared::voice::webhook::sign(secret, &ts.to_string(), payload.as_bytes());

    expect_error(post(vec![]).await, 401, "not_authenticated").await;
    expect_error(post(vec![("x-vapi-secret", "nope".into())]).await, 401, "not_authenticated").await;
    let wrong = vec![("x-vapi-signature", sign("other", now)), ("x-vapi-timestamp", now.to_string())];
    expect_error(post(wrong).await, 401, "not_authenticated").await;
    let stale = vec![("x-vapi-signature", sign(SECRET, now - 600)), ("x-vapi-timestamp", (now - 600).to_string())];
    expect_error(post(stale).await, 401, "not_authenticated").await;
    let no_ts = vec![("x-vapi-signature", sign(SECRET, now))];
    expect_error(post(no_ts).await, 401, "not_authenticated").await;
    // A signature over another body (tampered) fails too.
    let other_body = status(&call, &ext, "in-progress").to_string();
    let resp = app
        .client()
        .post("/api/v1/calls/webhook")
        .content_type("application/json")
        .header("x-vapi-signature", sign(SECRET, now))
        .header("x-vapi-timestamp", now.to_string())
        .body(other_body)
        .send()
        .await;
    expect_error(resp, 401, "not_authenticated").await;
    assert_eq!(get_call(&app, &admin, id).await["call"]["status"], "initiated", "nothing changed");

    let good = vec![("x-vapi-signature", sign(SECRET, now)), ("x-vapi-timestamp", now.to_string())];
    post(good).await.assert_status_is_ok();
    assert_eq!(get_call(&app, &admin, id).await["call"]["status"], "ringing");

    // Authenticated garbage is a 4xx, never a 500.
    let resp = app
        .client()
        .post("/api/v1/calls/webhooks/voice")
        .header("x-vapi-secret", SECRET)
        .content_type("application/json")
        .body("{not json")
        .send()
        .await;
    expect_error(resp, 422, "validation_error").await;
    let resp = send(&app, &json!({"message": {"call": {"id": ext}}})).await;
    expect_error(resp, 422, "validation_error").await;

    // A message that arrives before the job recorded VAPI's id links the call, once authenticated.
    let (_, fresh) = call_for(&app, &admin).await;
    let fresh_id = fresh["id"].as_i64().unwrap();
    let early = status(&fresh, "ext-early", "ringing").to_string();
    let resp = app
        .client()
        .post("/api/v1/calls/webhook")
        .header("x-vapi-secret", "nope")
        .content_type("application/json")
        .body(early.clone())
        .send()
        .await;
    expect_error(resp, 401, "not_authenticated").await;
    assert!(get_call(&app, &admin, fresh_id).await["call"]["external_call_id"].is_null(), "nothing linked");
    send_ok(&app, &serde_json::from_str(&early).unwrap()).await;
    let c = get_call(&app, &admin, fresh_id).await;
    assert_eq!(c["call"]["external_call_id"], "ext-early");
    assert_eq!(c["call"]["status"], "ringing");
    // The job then finds the call linked and does not dial it.
    dial(&app, &fresh, 1).await.unwrap();
    assert_eq!(vapi.placed().len(), 1);
    // A body without a content type is refused with a 4xx.
    let resp = app.client().post("/api/v1/calls/webhook").header("x-vapi-secret", SECRET).body(early).send().await;
    assert!(resp.0.status().is_client_error(), "{}", resp.0.status());

    // Without any webhook secret the endpoint says voice is not configured.
    let bare = TestApp::spawn().await;
    let resp = bare
        .client()
        .post("/api/v1/calls/webhook")
        .header("x-vapi-secret", "anything")
        .content_type("application/json")
        .body(payload.clone())
        .send()
        .await;
    expect_error(resp, 400, "voice_not_configured").await;
}

#[tokio::test]
async fn a_sixth_active_call_is_refused_with_429() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;
    let mut calls = Vec::new();
    for _ in 0..5 {
        calls.push(call_for(&app, &admin).await.1);
    }
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let resp = start_call(&app, &admin, json!({"lead_id": lead["id"]})).await;
    let err = expect_error(resp, 429, "rate_limited").await;
    assert!(err["detail"].is_string());
    // Another broker is not affected.
    call_for(&app, &other).await;
    // Concurrent starts never pass the limit.
    let third = app.new_broker().await;
    let mut leads = Vec::new();
    for _ in 0..8 {
        leads.push(app.lead(&third, json!({"phone": phone()})).await["id"].as_i64().unwrap());
    }
    let starts = leads.iter().map(|l| start_call(&app, &third, json!({"lead_id": l})));
    let statuses: Vec<u16> =
        futures_util::future::join_all(starts).await.iter().map(|r| r.0.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");

    // A finished call frees its slot.
    dial(&app, &calls[0], 1).await.unwrap();
    let ext = vapi.placed()[0].id.clone();
    send_ok(&app, &event(&calls[0], &ext, "status-update", json!({"status": "ended", "endedReason": "customer-busy"})))
        .await;
    assert_eq!(get_call(&app, &admin, calls[0]["id"].as_i64().unwrap()).await["call"]["status"], "busy");
    start_call(&app, &admin, json!({"lead_id": lead["id"]})).await.assert_status(StatusCode::CREATED);

    // The list's filters and paging.
    let total = |q: &str| {
        let client = app.client();
        let bearer = admin.bearer();
        let url = format!("/api/v1/calls?{q}");
        async move {
            let resp = client.get(url).header("authorization", bearer).send().await;
            resp.assert_status_is_ok();
            body(resp).await
        }
    };
    assert_eq!(total("status=busy").await["total"], 1);
    assert_eq!(total("status=initiated").await["total"], 5);
    assert_eq!(total("call_purpose=calificacion_inicial").await["total"], 5);
    assert_eq!(total("call_purpose=reactivacion").await["total"], 0);
    let earlier = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d").to_string();
    assert_eq!(total(&format!("date_from={earlier}")).await["total"], 6);
    assert_eq!(total("date_to=2020-01-01").await["total"], 0);
    let page = total("skip=4&limit=4").await;
    assert_eq!((page["total"].as_i64(), page["data"].as_array().unwrap().len()), (Some(6), 2));
    assert_eq!((page["skip"].as_i64(), page["limit"].as_i64()), (Some(4), Some(4)));
    let first = total("limit=1").await;
    assert_eq!(first["data"][0]["lead_id"], lead["id"], "newest first");

    let metrics = app.client().get("/api/v1/calls/metrics").header("authorization", admin.bearer()).send().await;
    metrics.assert_status_is_ok();
    let m = body(metrics).await;
    assert_eq!(m["total"], 6);
    assert_eq!(m["active"], 5);
    assert_eq!(m["by_status"]["busy"], 1);
    assert_eq!(m["by_purpose"]["calificacion_inicial"], 5);
    assert_eq!(m["by_mode"]["ai_agent"], 6);
}

#[tokio::test]
async fn bad_call_requests_are_4xx_with_a_code() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let lead_id = lead["id"].as_i64().unwrap();

    expect_error(start_call(&app, &admin, json!({})).await, 422, "validation_error").await;
    expect_error(start_call(&app, &admin, json!({"lead_id": "x"})).await, 422, "validation_error").await;
    expect_error(start_call(&app, &admin, json!({"lead_id": 0})).await, 422, "validation_error").await;
    expect_error(start_call(&app, &admin, json!({"lead_id": 987_654})).await, 404, "not_found").await;
    let bad_purpose = json!({"lead_id": lead_id, "call_purpose": "vender_humo"});
    let err = expect_error(start_call(&app, &admin, bad_purpose).await, 422, "validation_error").await;
    assert_eq!(err["detail"][0]["loc"], json!(["body", "call_purpose"]));
    expect_error(
        start_call(&app, &admin, json!({"lead_id": lead_id, "campaign_id": -1})).await,
        422,
        "validation_error",
    )
    .await;
    expect_error(start_call(&app, &admin, json!({"lead_id": lead_id, "campaign_id": 31_337})).await, 404, "not_found")
        .await;
    let resp = app
        .client()
        .post("/api/v1/calls")
        .header("authorization", admin.bearer())
        .content_type("application/json")
        .body("{\"lead_id\": ")
        .send()
        .await;
    expect_error(resp, 422, "validation_error").await;
    expect_error(
        app.client().post("/api/v1/calls").body_json(&json!({"lead_id": lead_id})).send().await,
        401,
        "not_authenticated",
    )
    .await;

    // A lead without a real phone, and one who opted out.
    app.db()
        .execute_unprepared(&format!("UPDATE leads SET phone = 'web_chat_pending' WHERE id = {lead_id}"))
        .await
        .unwrap();
    expect_error(start_call(&app, &admin, json!({"lead_id": lead_id})).await, 422, "invalid_phone").await;
    let quiet = app.lead(&admin, json!({"phone": phone(), "lead_metadata": {"opted_out": true}})).await;
    expect_error(start_call(&app, &admin, json!({"lead_id": quiet["id"]})).await, 409, "lead_opted_out").await;
    let tagged = app.lead(&admin, json!({"phone": phone(), "tags": ["no_contactar"]})).await;
    expect_error(start_call(&app, &admin, json!({"lead_id": tagged["id"]})).await, 409, "lead_opted_out").await;

    // List filters.
    let client = app.client();
    let get = |q: &str| client.get(format!("/api/v1/calls?{q}")).header("authorization", admin.bearer()).send();
    expect_error(get("status=done").await, 422, "validation_error").await;
    expect_error(get("call_purpose=x").await, 422, "validation_error").await;
    expect_error(get("date_from=ayer").await, 422, "validation_error").await;
    expect_error(get("date_from=2026-02-01&date_to=2026-01-01").await, 422, "validation_error").await;
    expect_error(get("limit=500").await, 422, "validation_error").await;
    let resp = app.client().get("/api/v1/calls/abc").header("authorization", admin.bearer()).send().await;
    assert!(resp.0.status().is_client_error());
    let resp = app.client().get("/api/v1/calls/424242").header("authorization", admin.bearer()).send().await;
    expect_error(resp, 404, "not_found").await;

    // Without VAPI settings: a clear code, nothing stored.
    let bare = TestApp::spawn().await;
    let admin = bare.new_broker().await;
    let lead = bare.lead(&admin, json!({"phone": phone()})).await;
    expect_error(start_call(&bare, &admin, json!({"lead_id": lead["id"]})).await, 400, "voice_not_configured").await;
    let stored: i64 = scalar(&bare, "SELECT count(*) FROM voice_calls").await.unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn calls_and_their_webhooks_stay_within_their_broker() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let a = app.new_broker().await;
    let b = app.new_broker().await;
    let (lead_a, call_a) = call_for(&app, &a).await;
    let id_a = call_a["id"].as_i64().unwrap();
    let call_b = call_for(&app, &b).await.1;

    // Broker B cannot see, list or place calls on A's data.
    let resp = app.client().get(format!("/api/v1/calls/{id_a}")).header("authorization", b.bearer()).send().await;
    expect_error(resp, 404, "not_found").await;
    let resp = app.client().get("/api/v1/calls").header("authorization", b.bearer()).send().await;
    let page = body(resp).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["data"][0]["id"], call_b["id"]);
    expect_error(start_call(&app, &b, json!({"lead_id": lead_a})).await, 404, "not_found").await;
    let resp = app
        .client()
        .get(format!("/api/v1/calls?broker_id={}", a.broker_id.unwrap()))
        .header("authorization", b.bearer())
        .send()
        .await;
    expect_error(resp, 404, "not_found").await;

    // An agent sees the calls of its leads and those it started, not the rest of its broker's.
    let agent = app.user_in(&a, "agent").await;
    let own = app.lead(&agent, json!({"phone": phone()})).await;
    let resp = start_call(&app, &agent, json!({"lead_id": own["id"]})).await;
    resp.assert_status(StatusCode::CREATED);
    let agent_call = body(resp).await;
    let resp = app.client().get("/api/v1/calls").header("authorization", agent.bearer()).send().await;
    let page = body(resp).await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["data"][0]["id"], agent_call["id"]);
    let resp = app.client().get(format!("/api/v1/calls/{id_a}")).header("authorization", agent.bearer()).send().await;
    expect_error(resp, 404, "not_found").await;
    expect_error(start_call(&app, &agent, json!({"lead_id": lead_a})).await, 404, "not_found").await;
    let resp = app.client().get("/api/v1/calls/metrics").header("authorization", agent.bearer()).send().await;
    assert_eq!(body(resp).await["total"], 1);
    let resp =
        app.client().get(format!("/api/v1/calls?lead_id={lead_a}")).header("authorization", a.bearer()).send().await;
    assert_eq!(body(resp).await["total"], 1);

    let resp =
        app.client().get(format!("/api/v1/calls/leads/{lead_a}")).header("authorization", a.bearer()).send().await;
    assert_eq!(body(resp).await["data"][0]["id"], id_a);
    let resp =
        app.client().get(format!("/api/v1/calls/leads/{lead_a}")).header("authorization", b.bearer()).send().await;
    expect_error(resp, 404, "not_found").await;

    // Broker B's own webhook secret does not authenticate messages about A's calls.
    let resp = app
        .client()
        .put("/api/broker/voice/config")
        .header("authorization", b.bearer())
        .body_json(&json!({"provider_credentials": {"webhook_secret": "b-only-secret"}}))
        .send()
        .await;
    resp.assert_status_is_ok();
    dial(&app, &call_a, 1).await.unwrap();
    dial(&app, &call_b, 1).await.unwrap();
    let (ext_a, ext_b) = (vapi.placed()[0].id.clone(), vapi.placed()[1].id.clone());
    let client = app.client();
    let as_b = |payload: Value| {
        client
            .post("/api/v1/calls/webhook")
            .header("x-vapi-secret", "b-only-secret")
            .content_type("application/json")
            .body(payload.to_string())
            .send()
    };
    expect_error(as_b(status(&call_a, &ext_a, "ringing")).await, 401, "not_authenticated").await;
    as_b(status(&call_b, &ext_b, "ringing")).await.assert_status_is_ok();
    // Metadata naming A's call under B's external id does not reach A's call either.
    let mut forged = status(&call_b, &ext_b, "in-progress");
    forged["message"]["call"]["metadata"]["call_id"] = json!(id_a);
    as_b(forged).await.assert_status_is_ok();
    assert_eq!(get_call(&app, &a, id_a).await["call"]["status"], "initiated");
    assert_eq!(get_call(&app, &b, call_b["id"].as_i64().unwrap()).await["call"]["status"], "answered");
}

#[tokio::test]
async fn a_retried_voice_call_job_never_dials_twice() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let (_, call) = call_for(&app, &admin).await;
    let id = call["id"].as_i64().unwrap();

    // VAPI down: the attempt fails (retried later), nothing is recorded as dialled.
    vapi.set(|v| v.fail = Some((503, json!({"message": "Service Unavailable", "statusCode": 503}))));
    let err = dial(&app, &call, 1).await.unwrap_err();
    assert!(!shared::jobs::is_permanent(&err), "{err:?}");
    assert_eq!(get_call(&app, &admin, id).await["call"]["status"], "initiated");
    vapi.set(|v| v.fail = None);

    dial(&app, &call, 2).await.unwrap();
    dial(&app, &call, 3).await.unwrap();
    assert_eq!(vapi.placed().len(), 1);
    let ext = vapi.placed()[0].id.clone();
    // A worker that died after VAPI answered but before the call was linked: the retry finds the
    // recorded result instead of dialling again.
    app.db()
        .execute_unprepared(&format!("UPDATE voice_calls SET external_call_id = NULL WHERE id = {id}"))
        .await
        .unwrap();
    dial(&app, &call, 4).await.unwrap();
    assert_eq!(vapi.placed().len(), 1, "no second call");
    assert_eq!(get_call(&app, &admin, id).await["call"]["external_call_id"], ext.as_str());

    // A permanent refusal fails the call at once (and frees its slot).
    let (_, refused) = call_for(&app, &admin).await;
    vapi.set(|v| {
        v.fail = Some((
            400,
            json!({"message": ["customer.number must be a valid phone number"],
                                            "error": "Bad Request", "statusCode": 400}),
        ))
    });
    let err = dial(&app, &refused, 1).await.unwrap_err();
    assert!(shared::jobs::is_permanent(&err));
    let c = get_call(&app, &admin, refused["id"].as_i64().unwrap()).await;
    assert_eq!(c["call"]["status"], "failed");
    assert!(c["call"]["ended_reason"].as_str().unwrap().starts_with("dial_failed"));
    // A cancelled call is not dialled afterwards.
    vapi.set(|v| v.fail = None);
    dial(&app, &refused, 2).await.unwrap();
    assert_eq!(vapi.placed().len(), 1);
}

#[tokio::test]
async fn the_voice_configuration_is_admin_only_encrypted_and_used_for_calls() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let broker_id = admin.broker_id.unwrap();
    let agent = app.user_in(&admin, "agent").await;
    let client = app.client();
    let put = |user: &User, b: Value| {
        client.put("/api/broker/voice/config").header("authorization", user.bearer()).body_json(&b).send()
    };
    let resp = app.client().get("/api/broker/voice/config").header("authorization", admin.bearer()).send().await;
    resp.assert_status_is_ok();
    let empty = body(resp).await;
    assert_eq!(empty["provider_credentials"], json!({}));
    assert_eq!(empty["ready"], true, "the deployment's settings suffice");

    let cfg = json!({
        "provider_credentials": {"api_key": "broker-own-key", "webhook_secret": "broker-secret"},
        "phone_number_id": "pn_broker",
        "assistant_id_default": "asst_broker",
        "assistant_id_by_type": {"reactivacion": "asst_reactivar"},
        "first_message_template": "Hola {{first_name}}, te llamo de la corredora.",
    });
    let resp = put(&admin, cfg).await;
    resp.assert_status_is_ok();
    let out = body(resp).await;
    assert_eq!(out["provider_credentials"], json!({"api_key": "***", "webhook_secret": "***"}));
    assert!(!out.to_string().contains("broker-own-key"));
    let stored: Value = scalar(&app, "SELECT provider_credentials FROM broker_voice_configs").await.unwrap();
    assert!(stored["api_key"].as_str().unwrap().starts_with("enc:v1:"), "{stored}");
    assert!(!stored.to_string().contains("broker-secret"));
    // Sending the mask back keeps the secret.
    let resp = put(&admin, json!({"provider_credentials": {"api_key": "***"}, "recording_enabled": false})).await;
    resp.assert_status_is_ok();
    assert_eq!(body(resp).await["provider_credentials"]["api_key"], "***");

    expect_error(put(&agent, json!({"phone_number_id": "x"})).await, 403, "forbidden").await;
    let resp = app.client().get("/api/broker/voice/config").header("authorization", agent.bearer()).send().await;
    expect_error(resp, 403, "forbidden").await;
    expect_error(put(&admin, json!({"assistant_id_by_type": {"vender": "a"}})).await, 422, "validation_error").await;
    expect_error(put(&admin, json!({"phone_number_id": "has space"})).await, 422, "validation_error").await;
    expect_error(put(&admin, json!({"first_message_template": "x".repeat(1001)})).await, 422, "validation_error").await;
    expect_error(put(&admin, json!({"recording_enabled": "yes"})).await, 422, "validation_error").await;
    let resp = app
        .client()
        .get(format!("/api/broker/voice/config?broker_id={}", broker_id + 1000))
        .header("authorization", admin.bearer())
        .send()
        .await;
    expect_error(resp, 404, "not_found").await;

    // A call for a purpose uses the broker's assistant for it, its number, its key and first message.
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Pedro Soto"})).await;
    let resp = start_call(&app, &admin, json!({"lead_id": lead["id"], "call_purpose": "reactivacion"})).await;
    resp.assert_status(StatusCode::CREATED);
    let call = body(resp).await;
    dial(&app, &call, 1).await.unwrap();
    let p = vapi.placed()[0].clone();
    assert_eq!(p.auth.as_deref(), Some("Bearer broker-own-key"));
    assert_eq!(p.body["assistantId"], "asst_reactivar");
    assert_eq!(p.body["phoneNumberId"], "pn_broker");
    assert_eq!(p.body["assistantOverrides"]["firstMessage"], "Hola Pedro, te llamo de la corredora.");
    // The broker's own webhook secret authenticates messages about its calls.
    let resp = app
        .client()
        .post("/api/v1/calls/webhook")
        .header("x-vapi-secret", "broker-secret")
        .content_type("application/json")
        .body(status(&call, &p.id, "ringing").to_string())
        .send()
        .await;
    resp.assert_status_is_ok();

    // A campaign step places calls through the same function, as the broker.
    let ctx = shared::Ctx::broker_system(broker_id);
    let lead2 = app.lead(&admin, json!({"phone": phone()})).await;
    let campaign: i64 = scalar(
        &app,
        &format!(
            "INSERT INTO campaigns (broker_id, name, channel) VALUES ({broker_id}, 'Reactivar', 'call') RETURNING id"
        ),
    )
    .await
    .unwrap();
    let lead2_id = lead2["id"].as_i64().unwrap();
    let placed = shared::voice::place_call(app.infra(), &ctx, lead2_id, Some(campaign), None).await.unwrap();
    assert_eq!(placed.call_mode, "outbound");
    assert_eq!(placed.campaign_id, Some(campaign));
    // Another broker's campaign is not found.
    let other = app.new_broker().await;
    let err = shared::voice::place_call(
        app.infra(),
        &shared::Ctx::broker_system(other.broker_id.unwrap()),
        app.lead(&other, json!({"phone": phone()})).await["id"].as_i64().unwrap(),
        Some(campaign),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.status(), 404);
    assert_eq!(placed.agent_user_id, None);

    // An assistant request names the assistant of the broker that owns the number.
    let request = json!({"message": {"type": "assistant-request", "timestamp": 1, "call": {"id": "inbound-1",
                          "type": "inboundPhoneCall", "phoneNumberId": "pn_broker", "customer": {"number": "+56933333333"}}}});
    assert_eq!(send_ok(&app, &request).await, json!({"assistantId": "asst_broker"}));
    let mut unknown = request.clone();
    unknown["message"]["call"]["phoneNumberId"] = json!("pn_nobody");
    assert_eq!(send_ok(&app, &unknown).await, json!({"error": "No assistant configured"}));
    let mut env_number = request.clone();
    env_number["message"]["call"]["phoneNumberId"] = json!("pn_env");
    assert_eq!(send_ok(&app, &env_number).await, json!({"assistantId": "asst_env"}));
}

/// An OpenAI-compatible chat server that answers every completion with `text` and records the prompts.
async fn fake_openai(text: &'static str) -> (String, Arc<Mutex<Vec<Value>>>) {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let endpoint = poem::endpoint::make(move |mut req: Request| {
        let record = record.clone();
        async move {
            let raw = req.take_body().into_bytes().await.unwrap_or_default();
            record.lock().unwrap().push(serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null));
            reply(
                200,
                json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 420, "completion_tokens": 35, "total_tokens": 455}}),
            )
        }
    });
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    (format!("http://{addr}/v1"), seen)
}

#[tokio::test]
async fn with_an_llm_configured_the_call_summary_is_its_and_is_costed() {
    let vapi = fake_vapi().await;
    let (llm, prompts) = fake_openai("Juan busca departamento en Ñuñoa, califica y quiere visitar el sábado.").await;
    let base = vapi.base.clone();
    let app = TestApp::spawn_with(move |k| match k {
        "VAPI_BASE_URL" => Some(base.clone()),
        "VAPI_API_KEY" => Some(API_KEY.into()),
        "VAPI_PHONE_NUMBER_ID" => Some("pn_env".into()),
        "VAPI_ASSISTANT_ID" => Some("asst_env".into()),
        "VAPI_WEBHOOK_SECRET" => Some(SECRET.into()),
        "LLM_PROVIDER" => Some("openai".into()),
        "OPENAI_API_KEY" => Some("sk-test".into()),
        "OPENAI_BASE_URL" => Some(llm.clone()),
        "OPENAI_MODEL" => Some("gpt-4o-mini".into()),
        "LLM_RETRIES" => Some("0".into()),
        "PROVIDER_TIMEOUT_MS" => Some("3000".into()),
        _ => None,
    })
    .await;
    let admin = app.new_broker().await;
    let (lead_id, call) = call_for(&app, &admin).await;
    dial(&app, &call, 1).await.unwrap();
    let ext = vapi.placed()[0].id.clone();
    send_ok(&app, &end_of_call_report(&call, &ext)).await;
    report(&app, &call).await.unwrap();
    let detail = get_call(&app, &admin, call["id"].as_i64().unwrap()).await;
    assert_eq!(detail["call"]["summary"], "Juan busca departamento en Ñuñoa, califica y quiere visitar el sábado.");
    let sent = prompts.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].to_string().contains("Busco un departamento en Ñuñoa"), "the transcript is what is summarised");
    let costed: i64 = scalar(
        &app,
        &format!(
            "SELECT count(*) FROM llm_calls WHERE lead_id = {lead_id} AND call_type = 'summary' AND input_tokens = 420"
        ),
    )
    .await
    .unwrap();
    assert_eq!(costed, 1);
}

#[tokio::test]
async fn calls_that_will_never_finish_stop_holding_a_slot() {
    let vapi = fake_vapi().await;
    let app = app_with(&vapi).await;
    let admin = app.new_broker().await;
    let (_, lost) = call_for(&app, &admin).await;
    let (_, silent) = call_for(&app, &admin).await;
    let (_, fine) = call_for(&app, &admin).await;
    dial(&app, &silent, 1).await.unwrap();
    dial(&app, &fine, 1).await.unwrap();
    let ext = vapi.placed()[1].id.clone();
    send_ok(&app, &status(&fine, &ext, "in-progress")).await;
    app.db()
        .execute_unprepared(&format!(
            "UPDATE voice_calls SET created_at = now() - interval '31 minutes', updated_at = now() - interval '31 minutes' \
             WHERE id = {}; UPDATE voice_calls SET updated_at = now() - interval '4 hours' WHERE id = {}; \
             UPDATE voice_calls SET created_at = now() - interval '1 hour' WHERE id = {}",
            lost["id"], silent["id"], fine["id"]
        ))
        .await
        .unwrap();
    assert_eq!(shared::voice::service::expire_stale(app.infra(), chrono::Utc::now()).await.unwrap(), 2);
    let l = get_call(&app, &admin, lost["id"].as_i64().unwrap()).await["call"].clone();
    assert_eq!((l["status"].as_str(), l["ended_reason"].as_str()), (Some("failed"), Some("never_placed")));
    assert_eq!(get_call(&app, &admin, silent["id"].as_i64().unwrap()).await["call"]["status"], "failed");
    let f = get_call(&app, &admin, fine["id"].as_i64().unwrap()).await["call"].clone();
    assert_eq!(f["status"], "answered", "a live call is left alone");
    assert!(worker::schedules::defaults().iter().any(|s| s.name == "expire_stale_calls"));
}
