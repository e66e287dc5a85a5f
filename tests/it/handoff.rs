//! `/api/v1/conversations`: the inbox, takeover / release / human messages, do-not-reply, the
//! escalation brief, scoping between agents and brokers, and the human-mode timeouts.

use chrono::{Duration, Utc};
use futures_util::StreamExt;
use poem::http::StatusCode;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::{Value, json};
use shared::conversations::{self, TimeoutOutcome};
use shared::entities::{chat_messages, knowledge_base, leads};
use shared::jobs::notification::TimeoutStage;

use crate::common::{TestApp, User, body, expect_error, phone};

async fn get(app: &TestApp, user: &User, path: &str) -> poem::test::TestResponse {
    app.client().get(path).header("authorization", user.bearer()).send().await
}

async fn post(app: &TestApp, user: &User, path: &str, b: Option<Value>) -> poem::test::TestResponse {
    let client = app.client();
    let req = client.post(path).header("authorization", user.bearer());
    match b {
        Some(b) => req.body_json(&b).send().await,
        None => req.send().await,
    }
}

async fn delete(app: &TestApp, user: &User, path: &str) -> poem::test::TestResponse {
    app.client().delete(path).header("authorization", user.bearer()).send().await
}

async fn ok(resp: poem::test::TestResponse) -> Value {
    resp.assert_status_is_ok();
    body(resp).await
}

/// An inbound message from the lead, as a channel would store it.
async fn inbound(app: &TestApp, lead: &Value, provider: &str, text: &str) -> i64 {
    chat_messages::ActiveModel {
        lead_id: Set(lead["id"].as_i64().unwrap()),
        broker_id: Set(lead["broker_id"].as_i64().unwrap()),
        provider: Set(provider.into()),
        channel_user_id: Set((provider != "webchat").then(|| "777".to_string())),
        message_text: Set(text.into()),
        direction: Set("in".into()),
        status: Set("delivered".into()),
        sender_type: Set("customer".into()),
        ai_response_used: Set(false),
        ..Default::default()
    }
    .insert(app.db())
    .await
    .unwrap()
    .id
}

async fn lead_row(app: &TestApp, id: i64) -> leads::Model {
    leads::Entity::find_by_id(id).one(app.db()).await.unwrap().unwrap()
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn a_person_takes_over_writes_and_releases_a_conversation() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Carla Soto"})).await;
    let id = lead["id"].as_i64().unwrap();
    inbound(&app, &lead, "webchat", "Hola, quiero info").await;
    inbound(&app, &lead, "webchat", "¿Hay alguien?").await;

    let page = ok(get(&app, &admin, "/api/v1/conversations").await).await;
    assert_eq!(page["total"], 1, "{page}");
    let item = &page["items"][0];
    assert_eq!((item["id"].as_i64(), item["unread_count"].as_i64()), (Some(id), Some(2)), "{item}");
    assert_eq!(item["last_message"], "¿Hay alguien?");
    assert_eq!((item["human_mode"].as_bool(), item["channel"].as_str()), (Some(false), Some("webchat")));

    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(shared::events::broker_channel(app.infra().prefix(), admin.broker_id.unwrap())).await.unwrap();

    let taken = ok(post(&app, &admin, &format!("/api/v1/conversations/leads/{id}/takeover"), None).await).await;
    assert_eq!((taken["human_mode"].as_bool(), taken["human_assigned_to"].as_i64()), (Some(true), Some(admin.id)));
    // Taking it again is answered as it is; a colleague gets a 409.
    let again = ok(post(&app, &admin, &format!("/api/v1/conversations/leads/{id}/takeover"), None).await).await;
    assert_eq!(again["human_taken_at"], taken["human_taken_at"]);
    let colleague = app.user_in(&admin, "admin").await;
    let conflict = expect_error(
        post(&app, &colleague, &format!("/api/v1/conversations/leads/{id}/takeover"), None).await,
        409,
        "already_assigned",
    )
    .await;
    assert!(conflict["detail"].as_str().unwrap().contains(&admin.id.to_string()), "{conflict}");
    assert!(lead_row(&app, id).await.metadata["human_mode_notified"].as_bool().unwrap());

    let sent = ok(post(
        &app,
        &admin,
        &format!("/api/v1/conversations/leads/{id}/human-message"),
        Some(json!({"text": "  Hola Carla, <b>soy</b> Pedro  "})),
    )
    .await)
    .await;
    assert_eq!((sent["provider"].as_str(), sent["status"].as_str()), (Some("webchat"), Some("sent")), "{sent}");
    let msg =
        chat_messages::Entity::find_by_id(sent["message_id"].as_i64().unwrap()).one(app.db()).await.unwrap().unwrap();
    assert_eq!((msg.direction.as_str(), msg.sender_type.as_str()), ("out", "human"));
    assert_eq!(msg.message_text, "Hola Carla, soy Pedro");
    assert!(!msg.ai_response_used);

    let human = ok(get(&app, &admin, "/api/v1/conversations?mode=human").await).await;
    assert_eq!(ids(&human), vec![id]);
    assert_eq!(
        (human["items"][0]["unread_count"].as_i64(), human["items"][0]["last_message_direction"].as_str()),
        (Some(0), Some("out"))
    );
    assert!(ids(&ok(get(&app, &admin, "/api/v1/conversations?mode=ai").await).await).is_empty());

    // Events: the takeover, then the human message.
    let mut stream = pubsub.on_message();
    let mut events = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(std::time::Duration::from_secs(2), stream.next()).await {
        let frame: Value = serde_json::from_str(&m.get_payload::<String>().unwrap()).unwrap();
        events.push(frame);
        if events.len() == 2 {
            break;
        }
    }
    assert_eq!(events[0]["event"], "human_mode_changed", "{events:?}");
    assert_eq!(
        (events[0]["data"]["human_mode"].as_bool(), events[0]["data"]["taken_by"].as_i64()),
        (Some(true), Some(admin.id))
    );
    assert_eq!(events[1]["event"], "new_message");
    assert_eq!(events[1]["data"]["human"], true);
    drop(stream);

    // A trainable release needs its summary; then the resolution becomes knowledge.
    expect_error(
        post(&app, &admin, &format!("/api/v1/conversations/leads/{id}/release"), Some(json!({"trainable": true})))
            .await,
        422,
        "validation_error",
    )
    .await;
    let released = ok(post(
        &app,
        &admin,
        &format!("/api/v1/conversations/leads/{id}/release"),
        Some(json!({"note": "Acordamos visita el sábado", "trainable": true,
                    "resolution_summary": "Los estacionamientos se venden aparte, desde 350 UF.",
                    "resolution_category": "estacionamientos"})),
    )
    .await)
    .await;
    assert_eq!((released["human_mode"].as_bool(), released["human_assigned_to"].as_i64()), (Some(false), None));
    let row = lead_row(&app, id).await;
    assert!(!row.human_mode && row.human_released_at.is_some());
    assert_eq!(row.metadata["human_release_note"], "Acordamos visita el sábado");
    assert!(row.metadata.get("human_mode_notified").is_none());
    let kb = knowledge_base::Entity::find_by_id(released["knowledge_entry_id"].as_i64().unwrap())
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kb.title, "Resolución: estacionamientos");
    assert_eq!(kb.broker_id, admin.broker_id.unwrap());
    // Releasing a lead Sofía already answers is answered as it is; an empty body is fine.
    let again = ok(post(&app, &admin, &format!("/api/v1/conversations/leads/{id}/release"), None).await).await;
    assert_eq!(again["human_mode"], false);
}

#[tokio::test]
async fn replying_as_a_person_pauses_sofia_and_uses_the_leads_channel() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Tomás"})).await;
    let id = lead["id"].as_i64().unwrap();
    inbound(&app, &lead, "telegram", "hola").await;
    let sent = ok(post(
        &app,
        &admin,
        &format!("/api/v1/conversations/leads/{id}/send-message"),
        Some(json!({"text": "Hola Tomás"})),
    )
    .await)
    .await;
    assert_eq!(
        (sent["provider"].as_str(), sent["status"].as_str(), sent["human_mode"].as_bool()),
        (Some("telegram"), Some("pending"), Some(true))
    );
    let row = lead_row(&app, id).await;
    assert_eq!((row.human_mode, row.human_assigned_to), (true, Some(admin.id)));
    let msg =
        chat_messages::Entity::find_by_id(sent["message_id"].as_i64().unwrap()).one(app.db()).await.unwrap().unwrap();
    assert_eq!(msg.channel_user_id.as_deref(), Some("777"));

    let path = format!("/api/v1/conversations/leads/{id}/human-message");
    expect_error(post(&app, &admin, &path, Some(json!({"text": "   "}))).await, 422, "validation_error").await;
    expect_error(post(&app, &admin, &path, Some(json!({"text": "a".repeat(4001)}))).await, 422, "validation_error")
        .await;
    expect_error(post(&app, &admin, &path, Some(json!({"texto": "hola"}))).await, 422, "validation_error").await;
    expect_error(post(&app, &admin, &path, None).await, 422, "validation_error").await;
    expect_error(
        post(&app, &admin, "/api/v1/conversations/leads/999999/human-message", Some(json!({"text": "x"}))).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn do_not_reply_toggles_and_the_brief_tells_what_is_known() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Ana Pérez", "email": "ana@correo.cl"})).await;
    let id = lead["id"].as_i64().unwrap();
    inbound(&app, &lead, "webchat", "quiero hablar con una persona").await;
    let path = format!("/api/v1/conversations/leads/{id}/do-not-reply");
    assert_eq!(ok(post(&app, &admin, &path, None).await).await["do_not_reply"], true);
    assert_eq!(lead_row(&app, id).await.metadata["do_not_reply"], true);
    assert_eq!(ok(get(&app, &admin, "/api/v1/conversations").await).await["items"][0]["do_not_reply"], true);
    assert_eq!(ok(delete(&app, &admin, &path).await).await["do_not_reply"], false);
    assert_eq!(lead_row(&app, id).await.metadata["do_not_reply"], false);

    let brief = ok(get(&app, &admin, &format!("/api/v1/conversations/leads/{id}/escalation-brief")).await).await;
    assert_eq!(brief["collected"]["name"], "Ana Pérez");
    assert_eq!(brief["collected"]["email"], "ana@correo.cl");
    let missing: Vec<&str> = brief["missing"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(missing.contains(&"monthly_income") && missing.contains(&"dicom_status"), "{brief}");
    assert_eq!(brief["last_messages"][0]["message_text"], "quiero hablar con una persona");
    assert!(brief["brief"].as_str().unwrap().starts_with("Ana Pérez"), "{brief}");

    let improved = ok(post(
        &app,
        &admin,
        "/api/v1/conversations/improve-message",
        Some(json!({"text": "  hola ana , te llamo mañana .  "})),
    )
    .await)
    .await;
    assert_eq!(improved["improved"], "Hola ana, te llamo mañana.");
    expect_error(
        post(&app, &admin, "/api/v1/conversations/improve-message", Some(json!({"text": ""}))).await,
        422,
        "validation_error",
    )
    .await;
    expect_error(get(&app, &admin, "/api/v1/conversations?mode=robot").await, 422, "validation_error").await;
    expect_error(get(&app, &admin, "/api/v1/conversations?limit=0").await, 422, "validation_error").await;
    expect_error(get(&app, &admin, "/api/v1/conversations?limit=201").await, 422, "validation_error").await;
}

#[tokio::test]
async fn agents_and_other_brokers_only_reach_what_they_may() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let other_agent = app.user_in(&admin, "agent").await;
    let mine = app.lead(&agent, json!({"phone": phone(), "name": "Del agente"})).await;
    let unassigned = app.lead(&admin, json!({"phone": phone(), "name": "Sin asignar"})).await;
    let escalated = app.lead(&admin, json!({"phone": phone(), "name": "Escalado"})).await;
    for l in [&mine, &unassigned, &escalated] {
        inbound(&app, l, "webchat", "hola").await;
    }
    // An automatic escalation: human mode, nobody holding it yet.
    let mut am = lead_row(&app, escalated["id"].as_i64().unwrap()).await.into_active_model();
    am.human_mode = Set(true);
    am.human_taken_at = Set(Some(Utc::now()));
    am.update(app.db()).await.unwrap();

    let (mine_id, esc_id, un_id) =
        (mine["id"].as_i64().unwrap(), escalated["id"].as_i64().unwrap(), unassigned["id"].as_i64().unwrap());
    let mut seen = ids(&ok(get(&app, &agent, "/api/v1/conversations").await).await);
    seen.sort();
    assert_eq!(seen, {
        let mut v = vec![mine_id, esc_id];
        v.sort();
        v
    });
    expect_error(
        post(&app, &agent, &format!("/api/v1/conversations/leads/{un_id}/takeover"), None).await,
        404,
        "not_found",
    )
    .await;

    // The agent takes the escalation; from then on the other agent no longer sees it.
    ok(post(&app, &agent, &format!("/api/v1/conversations/leads/{esc_id}/takeover"), None).await).await;
    assert!(!ids(&ok(get(&app, &other_agent, "/api/v1/conversations").await).await).contains(&esc_id));
    expect_error(
        post(
            &app,
            &other_agent,
            &format!("/api/v1/conversations/leads/{esc_id}/human-message"),
            Some(json!({"text": "hola"})),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // The admin sees everything, but may not write over the agent's conversation.
    assert_eq!(ok(get(&app, &admin, "/api/v1/conversations").await).await["total"], 3);
    expect_error(
        post(
            &app,
            &admin,
            &format!("/api/v1/conversations/leads/{esc_id}/human-message"),
            Some(json!({"text": "hola"})),
        )
        .await,
        409,
        "already_assigned",
    )
    .await;
    // …and may release it.
    let released = ok(post(&app, &admin, &format!("/api/v1/conversations/leads/{esc_id}/release"), None).await).await;
    assert_eq!(released["human_mode"], false);

    let stranger = app.new_broker().await;
    assert_eq!(ok(get(&app, &stranger, "/api/v1/conversations").await).await["total"], 0);
    for action in ["takeover", "release", "do-not-reply"] {
        expect_error(
            post(&app, &stranger, &format!("/api/v1/conversations/leads/{mine_id}/{action}"), None).await,
            404,
            "not_found",
        )
        .await;
    }
    expect_error(
        get(&app, &stranger, &format!("/api/v1/conversations/leads/{mine_id}/escalation-brief")).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        get(&app, &stranger, &format!("/api/v1/conversations?broker_id={}", admin.broker_id.unwrap())).await,
        404,
        "not_found",
    )
    .await;
    let root = app.superadmin().await;
    let all =
        ok(get(&app, &root, &format!("/api/v1/conversations?broker_id={}", admin.broker_id.unwrap())).await).await;
    assert_eq!(all["total"], 3);
    let unauth = app.client().get("/api/v1/conversations").send().await;
    unauth.assert_status(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_lead_left_in_human_mode_is_reminded_alerted_and_released_once_each() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let broker_id = admin.broker_id.unwrap();
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Olvidado"})).await;
    let id = lead["id"].as_i64().unwrap();
    inbound(&app, &lead, "webchat", "hola").await;
    ok(post(&app, &admin, &format!("/api/v1/conversations/leads/{id}/takeover"), None).await).await;
    let infra = app.infra();
    let now = Utc::now();

    // Just taken: nothing is due.
    assert_eq!(conversations::due_timeouts(infra, now).await.unwrap(), 0);
    assert_eq!(
        conversations::run_timeout(infra, broker_id, id, TimeoutStage::Reminder, "t", now).await.unwrap(),
        TimeoutOutcome::NotDue
    );

    // 20 minutes later the reminder is due, once.
    let later = now + Duration::minutes(20);
    assert_eq!(conversations::due_timeouts(infra, later).await.unwrap(), 1);
    assert_eq!(
        conversations::run_timeout(infra, broker_id, id, TimeoutStage::Reminder, "t", later).await.unwrap(),
        TimeoutOutcome::Performed(TimeoutStage::Reminder)
    );
    assert_eq!(
        conversations::run_timeout(infra, broker_id, id, TimeoutStage::Reminder, "t2", later).await.unwrap(),
        TimeoutOutcome::AlreadyDone
    );
    assert_eq!(conversations::due_timeouts(infra, later).await.unwrap(), 0, "a handled stage is not enqueued again");

    // A human message restarts the clock: 20 minutes after the takeover but 5 after the message, nothing is due.
    let mut msg = chat_messages::Entity::find_by_id(
        body(
            post(
                &app,
                &admin,
                &format!("/api/v1/conversations/leads/{id}/human-message"),
                Some(json!({"text": "sigo aquí"})),
            )
            .await,
        )
        .await["message_id"]
            .as_i64()
            .unwrap(),
    )
    .one(app.db())
    .await
    .unwrap()
    .unwrap()
    .into_active_model();
    msg.created_at = Set(now + Duration::minutes(15));
    msg.update(app.db()).await.unwrap();
    assert_eq!(
        conversations::run_timeout(infra, broker_id, id, TimeoutStage::AdminAlert, "t", later).await.unwrap(),
        TimeoutOutcome::NotDue
    );

    // An hour after the last message: auto-release, with its event.
    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(shared::events::broker_channel(infra.prefix(), broker_id)).await.unwrap();
    let much_later = now + Duration::minutes(80);
    assert_eq!(conversations::due_timeouts(infra, much_later).await.unwrap(), 1);
    assert_eq!(
        conversations::run_timeout(infra, broker_id, id, TimeoutStage::AutoRelease, "t", much_later).await.unwrap(),
        TimeoutOutcome::Performed(TimeoutStage::AutoRelease)
    );
    let row = lead_row(&app, id).await;
    assert!(!row.human_mode && row.human_assigned_to.is_none() && row.human_released_at.is_some());
    let mut stream = pubsub.on_message();
    let frame: Value = serde_json::from_str(
        &tokio::time::timeout(std::time::Duration::from_secs(2), stream.next())
            .await
            .unwrap()
            .unwrap()
            .get_payload::<String>()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(frame["event"], "human_mode_auto_released");
    assert_eq!(frame["data"]["previously_assigned_to"], admin.id);
    // Released: later jobs do nothing, and the sweep finds nothing.
    assert_eq!(
        conversations::run_timeout(infra, broker_id, id, TimeoutStage::AutoRelease, "t3", much_later).await.unwrap(),
        TimeoutOutcome::NotDue
    );
    assert_eq!(conversations::due_timeouts(infra, much_later).await.unwrap(), 0);
    // A job naming another broker does nothing.
    let stranger = app.new_broker().await;
    assert_eq!(
        conversations::run_timeout(infra, stranger.broker_id.unwrap(), id, TimeoutStage::Reminder, "t", much_later)
            .await
            .unwrap(),
        TimeoutOutcome::NotDue
    );
}
