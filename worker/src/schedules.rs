//! Periodic work. Every worker process runs the same schedules; each tick is claimed with a Redis
//! `SET NX` on a key named after the tick, so with N workers each tick runs exactly once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use shared::Infra;
use tracing::Instrument;

/// What a tick runs: the infrastructure handles and the tick's number.
pub type Task = Arc<dyn Fn(Infra, u64) -> BoxFuture<'static, shared::Result<()>> + Send + Sync>;

#[derive(Clone)]
pub struct Schedule {
    pub name: &'static str,
    pub every: Duration,
    pub task: Task,
}

/// The periodic work that exists now.
pub fn defaults() -> Vec<Schedule> {
    vec![Schedule {
        name: "fold_lead_counts",
        every: Duration::from_secs(60),
        task: Arc::new(|infra: Infra, _tick: u64| Box::pin(async move { fold_lead_counts(&infra).await })),
    }]
}

/// Folds every broker's pending lead-count deltas into its total, so list requests read few rows.
pub async fn fold_lead_counts(infra: &Infra) -> shared::Result<()> {
    use sea_orm::ConnectionTrait;
    let rows = infra
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT DISTINCT broker_id FROM lead_count_deltas",
        ))
        .await?;
    for row in rows {
        let broker_id: i64 = row.try_get_by_index(0)?;
        shared::leads::repo::fold_deltas(&infra.db, broker_id).await?;
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// Claims `tick` of `schedule` for this worker; true for exactly one worker per tick.
async fn claim(infra: &Infra, schedule: &Schedule, tick: u64, worker: &str) -> bool {
    let key = format!("{}:schedule:{}:{tick}", infra.prefix(), schedule.name);
    let ttl_ms = (schedule.every.as_millis() as u64).saturating_mul(2).max(1000);
    let mut conn = infra.redis.clone();
    let res: redis::RedisResult<Option<String>> =
        redis::cmd("SET").arg(&key).arg(worker).arg("NX").arg("PX").arg(ttl_ms).query_async(&mut conn).await;
    match res {
        Ok(reply) => reply.is_some(),
        Err(e) => {
            tracing::warn!(error = %e, schedule = schedule.name, "could not claim a tick; skipping it");
            false
        }
    }
}

/// Runs one schedule until `stop` flips: waits for each tick boundary, claims it, runs the task.
pub async fn run_schedule(
    infra: Infra,
    schedule: Schedule,
    worker: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every_ms = (schedule.every.as_millis() as u64).max(1);
    loop {
        let now = now_ms();
        let tick = now / every_ms + 1;
        let wait = Duration::from_millis(tick * every_ms - now);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if !claim(&infra, &schedule, tick, &worker).await {
            continue;
        }
        let span = tracing::info_span!("schedule", name = schedule.name, tick);
        match (schedule.task)(infra.clone(), tick).instrument(span).await {
            Ok(()) => tracing::debug!("tick done"),
            Err(e) => tracing::error!(error = %e, "periodic task failed"),
        }
    }
}
