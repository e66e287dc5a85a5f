//! Background-work building blocks: periodic ticks claimed once across workers, and idempotent side
//! effects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use shared::effects::{Effect, Outcome, perform_once};

use crate::common::TestApp;

#[tokio::test]
async fn two_workers_run_each_tick_exactly_once() {
    let app = TestApp::spawn().await;
    let prefix = app.infra().prefix().to_string();
    let ticks_key = format!("{prefix}:test:ticks");
    let runs_key = format!("{prefix}:test:runs");
    let task: worker::schedules::Task = {
        let (ticks_key, runs_key) = (ticks_key.clone(), runs_key.clone());
        Arc::new(move |infra: shared::Infra, tick: u64| {
            let (ticks_key, runs_key) = (ticks_key.clone(), runs_key.clone());
            Box::pin(async move {
                let mut conn = infra.redis.clone();
                let _: () = conn.sadd(&ticks_key, tick).await.map_err(shared::Error::from)?;
                let _: () = conn.incr(&runs_key, 1).await.map_err(shared::Error::from)?;
                Ok(())
            })
        })
    };
    let schedule = worker::Schedule { name: "test_tick", every: Duration::from_millis(100), task };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for name in ["worker-a", "worker-b"] {
        let mut stopped = stopped.clone();
        handles.push(tokio::spawn(worker::run_with(
            app.infra().clone(),
            name.into(),
            vec![schedule.clone()],
            async move {
                let _ = stopped.changed().await;
            },
        )));
    }
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    stop.send(true).unwrap();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let mut redis =
        redis::Client::open(crate::common::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let distinct: u64 = redis.scard(&ticks_key).await.unwrap();
    let runs: u64 = redis.get(&runs_key).await.unwrap();
    assert!(distinct >= 3, "ticks ran: {distinct}");
    assert_eq!(runs, distinct, "no tick ran twice");
}

#[tokio::test]
async fn the_fold_schedule_keeps_totals_exact() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    for _ in 0..3 {
        app.lead(&admin, json!({"phone": crate::common::phone()})).await;
    }
    worker::schedules::fold_lead_counts(app.infra()).await.unwrap();
    use sea_orm::ConnectionTrait;
    let pending = app
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM lead_count_deltas",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(pending, 0);
    let page =
        crate::common::body(app.client().get("/api/v1/leads").header("authorization", admin.bearer()).send().await)
            .await;
    assert_eq!(page["total"], 3);
}

#[tokio::test]
async fn an_effect_is_performed_once_however_often_it_is_attempted() {
    let app = TestApp::spawn().await;
    let performed = Arc::new(AtomicU32::new(0));
    let effect = Effect { key: "telegram:reply:42", kind: "telegram_send", broker_id: None, lead_id: None };
    let attempts = (0..10).map(|i| {
        let performed = performed.clone();
        let db = app.db().clone();
        tokio::spawn(async move {
            perform_once(&db, effect, &format!("holder-{i}"), Duration::from_secs(60), || async move {
                performed.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(json!({"message_id": 777}))
            })
            .await
        })
    });
    let results = futures_util::future::join_all(attempts).await;
    assert_eq!(performed.load(Ordering::SeqCst), 1);
    let done = results.iter().filter(|r| matches!(r.as_ref().unwrap(), Ok(Outcome::Performed(_)))).count();
    assert_eq!(done, 1);
    for r in &results {
        match r.as_ref().unwrap() {
            Ok(outcome) => assert_eq!(outcome.result(), &json!({"message_id": 777})),
            Err(e) => assert_eq!(e.code(), "effect_in_progress"),
        }
    }
    // A later retry gets the recorded result without performing again.
    let again = perform_once(app.db(), effect, "late", Duration::from_secs(60), || async { panic!("performed twice") })
        .await
        .unwrap();
    assert_eq!(again, Outcome::AlreadyDone(json!({"message_id": 777})));
}

#[tokio::test]
async fn a_failed_effect_can_be_retried_and_a_dead_holders_claim_is_taken_over() {
    let app = TestApp::spawn().await;
    let effect = Effect { key: "vapi:call:7", kind: "voice_call", broker_id: None, lead_id: None };
    let failed = perform_once(app.db(), effect, "w1", Duration::from_secs(60), || async {
        Err(shared::Error::Unavailable("provider down".into()))
    })
    .await;
    assert_eq!(failed.unwrap_err().code(), "service_unavailable");
    let retried =
        perform_once(app.db(), effect, "w2", Duration::from_secs(60), || async { Ok(json!("ok")) }).await.unwrap();
    assert_eq!(retried, Outcome::Performed(json!("ok")));

    // A claim whose holder died (older than the lease) is taken over.
    let stale = Effect { key: "vapi:call:8", ..effect };
    use sea_orm::ConnectionTrait;
    app.db()
        .execute_unprepared(
            "INSERT INTO performed_effects (idempotency_key, kind, claimed_by, claimed_at) \
             VALUES ('vapi:call:8', 'voice_call', 'dead-worker', now() - interval '10 minutes')",
        )
        .await
        .unwrap();
    let busy = perform_once(app.db(), stale, "w3", Duration::from_secs(3600), || async { Ok(json!(1)) }).await;
    assert_eq!(busy.unwrap_err().code(), "effect_in_progress", "a claim within its lease is respected");
    let taken = perform_once(app.db(), stale, "w3", Duration::from_secs(60), || async { Ok(json!(2)) }).await.unwrap();
    assert_eq!(taken, Outcome::Performed(json!(2)));
}

#[tokio::test]
async fn finished_job_records_and_used_uploads_are_pruned() {
    let app = TestApp::spawn().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(app.infra().clone(), "prune-worker".into(), vec![], async {
        let _ = stopped.await;
    }));
    for i in 0..5 {
        shared::jobs::enqueue(app.infra(), shared::jobs::noop::Noop::new(i)).await.unwrap();
    }
    for _ in 0..100 {
        if shared::jobs::stats(app.infra(), "noop").await.unwrap().done == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(
        worker::schedules::prune_finished_jobs(app.infra(), Duration::from_secs(3600)).await.unwrap(),
        0,
        "recent records stay"
    );
    assert_eq!(worker::schedules::prune_finished_jobs(app.infra(), Duration::ZERO).await.unwrap(), 5);
    assert_eq!(shared::jobs::stats(app.infra(), "noop").await.unwrap().done, 0);
    let cfg = shared::jobs::config(app.infra().prefix(), "noop");
    let mut redis =
        redis::Client::open(crate::common::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let left: u64 = redis.hlen(cfg.job_data_hash()).await.unwrap();
    assert_eq!(left, 0, "payloads are gone too");

    // A failed import's upload is removed; a queued one is kept.
    let admin = app.new_broker().await;
    let ctx = shared::Ctx::user(admin.id, admin.broker_id, shared::Role::Admin);
    let failed = shared::leads::async_import::start(app.infra(), &ctx, None, "a.csv", b"phone\n911111111\n".to_vec())
        .await
        .unwrap();
    let queued = shared::leads::async_import::start(app.infra(), &ctx, None, "b.csv", b"phone\n922222222\n".to_vec())
        .await
        .unwrap();
    use sea_orm::ConnectionTrait;
    app.db()
        .execute_unprepared(&format!("UPDATE csv_imports SET status = 'failed' WHERE id = {failed}"))
        .await
        .unwrap();
    assert_eq!(worker::schedules::prune_import_uploads(app.infra()).await.unwrap(), 1);
    let chunks = app
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT count(*) AS n FROM csv_import_chunks WHERE import_id = {queued}"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(chunks, 1);
}

#[tokio::test]
async fn a_takeover_asks_whether_the_dead_holders_effect_happened_before_performing_it() {
    let app = TestApp::spawn().await;
    let effect = Effect { key: "checked-1", kind: "test", broker_id: None, lead_id: None };
    // A holder claimed the key and died before recording anything.
    sea_orm::ConnectionTrait::execute_unprepared(
        app.db(),
        "INSERT INTO performed_effects (idempotency_key, kind, claimed_by, claimed_at) \
         VALUES ('checked-1', 'test', 'dead', now() - interval '1 hour')",
    )
    .await
    .unwrap();
    let out = shared::effects::perform_once_checked(
        app.db(),
        effect,
        "heir",
        Duration::from_secs(60),
        || async { Ok(Some(json!("sent by the dead holder"))) },
        || async { panic!("performed again although the provider says it happened") },
    )
    .await
    .unwrap();
    assert_eq!(out, Outcome::AlreadyDone(json!("sent by the dead holder")));
    // Recorded: later calls neither check nor perform.
    let again = perform_once(app.db(), effect, "late", Duration::from_secs(60), || async { panic!("twice") }).await;
    assert_eq!(again.unwrap(), Outcome::AlreadyDone(json!("sent by the dead holder")));

    // When the provider has no trace of it, the heir performs it.
    let other = Effect { key: "checked-2", ..effect };
    sea_orm::ConnectionTrait::execute_unprepared(
        app.db(),
        "INSERT INTO performed_effects (idempotency_key, kind, claimed_by, claimed_at) \
         VALUES ('checked-2', 'test', 'dead', now() - interval '1 hour')",
    )
    .await
    .unwrap();
    let out = shared::effects::perform_once_checked(
        app.db(),
        other,
        "heir",
        Duration::from_secs(60),
        || async { Ok(None) },
        || async { Ok(json!("performed by the heir")) },
    )
    .await
    .unwrap();
    assert_eq!(out, Outcome::Performed(json!("performed by the heir")));
    // A fresh claim never asks.
    let fresh = Effect { key: "checked-3", ..effect };
    let out = shared::effects::perform_once_checked(
        app.db(),
        fresh,
        "first",
        Duration::from_secs(60),
        || async { panic!("a fresh claim has nothing to check") },
        || async { Ok(json!(3)) },
    )
    .await
    .unwrap();
    assert_eq!(out, Outcome::Performed(json!(3)));
}
