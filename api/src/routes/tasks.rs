//! `/api/v1/admin/tasks`: the dead-letter queue (SPEC §8). ADMIN sees its own broker's dead jobs,
//! SUPERADMIN all; AGENT is 403. `GET /api/v1/admin/tasks/failed` is the reference service's path.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use shared::entities::dead_jobs;
use shared::tasks::{self, BulkAction, Filter, Selection};

use super::ApiTags;
use crate::body::JsonBody;
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

pub struct TasksApi;

#[derive(Object)]
pub struct AttemptError {
    pub at: String,
    pub error: String,
}

/// A dead job.
#[derive(Object)]
pub struct DeadJobOut {
    pub id: i64,
    pub queue: String,
    /// The task id of the failed job.
    pub task_id: String,
    /// The job's ids-only payload (with its idempotency keys).
    pub payload: Value,
    pub broker_id: Option<i64>,
    pub lead_id: Option<i64>,
    pub attempts: i32,
    /// Every attempt's error, oldest first.
    pub errors: Vec<AttemptError>,
    pub last_error: String,
    /// `dead`, `requeued` or `discarded`
    pub status: String,
    pub failed_at: DateTime<Utc>,
    pub requeued_at: Option<DateTime<Utc>>,
    pub requeued_task_id: Option<String>,
    pub discarded_at: Option<DateTime<Utc>>,
    pub discard_reason: Option<String>,
}

impl From<dead_jobs::Model> for DeadJobOut {
    fn from(m: dead_jobs::Model) -> Self {
        let errors = m
            .errors
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| AttemptError {
                        at: e["at"].as_str().unwrap_or_default().to_string(),
                        error: e["error"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        DeadJobOut {
            id: m.id,
            queue: m.queue,
            task_id: m.task_id,
            payload: m.payload,
            broker_id: m.broker_id,
            lead_id: m.lead_id,
            attempts: m.attempts,
            errors,
            last_error: m.last_error,
            status: m.status,
            failed_at: m.failed_at,
            requeued_at: m.requeued_at,
            requeued_task_id: m.requeued_task_id,
            discarded_at: m.discarded_at,
            discard_reason: m.discard_reason,
        }
    }
}

#[derive(Object)]
pub struct DeadJobPage {
    pub items: Vec<DeadJobOut>,
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    /// Dead jobs per queue (all statuses) in the caller's scope and filters other than queue/status.
    pub counts_by_queue: std::collections::BTreeMap<String, u64>,
    /// Dead jobs per status in the same scope.
    pub counts_by_status: std::collections::BTreeMap<String, u64>,
}

#[derive(Object)]
pub struct TaskAction {
    /// `requeued` or `discarded`
    pub status: String,
    pub id: i64,
    /// For a retry: the id of the new task.
    pub task_id: Option<String>,
}

#[derive(ApiResponse)]
pub enum Requeued {
    /// Re-enqueued with its original payload
    #[oai(status = 202)]
    Accepted(Json<TaskAction>),
}

#[derive(Object, Default)]
pub struct BulkFilter {
    pub queue: Option<String>,
    pub status: Option<String>,
    pub broker_id: Option<i64>,
    pub error: Option<String>,
    pub lead_id: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Either `ids` or `filter` (at most 1 000 dead jobs per call).
#[derive(Object)]
pub struct BulkBody {
    #[oai(validator(max_items = 1000))]
    pub ids: Option<Vec<i64>>,
    pub filter: Option<BulkFilter>,
    /// Only count what would be affected.
    #[oai(default)]
    pub dry_run: bool,
    /// For discards.
    #[oai(validator(max_length = 1000))]
    pub reason: Option<String>,
}

#[derive(Object)]
pub struct BulkResult {
    pub id: i64,
    /// `requeued`, `discarded`, `skipped`, `not_found` or `failed`
    pub status: String,
}

#[derive(Object)]
pub struct BulkOut {
    /// Dead jobs the call matched (before acting).
    pub matched: u64,
    pub dry_run: bool,
    /// Bulk retry: how many were re-enqueued.
    pub retried: Option<u64>,
    /// Bulk discard: how many were discarded.
    pub discarded: Option<u64>,
    pub skipped: Option<u64>,
    pub failed: Option<u64>,
    pub results: Vec<BulkResult>,
}

#[derive(Object)]
pub struct DiscardBody {
    #[oai(validator(max_length = 1000))]
    pub reason: Option<String>,
}

#[derive(Object, Default)]
pub struct QueueCounts {
    pub pending: u64,
    pub running: u64,
    pub dead: u64,
    pub requeued: u64,
    pub discarded: u64,
}

#[derive(Object)]
pub struct TaskStats {
    pub queues: std::collections::BTreeMap<String, QueueCounts>,
}

impl TasksApi {
    async fn page(
        state: &AppState,
        auth: &Auth,
        filter: Filter,
        offset: u64,
        limit: u64,
    ) -> ApiResult<Json<DeadJobPage>> {
        let (rows, total, counts) = tasks::list(&state.infra.db, auth, &filter, offset, limit).await?;
        Ok(Json(DeadJobPage {
            items: rows.into_iter().map(Into::into).collect(),
            total,
            offset,
            limit,
            counts_by_queue: counts.by_queue.into_iter().collect(),
            counts_by_status: counts.by_status.into_iter().collect(),
        }))
    }

    async fn bulk(state: &AppState, auth: &Auth, action: BulkAction, b: BulkBody) -> ApiResult<Json<BulkOut>> {
        let selection = match (b.ids, b.filter) {
            (Some(ids), None) => Selection::Ids(ids),
            (None, Some(f)) => Selection::Filter(Filter {
                queue: f.queue,
                status: f.status,
                broker_id: f.broker_id,
                error: f.error,
                lead_id: f.lead_id,
                since: f.since,
                until: f.until,
            }),
            _ => return Err(shared::Error::invalid_body("ids", "send either `ids` or `filter`").into()),
        };
        let r = tasks::bulk(&state.infra, auth, action, selection, b.dry_run, b.reason).await?;
        let acted = (!b.dry_run).then_some(r.done);
        Ok(Json(BulkOut {
            matched: r.matched,
            dry_run: b.dry_run,
            retried: if action == BulkAction::Retry { acted } else { None },
            discarded: if action == BulkAction::Discard { acted } else { None },
            skipped: (!b.dry_run).then_some(r.skipped),
            failed: (!b.dry_run).then_some(r.failed),
            results: r.results.into_iter().map(|(id, s)| BulkResult { id, status: s.to_string() }).collect(),
        }))
    }
}

fn default_limit() -> u64 {
    50
}

#[OpenApi(tag = "ApiTags::Admin")]
impl TasksApi {
    /// List dead jobs, newest first, with counts per queue and status
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/v1/admin/tasks", method = "get", operation_id = "tasks_list")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(validator(max_length = 64))] queue: Query<Option<String>>,
        /// `dead`, `requeued` or `discarded`
        status: Query<Option<String>>,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
        /// Substring of the last error (case-insensitive)
        #[oai(validator(max_length = 200))]
        error: Query<Option<String>>,
        lead_id: Query<Option<i64>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        #[oai(default, validator(minimum(value = "0"), maximum(value = "10000000")))] offset: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<Json<DeadJobPage>> {
        let filter = Filter {
            queue: queue.0,
            status: status.0,
            broker_id: broker_id.0,
            error: error.0,
            lead_id: lead_id.0,
            since: since.0,
            until: until.0,
        };
        Self::page(&state, &auth, filter, offset.0, limit.0).await
    }

    /// List dead jobs (the reference service's path)
    #[oai(path = "/api/v1/admin/tasks/failed", method = "get", operation_id = "tasks_list_failed")]
    async fn list_failed(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(default, validator(minimum(value = "0"), maximum(value = "10000000")))] offset: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<Json<DeadJobPage>> {
        Self::page(&state, &auth, Filter::default(), offset.0, limit.0).await
    }

    /// Per-queue counts: pending and running jobs in Redis, dead / requeued / discarded in the DLQ
    #[oai(path = "/api/v1/admin/tasks/stats", method = "get", operation_id = "tasks_stats")]
    async fn stats(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<TaskStats>> {
        let mut queues = std::collections::BTreeMap::new();
        for (queue, status, n) in tasks::status_counts(&state.infra.db, &auth).await? {
            let entry = queues.entry(queue).or_insert_with(QueueCounts::default);
            match status.as_str() {
                "dead" => entry.dead = n,
                "requeued" => entry.requeued = n,
                _ => entry.discarded = n,
            }
        }
        if auth.is_superadmin() {
            for queue in shared::jobs::QUEUES {
                let live = shared::jobs::stats(&state.infra, queue).await?;
                let entry = queues.entry(queue.to_string()).or_insert_with(QueueCounts::default);
                entry.pending = live.pending;
                entry.running = live.running;
            }
        }
        Ok(Json(TaskStats { queues }))
    }

    /// A dead job with its payload, every attempt's error and its linked lead
    #[oai(path = "/api/v1/admin/tasks/:id", method = "get", operation_id = "tasks_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, id: Path<i64>) -> ApiResult<Json<DeadJobOut>> {
        Ok(Json(tasks::get(&state.infra.db, &auth, id.0).await?.into()))
    }

    /// Retry a dead job: re-enqueued with its original payload (202)
    #[oai(path = "/api/v1/admin/tasks/:id/retry", method = "post", operation_id = "tasks_retry")]
    async fn retry(&self, state: Data<&AppState>, auth: Auth, id: Path<i64>) -> ApiResult<Requeued> {
        let job = tasks::retry(&state.infra, &auth, id.0).await?;
        Ok(Requeued::Accepted(Json(TaskAction {
            status: "requeued".into(),
            id: job.id,
            task_id: job.requeued_task_id,
        })))
    }

    /// Discard a dead job (kept as `discarded`, with the optional reason)
    #[oai(path = "/api/v1/admin/tasks/:id", method = "delete", operation_id = "tasks_discard")]
    async fn discard(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<i64>,
        #[oai(validator(max_length = 1000))] reason: Query<Option<String>>,
    ) -> ApiResult<Json<TaskAction>> {
        let job = tasks::discard(&state.infra, &auth, id.0, reason.0).await?;
        Ok(Json(TaskAction { status: "discarded".into(), id: job.id, task_id: None }))
    }

    /// Retry dead jobs by ids or by filter (at most 1 000; `dry_run` counts first)
    #[oai(path = "/api/v1/admin/tasks/bulk-retry", method = "post", operation_id = "tasks_bulk_retry")]
    async fn bulk_retry(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<BulkBody>,
    ) -> ApiResult<Json<BulkOut>> {
        Self::bulk(&state, &auth, BulkAction::Retry, body.0).await
    }

    /// Discard dead jobs by ids or by filter (at most 1 000; `dry_run` counts first)
    #[oai(path = "/api/v1/admin/tasks/bulk-discard", method = "post", operation_id = "tasks_bulk_discard")]
    async fn bulk_discard(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<BulkBody>,
    ) -> ApiResult<Json<BulkOut>> {
        Self::bulk(&state, &auth, BulkAction::Discard, body.0).await
    }
}
