//! Real-time events: published to Redis channels that every API instance relays to its WebSockets.

use redis::aio::ConnectionManager;
use serde_json::{Value, json};

/// Channel of a broker's events.
pub fn broker_channel(prefix: &str, broker_id: i64) -> String {
    format!("{prefix}:ws:broker:{broker_id}")
}

/// Channel of one user's events.
pub fn user_channel(prefix: &str, broker_id: i64, user_id: i64) -> String {
    format!("{prefix}:ws:user:{broker_id}:{user_id}")
}

/// The frame a socket receives: `{event, data, ts}`.
pub fn frame(event: &str, data: Value) -> Value {
    json!({"event": event, "data": data, "ts": chrono::Utc::now().to_rfc3339()})
}

/// Publishes an event to a broker's channel. Best effort: live events are a convenience, so a Redis
/// failure is logged and never fails the request that caused the event.
pub async fn publish_to_broker(redis: &ConnectionManager, prefix: &str, broker_id: i64, event: &str, data: Value) {
    let mut conn = redis.clone();
    let payload = frame(event, data).to_string();
    let res: redis::RedisResult<i64> =
        redis::cmd("PUBLISH").arg(broker_channel(prefix, broker_id)).arg(payload).query_async(&mut conn).await;
    if let Err(e) = res {
        tracing::warn!(error = %e, event, broker_id, "could not publish event");
    }
}

/// Publishes an event to one user's channel (best effort, like [`publish_to_broker`]).
pub async fn publish_to_user(
    redis: &ConnectionManager,
    prefix: &str,
    broker_id: i64,
    user_id: i64,
    event: &str,
    data: Value,
) {
    let mut conn = redis.clone();
    let payload = frame(event, data).to_string();
    let res: redis::RedisResult<i64> =
        redis::cmd("PUBLISH").arg(user_channel(prefix, broker_id, user_id)).arg(payload).query_async(&mut conn).await;
    if let Err(e) = res {
        tracing::warn!(error = %e, event, broker_id, user_id, "could not publish event");
    }
}
