//! `noop`: exercises the queue machinery for tests and benchmarks (see `shared::jobs::noop`).

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use shared::Infra;
use shared::effects::{Effect, perform_once_checked};
use shared::jobs::noop::Noop;

use crate::queue::JobCtx;

/// Optionally counts the run, sleeps, fails on purpose, then performs its effect once per
/// idempotency key. With `count_effects` the effect is a counter in Redis, which a takeover of a dead
/// holder's claim reads to learn whether the effect already happened.
pub async fn run(infra: Infra, job: Noop, ctx: JobCtx) -> shared::Result<()> {
    if job.count_runs {
        let mut conn = infra.redis.clone();
        let _: i64 = conn.hincr(format!("{}:noop:runs", infra.prefix()), job.id, 1).await?;
    }
    if let Some(ms) = job.sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let failing = job.fail.as_deref().filter(|_| job.fail_attempts.is_none_or(|n| ctx.attempt <= n));
    match failing {
        None => {}
        Some("transient") => return Err(shared::Error::Unavailable(format!("noop {} fails for now", job.id))),
        Some("permanent") => return Err(shared::Error::NotFound("noop subject")),
        Some("panic") => panic!("noop {} panics on purpose", job.id),
        Some(other) => return Err(shared::Error::invalid_body("fail", format!("unknown failure mode {other:?}"))),
    }
    if let Some(key) = job.effect_key.as_deref() {
        let effect = Effect { key, kind: "noop", broker_id: job.broker_id, lead_id: None };
        let holder = format!("{}/{}", ctx.worker, ctx.task_id);
        let lease = Duration::from_millis(job.lease_ms.unwrap_or(60_000));
        let effects_key = format!("{}:noop:effects", infra.prefix());
        let check = || async {
            if !job.count_effects {
                return Ok(None);
            }
            let mut conn = infra.redis.clone();
            let performed: Option<i64> = conn.hget(&effects_key, job.id).await?;
            Ok(performed.filter(|n| *n > 0).map(|_| json!({"id": job.id})))
        };
        let perform = || async {
            if job.count_effects {
                let mut conn = infra.redis.clone();
                let _: i64 = conn.hincr(&effects_key, job.id, 1).await?;
            }
            Ok(json!({"id": job.id}))
        };
        perform_once_checked(&infra.db, effect, &holder, lease, check, perform).await?;
    }
    Ok(())
}
