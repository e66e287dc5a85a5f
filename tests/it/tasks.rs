//! `/api/v1/admin/tasks`: the dead-letter queue — listing with filters and counts, detail, retry,
//! discard, bulk actions with dry runs and the cap, tenancy, audit rows and `job_failed` events.

use chrono::Utc;
use serde_json::{Value, json};
use shared::tasks::{DeadJob, record};

use crate::common::{TestApp, User, body, expect_error, phone};

fn dead(queue: &str, broker_id: Option<i64>, lead_id: Option<i64>, error: &str) -> DeadJob {
    let task_id = uuid::Uuid::new_v4().to_string();
    DeadJob {
        queue: queue.into(),
        task_id: task_id.clone(),
        payload: json!({"id": 1, "broker_id": broker_id, "effect_key": format!("fx-{task_id}")}),
        broker_id,
        lead_id,
        attempts: 3,
        errors: vec![
            (Utc::now(), "timeout talking to provider".into()),
            (Utc::now(), "timeout talking to provider".into()),
            (Utc::now(), error.into()),
        ],
    }
}

async fn get(app: &TestApp, user: &User, path: &str) -> poem::test::TestResponse {
    app.client().get(path).header("authorization", user.bearer()).send().await
}

async fn post(app: &TestApp, user: &User, path: &str, b: Value) -> poem::test::TestResponse {
    app.client().post(path).header("authorization", user.bearer()).body_json(&b).send().await
}

#[tokio::test]
async fn admins_list_their_brokers_dead_jobs_with_counts_newest_first() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let other = app.new_broker().await;
    let lead = app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64();
    let b = admin.broker_id;
    record(app.infra(), dead("noop", b, lead, "HTTP 500 from provider")).await.unwrap();
    record(app.infra(), dead("csv_import", b, None, "row batch failed")).await.unwrap();
    let newest = record(app.infra(), dead("noop", b, None, "HTTP 502 from provider")).await.unwrap();
    record(app.infra(), dead("noop", other.broker_id, None, "other broker")).await.unwrap();
    record(app.infra(), dead("noop", None, None, "platform job")).await.unwrap();

    let page = body(get(&app, &admin, "/api/v1/admin/tasks").await).await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"][0]["id"], newest);
    assert_eq!(page["counts_by_queue"], json!({"csv_import": 1, "noop": 2}));
    assert_eq!(page["counts_by_status"], json!({"dead": 3}));
    assert_eq!(page["items"][0]["errors"].as_array().unwrap().len(), 3);

    assert_eq!(body(get(&app, &admin, "/api/v1/admin/tasks?queue=noop").await).await["total"], 2);
    assert_eq!(body(get(&app, &admin, "/api/v1/admin/tasks?error=http%2050").await).await["total"], 2);
    assert_eq!(
        body(get(&app, &admin, &format!("/api/v1/admin/tasks?lead_id={}", lead.unwrap())).await).await["total"],
        1
    );
    assert_eq!(
        body(get(&app, &admin, "/api/v1/admin/tasks/failed?limit=1").await).await["items"].as_array().unwrap().len(),
        1
    );
    expect_error(get(&app, &admin, "/api/v1/admin/tasks?status=zombie").await, 422, "validation_error").await;
    expect_error(get(&app, &admin, "/api/v1/admin/tasks?limit=500").await, 422, "validation_error").await;
    let since = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    assert_eq!(body(get(&app, &admin, &format!("/api/v1/admin/tasks?since={since}")).await).await["total"], 0);

    let root = app.superadmin().await;
    assert_eq!(body(get(&app, &root, "/api/v1/admin/tasks").await).await["total"], 5);
    let only_b = body(get(&app, &root, &format!("/api/v1/admin/tasks?broker_id={}", b.unwrap())).await).await;
    assert_eq!(only_b["total"], 3);
}

#[tokio::test]
async fn agents_get_403_and_other_brokers_dead_jobs_are_404() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let other = app.new_broker().await;
    let theirs = record(app.infra(), dead("noop", other.broker_id, None, "x")).await.unwrap();
    expect_error(get(&app, &agent, "/api/v1/admin/tasks").await, 403, "forbidden").await;
    expect_error(get(&app, &admin, &format!("/api/v1/admin/tasks/{theirs}")).await, 404, "not_found").await;
    expect_error(post(&app, &admin, &format!("/api/v1/admin/tasks/{theirs}/retry"), json!({})).await, 404, "not_found")
        .await;
    let del = app
        .client()
        .delete(format!("/api/v1/admin/tasks/{theirs}"))
        .header("authorization", admin.bearer())
        .send()
        .await;
    expect_error(del, 404, "not_found").await;
    expect_error(get(&app, &admin, "/api/v1/admin/tasks/999999").await, 404, "not_found").await;
    let bulk = body(post(&app, &admin, "/api/v1/admin/tasks/bulk-discard", json!({"ids": [theirs]})).await).await;
    assert_eq!(bulk["matched"], 0);
    assert_eq!(bulk["results"][0]["status"], "not_found");
}

#[tokio::test]
async fn retry_reenqueues_the_original_payload_once() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let job = dead("noop", admin.broker_id, None, "boom");
    let payload = job.payload.clone();
    let id = record(app.infra(), job).await.unwrap();
    let detail = body(get(&app, &admin, &format!("/api/v1/admin/tasks/{id}")).await).await;
    assert_eq!(detail["payload"], payload);
    assert_eq!(detail["attempts"], 3);
    assert_eq!(detail["last_error"], "boom");

    let resp = post(&app, &admin, &format!("/api/v1/admin/tasks/{id}/retry"), json!({})).await;
    resp.assert_status(poem::http::StatusCode::ACCEPTED);
    let r = body(resp).await;
    assert_eq!(r["status"], "requeued");
    assert!(r["task_id"].as_str().is_some_and(|t| !t.is_empty()));
    let detail = body(get(&app, &admin, &format!("/api/v1/admin/tasks/{id}")).await).await;
    assert_eq!(detail["status"], "requeued");
    assert_eq!(detail["requeued_task_id"], r["task_id"]);
    let stats = shared::jobs::stats(app.infra(), "noop").await.unwrap();
    assert_eq!(stats.pending, 1, "the payload waits on its queue");
    expect_error(post(&app, &admin, &format!("/api/v1/admin/tasks/{id}/retry"), json!({})).await, 409, "task_not_dead")
        .await;

    let audit = body(get(&app, &admin, "/api/v1/admin/audit-log?action=dlq_retry").await).await;
    assert_eq!(audit["data"][0]["resource_id"], id);
}

#[tokio::test]
async fn discard_keeps_the_job_with_its_reason() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let id = record(app.infra(), dead("noop", admin.broker_id, None, "bad payload")).await.unwrap();
    let resp = app
        .client()
        .delete(format!("/api/v1/admin/tasks/{id}?reason=duplicate%20of%2042"))
        .header("authorization", admin.bearer())
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(body(resp).await["status"], "discarded");
    let detail = body(get(&app, &admin, &format!("/api/v1/admin/tasks/{id}")).await).await;
    assert_eq!(detail["status"], "discarded");
    assert_eq!(detail["discard_reason"], "duplicate of 42");
    expect_error(post(&app, &admin, &format!("/api/v1/admin/tasks/{id}/retry"), json!({})).await, 409, "task_not_dead")
        .await;
    let audit = body(get(&app, &admin, "/api/v1/admin/audit-log?action=dlq_discard").await).await;
    assert_eq!(audit["total"], 1);
}

#[tokio::test]
async fn bulk_actions_take_ids_or_a_filter_with_a_dry_run_first() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let b = admin.broker_id;
    let mut ids = Vec::new();
    for i in 0..4 {
        let q = if i % 2 == 0 { "noop" } else { "csv_import" };
        ids.push(record(app.infra(), dead(q, b, None, &format!("error {i}"))).await.unwrap());
    }
    let dry = body(
        post(&app, &admin, "/api/v1/admin/tasks/bulk-discard", json!({"filter": {"queue": "noop"}, "dry_run": true}))
            .await,
    )
    .await;
    assert_eq!((dry["matched"].as_i64(), dry["dry_run"].as_bool()), (Some(2), Some(true)));
    assert_eq!(
        body(get(&app, &admin, "/api/v1/admin/tasks?status=dead").await).await["total"],
        4,
        "a dry run changes nothing"
    );

    let done = body(
        post(
            &app,
            &admin,
            "/api/v1/admin/tasks/bulk-discard",
            json!({"filter": {"queue": "noop"}, "reason": "cleanup"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (done["discarded"].as_i64(), done["skipped"].as_i64(), done["failed"].as_i64()),
        (Some(2), Some(0), Some(0))
    );

    let retried =
        body(post(&app, &admin, "/api/v1/admin/tasks/bulk-retry", json!({"ids": [ids[0], ids[1], ids[3]]})).await)
            .await;
    assert_eq!((retried["retried"].as_i64(), retried["skipped"].as_i64()), (Some(2), Some(1)), "{retried}");

    let e =
        expect_error(post(&app, &admin, "/api/v1/admin/tasks/bulk-retry", json!({})).await, 422, "validation_error")
            .await;
    assert_eq!(e["detail"][0]["loc"], json!(["body", "ids"]));
    let too_many: Vec<i64> = (1..=1001).collect();
    expect_error(
        post(&app, &admin, "/api/v1/admin/tasks/bulk-retry", json!({"ids": too_many})).await,
        422,
        "validation_error",
    )
    .await;
}

#[tokio::test]
async fn recording_a_dead_job_tells_the_brokers_admins() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(shared::events::user_channel(app.infra().prefix(), admin.broker_id.unwrap(), admin.id))
        .await
        .unwrap();
    let id = record(app.infra(), dead("noop", admin.broker_id, None, "provider said 400")).await.unwrap();
    use futures_util::StreamExt;
    let msg =
        tokio::time::timeout(std::time::Duration::from_secs(5), pubsub.on_message().next()).await.unwrap().unwrap();
    let frame: Value = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(frame["event"], "job_failed");
    assert_eq!(frame["data"]["id"], id);
    assert_eq!(frame["data"]["error"], "provider said 400");
}

#[tokio::test]
async fn recording_is_idempotent_per_task() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let job = dead("noop", admin.broker_id, None, "first");
    let first = record(app.infra(), job.clone()).await.unwrap();
    let second = record(app.infra(), DeadJob { attempts: 5, ..job }).await.unwrap();
    assert_eq!(first, second);
    let detail = body(get(&app, &admin, &format!("/api/v1/admin/tasks/{first}")).await).await;
    assert_eq!(detail["attempts"], 5);
}

#[tokio::test]
async fn a_job_the_worker_gives_up_on_lands_in_the_dlq_and_can_be_retried() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(app.infra().clone(), "dlq-worker".into(), vec![], async {
        let _ = stopped.await;
    }));
    let job = shared::jobs::noop::Noop {
        broker_id: admin.broker_id,
        fail: Some("permanent".into()),
        ..shared::jobs::noop::Noop::new(7)
    };
    let task_id = shared::jobs::enqueue(app.infra(), job).await.unwrap();

    let mut page = Value::Null;
    for _ in 0..100 {
        page = body(get(&app, &admin, "/api/v1/admin/tasks").await).await;
        if page["total"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(page["total"], 1, "{page}");
    let dead_job = &page["items"][0];
    assert_eq!(dead_job["task_id"], task_id);
    assert_eq!(dead_job["queue"], "noop");
    assert_eq!(dead_job["attempts"], 1, "a permanent failure is not retried");
    assert_eq!(dead_job["payload"]["id"], 7);
    // The queue's own count moves once the worker acknowledges the job, just after recording it.
    let mut health = Value::Null;
    for _ in 0..50 {
        health = body(app.client().get("/health").send().await).await;
        if health["queues"]["noop"]["dead"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(health["queues"]["noop"]["dead"].as_u64().unwrap() >= 1, "{health}");

    // Retrying runs it again (it fails again, so a second dead job appears; the first is `requeued`).
    let id = dead_job["id"].as_i64().unwrap();
    post(&app, &admin, &format!("/api/v1/admin/tasks/{id}/retry"), json!({}))
        .await
        .assert_status(poem::http::StatusCode::ACCEPTED);
    for _ in 0..100 {
        page = body(get(&app, &admin, "/api/v1/admin/tasks").await).await;
        if page["total"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(page["counts_by_status"], json!({"dead": 1, "requeued": 1}), "{page}");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}
