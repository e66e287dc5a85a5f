//! Idempotent side effects. Every outbound effect (a message, a call, a calendar event) runs through
//! [`perform_once`] under an idempotency key, so a job retry, a redelivery after a worker crash or a
//! dead-job retry performs it at most once and returns the first result instead.
//!
//! The key is claimed in PostgreSQL before the effect runs and marked done with its result after.
//! A claim older than its lease is taken over (its holder is presumed dead), so pick a lease longer
//! than the effect's own time-out.
//!
//! A holder that dies between performing the effect and recording it leaves a stale claim whose
//! effect may or may not have happened. Where the provider can be asked ("is there an event with
//! this id?"), [`perform_once_checked`] asks it before performing again, so the effect happens
//! exactly once even then; plain [`perform_once`] performs it again (at least once in that window,
//! which is the few milliseconds between the provider's answer and our record).

use std::future::Future;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;

use crate::error::{Error, Result};

/// What an effect is and whom it concerns.
#[derive(Clone, Copy, Debug)]
pub struct Effect<'a> {
    pub key: &'a str,
    pub kind: &'a str,
    pub broker_id: Option<i64>,
    pub lead_id: Option<i64>,
}

/// The outcome of [`perform_once`].
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// This call performed the effect; its result was recorded.
    Performed(Value),
    /// An earlier call performed it; this is the recorded result.
    AlreadyDone(Value),
}

impl Outcome {
    pub fn result(&self) -> &Value {
        match self {
            Outcome::Performed(v) | Outcome::AlreadyDone(v) => v,
        }
    }
}

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Runs `perform` unless the key was performed already. While another holder's claim is fresh the
/// call fails with 409 `effect_in_progress` (a transient error: retry later). When `perform` fails,
/// the claim is released so a retry can try again.
pub async fn perform_once<F, Fut>(
    db: &DatabaseConnection,
    effect: Effect<'_>,
    holder: &str,
    lease: Duration,
    perform: F,
) -> Result<Outcome>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Value>>,
{
    perform_once_checked(db, effect, holder, lease, || async { Ok(None) }, perform).await
}

/// [`perform_once`], but a claim taken over from a holder that died first asks `check` whether the
/// effect already happened: `Some(result)` is recorded as done (and returned as `AlreadyDone`)
/// without performing it again; `None` performs it.
pub async fn perform_once_checked<C, CFut, F, Fut>(
    db: &DatabaseConnection,
    effect: Effect<'_>,
    holder: &str,
    lease: Duration,
    check: C,
    perform: F,
) -> Result<Outcome>
where
    C: FnOnce() -> CFut,
    CFut: Future<Output = Result<Option<Value>>>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Value>>,
{
    if effect.key.is_empty() || effect.key.len() > 255 {
        return Err(Error::internal(anyhow::anyhow!("idempotency keys have 1 to 255 characters")));
    }
    let claimed = db
        .query_one_raw(stmt(
            "INSERT INTO performed_effects (idempotency_key, kind, broker_id, lead_id, claimed_by) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (idempotency_key) DO UPDATE SET claimed_by = EXCLUDED.claimed_by, claimed_at = now() \
               WHERE performed_effects.status = 'claimed' \
                 AND performed_effects.claimed_at < now() - make_interval(secs => $6) \
             RETURNING (xmax = 0) AS fresh",
            vec![
                effect.key.into(),
                effect.kind.into(),
                effect.broker_id.into(),
                effect.lead_id.into(),
                holder.into(),
                lease.as_secs_f64().into(),
            ],
        ))
        .await?;
    let taken_over = match &claimed {
        Some(row) => !row.try_get::<bool>("", "fresh")?,
        None => false,
    };
    if claimed.is_none() {
        let row = db
            .query_one_raw(stmt(
                "SELECT status, result FROM performed_effects WHERE idempotency_key = $1",
                vec![effect.key.into()],
            ))
            .await?;
        return match row {
            Some(r) if r.try_get::<String>("", "status")? == "done" => {
                Ok(Outcome::AlreadyDone(r.try_get::<Option<Value>>("", "result")?.unwrap_or(Value::Null)))
            }
            _ => Err(Error::conflict("effect_in_progress", format!("effect {} is being performed", effect.key))),
        };
    }
    // From here the claim must be resolved (done, or released on failure) while this holder still
    // owns it: a claim left behind blocks every retry with `effect_in_progress` until its lease
    // ends, and is then performed again. So a database that is briefly unreachable is waited for.
    let patience = lease / 2;
    if taken_over {
        tracing::warn!(key = effect.key, kind = effect.kind, "taking over the stale claim of a holder that died");
        if let Some(result) = check().await? {
            record_done(db, effect.key, holder, &result, patience).await?;
            return Ok(Outcome::AlreadyDone(result));
        }
    }
    match perform().await {
        Ok(result) => {
            record_done(db, effect.key, holder, &result, patience).await?;
            Ok(Outcome::Performed(result))
        }
        Err(e) => {
            let release = stmt(
                "DELETE FROM performed_effects WHERE idempotency_key = $1 AND claimed_by = $2 AND status = 'claimed'",
                vec![effect.key.into(), holder.into()],
            );
            execute_patiently(db, release, patience).await?;
            Err(e)
        }
    }
}

async fn record_done(
    db: &DatabaseConnection,
    key: &str,
    holder: &str,
    result: &Value,
    patience: Duration,
) -> Result<()> {
    let done = stmt(
        "UPDATE performed_effects SET status = 'done', result = $2, completed_at = now() \
         WHERE idempotency_key = $1 AND claimed_by = $3",
        vec![key.into(), result.clone().into(), holder.into()],
    );
    execute_patiently(db, done, patience).await
}

/// Runs `statement`, trying again while the database is unreachable, for up to `patience`.
async fn execute_patiently(db: &DatabaseConnection, statement: Statement, patience: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(100);
    loop {
        match db.execute_raw(statement.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if crate::db::is_connection_error(&e) && tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %e, "the database is unreachable while an effect is recorded; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
