//! The lead rules on real rows (`shared::leads::rules_service`), `POST /leads/{id}/recalculate`, the
//! pipeline endpoints (board, columns, metrics, auto-advance and the reference's aliases) and the
//! nightly refresh.

use chrono::{Duration, Utc};
use futures_util::StreamExt;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde_json::{Value, json};
use shared::entities::{activity_log, appointments, broker_lead_configs, chat_messages, leads};
use shared::leads::model::{Calificacion, Stage, Status};
use shared::leads::rules_service;
use shared::pipeline::rules::Reason;

use crate::common::{TestApp, User, body, expect_error, phone};

async fn get(app: &TestApp, user: &User, path: &str) -> poem::test::TestResponse {
    app.client().get(path).header("authorization", user.bearer()).send().await
}

async fn post(app: &TestApp, user: &User, path: &str) -> poem::test::TestResponse {
    app.client().post(path).header("authorization", user.bearer()).send().await
}

async fn ok_json(resp: poem::test::TestResponse) -> Value {
    let status = resp.0.status();
    let b = body(resp).await;
    assert!(status.is_success(), "{status}: {b}");
    b
}

/// A lead with everything a calificado buyer has told Sofía.
async fn qualified_lead(app: &TestApp, admin: &User, income: i64) -> i64 {
    let lead = app
        .lead(
            admin,
            json!({"phone": phone(), "name": "María Pérez", "email": format!("maria{}@correo.cl", uuid()),
                   "lead_metadata": {"location": "Ñuñoa", "monthly_income": income, "dicom_status": "clean"}}),
        )
        .await;
    lead["id"].as_i64().unwrap()
}

fn uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

async fn row(app: &TestApp, id: i64) -> leads::Model {
    leads::Entity::find_by_id(id).one(app.db()).await.unwrap().unwrap()
}

/// `apply` in a transaction of its own, as the chat service calls it.
async fn apply(app: &TestApp, id: i64) -> rules_service::RulesOutcome {
    let txn = app.db().begin().await.unwrap();
    let lead = row(app, id).await;
    let outcome = rules_service::apply(app.infra(), &txn, lead, Utc::now()).await.unwrap();
    txn.commit().await.unwrap();
    outcome
}

async fn activities(app: &TestApp, id: i64, action: &str) -> Vec<activity_log::Model> {
    activity_log::Entity::find()
        .filter(activity_log::Column::LeadId.eq(id))
        .filter(activity_log::Column::ActionType.eq(action))
        .order_by_asc(activity_log::Column::Id)
        .all(app.db())
        .await
        .unwrap()
}

async fn book(app: &TestApp, lead_id: i64, status: &str, start_in_hours: i64) {
    let lead = row(app, lead_id).await;
    let start = Utc::now() + Duration::hours(start_in_hours);
    appointments::ActiveModel {
        broker_id: Set(lead.broker_id),
        lead_id: Set(lead_id),
        agent_id: Set(None),
        appointment_type: Set("property_visit".into()),
        status: Set(status.into()),
        start_time: Set(start),
        end_time: Set(start + Duration::hours(1)),
        duration_minutes: Set(60),
        ..Default::default()
    }
    .insert(app.db())
    .await
    .unwrap();
}

async fn message(app: &TestApp, lead_id: i64, direction: &str, text: &str, at: chrono::DateTime<Utc>) {
    let lead = row(app, lead_id).await;
    chat_messages::ActiveModel {
        lead_id: Set(lead_id),
        broker_id: Set(lead.broker_id),
        provider: Set("webchat".into()),
        message_text: Set(text.into()),
        direction: Set(direction.into()),
        sender_type: Set(if direction == "in" { "customer" } else { "ai" }.into()),
        created_at: Set(at),
        ..Default::default()
    }
    .insert(app.db())
    .await
    .unwrap();
}

async fn set_config(app: &TestApp, broker_id: i64, f: impl FnOnce(&mut broker_lead_configs::ActiveModel)) {
    let cfg = broker_lead_configs::Entity::find()
        .filter(broker_lead_configs::Column::BrokerId.eq(broker_id))
        .one(app.db())
        .await
        .unwrap()
        .expect("registration creates the lead config");
    let mut am = cfg.into_active_model();
    f(&mut am);
    am.update(app.db()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The rules service (the contract the chat service calls)

#[tokio::test]
async fn a_complete_lead_is_scored_qualified_and_walked_forward_in_one_call() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 2_500_000).await;

    let o = apply(&app, id).await;

    // profile: name 10 + phone 10 + email 5 + location 10; financial: income 25 + DICOM 15
    assert_eq!(o.score, 75.0);
    assert_eq!(o.components["profile"]["total"], 35.0);
    assert_eq!(o.components["financial"]["income"], 25.0);
    assert_eq!(o.components["financial"]["dicom"], 15.0);
    assert_eq!((o.previous_status, o.status), (Status::Cold, Status::Hot));
    assert!(o.became_hot && o.changed);
    assert_eq!(o.calificacion, Some(Calificacion::Calificado));
    assert_eq!(
        o.stage_moves,
        [
            (Stage::Entrada, Stage::Perfilamiento, Reason::NameKnown),
            (Stage::Perfilamiento, Stage::CalificacionFinanciera, Reason::ContactKnown),
        ]
    );
    let saved = row(&app, id).await;
    assert_eq!(saved, o.lead, "the outcome carries the row as saved");
    assert_eq!(saved.lead_score, 75.0);
    assert_eq!(saved.lead_score_components, o.components);
    assert_eq!((saved.status.as_str(), saved.calificacion.as_deref()), ("hot", Some("calificado")));
    assert_eq!(saved.pipeline_stage, "calificacion_financiera");
    let moves = activities(&app, id, "stage_change").await;
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1].details["new_stage"], "calificacion_financiera");
    assert_eq!(moves[1].details["automatic"], true);
    let scores = activities(&app, id, "score_update").await;
    assert_eq!(scores.len(), 1);
    assert_eq!(scores[0].details["new_score"], 75.0);
    assert_eq!(scores[0].details["new_status"], "hot");

    // A booked viewing takes the calificado lead on to `agendado` and earns engagement and intent.
    book(&app, id, "scheduled", 48).await;
    let o = apply(&app, id).await;
    assert_eq!(o.stage_moves, [(Stage::CalificacionFinanciera, Stage::Agendado, Reason::AppointmentBooked)]);
    assert_eq!(o.components["engagement"]["appointment"], 5.0);
    assert_eq!(o.components["intent"]["visit"], 5.0);
    assert_eq!(o.score, 85.0);
    assert!(!o.became_hot, "it was hot already");
}

#[tokio::test]
async fn an_unchanged_lead_is_not_rewritten() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 1_200_000).await;
    apply(&app, id).await;
    let before = row(&app, id).await;
    let count = activity_log::Entity::find().filter(activity_log::Column::LeadId.eq(id)).count(app.db()).await.unwrap();

    let again = apply(&app, id).await;

    assert!(!again.changed && again.stage_moves.is_empty() && !again.became_hot);
    assert_eq!(row(&app, id).await.updated_at, before.updated_at);
    let after = activity_log::Entity::find().filter(activity_log::Column::LeadId.eq(id)).count(app.db()).await.unwrap();
    assert_eq!(after, count);
}

#[tokio::test]
async fn publish_sends_stage_changed_per_move_and_lead_hot() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 3_000_000).await;
    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(shared::events::broker_channel(app.infra().prefix(), admin.broker_id.unwrap())).await.unwrap();

    let o = apply(&app, id).await;
    rules_service::publish(app.infra(), &o).await;

    let mut stream = pubsub.on_message();
    let mut events = Vec::new();
    for _ in 0..3 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await.unwrap().unwrap();
        events.push(serde_json::from_str::<Value>(&msg.get_payload::<String>().unwrap()).unwrap());
    }
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["stage_changed", "stage_changed", "lead_hot"]);
    assert_eq!(events[0]["data"]["new_stage"], "perfilamiento");
    assert_eq!(events[0]["data"]["reason"], "name_known");
    assert_eq!(events[1]["data"]["old_stage"], "perfilamiento");
    assert_eq!(events[2]["data"]["lead_id"], id);
    assert_eq!(events[2]["data"]["previous_status"], "cold");
}

#[tokio::test]
async fn thresholds_and_weights_changed_in_the_broker_config_apply_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let broker = admin.broker_id.unwrap();
    // name 10 + phone 10 + location 10 = 30: warm under the default thresholds (20 / 50).
    let lead =
        app.lead(&admin, json!({"phone": phone(), "name": "Ana Rojas", "lead_metadata": {"location": "Maipú"}})).await;
    let id = lead["id"].as_i64().unwrap();
    let o = apply(&app, id).await;
    assert_eq!((o.score, o.status), (30.0, Status::Warm));

    set_config(&app, broker, |c| {
        c.cold_max_score = Set(10);
        c.warm_max_score = Set(25);
    })
    .await;
    let o = apply(&app, id).await;
    assert_eq!((o.score, o.status), (30.0, Status::Hot));
    assert!(o.became_hot);

    set_config(&app, broker, |c| c.field_weights = Set(json!({"name": 5, "phone": 5, "location": 5}))).await;
    let o = apply(&app, id).await;
    assert_eq!((o.score, o.status), (15.0, Status::Warm));
}

#[tokio::test]
async fn qualification_criteria_come_from_the_broker_config() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 1_500_000).await;
    assert_eq!(apply(&app, id).await.calificacion, Some(Calificacion::Calificado));
    set_config(&app, admin.broker_id.unwrap(), |c| {
        c.qualification_criteria = Set(json!({
            "calificado": {"min_monthly_income": 2_000_000, "dicom_status": ["clean"], "max_debt_amount": 0},
            "potencial": {"min_monthly_income": 1_000_000, "dicom_status": ["clean"], "max_debt_amount": 0}
        }))
    })
    .await;
    let o = apply(&app, id).await;
    assert_eq!(o.calificacion, Some(Calificacion::Potencial));
    assert_eq!(o.stage_moves, [(Stage::CalificacionFinanciera, Stage::Seguimiento, Reason::Potencial)]);
    assert_eq!(row(&app, id).await.calificacion.as_deref(), Some("potencial"));
}

#[tokio::test]
async fn a_no_calificado_lead_is_lost_with_its_close_reason() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app
        .lead(
            &admin,
            json!({"phone": phone(), "name": "Pedro Soto",
                   "lead_metadata": {"monthly_income": 2_000_000, "dicom_status": "has_debt", "morosidad_amount": 1_200_000}}),
        )
        .await;
    let id = lead["id"].as_i64().unwrap();
    let o = apply(&app, id).await;
    assert_eq!(o.calificacion, Some(Calificacion::NoCalificado));
    assert_eq!(o.stage_moves.last().unwrap().1, Stage::Perdido);
    assert_eq!(o.status, Status::Lost);
    let saved = row(&app, id).await;
    assert_eq!(saved.close_reason.as_deref(), Some("no_calificado"));
    assert!(saved.closed_at.is_some());
    // The financial data is stored encrypted; the rules read it decrypted.
    assert!(saved.metadata["monthly_income"].as_str().unwrap().starts_with("enc:"));
}

#[tokio::test]
async fn automatic_moves_never_go_backwards() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    // Nothing known about this lead would take it past `entrada`…
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let id = lead["id"].as_i64().unwrap();
    for stage in ["agendado", "seguimiento", "referidos"] {
        // …but a person moved it on.
        app.client()
            .put(format!("/api/v1/leads/{id}/pipeline"))
            .header("authorization", admin.bearer())
            .body_json(&json!({"stage": stage}))
            .send()
            .await
            .assert_status_is_ok();
        let o = apply(&app, id).await;
        assert!(o.stage_moves.is_empty(), "{stage}: {:?}", o.stage_moves);
        assert_eq!(row(&app, id).await.pipeline_stage, stage);
    }
    // A no_calificado lead already in follow-up is not sent back to be lost either.
    let patch = json!({"name": "Luis Mora", "lead_metadata": {"monthly_income": 100_000, "dicom_status": "clean"}});
    app.client()
        .put(format!("/api/v1/leads/{id}"))
        .header("authorization", admin.bearer())
        .body_json(&patch)
        .send()
        .await
        .assert_status_is_ok();
    let o = apply(&app, id).await;
    assert_eq!(o.calificacion, Some(Calificacion::NoCalificado));
    assert!(o.stage_moves.is_empty());
    assert_eq!(row(&app, id).await.pipeline_stage, "referidos");
}

#[tokio::test]
async fn a_completed_viewing_moves_an_agendado_lead_to_follow_up() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 2_000_000).await;
    book(&app, id, "scheduled", 24).await;
    assert_eq!(apply(&app, id).await.lead.pipeline_stage, "agendado");
    use sea_orm::sea_query::Expr;
    appointments::Entity::update_many()
        .col_expr(appointments::Column::Status, Expr::value("completed"))
        .filter(appointments::Column::LeadId.eq(id))
        .exec(app.db())
        .await
        .unwrap();
    let o = apply(&app, id).await;
    assert_eq!(o.stage_moves, [(Stage::Agendado, Stage::Seguimiento, Reason::AppointmentCompleted)]);
}

#[tokio::test]
async fn messages_and_fast_replies_count_toward_engagement_and_tag_the_lead() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Rosa Díaz", "tags": ["vip"]})).await;
    let id = lead["id"].as_i64().unwrap();
    let t0 = Utc::now() - Duration::hours(1);
    message(&app, id, "in", "hola", t0).await;
    for i in 0..4 {
        let out = t0 + Duration::minutes(i * 5 + 1);
        message(&app, id, "out", "¿me cuentas más?", out).await;
        message(&app, id, "in", "claro", out + Duration::seconds(20)).await;
    }

    let o = apply(&app, id).await;

    assert_eq!(o.components["engagement"]["messages"], 5.0);
    assert_eq!(o.components["engagement"]["fast_responder"], 5.0);
    let saved = row(&app, id).await;
    assert_eq!(saved.tags, json!(["vip", "respuesta_rapida"]));
    let metrics = &saved.metadata["response_metrics"];
    assert_eq!(metrics["reply_count"], 4);
    assert_eq!(metrics["avg_response_seconds"], 20.0);
    assert_eq!(metrics["is_fast_responder"], true);

    // Slow replies take the tag away again.
    for i in 0..6 {
        let out = t0 + Duration::minutes(30 + i * 4);
        message(&app, id, "out", "¿sigues ahí?", out).await;
        message(&app, id, "in", "sí", out + Duration::minutes(3)).await;
    }
    let o = apply(&app, id).await;
    assert_eq!(o.components["engagement"]["fast_responder"], 0.0);
    assert_eq!(row(&app, id).await.tags, json!(["vip"]));
}

#[tokio::test]
async fn opting_out_and_inactivity_are_penalised() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 1_000_000).await;
    let base = apply(&app, id).await.score;
    let mut am = row(&app, id).await.into_active_model();
    let mut metadata = row(&app, id).await.metadata;
    metadata["engine"] = json!({"opted_out": true});
    am.metadata = Set(metadata);
    am.last_contacted = Set(Some(Utc::now() - Duration::days(61)));
    am.update(app.db()).await.unwrap();

    let o = apply(&app, id).await;

    assert_eq!(o.components["penalties"]["opt_out"], 30.0);
    assert_eq!(o.components["penalties"]["inactive"], 5.0);
    assert_eq!(o.score, base - 35.0);
}

// ---------------------------------------------------------------------------------------------
// POST /api/v1/leads/{id}/recalculate

#[tokio::test]
async fn recalculate_answers_the_api_shape_with_status_and_components() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 700_000).await;

    let b = ok_json(post(&app, &admin, &format!("/api/v1/leads/{id}/recalculate")).await).await;

    assert_eq!(b["lead_id"], id);
    assert_eq!(b["calificacion"], "potencial");
    assert_eq!(b["pipeline_stage"], "seguimiento");
    // profile 35 + income 10 + DICOM 15
    assert_eq!(b["score"], 60.0);
    assert_eq!(b["status"], "hot");
    assert_eq!(b["lead_score_components"]["financial"]["total"], 25.0);
    assert_eq!(b["stage_moves"].as_array().unwrap().len(), 3);
    let detail = ok_json(get(&app, &admin, &format!("/api/v1/leads/{id}")).await).await;
    assert_eq!(detail["lead_score"], 60.0);
    assert_eq!(detail["lead_score_components"], b["lead_score_components"]);
    assert_eq!(detail["calificacion"], "potencial");
}

#[tokio::test]
async fn recalculate_is_scoped_to_the_broker_and_the_agents_assignments() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let mine = app.lead(&admin, json!({"phone": phone(), "name": "Asignada", "assigned_to": agent.id})).await;
    let other = qualified_lead(&app, &admin, 2_000_000).await;
    let intruder = app.new_broker().await;

    expect_error(post(&app, &intruder, &format!("/api/v1/leads/{other}/recalculate")).await, 404, "not_found").await;
    expect_error(post(&app, &agent, &format!("/api/v1/leads/{other}/recalculate")).await, 404, "not_found").await;
    expect_error(post(&app, &admin, "/api/v1/leads/999999999/recalculate").await, 404, "not_found").await;
    expect_error(post(&app, &admin, "/api/v1/leads/abc/recalculate").await, 422, "validation_error").await;
    let unauth = app.client().post(format!("/api/v1/leads/{other}/recalculate")).send().await;
    assert_eq!(unauth.0.status().as_u16(), 401);
    assert_eq!(row(&app, other).await.lead_score, 0.0, "nothing was computed for the intruders");

    let b = ok_json(post(&app, &agent, &format!("/api/v1/leads/{}/recalculate", mine["id"])).await).await;
    assert_eq!(b["pipeline_stage"], "perfilamiento");
}

// ---------------------------------------------------------------------------------------------
// The board and its columns

async fn move_to(app: &TestApp, user: &User, id: i64, stage: &str) {
    app.client()
        .put(format!("/api/v1/leads/{id}/pipeline"))
        .header("authorization", user.bearer())
        .body_json(&json!({"stage": stage}))
        .send()
        .await
        .assert_status_is_ok();
}

#[tokio::test]
async fn the_board_lists_every_stage_in_order_with_counts_and_limited_columns() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let l = app.lead(&admin, json!({"phone": phone(), "name": format!("Lead {i}")})).await;
        ids.push(l["id"].as_i64().unwrap());
    }
    move_to(&app, &admin, ids[0], "agendado").await;
    move_to(&app, &admin, ids[1], "agendado").await;
    app.client()
        .put(format!("/api/v1/leads/{}/assign", ids[1]))
        .header("authorization", admin.bearer())
        .body_json(&json!({"agent_id": agent.id}))
        .send()
        .await
        .assert_status_is_ok();
    book(&app, ids[1], "confirmed", 30).await;
    let other = app.new_broker().await;
    app.lead(&other, json!({"phone": phone(), "name": "Ajeno"})).await;

    let b = ok_json(get(&app, &admin, "/api/v1/pipeline?limit=1").await).await;

    let stages: Vec<&str> = b["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(b["total_leads"], 4);
    let col = |stage: &str| b["stages"].as_array().unwrap().iter().find(|s| s["stage"] == stage).unwrap().clone();
    assert_eq!(col("entrada")["count"], 2);
    assert_eq!(col("entrada")["leads"].as_array().unwrap().len(), 1, "limit applies per column");
    let agendado = col("agendado");
    assert_eq!(agendado["count"], 2);
    let card = &agendado["leads"][0];
    assert_eq!(card["id"], ids[1], "most recently entered first");
    assert_eq!(card["assigned_agent_name"], "agent user");
    assert_eq!(card["next_appointment"]["status"], "confirmed");
    assert!(card["lead_metadata"].is_object());
    assert!(!col("perdido")["description"].as_str().unwrap().is_empty());

    // An agent's board holds only its assigned leads.
    let b = ok_json(get(&app, &agent, "/api/v1/pipeline").await).await;
    assert_eq!(b["total_leads"], 1);
    // SUPERADMIN reads one broker with broker_id.
    let root = app.superadmin().await;
    let path = format!("/api/v1/pipeline?broker_id={}", other.broker_id.unwrap());
    assert_eq!(ok_json(get(&app, &root, &path).await).await["total_leads"], 1);
    // Another broker's filter, bad limits.
    let path = format!("/api/v1/pipeline?broker_id={}", other.broker_id.unwrap());
    expect_error(get(&app, &admin, &path).await, 404, "not_found").await;
    for bad in ["limit=0", "limit=201", "limit=x"] {
        let e =
            expect_error(get(&app, &admin, &format!("/api/v1/pipeline?{bad}")).await, 422, "validation_error").await;
        assert_eq!(e["detail"][0]["loc"], json!(["query", "limit"]), "{bad}");
    }
}

#[tokio::test]
async fn a_stage_column_pages_and_filters_like_the_reference() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    for name in ["Ana Núñez", "Berta Soto", "Carla Díaz"] {
        app.lead(&admin, json!({"phone": phone(), "name": name})).await;
    }
    app.lead(&admin, json!({"phone": phone(), "name": "Daniela Paz", "assigned_to": agent.id})).await;

    let page = ok_json(get(&app, &admin, "/api/v1/pipeline/stages/entrada/leads?limit=2&skip=1").await).await;
    assert_eq!((page["stage"].as_str(), page["total"].as_u64()), (Some("entrada"), Some(4)));
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!((page["skip"].as_u64(), page["limit"].as_u64()), (Some(1), Some(2)));
    let search = ok_json(get(&app, &admin, "/api/v1/pipeline/stages/entrada/leads?search=nunez").await).await;
    assert_eq!(search["data"][0]["name"], "Ana Núñez");
    let unassigned =
        ok_json(get(&app, &admin, "/api/v1/pipeline/stages/entrada/leads?assignedTo=unassigned").await).await;
    assert_eq!(unassigned["total"], 3);
    let path = format!("/api/v1/pipeline/stages/entrada/leads?assigned_to={}", agent.id);
    assert_eq!(ok_json(get(&app, &admin, &path).await).await["total"], 1);
    assert_eq!(ok_json(get(&app, &agent, "/api/v1/pipeline/stages/entrada/leads").await).await["total"], 1);

    let e =
        expect_error(get(&app, &admin, "/api/v1/pipeline/stages/potencial/leads").await, 422, "invalid_stage").await;
    assert_eq!(e["detail"][0]["loc"], json!(["path", "stage"]));
    for (query, loc) in [
        ("assignedTo=nadie", "assigned_to"),
        ("calificacion=top", "calificacion"),
        ("created_from=ayer", "created_from"),
        ("limit=500", "limit"),
    ] {
        let resp = get(&app, &admin, &format!("/api/v1/pipeline/stages/entrada/leads?{query}")).await;
        let status = resp.0.status().as_u16();
        let b = body(resp).await;
        assert_eq!(status, 422, "{query}: {b}");
        assert_eq!(b["detail"][0]["loc"][1], loc, "{query}: {b}");
    }
}

#[tokio::test]
async fn stale_leads_of_a_stage_are_listed_oldest_first() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let old = app.lead(&admin, json!({"phone": phone(), "name": "Antigua"})).await;
    app.lead(&admin, json!({"phone": phone(), "name": "Nueva"})).await;
    let mut am = row(&app, old["id"].as_i64().unwrap()).await.into_active_model();
    am.stage_entered_at = Set(Utc::now() - Duration::days(10));
    am.update(app.db()).await.unwrap();

    let b = ok_json(get(&app, &admin, "/api/v1/pipeline/stages/entrada/inactive?inactivity_days=7").await).await;

    assert_eq!((b["count"].as_u64(), b["inactivity_days"].as_i64()), (Some(1), Some(7)));
    assert_eq!(b["leads"][0]["name"], "Antigua");
    expect_error(
        get(&app, &admin, "/api/v1/pipeline/stages/entrada/inactive?inactivity_days=0").await,
        422,
        "validation_error",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Metrics

#[tokio::test]
async fn metrics_count_stages_conversions_weeks_and_losses() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            app.lead(&admin, json!({"phone": phone(), "name": format!("Lead {i}")})).await["id"].as_i64().unwrap(),
        );
    }
    // Lead 0 reaches ganado, lead 1 is lost from perfilamiento, lead 2 stays in perfilamiento.
    move_to(&app, &admin, ids[0], "perfilamiento").await;
    move_to(&app, &admin, ids[0], "ganado").await;
    move_to(&app, &admin, ids[1], "perfilamiento").await;
    move_to(&app, &admin, ids[1], "perdido").await;
    move_to(&app, &admin, ids[2], "perfilamiento").await;
    let other = app.new_broker().await;
    app.lead(&other, json!({"phone": phone()})).await;

    let m = ok_json(get(&app, &admin, "/api/v1/pipeline/metrics").await).await;

    assert_eq!(m["total_leads"], 4);
    assert_eq!(m["stage_counts"]["entrada"], 1);
    assert_eq!(m["stage_counts"]["perfilamiento"], 1);
    assert_eq!(m["stage_counts"]["ganado"], 1);
    assert_eq!(m["stage_counts"]["perdido"], 1);
    assert_eq!(m["stage_counts"].as_object().unwrap().len(), 8);
    // Reached: entrada 4, perfilamiento 3 (0, 1, 2), every later stage 1 (lead 0, now ganado).
    assert_eq!(m["conversion_rates"]["entrada_to_perfilamiento"], 75.0);
    assert_eq!(m["conversion_rates"]["perfilamiento_to_calificacion_financiera"], 33.3);
    assert_eq!(m["conversion_rates"]["referidos_to_ganado"], 100.0);
    assert_eq!(m["conversion_rate"], 25.0);
    assert_eq!(m["response_rate"], 75.0);
    assert_eq!(m["lost_by_stage"]["perfilamiento"], 1);
    assert_eq!(m["lost_by_stage"]["entrada"], 0);
    let weeks = m["weekly_trend"].as_array().unwrap();
    assert_eq!(weeks.len(), 8);
    assert_eq!(weeks[7]["count"], 4, "all created this week");
    assert_eq!(m["funnel"][1]["reached"], 3);
    assert!(m["funnel"][7]["reached"].is_null(), "perdido is off the funnel");
    assert_eq!(m["stage_avg_days"]["entrada"], 0.0);

    let alias = ok_json(get(&app, &admin, "/api/v1/pipeline/funnel-metrics").await).await;
    assert_eq!(alias["conversion_rates"], m["conversion_rates"]);
    let agent = app.user_in(&admin, "agent").await;
    assert_eq!(ok_json(get(&app, &agent, "/api/v1/pipeline/metrics").await).await["total_leads"], 0);
    let path = format!("/api/v1/pipeline/metrics?broker_id={}", other.broker_id.unwrap());
    expect_error(get(&app, &admin, &path).await, 404, "not_found").await;
}

// ---------------------------------------------------------------------------------------------
// Auto-advance and the nightly refresh

#[tokio::test]
async fn auto_advance_runs_the_rules_over_the_brokers_leads_and_reports_the_moves() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let ready = qualified_lead(&app, &admin, 800_000).await;
    let named = app.lead(&admin, json!({"phone": phone(), "name": "Solo Nombre"})).await["id"].as_i64().unwrap();
    let blank = app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64().unwrap();
    let other = app.new_broker().await;
    let foreign = qualified_lead(&app, &other, 3_000_000).await;

    expect_error(post(&app, &agent, "/api/v1/pipeline/auto-advance").await, 403, "forbidden").await;
    let b = ok_json(post(&app, &admin, "/api/v1/pipeline/auto-advance").await).await;

    assert_eq!(b["checked"], 3);
    assert_eq!(b["advanced"], 2);
    let moves = b["moves"].as_array().unwrap();
    assert!(
        moves.iter().any(|m| m["lead_id"] == ready && m["to_stage"] == "seguimiento" && m["reason"] == "potencial")
    );
    assert!(moves.iter().any(|m| m["lead_id"] == named && m["to_stage"] == "perfilamiento"));
    assert_eq!(row(&app, blank).await.pipeline_stage, "entrada");
    assert_eq!(row(&app, foreign).await.pipeline_stage, "entrada", "another broker's leads are untouched");
    // A second run has nothing left to move (`ready` is in seguimiento, which has no automatic way out).
    let again = ok_json(post(&app, &admin, "/api/v1/pipeline/auto-advance").await).await;
    assert_eq!((again["checked"].as_u64(), again["advanced"].as_u64()), (Some(2), Some(0)));
    // SUPERADMIN names the broker.
    let root = app.superadmin().await;
    expect_error(post(&app, &root, "/api/v1/pipeline/auto-advance").await, 422, "validation_error").await;
    let path = format!("/api/v1/pipeline/auto-advance?broker_id={}", other.broker_id.unwrap());
    assert_eq!(ok_json(post(&app, &root, &path).await).await["advanced"], 1);
    assert_eq!(row(&app, foreign).await.pipeline_stage, "calificacion_financiera");
}

#[tokio::test]
async fn the_per_lead_auto_advance_and_move_stage_aliases_work_like_the_reference() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = app.lead(&admin, json!({"phone": phone(), "name": "Clara Vera"})).await["id"].as_i64().unwrap();
    let b = ok_json(post(&app, &admin, &format!("/api/v1/pipeline/leads/{id}/auto-advance")).await).await;
    assert_eq!(b["message"], "Lead stage advanced automatically");
    assert_eq!(b["new_stage"], "perfilamiento");
    let b = ok_json(post(&app, &admin, &format!("/api/v1/pipeline/leads/{id}/auto-advance")).await).await;
    assert_eq!(b["message"], "No automatic advancement conditions met");
    assert!(b["new_stage"].is_null());

    let resp = app
        .client()
        .post(format!("/api/v1/pipeline/leads/{id}/move-stage"))
        .header("authorization", admin.bearer())
        .body_json(&json!({"new_stage": "entrada"}))
        .send()
        .await;
    let b = ok_json(resp).await;
    assert_eq!((b["old_stage"].as_str(), b["new_stage"].as_str()), (Some("perfilamiento"), Some("entrada")));
    let resp = app
        .client()
        .post(format!("/api/v1/pipeline/leads/{id}/move-stage"))
        .header("authorization", admin.bearer())
        .body_json(&json!({"new_stage": "potencial"}))
        .send()
        .await;
    let e = expect_error(resp, 422, "invalid_stage").await;
    assert_eq!(e["detail"][0]["loc"], json!(["body", "new_stage"]));
    let move_stage = |b: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.client()
                .post(format!("/api/v1/pipeline/leads/{id}/move-stage"))
                .header("authorization", admin.bearer())
                .body_json(&b)
                .send()
                .await
        }
    };
    let resp = move_stage(json!({"new_stage": "agendado", "close_reason": "precio"})).await;
    let e = expect_error(resp, 422, "validation_error").await;
    assert_eq!(e["detail"][0]["loc"], json!(["body", "close_reason"]));
    let b = json!({"new_stage": "perdido", "reason": "sin respuesta", "close_reason": "competencia",
                   "close_reason_detail": "Compró con otra corredora"});
    ok_json(move_stage(b).await).await;
    let lost = row(&app, id).await;
    assert_eq!((lost.status.as_str(), lost.close_reason.as_deref()), ("lost", Some("competencia")));
    assert_eq!(lost.close_reason_detail.as_deref(), Some("Compró con otra corredora"));
    assert_eq!(activities(&app, id, "stage_change").await.last().unwrap().details["reason"], "sin respuesta");
    ok_json(move_stage(json!({"new_stage": "seguimiento"})).await).await;
    let reopened = row(&app, id).await;
    assert_eq!((reopened.close_reason, reopened.close_reason_detail), (None, None));
    let intruder = app.new_broker().await;
    expect_error(post(&app, &intruder, &format!("/api/v1/pipeline/leads/{id}/auto-advance")).await, 404, "not_found")
        .await;
}

#[tokio::test]
async fn the_nightly_refresh_applies_inactivity_penalties_across_brokers_in_batches() {
    let app = TestApp::spawn().await;
    let first = app.new_broker().await;
    let second = app.new_broker().await;
    let stale = qualified_lead(&app, &first, 2_000_000).await;
    let fresh = qualified_lead(&app, &second, 2_000_000).await;
    // More leads than one batch holds, in the second broker.
    let broker = second.broker_id.unwrap();
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO leads (broker_id, phone, name) \
             SELECT {broker}, '+5698' || lpad(g::text, 7, '0'), 'Persona ' || chr(65 + g % 26) || chr(97 + g / 26) \
             FROM generate_series(1, 250) g"
        ))
        .await
        .unwrap();
    let lost = app.lead(&first, json!({"phone": phone(), "name": "Perdida"})).await["id"].as_i64().unwrap();
    move_to(&app, &first, lost, "perdido").await;
    for id in [stale, fresh] {
        apply(&app, id).await;
    }
    let mut am = row(&app, stale).await.into_active_model();
    am.last_contacted = Set(Some(Utc::now() - Duration::days(61)));
    am.update(app.db()).await.unwrap();

    let report = worker::schedules::refresh_lead_scores(app.infra()).await.unwrap();

    assert_eq!(report.checked, 2 + 250, "every open lead, the lost one excluded");
    assert_eq!(row(&app, stale).await.lead_score, 70.0, "75 minus the inactivity penalty");
    assert_eq!(row(&app, fresh).await.lead_score, 75.0);
    let bulk = leads::Entity::find()
        .filter(leads::Column::BrokerId.eq(broker))
        .filter(leads::Column::PipelineStage.eq("perfilamiento"))
        .count(app.db())
        .await
        .unwrap();
    assert_eq!(bulk, 250, "named leads in every batch moved on");
    assert_eq!(row(&app, lost).await.lead_score, 0.0);
    let penalties = activities(&app, stale, "score_update").await;
    assert_eq!(penalties.last().unwrap().details["components"]["penalties"]["inactive"], 5.0);
    // The next night finds nothing to change.
    let again = worker::schedules::refresh_lead_scores(app.infra()).await.unwrap();
    assert_eq!(again.updated, 0);
}

#[test]
fn the_nightly_refresh_is_scheduled_once_a_day_at_night() {
    let schedule = worker::schedules::defaults().into_iter().find(|s| s.name == "refresh_lead_scores").unwrap();
    assert_eq!(schedule.every, std::time::Duration::from_secs(3600));
    let nightly: Vec<u64> = (0..48).filter(|t| worker::schedules::is_nightly_tick(*t)).collect();
    assert_eq!(nightly, [6, 30], "06:00 UTC: 03:00 (summer) or 02:00 (winter) in Santiago");
}

#[tokio::test]
async fn agents_are_listed_and_leads_assigned_and_unassigned_through_the_pipeline_aliases() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let id = app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64().unwrap();
    let other = app.new_broker().await;

    let list = ok_json(get(&app, &admin, "/api/v1/pipeline/agents").await).await;
    let ids: Vec<i64> = list.as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect();
    assert!(ids.contains(&agent.id) && ids.contains(&admin.id) && !ids.contains(&other.id));

    let assign = |user: User, agent_id: Value| {
        let app = &app;
        async move {
            app.client()
                .post(format!("/api/v1/pipeline/leads/{id}/assign"))
                .header("authorization", user.bearer())
                .body_json(&json!({"agent_id": agent_id}))
                .send()
                .await
        }
    };
    let b = ok_json(assign(admin.clone(), json!(agent.id)).await).await;
    assert_eq!((b["agent_id"].as_i64(), b["agent_name"].as_str()), (Some(agent.id), Some("agent user")));
    assert_eq!(row(&app, id).await.assigned_to, Some(agent.id));
    expect_error(assign(agent.clone(), Value::Null).await, 403, "forbidden").await;
    expect_error(assign(other.clone(), Value::Null).await, 404, "not_found").await;
    expect_error(assign(admin.clone(), json!(other.id)).await, 404, "not_found").await;
    let b = ok_json(assign(admin.clone(), Value::Null).await).await;
    assert!(b["agent_id"].is_null());
    assert_eq!(row(&app, id).await.assigned_to, None);
    let unassignments = activities(&app, id, "assignment").await;
    assert!(unassignments.last().unwrap().details["assigned_to"].is_null());
}

#[tokio::test]
async fn appointments_booked_and_completed_through_the_api_move_the_lead_at_once() {
    use crate::appointments::{book as book_api, expect, local, next_monday, put};
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 2_000_000).await;
    apply(&app, id).await;
    assert_eq!(row(&app, id).await.pipeline_stage, "calificacion_financiera");

    let a =
        book_api(&app, &admin, json!({"lead_id": id, "start_time": local(next_monday(), 10, 0).to_rfc3339()})).await;

    let lead = row(&app, id).await;
    assert_eq!(lead.pipeline_stage, "agendado");
    assert_eq!(lead.lead_score_components["engagement"]["appointment"], 5.0);
    let path = format!("/api/v1/appointments/{}", a["id"]);
    expect(put(&app, &admin, &path, json!({"status": "completed"})).await, 200).await;
    assert_eq!(row(&app, id).await.pipeline_stage, "seguimiento");
}

#[tokio::test]
async fn apply_writes_on_the_callers_transaction_and_a_rollback_leaves_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = qualified_lead(&app, &admin, 2_000_000).await;
    let before = row(&app, id).await;

    let txn = app.db().begin().await.unwrap();
    let o = rules_service::apply(app.infra(), &txn, before.clone(), Utc::now()).await.unwrap();
    assert!(o.changed && !o.stage_moves.is_empty());
    txn.rollback().await.unwrap();

    assert_eq!(row(&app, id).await, before);
    assert!(activities(&app, id, "stage_change").await.is_empty());
    assert!(activities(&app, id, "score_update").await.is_empty());
}
