//! `/api/v1/kb`: CRUD, tenant isolation and roles, validation, the embedding job (chunks, versions,
//! failures), search, re-embedding, the local embedder on paraphrased Spanish questions, and the
//! Gemini and OpenAI wire formats against fake servers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::test::TestResponse;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use shared::jobs::embedding::Embedding;
use shared::knowledge::SourceType;
use worker::queue::JobCtx;

use crate::common::{TestApp, User, body, expect_error};

// ---------------------------------------------------------------------------------------------
// Helpers

async fn post(app: &TestApp, user: &User, path: &str, b: Value) -> TestResponse {
    app.client().post(path).header("authorization", user.bearer()).body_json(&b).send().await
}

async fn put(app: &TestApp, user: &User, path: &str, b: Value) -> TestResponse {
    app.client().put(path).header("authorization", user.bearer()).body_json(&b).send().await
}

async fn get(app: &TestApp, user: &User, path: &str) -> TestResponse {
    app.client().get(path).header("authorization", user.bearer()).send().await
}

async fn delete(app: &TestApp, user: &User, path: &str) -> TestResponse {
    app.client().delete(path).header("authorization", user.bearer()).send().await
}

/// Creates an entry through the API (201) and returns it.
async fn create(app: &TestApp, user: &User, b: Value) -> Value {
    let resp = post(app, user, "/api/v1/kb", b).await;
    let status = resp.0.status();
    let entry = body(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    entry
}

async fn entry(app: &TestApp, user: &User, id: &Value) -> Value {
    let resp = get(app, user, &format!("/api/v1/kb/{id}")).await;
    resp.assert_status_is_ok();
    body(resp).await
}

/// The job the API enqueued for `entry` (its id, broker and current version).
fn job_for(entry: &Value) -> Embedding {
    Embedding {
        broker_id: entry["broker_id"].as_i64().unwrap(),
        entry_id: entry["id"].as_i64().unwrap(),
        version: entry["version"].as_i64().unwrap(),
    }
}

fn job_ctx(attempt: u32) -> JobCtx {
    JobCtx { queue: "embedding", task_id: format!("test-{attempt}"), attempt, worker: "test".into(), max_attempts: 5 }
}

/// Runs the embedding job handler for `job`, as the worker would on attempt `attempt`.
async fn run_job(app: &TestApp, job: Embedding, attempt: u32) -> shared::Result<()> {
    worker::jobs::embedding::run(app.infra().clone(), job, job_ctx(attempt)).await
}

/// Creates an entry and runs its embedding job; returns the entry as it is then.
async fn create_ready(app: &TestApp, user: &User, b: Value) -> Value {
    let created = create(app, user, b).await;
    run_job(app, job_for(&created), 1).await.unwrap();
    let e = entry(app, user, &created["id"]).await;
    assert_eq!(e["embedding_status"], "ready", "{e}");
    e
}

async fn search(app: &TestApp, user: &User, b: Value) -> Value {
    let resp = post(app, user, "/api/v1/kb/search", b).await;
    let status = resp.0.status();
    let out = body(resp).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out
}

fn result_ids(out: &Value) -> Vec<i64> {
    out["results"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    app.db()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_string()))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

async fn queued_jobs(app: &TestApp) -> u64 {
    shared::jobs::stats(app.infra(), "embedding").await.unwrap().pending
}

/// Runs a whole worker in this process until `until` holds (or 20 s pass), then stops it.
async fn with_worker<F, Fut>(app: &TestApp, mut until: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker::run_with(app.infra().clone(), "kb-test-worker".into(), vec![], async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !until().await {
        assert!(tokio::time::Instant::now() < deadline, "the worker did not get there in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

async fn status_of(app: &TestApp, user: &User, id: &Value) -> String {
    entry(app, user, id).await["embedding_status"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// CRUD, tenancy, roles, validation

#[tokio::test]
async fn entries_are_created_listed_read_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;

    let e = create(
        &app,
        &admin,
        json!({"title": "Horario de atención", "content": "Lunes a viernes de 9:00 a 18:00.", "source_type": "faq",
               "metadata": {"proyecto": "Torre Ñuñoa"}}),
    )
    .await;
    assert_eq!(e["title"], "Horario de atención");
    assert_eq!(e["source_type"], "faq");
    assert_eq!(e["metadata"], json!({"proyecto": "Torre Ñuñoa"}));
    assert_eq!(e["broker_id"], admin.broker_id.unwrap());
    assert_eq!(e["embedding_status"], "pending");
    assert_eq!(e["has_embedding"], false);
    assert_eq!(e["version"], 1);
    assert_eq!(queued_jobs(&app).await, 1, "an embedding job is queued");
    let other = create(&app, &admin, json!({"title": "Mascotas", "content": "Se permiten perros y gatos."})).await;
    assert_eq!(other["source_type"], "custom", "the default type");

    let page = body(get(&app, &admin, "/api/v1/kb").await).await;
    assert_eq!(page["total"], 2);
    assert_eq!((page["skip"].clone(), page["limit"].clone()), (json!(0), json!(50)));
    assert_eq!(page["data"][0]["id"], other["id"], "newest first");
    let faqs = body(get(&app, &admin, "/api/v1/kb?source_type=faq").await).await;
    assert_eq!((faqs["total"].clone(), faqs["data"][0]["id"].clone()), (json!(1), e["id"].clone()));
    let found = body(get(&app, &admin, "/api/v1/kb?search=ATENCION").await).await;
    assert_eq!(found["total"], 1, "title search ignores case and accents");
    let second = body(get(&app, &admin, "/api/v1/kb?skip=1&limit=1").await).await;
    assert_eq!((second["total"].clone(), second["data"][0]["id"].clone()), (json!(2), e["id"].clone()));
    let by_offset = body(get(&app, &admin, "/api/v1/kb?offset=1&limit=1").await).await;
    assert_eq!(by_offset["data"][0]["id"], e["id"], "offset is an alias of skip");

    let got = entry(&app, &admin, &e["id"]).await;
    assert_eq!(got["content"], "Lunes a viernes de 9:00 a 18:00.");

    let resp =
        put(&app, &admin, &format!("/api/v1/kb/{}", e["id"]), json!({"content": "Lunes a sábado de 9 a 19."})).await;
    resp.assert_status_is_ok();
    let updated = body(resp).await;
    assert_eq!(updated["content"], "Lunes a sábado de 9 a 19.");
    assert_eq!(updated["title"], "Horario de atención", "omitted fields stay");
    assert_eq!(updated["metadata"], json!({"proyecto": "Torre Ñuñoa"}));
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["embedding_status"], "pending");
    let cleared = body(put(&app, &admin, &format!("/api/v1/kb/{}", e["id"]), json!({"metadata": null})).await).await;
    assert_eq!(cleared["metadata"], json!({}));

    delete(&app, &admin, &format!("/api/v1/kb/{}", e["id"])).await.assert_status(StatusCode::NO_CONTENT);
    expect_error(get(&app, &admin, &format!("/api/v1/kb/{}", e["id"])).await, 404, "not_found").await;
    expect_error(delete(&app, &admin, &format!("/api/v1/kb/{}", e["id"])).await, 404, "not_found").await;
}

#[tokio::test]
async fn another_brokers_entry_is_not_found_on_every_endpoint() {
    let app = TestApp::spawn().await;
    let a = app.new_broker().await;
    let b = app.new_broker().await;
    let theirs = create_ready(&app, &b, json!({"title": "Secreto", "content": "Descuento especial de B."})).await;
    let path = format!("/api/v1/kb/{}", theirs["id"]);

    expect_error(get(&app, &a, &path).await, 404, "not_found").await;
    expect_error(put(&app, &a, &path, json!({"title": "Mío"})).await, 404, "not_found").await;
    expect_error(delete(&app, &a, &path).await, 404, "not_found").await;
    let b_id = b.broker_id.unwrap();
    for p in [
        format!("/api/v1/kb?broker_id={b_id}"),
        format!("/api/v1/kb/search?q=descuento&broker_id={b_id}"),
        format!("{path}?broker_id={b_id}"),
    ] {
        expect_error(get(&app, &a, &p).await, 404, "not_found").await;
    }
    expect_error(
        post(&app, &a, "/api/v1/kb", json!({"title": "x", "content": "y", "broker_id": b_id})).await,
        404,
        "not_found",
    )
    .await;
    expect_error(post(&app, &a, &format!("/api/v1/kb/reembed?broker_id={b_id}"), json!({})).await, 404, "not_found")
        .await;
    assert_eq!(body(get(&app, &a, "/api/v1/kb").await).await["total"], 0);
    let out = search(&app, &a, json!({"query": "Descuento especial de B", "min_similarity": 0.0})).await;
    assert!(result_ids(&out).is_empty(), "{out}");
    // Nothing of B's was touched.
    assert_eq!(entry(&app, &b, &theirs["id"]).await["title"], "Secreto");
}

#[tokio::test]
async fn agents_read_and_write_their_brokers_entries_but_cannot_reembed() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let by_admin =
        create(&app, &admin, json!({"title": "Gastos comunes", "content": "Unos 2.500 pesos por m²."})).await;

    assert_eq!(entry(&app, &agent, &by_admin["id"]).await["title"], "Gastos comunes");
    let by_agent = create(&app, &agent, json!({"title": "Bodegas", "content": "Se venden por separado."})).await;
    assert_eq!(by_agent["created_by"], agent.id);
    put(&app, &agent, &format!("/api/v1/kb/{}", by_admin["id"]), json!({"source_type": "policy"}))
        .await
        .assert_status_is_ok();
    assert_eq!(body(get(&app, &agent, "/api/v1/kb").await).await["total"], 2);
    search(&app, &agent, json!({"query": "bodega"})).await;
    delete(&app, &agent, &format!("/api/v1/kb/{}", by_agent["id"])).await.assert_status(StatusCode::NO_CONTENT);

    expect_error(post(&app, &agent, "/api/v1/kb/reembed", json!({})).await, 403, "forbidden").await;
    let resp = app.client().post("/api/v1/kb/reembed").header("authorization", admin.bearer()).send().await;
    resp.assert_status(StatusCode::ACCEPTED);
    assert_eq!(body(resp).await, json!({"queued": 1}));
    expect_error(app.client().get("/api/v1/kb").send().await, 401, "not_authenticated").await;
}

#[tokio::test]
async fn superadmin_names_the_broker_for_writes_and_search() {
    let app = TestApp::spawn().await;
    let root = app.superadmin().await;
    let a = app.new_broker().await;
    let b = app.new_broker().await;
    let (a_id, b_id) = (a.broker_id.unwrap(), b.broker_id.unwrap());

    let b422 = expect_error(
        post(&app, &root, "/api/v1/kb", json!({"title": "x", "content": "y"})).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(b422["detail"][0]["loc"], json!(["body", "broker_id"]));
    expect_error(
        post(&app, &root, "/api/v1/kb", json!({"title": "x", "content": "y", "broker_id": 999_999})).await,
        404,
        "not_found",
    )
    .await;
    let in_a = create(
        &app,
        &root,
        json!({"title": "Piscina", "content": "Piscina temperada en la azotea.", "broker_id": a_id}),
    )
    .await;
    assert_eq!(in_a["broker_id"], a_id);
    run_job(&app, job_for(&in_a), 1).await.unwrap();
    create(&app, &b, json!({"title": "Quincho", "content": "Quincho con terraza."})).await;

    assert_eq!(body(get(&app, &root, "/api/v1/kb").await).await["total"], 2, "every broker");
    assert_eq!(body(get(&app, &root, &format!("/api/v1/kb?broker_id={b_id}")).await).await["total"], 1);
    assert_eq!(entry(&app, &root, &in_a["id"]).await["title"], "Piscina");
    expect_error(get(&app, &root, &format!("/api/v1/kb/{}?broker_id={b_id}", in_a["id"])).await, 404, "not_found")
        .await;
    put(&app, &root, &format!("/api/v1/kb/{}", in_a["id"]), json!({"metadata": {"revisado": true}}))
        .await
        .assert_status_is_ok();
    assert_eq!(entry(&app, &a, &in_a["id"]).await["metadata"], json!({"revisado": true}));

    let s = expect_error(
        post(&app, &root, "/api/v1/kb/search", json!({"query": "piscina"})).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(s["detail"][0]["loc"], json!(["body", "broker_id"]));
    let g = expect_error(get(&app, &root, "/api/v1/kb/search?q=piscina").await, 422, "validation_error").await;
    assert_eq!(g["detail"][0]["loc"], json!(["query", "broker_id"]));
    let out = search(&app, &root, json!({"query": "piscina temperada", "broker_id": a_id})).await;
    assert_eq!(result_ids(&out), vec![in_a["id"].as_i64().unwrap()]);
    assert_eq!(out["broker_id"], a_id);

    expect_error(post(&app, &root, "/api/v1/kb/reembed", json!({})).await, 422, "validation_error").await;
    let resp = app
        .client()
        .post(format!("/api/v1/kb/reembed?broker_id={b_id}"))
        .header("authorization", root.bearer())
        .send()
        .await;
    resp.assert_status(StatusCode::ACCEPTED);
    assert_eq!(body(resp).await["queued"], 1);
}

#[tokio::test]
async fn bad_input_is_422_with_the_offending_field() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let cases = [
        (json!({"title": "", "content": "x"}), "validation_error", vec!["body", "title"]),
        (json!({"title": "   ", "content": "x"}), "validation_error", vec!["body", "title"]),
        (json!({"title": "t".repeat(256), "content": "x"}), "validation_error", vec!["body", "title"]),
        (json!({"content": "x"}), "validation_error", vec!["body", "title"]),
        (json!({"title": "t", "content": ""}), "validation_error", vec!["body", "content"]),
        (json!({"title": "t", "content": "c".repeat(50_001)}), "validation_error", vec!["body", "content"]),
        (
            json!({"title": "t", "content": "x", "source_type": "blog"}),
            "invalid_source_type",
            vec!["body", "source_type"],
        ),
        (json!({"title": "t", "content": "x", "metadata": [1, 2]}), "validation_error", vec!["body", "metadata"]),
    ];
    for (payload, code, loc) in cases {
        let b = expect_error(post(&app, &admin, "/api/v1/kb", payload.clone()).await, 422, code).await;
        assert_eq!(b["detail"][0]["loc"], json!(loc), "{payload}");
    }
    assert_eq!(body(get(&app, &admin, "/api/v1/kb").await).await["total"], 0, "nothing was stored");
    let e = create(&app, &admin, json!({"title": "t", "content": "c".repeat(50_000)})).await;
    let path = format!("/api/v1/kb/{}", e["id"]);
    for (payload, loc) in [
        (json!({"title": ""}), "title"),
        (json!({"content": "   "}), "content"),
        (json!({"source_type": "x"}), "source_type"),
    ] {
        let b = expect_error(
            put(&app, &admin, &path, payload).await,
            422,
            if loc == "source_type" { "invalid_source_type" } else { "validation_error" },
        )
        .await;
        assert_eq!(b["detail"][0]["loc"], json!(["body", loc]));
    }
    expect_error(get(&app, &admin, "/api/v1/kb/abc").await, 422, "validation_error").await;
    expect_error(get(&app, &admin, "/api/v1/kb?limit=201").await, 422, "validation_error").await;
    let bad_type =
        expect_error(get(&app, &admin, "/api/v1/kb?source_type=blog").await, 422, "invalid_source_type").await;
    assert_eq!(bad_type["detail"][0]["loc"], json!(["query", "source_type"]));

    let searches = [
        (json!({"query": "x", "top_k": 0}), vec!["body", "top_k"]),
        (json!({"query": "x", "top_k": 11}), vec!["body", "top_k"]),
        (json!({"query": ""}), vec!["body", "query"]),
        (json!({"query": "   "}), vec!["body", "query"]),
        (json!({}), vec!["body", "query"]),
        (json!({"query": "q".repeat(2001)}), vec!["body", "query"]),
        (json!({"query": "x", "min_similarity": 1.5}), vec!["body", "min_similarity"]),
    ];
    for (payload, loc) in searches {
        let b =
            expect_error(post(&app, &admin, "/api/v1/kb/search", payload.clone()).await, 422, "validation_error").await;
        assert_eq!(b["detail"][0]["loc"], json!(loc), "{payload}");
    }
    for (query, loc) in [("q=x&top_k=0", "top_k"), ("q=x&top_k=11", "top_k"), ("q=", "q"), ("top_k=2", "q")] {
        let b =
            expect_error(get(&app, &admin, &format!("/api/v1/kb/search?{query}")).await, 422, "validation_error").await;
        assert_eq!(b["detail"][0]["loc"], json!(["query", loc]), "{query}");
    }
    expect_error(
        post(&app, &admin, "/api/v1/kb/search", json!({"query": "x", "source_type": "blog"})).await,
        422,
        "invalid_source_type",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The embedding job

#[tokio::test]
async fn the_embedding_job_makes_an_entry_ready_with_768_dimension_chunks() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let sentences: Vec<String> = (1..=30)
        .map(|i| {
            format!("El departamento tipo {i} tiene dos dormitorios, terraza y una vista despejada a la cordillera.")
        })
        .collect();
    let long = sentences.join(" ");
    let created =
        create(&app, &admin, json!({"title": "Tipologías", "content": long, "source_type": "property"})).await;
    let short = create(&app, &admin, json!({"title": "Horario", "content": "Lunes a viernes."})).await;

    with_worker(&app, || async {
        status_of(&app, &admin, &created["id"]).await == "ready"
            && status_of(&app, &admin, &short["id"]).await == "ready"
    })
    .await;

    let e = entry(&app, &admin, &created["id"]).await;
    assert_eq!(e["has_embedding"], true);
    assert_eq!((e["embedding_provider"].clone(), e["embedding_model"].clone()), (json!("local"), json!("hash-768-v1")));
    assert!(e["embedded_at"].is_string());
    let chunks = e["chunk_count"].as_i64().unwrap();
    assert!(chunks >= 3, "{chunks} chunks for {} characters", long.chars().count());
    let id = e["id"].as_i64().unwrap();
    assert_eq!(scalar(&app, &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id}")).await, chunks);
    assert_eq!(
        scalar(&app, &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id} AND vector_dims(embedding) = 768 AND provider = 'local'")).await,
        chunks
    );
    let longest =
        scalar(&app, &format!("SELECT max(length(content))::bigint FROM knowledge_chunks WHERE entry_id = {id}")).await;
    assert!(longest <= 800, "a chunk of {longest} characters");
    // Every sentence is in some chunk; the vectors are unit length.
    for s in &sentences {
        let n = scalar(
            &app,
            &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id} AND strpos(content, '{s}') > 0"),
        )
        .await;
        assert!(n >= 1, "lost: {s}");
    }
    let norm_off = scalar(
        &app,
        &format!(
            "SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id} AND abs((embedding <#> embedding) + 1) > 1e-4"
        ),
    )
    .await;
    assert_eq!(norm_off, 0);
    assert_eq!(entry(&app, &admin, &short["id"]).await["chunk_count"], 1);

    // A long entry is found through the chunk that says it, shown as the snippet.
    let out = search(&app, &admin, json!({"query": "tipo 17 vista a la cordillera", "min_similarity": 0.0})).await;
    assert_eq!(out["results"][0]["id"], created["id"]);
    assert!(out["results"][0]["snippet"].as_str().unwrap().contains("tipo 17"), "{out}");
    assert_eq!(out["results"][0]["content"], long);
}

#[tokio::test]
async fn an_update_during_pending_embeds_only_the_latest_text() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let v1 = create(&app, &admin, json!({"title": "Mascotas", "content": "No se permiten mascotas."})).await;
    let v2 = body(
        put(
            &app,
            &admin,
            &format!("/api/v1/kb/{}", v1["id"]),
            json!({"content": "Se permiten perros y gatos pequeños."}),
        )
        .await,
    )
    .await;
    assert_eq!(v2["version"], 2);
    assert_eq!(queued_jobs(&app).await, 2);

    // The first job finds the entry moved on and does nothing.
    run_job(&app, job_for(&v1), 1).await.unwrap();
    let e = entry(&app, &admin, &v1["id"]).await;
    assert_eq!((e["embedding_status"].clone(), e["chunk_count"].clone()), (json!("pending"), json!(0)));
    run_job(&app, job_for(&v2), 1).await.unwrap();
    let e = entry(&app, &admin, &v1["id"]).await;
    assert_eq!(e["embedding_status"], "ready");
    let id = e["id"].as_i64().unwrap();
    assert_eq!(
        scalar(
            &app,
            &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id} AND content LIKE '%perros%'")
        )
        .await,
        1
    );
    assert_eq!(
        scalar(&app, &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id} AND content LIKE 'No se%'"))
            .await,
        0
    );
    // A late redelivery of the old job changes nothing either.
    run_job(&app, job_for(&v1), 2).await.unwrap();
    assert_eq!(entry(&app, &admin, &v1["id"]).await["version"], 2);

    // An edit drops the old vectors at once: the old text is never served while the new one waits.
    put(&app, &admin, &format!("/api/v1/kb/{id}"), json!({"title": "Mascotas (actualizado)"}))
        .await
        .assert_status_is_ok();
    assert_eq!(scalar(&app, &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id}")).await, 0);
    // A job for a deleted entry is a no-op, not a failure.
    let gone = create(&app, &admin, json!({"title": "Temporal", "content": "Borrar."})).await;
    delete(&app, &admin, &format!("/api/v1/kb/{}", gone["id"])).await.assert_status(StatusCode::NO_CONTENT);
    run_job(&app, job_for(&gone), 1).await.unwrap();
}

#[tokio::test]
async fn a_job_replaces_the_stored_chunks_in_place_and_drops_the_surplus() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let long: String = (1..=20)
        .map(|i| format!("La bodega número {i} mide seis metros cuadrados y se vende por separado del departamento."))
        .collect::<Vec<_>>()
        .join(" ");
    let e = create_ready(&app, &admin, json!({"title": "Bodegas", "content": long})).await;
    let id = e["id"].as_i64().unwrap();
    let chunks = e["chunk_count"].as_i64().unwrap();
    assert!(chunks >= 2, "{e}");
    let count = |cond: &'static str| {
        let app = &app;
        async move { scalar(app, &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id}{cond}")).await }
    };

    // Chunks left over from a longer text (as a re-embed finds them) and a stale vector.
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO knowledge_chunks (entry_id, broker_id, chunk_index, content, embedding, provider, model, source_type) \
             SELECT entry_id, broker_id, chunk_index + 50, 'texto viejo', embedding, provider, model, source_type \
             FROM knowledge_chunks WHERE entry_id = {id}; \
             UPDATE knowledge_chunks SET content = 'texto viejo', provider = 'gemini' WHERE entry_id = {id} AND chunk_index = 0"
        ))
        .await
        .unwrap();
    assert_eq!(count("").await, 2 * chunks);

    // A redelivery of the job for the current version puts back exactly the entry's chunks.
    run_job(&app, job_for(&e), 2).await.unwrap();
    assert_eq!(count("").await, chunks);
    assert_eq!(count(" AND content = 'texto viejo'").await, 0);
    assert_eq!(count(" AND provider = 'local'").await, chunks);
    assert_eq!(
        scalar(&app, &format!("SELECT max(chunk_index)::bigint FROM knowledge_chunks WHERE entry_id = {id}")).await,
        chunks - 1
    );
    let again = entry(&app, &admin, &e["id"]).await;
    assert_eq!((again["embedding_status"].clone(), again["chunk_count"].clone()), (json!("ready"), json!(chunks)));

    // The search still finds it through its chunks.
    let out = search(&app, &admin, json!({"query": "bodega número 7", "min_similarity": 0.0})).await;
    assert_eq!(out["results"][0]["id"], e["id"]);
}

#[tokio::test]
async fn changing_only_metadata_or_source_type_keeps_the_vectors() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let e =
        create_ready(&app, &admin, json!({"title": "Bodegas", "content": "Las bodegas se venden por separado."})).await;
    let queued = queued_jobs(&app).await;
    let path = format!("/api/v1/kb/{}", e["id"]);
    let same_text = json!({"metadata": {"torre": "B"}, "source_type": "property", "title": "Bodegas", "content": "Las bodegas se venden por separado."});
    let updated = body(put(&app, &admin, &path, same_text).await).await;
    assert_eq!(
        (updated["embedding_status"].clone(), updated["version"].clone()),
        (json!("ready"), e["version"].clone())
    );
    assert_eq!(updated["source_type"], "property");
    assert_eq!(queued_jobs(&app).await, queued, "no re-embed was queued");
    let out = search(&app, &admin, json!({"query": "bodegas", "source_type": "property"})).await;
    assert_eq!(result_ids(&out), vec![e["id"].as_i64().unwrap()]);
    let none = search(&app, &admin, json!({"query": "bodegas", "source_type": "faq"})).await;
    assert!(result_ids(&none).is_empty());
}

#[tokio::test]
async fn the_last_attempt_of_a_transient_failure_marks_the_entry_failed() {
    let fake = FakeProvider::start(Kind::OpenAi, vec![503; 10]).await;
    let app = TestApp::spawn_with(fake.settings()).await;
    let admin = app.new_broker().await;
    let e = create(&app, &admin, json!({"title": "Reserva", "content": "La reserva cuesta 20 UF."})).await;

    let err = run_job(&app, job_for(&e), 1).await.unwrap_err();
    assert!(!shared::jobs::is_permanent(&err), "a 503 is retried");
    assert_eq!(status_of(&app, &admin, &e["id"]).await, "pending", "still retrying");
    run_job(&app, job_for(&e), 5).await.unwrap_err();
    let failed = entry(&app, &admin, &e["id"]).await;
    assert_eq!(failed["embedding_status"], "failed");
    assert!(failed["embedding_error"].as_str().unwrap().contains("HTTP 503"), "{failed}");
    assert!(!failed["embedding_error"].as_str().unwrap().contains("sk-test"), "no secret in the error");
}

#[tokio::test]
async fn stale_pending_entries_are_requeued() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let e = create(&app, &admin, json!({"title": "Perdido", "content": "Su job se perdió."})).await;
    // A recent pending entry is not the sweeper's business.
    create(&app, &admin, json!({"title": "Reciente", "content": "Su job está en cola."})).await;
    let id = e["id"].as_i64().unwrap();
    app.db()
        .execute_unprepared(&format!(
            "UPDATE knowledge_base SET embedding_requested_at = now() - interval '1 hour' WHERE id = {id}"
        ))
        .await
        .unwrap();
    let before = queued_jobs(&app).await;
    assert_eq!(shared::knowledge::service::requeue_stale(app.infra(), Duration::from_secs(600)).await.unwrap(), 1);
    assert_eq!(queued_jobs(&app).await, before + 1);
    assert_eq!(
        shared::knowledge::service::requeue_stale(app.infra(), Duration::from_secs(600)).await.unwrap(),
        0,
        "requeued once"
    );
}

// ---------------------------------------------------------------------------------------------
// Search and re-embedding

#[tokio::test]
async fn search_never_returns_another_brokers_entries() {
    let app = TestApp::spawn().await;
    let a = app.new_broker().await;
    let b = app.new_broker().await;
    let text = json!({"title": "Estacionamiento", "content": "El estacionamiento se compra por separado."});
    let mine = create_ready(&app, &a, text.clone()).await;
    let theirs = create_ready(&app, &b, text).await;

    for (user, own, other) in [(&a, &mine, &theirs), (&b, &theirs, &mine)] {
        let post_out =
            search(&app, user, json!({"query": "¿incluye estacionamiento?", "top_k": 10, "min_similarity": 0.0})).await;
        assert_eq!(result_ids(&post_out), vec![own["id"].as_i64().unwrap()]);
        assert!(!result_ids(&post_out).contains(&other["id"].as_i64().unwrap()));
        let resp =
            get(&app, user, "/api/v1/kb/search?q=%C2%BFincluye%20estacionamiento%3F&top_k=10&min_similarity=0").await;
        let get_out = body(resp).await;
        assert_eq!(get_out["results"], post_out["results"], "GET and POST answer the same");
    }
    let hit = &search(&app, &a, json!({"query": "estacionamiento"})).await["results"][0];
    assert_eq!(hit["title"], "Estacionamiento");
    assert_eq!(hit["snippet"], "El estacionamiento se compra por separado.");
    assert_eq!(hit["source_type"], "custom");
    assert_eq!(hit["metadata"], json!({}));
    let sim = hit["similarity"].as_f64().unwrap();
    assert!(sim > 0.3 && sim <= 1.0, "{sim}");
    assert_eq!((sim * 10_000.0).round() / 10_000.0, sim, "4 decimals");
}

#[tokio::test]
async fn reembed_marks_every_entry_pending_and_queues_one_job_each() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;
    let mut ids = Vec::new();
    for t in ["Piscina", "Quincho", "Gimnasio"] {
        ids.push(
            create_ready(&app, &admin, json!({"title": t, "content": format!("El edificio tiene {t}.")})).await["id"]
                .clone(),
        );
    }
    let untouched = create_ready(&app, &other, json!({"title": "Otro", "content": "De otro corredor."})).await;
    let before = queued_jobs(&app).await;

    let resp = app.client().post("/api/v1/kb/reembed").header("authorization", admin.bearer()).send().await;
    resp.assert_status(StatusCode::ACCEPTED);
    assert_eq!(body(resp).await, json!({"queued": 3}));
    assert_eq!(queued_jobs(&app).await, before + 3);
    for id in &ids {
        let e = entry(&app, &admin, id).await;
        assert_eq!((e["embedding_status"].clone(), e["version"].clone()), (json!("pending"), json!(2)));
    }
    assert_eq!(
        entry(&app, &other, &untouched["id"]).await["embedding_status"],
        "ready",
        "another broker is left alone"
    );

    with_worker(&app, || async {
        let page = body(get(&app, &admin, "/api/v1/kb").await).await;
        page["data"].as_array().unwrap().iter().all(|e| e["embedding_status"] == "ready")
    })
    .await;
    let out = search(&app, &admin, json!({"query": "¿tiene quincho?"})).await;
    assert_eq!(out["results"][0]["id"], ids[1]);
}

#[tokio::test]
async fn vectors_of_another_provider_or_model_are_not_compared() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let e =
        create_ready(&app, &admin, json!({"title": "Metro", "content": "A 300 metros de la estación Chile España."}))
            .await;
    let query = json!({"query": "¿queda cerca del metro?", "min_similarity": 0.0});
    assert_eq!(result_ids(&search(&app, &admin, query.clone()).await), vec![e["id"].as_i64().unwrap()]);

    // The same database seen by a process configured for OpenAI: the local vectors do not count.
    let fake = FakeProvider::start(Kind::OpenAi, vec![]).await;
    let mut settings = (*app.infra().settings).clone();
    settings.embedding_provider = "openai".into();
    settings.providers.openai_api_key = Some("sk-test-key".to_string().into());
    settings.providers.openai_base_url = fake.base_url.clone();
    let openai = shared::Infra::new(app.db().clone(), app.infra().redis.clone(), settings);
    let ctx = shared::Ctx::user(admin.id, admin.broker_id, shared::Role::Admin);
    let r = shared::knowledge::model::SearchRequest {
        query: "¿queda cerca del metro?".into(),
        top_k: None,
        source_type: None,
        min_similarity: Some(0.0),
        broker_id: None,
        params_in: shared::knowledge::model::ParamsIn::Body,
    };
    assert!(shared::knowledge::service::search(&openai, &ctx, &r).await.unwrap().hits.is_empty());
    // Re-embedded with OpenAI, it is found again by OpenAI searches.
    assert_eq!(shared::knowledge::service::reembed(&openai, &ctx, None).await.unwrap(), 1);
    let reembedded = entry(&app, &admin, &e["id"]).await;
    worker::jobs::embedding::run(openai.clone(), job_for(&reembedded), job_ctx(1)).await.unwrap();
    let hits = shared::knowledge::service::search(&openai, &ctx, &r).await.unwrap().hits;
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![e["id"].as_i64().unwrap()]);
    assert_eq!(entry(&app, &admin, &e["id"]).await["embedding_provider"], "openai");

    // A stored model name that is not the current one is not compared either.
    app.db().execute_unprepared("UPDATE knowledge_chunks SET model = 'text-embedding-ada-002'").await.unwrap();
    assert!(shared::knowledge::service::search(&openai, &ctx, &r).await.unwrap().hits.is_empty());
}

#[tokio::test]
async fn deleting_a_lead_deletes_the_entries_written_from_it() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": crate::common::phone(), "name": "Ana"})).await;
    let from_lead = create_ready(
        &app,
        &admin,
        json!({"title": "Resolución: crédito", "content": "La clienta consultó por crédito con DICOM.", "lead_id": lead["id"]}),
    )
    .await;
    assert_eq!(from_lead["lead_id"], lead["id"]);
    let unrelated = create(&app, &admin, json!({"title": "General", "content": "Sin lead."})).await;

    // Another broker's lead cannot be referenced.
    let other = app.new_broker().await;
    let foreign = app.lead(&other, json!({"phone": crate::common::phone()})).await;
    expect_error(
        post(&app, &admin, "/api/v1/kb", json!({"title": "x", "content": "y", "lead_id": foreign["id"]})).await,
        404,
        "not_found",
    )
    .await;

    delete(&app, &admin, &format!("/api/v1/leads/{}", lead["id"])).await.assert_status(StatusCode::NO_CONTENT);
    expect_error(get(&app, &admin, &format!("/api/v1/kb/{}", from_lead["id"])).await, 404, "not_found").await;
    let id = from_lead["id"].as_i64().unwrap();
    assert_eq!(scalar(&app, &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id}")).await, 0);
    entry(&app, &admin, &unrelated["id"]).await;
}

// ---------------------------------------------------------------------------------------------
// The local embedder on a realistic brokerage knowledge base

const CORPUS: &[(&str, &str, &str)] = &[
    (
        "subsidy",
        "Subsidio habitacional DS1 y DS19",
        "Aceptamos el subsidio DS1 del Minvu en sus tramos 1, 2 y 3, y el subsidio DS19 de Integración Social y Territorial en los proyectos acogidos. El subsidio se descuenta del precio al momento de la escritura. Para postular necesitas tener una cuenta de ahorro para la vivienda con el ahorro mínimo exigido, estar en el Registro Social de Hogares y no ser dueño de otra vivienda. Te acompañamos en la postulación ante el Serviu.",
    ),
    (
        "policy",
        "DICOM y evaluación crediticia",
        "Si estás en DICOM o tienes deudas morosas en el boletín comercial, el banco normalmente no aprobará tu crédito hipotecario hasta que regularices tu situación. Te recomendamos pagar o repactar las deudas y pedir el certificado de deuda aclarada. Puedes revisar tu informe comercial gratis en Equifax. La aprobación del crédito siempre la decide el banco, no la inmobiliaria.",
    ),
    (
        "policy",
        "Pie y formas de pago",
        "El pie se puede pagar en cuotas mensuales sin interés durante la etapa de construcción, con transferencia, cheques o tarjeta de crédito. El monto del pie depende del proyecto y de cuánto financie el banco. El saldo del precio se paga con el crédito hipotecario al firmar la escritura.",
    ),
    (
        "property",
        "Estacionamiento y bodega",
        "El precio de lista de los departamentos no incluye estacionamiento ni bodega: se compran por separado y están sujetos a disponibilidad. Los estacionamientos están en tres subterráneos y hay estacionamientos de visitas en el primer nivel. Las bodegas miden entre 2 y 4 m². También hay bicicleteros en cada piso.",
    ),
    (
        "policy",
        "Mascotas",
        "Se permiten mascotas en todos nuestros edificios: perros y gatos de hasta 20 kilos, según el reglamento de copropiedad. La comunidad cuenta con un pet spot para pasear a tu mascota. Los animales deben circular con correa por los espacios comunes.",
    ),
    (
        "faq",
        "Horario de visitas a la sala de ventas",
        "La sala de ventas y el departamento piloto atienden de lunes a viernes de 10:00 a 19:00 horas, y sábados y domingos de 11:00 a 14:00 horas. Puedes agendar una visita guiada con una ejecutiva o llegar sin cita dentro de ese horario.",
    ),
    (
        "faq",
        "Gastos comunes",
        "Los gastos comunes estimados son de unos 2.500 pesos por metro cuadrado al mes; un departamento de 60 m² paga cerca de 150.000 pesos mensuales. Incluyen conserjería las 24 horas, aseo y mantención de los espacios comunes, ascensores y agua caliente central.",
    ),
    (
        "property",
        "Plazos de entrega",
        "La Torre A tiene entrega inmediata. La Torre B se entrega durante el segundo semestre de 2027 y la Torre C en marzo de 2028. Las fechas de entrega dependen de la recepción municipal definitiva; te avisaremos con anticipación cualquier cambio.",
    ),
    (
        "policy",
        "Reserva y promesa de compraventa",
        "Para reservar una unidad se paga una reserva de 20 UF, que luego se descuenta del pie. La reserva dura 15 días, plazo en el que se firma la promesa de compraventa ante notario. Si el banco rechaza tu crédito, te devolvemos la reserva completa.",
    ),
    (
        "faq",
        "Crédito hipotecario",
        "Trabajamos con BancoEstado, Santander, BCI, Scotiabank y Banco de Chile. Los bancos financian hasta el 80% o 90% del valor de la propiedad, con plazos de 20 a 30 años. Te ayudamos a obtener la preaprobación del crédito y a comparar la tasa y el dividendo de cada banco.",
    ),
    (
        "property",
        "Ubicación y conexión con el Metro",
        "El proyecto está en avenida Irarrázaval 3400, Ñuñoa, a 300 metros de la estación Chile España de la Línea 3 del Metro. Alrededor hay supermercados, colegios, la Plaza Ñuñoa y ciclovías.",
    ),
    (
        "property",
        "Amenities y áreas comunes",
        "El edificio cuenta con piscina en la azotea, gimnasio equipado, quincho con terraza, cowork, sala multiuso, lavandería y sala de juegos infantiles. Las áreas comunes se reservan desde la aplicación de la comunidad.",
    ),
];

/// Questions a lead might ask, none a copy of the entry's wording, with the entry that answers them.
const QUESTIONS: &[(&str, &str)] = &[
    ("¿Puedo tener perro en el depto?", "Mascotas"),
    ("¿a qué hora puedo ir a ver el piloto?", "Horario de visitas a la sala de ventas"),
    ("¿incluye estacionamiento?", "Estacionamiento y bodega"),
    ("¿Aceptan el subsidio DS19?", "Subsidio habitacional DS1 y DS19"),
    ("Estoy en Dicom, ¿igual me pueden dar el crédito?", "DICOM y evaluación crediticia"),
    ("¿El pie se puede pagar en cuotas?", "Pie y formas de pago"),
    ("¿El departamento trae bodega?", "Estacionamiento y bodega"),
    ("¿Cuánto se paga de gastos comunes al mes?", "Gastos comunes"),
    ("¿Cuándo me entregan el departamento?", "Plazos de entrega"),
    ("¿Cómo reservo y qué es la promesa?", "Reserva y promesa de compraventa"),
    ("¿Con qué bancos trabajan para el hipotecario?", "Crédito hipotecario"),
    ("¿Queda cerca del metro?", "Ubicación y conexión con el Metro"),
    ("¿El edificio tiene piscina y gimnasio?", "Amenities y áreas comunes"),
    ("¿Se aceptan gatos?", "Mascotas"),
    ("¿Atienden los sábados en la sala de ventas?", "Horario de visitas a la sala de ventas"),
    ("¿Dónde está ubicado el proyecto?", "Ubicación y conexión con el Metro"),
    ("Quiero postular con el subsidio habitacional, ¿qué necesito?", "Subsidio habitacional DS1 y DS19"),
    ("¿De cuánto sería el dividendo?", "Crédito hipotecario"),
    ("¿Me devuelven la reserva si el banco no me aprueba?", "Reserva y promesa de compraventa"),
    ("¿Qué incluyen los gastos comunes?", "Gastos comunes"),
    // Written after the embedder's word lists were fixed, as a check that they generalise.
    ("¿Hay lugar para guardar la bicicleta?", "Estacionamiento y bodega"),
    ("¿El precio incluye el estacionamiento o se paga aparte?", "Estacionamiento y bodega"),
    ("¿Puedo vivir con mi mascota?", "Mascotas"),
    ("¿Tienen quincho para asados?", "Amenities y áreas comunes"),
    ("¿Qué tan lejos queda la estación de metro?", "Ubicación y conexión con el Metro"),
    ("¿Cuál es el horario de atención el domingo?", "Horario de visitas a la sala de ventas"),
    ("¿Cuánto tengo que ahorrar para postular al subsidio?", "Subsidio habitacional DS1 y DS19"),
    ("Tengo deudas morosas, ¿puedo comprar igual?", "DICOM y evaluación crediticia"),
    ("¿En cuántas cuotas puedo pagar el pie?", "Pie y formas de pago"),
    ("¿Cuánto dura la reserva?", "Reserva y promesa de compraventa"),
    ("¿Qué bancos financian la compra?", "Crédito hipotecario"),
    ("¿Cuándo está lista la torre B?", "Plazos de entrega"),
    ("¿Cuánto cuesta la mantención mensual del edificio?", "Gastos comunes"),
    ("¿Hay gimnasio en el edificio?", "Amenities y áreas comunes"),
    ("¿Se puede ir a ver el departamento piloto el fin de semana?", "Horario de visitas a la sala de ventas"),
];

#[tokio::test]
async fn paraphrased_spanish_questions_find_the_right_entry_with_the_local_embedder() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mut ids = Vec::new();
    for (source_type, title, content) in CORPUS {
        ids.push(
            create(&app, &admin, json!({"title": title, "content": content, "source_type": source_type})).await["id"]
                .clone(),
        );
    }
    with_worker(&app, || async {
        let page = body(get(&app, &admin, "/api/v1/kb?limit=50").await).await;
        page["data"].as_array().unwrap().iter().all(|e| e["embedding_status"] == "ready")
    })
    .await;

    // Every question ranks the right entry first, above the default threshold (0.3).
    let mut misses = Vec::new();
    for (question, expected) in QUESTIONS {
        let out = search(&app, &admin, json!({"query": question})).await;
        let top = &out["results"][0];
        if top["title"] != *expected {
            misses.push(format!("{question:?} → {} ({}), expected {expected:?}", top["title"], top["similarity"]));
        }
        for r in out["results"].as_array().unwrap() {
            assert!(r["similarity"].as_f64().unwrap() >= 0.3, "{r}");
        }
    }
    assert!(misses.is_empty(), "{} of {} questions missed:\n{}", misses.len(), QUESTIONS.len(), misses.join("\n"));

    // The conversation engine's view: the top hits above the threshold.
    let ctx = shared::Ctx::user(admin.id, admin.broker_id, shared::Role::Agent);
    let hits =
        shared::knowledge::answer_context(app.infra(), &ctx, "¿puedo llevar a mi gato al departamento?").await.unwrap();
    assert!(!hits.is_empty() && hits.len() <= 3, "{hits:?}");
    assert_eq!(hits[0].title, "Mascotas");
    assert_eq!(hits[0].source_type, shared::knowledge::SourceType::Policy);
    assert!(hits[0].snippet.contains("perros y gatos"));
    assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
    assert!(shared::knowledge::answer_context(app.infra(), &ctx, "   ").await.unwrap().is_empty());
    // Something the knowledge base does not cover finds nothing.
    let off_topic =
        shared::knowledge::answer_context(app.infra(), &ctx, "¿quién ganó el partido de fútbol ayer?").await.unwrap();
    assert!(off_topic.is_empty(), "{off_topic:?}");
}

// ---------------------------------------------------------------------------------------------
// Remote providers against fake servers speaking their wire format

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gemini,
    OpenAi,
}

/// One request the fake received.
#[derive(Clone, Debug)]
struct Recorded {
    path: String,
    headers: poem::http::HeaderMap,
    body: Value,
}

struct FakeState {
    kind: Kind,
    /// Statuses to answer with, in order, before answering normally.
    script: Mutex<VecDeque<u16>>,
    requests: Mutex<Vec<Recorded>>,
}

/// A fake Gemini or OpenAI embeddings server on a loopback port. Successful answers carry the local
/// embedder's vectors of each text (scaled, so the client has to normalise them), in the provider's
/// real response format; OpenAI's come back in reverse order with their `index`.
struct FakeProvider {
    state: Arc<FakeState>,
    base_url: String,
}

#[poem::handler]
async fn fake_embeddings(
    req: &poem::Request,
    body: poem::web::Json<Value>,
    state: poem::web::Data<&Arc<FakeState>>,
) -> poem::Response {
    use poem::IntoResponse;
    let body = body.0;
    state.requests.lock().unwrap().push(Recorded {
        path: req.uri().path().to_string(),
        headers: req.headers().clone(),
        body: body.clone(),
    });
    let scripted = state.script.lock().unwrap().pop_front();
    if let Some(status) = scripted {
        let err = match state.kind {
            Kind::Gemini => {
                json!({"error": {"code": status, "message": "Request contains an invalid argument.", "status": if status == 400 { "INVALID_ARGUMENT" } else { "UNAVAILABLE" }}})
            }
            Kind::OpenAi => {
                json!({"error": {"message": "The model does not exist", "type": "invalid_request_error", "param": null, "code": null}})
            }
        };
        return poem::web::Json(err).with_status(StatusCode::from_u16(status).unwrap()).into_response();
    }
    let vector = |text: &str| -> Vec<f32> {
        shared::integrations::embeddings::local::embed(text).iter().map(|x| x * 2.5).collect()
    };
    match state.kind {
        Kind::Gemini => {
            let embeddings: Vec<Value> = body["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| json!({"values": vector(r["content"]["parts"][0]["text"].as_str().unwrap())}))
                .collect();
            poem::web::Json(json!({"embeddings": embeddings})).into_response()
        }
        Kind::OpenAi => {
            let mut data: Vec<Value> = body["input"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t.as_str().unwrap())}))
                .collect();
            data.reverse();
            poem::web::Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 12, "total_tokens": 12}}))
                .into_response()
        }
    }
}

impl FakeProvider {
    async fn start(kind: Kind, script: Vec<u16>) -> Self {
        use poem::EndpointExt;
        use poem::listener::{Acceptor, Listener, TcpListener};
        let state = Arc::new(FakeState { kind, script: Mutex::new(script.into()), requests: Mutex::new(Vec::new()) });
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let app = poem::Route::new().at("/*path", poem::post(fake_embeddings)).data(state.clone());
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        let base_url = match kind {
            Kind::Gemini => format!("http://{addr}"),
            Kind::OpenAi => format!("http://{addr}/v1"),
        };
        FakeProvider { state, base_url }
    }

    /// Settings pointing the app at this fake, with fast job retries.
    fn settings(&self) -> impl Fn(&str) -> Option<String> + use<> {
        let (kind, base) = (self.state.kind, self.base_url.clone());
        move |k| match (kind, k) {
            (Kind::Gemini, "EMBEDDING_PROVIDER") => Some("gemini".into()),
            (Kind::Gemini, "GEMINI_API_KEY") => Some("gm-test-key".into()),
            (Kind::Gemini, "GEMINI_BASE_URL") => Some(base.clone()),
            (Kind::OpenAi, "EMBEDDING_PROVIDER") => Some("openai".into()),
            (Kind::OpenAi, "OPENAI_API_KEY") => Some("sk-test-key".into()),
            (Kind::OpenAi, "OPENAI_BASE_URL") => Some(base.clone()),
            (_, "JOB_BACKOFF_BASE_MS") => Some("50".into()),
            (_, "JOB_BACKOFF_MAX_MS") => Some("100".into()),
            _ => None,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn gemini_embeddings_use_its_wire_format_and_a_500_is_retried() {
    let fake = FakeProvider::start(Kind::Gemini, vec![500]).await;
    let app = TestApp::spawn_with(fake.settings()).await;
    let admin = app.new_broker().await;
    let e = create(&app, &admin, json!({"title": "Mascotas", "content": "Se permiten perros y gatos."})).await;
    with_worker(&app, || async { status_of(&app, &admin, &e["id"]).await != "pending" }).await;

    let ready = entry(&app, &admin, &e["id"]).await;
    assert_eq!(ready["embedding_status"], "ready", "{ready}");
    assert_eq!(
        (ready["embedding_provider"].clone(), ready["embedding_model"].clone()),
        (json!("gemini"), json!("text-embedding-004"))
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "the 500 was retried once");
    for r in &reqs {
        assert_eq!(r.path, "/v1beta/models/text-embedding-004:batchEmbedContents");
        assert_eq!(r.headers.get("x-goog-api-key").unwrap(), "gm-test-key");
        assert!(r.headers.get("authorization").is_none());
        let req = &r.body["requests"][0];
        assert_eq!(req["model"], "models/text-embedding-004");
        assert_eq!(req["taskType"], "RETRIEVAL_DOCUMENT");
        assert_eq!(req["outputDimensionality"], 768);
        assert_eq!(req["content"]["parts"][0]["text"], "Mascotas\n\nSe permiten perros y gatos.");
    }
    let id = e["id"].as_i64().unwrap();
    assert_eq!(
        scalar(&app, &format!("SELECT count(*) FROM knowledge_chunks WHERE entry_id = {id} AND provider = 'gemini' AND abs((embedding <#> embedding) + 1) < 1e-4")).await,
        1,
        "the provider's vector is stored normalised"
    );

    // Searches embed the query as a retrieval query; the remote default threshold is 0.6.
    let out = search(&app, &admin, json!({"query": "Mascotas. Se permiten perros y gatos"})).await;
    assert_eq!(result_ids(&out), vec![id]);
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.body["requests"][0]["taskType"], "RETRIEVAL_QUERY");
    assert_eq!(last.body["requests"][0]["content"]["parts"][0]["text"], "Mascotas. Se permiten perros y gatos");
    let weak = json!({"query": "¿puedo tener perro?"});
    assert!(result_ids(&search(&app, &admin, weak).await).is_empty(), "below 0.6");
    let out = search(&app, &admin, json!({"query": "¿puedo tener perro?", "min_similarity": 0.1})).await;
    assert_eq!(result_ids(&out), vec![id]);

    // Gemini counts no tokens for embeddings: the ledger estimates them; the model has no list price.
    let costed = scalar(
        &app,
        &format!(
            "SELECT count(*) FROM llm_calls WHERE call_type = 'embedding' AND provider = 'gemini' \
             AND broker_id = {} AND tokens_estimated AND input_tokens > 0 AND estimated_cost_usd IS NULL",
            admin.broker_id.unwrap()
        ),
    )
    .await;
    assert_eq!(costed, 4, "the answered document call and three searches (the failed one costs 0)");
}

#[tokio::test]
async fn a_gemini_400_fails_the_entry_at_once_and_dead_letters_the_job() {
    let fake = FakeProvider::start(Kind::Gemini, vec![400; 5]).await;
    let app = TestApp::spawn_with(fake.settings()).await;
    let admin = app.new_broker().await;
    let e = create(&app, &admin, json!({"title": "Gastos comunes", "content": "Unos 2.500 pesos por m²."})).await;
    with_worker(&app, || async { status_of(&app, &admin, &e["id"]).await != "pending" }).await;

    let failed = entry(&app, &admin, &e["id"]).await;
    assert_eq!(failed["embedding_status"], "failed");
    let error = failed["embedding_error"].as_str().unwrap();
    assert!(
        error.starts_with("upstream_rejected:") && error.contains("HTTP 400") && error.contains("INVALID_ARGUMENT"),
        "{error}"
    );
    assert!(!error.contains("gm-test-key"));
    assert_eq!(fake.requests().len(), 1, "a 400 is not retried");
    assert_eq!(scalar(&app, "SELECT count(*) FROM dead_jobs WHERE queue = 'embedding'").await, 1);
    // Fixing the text makes it pending again, with a new job.
    let fixed = body(
        put(&app, &admin, &format!("/api/v1/kb/{}", e["id"]), json!({"content": "Unos 2.600 pesos por m²."})).await,
    )
    .await;
    assert_eq!((fixed["embedding_status"].clone(), fixed["embedding_error"].clone()), (json!("pending"), Value::Null));
}

#[tokio::test]
async fn openai_embeddings_use_its_wire_format_and_a_500_is_retried() {
    let fake = FakeProvider::start(Kind::OpenAi, vec![500]).await;
    let app = TestApp::spawn_with(fake.settings()).await;
    let admin = app.new_broker().await;
    let content: String = (1..=24)
        .map(|i| format!("La unidad {i} del piso {i} tiene orientación norte y una terraza de {i} metros cuadrados."))
        .collect::<Vec<_>>()
        .join(" ");
    let e = create(&app, &admin, json!({"title": "Unidades", "content": content})).await;
    with_worker(&app, || async { status_of(&app, &admin, &e["id"]).await != "pending" }).await;

    let ready = entry(&app, &admin, &e["id"]).await;
    assert_eq!(ready["embedding_status"], "ready", "{ready}");
    assert_eq!(
        (ready["embedding_provider"].clone(), ready["embedding_model"].clone()),
        (json!("openai"), json!("text-embedding-3-small"))
    );
    let chunks = ready["chunk_count"].as_i64().unwrap();
    assert!(chunks >= 2);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "the 500 was retried once");
    for r in &reqs {
        assert_eq!(r.path, "/v1/embeddings");
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer sk-test-key");
        assert_eq!(r.body["model"], "text-embedding-3-small");
        assert_eq!(r.body["dimensions"], 768);
        let input = r.body["input"].as_array().unwrap();
        assert_eq!(input.len() as i64, chunks, "all chunks in one batch");
        assert!(input.iter().all(|t| t.as_str().unwrap().starts_with("Unidades\n\n")));
    }
    // The answer came back in reverse order: each chunk still got its own vector.
    let out = search(
        &app,
        &admin,
        json!({"query": "Unidades. La unidad 23 del piso 23 tiene orientación norte", "min_similarity": 0.0}),
    )
    .await;
    assert!(out["results"][0]["snippet"].as_str().unwrap().contains("La unidad 23 del piso 23"), "{out}");
    assert_eq!(
        fake.requests().last().unwrap().body["input"],
        json!(["Unidades. La unidad 23 del piso 23 tiene orientación norte"])
    );

    // Every remote call is in the cost ledger, for the broker: the failed one without cost, the
    // answered ones with OpenAI's token count priced at text-embedding-3-small's rate.
    let rows = app
        .db()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT provider, model, input_tokens, estimated_cost_usd::text, error IS NOT NULL, tokens_estimated \
                 FROM llm_calls WHERE call_type = 'embedding' AND broker_id = {} ORDER BY id",
                admin.broker_id.unwrap()
            ),
        ))
        .await
        .unwrap();
    let rows: Vec<(String, String, i32, Option<String>, bool, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
                r.try_get_by_index(2).unwrap(),
                r.try_get_by_index(3).unwrap(),
                r.try_get_by_index(4).unwrap(),
                r.try_get_by_index(5).unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| (r.0.as_str(), r.1.as_str()) == ("openai", "text-embedding-3-small")));
    assert!(rows[0].4 && rows[0].3.as_deref().is_some_and(|c| c.parse::<f64>().unwrap() == 0.0), "{rows:?}");
    for r in &rows[1..] {
        assert_eq!((r.2, r.4, r.5), (12, false, false), "{r:?}");
        assert_eq!(r.3.as_deref().map(|c| c.parse::<f64>().unwrap()), Some(0.000_000_24), "{r:?}");
    }
    let summary = body(get(&app, &admin, "/api/v1/admin/costs/summary?period=today").await).await;
    assert_eq!((summary["total_calls"].as_i64(), summary["error_calls"].as_i64()), (Some(3), Some(1)), "{summary}");
    // (Fractions of a millionth of a dollar: the summary shows them rounded to 0.)
    assert!(summary["cost_by_call_type"]["embedding"].is_number(), "{summary}");
}

#[tokio::test]
async fn an_openai_400_fails_the_entry_with_the_providers_error() {
    let fake = FakeProvider::start(Kind::OpenAi, vec![400]).await;
    let app = TestApp::spawn_with(fake.settings()).await;
    let admin = app.new_broker().await;
    let e = create(&app, &admin, json!({"title": "Reserva", "content": "20 UF."})).await;
    let err = run_job(&app, job_for(&e), 1).await.unwrap_err();
    assert!(shared::jobs::is_permanent(&err));
    let failed = entry(&app, &admin, &e["id"]).await;
    assert_eq!(failed["embedding_status"], "failed");
    assert!(failed["embedding_error"].as_str().unwrap().contains("The model does not exist"), "{failed}");
}

#[tokio::test]
async fn a_remote_provider_without_its_key_fails_with_a_clear_code() {
    let app = TestApp::spawn_with(|k| (k == "EMBEDDING_PROVIDER").then(|| "gemini".to_string())).await;
    let admin = app.new_broker().await;
    let e = create(&app, &admin, json!({"title": "Metro", "content": "Cerca del metro."})).await;
    let err = run_job(&app, job_for(&e), 1).await.unwrap_err();
    assert_eq!(err.code(), "embedding_provider_not_configured");
    let failed = entry(&app, &admin, &e["id"]).await;
    assert_eq!(failed["embedding_status"], "failed");
    assert!(failed["embedding_error"].as_str().unwrap().starts_with("embedding_provider_not_configured: "), "{failed}");
    let b = expect_error(
        post(&app, &admin, "/api/v1/kb/search", json!({"query": "metro"})).await,
        502,
        "embedding_provider_not_configured",
    )
    .await;
    assert!(b["detail"].as_str().unwrap().contains("GEMINI_API_KEY"));
}

#[tokio::test]
async fn the_search_statement_can_use_the_hnsw_index_with_an_iterative_scan() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    for i in 0..5 {
        create_ready(
            &app,
            &admin,
            json!({"title": format!("Entrada {i}"), "content": format!("Contenido número {i}.")}),
        )
        .await;
    }
    let txn = app.db().begin().await.unwrap();
    txn.execute_unprepared(&shared::knowledge::repo::scan_settings(shared::knowledge::repo::EF_SEARCH)).await.unwrap();
    let scan = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('hnsw.iterative_scan') AS s",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "s")
        .unwrap();
    assert_eq!(scan, "relaxed_order", "pgvector 0.8 iterative scans are on");
    // With few chunks per broker the planner rightly prefers the exact scan of the broker's rows
    // (its btree index, then a sort); take both alternatives away, inside this transaction only,
    // to see that the statement's shape lets it use the HNSW index.
    txn.execute_unprepared("DROP INDEX knowledge_chunks_broker_model_idx; SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let vector = shared::integrations::embeddings::local::embed("contenido");
    let values: Vec<sea_orm::Value> = vec![
        sea_orm::prelude::PgVector::from(vector).into(),
        admin.broker_id.unwrap().into(),
        "local".into(),
        shared::integrations::embeddings::local::MODEL.into(),
        100i64.into(),
        0.0f64.into(),
        3i64.into(),
    ];
    let explain = |kind| {
        let sql = format!("EXPLAIN {}", shared::knowledge::repo::search_sql(kind));
        let (txn, values) = (&txn, values.clone());
        async move {
            txn.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    // Every kind of entry has its own graph, and the search asks each of them.
    let plan = explain(None).await;
    for kind in SourceType::ALL {
        let index = format!("knowledge_chunks_embedding_hnsw_{}", kind.as_str());
        assert!(plan.contains(&index), "{index} unused: {plan}");
    }
    // A source filter asks its kind's graph only.
    let plan = explain(Some(SourceType::Faq)).await;
    assert!(plan.contains("knowledge_chunks_embedding_hnsw_faq"), "{plan}");
    assert!(!plan.contains("knowledge_chunks_embedding_hnsw_property"), "{plan}");
    txn.rollback().await.unwrap();
}

#[tokio::test]
async fn every_pooled_connection_carries_the_hnsw_scan_settings_so_a_search_is_one_statement() {
    // Not pgvector's default (40, also ours), so the test sees the setting arrive.
    let app = TestApp::spawn_with(|k| (k == "KB_EF_SEARCH").then(|| "77".to_string())).await;
    // Outside any transaction, on whatever pooled connection answers: the startup options set them.
    for _ in 0..3 {
        let row = app
            .db()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_setting('hnsw.ef_search') AS ef, current_setting('hnsw.iterative_scan') AS scan",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<String>("", "ef").unwrap(), "77");
        assert_eq!(row.try_get::<String>("", "scan").unwrap(), "relaxed_order");
    }
}
