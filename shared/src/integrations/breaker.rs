//! Circuit breakers, one per provider, kept in Redis so every API and worker process sees the same
//! state (and `/health` shows it). After `threshold` consecutive transient failures the breaker
//! opens: calls fail at once with `circuit_open` (a transient error, so jobs retry later) instead of
//! waiting on a provider that is down. After `cooldown` it is half-open: one trial call goes through;
//! its success closes the breaker, its failure opens it again.
//!
//! Only transient provider failures count (5xx, time-outs, 429): a 4xx is about our request, not the
//! provider's health. When Redis itself is unreachable the breaker lets calls through.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::infra::Infra;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaker {
    /// Also the `service` of the errors it raises and its key in `/health`.
    pub name: &'static str,
    pub threshold: u32,
    pub cooldown: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// The breakers `/health` reports (reference §12.3: llm 5/30 s, calendar 3/60 s, telegram 5/60 s).
pub const LLM: Breaker = Breaker { name: "llm", threshold: 5, cooldown: Duration::from_secs(30) };
pub const EMBEDDINGS: Breaker = Breaker { name: "embeddings", threshold: 5, cooldown: Duration::from_secs(30) };
pub const CALENDAR: Breaker = Breaker { name: "calendar", threshold: 3, cooldown: Duration::from_secs(60) };
pub const TELEGRAM: Breaker = Breaker { name: "telegram", threshold: 5, cooldown: Duration::from_secs(60) };
pub const WHATSAPP: Breaker = Breaker { name: "whatsapp", threshold: 5, cooldown: Duration::from_secs(60) };
pub const VAPI: Breaker = Breaker { name: "vapi", threshold: 5, cooldown: Duration::from_secs(60) };

pub const ALL: [Breaker; 6] = [LLM, EMBEDDINGS, CALENDAR, TELEGRAM, WHATSAPP, VAPI];

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether `err` says something about the provider's health.
fn counts(err: &Error) -> bool {
    matches!(err, Error::Upstream { permanent: false, code, .. } if *code != "circuit_open")
}

impl Breaker {
    /// A variant of this breaker for one provider (`llm:gemini`), with the same limits.
    pub const fn named(self, name: &'static str) -> Self {
        Breaker { name, ..self }
    }

    fn key(&self, prefix: &str) -> String {
        format!("{prefix}:breaker:{}", self.name)
    }

    /// The state as of now (`Closed` when Redis cannot be read).
    pub async fn state(&self, infra: &Infra) -> State {
        let mut conn = infra.redis.clone();
        let opened: redis::RedisResult<Option<i64>> =
            redis::cmd("HGET").arg(self.key(infra.prefix())).arg("opened_at").query_async(&mut conn).await;
        match opened {
            Ok(Some(at)) if at > 0 => self.state_at(at, now_ms()),
            _ => State::Closed,
        }
    }

    fn state_at(&self, opened_at_ms: i64, now_ms: i64) -> State {
        if now_ms < opened_at_ms + self.cooldown.as_millis() as i64 { State::Open } else { State::HalfOpen }
    }

    /// Runs `call` unless the breaker is open, and records its outcome.
    pub async fn call<T, F, Fut>(&self, infra: &Infra, call: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let key = self.key(infra.prefix());
        let mut conn = infra.redis.clone();
        let read: redis::RedisResult<(Option<i64>, Option<i64>)> =
            redis::cmd("HMGET").arg(&key).arg("failures").arg("opened_at").query_async(&mut conn).await;
        let (failures, opened_at) = read.unwrap_or((None, None));
        let (failures, opened_at) = (failures.unwrap_or(0), opened_at.unwrap_or(0));
        if opened_at > 0 {
            match self.state_at(opened_at, now_ms()) {
                State::Open => return Err(self.open_error()),
                _ => {
                    // Half-open: one trial at a time, across processes.
                    let trial: redis::RedisResult<Option<String>> = redis::cmd("SET")
                        .arg(format!("{key}:trial"))
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(self.cooldown.as_millis() as u64)
                        .query_async(&mut conn)
                        .await;
                    if matches!(trial, Ok(None)) {
                        return Err(self.open_error());
                    }
                }
            }
        }
        let outcome = call().await;
        match &outcome {
            Ok(_) if failures > 0 || opened_at > 0 => self.reset(infra).await,
            Err(e) if counts(e) => self.record_failure(infra, opened_at > 0).await,
            _ => {}
        }
        outcome
    }

    fn open_error(&self) -> Error {
        Error::Upstream {
            service: self.name,
            code: "circuit_open",
            status: None,
            detail: format!("the {} circuit is open after repeated failures; retrying shortly", self.name),
            permanent: false,
        }
    }

    async fn reset(&self, infra: &Infra) {
        let key = self.key(infra.prefix());
        let mut conn = infra.redis.clone();
        let res: redis::RedisResult<()> =
            redis::pipe().del(&key).del(format!("{key}:trial")).query_async(&mut conn).await;
        match res {
            Ok(()) => tracing::info!(breaker = self.name, "circuit closed"),
            Err(e) => tracing::warn!(breaker = self.name, error = %e, "could not reset a circuit breaker"),
        }
    }

    async fn record_failure(&self, infra: &Infra, was_half_open: bool) {
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r#"
                local n = redis.call("HINCRBY", KEYS[1], "failures", 1)
                local opened = tonumber(redis.call("HGET", KEYS[1], "opened_at") or "0")
                if n >= tonumber(ARGV[1]) or ARGV[3] == "1" then
                    if opened == 0 or ARGV[3] == "1" then
                        redis.call("HSET", KEYS[1], "opened_at", ARGV[2])
                        redis.call("DEL", KEYS[2])
                        opened = -1
                    end
                end
                redis.call("PEXPIRE", KEYS[1], ARGV[4])
                return opened
                "#,
            )
        });
        let key = self.key(infra.prefix());
        let mut conn = infra.redis.clone();
        // The record outlives the cooldown long enough to be seen, then a quiet provider starts afresh.
        let ttl_ms = (self.cooldown.as_millis() as u64).saturating_mul(10).max(60_000);
        let res: redis::RedisResult<i64> = SCRIPT
            .key(&key)
            .key(format!("{key}:trial"))
            .arg(self.threshold)
            .arg(now_ms())
            .arg(if was_half_open { "1" } else { "0" })
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await;
        match res {
            Ok(-1) => tracing::warn!(breaker = self.name, threshold = self.threshold, "circuit opened"),
            Ok(_) => {}
            Err(e) => tracing::warn!(breaker = self.name, error = %e, "could not record a provider failure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opened_breaker_is_open_for_its_cooldown_then_half_open() {
        let b = Breaker { name: "t", threshold: 2, cooldown: Duration::from_secs(30) };
        assert_eq!(b.state_at(1_000, 1_000), State::Open);
        assert_eq!(b.state_at(1_000, 30_999), State::Open);
        assert_eq!(b.state_at(1_000, 31_000), State::HalfOpen);
    }

    #[test]
    fn only_transient_provider_failures_count() {
        assert!(counts(&Error::upstream_transient("x", Some(503), "down")));
        assert!(!counts(&Error::upstream_permanent("x", "upstream_rejected", Some(400), "bad")));
        assert!(!counts(&Error::NotFound("Lead")));
        assert!(!counts(&LLM.open_error()));
    }
}
