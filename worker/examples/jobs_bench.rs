//! Job queue throughput (bench scenario `jobs_throughput`, see bench/README.md).
//!
//!   cargo run --release -p worker --example jobs_bench            # controller: every phase
//!   jobs_bench worker [INSTANCES]                                  # worker-only mode (spawned by the controller)
//!   jobs_bench crash                                               # scenario `jobs_crash` (below)
//!
//! The controller enqueues `BENCH_JOBS` (20 000) `Noop` jobs (no effect key) through
//! `shared::jobs::enqueue` from `BENCH_ENQUEUE_TASKS` (16) concurrent tasks and times it; then it
//! spawns this example in worker-only mode and times execution until `jobs::stats(.., "noop").done`
//! reaches the job count. Phases, each on a fresh Redis prefix `{REDIS_PREFIX}:jobs-bench-{pid}:{phase}`
//! with its own freshly enqueued jobs:
//!
//! - `one_process`: one worker process;
//! - `two_processes`: two worker processes;
//! - `two_in_one_process`: one process running two `worker::run_with` (for comparison).
//!
//! A worker process runs `worker::run_with` with no schedules and `WORKER_CONCURRENCY` from the
//! environment; the execution clock starts when the first worker process has connected (it prints
//! `ready`). Needs PostgreSQL (`DATABASE_URL`, only for `Infra::connect`) and Redis. Prints progress on
//! stderr and one `BENCH_JSON {...}` line on stdout. Deletes its Redis keys at the end.
//!
//! `crash` (scenario `jobs_crash`): enqueues `BENCH_CRASH_JOBS` (10 000) `Noop` jobs that each
//! perform one effect through `perform_once` (key `crash-{pid}-{i}`) and count every performance
//! in Redis, starts two worker processes, SIGKILLs one once `BENCH_CRASH_KILL_AT` (30 %) of the
//! jobs are done, and waits for the rest. Then it counts: jobs whose effect never happened (lost),
//! effects performed more than once (duplicated), jobs run more than once (redelivered: the killed
//! worker's in-flight ones), and the time from the kill to the last job.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use shared::jobs::{self, noop::Noop};
use shared::{Infra, Settings};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().with_context(|| format!("{name} must be a number")),
        _ => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => {
            let instances = args.get(1).map(|s| s.parse::<usize>()).transpose()?.unwrap_or(1).max(1);
            worker_mode(instances).await
        }
        None | Some("all") => controller().await,
        Some("crash") => crash().await,
        Some(other) => bail!("unknown mode {other:?}; use no argument, `worker [INSTANCES]` or `crash`"),
    }
}

/// Worker-only mode: `instances` × `worker::run_with` (no schedules) until stdin closes.
async fn worker_mode(instances: usize) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    shared::telemetry::init(&settings.log_format);
    let infra = Infra::connect(settings).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut runs = Vec::new();
    for i in 0..instances {
        let name = format!("{}-{i}", worker::worker_name());
        let mut rx = stop_rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        runs.push(tokio::spawn(worker::run_with(infra.clone(), name, Vec::new(), shutdown)));
    }
    println!("ready");
    // The controller closes our stdin to stop us.
    // (a thread: tokio's `io-std` feature is not enabled in this workspace)
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while stdin.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        let _ = eof_tx.send(());
    });
    let _ = eof_rx.await;
    let _ = stop_tx.send(true);
    for r in runs {
        r.await??;
    }
    Ok(())
}

struct Phase {
    name: &'static str,
    processes: usize,
    instances_per_process: usize,
}

const PHASES: &[Phase] = &[
    Phase { name: "one_process", processes: 1, instances_per_process: 1 },
    Phase { name: "two_processes", processes: 2, instances_per_process: 1 },
    Phase { name: "two_in_one_process", processes: 1, instances_per_process: 2 },
];

async fn controller() -> anyhow::Result<()> {
    let base = Settings::from_env()?;
    shared::telemetry::init(&base.log_format);
    let n = env_num("BENCH_JOBS", 20_000)?.max(1);
    let tasks = env_num("BENCH_ENQUEUE_TASKS", 16)?.clamp(1, 1024);
    let timeout = Duration::from_secs(env_num("BENCH_JOBS_TIMEOUT_S", 180)?);
    let stall = Duration::from_secs(env_num("BENCH_JOBS_STALL_S", 10)?.max(1));
    let concurrency = base.worker_concurrency;
    let run_prefix = format!("{}:jobs-bench-{}", base.redis_prefix, std::process::id());
    let root = Infra::connect(base.clone()).await?;

    let mut phases = serde_json::Map::new();
    let mut enqueue_rates = Vec::new();
    let mut errors = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    let mut problems: Vec<String> = Vec::new();
    for phase in PHASES {
        let prefix = format!("{run_prefix}:{}", phase.name);
        let mut settings = base.clone();
        settings.redis_prefix = prefix.clone();
        let infra = Infra::new(root.db.clone(), root.redis.clone(), settings);
        let result = run_phase(&infra, phase, n, tasks, timeout, stall).await;
        cleanup(&infra, &prefix).await;
        match result {
            Ok(r) => {
                enqueue_rates.push(r["enqueue_jobs_per_sec"].as_f64().unwrap_or(0.0));
                errors += r["missing"].as_u64().unwrap_or(0) + r["dead"].as_u64().unwrap_or(0);
                let stalled = r["stalled"] == true;
                if let Some(p) = r["problem"].as_str() {
                    problems.push(format!("{}: {p}", phase.name));
                }
                phases.insert(phase.name.into(), r);
                if stalled {
                    // The next phases would get stuck the same way.
                    eprintln!("[jobs_bench] skipping the remaining phases");
                    break;
                }
            }
            Err(e) => {
                eprintln!("[jobs_bench] {}: {e:#}", phase.name);
                phases.insert(phase.name.into(), json!({"error": format!("{e:#}")}));
                failure = Some(e);
                break;
            }
        }
    }
    let rate = |p: &str| phases.get(p).and_then(|r| r.get("exec_jobs_per_sec")).cloned().unwrap_or(Value::Null);
    let out = json!({
        "jobs": n,
        "enqueue_tasks": tasks,
        "worker_concurrency": concurrency,
        // The first phase's enqueue (an empty queue), the figure the target is about.
        "enqueue_jobs_per_sec": enqueue_rates.first(),
        "enqueue_jobs_per_sec_all_phases": enqueue_rates,
        "exec_jobs_per_sec_1proc": rate("one_process"),
        "exec_jobs_per_sec_2proc": rate("two_processes"),
        "exec_jobs_per_sec_2inproc": rate("two_in_one_process"),
        "errors": errors,
        "phases": phases,
        "failed": failure.as_ref().map(|e| format!("{e:#}")),
        "problems": problems,
    });
    println!("BENCH_JSON {out}");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn crash() -> anyhow::Result<()> {
    let base = Settings::from_env()?;
    shared::telemetry::init(&base.log_format);
    let n = env_num("BENCH_CRASH_JOBS", 10_000)?.max(10);
    let kill_at = env_num("BENCH_CRASH_KILL_AT", 30)?.clamp(1, 90) * n / 100;
    let timeout = Duration::from_secs(env_num("BENCH_JOBS_TIMEOUT_S", 300)?);
    let pid = std::process::id();
    let prefix = format!("{}:jobs-crash-{pid}", base.redis_prefix);
    let mut settings = base.clone();
    settings.redis_prefix = prefix.clone();
    let infra = Infra::connect(settings).await?;
    let keys = format!("crash-{pid}-%");
    let result = crash_run(&infra, n, kill_at, timeout, pid).await;
    cleanup(&infra, &prefix).await;
    let _ = infra
        .db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "DELETE FROM performed_effects WHERE idempotency_key LIKE $1",
            [keys.into()],
        ))
        .await;
    let out = result?;
    println!("BENCH_JSON {out}");
    Ok(())
}

async fn crash_run(infra: &Infra, n: u64, kill_at: u64, timeout: Duration, pid: u32) -> anyhow::Result<Value> {
    use redis::AsyncCommands;
    let concurrency = infra.settings.worker_concurrency;
    for i in 0..n {
        let job = Noop {
            effect_key: Some(format!("crash-{pid}-{i}")),
            count_runs: true,
            count_effects: true,
            sleep_ms: Some(2),
            lease_ms: Some(5_000),
            ..Noop::new(i)
        };
        jobs::enqueue(infra, job).await?;
    }
    eprintln!("[jobs_bench] crash: enqueued {n} jobs; starting two worker processes");
    let (mut a, ready_a) =
        spawn_worker_with(infra.prefix(), 1, &[("JOB_BACKOFF_BASE_MS", "500"), ("JOB_BACKOFF_MAX_MS", "2000")])?;
    let (mut b, ready_b) =
        spawn_worker_with(infra.prefix(), 1, &[("JOB_BACKOFF_BASE_MS", "500"), ("JOB_BACKOFF_MAX_MS", "2000")])?;
    for ready in [ready_a, ready_b] {
        tokio::time::timeout(Duration::from_secs(30), ready).await.context("a worker did not start")??;
    }
    let start = Instant::now();
    let done = |s: jobs::QueueStats| s.done + s.dead;
    loop {
        let s = jobs::stats(infra, "noop").await?;
        if done(s) >= kill_at {
            break;
        }
        if start.elapsed() > timeout {
            bail!("only {} jobs done before the kill", done(s));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.start_kill()?; // SIGKILL
    let killed_at = Instant::now();
    let done_at_kill = done(jobs::stats(infra, "noop").await?);
    let _ = a.wait().await;
    eprintln!("[jobs_bench] crash: killed worker A with {done_at_kill} jobs done");
    let stats = loop {
        let s = jobs::stats(infra, "noop").await?;
        if done(s) >= n || start.elapsed() > timeout {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let end = Instant::now();
    drop(b.stdin.take());
    if tokio::time::timeout(Duration::from_secs(30), b.wait()).await.is_err() {
        let _ = b.kill().await;
    }
    let mut conn = infra.redis.clone();
    let effects: std::collections::HashMap<u64, u64> = conn.hgetall(format!("{}:noop:effects", infra.prefix())).await?;
    let runs: std::collections::HashMap<u64, u64> = conn.hgetall(format!("{}:noop:runs", infra.prefix())).await?;
    let recorded = infra
        .db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) FILTER (WHERE status = 'done') AS done FROM performed_effects WHERE idempotency_key LIKE $1",
            [format!("crash-{pid}-%").into()],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "done"))
        .transpose()?
        .unwrap_or(0);
    let lost = (0..n).filter(|i| !effects.contains_key(i)).count() as u64;
    let duplicated = effects.values().filter(|c| **c > 1).count() as u64;
    let redelivered = runs.values().filter(|c| **c > 1).count() as u64;
    let exec_s = (end - start).as_secs_f64();
    let recovery_s = (end - killed_at).as_secs_f64();
    eprintln!(
        "[jobs_bench] crash: {} done, {} dead; lost {lost}, duplicated effects {duplicated}, redelivered {redelivered}; \
         all done {recovery_s:.1} s after the kill",
        stats.done, stats.dead
    );
    Ok(json!({
        "jobs": n,
        "worker_processes": 2,
        "worker_concurrency": concurrency,
        "done_at_kill": done_at_kill,
        "done": stats.done,
        "dead": stats.dead,
        "effects_recorded": recorded,
        "lost": lost + stats.dead,
        "duplicated_effects": duplicated,
        "redelivered": redelivered,
        "exec_s": round3(exec_s),
        "exec_jobs_per_sec": round1(n as f64 / exec_s),
        "recovery_s": round3(recovery_s),
        "errors": lost + duplicated + stats.dead,
        "note": "effects are Redis counters incremented inside perform_once (an external, non-idempotent effect); \
                 recovery_s = SIGKILL of worker A to the last job done (orphan timeout 15 s + effect lease 5 s)",
    }))
}

async fn run_phase(
    infra: &Infra,
    phase: &Phase,
    n: u64,
    tasks: u64,
    timeout: Duration,
    stall: Duration,
) -> anyhow::Result<Value> {
    // Enqueue: `tasks` concurrent enqueuers over the shared (multiplexed) Redis connection.
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let infra = infra.clone();
        handles.push(tokio::spawn(async move {
            let mut i = t;
            while i < n {
                jobs::enqueue(&infra, Noop::new(i)).await?;
                i += tasks;
            }
            Ok::<_, shared::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let enqueue_s = t0.elapsed().as_secs_f64();
    let before = jobs::stats(infra, "noop").await?;
    if before.pending != n {
        bail!("{n} jobs enqueued but the queue shows {} pending", before.pending);
    }
    let enqueue_rate = n as f64 / enqueue_s;
    eprintln!(
        "[jobs_bench] {}: enqueued {n} jobs in {enqueue_s:.3} s ({enqueue_rate:.0}/s, {tasks} tasks)",
        phase.name
    );

    // Execution.
    let mut children = Vec::new();
    for _ in 0..phase.processes {
        children.push(spawn_worker(infra.prefix(), phase.instances_per_process)?);
    }
    let mut ready_at = Vec::new();
    for (child, ready) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(30), ready).await {
            Ok(Ok(())) => ready_at.push(Instant::now()),
            other => {
                let _ = child.start_kill();
                bail!("a worker process did not report ready: {other:?}");
            }
        }
    }
    let start = ready_at.iter().min().copied().unwrap_or_else(Instant::now);
    let mut first_done: Option<Instant> = None;
    let (mut last_count, mut last_progress) = (0u64, start);
    let mut stalled = false;
    let stats = loop {
        let s = jobs::stats(infra, "noop").await?;
        let now = Instant::now();
        if s.done > 0 && first_done.is_none() {
            first_done = Some(now);
        }
        if s.done + s.dead != last_count {
            (last_count, last_progress) = (s.done + s.dead, now);
        }
        if s.done + s.dead >= n || now - start > timeout {
            break s;
        }
        // No job finished for a while: the queue is stuck (see the note in the result).
        if now - last_progress > stall {
            stalled = true;
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let end = Instant::now();
    let mut cpu_s = 0.0;
    for (child, _) in &children {
        cpu_s += child.id().map(proc_cpu_s).unwrap_or(0.0);
    }
    let exec_s = (end - start).as_secs_f64();
    // Stop the workers: closing stdin asks for a graceful shutdown.
    for (child, _) in children.iter_mut() {
        drop(child.stdin.take());
    }
    for (mut child, _) in children {
        if tokio::time::timeout(Duration::from_secs(30), child.wait()).await.is_err() {
            eprintln!("[jobs_bench] a worker process did not stop within 30 s; killing it");
            let _ = child.kill().await;
        }
    }
    let missing = n.saturating_sub(stats.done + stats.dead);
    let rate = stats.done as f64 / exec_s;
    eprintln!(
        "[jobs_bench] {}: {} done, {} dead, {missing} missing in {exec_s:.3} s: {rate:.0} jobs/s \
         (worker CPU {cpu_s:.2} s)",
        phase.name, stats.done, stats.dead
    );
    let stuck_note = if stalled {
        Some(format!(
            "no job finished for {stall:?} with {} pending, {} running: stuck. apalis-redis 1.0.0's fetch_next.lua \
             promotes every due scheduled id with one `unpack`, which Redis' Lua refuses beyond ~8000 values \
             ('too many results to unpack'), so a backlog that large is never fetched",
            stats.pending, stats.running
        ))
    } else if missing > 0 {
        Some(format!("timed out after {timeout:?} with {missing} jobs not done"))
    } else {
        None
    };
    if let Some(note) = &stuck_note {
        eprintln!("[jobs_bench] {}: {note}", phase.name);
    }
    Ok(json!({
        "processes": phase.processes,
        "run_with_per_process": phase.instances_per_process,
        "enqueue_s": round3(enqueue_s),
        "enqueue_jobs_per_sec": round1(enqueue_rate),
        "exec_s": round3(exec_s),
        "exec_jobs_per_sec": round1(rate),
        "first_done_after_ms": first_done.map(|t| round1((t - start).as_secs_f64() * 1000.0)),
        "done": stats.done,
        "dead": stats.dead,
        "missing": missing,
        "pending_at_end": stats.pending,
        "stalled": stalled,
        "problem": stuck_note,
        "workers_cpu_s": round3(cpu_s),
        "worker_cpu_ms_per_job": if stats.done > 0 { Some(round3(cpu_s * 1000.0 / stats.done as f64)) } else { None },
    }))
}

/// Spawns this example in worker-only mode; the receiver resolves when it prints `ready`. Its other
/// stdout lines (the tracing output goes to stdout) are copied to stderr, which also keeps the pipe
/// drained.
fn spawn_worker(prefix: &str, instances: usize) -> anyhow::Result<(Child, tokio::sync::oneshot::Receiver<()>)> {
    spawn_worker_with(prefix, instances, &[])
}

/// [`spawn_worker`] with extra environment variables.
fn spawn_worker_with(
    prefix: &str,
    instances: usize,
    env: &[(&str, &str)],
) -> anyhow::Result<(Child, tokio::sync::oneshot::Receiver<()>)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("worker")
        .arg(instances.to_string())
        .envs(env.iter().copied())
        .env("REDIS_PREFIX", prefix)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "ready" {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
            } else {
                eprintln!("{line}");
            }
        }
    });
    Ok((child, ready_rx))
}

/// User + system CPU seconds of a live process (Linux; 0 elsewhere).
fn proc_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15, i.e. indexes 11 and 12 after the state; USER_HZ is 100.
    (ticks(11) + ticks(12)) / 100.0
}

/// Deletes every key under `prefix:`.
async fn cleanup(infra: &Infra, prefix: &str) {
    let mut conn = infra.redis.clone();
    let mut cursor: u64 = 0;
    loop {
        let res: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await;
        let Ok((next, keys)) = res else { return };
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
