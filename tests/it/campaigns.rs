//! Drip campaigns: CRUD and validation, tenant isolation, applying in bulk, the step jobs (run by an
//! in-process worker, or by calling the runner as the worker does), stop on reply, quiet hours,
//! max_contacts, idempotent redelivery, update_stage, make_call without voice, logs and stats.

use std::time::Duration as StdDuration;

use chrono::{DateTime, TimeZone, Utc};
use poem::http::StatusCode;
use poem::test::TestResponse;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use shared::campaigns::runner::{self, StepOutcome};
use shared::jobs::campaign_step::CampaignStep;

use crate::calendar::{next_event, subscribe};
use crate::common::{TestApp, User, body, expect_error, phone};

async fn send(app: &TestApp, user: &User, method: &str, path: &str, b: Option<Value>) -> TestResponse {
    let c = app.client();
    let req = match method {
        "POST" => c.post(path),
        "PUT" => c.put(path),
        "PATCH" => c.patch(path),
        "DELETE" => c.delete(path),
        _ => c.get(path),
    }
    .header("authorization", user.bearer());
    match b {
        Some(b) => req.body_json(&b).send().await,
        None => req.send().await,
    }
}

async fn ok(resp: TestResponse, status: u16) -> Value {
    let actual = resp.0.status().as_u16();
    let b = body(resp).await;
    assert_eq!(actual, status, "unexpected status; body: {b}");
    b
}

async fn campaign(app: &TestApp, user: &User, b: Value) -> Value {
    ok(send(app, user, "POST", "/api/v1/campaigns", Some(b)).await, 201).await
}

async fn step(app: &TestApp, user: &User, id: i64, b: Value) -> Value {
    ok(send(app, user, "POST", &format!("/api/v1/campaigns/{id}/steps"), Some(b)).await, 201).await
}

async fn activate(app: &TestApp, user: &User, id: i64) -> Value {
    ok(send(app, user, "PUT", &format!("/api/v1/campaigns/{id}/activate"), None).await, 200).await
}

async fn apply(app: &TestApp, user: &User, id: i64, leads: &[i64]) -> Value {
    ok(send(app, user, "POST", &format!("/api/v1/campaigns/{id}/apply"), Some(json!({"lead_ids": leads}))).await, 200)
        .await
}

async fn logs(app: &TestApp, user: &User, id: i64, query: &str) -> Value {
    ok(send(app, user, "GET", &format!("/api/v1/campaigns/{id}/logs?{query}"), None).await, 200).await
}

async fn lead(app: &TestApp, user: &User, name: &str) -> i64 {
    app.lead(user, json!({"phone": phone(), "name": name})).await["id"].as_i64().unwrap()
}

/// An active manual campaign with the given steps; returns `(campaign id, step ids)`.
async fn active_campaign(app: &TestApp, admin: &User, extra: Value, steps: &[Value]) -> (i64, Vec<i64>) {
    let mut b = json!({"name": "Reactivación", "channel": "whatsapp"});
    if let (Value::Object(m), Value::Object(e)) = (&mut b, extra) {
        m.extend(e);
    }
    let id = campaign(app, admin, b).await["id"].as_i64().unwrap();
    let mut ids = Vec::new();
    for s in steps {
        ids.push(step(app, admin, id, s.clone()).await["id"].as_i64().unwrap());
    }
    activate(app, admin, id).await;
    (id, ids)
}

fn job(admin: &User, campaign_id: i64, lead_id: i64, step_id: i64) -> CampaignStep {
    CampaignStep { broker_id: admin.broker_id.unwrap(), campaign_id, lead_id, step_id }
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    app.db()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// Campaign messages stored for a lead.
async fn campaign_messages(app: &TestApp, lead_id: i64) -> Vec<String> {
    let rows = app
        .db()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT message_text FROM chat_messages WHERE lead_id = {lead_id} AND direction = 'out' \
                 AND provider_metadata->>'kind' = 'campaign' ORDER BY id"
            ),
        ))
        .await
        .unwrap();
    rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect()
}

/// The log of one step for one lead.
fn log_of(page: &Value, lead_id: i64, step_id: i64) -> Value {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lead_id"] == lead_id && l["step_id"] == step_id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A test app whose campaign steps ignore the quiet hours (they would hold most sends until 08:00).
async fn app_without_quiet_hours() -> TestApp {
    TestApp::spawn_with(|k| (k == "CAMPAIGN_QUIET_HOURS").then(|| "off".to_string())).await
}

fn noon() -> DateTime<Utc> {
    // The runner is given "now"; a weekday noon in Santiago, outside quiet hours.
    let today = Utc::now().with_timezone(&shared::leads::model::TZ).date_naive();
    shared::leads::model::TZ
        .from_local_datetime(&today.and_hms_opt(12, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------------------
// CRUD, validation, tenancy

#[tokio::test]
async fn campaigns_and_steps_have_full_crud() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let c = campaign(&app, &admin, json!({"name": "Bienvenida", "description": "Primeros pasos"})).await;
    assert_eq!(c["status"], "draft");
    assert_eq!(c["channel"], "telegram");
    assert_eq!(c["triggered_by"], "manual");
    assert_eq!(c["broker_id"], admin.broker_id.unwrap());
    assert_eq!(c["created_by"], admin.id);
    assert_eq!(c["steps"], json!([]));
    let id = c["id"].as_i64().unwrap();

    let s1 =
        step(&app, &admin, id, json!({"step_number": 1, "action": "send_message", "message_text": "Hola {{name}}"}))
            .await;
    assert_eq!((s1["delay_hours"].as_i64(), s1["use_ai_message"].as_bool()), (Some(0), Some(false)));
    let s2 = step(
        &app,
        &admin,
        id,
        json!({"step_number": 2, "action": "update_stage", "target_stage": "Seguimiento",
                                           "delay_hours": 24, "channel": "webchat"}),
    )
    .await;
    assert_eq!((s2["target_stage"].as_str(), s2["channel"].as_str()), (Some("seguimiento"), Some("webchat")));

    let got = ok(send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}"), None).await, 200).await;
    assert_eq!(got["steps"].as_array().unwrap().len(), 2);
    assert_eq!(got["steps"][0]["step_number"], 1);

    let patched = ok(
        send(
            &app,
            &admin,
            "PATCH",
            &format!("/api/v1/campaigns/{id}/steps/{}", s1["id"]),
            Some(json!({"delay_hours": 3})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["delay_hours"], 3);

    let updated = ok(
        send(
            &app,
            &admin,
            "PUT",
            &format!("/api/v1/campaigns/{id}"),
            Some(json!({"name": "Bienvenida 2", "max_contacts": 10})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!((updated["name"].as_str(), updated["max_contacts"].as_i64()), (Some("Bienvenida 2"), Some(10)));
    let cleared = ok(
        send(&app, &admin, "PUT", &format!("/api/v1/campaigns/{id}"), Some(json!({"max_contacts": null}))).await,
        200,
    )
    .await;
    assert!(cleared["max_contacts"].is_null());

    campaign(&app, &admin, json!({"name": "Otra", "channel": "webchat"})).await;
    let list = ok(send(&app, &admin, "GET", "/api/v1/campaigns?limit=1", None).await, 200).await;
    assert_eq!((list["total"].as_i64(), list["limit"].as_i64(), list["skip"].as_i64()), (Some(2), Some(1), Some(0)));
    assert_eq!(list["data"][0]["name"], "Otra", "newest first");
    let webchat = ok(send(&app, &admin, "GET", "/api/v1/campaigns?channel=webchat", None).await, 200).await;
    assert_eq!(webchat["total"], 1);

    // Workflow: draft → pending_review → active → paused → active.
    let sub = ok(send(&app, &admin, "PUT", &format!("/api/v1/campaigns/{id}/submit"), None).await, 200).await;
    assert_eq!(sub["status"], "pending_review");
    let act = activate(&app, &admin, id).await;
    assert_eq!((act["status"].as_str(), act["approved_by"].as_i64()), (Some("active"), Some(admin.id)));
    let paused = ok(send(&app, &admin, "PUT", &format!("/api/v1/campaigns/{id}/pause"), None).await, 200).await;
    assert_eq!(paused["status"], "paused");
    expect_error(
        send(&app, &admin, "PUT", &format!("/api/v1/campaigns/{id}/submit"), None).await,
        400,
        "invalid_status_transition",
    )
    .await;

    let resp = send(&app, &admin, "DELETE", &format!("/api/v1/campaigns/{id}/steps/{}", s2["id"]), None).await;
    resp.assert_status(StatusCode::NO_CONTENT);
    let resp = send(&app, &admin, "DELETE", &format!("/api/v1/campaigns/{id}"), None).await;
    resp.assert_status(StatusCode::NO_CONTENT);
    expect_error(send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}"), None).await, 404, "not_found").await;
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_detail_and_code() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let post = |b: Value| send(&app, &admin, "POST", "/api/v1/campaigns", Some(b));
    expect_error(post(json!({"name": "  "})).await, 422, "validation_error").await;
    expect_error(post(json!({"name": "x".repeat(201)})).await, 422, "validation_error").await;
    expect_error(post(json!({"name": "c", "channel": "fax"})).await, 422, "validation_error").await;
    expect_error(post(json!({"name": "c", "triggered_by": "weather"})).await, 422, "validation_error").await;
    expect_error(post(json!({"name": "c", "triggered_by": "stage_change"})).await, 422, "invalid_trigger_condition")
        .await;
    expect_error(
        post(json!({"name": "c", "triggered_by": "stage_change", "trigger_condition": {"stage": "nowhere"}})).await,
        422,
        "invalid_trigger_condition",
    )
    .await;
    expect_error(
        post(
            json!({"name": "c", "triggered_by": "lead_score", "trigger_condition": {"score_min": 90, "score_max": 10}}),
        )
        .await,
        422,
        "invalid_trigger_condition",
    )
    .await;
    expect_error(post(json!({"name": "c", "max_contacts": 0})).await, 422, "validation_error").await;
    expect_error(post(json!({"channel": "webchat"})).await, 422, "validation_error").await;
    let resp = app
        .client()
        .post("/api/v1/campaigns")
        .header("authorization", admin.bearer())
        .content_type("application/json")
        .body("{not json")
        .send()
        .await;
    expect_error(resp, 422, "validation_error").await;

    let id = campaign(&app, &admin, json!({"name": "c"})).await["id"].as_i64().unwrap();
    let steps_path = format!("/api/v1/campaigns/{id}/steps");
    let add = |b: Value| send(&app, &admin, "POST", &steps_path, Some(b));
    expect_error(add(json!({"step_number": 1, "action": "schedule_meeting"})).await, 422, "unsupported_action").await;
    expect_error(add(json!({"step_number": 1, "action": "dance"})).await, 422, "validation_error").await;
    expect_error(add(json!({"step_number": 1, "action": "send_message"})).await, 422, "message_required").await;
    expect_error(add(json!({"step_number": 1, "action": "update_stage"})).await, 422, "target_stage_required").await;
    expect_error(
        add(json!({"step_number": 1, "action": "update_stage", "target_stage": "x"})).await,
        422,
        "invalid_stage",
    )
    .await;
    expect_error(add(json!({"step_number": 0, "action": "make_call"})).await, 422, "validation_error").await;
    expect_error(
        add(json!({"step_number": 1, "action": "make_call", "delay_hours": -1})).await,
        422,
        "validation_error",
    )
    .await;
    expect_error(
        add(json!({"step_number": 1, "action": "send_message", "message_template_id": 999999})).await,
        422,
        "invalid_template",
    )
    .await;
    add(json!({"step_number": 1, "action": "make_call"})).await.assert_status(StatusCode::CREATED);
    expect_error(add(json!({"step_number": 1, "action": "make_call"})).await, 409, "step_exists").await;

    expect_error(send(&app, &admin, "GET", "/api/v1/campaigns?limit=500", None).await, 422, "validation_error").await;
    expect_error(send(&app, &admin, "GET", "/api/v1/campaigns?status=nope", None).await, 422, "validation_error").await;
    expect_error(
        send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}/logs?status=nope"), None).await,
        422,
        "validation_error",
    )
    .await;
    expect_error(
        send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}/matching-leads?limit=21"), None).await,
        422,
        "validation_error",
    )
    .await;

    // Applying: only active campaigns, with steps, to a non-empty list.
    let l = lead(&app, &admin, "Ana Pérez").await;
    let apply_path = format!("/api/v1/campaigns/{id}/apply");
    expect_error(
        send(&app, &admin, "POST", &apply_path, Some(json!({"lead_ids": [l]}))).await,
        409,
        "campaign_not_active",
    )
    .await;
    let empty = campaign(&app, &admin, json!({"name": "vacía"})).await["id"].as_i64().unwrap();
    expect_error(
        send(&app, &admin, "PUT", &format!("/api/v1/campaigns/{empty}/activate"), None).await,
        400,
        "campaign_has_no_steps",
    )
    .await;
    activate(&app, &admin, id).await;
    expect_error(send(&app, &admin, "POST", &apply_path, Some(json!({"lead_ids": []}))).await, 422, "validation_error")
        .await;
    expect_error(
        send(&app, &admin, "POST", &apply_path, Some(json!({"lead_ids": "all"}))).await,
        422,
        "validation_error",
    )
    .await;
    expect_error(
        send(&app, &admin, "POST", &format!("/api/v1/campaigns/{id}/apply-to-lead/999999"), None).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn another_brokers_campaigns_are_out_of_reach_and_agents_cannot_approve() {
    let app = TestApp::spawn().await;
    let a = app.new_broker().await;
    let b = app.new_broker().await;
    let (id, steps) = active_campaign(&app, &a, json!({}), &[json!({"step_number": 1, "action": "make_call"})]).await;
    for (method, path) in [
        ("GET", format!("/api/v1/campaigns/{id}")),
        ("PUT", format!("/api/v1/campaigns/{id}/pause")),
        ("DELETE", format!("/api/v1/campaigns/{id}")),
        ("GET", format!("/api/v1/campaigns/{id}/logs")),
        ("GET", format!("/api/v1/campaigns/{id}/stats")),
        ("GET", format!("/api/v1/campaigns/{id}/matching-leads")),
        ("DELETE", format!("/api/v1/campaigns/{id}/steps/{}", steps[0])),
    ] {
        expect_error(send(&app, &b, method, &path, None).await, 404, "not_found").await;
    }
    expect_error(
        send(&app, &b, "PUT", &format!("/api/v1/campaigns/{id}"), Some(json!({"name": "mío"}))).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        send(
            &app,
            &b,
            "POST",
            &format!("/api/v1/campaigns/{id}/steps"),
            Some(json!({"step_number": 2, "action": "make_call"})),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let b_lead = lead(&app, &b, "Bruno Díaz").await;
    expect_error(
        send(&app, &b, "POST", &format!("/api/v1/campaigns/{id}/apply"), Some(json!({"lead_ids": [b_lead]}))).await,
        404,
        "not_found",
    )
    .await;
    let list = ok(send(&app, &b, "GET", "/api/v1/campaigns", None).await, 200).await;
    assert_eq!(list["total"], 0);

    // A's campaign applied to B's lead by A: not one of A's leads.
    let applied = apply(&app, &a, id, &[b_lead]).await;
    assert_eq!((applied["enrolled"].as_i64(), applied["not_found"].as_i64()), (Some(0), Some(1)));
    expect_error(
        send(&app, &a, "POST", &format!("/api/v1/campaigns/{id}/apply-to-lead/{b_lead}"), None).await,
        404,
        "not_found",
    )
    .await;

    // An agent drafts and submits, but only an admin approves, pauses or deletes.
    let agent = app.user_in(&a, "agent").await;
    let draft = campaign(&app, &agent, json!({"name": "del agente"})).await["id"].as_i64().unwrap();
    step(&app, &agent, draft, json!({"step_number": 1, "action": "make_call"})).await;
    ok(send(&app, &agent, "PUT", &format!("/api/v1/campaigns/{draft}/submit"), None).await, 200).await;
    expect_error(
        send(&app, &agent, "PUT", &format!("/api/v1/campaigns/{draft}/activate"), None).await,
        403,
        "forbidden",
    )
    .await;
    expect_error(
        send(&app, &agent, "PUT", &format!("/api/v1/campaigns/{draft}"), Some(json!({"status": "active"}))).await,
        403,
        "forbidden",
    )
    .await;
    expect_error(send(&app, &agent, "DELETE", &format!("/api/v1/campaigns/{draft}"), None).await, 403, "forbidden")
        .await;
    activate(&app, &a, draft).await;
}

// ---------------------------------------------------------------------------------------------
// Applying and running steps

#[tokio::test]
async fn applying_schedules_every_first_step_and_the_worker_sends_them() {
    let app = app_without_quiet_hours().await;
    let admin = app.new_broker().await;
    let (id, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[
            json!({"step_number": 1, "action": "send_message", "message_text": "Hola {{first_name}}, ¿seguimos?"}),
            json!({"step_number": 2, "action": "send_message", "message_text": "¿Te ayudo?", "delay_hours": 48}),
        ],
    )
    .await;
    let leads = [
        lead(&app, &admin, "Ana Pérez").await,
        lead(&app, &admin, "Berta Soto").await,
        lead(&app, &admin, "Carla Ríos").await,
    ];
    let mut events = subscribe(&app, admin.broker_id.unwrap()).await;

    let applied = apply(&app, &admin, id, &[leads[0], leads[1], leads[2], leads[2], 987_654]).await;
    assert_eq!(applied["requested"], 4);
    assert_eq!(applied["enrolled"], 3);
    assert_eq!(applied["steps_enqueued"], 3);
    assert_eq!(applied["not_found"], 1);
    assert_eq!(applied["already_enrolled"], 0);
    let pending = logs(&app, &admin, id, "status=pending").await;
    assert_eq!(pending["total"], 3, "each lead's first step is logged pending before it runs: {pending}");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(app.infra().clone(), "campaign-worker".into(), vec![], async {
        let _ = stopped.await;
    }));
    let event = next_event(&mut events, "campaign_step_sent").await;
    assert_eq!((event["data"]["campaign_id"].as_i64(), event["data"]["status"].as_str()), (Some(id), Some("sent")));
    let mut sent = 0;
    for _ in 0..100 {
        sent = logs(&app, &admin, id, "status=sent").await["total"].as_i64().unwrap();
        if sent == 3 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert_eq!(sent, 3, "every first step ran");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();

    assert_eq!(campaign_messages(&app, leads[0]).await, vec!["Hola Ana, ¿seguimos?"]);
    let page = logs(&app, &admin, id, &format!("lead_id={}", leads[0])).await;
    let first = log_of(&page, leads[0], steps[0]);
    assert_eq!(first["response"]["channel"], "webchat", "no channel used yet: the widget");
    assert!(first["response"]["message_id"].is_i64());
    let second = log_of(&page, leads[0], steps[1]);
    assert_eq!(second["status"], "pending");
    let due: DateTime<Utc> = second["scheduled_for"].as_str().unwrap().parse().unwrap();
    let expected = Utc::now() + chrono::Duration::hours(48);
    assert!((due - expected).num_minutes().abs() <= 2, "48 h after the first step: {due}");

    let stats = ok(send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}/stats"), None).await, 200).await;
    assert_eq!(stats["total_steps"], 6);
    assert_eq!(stats["unique_leads"], 3);
    assert_eq!((stats["sent"].as_i64(), stats["pending"].as_i64()), (Some(3), Some(3)));
    assert_eq!((stats["failed"].as_i64(), stats["skipped"].as_i64()), (Some(0), Some(0)));
    assert_eq!(stats["success_rate"], 50.0);
    assert_eq!(stats["enrolled"], 3);

    // Applying again enrols nobody twice; the alias returns the lead's logs.
    let again = apply(&app, &admin, id, &leads).await;
    assert_eq!((again["enrolled"].as_i64(), again["already_enrolled"].as_i64()), (Some(0), Some(3)));
    let one =
        ok(send(&app, &admin, "POST", &format!("/api/v1/campaigns/{id}/apply-to-lead/{}", leads[1]), None).await, 201)
            .await;
    assert_eq!(one["message"], "Campaign already applied");
    assert_eq!(one["logs"].as_array().unwrap().len(), 2);
    let fourth = lead(&app, &admin, "Diana Luna").await;
    let one =
        ok(send(&app, &admin, "POST", &format!("/api/v1/campaigns/{id}/apply-to-lead/{fourth}"), None).await, 201)
            .await;
    assert_eq!(
        (one["message"].as_str(), one["steps_enqueued"].as_i64()),
        (Some("Campaign applied successfully"), Some(1))
    );
    assert_eq!(one["logs"][0]["status"], "pending");

    // Logs page newest first, with totals.
    let page = logs(&app, &admin, id, "limit=2&skip=1").await;
    assert_eq!((page["total"].as_i64(), page["data"].as_array().unwrap().len()), (Some(7), 2));
}

#[tokio::test]
async fn a_reply_between_two_steps_skips_the_second() {
    let app = app_without_quiet_hours().await;
    let admin = app.new_broker().await;
    let (id, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[
            json!({"step_number": 1, "action": "send_message", "message_text": "Hola {{name}}"}),
            json!({"step_number": 2, "action": "send_message", "message_text": "¿Sigues ahí?", "delay_hours": 1}),
            json!({"step_number": 3, "action": "update_stage", "target_stage": "seguimiento", "delay_hours": 1}),
        ],
    )
    .await;
    let replier = lead(&app, &admin, "Ana Pérez").await;
    let silent = lead(&app, &admin, "Berta Soto").await;
    apply(&app, &admin, id, &[replier, silent]).await;
    let now = Utc::now();
    for l in [replier, silent] {
        assert_eq!(
            runner::run(app.infra(), &job(&admin, id, l, steps[0]), "t", now).await.unwrap(),
            StepOutcome::Ran("sent".into())
        );
    }

    // The lead answers through the chat: its remaining message steps are skipped at once.
    let resp = send(
        &app,
        &admin,
        "POST",
        "/api/v1/chat/test",
        Some(json!({"message": "Sí, me interesa", "lead_id": replier})),
    )
    .await;
    ok(resp, 200).await;
    let page = logs(&app, &admin, id, &format!("lead_id={replier}")).await;
    let second = log_of(&page, replier, steps[1]);
    assert_eq!(
        (second["status"].as_str(), second["response"]["reason"].as_str()),
        (Some("skipped"), Some("lead_replied"))
    );

    // Its job, delivered later, sends nothing; the stage move after it still runs.
    let outcome = runner::run(app.infra(), &job(&admin, id, replier, steps[1]), "t", Utc::now()).await.unwrap();
    assert_eq!(outcome, StepOutcome::AlreadyDone);
    assert_eq!(campaign_messages(&app, replier).await, vec!["Hola Ana Pérez"]);
    let page = logs(&app, &admin, id, &format!("lead_id={replier}")).await;
    assert_eq!(log_of(&page, replier, steps[2])["status"], "pending", "the update_stage step is scheduled");

    // A reply the hook did not see (stored by another path) is found by the step job itself.
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO chat_messages (lead_id, broker_id, provider, message_text, direction) \
             VALUES ({silent}, {}, 'telegram', 'ok', 'in')",
            admin.broker_id.unwrap()
        ))
        .await
        .unwrap();
    let outcome = runner::run(app.infra(), &job(&admin, id, silent, steps[1]), "t", Utc::now()).await.unwrap();
    assert_eq!(outcome, StepOutcome::Skipped("lead_replied"));
    assert_eq!(campaign_messages(&app, silent).await.len(), 1);
    let stats = ok(send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}/stats"), None).await, 200).await;
    assert_eq!((stats["replied"].as_i64(), stats["skipped"].as_i64()), (Some(2), Some(2)));
}

#[tokio::test]
async fn a_step_due_in_quiet_hours_moves_to_eight_in_the_morning() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let (id, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[json!({"step_number": 1, "action": "send_message", "message_text": "Hola"})],
    )
    .await;
    let l = lead(&app, &admin, "Ana Pérez").await;
    apply(&app, &admin, id, &[l]).await;
    let tz = shared::leads::model::TZ;
    let late = tz.with_ymd_and_hms(2026, 12, 1, 23, 30, 0).single().unwrap().with_timezone(&Utc);
    let eight = tz.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).single().unwrap().with_timezone(&Utc);

    let outcome = runner::run(app.infra(), &job(&admin, id, l, steps[0]), "t", late).await.unwrap();
    assert_eq!(outcome, StepOutcome::Deferred(eight));
    assert!(campaign_messages(&app, l).await.is_empty(), "nothing sent at night");
    let page = logs(&app, &admin, id, "").await;
    let log = log_of(&page, l, steps[0]);
    assert_eq!(log["status"], "pending");
    assert_eq!(log["scheduled_for"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap(), eight);
    // The job waits in the queue's scheduled set for 08:00.
    let cfg = shared::jobs::config(app.infra().prefix(), "campaign_step");
    let mut redis = app.infra().redis.clone();
    let scores: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(cfg.scheduled_jobs_set())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(scores.iter().any(|(_, s)| *s == eight.timestamp()), "a job is due at 08:00: {scores:?}");

    // At 08:00 it runs.
    let outcome = runner::run(app.infra(), &job(&admin, id, l, steps[0]), "t", eight).await.unwrap();
    assert_eq!(outcome, StepOutcome::Ran("sent".into()));
}

#[tokio::test]
async fn max_contacts_caps_the_leads_enrolled() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let (id, _) =
        active_campaign(&app, &admin, json!({"max_contacts": 2}), &[json!({"step_number": 1, "action": "make_call"})])
            .await;
    let leads = [
        lead(&app, &admin, "Ana Pérez").await,
        lead(&app, &admin, "Berta Soto").await,
        lead(&app, &admin, "Carla Ríos").await,
    ];
    let applied = apply(&app, &admin, id, &leads).await;
    assert_eq!((applied["enrolled"].as_i64(), applied["skipped_max_contacts"].as_i64()), (Some(2), Some(1)));
    let again = apply(&app, &admin, id, &leads).await;
    assert_eq!((again["enrolled"].as_i64(), again["already_enrolled"].as_i64()), (Some(0), Some(2)));
    assert_eq!(again["skipped_max_contacts"], 1);
    expect_error(
        send(&app, &admin, "POST", &format!("/api/v1/campaigns/{id}/apply-to-lead/{}", leads[2]), None).await,
        409,
        "max_contacts_reached",
    )
    .await;
    assert_eq!(scalar(&app, &format!("SELECT count(*) FROM campaign_enrolments WHERE campaign_id = {id}")).await, 2);
}

#[tokio::test]
async fn a_redelivered_step_job_sends_once() {
    let app = app_without_quiet_hours().await;
    let admin = app.new_broker().await;
    let (id, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[
            json!({"step_number": 1, "action": "send_message", "message_text": "Una sola vez"}),
            json!({"step_number": 2, "action": "make_call", "delay_hours": 5}),
        ],
    )
    .await;
    let l = lead(&app, &admin, "Ana Pérez").await;
    apply(&app, &admin, id, &[l]).await;
    let j = job(&admin, id, l, steps[0]);
    let runs = (0..5).map(|i| {
        let infra = app.infra().clone();
        let j = j.clone();
        tokio::spawn(async move { runner::run(&infra, &j, &format!("holder-{i}"), Utc::now()).await })
    });
    let results = futures_util::future::join_all(runs).await;
    let ran = results.iter().filter(|r| matches!(r.as_ref().unwrap(), Ok(StepOutcome::Ran(_)))).count();
    assert_eq!(ran, 1, "{results:?}");
    for r in &results {
        if let Err(e) = r.as_ref().unwrap() {
            assert_eq!(e.code(), "effect_in_progress", "only a concurrent holder is refused (and retried)");
        }
    }
    // A redelivery after the log was lost (a crash between the send and the log) records the first send.
    app.db()
        .execute_unprepared(&format!("UPDATE campaign_logs SET status = 'pending' WHERE step_id = {}", steps[0]))
        .await
        .unwrap();
    let outcome = runner::run(app.infra(), &j, "late", Utc::now()).await.unwrap();
    assert_eq!(outcome, StepOutcome::Ran("sent".into()));
    assert_eq!(runner::run(app.infra(), &j, "later", Utc::now()).await.unwrap(), StepOutcome::AlreadyDone);
    assert_eq!(campaign_messages(&app, l).await, vec!["Una sola vez"]);
    assert_eq!(
        scalar(&app, &format!("SELECT count(*) FROM campaign_logs WHERE lead_id = {l} AND step_id = {}", steps[1]))
            .await,
        1
    );
}

#[tokio::test]
async fn an_update_stage_step_moves_the_lead_and_enrols_it_in_that_stages_campaigns() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let (mover, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[json!({"step_number": 1, "action": "update_stage", "target_stage": "seguimiento"})],
    )
    .await;
    let (follow_up, follow_steps) = active_campaign(
        &app,
        &admin,
        json!({"triggered_by": "stage_change", "trigger_condition": {"stage": "seguimiento"}}),
        &[json!({"step_number": 1, "action": "send_message", "message_text": "Seguimos", "delay_hours": 2})],
    )
    .await;
    let l = lead(&app, &admin, "Ana Pérez").await;
    apply(&app, &admin, mover, &[l]).await;
    let outcome = runner::run(app.infra(), &job(&admin, mover, l, steps[0]), "t", noon()).await.unwrap();
    assert_eq!(outcome, StepOutcome::Ran("sent".into()));
    let got =
        body(app.client().get(format!("/api/v1/leads/{l}")).header("authorization", admin.bearer()).send().await).await;
    assert_eq!(got["pipeline_stage"], "seguimiento");
    let log = log_of(&logs(&app, &admin, mover, "").await, l, steps[0]);
    assert_eq!((log["status"].as_str(), log["response"]["stage"].as_str()), (Some("sent"), Some("seguimiento")));
    assert_eq!(
        scalar(
            &app,
            &format!(
                "SELECT count(*) FROM activity_log WHERE lead_id = {l} AND action_type = 'stage_change' \
                               AND details->>'reason' = 'Campaign {mover} step 1'"
            )
        )
        .await,
        1
    );
    // The stage-change campaign enrolled the lead at once.
    let enrolled = log_of(&logs(&app, &admin, follow_up, "").await, l, follow_steps[0]);
    assert_eq!(enrolled["status"], "pending");

    // A manual move enrols too.
    let other = lead(&app, &admin, "Berta Soto").await;
    ok(
        send(&app, &admin, "PUT", &format!("/api/v1/leads/{other}/pipeline"), Some(json!({"stage": "seguimiento"})))
            .await,
        200,
    )
    .await;
    let page = logs(&app, &admin, follow_up, &format!("lead_id={other}")).await;
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn a_make_call_step_fails_clearly_without_voice() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let (id, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[
            json!({"step_number": 1, "action": "make_call"}),
            json!({"step_number": 2, "action": "update_stage", "target_stage": "perfilamiento", "delay_hours": 1}),
        ],
    )
    .await;
    let l = lead(&app, &admin, "Ana Pérez").await;
    apply(&app, &admin, id, &[l]).await;
    let outcome = runner::run(app.infra(), &job(&admin, id, l, steps[0]), "t", noon()).await.unwrap();
    assert_eq!(outcome, StepOutcome::Ran("failed".into()));
    let page = logs(&app, &admin, id, "status=failed").await;
    let log = log_of(&page, l, steps[0]);
    assert_eq!(log["response"]["error"], "voice_not_configured");
    assert!(log["response"]["detail"].as_str().unwrap().contains("not configured"));
    assert!(log["executed_at"].is_string());
    assert_eq!(log_of(&logs(&app, &admin, id, "").await, l, steps[1])["status"], "pending", "the chain goes on");
    let stats = ok(send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}/stats"), None).await, 200).await;
    assert_eq!((stats["failed"].as_i64(), stats["failure_rate"].as_f64()), (Some(1), Some(50.0)));
}

#[tokio::test]
async fn the_hourly_trigger_enrols_the_leads_its_condition_matches() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let (id, _) = active_campaign(
        &app,
        &admin,
        json!({"triggered_by": "lead_score", "trigger_condition": {"score_min": 60}}),
        &[json!({"step_number": 1, "action": "make_call"})],
    )
    .await;
    let hot = lead(&app, &admin, "Ana Pérez").await;
    lead(&app, &admin, "Berta Soto").await;
    app.db().execute_unprepared(&format!("UPDATE leads SET lead_score = 75 WHERE id = {hot}")).await.unwrap();
    let preview =
        ok(send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}/matching-leads"), None).await, 200).await;
    assert_eq!((preview["trigger"].as_str(), preview["total"].as_i64()), (Some("lead_score"), Some(1)));
    assert_eq!(preview["leads"][0]["id"], hot);

    let n = shared::campaigns::enrol::run_triggers(app.infra(), Utc::now()).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(shared::campaigns::enrol::run_triggers(app.infra(), Utc::now()).await.unwrap(), 0, "once per lead");
    let page = logs(&app, &admin, id, "").await;
    assert_eq!((page["total"].as_i64(), page["data"][0]["lead_id"].as_i64()), (Some(1), Some(hot)));
}

#[tokio::test]
async fn applying_to_thousands_of_leads_enrols_and_queues_them_all_in_one_call() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let (id, _) =
        active_campaign(&app, &admin, json!({}), &[json!({"step_number": 1, "action": "make_call", "delay_hours": 1})])
            .await;
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO leads (broker_id, name) SELECT {}, 'Lead ' || g FROM generate_series(1, 3500) g",
            admin.broker_id.unwrap()
        ))
        .await
        .unwrap();
    let rows = app
        .db()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT id FROM leads WHERE broker_id = {} ORDER BY id", admin.broker_id.unwrap()),
        ))
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.try_get_by_index::<i64>(0).unwrap()).collect();
    let applied = apply(&app, &admin, id, &ids).await;
    assert_eq!((applied["enrolled"].as_i64(), applied["steps_enqueued"].as_i64()), (Some(3500), Some(3500)));
    let queued = shared::jobs::stats(app.infra(), "campaign_step").await.unwrap();
    assert_eq!(queued.pending, 3500, "one job per lead, in batches");
    let stats = ok(send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}/stats"), None).await, 200).await;
    assert_eq!((stats["pending"].as_i64(), stats["enrolled"].as_i64()), (Some(3500), Some(3500)));
}

#[tokio::test]
async fn a_paused_campaign_holds_its_steps_until_it_is_activated_again() {
    let app = app_without_quiet_hours().await;
    let admin = app.new_broker().await;
    let (id, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[json!({"step_number": 1, "action": "send_message", "message_text": "Hola"})],
    )
    .await;
    let l = lead(&app, &admin, "Ana Pérez").await;
    apply(&app, &admin, id, &[l]).await;
    ok(send(&app, &admin, "PUT", &format!("/api/v1/campaigns/{id}/pause"), None).await, 200).await;
    let j = job(&admin, id, l, steps[0]);
    assert_eq!(runner::run(app.infra(), &j, "t", Utc::now()).await.unwrap(), StepOutcome::Paused);
    assert!(campaign_messages(&app, l).await.is_empty());
    expect_error(
        send(&app, &admin, "POST", &format!("/api/v1/campaigns/{id}/apply"), Some(json!({"lead_ids": [l]}))).await,
        409,
        "campaign_not_active",
    )
    .await;

    let before = shared::jobs::stats(app.infra(), "campaign_step").await.unwrap().pending;
    activate(&app, &admin, id).await;
    let after = shared::jobs::stats(app.infra(), "campaign_step").await.unwrap().pending;
    assert_eq!(after, before + 1, "the waiting step is queued again");
    assert_eq!(runner::run(app.infra(), &j, "t", Utc::now()).await.unwrap(), StepOutcome::Ran("sent".into()));
}

#[tokio::test]
async fn an_agent_applies_a_campaign_to_its_own_leads_only() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let (id, _) = active_campaign(&app, &admin, json!({}), &[json!({"step_number": 1, "action": "make_call"})]).await;
    let mine = lead(&app, &admin, "Ana Pérez").await;
    let theirs = lead(&app, &admin, "Berta Soto").await;
    ok(
        send(&app, &admin, "PUT", &format!("/api/v1/leads/{mine}/assign"), Some(json!({"agent_id": agent.id}))).await,
        200,
    )
    .await;
    let applied = apply(&app, &agent, id, &[mine, theirs]).await;
    assert_eq!((applied["enrolled"].as_i64(), applied["not_found"].as_i64()), (Some(1), Some(1)));
    let page = logs(&app, &admin, id, "").await;
    assert_eq!((page["total"].as_i64(), page["data"][0]["lead_id"].as_i64()), (Some(1), Some(mine)));
}

// ---------------------------------------------------------------------------------------------
// Deleted steps

/// `(status, reason)` of every log of a lead, by step number.
async fn lead_logs(app: &TestApp, id: i64, lead_id: i64) -> Vec<(i32, String, Option<String>)> {
    let rows = app
        .db()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT step_number, status, response->>'reason' FROM campaign_logs \
                 WHERE campaign_id = {id} AND lead_id = {lead_id} ORDER BY step_number, id"
            ),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap(), r.try_get_by_index(2).unwrap()))
        .collect()
}

#[tokio::test]
async fn leads_waiting_for_a_deleted_step_go_on_with_the_next_one_across_a_gap() {
    let app = app_without_quiet_hours().await;
    let admin = app.new_broker().await;
    // Steps 1, 2 and 4: no step 3.
    let (id, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[
            json!({"step_number": 1, "action": "send_message", "message_text": "Hola {{first_name}}"}),
            json!({"step_number": 2, "action": "send_message", "message_text": "¿Sigues ahí?", "delay_hours": 2}),
            json!({"step_number": 4, "action": "send_message", "message_text": "Último aviso"}),
        ],
    )
    .await;
    let due_now = lead(&app, &admin, "Ana Pérez").await;
    let later = lead(&app, &admin, "Berta Soto").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(app.infra().clone(), "campaign-worker".into(), vec![], async {
        let _ = stopped.await;
    }));
    apply(&app, &admin, id, &[due_now, later]).await;
    let both = || async {
        (
            logs(&app, &admin, id, "status=sent").await["total"].clone(),
            logs(&app, &admin, id, "status=pending").await["total"].clone(),
        )
    };
    for _ in 0..100 {
        if both().await == (json!(2), json!(2)) {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert_eq!(both().await, (json!(2), json!(2)), "both first steps ran and both second steps wait");
    // Step 2 waits two hours for both; for one of them it fell due a minute ago (its job is late).
    app.db()
        .execute_unprepared(&format!(
            "UPDATE campaign_logs SET scheduled_for = now() - interval '1 minute' \
             WHERE lead_id = {due_now} AND step_id = {}",
            steps[1]
        ))
        .await
        .unwrap();
    let step2_due_later: DateTime<Utc> =
        log_of(&logs(&app, &admin, id, "").await, later, steps[1])["scheduled_for"].as_str().unwrap().parse().unwrap();

    ok(send(&app, &admin, "DELETE", &format!("/api/v1/campaigns/{id}/steps/{}", steps[1]), None).await, 204).await;

    // The step due already is followed by step 4 at once (no delay of its own); the worker sends it.
    let mut after = Vec::new();
    for _ in 0..100 {
        after = lead_logs(&app, id, due_now).await;
        if after.last().is_some_and(|l| l.0 == 4 && l.1 == "sent") {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert_eq!(
        after,
        vec![
            (1, "sent".to_string(), None),
            (2, "skipped".to_string(), Some("step_deleted".to_string())),
            (4, "sent".to_string(), None),
        ]
    );
    assert_eq!(campaign_messages(&app, due_now).await, vec!["Hola Ana", "Último aviso"]);
    // The other lead keeps its timeline: step 4 when step 2 would have run.
    let page = logs(&app, &admin, id, &format!("lead_id={later}")).await;
    let fourth = log_of(&page, later, steps[2]);
    assert_eq!(fourth["status"], "pending");
    let due: DateTime<Utc> = fourth["scheduled_for"].as_str().unwrap().parse().unwrap();
    assert_eq!(due, step2_due_later);
    assert_eq!(lead_logs(&app, id, later).await[1], (2, "skipped".to_string(), Some("step_deleted".to_string())));
    let stats = ok(send(&app, &admin, "GET", &format!("/api/v1/campaigns/{id}/stats"), None).await, 200).await;
    assert_eq!(
        (stats["sent"].as_i64(), stats["pending"].as_i64(), stats["skipped"].as_i64()),
        (Some(3), Some(1), Some(2)),
        "nothing left pending for the deleted step: {stats}"
    );
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    // Nothing after step 4: that lead's enrolment is finished.
    let finished = scalar(
        &app,
        &format!(
            "SELECT count(*) FROM campaign_enrolments WHERE campaign_id = {id} AND lead_id = {due_now} \
             AND finished_at IS NOT NULL"
        ),
    )
    .await;
    assert_eq!(finished, 1);
    // The deleted step's own job, delivered late, finds nothing to do.
    let late = runner::run(app.infra(), &job(&admin, id, later, steps[1]), "t", Utc::now()).await.unwrap();
    assert_eq!(late, StepOutcome::Gone);
    assert_eq!(campaign_messages(&app, later).await, vec!["Hola Berta"]);
}

#[tokio::test]
async fn deleting_the_last_waiting_step_finishes_the_enrolment() {
    let app = app_without_quiet_hours().await;
    let admin = app.new_broker().await;
    let (id, steps) = active_campaign(
        &app,
        &admin,
        json!({}),
        &[
            json!({"step_number": 1, "action": "send_message", "message_text": "Hola"}),
            json!({"step_number": 2, "action": "make_call", "delay_hours": 24}),
        ],
    )
    .await;
    let l = lead(&app, &admin, "Ana Pérez").await;
    apply(&app, &admin, id, &[l]).await;
    runner::run(app.infra(), &job(&admin, id, l, steps[0]), "t", noon()).await.unwrap();
    ok(send(&app, &admin, "DELETE", &format!("/api/v1/campaigns/{id}/steps/{}", steps[1]), None).await, 204).await;
    assert_eq!(
        lead_logs(&app, id, l).await,
        vec![(1, "sent".to_string(), None), (2, "skipped".to_string(), Some("step_deleted".to_string()))]
    );
    let open = scalar(
        &app,
        &format!("SELECT count(*) FROM campaign_enrolments WHERE campaign_id = {id} AND finished_at IS NULL"),
    )
    .await;
    assert_eq!(open, 0);
    // Another broker's step, or one already gone: 404.
    expect_error(
        send(&app, &admin, "DELETE", &format!("/api/v1/campaigns/{id}/steps/{}", steps[1]), None).await,
        404,
        "not_found",
    )
    .await;
    let other = app.new_broker().await;
    expect_error(
        send(&app, &other, "DELETE", &format!("/api/v1/campaigns/{id}/steps/{}", steps[0]), None).await,
        404,
        "not_found",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Message preview

/// A fake OpenAI-compatible server answering every chat completion with `status` and `answer`,
/// recording the request bodies.
struct FakeLlm {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

async fn fake_llm(status: u16, answer: Value) -> FakeLlm {
    use poem::listener::{Acceptor, Listener, TcpListener};
    use poem::{EndpointExt, handler, web::Data};
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;
    #[handler]
    async fn completions(body: poem::Body, seen: Data<&Seen>, reply: Data<&(u16, Value)>) -> poem::Response {
        let b: Value = serde_json::from_slice(&body.into_vec().await.unwrap_or_default()).unwrap_or(Value::Null);
        seen.lock().unwrap().push(b);
        let (status, answer) = reply.0;
        poem::Response::builder()
            .status(StatusCode::from_u16(*status).unwrap())
            .content_type("application/json")
            .body(answer.to_string())
    }
    let requests: Seen = Default::default();
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let app = poem::Route::new()
        .at("/v1/chat/completions", poem::post(completions))
        .data(requests.clone())
        .data((status, answer));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    FakeLlm { url: format!("http://{addr}/v1"), requests }
}

fn openai_answer(text: &str) -> Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340}
    })
}

async fn app_with_llm(llm: &FakeLlm) -> TestApp {
    let url = llm.url.clone();
    TestApp::spawn_with(move |k| match k {
        "LLM_PROVIDER" => Some("openai".into()),
        "OPENAI_BASE_URL" => Some(url.clone()),
        "OPENAI_API_KEY" => Some("sk-test".into()),
        "LLM_RETRY_BACKOFF_MS" => Some("10".into()),
        "LLM_TIMEOUT_MS" => Some("5000".into()),
        _ => None,
    })
    .await
}

async fn preview(app: &TestApp, user: &User, id: i64, b: Option<Value>) -> TestResponse {
    send(app, user, "POST", &format!("/api/v1/campaigns/{id}/preview-message"), b).await
}

#[tokio::test]
async fn without_an_llm_the_preview_is_the_first_message_rendered_for_a_sample_lead() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = campaign(&app, &admin, json!({"name": "Reactivación Ñuñoa", "channel": "whatsapp"})).await["id"]
        .as_i64()
        .unwrap();

    // No steps yet: the fixed greeting, with the broker's name.
    let p = ok(preview(&app, &admin, id, None).await, 200).await;
    assert_eq!((p["generated_by"].as_str(), p["channel"].as_str()), (Some("default"), Some("whatsapp")));
    assert!(p["message"].as_str().unwrap().starts_with("Hola María, te escribimos de "), "{p}");
    assert!(p["step_id"].is_null());

    step(&app, &admin, id, json!({"step_number": 1, "action": "update_stage", "target_stage": "seguimiento"})).await;
    let s = step(
        &app,
        &admin,
        id,
        json!({"step_number": 2, "action": "send_message", "channel": "telegram",
               "message_text": "Hola {{first_name}}, ¿sigues buscando en {{location}}? {{desconocido}}"}),
    )
    .await;
    let p = ok(preview(&app, &admin, id, Some(json!({}))).await, 200).await;
    assert_eq!(p["message"], "Hola María, ¿sigues buscando en Ñuñoa?");
    assert_eq!((p["generated_by"].as_str(), p["action"].as_str()), (Some("message_text"), Some("send_message")));
    assert_eq!((p["step_id"].as_i64(), p["channel"].as_str()), (s["id"].as_i64(), Some("telegram")));
    let p = ok(preview(&app, &admin, id, Some(json!({"channel": "WhatsApp"}))).await, 200).await;
    assert_eq!(p["channel"], "whatsapp");

    // A template step previews its template.
    let t = ok(
        send(
            &app,
            &admin,
            "POST",
            "/api/v1/templates",
            Some(json!({"name": "Seguimiento", "channel": "whatsapp", "content": "{{first_name}}, soy {{agent_name}} 👋"})),
        )
        .await,
        201,
    )
    .await;
    ok(
        send(
            &app,
            &admin,
            "PATCH",
            &format!("/api/v1/campaigns/{id}/steps/{}", s["id"]),
            Some(json!({"message_template_id": t["id"], "message_text": null})),
        )
        .await,
        200,
    )
    .await;
    let p = ok(preview(&app, &admin, id, None).await, 200).await;
    assert_eq!((p["message"].as_str(), p["generated_by"].as_str()), (Some("María, soy Sofía 👋"), Some("template")));

    // A call's opening.
    let p = ok(preview(&app, &admin, id, Some(json!({"action": "make_call"}))).await, 200).await;
    assert!(p["message"].as_str().unwrap().contains("Te llamo por «Reactivación Ñuñoa»"), "{p}");
    assert_eq!(p["action"], "make_call");
}

#[tokio::test]
async fn a_preview_checks_its_input_and_its_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = campaign(&app, &admin, json!({"name": "Bienvenida"})).await["id"].as_i64().unwrap();
    expect_error(preview(&app, &admin, id, Some(json!({"channel": "fax"}))).await, 422, "validation_error").await;
    expect_error(preview(&app, &admin, id, Some(json!({"action": "dance"}))).await, 422, "validation_error").await;
    expect_error(
        preview(&app, &admin, id, Some(json!({"action": "update_stage"}))).await,
        422,
        "action_sends_no_message",
    )
    .await;
    expect_error(
        preview(&app, &admin, id, Some(json!({"action": "schedule_meeting"}))).await,
        422,
        "unsupported_action",
    )
    .await;
    expect_error(preview(&app, &admin, id, Some(json!({"channel": 3}))).await, 422, "validation_error").await;
    let other = app.new_broker().await;
    expect_error(preview(&app, &other, id, None).await, 404, "not_found").await;
    expect_error(preview(&app, &admin, 987_654, None).await, 404, "not_found").await;
    let agent = app.user_in(&admin, "agent").await;
    ok(preview(&app, &agent, id, None).await, 200).await;
}

#[tokio::test]
async fn with_an_llm_the_preview_is_written_by_one_call_in_the_ledger() {
    let written = "¡Hola María! Soy Sofía. ¿Te muestro opciones nuevas en Ñuñoa esta semana?";
    let llm = fake_llm(200, openai_answer(written)).await;
    let app = app_with_llm(&llm).await;
    let admin = app.new_broker().await;
    let id = campaign(&app, &admin, json!({"name": "Reactivación Ñuñoa", "channel": "whatsapp"})).await["id"]
        .as_i64()
        .unwrap();
    step(&app, &admin, id, json!({"step_number": 1, "action": "send_message", "message_text": "Hola {{first_name}}"}))
        .await;

    let p = ok(preview(&app, &admin, id, None).await, 200).await;
    assert_eq!((p["message"].as_str(), p["generated_by"].as_str()), (Some(written), Some("llm")));
    let seen = llm.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one call");
    let brief: Value = serde_json::from_str(seen[0]["messages"][1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        (brief["campaign"].as_str(), brief["base_text"].as_str()),
        (Some("Reactivación Ñuñoa"), Some("Hola María"))
    );
    assert_eq!((brief["channel"].as_str(), brief["action"].as_str()), (Some("whatsapp"), Some("send_message")));
    let ledger = scalar(
        &app,
        &format!(
            "SELECT count(*) FROM llm_calls WHERE broker_id = {} AND call_type = 'other' AND error IS NULL",
            admin.broker_id.unwrap()
        ),
    )
    .await;
    assert_eq!(ledger, 1);
}

#[tokio::test]
async fn when_the_llm_fails_the_preview_falls_back_to_the_steps_text() {
    let llm = fake_llm(400, json!({"error": {"message": "bad request", "type": "invalid_request_error"}})).await;
    let app = app_with_llm(&llm).await;
    let admin = app.new_broker().await;
    let id = campaign(&app, &admin, json!({"name": "Bienvenida"})).await["id"].as_i64().unwrap();
    step(&app, &admin, id, json!({"step_number": 1, "action": "send_message", "message_text": "Hola {{name}}"})).await;
    let p = ok(preview(&app, &admin, id, None).await, 200).await;
    assert_eq!(
        (p["message"].as_str(), p["generated_by"].as_str()),
        (Some("Hola María González"), Some("message_text"))
    );
    assert!(!llm.requests.lock().unwrap().is_empty(), "the LLM was asked");
    let failed = scalar(
        &app,
        &format!("SELECT count(*) FROM llm_calls WHERE broker_id = {} AND error IS NOT NULL", admin.broker_id.unwrap()),
    )
    .await;
    assert!(failed >= 1, "the failed call is in the ledger");
}
