//! The durable job queues against the real Redis: pickup latency, exactly-once effects across
//! workers, retries, dead letters (and that apalis-redis does not reschedule them), scheduling,
//! raw re-enqueue, graceful stop and queue statistics. Each test has its own Redis prefix.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sea_orm::ConnectionTrait;
use serde_json::json;
use shared::jobs::noop::Noop;
use shared::jobs::{self, QueueStats};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use worker::queue::{DeadJob, DeadLetter, QueueOptions};

use crate::common::TestApp;

/// Fast retries so failure paths finish in well under a second.
fn fast() -> QueueOptions {
    QueueOptions {
        max_attempts: 3,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..QueueOptions::new(4)
    }
}

/// A `noop` consumer started with `worker::queue::run_queue`, whose dead letters the test receives.
struct Consumer {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    dead: mpsc::UnboundedReceiver<DeadJob>,
}

impl Consumer {
    fn start(app: &TestApp, name: &str, opts: QueueOptions) -> Self {
        let (dead_tx, dead) = mpsc::unbounded_channel();
        let hook: DeadLetter = std::sync::Arc::new(move |job: DeadJob| {
            let dead_tx = dead_tx.clone();
            Box::pin(async move {
                let _ = dead_tx.send(job);
            })
        });
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(worker::queue::run_queue::<Noop, _, _>(
            app.infra().clone(),
            name.to_string(),
            worker::jobs::noop::run,
            opts,
            hook,
            stopped,
        ));
        Self { stop, handle, dead }
    }

    async fn next_dead(&mut self) -> DeadJob {
        tokio::time::timeout(Duration::from_secs(10), self.dead.recv())
            .await
            .expect("a dead letter in time")
            .expect("hook alive")
    }

    /// Stops the consumer and waits for it to drain; returns how long that took.
    async fn stop(self) -> Duration {
        let t = Instant::now();
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.handle).await.expect("stops in time").unwrap();
        t.elapsed()
    }
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn redis(app: &TestApp) -> ConnectionManager {
    app.infra().redis.clone()
}

/// The apalis-redis keys of the `noop` queue.
fn keys(app: &TestApp) -> apalis_redis::Config {
    jobs::config(app.infra().prefix(), "noop")
}

async fn is_done(app: &TestApp, task_id: &str) -> bool {
    redis(app).sismember(keys(app).done_jobs_set(), task_id).await.unwrap()
}

async fn is_dead(app: &TestApp, task_id: &str) -> bool {
    redis(app).sismember(keys(app).dead_jobs_set(), task_id).await.unwrap()
}

async fn status(app: &TestApp, task_id: &str) -> Option<String> {
    redis(app).hget(format!("{}:{task_id}", keys(app).job_meta_hash()), "status").await.unwrap()
}

/// Attempts of job `id` counted by the handler (`count_runs`).
async fn runs(app: &TestApp, id: u64) -> u64 {
    let n: Option<u64> = redis(app).hget(format!("{}:noop:runs", app.infra().prefix()), id).await.unwrap();
    n.unwrap_or(0)
}

async fn effects_done(app: &TestApp) -> i64 {
    scalar(app, "SELECT count(*) FROM performed_effects WHERE kind = 'noop' AND status = 'done'").await
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .db()
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

async fn stats(app: &TestApp) -> QueueStats {
    jobs::stats(app.infra(), "noop").await.unwrap()
}

#[tokio::test]
async fn an_enqueued_job_runs_within_two_seconds_even_on_an_idle_worker() {
    let app = TestApp::spawn().await;
    let consumer = Consumer::start(&app, "idle", QueueOptions::new(2));
    // Let the worker register and go idle for longer than a poll interval, then twice: enqueue and
    // time the pickup. Without the poll fix an idle worker waits for its next heartbeat (5 s).
    tokio::time::sleep(Duration::from_millis(700)).await;
    for round in 0..2u64 {
        let t = Instant::now();
        let id = jobs::enqueue(app.infra(), Noop::new(round)).await.unwrap();
        eventually(Duration::from_secs(2), "the job to be done", || is_done(&app, &id)).await;
        let latency = t.elapsed();
        assert!(latency < Duration::from_secs(2), "round {round}: picked up after {latency:?}");
        tokio::time::sleep(Duration::from_millis(1_200)).await;
    }
    consumer.stop().await;
}

#[tokio::test]
async fn two_workers_perform_each_of_200_effects_exactly_once() {
    let app = TestApp::spawn().await;
    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::new();
    for name in ["queue-a", "queue-b"] {
        let mut stopped = stopped.clone();
        workers.push(tokio::spawn(worker::run_with(app.infra().clone(), name.into(), vec![], async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    let mut ids = Vec::new();
    for i in 0..200u64 {
        // Each job takes a little time so that neither worker can drain the queue alone between
        // two polls of the other.
        let job = Noop { effect_key: Some(format!("noop:{i}")), sleep_ms: Some(30), count_runs: true, ..Noop::new(i) };
        ids.push(jobs::enqueue(app.infra(), job).await.unwrap());
    }
    let done_set = keys(&app).done_jobs_set();
    eventually(Duration::from_secs(20), "200 jobs done", || {
        let (mut conn, key) = (redis(&app), done_set.clone());
        async move { conn.scard::<_, u64>(key).await.unwrap() == 200 }
    })
    .await;
    stop.send(true).unwrap();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(30), w).await.unwrap().unwrap().unwrap();
    }

    assert_eq!(effects_done(&app).await, 200, "every effect performed");
    let counts: std::collections::HashMap<u64, u64> =
        redis(&app).hgetall(format!("{}:noop:runs", app.infra().prefix())).await.unwrap();
    assert_eq!(counts.len(), 200, "every job ran");
    assert!(counts.values().all(|&n| n == 1), "no job ran twice: {counts:?}");
    let by_a = scalar(&app, "SELECT count(*) FROM performed_effects WHERE claimed_by LIKE 'queue-a/%'").await;
    let by_b = scalar(&app, "SELECT count(*) FROM performed_effects WHERE claimed_by LIKE 'queue-b/%'").await;
    assert_eq!(by_a + by_b, 200);
    assert!(by_a > 0 && by_b > 0, "both workers took jobs: {by_a} / {by_b}");
    let s = stats(&app).await;
    assert_eq!((s.pending, s.running, s.done, s.dead), (0, 0, 200, 0));
}

#[tokio::test]
async fn a_transient_failure_is_retried_until_it_succeeds() {
    let app = TestApp::spawn().await;
    let mut consumer = Consumer::start(&app, "retry", QueueOptions { max_attempts: 5, ..fast() });
    let job = Noop {
        fail: Some("transient".into()),
        fail_attempts: Some(2),
        effect_key: Some("retry:1".into()),
        count_runs: true,
        ..Noop::new(1)
    };
    let id = jobs::enqueue(app.infra(), job).await.unwrap();
    eventually(Duration::from_secs(5), "the job to succeed", || is_done(&app, &id)).await;
    assert_eq!(runs(&app, 1).await, 3, "two failures, then success");
    assert_eq!(effects_done(&app).await, 1);
    assert!(consumer.dead.try_recv().is_err(), "no dead letter");
    let record = format!("{}:attempts:{id}", jobs::namespace(app.infra().prefix(), "noop"));
    assert!(!redis(&app).exists::<_, bool>(&record).await.unwrap(), "the attempt record is cleared");
    consumer.stop().await;
}

#[tokio::test]
async fn transient_failures_use_up_max_attempts_then_dead_letter_every_error() {
    let app = TestApp::spawn().await;
    let mut consumer = Consumer::start(&app, "exhaust", fast());
    let job = Noop { fail: Some("transient".into()), count_runs: true, broker_id: None, ..Noop::new(2) };
    let id = jobs::enqueue(app.infra(), job).await.unwrap();
    let dead = consumer.next_dead().await;
    assert_eq!((dead.queue.as_str(), dead.task_id.as_str(), dead.attempts), ("noop", id.as_str(), 3));
    assert_eq!(dead.payload["id"], 2);
    assert_eq!(dead.errors.len(), 3, "one error per attempt: {:?}", dead.errors);
    for (_, e) in &dead.errors {
        assert!(e.starts_with("service_unavailable: noop 2 fails for now"), "{e}");
    }
    // Attempts were spaced by the backoff (50 ms then 100 ms, less up to a quarter of jitter).
    let gaps: Vec<i64> = dead.errors.windows(2).map(|w| (w[1].0 - w[0].0).num_milliseconds()).collect();
    assert!(gaps[0] >= 37 && gaps[1] >= 75, "backoff between attempts: {gaps:?}");

    eventually(Duration::from_secs(2), "apalis to file the job as dead", || is_dead(&app, &id)).await;
    assert_eq!(status(&app, &id).await.as_deref(), Some("Killed"));
    // A plain error would be rescheduled by apalis-redis one second later; wait well past that.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(runs(&app, 2).await, 3, "not run again");
    assert_eq!(stats(&app).await, QueueStats { pending: 0, running: 0, done: 0, dead: 1 });
    consumer.stop().await;
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_after_one_attempt_and_never_rescheduled() {
    let app = TestApp::spawn().await;
    let mut consumer = Consumer::start(&app, "permanent", fast());
    let job = Noop { fail: Some("permanent".into()), count_runs: true, ..Noop::new(3) };
    let id = jobs::enqueue(app.infra(), job).await.unwrap();
    let dead = consumer.next_dead().await;
    assert_eq!(dead.task_id, id);
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.errors.len(), 1);
    assert!(dead.errors[0].1.starts_with("not_found: "), "{:?}", dead.errors);

    eventually(Duration::from_secs(2), "apalis to file the job as dead", || is_dead(&app, &id)).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(runs(&app, 3).await, 1, "exactly one attempt");
    let scheduled: Option<f64> = redis(&app).zscore(keys(&app).scheduled_jobs_set(), &id).await.unwrap();
    assert_eq!(scheduled, None, "not rescheduled by the backend");
    assert_eq!(status(&app, &id).await.as_deref(), Some("Killed"));
    assert!(consumer.dead.try_recv().is_err(), "dead-lettered once");
    consumer.stop().await;
}

#[tokio::test]
async fn a_job_waiting_for_its_retry_leaves_its_slot_to_other_jobs() {
    let app = TestApp::spawn().await;
    let one_slot = QueueOptions {
        concurrency: 1,
        backoff_base: Duration::from_millis(1_500),
        backoff_max: Duration::from_millis(1_500),
        ..fast()
    };
    let consumer = Consumer::start(&app, "one-slot", one_slot);
    let failing = Noop { fail: Some("transient".into()), fail_attempts: Some(1), count_runs: true, ..Noop::new(30) };
    let failing = jobs::enqueue(app.infra(), failing).await.unwrap();
    eventually(Duration::from_secs(3), "the first attempt to fail", || async { runs(&app, 30).await == 1 }).await;
    // The only slot is free while the failed job waits (at least 1.1 s) for its retry.
    let other = jobs::enqueue(app.infra(), Noop::new(31)).await.unwrap();
    eventually(Duration::from_secs(1), "the other job to run meanwhile", || is_done(&app, &other)).await;
    assert!(!is_done(&app, &failing).await, "the failed job is still waiting");
    eventually(Duration::from_secs(3), "the retry to succeed", || is_done(&app, &failing)).await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_transient_failure_and_the_worker_survives() {
    let app = TestApp::spawn().await;
    let mut consumer = Consumer::start(&app, "panic", QueueOptions { max_attempts: 2, ..fast() });
    let id = jobs::enqueue(app.infra(), Noop { fail: Some("panic".into()), ..Noop::new(4) }).await.unwrap();
    let dead = consumer.next_dead().await;
    assert_eq!((dead.task_id.as_str(), dead.attempts), (id.as_str(), 2));
    assert!(dead.errors[0].1.contains("the handler panicked: noop 4 panics on purpose"), "{:?}", dead.errors);
    let next = jobs::enqueue(app.infra(), Noop::new(5)).await.unwrap();
    eventually(Duration::from_secs(3), "the next job to run", || is_done(&app, &next)).await;
    consumer.stop().await;
}

#[tokio::test]
async fn enqueue_at_runs_no_earlier_than_scheduled() {
    let app = TestApp::spawn().await;
    let consumer = Consumer::start(&app, "later", QueueOptions::new(2));
    // A time with a fraction of a second: the scheduled set is scored in whole seconds.
    let at = Utc::now() + chrono::Duration::milliseconds(1_500);
    let job = Noop { effect_key: Some("later:1".into()), ..Noop::new(6) };
    let id = jobs::enqueue_at(app.infra(), job, at).await.unwrap();
    assert_eq!(stats(&app).await.pending, 1);
    eventually(Duration::from_secs(5), "the scheduled job to run", || is_done(&app, &id)).await;
    let row = app
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT claimed_at FROM performed_effects WHERE idempotency_key = 'later:1'",
        ))
        .await
        .unwrap()
        .unwrap();
    let ran_at: DateTime<Utc> = row.try_get_by_index(0).unwrap();
    assert!(ran_at >= at, "ran at {ran_at}, scheduled for {at}");
    assert!(ran_at < at + chrono::Duration::seconds(2), "ran at {ran_at}, scheduled for {at}: too late");
    consumer.stop().await;
}

#[tokio::test]
async fn enqueue_raw_runs_a_stored_payload_and_dead_letters_one_that_does_not_decode() {
    let app = TestApp::spawn().await;
    let mut consumer = Consumer::start(&app, "raw", fast());
    let good = jobs::enqueue_raw(app.infra(), "noop", json!({"id": 7, "effect_key": "raw:7"})).await.unwrap();
    eventually(Duration::from_secs(3), "the raw job to run", || is_done(&app, &good)).await;
    assert_eq!(effects_done(&app).await, 1);

    let bad = jobs::enqueue_raw(app.infra(), "noop", json!({"broker_id": 9, "what": "no id"})).await.unwrap();
    let dead = consumer.next_dead().await;
    assert_eq!((dead.task_id.as_str(), dead.attempts, dead.broker_id), (bad.as_str(), 1, Some(9)));
    assert!(dead.errors[0].1.contains("not a valid noop job"), "{:?}", dead.errors);
    assert_eq!(dead.payload, json!({"broker_id": 9, "what": "no id"}));
    consumer.stop().await;
}

#[tokio::test]
async fn graceful_stop_finishes_an_in_flight_job() {
    let app = TestApp::spawn().await;
    let consumer = Consumer::start(&app, "drain", QueueOptions::new(2));
    let job = Noop { sleep_ms: Some(1_500), effect_key: Some("drain:1".into()), count_runs: true, ..Noop::new(8) };
    let id = jobs::enqueue(app.infra(), job).await.unwrap();
    eventually(Duration::from_secs(3), "the job to start", || async { runs(&app, 8).await == 1 }).await;
    assert_eq!(stats(&app).await.running, 1);
    let took = consumer.stop().await;
    assert!(is_done(&app, &id).await, "finished and acknowledged before the consumer returned");
    assert_eq!(effects_done(&app).await, 1);
    assert!(took >= Duration::from_millis(1_000), "waited for the job: {took:?}");
    // Stopped consumers take nothing new.
    let later = jobs::enqueue(app.infra(), Noop::new(9)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!is_done(&app, &later).await);
}

#[tokio::test]
async fn a_job_waiting_for_its_retry_is_handed_back_on_stop_and_keeps_its_attempts() {
    let app = TestApp::spawn().await;
    let slow_retry = QueueOptions {
        backoff_base: Duration::from_secs(2),
        backoff_max: Duration::from_secs(2),
        max_attempts: 3,
        ..QueueOptions::new(2)
    };
    let first = Consumer::start(&app, "first", slow_retry.clone());
    let job = Noop { fail: Some("transient".into()), fail_attempts: Some(1), count_runs: true, ..Noop::new(10) };
    let id = jobs::enqueue(app.infra(), job).await.unwrap();
    eventually(Duration::from_secs(3), "the first attempt to fail", || async { runs(&app, 10).await == 1 }).await;
    let took = first.stop().await;
    assert!(took < Duration::from_secs(1), "a waiting job does not hold up the stop: {took:?}");
    let ns = jobs::namespace(app.infra().prefix(), "noop");
    let retry_at: i64 = redis(&app).hget(format!("{ns}:attempts:{id}"), "retry_at").await.unwrap();
    assert!(!is_done(&app, &id).await && !is_dead(&app, &id).await, "handed back, not finished");

    let mut second = Consumer::start(&app, "second", slow_retry);
    eventually(Duration::from_secs(6), "the retry to succeed on the next worker", || is_done(&app, &id)).await;
    assert_eq!(runs(&app, 10).await, 2, "attempt 2 ran once, after attempt 1");
    assert!(Utc::now().timestamp_millis() >= retry_at, "the recorded backoff was honoured");
    assert!(second.dead.try_recv().is_err());
    second.stop().await;
}

#[tokio::test]
async fn attempts_interrupted_by_a_dead_worker_count_towards_the_limit() {
    let app = TestApp::spawn().await;
    // A job whose earlier deliveries died mid-attempt (a poison pill): its record says one attempt
    // started and none finished.
    let id = jobs::enqueue(app.infra(), Noop { count_runs: true, ..Noop::new(11) }).await.unwrap();
    let ns = jobs::namespace(app.infra().prefix(), "noop");
    let _: () = redis(&app).hset(format!("{ns}:attempts:{id}"), "started", 1).await.unwrap();
    let mut consumer = Consumer::start(&app, "poison", QueueOptions { max_attempts: 1, ..fast() });
    let dead = consumer.next_dead().await;
    assert_eq!((dead.task_id.as_str(), dead.attempts), (id.as_str(), 1));
    assert!(dead.errors[0].1.starts_with("interrupted"), "{:?}", dead.errors);
    assert_eq!(runs(&app, 11).await, 0, "not run again");
    consumer.stop().await;
}

#[tokio::test]
async fn stats_report_pending_running_done_and_dead() {
    let app = TestApp::spawn().await;
    assert_eq!(stats(&app).await, QueueStats::default());
    for i in 0..2 {
        jobs::enqueue(app.infra(), Noop { sleep_ms: Some(1_000), count_runs: true, ..Noop::new(20 + i) })
            .await
            .unwrap();
    }
    jobs::enqueue(app.infra(), Noop { fail: Some("permanent".into()), ..Noop::new(22) }).await.unwrap();
    jobs::enqueue_at(app.infra(), Noop::new(23), Utc::now() + chrono::Duration::minutes(10)).await.unwrap();
    assert_eq!(stats(&app).await, QueueStats { pending: 4, running: 0, done: 0, dead: 0 });

    let consumer = Consumer::start(&app, "stats", QueueOptions { concurrency: 2, ..fast() });
    eventually(Duration::from_secs(3), "two running", || async { stats(&app).await.running == 2 }).await;
    eventually(Duration::from_secs(5), "all but the future job finished", || async {
        stats(&app).await == QueueStats { pending: 1, running: 0, done: 2, dead: 1 }
    })
    .await;
    consumer.stop().await;
}

/// apalis-redis' fetch script promotes every due job with one `unpack`, which Redis refuses past
/// ~8 000 values; `jobs::promote_due` keeps that backlog small so a burst never stops the queue.
#[tokio::test]
async fn a_burst_of_ten_thousand_jobs_does_not_stall_the_queue() {
    let app = TestApp::spawn().await;
    let infra = app.infra().clone();
    // 9 000 jobs due at once but left in the scheduled set, as after a worker outage.
    let pushes = (0..10u64).map(|t| {
        let infra = infra.clone();
        tokio::spawn(async move {
            for i in 0..900u64 {
                let past = chrono::Utc::now() - chrono::Duration::seconds(5);
                shared::jobs::enqueue_at(&infra, shared::jobs::noop::Noop::new(t * 900 + i), past).await.unwrap();
            }
        })
    });
    for p in futures_util::future::join_all(pushes).await {
        p.unwrap();
    }
    let cfg = shared::jobs::config(infra.prefix(), "noop");
    let mut redis =
        redis::Client::open(crate::common::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let backlog: u64 = redis::AsyncCommands::zcard(&mut redis, cfg.scheduled_jobs_set()).await.unwrap();
    assert!(backlog > 8_000, "the scheduled backlog is past apalis' unpack limit: {backlog}");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_with(infra.clone(), "burst-worker".into(), vec![], async {
        let _ = stopped.await;
    }));
    // And a burst of immediate jobs while it drains.
    for i in 9_000..10_000u64 {
        shared::jobs::enqueue(&infra, shared::jobs::noop::Noop::new(i)).await.unwrap();
    }
    // A stalled queue makes no progress at all; a slow machine makes some. Fail on the first.
    let (mut last_done, mut last_progress) = (0, std::time::Instant::now());
    loop {
        let stats = shared::jobs::stats(&infra, "noop").await.unwrap();
        if stats.done == 10_000 {
            break;
        }
        if stats.done > last_done {
            (last_done, last_progress) = (stats.done, std::time::Instant::now());
        }
        assert!(last_progress.elapsed() < std::time::Duration::from_secs(20), "stalled at {stats:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}
