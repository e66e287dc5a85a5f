//! Brokers (`/api/brokers`), the users of a broker (`/api/broker/users`) and the audit log
//! (`/api/v1/admin/audit-log`): who may create, see, change and deactivate them, and what is recorded.

use poem::http::{Method, StatusCode};
use poem::test::TestResponse;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use shared::entities::{broker_chat_configs, broker_lead_configs, broker_prompt_configs};

use crate::common::{PASSWORD, TestApp, User, body, expect_error, phone};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `method path` as `user`, with an optional JSON body.
async fn send(app: &TestApp, user: &User, method: Method, path: &str, json: Option<&Value>) -> TestResponse {
    let client = app.client();
    let mut req = client.request(method, path).header("authorization", user.bearer());
    if let Some(j) = json {
        req = req.body_json(j);
    }
    req.send().await
}

async fn get(app: &TestApp, user: &User, path: &str) -> TestResponse {
    send(app, user, Method::GET, path, None).await
}

async fn post(app: &TestApp, user: &User, path: &str, json: Value) -> TestResponse {
    send(app, user, Method::POST, path, Some(&json)).await
}

async fn put(app: &TestApp, user: &User, path: &str, json: Value) -> TestResponse {
    send(app, user, Method::PUT, path, Some(&json)).await
}

async fn delete(app: &TestApp, user: &User, path: &str) -> TestResponse {
    send(app, user, Method::DELETE, path, None).await
}

/// Status and JSON body of a response.
async fn answer(resp: TestResponse) -> (u16, Value) {
    let status = resp.0.status().as_u16();
    (status, body(resp).await)
}

/// Asserts a 200 and returns the body.
async fn ok(resp: TestResponse) -> Value {
    let (status, b) = answer(resp).await;
    assert_eq!(status, 200, "unexpected status; body: {b}");
    b
}

/// Creates a broker as `superadmin` and returns it (asserting 201).
async fn create_broker(app: &TestApp, superadmin: &User, json: Value) -> Value {
    let (status, b) = answer(post(app, superadmin, "/api/brokers", json).await).await;
    assert_eq!(status, 201, "broker not created; body: {b}");
    b
}

/// Creates a user through `/api/broker/users` as `actor` and returns the created `user` object.
async fn create_user(app: &TestApp, actor: &User, json: Value) -> Value {
    ok(post(app, actor, "/api/broker/users", json).await).await["user"].clone()
}

/// A unique, valid new-user body with the given role.
fn new_user(role: &str) -> Value {
    let n = uuid::Uuid::new_v4().simple().to_string();
    json!({"email": format!("user-{}@test.cl", &n[..10]), "password": PASSWORD, "name": "Camila Rojas", "role": role})
}

/// The ids of the `users` of a `/api/broker/users` answer.
fn user_ids(list: &Value) -> Vec<i64> {
    list["users"].as_array().expect("users array").iter().map(|u| u["id"].as_i64().expect("user id")).collect()
}

/// The ids of a broker list.
fn broker_ids(list: &Value) -> Vec<i64> {
    list.as_array().expect("broker array").iter().map(|b| b["id"].as_i64().expect("broker id")).collect()
}

/// One page of the audit log as `user` (asserting 200); `query` starts with `?` or is empty.
async fn audit_log(app: &TestApp, user: &User, query: &str) -> Value {
    ok(get(app, user, &format!("/api/v1/admin/audit-log{query}")).await).await
}

/// The rows of an audit page.
fn rows(page: &Value) -> &Vec<Value> {
    page["data"].as_array().expect("audit data array")
}

/// The only row of `page` with this action and resource id.
fn audit_row<'a>(page: &'a Value, action: &str, resource_id: i64) -> &'a Value {
    let found: Vec<&Value> =
        rows(page).iter().filter(|r| r["action"] == action && r["resource_id"] == resource_id).collect();
    assert_eq!(found.len(), 1, "expected one {action} row for resource {resource_id}; page: {page}");
    found[0]
}

/// Rows of each broker-config table for a broker: (prompt, lead, chat).
async fn config_rows(app: &TestApp, broker_id: i64) -> (u64, u64, u64) {
    let db = app.db();
    let prompt = broker_prompt_configs::Entity::find()
        .filter(broker_prompt_configs::Column::BrokerId.eq(broker_id))
        .count(db)
        .await
        .expect("count prompt configs");
    let lead = broker_lead_configs::Entity::find()
        .filter(broker_lead_configs::Column::BrokerId.eq(broker_id))
        .count(db)
        .await
        .expect("count lead configs");
    let chat = broker_chat_configs::Entity::find()
        .filter(broker_chat_configs::Column::BrokerId.eq(broker_id))
        .count(db)
        .await
        .expect("count chat configs");
    (prompt, lead, chat)
}

// ---------------------------------------------------------------------------------------------
// POST /api/brokers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn superadmin_creates_a_broker_with_a_slug_folded_from_its_name() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = post(
        &app,
        &sa,
        "/api/brokers",
        json!({
            "name": "Propiedades Ñuñoa",
            "contact_phone": "+56 2 2345 6789",
            "contact_email": "contacto@nunoa.cl",
            "business_hours": "Lun-Vie 9:00-18:00",
            "service_zones": {"comunas": ["Ñuñoa", "Providencia"]}
        }),
    )
    .await;

    resp.assert_status(StatusCode::CREATED);
    let b = body(resp).await;
    assert!(b["id"].as_i64().is_some_and(|id| id > 0), "{b}");
    assert_eq!(b["name"], "Propiedades Ñuñoa");
    assert_eq!(b["slug"], "propiedades-nunoa");
    assert_eq!(b["is_active"], true);
    assert_eq!(b["contact_phone"], "+56 2 2345 6789");
    assert_eq!(b["contact_email"], "contacto@nunoa.cl");
    assert_eq!(b["business_hours"], "Lun-Vie 9:00-18:00");
    assert_eq!(b["service_zones"], json!({"comunas": ["Ñuñoa", "Providencia"]}));
    assert!(b["created_at"].is_string());
}

#[tokio::test]
async fn superadmin_may_choose_a_free_slug() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let b = create_broker(&app, &sa, json!({"name": "Inmobiliaria Activa", "slug": "activa-santiago"})).await;

    assert_eq!(b["slug"], "activa-santiago");
    assert_eq!(b["name"], "Inmobiliaria Activa");
}

#[tokio::test]
async fn an_explicit_slug_that_is_taken_is_slug_taken() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    create_broker(&app, &sa, json!({"name": "Casa Norte", "slug": "casa"})).await;

    let resp = post(&app, &sa, "/api/brokers", json!({"name": "Casa Sur", "slug": "casa"})).await;

    expect_error(resp, 400, "slug_taken").await;
    let all = ok(get(&app, &sa, "/api/brokers?include_inactive=true").await).await;
    assert_eq!(broker_ids(&all).len(), 1, "the refused broker must not exist: {all}");
}

#[tokio::test]
async fn a_second_broker_with_the_same_name_gets_a_numbered_slug() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let first = create_broker(&app, &sa, json!({"name": "Casa Sur"})).await;

    let second = create_broker(&app, &sa, json!({"name": "Casa Sur"})).await;
    let third = create_broker(&app, &sa, json!({"name": "Casa Sur"})).await;

    assert_eq!(first["slug"], "casa-sur");
    assert_eq!(second["slug"], "casa-sur-2");
    assert_eq!(third["slug"], "casa-sur-3");
    assert_ne!(first["id"], second["id"]);
}

#[tokio::test]
async fn admin_cannot_create_a_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = post(&app, &admin, "/api/brokers", json!({"name": "Otra Corredora"})).await;

    expect_error(resp, 403, "forbidden").await;
}

#[tokio::test]
async fn agent_cannot_create_a_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;

    let resp = post(&app, &agent, "/api/brokers", json!({"name": "Otra Corredora"})).await;

    expect_error(resp, 403, "forbidden").await;
}

#[tokio::test]
async fn a_broker_without_a_name_is_a_validation_error_on_name() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = post(&app, &sa, "/api/brokers", json!({"slug": "sin-nombre"})).await;

    let b = expect_error(resp, 422, "validation_error").await;
    assert_eq!(b["detail"][0]["loc"], json!(["body", "name"]), "{b}");
}

#[tokio::test]
async fn a_broker_name_that_is_only_markup_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = post(&app, &sa, "/api/brokers", json!({"name": "<b></b>  "})).await;

    let b = expect_error(resp, 422, "validation_error").await;
    assert_eq!(b["detail"][0]["loc"], json!(["body", "name"]), "{b}");
}

#[tokio::test]
async fn a_broker_with_an_invalid_contact_email_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = post(&app, &sa, "/api/brokers", json!({"name": "Casa Sur", "contact_email": "no-es-un-correo"})).await;

    let b = expect_error(resp, 422, "validation_error").await;
    assert_eq!(b["detail"][0]["loc"], json!(["body", "contact_email"]), "{b}");
}

#[tokio::test]
async fn the_broker_collection_also_answers_with_a_trailing_slash() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let created = post(&app, &sa, "/api/brokers/", json!({"name": "Barra Final"})).await;
    created.assert_status(StatusCode::CREATED);
    let created = body(created).await;
    let listed = ok(get(&app, &sa, "/api/brokers/").await).await;
    let listed_with_query = ok(get(&app, &sa, "/api/brokers/?limit=1").await).await;

    assert_eq!(created["slug"], "barra-final");
    assert_eq!(broker_ids(&listed), vec![created["id"].as_i64().expect("id")]);
    assert_eq!(broker_ids(&listed_with_query).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// GET /api/brokers, GET /api/brokers/{id}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn superadmin_lists_active_brokers_newest_first() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let a = create_broker(&app, &sa, json!({"name": "Alfa"})).await["id"].as_i64().expect("id");
    let b = create_broker(&app, &sa, json!({"name": "Beta"})).await["id"].as_i64().expect("id");
    let c = create_broker(&app, &sa, json!({"name": "Gamma"})).await["id"].as_i64().expect("id");

    let list = ok(get(&app, &sa, "/api/brokers").await).await;

    assert_eq!(broker_ids(&list), vec![c, b, a]);
    assert!(list.as_array().expect("array").iter().all(|b| b["is_active"] == true));
}

#[tokio::test]
async fn deactivated_brokers_are_listed_only_with_include_inactive() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let kept = create_broker(&app, &sa, json!({"name": "Vigente"})).await["id"].as_i64().expect("id");
    let gone = create_broker(&app, &sa, json!({"name": "Cerrada"})).await["id"].as_i64().expect("id");
    delete(&app, &sa, &format!("/api/brokers/{gone}")).await.assert_status(StatusCode::NO_CONTENT);

    let active = ok(get(&app, &sa, "/api/brokers").await).await;
    let all = ok(get(&app, &sa, "/api/brokers?include_inactive=true").await).await;

    assert_eq!(broker_ids(&active), vec![kept]);
    assert_eq!(broker_ids(&all), vec![gone, kept]);
    assert_eq!(all[0]["is_active"], false);
}

#[tokio::test]
async fn admin_lists_only_its_own_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;

    let list = ok(get(&app, &admin, "/api/brokers").await).await;
    let with_inactive = ok(get(&app, &admin, "/api/brokers?include_inactive=true").await).await;

    assert_eq!(broker_ids(&list), vec![admin.broker_id.expect("broker")]);
    assert_eq!(broker_ids(&with_inactive), vec![admin.broker_id.expect("broker")]);
    assert!(!broker_ids(&list).contains(&other.broker_id.expect("broker")));
}

#[tokio::test]
async fn admin_reads_its_own_broker_by_id() {
    let app = TestApp::spawn().await;
    let admin = app.register("duena@activa.cl", "Inmobiliaria Activa").await;
    let own = admin.broker_id.expect("broker");

    let b = ok(get(&app, &admin, &format!("/api/brokers/{own}")).await).await;

    assert_eq!(b["id"], own);
    assert_eq!(b["name"], "Inmobiliaria Activa");
    assert_eq!(b["slug"], "inmobiliaria-activa");
    assert_eq!(b["is_active"], true);
}

#[tokio::test]
async fn admin_cannot_see_another_broker_by_id() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;

    let resp = get(&app, &admin, &format!("/api/brokers/{}", other.broker_id.expect("broker"))).await;

    expect_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn an_unknown_broker_id_is_not_found() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = get(&app, &sa, "/api/brokers/987654321").await;

    expect_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn a_broker_list_limit_above_200_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = get(&app, &sa, "/api/brokers?limit=201").await;

    let b = expect_error(resp, 422, "validation_error").await;
    assert_eq!(b["detail"][0]["loc"], json!(["query", "limit"]), "{b}");
}

// ---------------------------------------------------------------------------------------------
// PUT /api/brokers/{id}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn superadmin_updates_only_the_fields_sent_and_null_clears() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let created = create_broker(
        &app,
        &sa,
        json!({"name": "Casa Sur", "contact_phone": "+56223456789", "contact_email": "hola@casasur.cl",
               "business_hours": "9-18"}),
    )
    .await;
    let id = created["id"].as_i64().expect("id");

    let updated =
        ok(put(&app, &sa, &format!("/api/brokers/{id}"), json!({"name": "Casa Sur Oriente", "contact_phone": null}))
            .await)
        .await;
    let reread = ok(get(&app, &sa, &format!("/api/brokers/{id}")).await).await;

    for b in [&updated, &reread] {
        assert_eq!(b["name"], "Casa Sur Oriente");
        assert_eq!(b["contact_phone"], Value::Null, "null clears contact_phone: {b}");
        assert_eq!(b["contact_email"], "hola@casasur.cl", "omitted fields stay: {b}");
        assert_eq!(b["business_hours"], "9-18");
        assert_eq!(b["slug"], "casa-sur", "renaming keeps the slug: {b}");
        assert_eq!(b["is_active"], true);
    }
}

#[tokio::test]
async fn admin_cannot_update_even_its_own_broker() {
    let app = TestApp::spawn().await;
    let admin = app.register("duena@activa.cl", "Inmobiliaria Activa").await;
    let own = admin.broker_id.expect("broker");

    let resp = put(&app, &admin, &format!("/api/brokers/{own}"), json!({"name": "Renombrada"})).await;

    expect_error(resp, 403, "forbidden").await;
    let b = ok(get(&app, &admin, &format!("/api/brokers/{own}")).await).await;
    assert_eq!(b["name"], "Inmobiliaria Activa");
}

#[tokio::test]
async fn updating_to_another_brokers_slug_is_slug_taken() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    create_broker(&app, &sa, json!({"name": "Alfa"})).await;
    let beta = create_broker(&app, &sa, json!({"name": "Beta"})).await["id"].as_i64().expect("id");

    let resp = put(&app, &sa, &format!("/api/brokers/{beta}"), json!({"slug": "alfa"})).await;

    expect_error(resp, 400, "slug_taken").await;
    let b = ok(get(&app, &sa, &format!("/api/brokers/{beta}")).await).await;
    assert_eq!(b["slug"], "beta");
}

#[tokio::test]
async fn updating_an_unknown_broker_is_not_found() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = put(&app, &sa, "/api/brokers/987654321", json!({"name": "Nadie"})).await;

    expect_error(resp, 404, "not_found").await;
}

// ---------------------------------------------------------------------------------------------
// DELETE /api/brokers/{id}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deactivating_a_broker_answers_204_and_keeps_it_inactive() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let id = create_broker(&app, &sa, json!({"name": "Cerrada"})).await["id"].as_i64().expect("id");

    let resp = delete(&app, &sa, &format!("/api/brokers/{id}")).await;

    resp.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(body(resp).await, Value::Null, "204 has no body");
    let b = ok(get(&app, &sa, &format!("/api/brokers/{id}")).await).await;
    assert_eq!(b["is_active"], false);
    assert_eq!(b["name"], "Cerrada", "the data is kept");
}

#[tokio::test]
async fn users_of_a_deactivated_broker_lose_access_at_once() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let bystander = app.new_broker().await;
    // Both tokens were just used, so any per-process user cache is warm.
    ok(get(&app, &admin, "/auth/me").await).await;
    ok(get(&app, &agent, "/auth/me").await).await;

    delete(&app, &sa, &format!("/api/brokers/{}", admin.broker_id.expect("broker")))
        .await
        .assert_status(StatusCode::NO_CONTENT);

    expect_error(get(&app, &admin, "/auth/me").await, 403, "forbidden").await;
    expect_error(get(&app, &agent, "/auth/me").await, 403, "forbidden").await;
    expect_error(get(&app, &admin, "/api/broker/users").await, 403, "forbidden").await;
    ok(get(&app, &bystander, "/auth/me").await).await;
    // Nor can they get a new token.
    let resp =
        app.client().post("/auth/login").body_json(&json!({"email": agent.email, "password": PASSWORD})).send().await;
    expect_error(resp, 403, "forbidden").await;
}

#[tokio::test]
async fn admin_cannot_deactivate_a_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let own = admin.broker_id.expect("broker");

    let resp = delete(&app, &admin, &format!("/api/brokers/{own}")).await;

    expect_error(resp, 403, "forbidden").await;
    ok(get(&app, &admin, "/auth/me").await).await;
}

#[tokio::test]
async fn deactivating_an_unknown_broker_is_not_found() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = delete(&app, &sa, "/api/brokers/987654321").await;

    expect_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn reactivating_a_broker_restores_its_users_access() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let admin = app.new_broker().await;
    let broker = admin.broker_id.expect("broker");
    delete(&app, &sa, &format!("/api/brokers/{broker}")).await.assert_status(StatusCode::NO_CONTENT);
    expect_error(get(&app, &admin, "/auth/me").await, 403, "forbidden").await;

    let b = ok(put(&app, &sa, &format!("/api/brokers/{broker}"), json!({"is_active": true})).await).await;

    assert_eq!(b["is_active"], true);
    ok(get(&app, &admin, "/auth/me").await).await;
}

// ---------------------------------------------------------------------------------------------
// Default configurations and registration
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn registration_creates_exactly_one_of_each_default_config() {
    let app = TestApp::spawn().await;

    let first = app.new_broker().await;
    let second = app.new_broker().await;

    for admin in [&first, &second] {
        let broker = admin.broker_id.expect("registered admin has a broker");
        assert_eq!(config_rows(&app, broker).await, (1, 1, 1), "broker {broker}: (prompt, lead, chat) rows");
    }
}

#[tokio::test]
async fn a_broker_created_by_the_superadmin_gets_the_default_configs() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let id = create_broker(&app, &sa, json!({"name": "Con Configuración"})).await["id"].as_i64().expect("id");

    assert_eq!(config_rows(&app, id).await, (1, 1, 1), "(prompt, lead, chat) rows");
}

#[tokio::test]
async fn registering_the_same_broker_name_twice_never_joins_the_first_broker() {
    let app = TestApp::spawn().await;
    let first = app.register("primera@casasur.cl", "Casa Sur").await;

    let second = app.register("segunda@casasur.cl", "Casa Sur").await;

    let (b1, b2) = (first.broker_id.expect("broker"), second.broker_id.expect("broker"));
    assert_ne!(b1, b2, "the second admin must get its own broker");
    let s1 = ok(get(&app, &first, &format!("/api/brokers/{b1}")).await).await;
    let s2 = ok(get(&app, &second, &format!("/api/brokers/{b2}")).await).await;
    assert_eq!(s1["slug"], "casa-sur");
    assert_eq!(s2["slug"], "casa-sur-2");
    let first_users = ok(get(&app, &first, "/api/broker/users").await).await;
    assert_eq!(user_ids(&first_users), vec![first.id], "the second admin is not in the first broker");
}

#[tokio::test]
async fn concurrent_registrations_with_the_same_name_get_separate_brokers() {
    let app = TestApp::spawn().await;

    let (first, second) = tokio::join!(
        app.register("uno@mismonombre.cl", "Mismo Nombre"),
        app.register("dos@mismonombre.cl", "Mismo Nombre")
    );

    let (b1, b2) = (first.broker_id.expect("broker"), second.broker_id.expect("broker"));
    assert_ne!(b1, b2, "neither admin may join the other's broker");
    let mut slugs = Vec::new();
    for (admin, id) in [(&first, b1), (&second, b2)] {
        slugs.push(ok(get(&app, admin, &format!("/api/brokers/{id}")).await).await["slug"].clone());
        assert_eq!(config_rows(&app, id).await, (1, 1, 1), "broker {id}: (prompt, lead, chat) rows");
    }
    slugs.sort_by_key(|s| s.to_string());
    assert_eq!(slugs, vec![json!("mismo-nombre"), json!("mismo-nombre-2")]);
}

// ---------------------------------------------------------------------------------------------
// /api/broker/users: listing and creating
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_lists_only_its_brokers_users() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let other_admin = app.new_broker().await;
    let other_agent = app.user_in(&other_admin, "agent").await;

    let list = ok(get(&app, &admin, "/api/broker/users").await).await;

    let mut ids = user_ids(&list);
    ids.sort_unstable();
    assert_eq!(ids, vec![admin.id, agent.id]);
    assert!(!ids.contains(&other_admin.id) && !ids.contains(&other_agent.id));
    for u in list["users"].as_array().expect("users") {
        assert_eq!(u["broker_id"], admin.broker_id.expect("broker"), "{u}");
        assert_eq!(u["is_active"], true);
        assert!(u["email"].is_string() && u["name"].is_string() && u["created_at"].is_string(), "{u}");
    }
}

#[tokio::test]
async fn superadmin_lists_every_user_or_one_brokers_users() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let a = app.new_broker().await;
    let a_agent = app.user_in(&a, "agent").await;
    let b = app.new_broker().await;

    let all = ok(get(&app, &sa, "/api/broker/users").await).await;
    let only_a =
        ok(get(&app, &sa, &format!("/api/broker/users?broker_id={}", a.broker_id.expect("broker"))).await).await;

    let mut all_ids = user_ids(&all);
    all_ids.sort_unstable();
    let mut expected = vec![sa.id, a.id, a_agent.id, b.id];
    expected.sort_unstable();
    assert_eq!(all_ids, expected);
    let mut a_ids = user_ids(&only_a);
    a_ids.sort_unstable();
    assert_eq!(a_ids, vec![a.id, a_agent.id]);
}

#[tokio::test]
async fn admin_cannot_see_another_brokers_users() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;

    let resp = get(&app, &admin, &format!("/api/broker/users?broker_id={}", other.broker_id.expect("broker"))).await;

    expect_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn admin_creates_an_agent_in_its_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = post(
        &app,
        &admin,
        "/api/broker/users",
        json!({"email": "Nuevo.Agente@Test.CL", "password": PASSWORD, "name": "Nuevo Agente"}),
    )
    .await;

    let b = ok(resp).await;
    assert_eq!(b["message"], "User created");
    let user = &b["user"];
    assert!(user["id"].as_i64().is_some());
    assert_eq!(user["email"], "nuevo.agente@test.cl");
    assert_eq!(user["name"], "Nuevo Agente");
    assert_eq!(user["role"], "AGENT", "agent is the default role");
    assert_eq!(user["broker_id"], admin.broker_id.expect("broker"));
    assert_eq!(user["is_active"], true);
    let agent = app.login("nuevo.agente@test.cl").await;
    assert_eq!(agent.broker_id, admin.broker_id);
}

#[tokio::test]
async fn admin_creates_another_admin_with_the_role_in_any_case() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let user = create_user(&app, &admin, new_user("Admin")).await;

    assert_eq!(user["role"], "ADMIN");
    assert_eq!(user["broker_id"], admin.broker_id.expect("broker"));
}

#[tokio::test]
async fn the_superadmin_role_cannot_be_granted_on_create() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = post(&app, &admin, "/api/broker/users", new_user("superadmin")).await;

    let b = expect_error(resp, 422, "invalid_role").await;
    assert_eq!(b["detail"][0]["loc"], json!(["body", "role"]), "{b}");
    let list = ok(get(&app, &admin, "/api/broker/users").await).await;
    assert_eq!(user_ids(&list), vec![admin.id]);
}

#[tokio::test]
async fn a_weak_password_is_refused_when_creating_a_user() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mut req = new_user("agent");
    req["password"] = json!("solopalabras");

    let resp = post(&app, &admin, "/api/broker/users", req).await;

    let b = expect_error(resp, 422, "weak_password").await;
    assert_eq!(b["detail"][0]["loc"], json!(["body", "password"]), "{b}");
}

#[tokio::test]
async fn a_taken_email_is_refused_when_creating_a_user() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mut req = new_user("agent");
    req["email"] = json!(admin.email.to_uppercase());

    let resp = post(&app, &admin, "/api/broker/users", req).await;

    expect_error(resp, 400, "email_taken").await;
}

#[tokio::test]
async fn agent_cannot_list_users() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;

    let resp = get(&app, &agent, "/api/broker/users").await;

    expect_error(resp, 403, "forbidden").await;
}

#[tokio::test]
async fn agent_cannot_create_users() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;

    let resp = post(&app, &agent, "/api/broker/users", new_user("agent")).await;

    expect_error(resp, 403, "forbidden").await;
    let list = ok(get(&app, &admin, "/api/broker/users").await).await;
    assert_eq!(user_ids(&list).len(), 2, "nothing was created: {list}");
}

#[tokio::test]
async fn admin_cannot_create_a_user_in_another_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;
    let mut req = new_user("agent");
    req["broker_id"] = json!(other.broker_id.expect("broker"));

    let resp = post(&app, &admin, "/api/broker/users", req).await;

    expect_error(resp, 404, "not_found").await;
    let theirs = ok(get(&app, &other, "/api/broker/users").await).await;
    assert_eq!(user_ids(&theirs), vec![other.id]);
}

#[tokio::test]
async fn superadmin_must_name_the_broker_of_a_new_user() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let resp = post(&app, &sa, "/api/broker/users", new_user("agent")).await;

    let b = expect_error(resp, 422, "validation_error").await;
    assert_eq!(b["detail"][0]["loc"], json!(["body", "broker_id"]), "{b}");
}

#[tokio::test]
async fn superadmin_creates_a_user_in_the_broker_it_names() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let admin = app.new_broker().await;
    let broker = admin.broker_id.expect("broker");
    let mut req = new_user("admin");
    req["broker_id"] = json!(broker);

    let user = create_user(&app, &sa, req).await;

    assert_eq!(user["broker_id"], broker);
    assert_eq!(user["role"], "ADMIN");
    let list = ok(get(&app, &admin, "/api/broker/users").await).await;
    assert!(user_ids(&list).contains(&user["id"].as_i64().expect("id")), "{list}");
}

#[tokio::test]
async fn superadmin_cannot_create_a_user_in_a_deactivated_broker() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let id = create_broker(&app, &sa, json!({"name": "Cerrada"})).await["id"].as_i64().expect("id");
    delete(&app, &sa, &format!("/api/brokers/{id}")).await.assert_status(StatusCode::NO_CONTENT);
    let mut req = new_user("agent");
    req["broker_id"] = json!(id);

    let resp = post(&app, &sa, "/api/broker/users", req).await;

    expect_error(resp, 404, "not_found").await;
}

// ---------------------------------------------------------------------------------------------
// /api/broker/users/{id}: updating and deactivating
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_cannot_update_a_user_of_another_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;
    let their_agent = app.user_in(&other, "agent").await;

    let resp =
        put(&app, &admin, &format!("/api/broker/users/{}", their_agent.id), json!({"role": "admin", "name": "Tomado"}))
            .await;

    expect_error(resp, 404, "not_found").await;
    let theirs = ok(get(&app, &other, "/api/broker/users").await).await;
    let untouched =
        theirs["users"].as_array().expect("users").iter().find(|u| u["id"] == their_agent.id).expect("agent");
    assert_eq!(untouched["role"], "AGENT");
    assert_eq!(untouched["name"], "agent user");
}

#[tokio::test]
async fn admin_cannot_deactivate_a_user_of_another_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;

    let resp = delete(&app, &admin, &format!("/api/broker/users/{}", other.id)).await;

    expect_error(resp, 404, "not_found").await;
    ok(get(&app, &other, "/auth/me").await).await;
}

#[tokio::test]
async fn admin_cannot_deactivate_the_superadmin() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let admin = app.new_broker().await;

    let resp = delete(&app, &admin, &format!("/api/broker/users/{}", sa.id)).await;

    expect_error(resp, 404, "not_found").await;
    ok(get(&app, &sa, "/auth/me").await).await;
}

#[tokio::test]
async fn admin_cannot_deactivate_itself() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = delete(&app, &admin, &format!("/api/broker/users/{}", admin.id)).await;

    expect_error(resp, 400, "cannot_modify_self").await;
    ok(get(&app, &admin, "/auth/me").await).await;
}

#[tokio::test]
async fn admin_cannot_deactivate_itself_through_an_update() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = put(&app, &admin, &format!("/api/broker/users/{}", admin.id), json!({"is_active": false})).await;

    expect_error(resp, 400, "cannot_modify_self").await;
    ok(get(&app, &admin, "/auth/me").await).await;
}

#[tokio::test]
async fn admin_cannot_demote_itself() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = put(&app, &admin, &format!("/api/broker/users/{}", admin.id), json!({"role": "agent"})).await;

    expect_error(resp, 400, "cannot_modify_self").await;
    ok(get(&app, &admin, "/api/broker/users").await).await;
}

#[tokio::test]
async fn the_superadmin_role_cannot_be_granted_on_update() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;

    let resp = put(&app, &admin, &format!("/api/broker/users/{}", agent.id), json!({"role": "SUPERADMIN"})).await;

    expect_error(resp, 422, "invalid_role").await;
    expect_error(get(&app, &agent, "/api/broker/users").await, 403, "forbidden").await;
}

#[tokio::test]
async fn a_superadmin_cannot_be_turned_into_a_brokerless_user() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    shared::auth::service::upsert_superadmin(app.db(), "otro@corredor.cl", PASSWORD, true)
        .await
        .expect("second superadmin");
    let other = app.login("otro@corredor.cl").await;

    let resp = put(&app, &sa, &format!("/api/broker/users/{}", other.id), json!({"role": "agent"})).await;

    let (status, b) = answer(resp).await;
    assert!((400..500).contains(&status), "a user without a broker cannot become ADMIN/AGENT; got {status}: {b}");
    let me = ok(get(&app, &other, "/auth/me").await).await;
    assert_eq!(me["role"], "SUPERADMIN");
    assert_eq!(me["broker_id"], Value::Null);
}

#[tokio::test]
async fn a_deactivated_agent_loses_access_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    // The token was just used, so any per-process user cache is warm.
    ok(get(&app, &agent, "/auth/me").await).await;

    let resp = delete(&app, &admin, &format!("/api/broker/users/{}", agent.id)).await;

    assert_eq!(ok(resp).await["message"], "User deactivated");
    expect_error(get(&app, &agent, "/auth/me").await, 403, "user_inactive").await;
    expect_error(get(&app, &agent, "/api/v1/leads").await, 403, "user_inactive").await;
    let list = ok(get(&app, &admin, "/api/broker/users").await).await;
    let row = list["users"].as_array().expect("users").iter().find(|u| u["id"] == agent.id).expect("agent listed");
    assert_eq!(row["is_active"], false);
}

#[tokio::test]
async fn a_deactivated_agent_cannot_log_in() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    ok(delete(&app, &admin, &format!("/api/broker/users/{}", agent.id)).await).await;

    let resp =
        app.client().post("/auth/login").body_json(&json!({"email": agent.email, "password": PASSWORD})).send().await;

    expect_error(resp, 403, "user_inactive").await;
}

#[tokio::test]
async fn a_reactivated_agent_regains_access() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    ok(delete(&app, &admin, &format!("/api/broker/users/{}", agent.id)).await).await;
    expect_error(get(&app, &agent, "/auth/me").await, 403, "user_inactive").await;

    let b = ok(put(&app, &admin, &format!("/api/broker/users/{}", agent.id), json!({"is_active": true})).await).await;

    assert_eq!(b["user"]["is_active"], true);
    ok(get(&app, &agent, "/auth/me").await).await;
}

#[tokio::test]
async fn a_promoted_agent_can_call_admin_endpoints_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    expect_error(get(&app, &agent, "/api/broker/users").await, 403, "forbidden").await;

    let b = ok(put(&app, &admin, &format!("/api/broker/users/{}", agent.id), json!({"role": "admin"})).await).await;

    assert_eq!(b["message"], "User updated");
    assert_eq!(b["user"]["role"], "ADMIN");
    let list = ok(get(&app, &agent, "/api/broker/users").await).await;
    assert!(user_ids(&list).contains(&admin.id), "the old token now acts as ADMIN: {list}");
}

#[tokio::test]
async fn a_demoted_admin_loses_admin_endpoints_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let second = app.user_in(&admin, "admin").await;
    ok(get(&app, &second, "/api/broker/users").await).await;

    let b = ok(put(&app, &admin, &format!("/api/broker/users/{}", second.id), json!({"role": "agent"})).await).await;

    assert_eq!(b["user"]["role"], "AGENT");
    expect_error(get(&app, &second, "/api/broker/users").await, 403, "forbidden").await;
}

#[tokio::test]
async fn admin_renames_a_user_of_its_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;

    let b =
        ok(put(&app, &admin, &format!("/api/broker/users/{}", agent.id), json!({"name": "  <i>Josefa</i>  Muñoz "}))
            .await)
        .await;

    assert_eq!(b["user"]["name"], "Josefa Muñoz");
    assert_eq!(b["user"]["role"], "AGENT", "omitted fields stay");
    assert_eq!(b["user"]["is_active"], true);
}

// ---------------------------------------------------------------------------------------------
// Audit log: what is recorded
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn registration_is_audited_as_broker_register() {
    let app = TestApp::spawn().await;

    let admin = app.register("duena@activa.cl", "Inmobiliaria Activa").await;

    let broker = admin.broker_id.expect("broker");
    let page = audit_log(&app, &admin, "").await;
    let row = audit_row(&page, "broker_register", broker);
    assert_eq!(row["resource_type"], "broker");
    assert_eq!(row["user_id"], admin.id);
    assert_eq!(row["broker_id"], broker);
    assert_eq!(row["changes"]["slug"], "inmobiliaria-activa");
    assert_eq!(row["changes"]["admin_email"], "duena@activa.cl");
}

#[tokio::test]
async fn broker_creation_is_audited_with_its_actor() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;

    let id = create_broker(&app, &sa, json!({"name": "Propiedades Ñuñoa"})).await["id"].as_i64().expect("id");

    let page = audit_log(&app, &sa, "").await;
    let row = audit_row(&page, "broker_create", id);
    assert_eq!(row["resource_type"], "broker");
    assert_eq!(row["user_id"], sa.id);
    assert_eq!(row["broker_id"], id);
    assert_eq!(row["changes"]["slug"], "propiedades-nunoa");
}

#[tokio::test]
async fn broker_update_is_audited_with_its_changes() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let id = create_broker(&app, &sa, json!({"name": "Casa Sur", "contact_phone": "+56223456789"})).await["id"]
        .as_i64()
        .expect("id");

    ok(put(&app, &sa, &format!("/api/brokers/{id}"), json!({"name": "Casa Sur Oriente", "contact_phone": null})).await)
        .await;

    let page = audit_log(&app, &sa, "?action=broker_update").await;
    let row = audit_row(&page, "broker_update", id);
    assert_eq!(row["user_id"], sa.id);
    assert_eq!(row["broker_id"], id);
    assert_eq!(row["changes"], json!({"name": "Casa Sur Oriente", "contact_phone": null}));
}

#[tokio::test]
async fn broker_deactivation_is_audited() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let id = create_broker(&app, &sa, json!({"name": "Cerrada"})).await["id"].as_i64().expect("id");

    delete(&app, &sa, &format!("/api/brokers/{id}")).await.assert_status(StatusCode::NO_CONTENT);

    let page = audit_log(&app, &sa, &format!("?broker_id={id}")).await;
    let row = audit_row(&page, "broker_deactivate", id);
    assert_eq!(row["user_id"], sa.id);
    assert_eq!(row["changes"], json!({"is_active": false}));
}

#[tokio::test]
async fn user_creation_is_audited_with_its_actor() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let user = create_user(&app, &admin, new_user("agent")).await;

    let id = user["id"].as_i64().expect("id");
    let page = audit_log(&app, &admin, "?action=user_create").await;
    let row = audit_row(&page, "user_create", id);
    assert_eq!(row["resource_type"], "user");
    assert_eq!(row["user_id"], admin.id);
    assert_eq!(row["broker_id"], admin.broker_id.expect("broker"));
    assert_eq!(row["changes"]["email"], user["email"]);
    assert_eq!(row["changes"]["role"], "AGENT");
    assert!(!row["changes"].to_string().contains(PASSWORD), "no password in the audit log");
}

#[tokio::test]
async fn user_updates_and_deactivations_are_audited() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;

    ok(put(&app, &admin, &format!("/api/broker/users/{}", agent.id), json!({"role": "admin"})).await).await;
    ok(delete(&app, &admin, &format!("/api/broker/users/{}", agent.id)).await).await;

    let page = audit_log(&app, &admin, "?action=user_update").await;
    assert_eq!(page["total"], 2, "{page}");
    let changes: Vec<&Value> = rows(&page).iter().map(|r| &r["changes"]).collect();
    assert_eq!(changes, vec![&json!({"is_active": false}), &json!({"role": "ADMIN"})], "newest first");
    for row in rows(&page) {
        assert_eq!(row["resource_type"], "user");
        assert_eq!(row["resource_id"], agent.id);
        assert_eq!(row["user_id"], admin.id);
        assert_eq!(row["broker_id"], admin.broker_id.expect("broker"));
    }
}

#[tokio::test]
async fn lead_deletion_is_audited_without_personal_data() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mobile = phone();
    let lead = app.lead(&admin, json!({"phone": mobile, "name": "María Pérez", "email": "maria@correo.cl"})).await;
    let lead_id = lead["id"].as_i64().expect("lead id");

    delete(&app, &admin, &format!("/api/v1/leads/{lead_id}")).await.assert_status(StatusCode::NO_CONTENT);

    let page = audit_log(&app, &admin, "?action=lead_delete").await;
    let row = audit_row(&page, "lead_delete", lead_id);
    assert_eq!(row["resource_type"], "lead");
    assert_eq!(row["user_id"], admin.id);
    assert_eq!(row["broker_id"], admin.broker_id.expect("broker"));
    let recorded = row["changes"].to_string();
    for pii in [mobile.as_str(), "María", "maria@correo.cl"] {
        assert!(!recorded.contains(pii), "{pii} leaked into the audit log: {recorded}");
    }
}

#[tokio::test]
async fn audit_rows_carry_the_request_id_and_user_agent_of_the_request() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = app
        .client()
        .post("/api/broker/users")
        .header("authorization", admin.bearer())
        .header("x-request-id", "it-brokers-req-0001")
        .header("user-agent", "corredor-it/1.0")
        .body_json(&new_user("agent"))
        .send()
        .await;

    resp.assert_header("x-request-id", "it-brokers-req-0001");
    let user_id = ok(resp).await["user"]["id"].as_i64().expect("id");
    let page = audit_log(&app, &admin, "?action=user_create").await;
    let row = audit_row(&page, "user_create", user_id);
    assert_eq!(row["request_id"], "it-brokers-req-0001");
    assert_eq!(row["user_agent"], "corredor-it/1.0");
}

#[tokio::test]
async fn audit_rows_carry_the_generated_request_id_when_none_is_sent() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = post(&app, &admin, "/api/broker/users", new_user("agent")).await;

    let generated =
        resp.0.headers().get("x-request-id").expect("x-request-id header").to_str().expect("ascii").to_string();
    let user_id = ok(resp).await["user"]["id"].as_i64().expect("id");
    let page = audit_log(&app, &admin, "?action=user_create").await;
    assert_eq!(audit_row(&page, "user_create", user_id)["request_id"], generated.as_str());
}

#[tokio::test]
async fn the_registration_audit_row_carries_the_request_id() {
    let app = TestApp::spawn().await;

    let resp = app
        .client()
        .post("/auth/register")
        .header("x-request-id", "it-brokers-register-0001")
        .header("user-agent", "corredor-it/1.0")
        .body_json(&json!({"email": "duena@activa.cl", "password": PASSWORD, "broker_name": "Inmobiliaria Activa"}))
        .send()
        .await;

    resp.assert_status_is_ok();
    resp.assert_header("x-request-id", "it-brokers-register-0001");
    let admin = app.login("duena@activa.cl").await;
    let page = audit_log(&app, &admin, "?action=broker_register").await;
    let row = audit_row(&page, "broker_register", admin.broker_id.expect("broker"));
    assert_eq!(row["request_id"], "it-brokers-register-0001", "{row}");
    assert_eq!(row["user_agent"], "corredor-it/1.0", "{row}");
    assert!(row["ip_address"].is_string(), "{row}");
}

// ---------------------------------------------------------------------------------------------
// Audit log: who sees what, filters and paging
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_sees_only_its_brokers_audit_rows() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let admin = app.new_broker().await;
    let own_agent = create_user(&app, &admin, new_user("agent")).await["id"].as_i64().expect("id");
    let other = app.new_broker().await;
    let their_agent = create_user(&app, &other, new_user("agent")).await["id"].as_i64().expect("id");
    let their_lead = app.lead(&other, json!({"phone": phone()})).await["id"].as_i64().expect("lead id");
    delete(&app, &other, &format!("/api/v1/leads/{their_lead}")).await.assert_status(StatusCode::NO_CONTENT);
    let third = create_broker(&app, &sa, json!({"name": "Tercera"})).await["id"].as_i64().expect("id");

    let page = audit_log(&app, &admin, "").await;

    let own = admin.broker_id.expect("broker");
    assert!(rows(&page).iter().all(|r| r["broker_id"] == own), "only own broker rows: {page}");
    assert_eq!(page["total"], 2, "broker_register + user_create: {page}");
    audit_row(&page, "broker_register", own);
    audit_row(&page, "user_create", own_agent);
    let foreign =
        [("user", their_agent), ("lead", their_lead), ("broker", third), ("broker", other.broker_id.expect("broker"))];
    for (kind, id) in foreign {
        let visible = rows(&page).iter().any(|r| r["resource_type"] == kind && r["resource_id"] == id);
        assert!(!visible, "another broker's {kind} {id} is visible: {page}");
    }
}

#[tokio::test]
async fn admin_cannot_filter_the_audit_log_by_another_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;

    let resp =
        get(&app, &admin, &format!("/api/v1/admin/audit-log?broker_id={}", other.broker_id.expect("broker"))).await;

    expect_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn agent_cannot_read_the_audit_log() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;

    let resp = get(&app, &agent, "/api/v1/admin/audit-log").await;

    expect_error(resp, 403, "forbidden").await;
}

#[tokio::test]
async fn superadmin_sees_every_brokers_audit_rows() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let first = app.new_broker().await;
    let second = app.new_broker().await;
    let created = create_broker(&app, &sa, json!({"name": "Tercera"})).await["id"].as_i64().expect("id");

    let page = audit_log(&app, &sa, "").await;

    assert_eq!(page["total"], 3, "{page}");
    audit_row(&page, "broker_register", first.broker_id.expect("broker"));
    audit_row(&page, "broker_register", second.broker_id.expect("broker"));
    audit_row(&page, "broker_create", created);
    assert_eq!(rows(&page)[0]["action"], "broker_create", "newest first: {page}");
}

#[tokio::test]
async fn superadmin_filters_the_audit_log_by_broker_and_action() {
    let app = TestApp::spawn().await;
    let sa = app.superadmin().await;
    let a = app.new_broker().await;
    let b = app.new_broker().await;
    let a_agent = create_user(&app, &a, new_user("agent")).await["id"].as_i64().expect("id");
    let b_agent = create_user(&app, &b, new_user("agent")).await["id"].as_i64().expect("id");
    let (a_broker, b_broker) = (a.broker_id.expect("broker"), b.broker_id.expect("broker"));

    let by_broker = audit_log(&app, &sa, &format!("?broker_id={a_broker}")).await;
    let by_action = audit_log(&app, &sa, "?action=user_create").await;
    let by_both = audit_log(&app, &sa, &format!("?broker_id={b_broker}&action=user_create")).await;

    assert_eq!(by_broker["total"], 2, "{by_broker}");
    assert!(rows(&by_broker).iter().all(|r| r["broker_id"] == a_broker), "{by_broker}");
    assert_eq!(by_action["total"], 2, "{by_action}");
    audit_row(&by_action, "user_create", a_agent);
    audit_row(&by_action, "user_create", b_agent);
    assert_eq!(by_both["total"], 1, "{by_both}");
    audit_row(&by_both, "user_create", b_agent);
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_with_a_total() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create_user(&app, &admin, new_user("agent")).await["id"].as_i64().expect("id"));
    }

    let first = audit_log(&app, &admin, "?page=1&limit=2").await;
    let second = audit_log(&app, &admin, "?page=2&limit=2").await;
    let third = audit_log(&app, &admin, "?page=3&limit=2").await;
    let beyond = audit_log(&app, &admin, "?page=4&limit=2").await;

    for (n, page) in [(1, &first), (2, &second), (3, &third), (4, &beyond)] {
        assert_eq!(page["total"], 6, "5 user_create + broker_register: {page}");
        assert_eq!(page["page"], n);
        assert_eq!(page["limit"], 2);
    }
    let resource = |page: &Value| rows(page).iter().map(|r| r["resource_id"].as_i64().expect("id")).collect::<Vec<_>>();
    assert_eq!(resource(&first), vec![created[4], created[3]]);
    assert_eq!(resource(&second), vec![created[2], created[1]]);
    assert_eq!(resource(&third), vec![created[0], admin.broker_id.expect("broker")]);
    assert_eq!(rows(&third)[1]["action"], "broker_register");
    assert!(rows(&beyond).is_empty(), "{beyond}");
}

#[tokio::test]
async fn the_audit_log_defaults_to_page_1_of_50() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let page = audit_log(&app, &admin, "").await;

    assert_eq!(page["page"], 1);
    assert_eq!(page["limit"], 50);
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn an_audit_log_limit_out_of_range_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    for query in ["?limit=0", "?limit=500"] {
        let resp = get(&app, &admin, &format!("/api/v1/admin/audit-log{query}")).await;

        let b = expect_error(resp, 422, "validation_error").await;
        assert_eq!(b["detail"][0]["loc"], json!(["query", "limit"]), "{query}: {b}");
    }
}

#[tokio::test]
async fn an_audit_log_page_0_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let resp = get(&app, &admin, "/api/v1/admin/audit-log?page=0").await;

    let b = expect_error(resp, 422, "validation_error").await;
    assert_eq!(b["detail"][0]["loc"], json!(["query", "page"]), "{b}");
}
