//! The Corredor worker as a library: `run` connects to PostgreSQL and Redis, announces itself with
//! a heartbeat, runs the periodic schedules (each tick once across all workers) and stops when
//! `shutdown` resolves. It also consumes the job queues: [`queue`] runs a queue with Corredor's retry
//! and dead-letter rules, [`jobs`] holds one thin handler per queue.

pub mod jobs;
pub mod queue;
pub mod schedules;

use std::future::Future;
use std::time::Duration;

use redis::AsyncCommands;
use shared::{Infra, Settings};

pub use schedules::Schedule;

/// How often the worker refreshes its heartbeat key; the key lives three intervals.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A name unique to this live process (`host-pid`).
pub fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Redis sorted set of live workers: member = worker name, score = last heartbeat (unix seconds).
/// One key, so `/health` reads it without scanning the keyspace.
pub fn workers_key(prefix: &str) -> String {
    format!("{prefix}:workers")
}

/// A worker counts as live while its last heartbeat is younger than this.
pub const LIVE_FOR: Duration = Duration::from_secs(15);

/// Runs the worker with the default schedules.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let infra = Infra::connect(settings).await?;
    run_with(infra, worker_name(), schedules::defaults(), shutdown).await
}

/// Runs the worker under `name` with the given schedules (tests pass their own).
pub async fn run_with(
    infra: Infra,
    name: String,
    schedules: Vec<Schedule>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let key = workers_key(infra.prefix());
    tracing::info!(worker = %name, concurrency = infra.settings.worker_concurrency, "worker started");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks: Vec<_> = schedules
        .into_iter()
        .map(|s| tokio::spawn(schedules::run_schedule(infra.clone(), s, name.clone(), stop_rx.clone())))
        .collect();
    tasks.extend(jobs::spawn_consumers(&infra, &name, queue::record_dead_letter(infra.clone()), stop_rx.clone()));
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let mut conn = infra.redis.clone();
                let now = chrono::Utc::now().timestamp();
                let beat: redis::RedisResult<()> = redis::pipe()
                    .zadd(&key, &name, now)
                    .ignore()
                    .zrembyscore(&key, 0, now - LIVE_FOR.as_secs() as i64 * 4)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = beat {
                    tracing::warn!(error = %e, "heartbeat failed; Redis unavailable");
                }
            }
        }
    }
    // Stop taking new ticks; a tick in progress finishes (bounded by the platform's 25 s drain).
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(25), t).await;
    }
    let mut conn = infra.redis.clone();
    let _: redis::RedisResult<()> = conn.zrem(&key, &name).await;
    tracing::info!(worker = %name, "worker stopped");
    Ok(())
}
