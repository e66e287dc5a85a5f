//! `/api/v1/leads`: every endpoint's success path, its error codes, and tenant isolation.

use poem::http::StatusCode;
use poem::test::TestForm;
use poem::test::TestFormField;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, Statement,
};
use serde_json::{Value, json};
use shared::entities::{activity_log, chat_messages, leads};

use crate::common::{TestApp, User, body, expect_error, phone};

async fn get(app: &TestApp, user: &User, path: &str) -> poem::test::TestResponse {
    app.client().get(path).header("authorization", user.bearer()).send().await
}

async fn put(app: &TestApp, user: &User, path: &str, b: Value) -> poem::test::TestResponse {
    app.client().put(path).header("authorization", user.bearer()).body_json(&b).send().await
}

async fn list(app: &TestApp, user: &User, query: &str) -> Value {
    let resp = get(app, user, &format!("/api/v1/leads?{query}")).await;
    resp.assert_status_is_ok();
    body(resp).await
}

fn names(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap_or_default().to_string()).collect()
}

async fn import(app: &TestApp, user: &User, filename: &str, csv: &str) -> poem::test::TestResponse {
    import_to(app, user, "/api/v1/leads/bulk-import", filename, csv).await
}

async fn import_to(app: &TestApp, user: &User, path: &str, filename: &str, csv: &str) -> poem::test::TestResponse {
    app.client()
        .post(path)
        .header("authorization", user.bearer())
        .multipart(TestForm::new().field(
            TestFormField::bytes(csv.as_bytes().to_vec()).name("file").filename(filename).content_type("text/csv"),
        ))
        .send()
        .await
}

async fn set_score(app: &TestApp, id: i64, score: f64) {
    app.db()
        .execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE leads SET lead_score = $1 WHERE id = $2",
            [score.into(), id.into()],
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn create_normalises_phone_and_email_and_starts_cold_in_entrada() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app
        .lead(&admin, json!({"phone": "9 8765 4321", "name": "María <b>Pérez</b>", "email": "Maria@Email.CL", "tags": ["activo", "activo", "vip"], "lead_metadata": {"location": "Ñuñoa"}}))
        .await;
    assert_eq!(lead["phone"], "+56987654321");
    assert_eq!(lead["email"], "maria@email.cl");
    assert_eq!(lead["name"], "María Pérez");
    assert_eq!(lead["tags"], json!(["activo", "vip"]));
    assert_eq!(lead["lead_metadata"]["location"], "Ñuñoa");
    assert_eq!(lead["status"], "cold");
    assert_eq!(lead["lead_score"], 0.0);
    assert_eq!(lead["pipeline_stage"], "entrada");
    assert_eq!(lead["broker_id"], admin.broker_id.unwrap());
    assert_eq!(lead["assigned_to"], Value::Null);
    assert_eq!(lead["calificacion"], Value::Null);
    assert_eq!(lead["human_mode"], false);
}

#[tokio::test]
async fn duplicates_in_a_broker_are_409_with_the_existing_id() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let first = app.lead(&admin, json!({"phone": "+56 9 1111 2222", "email": "uno@x.cl"})).await;
    for dup in [
        json!({"phone": "911112222"}),
        json!({"phone": "56911112222"}),
        json!({"phone": "+56933334444", "email": "UNO@x.cl"}),
    ] {
        let resp =
            app.client().post("/api/v1/leads").header("authorization", admin.bearer()).body_json(&dup).send().await;
        let b = expect_error(resp, 409, "lead_exists").await;
        assert_eq!(b["lead_id"], first["id"], "{dup}");
    }
    // The same person may be a lead of another broker.
    let other = app.new_broker().await;
    app.lead(&other, json!({"phone": "+56 9 1111 2222", "email": "uno@x.cl"})).await;
}

#[tokio::test]
async fn invalid_phones_and_emails_are_422_with_their_codes() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let cases = [
        (json!({"phone": "12345"}), "invalid_phone", "phone"),
        (json!({"phone": "abc"}), "invalid_phone", "phone"),
        (json!({"phone": "+56 9 1234"}), "invalid_phone", "phone"),
        (json!({"phone": phone(), "email": "nope"}), "invalid_email", "email"),
        (json!({"name": "Sin teléfono"}), "validation_error", "phone"),
        (json!({"phone": phone(), "tags": "vip"}), "validation_error", "tags"),
        (json!({"phone": phone(), "lead_metadata": [1, 2]}), "validation_error", "lead_metadata"),
        (json!({"phone": phone(), "name": "x".repeat(101)}), "validation_error", "name"),
    ];
    for (payload, code, field) in cases {
        let resp =
            app.client().post("/api/v1/leads").header("authorization", admin.bearer()).body_json(&payload).send().await;
        let b = expect_error(resp, 422, code).await;
        assert_eq!(b["detail"][0]["loc"], json!(["body", field]), "{payload}");
    }
}

#[tokio::test]
async fn list_is_paginated_best_score_first() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    for (i, score) in [10.0, 90.0, 50.0, 70.0, 30.0].into_iter().enumerate() {
        let lead = app.lead(&admin, json!({"phone": phone(), "name": format!("L{i}")})).await;
        set_score(&app, lead["id"].as_i64().unwrap(), score).await;
    }
    let page = list(&app, &admin, "skip=1&limit=2").await;
    assert_eq!(page["total"], 5);
    assert_eq!((page["skip"].as_i64(), page["limit"].as_i64()), (Some(1), Some(2)));
    assert_eq!(names(&page), vec!["L3", "L2"]);
    let default = list(&app, &admin, "").await;
    assert_eq!(default["limit"], 50);
    assert_eq!(names(&default), vec!["L1", "L3", "L2", "L4", "L0"]);
}

#[tokio::test]
async fn list_filters_by_status_score_stage_calificacion_tags_and_dates() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let a = app.lead(&admin, json!({"phone": phone(), "name": "A", "tags": ["vip", "norte"]})).await;
    let b = app.lead(&admin, json!({"phone": phone(), "name": "B", "tags": ["vip"]})).await;
    let c = app.lead(&admin, json!({"phone": phone(), "name": "C", "assigned_to": agent.id})).await;
    let ids: Vec<i64> = [&a, &b, &c].iter().map(|l| l["id"].as_i64().unwrap()).collect();
    set_score(&app, ids[0], 80.0).await;
    set_score(&app, ids[1], 40.0).await;
    put(&app, &admin, &format!("/api/v1/leads/{}", ids[0]), json!({"status": "hot"})).await.assert_status_is_ok();
    put(&app, &admin, &format!("/api/v1/leads/{}", ids[1]), json!({"status": "warm"})).await.assert_status_is_ok();
    put(&app, &admin, &format!("/api/v1/leads/{}/pipeline", ids[1]), json!({"stage": "agendado"}))
        .await
        .assert_status_is_ok();
    app.db()
        .execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE leads SET calificacion = 'potencial', created_at = '2025-01-15T12:00:00Z' WHERE id = $1",
            [ids[2].into()],
        ))
        .await
        .unwrap();

    assert_eq!(names(&list(&app, &admin, "status=hot").await), vec!["A"]);
    assert_eq!(names(&list(&app, &admin, "status=hot,warm").await), vec!["A", "B"]);
    assert_eq!(names(&list(&app, &admin, "min_score=30&max_score=50").await), vec!["B"]);
    assert_eq!(names(&list(&app, &admin, "pipeline_stage=agendado").await), vec!["B"]);
    assert_eq!(names(&list(&app, &admin, "pipeline_stage=entrada").await), vec!["A", "C"]);
    assert_eq!(names(&list(&app, &admin, "calificacion=potencial").await), vec!["C"]);
    assert_eq!(names(&list(&app, &admin, &format!("assigned_to={}", agent.id)).await), vec!["C"]);
    assert_eq!(names(&list(&app, &admin, "tags=vip").await), vec!["A", "B"]);
    assert_eq!(names(&list(&app, &admin, "tags=vip,norte").await), vec!["A"]);
    assert_eq!(names(&list(&app, &admin, "created_to=2025-01-15").await), vec!["C"]);
    assert_eq!(names(&list(&app, &admin, "created_from=2025-01-16").await), vec!["A", "B"]);
    assert_eq!(
        names(&list(&app, &admin, "created_from=2025-01-15T00:00:00Z&created_to=2025-01-15T23:59:59Z").await),
        vec!["C"]
    );
}

#[tokio::test]
async fn search_ignores_case_and_accents_and_matches_phone_and_email() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    app.lead(&admin, json!({"phone": "+56 9 7777 1234", "name": "José Ñúñez", "email": "jose@correo.cl"})).await;
    app.lead(&admin, json!({"phone": phone(), "name": "Ana Soto", "email": "ana@otro.cl"})).await;
    for q in ["nunez", "ÑÚÑEZ", "jose", "JOSÉ", "7777", "+56 9 7777", "correo.cl"] {
        assert_eq!(names(&list(&app, &admin, &format!("search={}", urlencode(q))).await), vec!["José Ñúñez"], "{q}");
    }
    assert_eq!(list(&app, &admin, "search=100%25").await["total"], 0);
    assert_eq!(list(&app, &admin, "search=_").await["total"], 0);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'.' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn bad_list_parameters_are_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    for (query, param) in [
        ("limit=201", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("skip=-5", "skip"),
        ("limit=abc", "limit"),
        ("status=tibio", "status"),
        ("pipeline_stage=potencial", "pipeline_stage"),
        ("min_score=101", "min_score"),
        ("min_score=60&max_score=40", "min_score"),
        ("created_from=31-01-2026", "created_from"),
        ("calificacion=CALIFICADISIMO", "calificacion"),
        ("assigned_to=x", "assigned_to"),
    ] {
        let resp = get(&app, &admin, &format!("/api/v1/leads?{query}")).await;
        let status = resp.0.status();
        let b = body(resp).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {b}");
        assert_eq!(b["detail"][0]["loc"], json!(["query", param]), "{query}: {b}");
    }
}

#[tokio::test]
async fn detail_has_components_stage_and_latest_ten_activities() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Detalle"})).await;
    let id = lead["id"].as_i64().unwrap();
    for i in 0..12 {
        put(&app, &admin, &format!("/api/v1/leads/{id}"), json!({"notes": format!("nota {i}")}))
            .await
            .assert_status_is_ok();
    }
    let resp = get(&app, &admin, &format!("/api/v1/leads/{id}")).await;
    resp.assert_status_is_ok();
    let d = body(resp).await;
    assert_eq!(d["pipeline_stage"], "entrada");
    assert!(d["lead_score_components"].is_object());
    let acts = d["recent_activities"].as_array().unwrap();
    assert_eq!(acts.len(), 10);
    assert_eq!(acts[0]["action_type"], "lead_updated");
    let first_id = acts[0]["id"].as_i64().unwrap();
    assert!(acts.iter().all(|a| a["id"].as_i64().unwrap() <= first_id), "newest first");
    expect_error(get(&app, &admin, "/api/v1/leads/999999").await, 404, "not_found").await;
}

#[tokio::test]
async fn update_is_partial_clears_nulls_and_merges_metadata() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Ana", "email": "ana@x.cl", "tags": ["a"], "lead_metadata": {"location": "Maipú", "bedrooms": 2}})).await;
    let path = format!("/api/v1/leads/{}", lead["id"]);
    let resp = put(
        &app,
        &admin,
        &path,
        json!({"lead_metadata": {"bedrooms": 3, "location": null, "budget": {"amount": 3000, "currency": "UF"}}}),
    )
    .await;
    resp.assert_status_is_ok();
    let b = body(resp).await;
    assert_eq!(b["name"], "Ana");
    assert_eq!(b["email"], "ana@x.cl");
    assert_eq!(b["tags"], json!(["a"]));
    assert_eq!(b["lead_metadata"], json!({"bedrooms": 3, "budget": {"amount": 3000, "currency": "UF"}}));

    let b = body(
        put(&app, &admin, &path, json!({"email": null, "name": "Ana María", "phone": "9 5555 4444", "status": "warm"}))
            .await,
    )
    .await;
    assert_eq!(b["email"], Value::Null);
    assert_eq!(b["name"], "Ana María");
    assert_eq!(b["phone"], "+56955554444");
    assert_eq!(b["status"], "warm");
    assert_eq!(b["lead_metadata"]["bedrooms"], 3, "metadata untouched when not sent");
    // Reference clients send `metadata`; it is the same field.
    let b = body(put(&app, &admin, &path, json!({"metadata": {"timeline": "30days"}})).await).await;
    assert_eq!(b["lead_metadata"]["timeline"], "30days");
    assert_eq!(b["lead_metadata"]["bedrooms"], 3);
    // The search index follows the new name.
    assert_eq!(list(&app, &admin, "search=ana%20maria").await["total"], 1);
}

#[tokio::test]
async fn update_errors_are_4xx() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let a = app.lead(&admin, json!({"phone": phone(), "email": "a@x.cl"})).await;
    let b = app.lead(&admin, json!({"phone": phone()})).await;
    let path = format!("/api/v1/leads/{}", b["id"]);
    let e = expect_error(put(&app, &admin, &path, json!({"email": "A@x.cl"})).await, 409, "lead_exists").await;
    assert_eq!(e["lead_id"], a["id"]);
    expect_error(put(&app, &admin, &path, json!({"phone": a["phone"]})).await, 409, "lead_exists").await;
    expect_error(put(&app, &admin, &path, json!({"status": "frio"})).await, 422, "invalid_status").await;
    expect_error(put(&app, &admin, &path, json!({"phone": "123"})).await, 422, "invalid_phone").await;
    expect_error(put(&app, &admin, &path, json!({"lead_metadata": "x"})).await, 422, "validation_error").await;
    expect_error(put(&app, &admin, "/api/v1/leads/424242", json!({"name": "x"})).await, 404, "not_found").await;
}

#[tokio::test]
async fn financial_metadata_is_encrypted_at_rest_and_plain_through_the_api() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone(), "lead_metadata": {"monthly_income": 1500000, "dicom_status": "clean", "morosidad_amount": 0, "location": "Ñuñoa"}})).await;
    assert_eq!(lead["lead_metadata"]["monthly_income"], 1500000);
    let row = leads::Entity::find_by_id(lead["id"].as_i64().unwrap()).one(app.db()).await.unwrap().unwrap();
    for key in ["monthly_income", "dicom_status", "morosidad_amount"] {
        assert!(row.metadata[key].as_str().unwrap().starts_with("enc:v1:"), "{key} stored as {}", row.metadata[key]);
    }
    assert_eq!(row.metadata["location"], "Ñuñoa");
    let d = body(get(&app, &admin, &format!("/api/v1/leads/{}", lead["id"])).await).await;
    assert_eq!(d["lead_metadata"]["dicom_status"], "clean");
}

#[tokio::test]
async fn delete_erases_the_lead_and_everything_about_it() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone(), "name": "Borrar"})).await;
    let id = lead["id"].as_i64().unwrap();
    chat_messages::ActiveModel {
        lead_id: Set(id),
        broker_id: Set(admin.broker_id.unwrap()),
        provider: Set("webchat".into()),
        message_text: Set("hola".into()),
        direction: Set("in".into()),
        ..Default::default()
    }
    .insert(app.db())
    .await
    .unwrap();
    put(&app, &admin, &format!("/api/v1/leads/{id}/pipeline"), json!({"stage": "perfilamiento"}))
        .await
        .assert_status_is_ok();

    let resp = app.client().delete(format!("/api/v1/leads/{id}")).header("authorization", admin.bearer()).send().await;
    resp.assert_status(StatusCode::NO_CONTENT);
    expect_error(get(&app, &admin, &format!("/api/v1/leads/{id}")).await, 404, "not_found").await;
    assert_eq!(
        chat_messages::Entity::find().filter(chat_messages::Column::LeadId.eq(id)).count(app.db()).await.unwrap(),
        0
    );
    assert_eq!(
        activity_log::Entity::find().filter(activity_log::Column::LeadId.eq(id)).count(app.db()).await.unwrap(),
        0
    );
    let resp = app.client().delete(format!("/api/v1/leads/{id}")).header("authorization", admin.bearer()).send().await;
    expect_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn export_returns_everything_stored_about_the_lead() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app
        .lead(&admin, json!({"phone": phone(), "name": "Exportar", "lead_metadata": {"monthly_income": 900000}}))
        .await;
    let id = lead["id"].as_i64().unwrap();
    chat_messages::ActiveModel {
        lead_id: Set(id),
        broker_id: Set(admin.broker_id.unwrap()),
        provider: Set("webchat".into()),
        message_text: Set("Hola, busco depto".into()),
        direction: Set("in".into()),
        ..Default::default()
    }
    .insert(app.db())
    .await
    .unwrap();
    let resp = get(&app, &admin, &format!("/api/v1/leads/{id}/export")).await;
    resp.assert_status_is_ok();
    let e = body(resp).await;
    assert_eq!(e["lead"]["name"], "Exportar");
    assert_eq!(e["lead"]["lead_metadata"]["monthly_income"], 900000);
    assert_eq!(e["messages"][0]["message_text"], "Hola, busco depto");
    assert_eq!(e["activities"][0]["action_type"], "lead_created");
    assert!(e["exported_at"].is_string());
}

#[tokio::test]
async fn admin_assigns_to_an_active_user_of_its_own_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let path = format!("/api/v1/leads/{}/assign", lead["id"]);

    let resp = put(&app, &admin, &path, json!({"agent_id": agent.id})).await;
    resp.assert_status_is_ok();
    let b = body(resp).await;
    assert_eq!((b["lead_id"].clone(), b["agent_id"].clone()), (lead["id"].clone(), json!(agent.id)));
    assert_eq!(names(&list(&app, &agent, "").await).len(), 1, "the agent now sees it");
    let d = body(get(&app, &admin, &format!("/api/v1/leads/{}", lead["id"])).await).await;
    assert_eq!(d["assigned_to"], agent.id);
    assert_eq!(d["recent_activities"][0]["action_type"], "assignment");

    let stranger = app.user_in(&app.new_broker().await, "agent").await;
    expect_error(put(&app, &admin, &path, json!({"agent_id": stranger.id})).await, 404, "not_found").await;
    expect_error(put(&app, &admin, &path, json!({"agent_id": 987654})).await, 404, "not_found").await;
    expect_error(put(&app, &agent, &path, json!({"agent_id": agent.id})).await, 403, "forbidden").await;
    expect_error(put(&app, &admin, &path, json!({})).await, 422, "validation_error").await;

    let resp = app
        .client()
        .delete(format!("/api/broker/users/{}", agent.id))
        .header("authorization", admin.bearer())
        .send()
        .await;
    resp.assert_status_is_ok();
    expect_error(put(&app, &admin, &path, json!({"agent_id": agent.id})).await, 404, "not_found").await;
}

#[tokio::test]
async fn manual_pipeline_moves_validate_stages_and_may_go_backwards() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let id = lead["id"].as_i64().unwrap();
    set_score(&app, id, 60.0).await;
    let path = format!("/api/v1/leads/{id}/pipeline");
    for stage in [
        "entrada",
        "perfilamiento",
        "calificacion_financiera",
        "agendado",
        "seguimiento",
        "referidos",
        "ganado",
        "perdido",
    ] {
        let resp = put(&app, &admin, &path, json!({"stage": stage})).await;
        resp.assert_status_is_ok();
        assert_eq!(body(resp).await["new_stage"], stage);
    }
    let lost = body(get(&app, &admin, &format!("/api/v1/leads/{id}")).await).await;
    assert_eq!(lost["status"], "lost");
    let back = body(put(&app, &admin, &path, json!({"stage": "perfilamiento"})).await).await;
    assert_eq!(
        (back["old_stage"].as_str(), back["new_stage"].as_str(), back["status"].as_str()),
        (Some("perdido"), Some("perfilamiento"), Some("hot"))
    );
    let won = body(put(&app, &admin, &path, json!({"stage": "GANADO"})).await).await;
    assert_eq!(won["status"], "converted");

    let e = expect_error(put(&app, &admin, &path, json!({"stage": "potencial"})).await, 422, "invalid_stage").await;
    assert_eq!(e["detail"][0]["loc"], json!(["body", "stage"]));
    let d = body(get(&app, &admin, &format!("/api/v1/leads/{id}")).await).await;
    let change = &d["recent_activities"][0];
    assert_eq!(change["action_type"], "stage_change");
    assert_eq!(change["details"]["old_stage"], "perfilamiento");
    assert_eq!(change["details"]["new_stage"], "ganado");
}

#[tokio::test]
async fn stage_changes_and_assignments_are_published_to_the_brokers_channel() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(shared::events::broker_channel(app.infra().prefix(), admin.broker_id.unwrap())).await.unwrap();
    put(&app, &admin, &format!("/api/v1/leads/{}/pipeline", lead["id"]), json!({"stage": "agendado"}))
        .await
        .assert_status_is_ok();
    put(&app, &admin, &format!("/api/v1/leads/{}/assign", lead["id"]), json!({"agent_id": agent.id}))
        .await
        .assert_status_is_ok();
    use futures_util::StreamExt;
    let mut stream = pubsub.on_message();
    let mut events = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await.unwrap().unwrap();
        let frame: Value = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
        assert!(frame["ts"].is_string());
        events.push(frame);
    }
    assert_eq!(events[0]["event"], "stage_changed");
    assert_eq!(events[0]["data"]["new_stage"], "agendado");
    assert_eq!(events[1]["event"], "lead_assigned");
    assert_eq!(events[1]["data"]["agent_id"], agent.id);
}

#[tokio::test]
async fn another_brokers_lead_is_404_on_every_endpoint() {
    let app = TestApp::spawn().await;
    let owner = app.new_broker().await;
    let lead = app.lead(&owner, json!({"phone": phone(), "name": "Privado"})).await;
    let id = lead["id"].as_i64().unwrap();
    let intruder_admin = app.new_broker().await;
    let intruder_agent = app.user_in(&intruder_admin, "agent").await;
    for intruder in [&intruder_admin, &intruder_agent] {
        expect_error(get(&app, intruder, &format!("/api/v1/leads/{id}")).await, 404, "not_found").await;
        expect_error(get(&app, intruder, &format!("/api/v1/leads/{id}/export")).await, 404, "not_found").await;
        expect_error(
            put(&app, intruder, &format!("/api/v1/leads/{id}"), json!({"name": "hack"})).await,
            404,
            "not_found",
        )
        .await;
        expect_error(
            put(&app, intruder, &format!("/api/v1/leads/{id}/pipeline"), json!({"stage": "perdido"})).await,
            404,
            "not_found",
        )
        .await;
        let del =
            app.client().delete(format!("/api/v1/leads/{id}")).header("authorization", intruder.bearer()).send().await;
        expect_error(del, 404, "not_found").await;
        assert_eq!(list(&app, intruder, "").await["total"], 0);
        let resp = get(&app, intruder, &format!("/api/v1/leads?broker_id={}", owner.broker_id.unwrap())).await;
        expect_error(resp, 404, "not_found").await;
    }
    expect_error(
        put(&app, &intruder_admin, &format!("/api/v1/leads/{id}/assign"), json!({"agent_id": intruder_agent.id})).await,
        404,
        "not_found",
    )
    .await;
    let unchanged = body(get(&app, &owner, &format!("/api/v1/leads/{id}")).await).await;
    assert_eq!(unchanged["name"], "Privado");
    assert_eq!(unchanged["pipeline_stage"], "entrada");
}

#[tokio::test]
async fn agents_see_and_edit_only_leads_assigned_to_them() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let other_agent = app.user_in(&admin, "agent").await;
    let mine = app.lead(&admin, json!({"phone": phone(), "name": "Mío", "assigned_to": agent.id})).await;
    let theirs = app.lead(&admin, json!({"phone": phone(), "name": "Ajeno", "assigned_to": other_agent.id})).await;
    let unassigned = app.lead(&admin, json!({"phone": phone(), "name": "Libre"})).await;
    let own = app.lead(&agent, json!({"phone": phone(), "name": "Creado por el agente"})).await;
    assert_eq!(own["assigned_to"], agent.id);

    let page = list(&app, &agent, "").await;
    let mut seen = names(&page);
    seen.sort();
    assert_eq!(seen, vec!["Creado por el agente", "Mío"]);
    assert_eq!(page["total"], 2);
    get(&app, &agent, &format!("/api/v1/leads/{}", mine["id"])).await.assert_status_is_ok();
    put(&app, &agent, &format!("/api/v1/leads/{}", mine["id"]), json!({"notes": "llamar"})).await.assert_status_is_ok();
    for other in [&theirs, &unassigned] {
        expect_error(get(&app, &agent, &format!("/api/v1/leads/{}", other["id"])).await, 404, "not_found").await;
        expect_error(
            put(&app, &agent, &format!("/api/v1/leads/{}", other["id"]), json!({"notes": "x"})).await,
            404,
            "not_found",
        )
        .await;
    }
    let resp = app
        .client()
        .post("/api/v1/leads")
        .header("authorization", agent.bearer())
        .body_json(&json!({"phone": phone(), "assigned_to": other_agent.id}))
        .send()
        .await;
    expect_error(resp, 403, "forbidden").await;
    assert_eq!(list(&app, &admin, "").await["total"], 4, "the admin sees every lead of the broker");
}

#[tokio::test]
async fn superadmin_sees_every_broker_and_can_narrow_to_one() {
    let app = TestApp::spawn().await;
    let a = app.new_broker().await;
    let b = app.new_broker().await;
    app.lead(&a, json!({"phone": phone()})).await;
    app.lead(&b, json!({"phone": phone()})).await;
    let root = app.superadmin().await;
    assert_eq!(list(&app, &root, "").await["total"], 2);
    assert_eq!(list(&app, &root, &format!("broker_id={}", a.broker_id.unwrap())).await["total"], 1);
    let resp = app
        .client()
        .post("/api/v1/leads")
        .header("authorization", root.bearer())
        .body_json(&json!({"phone": phone()}))
        .send()
        .await;
    let e = expect_error(resp, 422, "validation_error").await;
    assert_eq!(e["detail"][0]["loc"], json!(["body", "broker_id"]));
    let created = app.lead(&root, json!({"phone": phone(), "broker_id": b.broker_id})).await;
    assert_eq!(created["broker_id"], b.broker_id.unwrap());
}

#[tokio::test]
async fn bulk_import_counts_are_exact_and_rows_are_reported() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    app.lead(&admin, json!({"phone": "+56 9 1000 0001", "email": "existe@x.cl"})).await;
    let csv = "phone,name,email,tags,comuna\n\
               9 1000 0001,Ya Existe,,,\n\
               9 2000 0002,Nueva Uno,nueva1@x.cl,\"vip,norte\",Ñuñoa\n\
               9 2000 0003,Nueva Dos,EXISTE@x.cl,,\n\
               9 2000 0004,Nueva Tres,,,\n\
               56920000004,Repetida,,,\n\
               12,Mal Teléfono,,,\n\
               ,Sin Teléfono,,,\n\
               9 2000 0005,Mal Email,no-email,,\n\
               9 2000 0006,Cuatro,cuatro@x.cl,,\n";
    let resp = import(&app, &admin, "leads.csv", csv).await;
    resp.assert_status_is_ok();
    let r = body(resp).await;
    assert_eq!(
        (r["imported"].as_i64(), r["duplicates"].as_i64(), r["invalid"].as_i64()),
        (Some(3), Some(3), Some(3)),
        "{r}"
    );
    let rows: Vec<i64> = r["errors"].as_array().unwrap().iter().map(|e| e["row"].as_i64().unwrap()).collect();
    assert_eq!(rows, vec![2, 4, 6, 7, 8, 9]);
    let imported = list(&app, &admin, "search=nueva%20uno").await;
    assert_eq!(imported["data"][0]["tags"], json!(["vip", "norte"]));
    assert_eq!(imported["data"][0]["lead_metadata"]["comuna"], "Ñuñoa");
    assert_eq!(imported["data"][0]["phone"], "+56920000002");
    assert_eq!(list(&app, &admin, "").await["total"], 4);

    // Importing the same file again only finds duplicates and invalid rows.
    let again = body(import(&app, &admin, "leads.CSV", csv).await).await;
    assert_eq!(
        (again["imported"].as_i64(), again["duplicates"].as_i64(), again["invalid"].as_i64()),
        (Some(0), Some(6), Some(3))
    );
}

#[tokio::test]
async fn bulk_import_goes_to_the_callers_broker_and_to_the_agent_who_imports() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let r = body(import(&app, &agent, "a.csv", "phone\n911110000\n922220000\n").await).await;
    assert_eq!(r["imported"], 2);
    assert_eq!(list(&app, &agent, "").await["total"], 2);
    let other = app.new_broker().await;
    assert_eq!(list(&app, &other, "").await["total"], 0);
    // The same phones are new for another broker.
    assert_eq!(body(import(&app, &other, "a.csv", "phone\n911110000\n").await).await["imported"], 1);
}

#[tokio::test]
async fn bulk_import_rejects_what_is_not_a_usable_csv() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    expect_error(import(&app, &admin, "leads.xlsx", "phone\n911110000\n").await, 400, "csv_required").await;
    expect_error(import(&app, &admin, "leads.csv", "nombre,correo\nAna,a@x.cl\n").await, 400, "csv_invalid").await;
    expect_error(import(&app, &admin, "leads.csv", "").await, 400, "csv_invalid").await;
    let resp = app
        .client()
        .post("/api/v1/leads/bulk-import")
        .header("authorization", admin.bearer())
        .multipart(TestForm::new().text("other", "x"))
        .send()
        .await;
    expect_error(resp, 422, "validation_error").await;
    let resp = app
        .client()
        .post("/api/v1/leads/bulk-import")
        .header("authorization", admin.bearer())
        .body_json(&json!({"file": "x"}))
        .send()
        .await;
    expect_error(resp, 422, "validation_error").await;
}

#[tokio::test]
async fn bulk_import_handles_thousands_of_rows_in_batches() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mut csv = String::from("phone,name,email\n");
    for i in 0..12_000u32 {
        let n = if i % 100 == 99 { i - 1 } else { i };
        csv.push_str(&format!("+569{:08},Lead {i},lead{i}@x.cl\n", 30_000_000 + n));
    }
    csv.push_str("bad,Bad,\n");
    let r = body(import_to(&app, &admin, "/api/v1/leads/bulk-import?async=false", "big.csv", &csv).await).await;
    assert_eq!(
        (r["imported"].as_i64(), r["duplicates"].as_i64(), r["invalid"].as_i64()),
        (Some(11_880), Some(120), Some(1)),
        "{r}"
    );
    assert_eq!(r["errors"].as_array().unwrap().len(), 100, "at most 100 errors");
    assert_eq!(list(&app, &admin, "limit=1").await["total"], 11_880);
}

#[tokio::test]
async fn bulk_import_over_50_mb_is_413() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mut csv = String::with_capacity(51 * 1024 * 1024);
    csv.push_str("phone,name\n");
    let row = format!("+56911112222,{}\n", "x".repeat(1000));
    while csv.len() <= 50 * 1024 * 1024 {
        csv.push_str(&row);
    }
    expect_error(import(&app, &admin, "huge.csv", &csv).await, 413, "payload_too_large").await;
    assert_eq!(list(&app, &admin, "").await["total"], 0);
}

#[tokio::test]
async fn totals_stay_exact_through_creates_imports_deletes_and_folds() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let broker = admin.broker_id.unwrap();
    let mut ids = Vec::new();
    // More single-row statements than the fold threshold, so the list path folds at least once.
    for _ in 0..70 {
        ids.push(app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64().unwrap());
    }
    assert_eq!(list(&app, &admin, "limit=1").await["total"], 70);
    let r = body(import(&app, &admin, "x.csv", "phone\n900000001\n900000002\n900000003\n").await).await;
    assert_eq!(r["imported"], 3);
    for id in ids.iter().take(5) {
        app.client()
            .delete(format!("/api/v1/leads/{id}"))
            .header("authorization", admin.bearer())
            .send()
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
    let expected = leads::Entity::find().filter(leads::Column::BrokerId.eq(broker)).count(app.db()).await.unwrap();
    assert_eq!(expected, 68);
    assert_eq!(list(&app, &admin, "limit=1").await["total"], 68);
    shared::leads::repo::fold_deltas(app.db(), broker).await.unwrap();
    assert_eq!(list(&app, &admin, "limit=1").await["total"], 68);
    // Concurrent creates from many connections keep the total exact.
    let creates = (0..20).map(|_| app.lead(&admin, json!({"phone": phone()})));
    futures_util::future::join_all(creates).await;
    assert_eq!(list(&app, &admin, "").await["total"], 88);
    // A filtered list counts what it filters.
    assert_eq!(list(&app, &admin, "status=cold").await["total"], 88);
    assert_eq!(list(&app, &admin, "status=hot").await["total"], 0);
}

async fn wait_for_import(app: &TestApp, user: &User, job_id: i64) -> Value {
    for _ in 0..200 {
        let s = body(get(app, user, &format!("/api/v1/leads/bulk-import/{job_id}")).await).await;
        if s["status"] == "done" || s["status"] == "failed" {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("import {job_id} did not finish");
}

#[tokio::test]
async fn large_files_are_imported_by_the_worker_with_progress_and_exact_counts() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    app.lead(&admin, json!({"phone": "+56940000007"})).await;
    let mut csv = String::from("phone,name,email\n");
    for i in 0..15_000u32 {
        csv.push_str(&format!("+569{:08},Lead {i},lead{i}@x.cl\n", 40_000_000 + i));
    }
    csv.push_str("+56940000003,Repetido,\n"); // repeats row 5 (a later batch finds it)
    csv.push_str("mal,Invalid,\n");
    // One phone twice in the same batch, in two spellings: the second is a duplicate.
    csv.push_str("+56955500001,Nuevo,nuevo@x.cl\n");
    csv.push_str("+569 5550 0001,Nuevo bis,bis@x.cl\n");
    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(shared::events::broker_channel(app.infra().prefix(), admin.broker_id.unwrap())).await.unwrap();

    let resp = import(&app, &admin, "big.csv", &csv).await;
    resp.assert_status(StatusCode::ACCEPTED);
    let queued = body(resp).await;
    assert_eq!(queued["status"], "queued");
    let job_id = queued["job_id"].as_i64().unwrap();
    assert_eq!(body(get(&app, &admin, &format!("/api/v1/leads/bulk-import/{job_id}")).await).await["status"], "queued");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(app.infra().clone(), "import-worker".into(), vec![], async {
        let _ = stopped.await;
    }));
    let done = wait_for_import(&app, &admin, job_id).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();

    assert_eq!(done["status"], "done", "{done}");
    // +56940000007 existed already; the repeated rows are duplicates too; one invalid phone.
    assert_eq!(
        (done["imported"].as_i64(), done["duplicates"].as_i64(), done["invalid"].as_i64()),
        (Some(15_000), Some(3), Some(1)),
        "{done}"
    );
    assert_eq!(done["rows_processed"], 15_004);
    let rows: Vec<i64> = done["errors"].as_array().unwrap().iter().map(|e| e["row"].as_i64().unwrap()).collect();
    assert_eq!(rows, vec![9, 15_002, 15_003, 15_005]);
    assert_eq!(list(&app, &admin, "limit=1").await["total"], 15_001);

    use futures_util::StreamExt;
    let mut stream = pubsub.on_message();
    let mut statuses = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(std::time::Duration::from_secs(2), stream.next()).await {
        let frame: Value = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
        if frame["event"] == "import_progress" {
            statuses.push(frame["data"]["status"].as_str().unwrap().to_string());
        }
    }
    assert!(statuses.len() >= 2 && statuses.last().map(String::as_str) == Some("done"), "{statuses:?}");

    let other = app.new_broker().await;
    expect_error(get(&app, &other, &format!("/api/v1/leads/bulk-import/{job_id}")).await, 404, "not_found").await;
    let agent = app.user_in(&admin, "agent").await;
    expect_error(get(&app, &agent, &format!("/api/v1/leads/bulk-import/{job_id}")).await, 404, "not_found").await;
}

#[tokio::test]
async fn an_async_import_without_a_phone_column_fails_with_a_reason() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let resp = import_to(&app, &admin, "/api/v1/leads/bulk-import?async=true", "x.csv", "nombre\nAna\n").await;
    resp.assert_status(StatusCode::ACCEPTED);
    let job_id = body(resp).await["job_id"].as_i64().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(app.infra().clone(), "import-worker-2".into(), vec![], async {
        let _ = stopped.await;
    }));
    let done = wait_for_import(&app, &admin, job_id).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(done["status"], "failed");
    assert!(done["error"].as_str().unwrap().contains("phone"), "{done}");
    expect_error(get(&app, &admin, "/api/v1/leads/bulk-import/999999").await, 404, "not_found").await;
}
