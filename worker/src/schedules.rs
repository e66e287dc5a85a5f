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

/// Finished job records are kept this long in Redis (dead ones live on in `dead_jobs`).
pub const KEEP_FINISHED_JOBS: Duration = Duration::from_secs(24 * 3600);

/// The periodic work that exists now.
pub fn defaults() -> Vec<Schedule> {
    vec![
        Schedule {
            name: "fold_lead_counts",
            every: Duration::from_secs(60),
            task: Arc::new(|infra: Infra, _tick: u64| Box::pin(async move { fold_lead_counts(&infra).await })),
        },
        Schedule {
            name: "prune_finished_jobs",
            every: Duration::from_secs(3600),
            task: Arc::new(|infra: Infra, _tick: u64| {
                Box::pin(async move { prune_finished_jobs(&infra, KEEP_FINISHED_JOBS).await.map(|_| ()) })
            }),
        },
        Schedule {
            // Entries left `pending` (an enqueue that failed after commit, or attempts all cut short
            // by dying workers) get a new embedding job.
            name: "requeue_stale_embeddings",
            every: Duration::from_secs(300),
            task: Arc::new(|infra: Infra, _tick: u64| {
                Box::pin(async move {
                    shared::knowledge::service::requeue_stale(&infra, Duration::from_secs(900)).await.map(|_| ())
                })
            }),
        },
        Schedule {
            // Hourly ticks, work once a night: inactivity penalties and every other rule re-applied
            // to every open lead at the hour of the night when chats are fewest.
            name: "refresh_lead_scores",
            every: Duration::from_secs(3600),
            task: Arc::new(|infra: Infra, tick: u64| {
                Box::pin(async move {
                    if is_nightly_tick(tick) { refresh_lead_scores(&infra).await.map(|_| ()) } else { Ok(()) }
                })
            }),
        },
        Schedule {
            // Calls that hold an active slot but will never finish (a lost job, a missed webhook).
            name: "expire_stale_calls",
            every: Duration::from_secs(300),
            task: Arc::new(|infra: Infra, _tick: u64| {
                Box::pin(
                    async move { shared::voice::service::expire_stale(&infra, chrono::Utc::now()).await.map(|_| ()) },
                )
            }),
        },
        Schedule {
            // Leads left in human mode: reminder, admin alert, auto-release (as notification jobs).
            name: "human_mode_timeouts",
            every: Duration::from_secs(60),
            task: Arc::new(|infra: Infra, _tick: u64| {
                Box::pin(
                    async move { shared::conversations::due_timeouts(&infra, chrono::Utc::now()).await.map(|_| ()) },
                )
            }),
        },
        Schedule {
            // The LLM ledger's hourly roll-ups that cost summaries read.
            name: "fold_llm_costs",
            every: Duration::from_secs(60),
            task: Arc::new(|infra: Infra, _tick: u64| {
                Box::pin(async move { shared::costs::fold(&infra, chrono::Utc::now()).await.map(|_| ()) })
            }),
        },
        Schedule {
            // Trigger campaigns (lead score, stage, inactivity) enrol the leads that qualify now;
            // step jobs lost on the way are pushed again.
            name: "campaign_triggers",
            every: Duration::from_secs(3600),
            task: Arc::new(|infra: Infra, _tick: u64| {
                Box::pin(
                    async move { shared::campaigns::enrol::run_triggers(&infra, chrono::Utc::now()).await.map(|_| ()) },
                )
            }),
        },
        Schedule {
            // Channel messages stored but left unanswered (or undelivered) for 2 minutes.
            name: "sweep_stale_channel_messages",
            every: Duration::from_secs(60),
            task: Arc::new(|infra: Infra, _tick: u64| {
                Box::pin(async move {
                    shared::channels::inbound::sweep(&infra, shared::channels::inbound::STALE_AFTER).await.map(|_| ())
                })
            }),
        },
        Schedule {
            name: "prune_import_uploads",
            every: Duration::from_secs(3600),
            task: Arc::new(|infra: Infra, _tick: u64| {
                Box::pin(async move { prune_import_uploads(&infra).await.map(|_| ()) })
            }),
        },
    ]
}

/// Deletes the Redis records (payload and metadata) of jobs that finished (done, or dead and so
/// kept in `dead_jobs`) longer than `keep` ago. Returns how many were removed.
pub async fn prune_finished_jobs(infra: &Infra, keep: Duration) -> shared::Result<u64> {
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .saturating_sub(keep.as_secs());
    let mut removed = 0u64;
    let mut conn = infra.redis.clone();
    for queue in shared::jobs::QUEUES {
        let cfg = shared::jobs::config(infra.prefix(), queue);
        for (set, terminal) in [(cfg.done_jobs_set(), "Done"), (cfg.dead_jobs_set(), "Killed")] {
            let mut cursor: u64 = 0;
            loop {
                let (next, ids): (u64, Vec<String>) =
                    redis::cmd("SSCAN").arg(&set).arg(cursor).arg("COUNT").arg(500).query_async(&mut conn).await?;
                if !ids.is_empty() {
                    let mut pipe = redis::pipe();
                    for id in &ids {
                        pipe.cmd("HMGET").arg(format!("{}:{id}", cfg.job_meta_hash())).arg("status").arg("done_at");
                    }
                    let metas: Vec<(Option<String>, Option<u64>)> = pipe.query_async(&mut conn).await?;
                    let old: Vec<&String> = ids
                        .iter()
                        .zip(metas)
                        .filter(|(_, (status, done_at))| {
                            status.as_deref() == Some(terminal) && done_at.is_some_and(|t| t <= cutoff)
                        })
                        .map(|(id, _)| id)
                        .collect();
                    if !old.is_empty() {
                        let mut pipe = redis::pipe();
                        for id in &old {
                            pipe.hdel(cfg.job_data_hash(), *id).ignore();
                            pipe.del(format!("{}:{id}", cfg.job_meta_hash())).ignore();
                            pipe.srem(&set, *id).ignore();
                        }
                        let () = pipe.query_async(&mut conn).await?;
                        removed += old.len() as u64;
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    Ok(removed)
}

/// Deletes stored CSV uploads that are no longer needed: their import finished or failed, or it
/// was queued more than a week ago and never ran. Returns how many chunks were removed.
pub async fn prune_import_uploads(infra: &Infra) -> shared::Result<u64> {
    use sea_orm::ConnectionTrait;
    let res = infra
        .db
        .execute_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "DELETE FROM csv_import_chunks WHERE import_id IN \
               (SELECT id FROM csv_imports WHERE status IN ('done', 'failed') OR created_at < now() - interval '7 days')",
        ))
        .await?;
    Ok(res.rows_affected())
}

/// The UTC hour of the nightly score refresh: 03:00 in Santiago in summer, 02:00 in winter.
pub const NIGHTLY_HOUR_UTC: u64 = 6;

/// Whether an hourly tick (tick `n` starts at `n` hours after the epoch) is the nightly one.
pub fn is_nightly_tick(tick: u64) -> bool {
    tick % 24 == NIGHTLY_HOUR_UTC
}

/// The nightly refresh: the lead rules over every open lead of every broker, in batches.
pub async fn refresh_lead_scores(infra: &Infra) -> shared::Result<shared::pipeline::service::Refresh> {
    use shared::pipeline::service::{Sweep, refresh};
    refresh(infra, Sweep::Scores { broker_id: None }, chrono::Utc::now()).await
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
