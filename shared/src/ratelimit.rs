//! Fixed-window rate limits kept in Redis, so every API instance shares one budget.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;

use crate::error::{Error, Result};

/// One budget: at most `limit` hits per `window_secs` for a key.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub name: &'static str,
    pub limit: u32,
    pub window_secs: u64,
}

/// Counts a hit of `subject` against `limit`; over budget → 429 with the seconds until the window ends.
/// Redis failures fail open (logged): an outage of the limiter must not take the API down.
pub async fn hit(redis: &ConnectionManager, prefix: &str, limit: Limit, subject: &str) -> Result<()> {
    if limit.limit == 0 {
        return Ok(());
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let window = now / limit.window_secs;
    let key = format!("{prefix}:rl:{}:{subject}:{window}", limit.name);
    let mut conn = redis.clone();
    let res: redis::RedisResult<(u64,)> = redis::pipe()
        .atomic()
        .incr(&key, 1u64)
        .expire(&key, limit.window_secs as i64 + 1)
        .ignore()
        .query_async(&mut conn)
        .await;
    match res {
        Ok((count,)) if count > u64::from(limit.limit) => {
            Err(Error::RateLimited { retry_after: ((window + 1) * limit.window_secs).saturating_sub(now).max(1) })
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, limit = limit.name, "rate limiter unavailable; allowing request");
            Ok(())
        }
    }
}
