//! `/api/v1/leads`: list, detail, create, partial update, delete, export, assign, pipeline, CSV import.

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Multipart, Object, OpenApi};
use serde_json::{Map, Value};
use shared::Error;
use shared::entities::activity_log;
use shared::leads::model::{LeadDetail, LeadView};
use shared::leads::service::{self, LeadPatch, ListQuery, NewLead};
use shared::leads::{async_import, import};

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::json_out::{CreatedJson, JsonOut, rfc3339};
use crate::security::Auth;
use crate::state::AppState;
use poem::web::Data;
use serde::Serialize;

/// CSV uploads above this size are refused with 413.
pub const MAX_CSV_BYTES: u64 = 50 * 1024 * 1024;

pub struct LeadsApi;

/// A lead.
#[derive(Object, Serialize)]
pub struct LeadOut {
    /// E.164 (`+56912345678`); null for channel leads that have not given one.
    pub phone: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub tags: Vec<String>,
    /// Free-form data collected about the lead (`location`, `monthly_income`, `budget`, `dicom_status`, …).
    pub lead_metadata: Value,
    pub id: i64,
    pub broker_id: i64,
    /// `cold` · `warm` · `hot` · `converted` · `lost`
    pub status: String,
    pub lead_score: f64,
    /// One of the 8 stages.
    pub pipeline_stage: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub stage_entered_at: DateTime<Utc>,
    /// `calificado` · `potencial` · `no_calificado`, or null until income and DICOM are known.
    pub calificacion: Option<String>,
    pub conversation_state: Option<String>,
    pub human_mode: bool,
    /// Id of the user the lead is assigned to.
    pub assigned_to: Option<i64>,
    pub notes: Option<String>,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    pub last_contacted: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
    /// Response-time statistics, when known.
    pub response_metrics: Option<Value>,
}

impl From<LeadView> for LeadOut {
    fn from(mut v: LeadView) -> Self {
        let tags = v.take_tags();
        let r = v.row;
        let response_metrics = v.metadata.get("response_metrics").cloned();
        LeadOut {
            phone: r.phone,
            name: r.name,
            email: r.email,
            tags,
            lead_metadata: Value::Object(v.metadata),
            id: r.id,
            broker_id: r.broker_id,
            status: r.status,
            lead_score: r.lead_score,
            pipeline_stage: r.pipeline_stage,
            stage_entered_at: r.stage_entered_at,
            calificacion: r.calificacion,
            conversation_state: r.conversation_state,
            human_mode: r.human_mode,
            assigned_to: r.assigned_to,
            notes: r.notes,
            last_contacted: r.last_contacted,
            created_at: r.created_at,
            updated_at: r.updated_at,
            response_metrics,
        }
    }
}

#[derive(Object, Serialize)]
pub struct ActivityOut {
    pub id: i64,
    pub action_type: String,
    pub details: Value,
    pub user_id: Option<i64>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

impl From<activity_log::Model> for ActivityOut {
    fn from(a: activity_log::Model) -> Self {
        ActivityOut {
            id: a.id,
            action_type: a.action_type,
            details: a.details,
            user_id: a.user_id,
            created_at: a.created_at,
        }
    }
}

/// A lead with the explanation of its score and its latest 10 activities.
#[derive(Object, Serialize)]
pub struct LeadDetailOut {
    #[oai(flatten)]
    #[serde(flatten)]
    pub lead: LeadOut,
    pub lead_score_components: Value,
    pub recent_activities: Vec<ActivityOut>,
}

impl From<LeadDetail> for LeadDetailOut {
    fn from(d: LeadDetail) -> Self {
        let components = d.lead.row.lead_score_components.clone();
        LeadDetailOut {
            lead: d.lead.into(),
            lead_score_components: components,
            recent_activities: d.recent_activities.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Object, Serialize)]
pub struct LeadPage {
    pub data: Vec<LeadOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Object)]
pub struct LeadCreate {
    /// Any common Chilean form (`9 1234 5678`, `+56 9 1234-5678`) or E.164.
    #[oai(validator(max_length = 32))]
    pub phone: String,
    #[oai(validator(max_length = 500))]
    pub name: Option<String>,
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    #[oai(validator(max_items = 20))]
    pub tags: Option<Vec<String>>,
    /// Free-form object (at most 64 KiB).
    pub lead_metadata: Option<Value>,
    /// Alias of `lead_metadata` accepted for older clients.
    pub metadata: Option<Value>,
    #[oai(validator(max_length = 5000))]
    pub notes: Option<String>,
    /// SUPERADMIN only: the broker the lead belongs to.
    pub broker_id: Option<i64>,
    /// ADMIN: assign at creation. AGENT-created leads are assigned to the agent.
    pub assigned_to: Option<i64>,
}

/// Partial update: omitted fields stay, `null` clears a nullable field, `lead_metadata` merges keys
/// (a key set to null is removed).
#[derive(Object)]
pub struct LeadUpdate {
    #[oai(validator(max_length = 32))]
    pub phone: MaybeUndefined<String>,
    #[oai(validator(max_length = 500))]
    pub name: MaybeUndefined<String>,
    #[oai(validator(max_length = 254))]
    pub email: MaybeUndefined<String>,
    pub status: Option<String>,
    #[oai(validator(max_items = 20))]
    pub tags: MaybeUndefined<Vec<String>>,
    pub lead_metadata: MaybeUndefined<Value>,
    /// Alias of `lead_metadata` accepted for older clients.
    pub metadata: MaybeUndefined<Value>,
    #[oai(validator(max_length = 5000))]
    pub notes: MaybeUndefined<String>,
}

#[derive(Object)]
pub struct AssignBody {
    /// An active user of the lead's broker.
    pub agent_id: i64,
}

#[derive(Object)]
pub struct AssignOut {
    pub message: String,
    pub lead_id: i64,
    pub agent_id: i64,
}

#[derive(Object)]
pub struct StageBody {
    /// `entrada` · `perfilamiento` · `calificacion_financiera` · `agendado` · `seguimiento` · `referidos` · `ganado` · `perdido`
    #[oai(validator(max_length = 64))]
    pub stage: String,
}

#[derive(Object)]
pub struct StageOut {
    pub message: String,
    pub lead_id: i64,
    pub old_stage: String,
    pub new_stage: String,
    pub status: String,
}

#[derive(Object)]
pub struct ImportErrorOut {
    /// Spreadsheet row number (the header is row 1).
    pub row: u64,
    pub reason: String,
}

#[derive(Object)]
pub struct ImportOut {
    pub imported: u64,
    pub duplicates: u64,
    pub invalid: u64,
    /// The first 100 rejected rows.
    pub errors: Vec<ImportErrorOut>,
}

/// An import handed to the worker.
#[derive(Object)]
pub struct ImportQueued {
    /// Poll `GET /api/v1/leads/bulk-import/{job_id}`.
    pub job_id: i64,
    /// `queued`
    pub status: String,
}

#[derive(ApiResponse)]
pub enum ImportResponse {
    /// Imported synchronously (up to 10 000 rows)
    #[oai(status = 200)]
    Done(Json<ImportOut>),
    /// Larger files, or `async=true`: queued for the worker
    #[oai(status = 202)]
    Queued(Json<ImportQueued>),
}

/// Progress and result of an asynchronous import.
#[derive(Object)]
pub struct ImportStatusOut {
    pub job_id: i64,
    /// `queued` · `running` · `done` · `failed`
    pub status: String,
    pub filename: String,
    pub size_bytes: i64,
    /// Data rows read so far.
    pub rows_processed: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub invalid: i64,
    /// The first 100 rejected rows (when done).
    pub errors: Vec<ImportErrorOut>,
    /// Why the import failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Files with more data rows than this are imported by the worker.
pub const SYNC_IMPORT_ROWS: usize = 10_000;

#[derive(Multipart)]
pub struct ImportForm {
    /// A `.csv` file with a header: `phone` (required), `name`, `email`, `tags`; other columns go to `lead_metadata`.
    pub file: Upload,
}

#[derive(Object, Serialize)]
pub struct LeadExport {
    pub lead: LeadDetailOut,
    pub activities: Vec<ActivityOut>,
    pub messages: Vec<Value>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub exported_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted with everything about it
    #[oai(status = 204)]
    Ok,
}

fn object(v: Option<Value>, field: &str) -> Result<Option<Map<String, Value>>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(Error::invalid_body(field, "must be an object")),
    }
}

#[OpenApi(tag = "ApiTags::Leads")]
impl LeadsApi {
    /// List leads
    ///
    /// Best score first. AGENT sees only leads assigned to it, ADMIN its broker's, SUPERADMIN all
    /// (or one broker's with `broker_id`). `search` matches name, phone and email ignoring case and accents.
    #[oai(path = "/api/v1/leads", method = "get", operation_id = "leads_list")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Comma-separated: `cold`, `warm`, `hot`, `converted`, `lost`
        status: Query<Option<String>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "100")))] min_score: Query<Option<f64>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "100")))] max_score: Query<Option<f64>>,
        #[oai(validator(max_length = 200))] search: Query<Option<String>>,
        pipeline_stage: Query<Option<String>>,
        assigned_to: Query<Option<i64>>,
        /// `YYYY-MM-DD` (America/Santiago) or RFC 3339
        created_from: Query<Option<String>>,
        /// `YYYY-MM-DD` (inclusive) or RFC 3339
        created_to: Query<Option<String>>,
        calificacion: Query<Option<String>>,
        /// Comma-separated; leads having all of them
        tags: Query<Option<String>>,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
        #[oai(default, validator(minimum(value = "0"), maximum(value = "10000000")))] skip: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<JsonOut<LeadPage>> {
        let q = ListQuery {
            status: status.0,
            min_score: min_score.0,
            max_score: max_score.0,
            search: search.0,
            pipeline_stage: pipeline_stage.0,
            assigned_to: assigned_to.0,
            created_from: created_from.0,
            created_to: created_to.0,
            calificacion: calificacion.0,
            tags: tags.0,
            broker_id: broker_id.0,
            skip: skip.0,
            limit: limit.0,
        };
        let (rows, total) = service::list(&state.infra, &auth, &q).await?;
        Ok(JsonOut(LeadPage { data: rows.into_iter().map(Into::into).collect(), total, skip: q.skip, limit: q.limit }))
    }

    /// Create a lead
    ///
    /// The phone is normalised to E.164; a phone or email already used in the broker answers 409
    /// `lead_exists` with the existing `lead_id`.
    #[oai(path = "/api/v1/leads", method = "post", operation_id = "leads_create")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<LeadCreate>,
    ) -> ApiResult<CreatedJson<LeadOut>> {
        let b = body.0;
        let metadata = match object(b.lead_metadata, "lead_metadata")? {
            Some(m) => Some(m),
            None => object(b.metadata, "metadata")?,
        };
        let input = NewLead {
            phone: Some(b.phone),
            name: b.name,
            email: b.email,
            tags: b.tags,
            metadata,
            notes: b.notes,
            broker_id: b.broker_id,
            assigned_to: b.assigned_to,
        };
        Ok(CreatedJson(service::create(&state.infra, &auth, input).await?.into()))
    }

    /// Import leads from a CSV file
    ///
    /// Multipart field `file` (`.csv`, at most 50 MB). Up to 10 000 rows the answer is the result
    /// (200); larger files, or `async=true`, are stored and imported by the worker (202 with a
    /// `job_id`; progress at `GET /api/v1/leads/bulk-import/{job_id}` and as WS `import_progress`).
    /// `async=false` forces a synchronous import. Counts are exact: rows whose phone or email exists
    /// in the broker or earlier in the file are `duplicates`; rows with a missing or invalid phone, or
    /// an invalid email, are `invalid`.
    #[oai(path = "/api/v1/leads/bulk-import", method = "post", operation_id = "leads_bulk_import")]
    async fn bulk_import(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        form: ImportForm,
        broker_id: Query<Option<i64>>,
        #[oai(name = "async")] run_async: Query<Option<bool>>,
    ) -> ApiResult<ImportResponse> {
        let file = form.file;
        let filename = file.file_name().unwrap_or_default().to_string();
        if !filename.to_ascii_lowercase().ends_with(".csv") {
            return Err(Error::bad_request("csv_required", "Only .csv files are accepted").into());
        }
        if file.size() as u64 > MAX_CSV_BYTES {
            return Err(Error::PayloadTooLarge("CSV files are limited to 50 MB".into()).into());
        }
        let bytes = file
            .into_vec()
            .await
            .map_err(|e| Error::bad_request("csv_invalid", format!("The upload could not be read: {e}")))?;
        let rows = bytes.iter().filter(|b| **b == b'\n').count();
        if run_async.0.unwrap_or(rows > SYNC_IMPORT_ROWS + 1) {
            let job_id = async_import::start(&state.infra, &auth, broker_id.0, &filename, bytes).await?;
            return Ok(ImportResponse::Queued(Json(ImportQueued { job_id, status: "queued".into() })));
        }
        let report = import::import(&state.infra, &auth, broker_id.0, bytes).await?;
        Ok(ImportResponse::Done(Json(ImportOut {
            imported: report.imported,
            duplicates: report.duplicates,
            invalid: report.invalid,
            errors: report.errors.into_iter().map(|e| ImportErrorOut { row: e.row, reason: e.reason }).collect(),
        })))
    }

    /// Progress and result of an asynchronous import
    #[oai(path = "/api/v1/leads/bulk-import/:job_id", method = "get", operation_id = "leads_bulk_import_status")]
    async fn bulk_import_status(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        job_id: Path<i64>,
    ) -> ApiResult<Json<ImportStatusOut>> {
        let s = async_import::status(&state.infra, &auth, job_id.0).await?;
        let errors = serde_json::from_value::<Vec<Value>>(s.errors)
            .unwrap_or_default()
            .into_iter()
            .map(|e| ImportErrorOut {
                row: e["row"].as_u64().unwrap_or_default(),
                reason: e["reason"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        Ok(Json(ImportStatusOut {
            job_id: s.id,
            status: s.status,
            filename: s.filename,
            size_bytes: s.size_bytes,
            rows_processed: s.rows_processed,
            imported: s.imported,
            duplicates: s.duplicates,
            invalid: s.invalid,
            errors,
            error: s.error,
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
        }))
    }

    /// Get a lead
    ///
    /// With `lead_score_components` and the latest 10 activities. Another broker's lead, or for an
    /// AGENT a lead not assigned to it, is 404.
    #[oai(path = "/api/v1/leads/:lead_id", method = "get", operation_id = "leads_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, lead_id: Path<i64>) -> ApiResult<JsonOut<LeadDetailOut>> {
        Ok(JsonOut(service::get(&state.infra, &auth, lead_id.0).await?.into()))
    }

    /// Update a lead (partial)
    #[oai(path = "/api/v1/leads/:lead_id", method = "put", operation_id = "leads_update")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        body: JsonBody<LeadUpdate>,
    ) -> ApiResult<JsonOut<LeadOut>> {
        let b = body.0;
        let metadata = match (b.lead_metadata, b.metadata) {
            (MaybeUndefined::Undefined, alias) => alias,
            (primary, _) => primary,
        };
        let metadata = match metadata {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(v) => Some(object(Some(v), "lead_metadata")?),
        };
        let patch = LeadPatch {
            phone: maybe(b.phone),
            name: maybe(b.name),
            email: maybe(b.email),
            status: b.status,
            tags: maybe(b.tags),
            metadata,
            notes: maybe(b.notes),
        };
        Ok(JsonOut(service::update(&state.infra, &auth, lead_id.0, patch).await?.into()))
    }

    /// Delete a lead and everything about it
    ///
    /// Messages, activities and every other record linked to the lead are erased (GDPR).
    #[oai(path = "/api/v1/leads/:lead_id", method = "delete", operation_id = "leads_delete")]
    async fn delete(&self, state: Data<&AppState>, auth: Auth, lead_id: Path<i64>) -> ApiResult<Deleted> {
        service::delete(&state.infra, &auth, lead_id.0).await?;
        Ok(Deleted::Ok)
    }

    /// Export everything stored about a lead (GDPR)
    #[oai(path = "/api/v1/leads/:lead_id/export", method = "get", operation_id = "leads_export")]
    async fn export(&self, state: Data<&AppState>, auth: Auth, lead_id: Path<i64>) -> ApiResult<JsonOut<LeadExport>> {
        let (lead, activities, messages) = service::export(&state.infra, &auth, lead_id.0).await?;
        Ok(JsonOut(LeadExport {
            lead: lead.into(),
            activities: activities.into_iter().map(Into::into).collect(),
            messages,
            exported_at: Utc::now(),
        }))
    }

    /// Assign a lead to an agent (ADMIN)
    ///
    /// The agent must be an active user of the lead's broker (else 404).
    #[oai(path = "/api/v1/leads/:lead_id/assign", method = "put", operation_id = "leads_assign")]
    async fn assign(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        body: JsonBody<AssignBody>,
    ) -> ApiResult<Json<AssignOut>> {
        let lead = service::assign(&state.infra, &auth, lead_id.0, body.0.agent_id).await?;
        Ok(Json(AssignOut {
            message: "Lead assigned successfully".into(),
            lead_id: lead.row.id,
            agent_id: body.0.agent_id,
        }))
    }

    /// Move a lead to a pipeline stage
    ///
    /// Manual moves may go backwards. `ganado` marks the lead converted and `perdido` lost.
    #[oai(path = "/api/v1/leads/:lead_id/pipeline", method = "put", operation_id = "leads_move_stage")]
    async fn pipeline(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        body: JsonBody<StageBody>,
    ) -> ApiResult<Json<StageOut>> {
        let (old, lead) = service::move_stage(&state.infra, &auth, lead_id.0, &body.0.stage).await?;
        Ok(Json(StageOut {
            message: "Pipeline stage updated".into(),
            lead_id: lead.row.id,
            old_stage: old.as_str().into(),
            new_stage: lead.row.pipeline_stage.clone(),
            status: lead.row.status.clone(),
        }))
    }
}

fn default_limit() -> u64 {
    50
}
