//! Dead jobs (the dead-letter queue): recording a job that exhausted its retries or failed
//! permanently, and the admin use cases — list with counts, detail, retry (re-enqueue the original
//! payload, so its idempotency keys are kept), discard with a reason, and bulk versions of both.
//! ADMIN reaches its own broker's dead jobs; SUPERADMIN all of them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, Set, Statement,
};
use serde_json::{Value, json};

use crate::ctx::{Ctx, Role};
use crate::entities::{dead_jobs, users};
use crate::error::{Error, Result};
use crate::{Infra, audit, events};

/// At most this many dead jobs are acted on by one bulk call.
pub const BULK_CAP: u64 = 1_000;

/// A job the worker gave up on.
#[derive(Clone, Debug)]
pub struct DeadJob {
    pub queue: String,
    pub task_id: String,
    pub payload: Value,
    pub broker_id: Option<i64>,
    pub lead_id: Option<i64>,
    pub attempts: u32,
    /// Every attempt's failure, oldest first.
    pub errors: Vec<(DateTime<Utc>, String)>,
}

/// Stores a dead job (idempotent per task id: a redelivered failure updates the same row) and tells
/// the broker's admins over WebSocket (`job_failed`).
pub async fn record(infra: &Infra, job: DeadJob) -> Result<i64> {
    let errors: Vec<Value> = job.errors.iter().map(|(at, e)| json!({"at": at.to_rfc3339(), "error": e})).collect();
    let last_error = job.errors.last().map(|(_, e)| e.clone()).unwrap_or_default();
    // The broker or lead may be gone by now: keep the dead job, drop the dangling link.
    let row = infra
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO dead_jobs (queue, task_id, payload, broker_id, lead_id, attempts, errors, last_error) \
             VALUES ($1, $2, $3, (SELECT id FROM brokers WHERE id = $4), (SELECT id FROM leads WHERE id = $5), $6, $7, $8) \
             ON CONFLICT (task_id) DO UPDATE SET attempts = EXCLUDED.attempts, errors = EXCLUDED.errors, \
               last_error = EXCLUDED.last_error, status = 'dead', failed_at = now() \
             RETURNING id",
            [
                job.queue.clone().into(),
                job.task_id.clone().into(),
                job.payload.clone().into(),
                job.broker_id.into(),
                job.lead_id.into(),
                i32::try_from(job.attempts).unwrap_or(i32::MAX).into(),
                Value::Array(errors).into(),
                last_error.clone().into(),
            ],
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("dead job insert returned nothing")))?;
    let id: i64 = row.try_get("", "id")?;
    if let Some(broker_id) = job.broker_id {
        let admins: Vec<i64> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(users::Column::BrokerId.eq(broker_id))
            .filter(users::Column::Role.eq(Role::Admin.as_str()))
            .filter(users::Column::IsActive.eq(true))
            .into_tuple()
            .all(&infra.db)
            .await?;
        let data = json!({"id": id, "queue": job.queue, "lead_id": job.lead_id, "attempts": job.attempts, "error": last_error});
        for admin in admins {
            events::publish_to_user(&infra.redis, infra.prefix(), broker_id, admin, "job_failed", data.clone()).await;
        }
    }
    Ok(id)
}

/// Raw list filters, as the client sent them.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Filter {
    pub queue: Option<String>,
    pub status: Option<String>,
    pub broker_id: Option<i64>,
    pub error: Option<String>,
    pub lead_id: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

const STATUSES: [&str; 3] = ["dead", "requeued", "discarded"];

/// Dead jobs the caller may see, narrowed by `f`.
fn scoped(ctx: &Ctx, f: &Filter) -> Result<Select<dead_jobs::Entity>> {
    ctx.require_admin()?;
    let mut cond = Condition::all();
    if ctx.is_superadmin() {
        if let Some(b) = f.broker_id {
            cond = cond.add(dead_jobs::Column::BrokerId.eq(b));
        }
    } else {
        let own = ctx.own_broker()?;
        if f.broker_id.is_some_and(|b| b != own) {
            return Err(Error::NotFound("Broker"));
        }
        cond = cond.add(dead_jobs::Column::BrokerId.eq(own));
    }
    if let Some(q) = f.queue.as_deref().filter(|q| !q.is_empty()) {
        cond = cond.add(dead_jobs::Column::Queue.eq(q));
    }
    if let Some(s) = f.status.as_deref().filter(|s| !s.is_empty()) {
        if !STATUSES.contains(&s) {
            return Err(Error::invalid_query("status", "status must be one of: dead, requeued, discarded"));
        }
        cond = cond.add(dead_jobs::Column::Status.eq(s));
    }
    if let Some(e) = f.error.as_deref().filter(|e| !e.is_empty()) {
        let pattern = format!("%{}%", e.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        cond = cond.add(Expr::col(dead_jobs::Column::LastError).ilike(pattern));
    }
    if let Some(l) = f.lead_id {
        cond = cond.add(dead_jobs::Column::LeadId.eq(l));
    }
    if let Some(s) = f.since {
        cond = cond.add(dead_jobs::Column::FailedAt.gte(s));
    }
    if let Some(u) = f.until {
        cond = cond.add(dead_jobs::Column::FailedAt.lte(u));
    }
    Ok(dead_jobs::Entity::find().filter(cond))
}

/// Counts by queue and by status of what the caller may see (ignoring the queue/status filters).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    pub by_queue: Vec<(String, u64)>,
    pub by_status: Vec<(String, u64)>,
}

pub async fn list(
    db: &impl ConnectionTrait,
    ctx: &Ctx,
    f: &Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<dead_jobs::Model>, u64, Counts)> {
    let q = scoped(ctx, f)?;
    let total = q.clone().count(db).await?;
    let rows = q
        .order_by_desc(dead_jobs::Column::FailedAt)
        .order_by_desc(dead_jobs::Column::Id)
        .offset(crate::db::offset(offset))
        .limit(limit)
        .all(db)
        .await?;
    let unfiltered = Filter { queue: None, status: None, ..f.clone() };
    let group = |col: dead_jobs::Column| {
        scoped(ctx, &unfiltered).map(|q| {
            q.select_only().column(col).column_as(dead_jobs::Column::Id.count(), "n").group_by(col).order_by_asc(col)
        })
    };
    let by_queue: Vec<(String, i64)> = group(dead_jobs::Column::Queue)?.into_tuple().all(db).await?;
    let by_status: Vec<(String, i64)> = group(dead_jobs::Column::Status)?.into_tuple().all(db).await?;
    let to_u64 =
        |v: Vec<(String, i64)>| v.into_iter().map(|(k, n)| (k, u64::try_from(n).unwrap_or_default())).collect();
    Ok((rows, total, Counts { by_queue: to_u64(by_queue), by_status: to_u64(by_status) }))
}

/// A dead job the caller may see, else 404.
pub async fn get(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<dead_jobs::Model> {
    scoped(ctx, &Filter::default())?
        .filter(dead_jobs::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or(Error::NotFound("Dead job"))
}

/// Re-enqueues the stored payload on its queue (a new task; the payload's idempotency keys are kept,
/// so effects already performed are not performed again). Only a `dead` job can be retried.
pub async fn retry(infra: &Infra, ctx: &Ctx, id: i64) -> Result<dead_jobs::Model> {
    let job = get(&infra.db, ctx, id).await?;
    if job.status != "dead" {
        return Err(Error::conflict("task_not_dead", format!("Dead job {id} is already {}", job.status)));
    }
    let task_id = crate::jobs::enqueue_raw(infra, &job.queue, job.payload.clone()).await?;
    let broker_id = job.broker_id;
    let mut am = job.into_active_model();
    am.status = Set("requeued".into());
    am.requeued_at = Set(Some(Utc::now()));
    am.requeued_task_id = Set(Some(task_id.clone()));
    let job = am.update(&infra.db).await?;
    audit::record(
        &infra.db,
        ctx,
        audit::Entry {
            action: "dlq_retry",
            resource_type: "dead_job",
            resource_id: Some(job.id),
            broker_id,
            changes: json!({"queue": job.queue, "task_id": task_id}),
        },
    )
    .await?;
    Ok(job)
}

/// Marks a dead job discarded (kept for the record, with the reason).
pub async fn discard(infra: &Infra, ctx: &Ctx, id: i64, reason: Option<String>) -> Result<dead_jobs::Model> {
    let job = get(&infra.db, ctx, id).await?;
    if job.status == "discarded" {
        return Err(Error::conflict("task_not_dead", format!("Dead job {id} is already discarded")));
    }
    let broker_id = job.broker_id;
    let mut am = job.into_active_model();
    am.status = Set("discarded".into());
    am.discarded_at = Set(Some(Utc::now()));
    am.discard_reason = Set(reason.clone());
    let job = am.update(&infra.db).await?;
    audit::record(
        &infra.db,
        ctx,
        audit::Entry {
            action: "dlq_discard",
            resource_type: "dead_job",
            resource_id: Some(job.id),
            broker_id,
            changes: json!({"queue": job.queue, "reason": reason}),
        },
    )
    .await?;
    Ok(job)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkAction {
    Retry,
    Discard,
}

/// What a bulk call acts on: explicit ids, or everything matching a filter.
#[derive(Clone, Debug)]
pub enum Selection {
    Ids(Vec<i64>),
    Filter(Filter),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BulkReport {
    pub matched: u64,
    pub done: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Per id: `requeued` / `discarded` / `skipped` / `not_found` / `failed`.
    pub results: Vec<(i64, &'static str)>,
}

/// Retries or discards up to [`BULK_CAP`] dead jobs; with `dry_run` only counts what matches.
pub async fn bulk(
    infra: &Infra,
    ctx: &Ctx,
    action: BulkAction,
    selection: Selection,
    dry_run: bool,
    reason: Option<String>,
) -> Result<BulkReport> {
    let (ids, not_found): (Vec<i64>, Vec<i64>) = match &selection {
        Selection::Ids(ids) => {
            if ids.len() as u64 > BULK_CAP {
                return Err(Error::invalid_body("ids", format!("at most {BULK_CAP} ids per call")));
            }
            let visible: Vec<i64> = scoped(ctx, &Filter::default())?
                .select_only()
                .column(dead_jobs::Column::Id)
                .filter(dead_jobs::Column::Id.is_in(ids.clone()))
                .into_tuple()
                .all(&infra.db)
                .await?;
            let missing = ids.iter().copied().filter(|i| !visible.iter().any(|v| v == i)).collect();
            (visible, missing)
        }
        Selection::Filter(f) => {
            let ids: Vec<i64> = scoped(ctx, f)?
                .select_only()
                .column(dead_jobs::Column::Id)
                .order_by_desc(dead_jobs::Column::FailedAt)
                .order_by_desc(dead_jobs::Column::Id)
                .limit(BULK_CAP)
                .into_tuple()
                .all(&infra.db)
                .await?;
            (ids, Vec::new())
        }
    };
    let mut report = BulkReport { matched: ids.len() as u64, ..Default::default() };
    report.results.extend(not_found.iter().map(|id| (*id, "not_found")));
    if dry_run {
        return Ok(report);
    }
    for id in ids {
        let outcome = match action {
            BulkAction::Retry => retry(infra, ctx, id).await.map(|_| "requeued"),
            BulkAction::Discard => discard(infra, ctx, id, reason.clone()).await.map(|_| "discarded"),
        };
        match outcome {
            Ok(status) => {
                report.done += 1;
                report.results.push((id, status));
            }
            Err(Error::Conflict { .. }) => {
                report.skipped += 1;
                report.results.push((id, "skipped"));
            }
            Err(e) => {
                tracing::warn!(error = %e, id, "bulk dead-job action failed");
                report.failed += 1;
                report.results.push((id, "failed"));
            }
        }
    }
    Ok(report)
}

/// Dead-job counts per queue and status across the caller's scope, for `/stats`.
pub async fn status_counts(db: &impl ConnectionTrait, ctx: &Ctx) -> Result<Vec<(String, String, u64)>> {
    let rows: Vec<(String, String, i64)> = scoped(ctx, &Filter::default())?
        .select_only()
        .column(dead_jobs::Column::Queue)
        .column(dead_jobs::Column::Status)
        .column_as(dead_jobs::Column::Id.count(), "n")
        .group_by(dead_jobs::Column::Queue)
        .group_by(dead_jobs::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(q, s, n)| (q, s, u64::try_from(n).unwrap_or_default())).collect())
}
