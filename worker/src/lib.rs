//! The Corredor worker as a library: `run` connects to Redis, announces itself with a heartbeat and
//! runs until `shutdown` resolves. Queue consumers are registered here as job types arrive.

use std::future::Future;
use std::time::Duration;

use redis::AsyncCommands;
use shared::Settings;

/// How often the worker refreshes its heartbeat key; the key lives three intervals.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A name unique to this live process (`host-pid`).
pub fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Redis key of a worker's heartbeat.
pub fn heartbeat_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:workers:{name}")
}

pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let redis = shared::redis_conn::connect(&settings.redis_url)?;
    let name = worker_name();
    let key = heartbeat_key(&settings.redis_prefix, &name);
    tracing::info!(worker = %name, concurrency = settings.worker_concurrency, "worker started");
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let mut conn = redis.clone();
                let beat: redis::RedisResult<()> = conn
                    .set_ex(&key, chrono::Utc::now().to_rfc3339(), HEARTBEAT.as_secs() * 3)
                    .await;
                if let Err(e) = beat {
                    tracing::warn!(error = %e, "heartbeat failed; Redis unavailable");
                }
            }
        }
    }
    let mut conn = redis.clone();
    let _: redis::RedisResult<()> = conn.del(&key).await;
    tracing::info!(worker = %name, "worker stopped");
    Ok(())
}
