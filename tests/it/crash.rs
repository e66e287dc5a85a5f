//! Crash safety with real worker processes: a worker killed with SIGKILL mid-flight loses nothing —
//! its in-flight jobs are re-delivered to the other worker (orphan re-enqueue) — and no effect is
//! performed twice.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use shared::jobs::noop::Noop;

use crate::common::{TestApp, redis_url, server_url};

fn spawn_worker(app: &TestApp, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_it-worker"))
        .env("DATABASE_URL", format!("{}/{}", server_url(), app.db_name))
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", app.infra().prefix())
        .env("WORKER_CONCURRENCY", "4")
        .env("DB_MAX_CONNECTIONS", "5")
        .env("JOB_BACKOFF_BASE_MS", "500")
        .env("JOB_BACKOFF_MAX_MS", "2000")
        .env("HOSTNAME", name)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker process")
}

async fn done_effects(app: &TestApp) -> (i64, i64) {
    let row = app
        .db()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FILTER (WHERE status = 'done') AS done, count(*) AS total FROM performed_effects",
        ))
        .await
        .unwrap()
        .unwrap();
    (row.try_get("", "done").unwrap(), row.try_get("", "total").unwrap())
}

#[tokio::test]
async fn a_worker_killed_mid_flight_loses_nothing_and_duplicates_no_effect() {
    let app = TestApp::spawn().await;
    let n: i64 = 300;
    for i in 0..n as u64 {
        let job = Noop {
            effect_key: Some(format!("crash-{i}")),
            sleep_ms: Some(40),
            count_runs: true,
            count_effects: true,
            lease_ms: Some(2_000),
            ..Noop::new(i)
        };
        shared::jobs::enqueue(app.infra(), job).await.unwrap();
    }
    let mut a = spawn_worker(&app, "crash-a");
    let mut b = spawn_worker(&app, "crash-b");

    let started = Instant::now();
    while done_effects(&app).await.0 < 40 {
        assert!(started.elapsed() < Duration::from_secs(30), "workers did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill().unwrap(); // SIGKILL: no chance to hand anything back
    a.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (done, total) = done_effects(&app).await;
        if done == n {
            assert_eq!(total, n, "one effect row per key");
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of {n} effects after the crash");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.kill().unwrap();
    b.wait().unwrap();

    // Every job ran at least once; any re-run (the killed worker's in-flight jobs) found its effect
    // done or re-performed it only if the first run never got that far.
    let mut redis = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let runs: std::collections::HashMap<u64, u64> =
        redis::AsyncCommands::hgetall(&mut redis, format!("{}:noop:runs", app.infra().prefix())).await.unwrap();
    assert_eq!(runs.len() as i64, n, "every job ran");
    // The effect itself (a counter outside the database): exactly once per job, also for the jobs
    // the killed worker was in the middle of.
    let effects: std::collections::HashMap<u64, u64> =
        redis::AsyncCommands::hgetall(&mut redis, format!("{}:noop:effects", app.infra().prefix())).await.unwrap();
    assert_eq!(effects.len() as i64, n, "every effect happened");
    let twice: Vec<_> = effects.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "effects performed more than once: {twice:?}");
    let stats = shared::jobs::stats(app.infra(), "noop").await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0));
}
