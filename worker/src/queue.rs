//! Queue consumers: one apalis worker per queue over `RedisStorage`, with Corredor's retry,
//! dead-letter and shutdown rules instead of the crate's.
//!
//! Per job delivery:
//! 1. The payload is decoded into the queue's [`Job`] type (one that does not decode is dead-lettered:
//!    no retry can fix it).
//! 2. Each attempt runs `handler(infra, job, ctx)` in a `job` span (queue, task id, attempt, broker).
//! 3. A transient failure waits an exponential backoff (without holding a concurrency slot) and tries
//!    again, up to `max_attempts`; a permanent one ([`jobs::is_permanent`]) or the last attempt calls
//!    the [`DeadLetter`] hook with every attempt's error and returns apalis' `AbortError`.
//!
//! Why not apalis' own retry: apalis-redis reschedules any plain `Err` on its own, up to 25 times
//! whatever the `RetryPolicy` says (`handle_results.lua`), a retry layer holds its concurrency slot
//! while it sleeps, and neither knows which errors are permanent. Here only `AbortError` (dead) and
//! `Ok` leave the handler, except on shutdown (below).
//!
//! Attempts are counted in Redis (`{ns}:attempts:{task id}`: attempts started, every error with its
//! time, the next retry time), not in memory, so the count and the backoff survive a redelivery:
//! a job whose worker died mid-attempt comes back with that attempt recorded as interrupted, and a
//! job that kills its worker every time (a poison pill) still reaches `max_attempts`.
//!
//! Shutdown: when `stop` flips, apalis stops fetching; running attempts get `grace` to finish; a job
//! waiting for its backoff (or for a slot) is handed back to apalis-redis at once with a plain `Err`,
//! which reschedules it durably, and the next holder waits out the rest of the recorded backoff.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use apalis::prelude::{
    AbortError, BackendExt, BoxDynError, PollSnapshot, PollStrategy, Service, Task, WorkerBuilder, WorkerError,
};
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::Value;
use shared::Infra;
use shared::jobs::{self, Job};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// How a queue is consumed.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// Attempts running at once in this process.
    pub concurrency: usize,
    /// Attempts before a transiently failing job is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles for each further attempt…
    pub backoff_base: Duration,
    /// …up to this.
    pub backoff_max: Duration,
    /// How often an idle worker looks for due jobs (the pickup latency of a new job).
    pub poll_interval: Duration,
    /// apalis workers fetching for this queue in this process (at most `concurrency`). apalis-redis
    /// fetches, acknowledges and heartbeats in one serial loop per worker, and each fetch is a Redis
    /// round trip for one job (batch size 1, so no job waits in a busy worker's buffer while another
    /// is idle); several fetchers share the concurrency slots and keep them fed under load.
    pub fetchers: usize,
    /// Time running attempts get to finish once `stop` flips.
    pub grace: Duration,
}

impl QueueOptions {
    /// The defaults with the process' settings (`WORKER_CONCURRENCY`, `JOB_BACKOFF_*`).
    pub fn from_settings(settings: &shared::Settings) -> Self {
        let mut opts = Self::new(settings.worker_concurrency);
        opts.backoff_base = settings.job_backoff_base;
        opts.backoff_max = settings.job_backoff_max.max(opts.backoff_base);
        opts
    }

    /// Defaults with `concurrency` slots: 5 attempts over about 15 minutes (waits of 1, 2, 4 and
    /// 8 minutes, each shortened by up to a quarter so failures of one outage spread out), pickup
    /// within 250 ms, 25 s to drain on shutdown.
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency: concurrency.max(1),
            max_attempts: 5,
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(8 * 60),
            poll_interval: Duration::from_millis(250),
            fetchers: concurrency.div_ceil(8).clamp(1, 4),
            grace: Duration::from_secs(25),
        }
    }

    /// The wait after failed attempt `attempt` (1-based) of task `task_id`: `base · 2^(attempt-1)`,
    /// capped at `backoff_max`, minus a jitter of up to 25 % derived from the task id (deterministic,
    /// so a redelivered job keeps its schedule; different per job, so one outage's failures spread).
    pub fn backoff(&self, task_id: &str, attempt: u32) -> Duration {
        let exp = self.backoff_base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let full = exp.min(self.backoff_max);
        let mut hasher = std::hash::DefaultHasher::new();
        (task_id, attempt).hash(&mut hasher);
        let jitter = (hasher.finish() % 1000) as f64 / 4000.0;
        full.mul_f64(1.0 - jitter)
    }
}

/// What a handler knows about the attempt it runs.
#[derive(Clone, Debug)]
pub struct JobCtx {
    pub queue: &'static str,
    pub task_id: String,
    /// 1-based, counted across redeliveries.
    pub attempt: u32,
    /// The consuming worker's name (unique per live process and queue).
    pub worker: String,
    /// The queue's attempt budget.
    pub max_attempts: u32,
}

impl JobCtx {
    /// Whether failing with `err` now ends the job (a permanent error, or the last attempt): the
    /// moment for a handler to record the failure on its subject before the job is dead-lettered.
    pub fn gives_up_on(&self, err: &shared::Error) -> bool {
        jobs::is_permanent(err) || self.attempt >= self.max_attempts
    }
}

/// A job the worker gave up on (recorded by the dead-letter hook).
pub use shared::tasks::DeadJob;

/// Called once per dead job before apalis-redis files it under `{ns}:dead`. It must not fail the
/// job: it handles (logs) its own errors. A crash between the hook and the acknowledgement
/// redelivers the job, so the hook may see the same task id twice.
pub type DeadLetter = Arc<dyn Fn(DeadJob) -> BoxFuture<'static, ()> + Send + Sync>;

/// The production dead-letter hook: a `dead_jobs` row (and `job_failed` to the broker's admins).
/// If the row cannot be written the job is still filed dead in Redis with its payload, and logged.
pub fn record_dead_letter(infra: Infra) -> DeadLetter {
    Arc::new(move |job: DeadJob| {
        let infra = infra.clone();
        Box::pin(async move {
            let (queue, task_id) = (job.queue.clone(), job.task_id.clone());
            match shared::tasks::record(&infra, job).await {
                Ok(id) => tracing::warn!(%queue, %task_id, dead_job_id = id, "job dead-lettered"),
                Err(e) => tracing::error!(error = %e, %queue, %task_id, "could not record a dead job"),
            }
        })
    })
}

/// A dead-letter hook that only logs.
pub fn log_dead_letter() -> DeadLetter {
    Arc::new(|job: DeadJob| {
        Box::pin(async move {
            let last = job.errors.last().map(|(_, e)| e.as_str()).unwrap_or_default();
            tracing::error!(
                queue = %job.queue, task_id = %job.task_id, attempts = job.attempts, broker_id = job.broker_id,
                lead_id = job.lead_id, payload = %job.payload, error = last, "job dead-lettered"
            );
        })
    })
}

/// Aborts a background task when its owner returns.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Consumes queue `J::QUEUE` as `worker` until `stop` flips (or its sender is dropped), then drains.
/// An apalis worker ends on any Redis error (a failed heartbeat or fetch), so it is restarted
/// after a pause, under a new name because apalis-redis refuses a name seen in the last 15 s.
pub async fn run_queue<J, F, Fut>(
    infra: Infra,
    worker: String,
    handler: F,
    opts: QueueOptions,
    dead_letter: DeadLetter,
    stop: watch::Receiver<bool>,
) where
    J: Job,
    F: Fn(Infra, J, JobCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = shared::Result<()>> + Send + 'static,
{
    let core = Arc::new(Core {
        held: Arc::new(Semaphore::new(opts.concurrency.saturating_mul(HELD_PER_SLOT))),
        slots: Arc::new(Semaphore::new(opts.concurrency)),
        infra,
        worker,
        handler,
        opts,
        dead_letter,
        stop,
        _job: PhantomData,
    });
    // Keep the due backlog small for apalis' fetch script (see `jobs::promote_due`).
    let promoter = {
        let (infra, every, mut stop) = (core.infra.clone(), core.opts.poll_interval, core.stop.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = jobs::promote_due(&infra, J::QUEUE).await {
                    tracing::warn!(queue = J::QUEUE, error = %e, "could not promote due jobs");
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        })
    };
    let _promoter = AbortOnDrop(promoter);
    let fetchers = core.opts.fetchers.clamp(1, core.opts.concurrency);
    let names: Vec<String> = match fetchers {
        1 => vec![core.worker.clone()],
        n => (0..n).map(|i| format!("{}.{i}", core.worker)).collect(),
    };
    futures_util::future::join_all(names.into_iter().enumerate().map(|(i, name)| fetch_loop(&core, name, i))).await;
}

/// One fetcher's life: an apalis worker under `name`, restarted after failures until `stop` flips.
/// An apalis worker ends on any Redis error (a failed heartbeat or fetch), so it is restarted
/// after a pause, under a new name because apalis-redis refuses a name seen in the last 15 s.
async fn fetch_loop<J, F, Fut>(core: &Arc<Core<J, F>>, base: String, index: usize)
where
    J: Job,
    F: Fn(Infra, J, JobCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = shared::Result<()>> + Send + 'static,
{
    let stop = core.stop.clone();
    // The first fetcher picks new work up quickly; the others only matter under load, when they
    // fetch back to back without waiting for their (slower) idle poll.
    let idle_poll = if index == 0 { core.opts.poll_interval } else { core.opts.poll_interval * 4 };
    let mut pause = Duration::from_secs(1);
    for incarnation in 0u32.. {
        let name = match incarnation {
            0 => base.clone(),
            n => format!("{base}~{n}"),
        };
        tracing::info!(queue = J::QUEUE, worker = %name, "queue consumer started");
        let outcome = run_worker(core, name.clone(), idle_poll).await;
        if is_stopped(&stop) {
            tracing::info!(queue = J::QUEUE, worker = %name, "queue consumer stopped");
            return;
        }
        match outcome {
            Ok(()) => tracing::warn!(queue = J::QUEUE, worker = %name, "queue consumer ended by itself; restarting"),
            Err(e) => {
                tracing::error!(queue = J::QUEUE, worker = %name, error = %e, "queue consumer failed; restarting")
            }
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopped(&mut stop) => return,
        }
        pause = (pause * 2).min(Duration::from_secs(15));
    }
}

/// Jobs a worker may hold per concurrency slot, counting those waiting for a retry. Bounds what one
/// worker takes from the queue while its retries wait.
const HELD_PER_SLOT: usize = 4;

/// How long an attempt record outlives its last write (a job abandoned for good leaves nothing).
const RECORD_TTL_SECS: i64 = 7 * 24 * 3600;

/// One apalis worker's life: runs until `stop` flips and in-flight attempts end (or `grace` passes).
async fn run_worker<J, F, Fut>(core: &Arc<Core<J, F>>, name: String, poll: Duration) -> Result<(), WorkerError>
where
    J: Job,
    F: Fn(Infra, J, JobCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = shared::Result<()>> + Send + 'static,
{
    let storage = RedisStorage::<Value>::new(core.infra.redis.clone())
        .with_config(jobs::config(core.infra.prefix(), J::QUEUE))
        .poll_with_strategy(EveryInterval::new(poll));
    let worker = WorkerBuilder::new(name.as_str()).backend(storage).build(Consumer::new(core.clone(), name));
    let mut signal = core.stop.clone();
    let run = worker.run_until(async move {
        stopped(&mut signal).await;
        Ok::<(), WorkerError>(())
    });
    tokio::pin!(run);
    let mut stop = core.stop.clone();
    tokio::select! {
        res = &mut run => return res,
        _ = stopped(&mut stop) => {}
    }
    match tokio::time::timeout(core.opts.grace, run).await {
        Ok(res) => res,
        Err(_) => {
            // Dropping the worker abandons its running attempts; they stay in its in-flight set and
            // another worker re-runs them after the orphan timeout, recorded as interrupted.
            tracing::warn!(queue = J::QUEUE, grace = ?core.opts.grace, "attempts still running after the grace period were abandoned");
            Ok(())
        }
    }
}

fn is_stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Resolves once `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What every delivery of a queue shares.
struct Core<J, F> {
    infra: Infra,
    worker: String,
    handler: F,
    opts: QueueOptions,
    dead_letter: DeadLetter,
    stop: watch::Receiver<bool>,
    /// Jobs this process holds (running, waiting for a slot or for a retry).
    held: Arc<Semaphore>,
    /// Attempts running.
    slots: Arc<Semaphore>,
    _job: PhantomData<fn() -> J>,
}

type Acquire = BoxFuture<'static, Result<OwnedSemaphorePermit, AcquireError>>;

/// The tower service apalis calls per delivered task. Its readiness is the fetch gate: apalis asks
/// Redis for a job only when this worker may hold another one and an attempt slot is free right now.
/// The slot itself is taken by the job, per attempt, so a job waiting for its retry holds none.
struct Consumer<J, F> {
    core: Arc<Core<J, F>>,
    worker: Arc<str>,
    held: Option<OwnedSemaphorePermit>,
    acquiring: Option<Acquire>,
    gate: Option<Acquire>,
}

impl<J, F> Consumer<J, F> {
    fn new(core: Arc<Core<J, F>>, worker: String) -> Self {
        Self { core, worker: worker.into(), held: None, acquiring: None, gate: None }
    }
}

impl<J, F, Fut> Service<Task<Value>> for Consumer<J, F>
where
    J: Job,
    F: Fn(Infra, J, JobCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = shared::Result<()>> + Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<(), BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxDynError>> {
        if self.held.is_none() {
            let fut = self.acquiring.get_or_insert_with(|| self.core.held.clone().acquire_owned().boxed());
            let permit = ready!(fut.poll_unpin(cx));
            self.acquiring = None;
            self.held = Some(permit?);
        }
        // Only look: the permit goes back at once. Holding it while the fetch finds nothing would
        // starve a job whose retry is due.
        let gate = self.gate.get_or_insert_with(|| self.core.slots.clone().acquire_owned().boxed());
        let slot = ready!(gate.poll_unpin(cx));
        self.gate = None;
        drop(slot?);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Value>) -> Self::Future {
        let held = self.held.take();
        let core = self.core.clone();
        let worker = self.worker.clone();
        async move {
            let outcome = core.deliver(task, &worker).await;
            drop(held);
            outcome
        }
        .boxed()
    }
}

/// How a delivery ends, in apalis' terms.
enum Ending {
    /// Done: acknowledged into `{ns}:done`.
    Done,
    /// Dead-lettered: `AbortError`, filed under `{ns}:dead`, never rescheduled.
    Dead(String),
    /// Handed back on shutdown: a plain error, which apalis-redis reschedules.
    HandedBack,
}

impl<J, F, Fut> Core<J, F>
where
    J: Job,
    F: Fn(Infra, J, JobCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = shared::Result<()>> + Send + 'static,
{
    async fn deliver(&self, task: Task<Value>, worker: &str) -> Result<(), BoxDynError> {
        let task_id = task.ctx().task_id().map(ToString::to_string).unwrap_or_default();
        let payload = task.args;
        match self.attempts(&task_id, payload, worker).await {
            Ending::Done => Ok(()),
            Ending::Dead(error) => Err(Box::new(AbortError::new(error))),
            Ending::HandedBack => Err("the worker is stopping; handed back to the queue".into()),
        }
    }

    async fn attempts(&self, task_id: &str, payload: Value, worker: &str) -> Ending {
        let key = format!("{}:attempts:{task_id}", jobs::namespace(self.infra.prefix(), J::QUEUE));
        let job = match serde_json::from_value::<J>(payload.clone()) {
            Ok(job) => job,
            Err(e) => {
                let mut record = Record::load(&self.infra, &key).await;
                record.errors.push((Utc::now(), format!("the payload is not a valid {} job: {e}", J::QUEUE)));
                return self.bury(task_id, payload, &key, record).await;
            }
        };
        let mut stop = self.stop.clone();
        let mut record: Option<Record> = None;
        loop {
            // A retry due later waits without a slot (the record of an earlier delivery may say so).
            if let Some(at) = record.as_ref().and_then(|r| r.retry_at) {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped(&mut stop) => return Ending::HandedBack,
                }
            }
            let slot = tokio::select! {
                biased;
                _ = stopped(&mut stop) => return Ending::HandedBack,
                slot = self.slots.clone().acquire_owned() => slot,
            };
            // Counts the attempt before it runs (one round trip that also reads the record), so an
            // attempt cut short by a dying worker is still counted on the next delivery.
            let mut current = Record::begin_attempt(&self.infra, &key).await;
            let attempt = current.started;
            // Attempts interrupted by a dying worker may have used the budget up.
            if attempt > self.opts.max_attempts.max(1) {
                drop(slot);
                return self.bury(task_id, payload, &key, current).await;
            }
            // First sight of this delivery's record: an earlier delivery may have scheduled a retry.
            if record.is_none() && current.retry_at.is_some_and(|at| at > Utc::now()) {
                drop(slot);
                current.unstart(&self.infra, &key).await;
                record = Some(current);
                continue;
            }

            let span =
                tracing::info_span!("job", queue = J::QUEUE, task_id, attempt, broker_id = job.broker_id(), worker);
            let ctx = JobCtx {
                queue: J::QUEUE,
                task_id: task_id.to_string(),
                attempt,
                worker: worker.to_string(),
                max_attempts: self.opts.max_attempts,
            };
            let started = std::time::Instant::now();
            let run = (self.handler)(self.infra.clone(), job.clone(), ctx);
            let outcome = AssertUnwindSafe(run).catch_unwind().instrument(span.clone()).await;
            drop(slot);
            let err = match outcome {
                Ok(Ok(())) => {
                    span.in_scope(|| tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "job done"));
                    Record::clear(&self.infra, &key).await;
                    return Ending::Done;
                }
                Ok(Err(e)) => e,
                Err(panic) => {
                    shared::Error::internal(anyhow::anyhow!("the handler panicked: {}", panic_message(&panic)))
                }
            };
            current.errors.push((Utc::now(), describe(&err)));
            if jobs::is_permanent(&err) || attempt >= self.opts.max_attempts {
                span.in_scope(|| tracing::warn!(error = %describe(&err), "attempt failed; giving up"));
                return self.bury(task_id, payload, &key, current).await;
            }
            let wait = self.opts.backoff(task_id, attempt);
            current.retry_at = chrono::Duration::from_std(wait).ok().map(|d| Utc::now() + d);
            current.save_failure(&self.infra, &key).await;
            span.in_scope(|| tracing::warn!(error = %describe(&err), retry_in_ms = wait.as_millis() as u64, "attempt failed; retrying"));
            record = Some(current);
        }
    }

    /// Dead-letters the job: the hook first (so a crash before the acknowledgement re-delivers the job
    /// rather than losing it), then the record goes, then apalis files the id under `{ns}:dead`.
    async fn bury(&self, task_id: &str, payload: Value, key: &str, record: Record) -> Ending {
        let decoded = serde_json::from_value::<J>(payload.clone()).ok();
        let field = |name: &str| payload.get(name).and_then(Value::as_i64);
        let dead = DeadJob {
            queue: J::QUEUE.to_string(),
            task_id: task_id.to_string(),
            broker_id: decoded.as_ref().map_or_else(|| field("broker_id"), Job::broker_id),
            lead_id: decoded.as_ref().map_or_else(|| field("lead_id"), Job::lead_id),
            attempts: record.errors.len() as u32,
            errors: record.errors.clone(),
            payload,
        };
        let last = record.errors.last().map(|(_, e)| e.clone()).unwrap_or_default();
        if let Err(panic) = AssertUnwindSafe((self.dead_letter)(dead)).catch_unwind().await {
            tracing::error!(queue = J::QUEUE, task_id, panic = panic_message(&panic), "the dead-letter hook panicked");
        }
        Record::clear(&self.infra, key).await;
        Ending::Dead(last)
    }
}

/// An error as stored with the job: its stable code and message (with the cause chain of internal
/// errors, which only operators see).
fn describe(err: &shared::Error) -> String {
    format!("{}: {err:#}", err.code())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// A job's attempts so far, kept in the Redis hash `{ns}:attempts:{task id}` (fields `started`,
/// `errors` as JSON, `retry_at` in unix ms). Writes are best effort: with Redis unreachable, apalis
/// cannot acknowledge the job either, and the in-memory copy still drives this delivery.
#[derive(Debug, Default)]
struct Record {
    started: u32,
    errors: Vec<(DateTime<Utc>, String)>,
    retry_at: Option<DateTime<Utc>>,
}

impl Record {
    /// Reads the record; attempts started but never finished are recorded as interrupted.
    async fn load(infra: &Infra, key: &str) -> Self {
        let mut conn = infra.redis.clone();
        let fields: redis::RedisResult<(Option<u32>, Option<String>, Option<i64>)> =
            redis::cmd("HMGET").arg(key).arg("started").arg("errors").arg("retry_at").query_async(&mut conn).await;
        let (started, errors, retry_at) = match fields {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, key, "could not read the attempt record; counting from here");
                (None, None, None)
            }
        };
        let mut record = Self {
            started: started.unwrap_or(0),
            errors: errors.and_then(|e| serde_json::from_str(&e).ok()).unwrap_or_default(),
            retry_at: retry_at.and_then(DateTime::from_timestamp_millis),
        };
        record.pad_interrupted(record.started);
        record
    }

    /// Counts a new attempt and reads the record, in one round trip. `started` is then this
    /// attempt's number; earlier attempts without a recorded error are recorded as interrupted.
    async fn begin_attempt(infra: &Infra, key: &str) -> Self {
        let mut conn = infra.redis.clone();
        // (started, (errors, retry_at))
        type Read = (u32, (Option<String>, Option<i64>));
        let read: redis::RedisResult<Read> = redis::pipe()
            .hincr(key, "started", 1)
            .cmd("HMGET")
            .arg(key)
            .arg("errors")
            .arg("retry_at")
            .expire(key, RECORD_TTL_SECS)
            .ignore()
            .query_async(&mut conn)
            .await;
        let (started, (errors, retry_at)) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, key, "could not count the attempt; counting from here");
                (1, (None, None))
            }
        };
        let mut record = Self {
            started,
            errors: errors.and_then(|e| serde_json::from_str(&e).ok()).unwrap_or_default(),
            retry_at: retry_at.filter(|ms| *ms > 0).and_then(DateTime::from_timestamp_millis),
        };
        record.pad_interrupted(started.saturating_sub(1));
        record
    }

    /// Takes back an attempt counted by [`Record::begin_attempt`] that did not run.
    async fn unstart(&mut self, infra: &Infra, key: &str) {
        self.started = self.started.saturating_sub(1);
        let mut pipe = redis::pipe();
        pipe.hincr(key, "started", -1).ignore();
        Self::write(infra, key, pipe).await;
    }

    fn pad_interrupted(&mut self, attempts: u32) {
        while (self.errors.len() as u32) < attempts {
            let n = self.errors.len() + 1;
            self.errors.push((Utc::now(), format!("interrupted: the worker stopped or died during attempt {n}")));
        }
    }

    async fn save_failure(&self, infra: &Infra, key: &str) {
        let errors = serde_json::to_string(&self.errors).unwrap_or_else(|_| "[]".into());
        let retry_at = self.retry_at.map_or(0, |t| t.timestamp_millis());
        let mut pipe = redis::pipe();
        pipe.hset_multiple(key, &[("errors", errors), ("retry_at", retry_at.to_string())])
            .ignore()
            .expire(key, RECORD_TTL_SECS)
            .ignore();
        Self::write(infra, key, pipe).await;
    }

    async fn clear(infra: &Infra, key: &str) {
        let mut pipe = redis::pipe();
        pipe.del(key).ignore();
        Self::write(infra, key, pipe).await;
    }

    async fn write(infra: &Infra, key: &str, pipe: redis::Pipeline) {
        let mut conn = infra.redis.clone();
        let res: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        if let Err(e) = res {
            tracing::warn!(error = %e, key, "could not write the attempt record");
        }
    }
}

/// Wakes an idle worker every `every` so it looks for due jobs.
///
/// Without a poll strategy an idle apalis-redis worker looks for jobs only when its heartbeat timer
/// wakes it (every 5 s), since every push lands in the scheduled set and nothing signals it.
/// apalis-core 1.0.0's `IntervalStrategy` (`poll_with_interval`) replaces its timer on firing
/// without polling the new one, so its next wake-up exists only if the backend polls the strategy
/// again; it does so today, after each fetch round trip. This one re-arms its tokio `Sleep` and
/// polls it until it is pending, so a wake-up is always scheduled whatever the backend does.
pub struct EveryInterval {
    every: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl EveryInterval {
    pub fn new(every: Duration) -> Self {
        Self { every, sleep: Box::pin(tokio::time::sleep(every)) }
    }
}

impl PollStrategy for EveryInterval {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;
        while self.sleep.as_mut().poll(cx).is_ready() {
            fired = true;
            let next = tokio::time::Instant::now() + self.every;
            self.sleep.as_mut().reset(next);
        }
        if fired { Poll::Ready(Some(())) } else { Poll::Pending }
    }
}
