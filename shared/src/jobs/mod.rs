//! Durable background jobs: the contract between the API (which enqueues) and the worker (which
//! executes). Jobs live in apalis-redis queues under explicit namespaces, carry ids only, and are
//! classified on failure into transient (retried with backoff) and permanent (dead-lettered at once).
//!
//! Each queue's keys live under [`namespace`] (`{REDIS_PREFIX}:queue:{queue}`):
//!
//! | key | type | content |
//! |---|---|---|
//! | `{ns}:data` | HASH | task id → JSON payload |
//! | `{ns}:meta:{id}` | HASH | apalis status, attempts, result, lock |
//! | `{ns}:scheduled` | ZSET | ids by run-at (unix seconds); every push lands here first |
//! | `{ns}:active` | LIST | ids due now |
//! | `{ns}:inflight:{worker}` | SET | ids a worker has fetched (its lease) |
//! | `{ns}:workers` | ZSET | worker name → last heartbeat |
//! | `{ns}:done` / `{ns}:dead` | SET | finished / dead-lettered ids |
//! | `{ns}:attempts:{id}` | HASH | the worker's own attempt record (see `worker::queue`) |

pub mod calendar_sync;
pub mod campaign_step;
pub mod channel_send;
pub mod csv_import;
pub mod embedding;
pub mod llm_reply;
pub mod noop;
pub mod notification;
pub mod voice_call;
pub mod voice_report;

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::infra::Infra;

/// A job payload. Payloads carry ids only (never rows or secrets): the handler reloads what it needs,
/// so a retry hours later sees current data.
pub trait Job: Clone + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    /// The queue's name, e.g. `llm_reply`. Stable: it is part of the Redis keys.
    const QUEUE: &'static str;

    /// The brokerage the job works for (tenancy of dead jobs); `None` for platform jobs.
    fn broker_id(&self) -> Option<i64>;

    /// The lead the job concerns, if any (shown with dead jobs).
    fn lead_id(&self) -> Option<i64> {
        None
    }
}

/// Every queue (SPEC §8, plus `noop` for tests and benchmarks), for statistics, health checks and
/// pruning. The worker starts one consumer per queue in `worker::jobs::spawn_consumers`.
pub const QUEUES: &[&str] = &[
    <llm_reply::LlmReply as Job>::QUEUE,
    <campaign_step::CampaignStep as Job>::QUEUE,
    <embedding::Embedding as Job>::QUEUE,
    <voice_call::VoiceCall as Job>::QUEUE,
    <voice_report::VoiceReport as Job>::QUEUE,
    <csv_import::CsvImport as Job>::QUEUE,
    <calendar_sync::CalendarSync as Job>::QUEUE,
    <notification::Notification as Job>::QUEUE,
    <channel_send::ChannelSend as Job>::QUEUE,
    <noop::Noop as Job>::QUEUE,
];

/// The Redis namespace of a queue: `{prefix}:queue:{queue}`. Set explicitly because apalis-redis
/// otherwise names the queue after the Rust type path, which changes on any refactor.
pub fn namespace(prefix: &str, queue: &str) -> String {
    format!("{prefix}:queue:{queue}")
}

/// How often a worker proves it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Heartbeats a worker may miss before its fetched jobs are handed to others (orphan timeout 15 s).
pub const MISSED_HEARTBEATS: usize = 3;

/// The apalis-redis configuration of a queue, tuned away from the crate's defaults:
/// - explicit queue name (default: the Rust type path);
/// - heartbeat 5 s × 3 missed = 15 s orphan timeout (default 30 s × 10 = 5 minutes before a
///   crashed worker's jobs run elsewhere);
/// - batch size 1 (default 10: an idle worker would hoard ten jobs in its in-flight set while
///   other workers stay idle);
/// - no pub/sub events (default on: a PUBLISH per task transition that nobody reads);
/// - no task locks (default on: a second Lua script per job that only marks its metadata
///   `Running`; the worker's in-flight set is what leases a job and what orphan recovery reads).
pub fn config(prefix: &str, queue: &str) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(namespace(prefix, queue))
        .heartbeat_interval(HEARTBEAT)
        .missed_heartbeats(MISSED_HEARTBEATS)
        .batch_size(1)
        .emit_events(false)
        .lock_tasks(false)
}

/// Enqueues `job` to run as soon as a worker is free; returns its task id.
pub async fn enqueue<J: Job>(infra: &Infra, job: J) -> Result<String> {
    push(infra, J::QUEUE, encode(&job)?, None).await
}

/// Enqueues `job` to run no earlier than `at`; returns its task id.
pub async fn enqueue_at<J: Job>(infra: &Infra, job: J, at: DateTime<Utc>) -> Result<String> {
    push(infra, J::QUEUE, encode(&job)?, Some(at)).await
}

/// Enqueues a stored payload on `queue` as a new task (the dead-job "retry"); returns the new task id.
/// The payload is not checked against the queue's job type: one that does not decode is dead-lettered
/// by the worker on its first delivery.
pub async fn enqueue_raw(infra: &Infra, queue: &str, payload: Value) -> Result<String> {
    push(infra, queue, encode(&payload)?, None).await
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(Error::internal)
}

/// Pushes through apalis-redis' own push script on the process' shared connection (a
/// `RedisStorage` would only wrap the same call, and building one per push is needless).
async fn push(infra: &Infra, queue: &str, payload: Vec<u8>, at: Option<DateTime<Utc>>) -> Result<String> {
    let id = ulid::Ulid::generate();
    let mut task = TaskBuilder::new(payload).task_id(TaskId::from_ulid(id));
    if let Some(at) = at {
        // The scheduled set is scored in whole seconds and a job is due once the score is <= now
        // (rounded down), so round up: a job never runs before `at`.
        let secs = at.timestamp_millis().saturating_add(999).div_euclid(1000);
        task = task.run_at_timestamp(u64::try_from(secs).unwrap_or(0));
    }
    let mut conn = infra.redis.clone();
    apalis_redis::queries::push_tasks(&mut conn, &config(infra.prefix(), queue), &[task.build()])
        .await
        .map_err(from_apalis)?;
    if at.is_none() {
        promote_due(infra, queue).await?;
    }
    Ok(id.to_string())
}

/// Moves due jobs from the scheduled set to the active list, at most this many per Redis call.
const PROMOTE_CHUNK: usize = 1_000;

/// Moves every due job of `queue` from the scheduled set to the active list, in chunks.
///
/// apalis-redis 1.0.0 promotes due jobs inside its fetch script with one `unpack` of all of them,
/// which Redis refuses beyond ~8 000 values: a backlog that large would make every fetch fail and
/// stop the queue for good. Promoting here, after each push and on every worker poll, keeps the
/// due backlog in the scheduled set small. Returns how many jobs were moved.
pub async fn promote_due(infra: &Infra, queue: &str) -> Result<u64> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r#"
            local ids = redis.call("zrangebyscore", KEYS[1], 0, ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
            if #ids > 0 then
                redis.call("rpush", KEYS[2], unpack(ids))
                redis.call("zrem", KEYS[1], unpack(ids))
                redis.call("del", KEYS[3])
                redis.call("lpush", KEYS[3], 1)
            end
            return #ids
            "#,
        )
    });
    let cfg = config(infra.prefix(), queue);
    let mut conn = infra.redis.clone();
    let mut moved = 0u64;
    loop {
        let now = Utc::now().timestamp();
        let n: u64 = SCRIPT
            .key(cfg.scheduled_jobs_set())
            .key(cfg.active_jobs_list())
            .key(cfg.signal_list())
            .arg(now)
            .arg(PROMOTE_CHUNK)
            .invoke_async(&mut conn)
            .await?;
        moved += n;
        if n < PROMOTE_CHUNK as u64 {
            return Ok(moved);
        }
    }
}

/// Maps an apalis-redis error into the shared vocabulary (connection problems become 503).
pub fn from_apalis(err: apalis_redis::Error) -> Error {
    match err {
        apalis_redis::Error::Database(e) => e.into(),
        other => Error::internal(other),
    }
}

/// Counts of one queue's jobs, read from apalis-redis' keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Waiting to run: scheduled (including future and backend-retry times) plus due.
    pub pending: u64,
    /// Fetched by a worker and not acknowledged: running, waiting for a retry, or held by a worker
    /// that died (until its orphan timeout hands them to another worker).
    pub running: u64,
    /// Finished successfully (apalis keeps these ids; nothing expires them yet).
    pub done: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// Reads a queue's counts in two round trips.
pub async fn stats(infra: &Infra, queue: &str) -> Result<QueueStats> {
    let cfg = config(infra.prefix(), queue);
    let mut conn = infra.redis.clone();
    let (scheduled, active, done, dead, workers): (u64, u64, u64, u64, Vec<String>) = redis::pipe()
        .zcard(cfg.scheduled_jobs_set())
        .llen(cfg.active_jobs_list())
        .scard(cfg.done_jobs_set())
        .scard(cfg.dead_jobs_set())
        .zrange(cfg.workers_set(), 0, -1)
        .query_async(&mut conn)
        .await?;
    // Every worker that registered and has not been declared dead owns one in-flight set.
    let running = if workers.is_empty() {
        0
    } else {
        let mut pipe = redis::pipe();
        for w in &workers {
            pipe.scard(format!("{}:{w}", cfg.inflight_jobs_set()));
        }
        let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
        counts.iter().sum()
    };
    Ok(QueueStats { pending: scheduled + active, running, done, dead })
}

/// Whether a job that failed with `err` can never succeed by retrying: the request is invalid (400,
/// 413, 422), its subject is gone or out of reach (403, 404) or it conflicts with the current state
/// (409). `effect_in_progress` is the exception among conflicts: another holder is performing the
/// effect right now, so a later attempt finds it done. A provider's answer is permanent when the
/// provider says so (its 4xx other than 408/429, SPEC §15). Everything else (500, 503, 429) is
/// transient.
pub fn is_permanent(err: &Error) -> bool {
    match err {
        Error::Conflict { code: "effect_in_progress", .. } => false,
        Error::Upstream { permanent, .. } => *permanent,
        other => matches!(other.status(), 400 | 403 | 404 | 409 | 413 | 422),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_explicit_and_prefixed() {
        assert_eq!(namespace("corredor", "llm_reply"), "corredor:queue:llm_reply");
        let cfg = config("p", "noop");
        assert_eq!(cfg.queue.as_ref(), "p:queue:noop");
        assert_eq!(cfg.active_jobs_list(), "p:queue:noop:active");
        assert_eq!(cfg.orphaned_duration(), Duration::from_secs(15));
        assert_eq!(cfg.batch_size, 1);
    }

    #[test]
    fn failures_are_classified() {
        let permanent = [
            Error::invalid_body("x", "bad"),
            Error::bad_request("bad", "bad"),
            Error::NotFound("Lead"),
            Error::forbidden("no"),
            Error::conflict("lead_closed", "closed"),
            Error::LeadExists { lead_id: 1 },
            Error::upstream_permanent("telegram", "upstream_rejected", Some(400), "chat not found"),
        ];
        for e in &permanent {
            assert!(is_permanent(e), "{e:?} is permanent");
        }
        let transient = [
            Error::Unavailable("down".into()),
            Error::internal(anyhow::anyhow!("boom")),
            Error::RateLimited { retry_after: 3 },
            Error::conflict("effect_in_progress", "busy"),
            Error::upstream_transient("whatsapp", Some(503), "unavailable"),
        ];
        for e in &transient {
            assert!(!is_permanent(e), "{e:?} is transient");
        }
    }
}
