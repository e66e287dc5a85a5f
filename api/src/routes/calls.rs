//! `/api/v1/calls`: outbound AI voice calls through VAPI (SPEC §11, reference §3.12): start a call,
//! list and read calls with their transcripts, metrics, and VAPI's webhook.

use chrono::{DateTime, Utc};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use shared::voice::service::{self, ListQuery, Metrics};
use shared::voice::webhook::{self, AuthHeaders};
use shared::voice::{Call, TranscriptLine};

use super::ApiTags;
use crate::body::JsonBody;
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

/// Webhook bodies above this size are refused with 413 (an end-of-call report with a long
/// transcript is well below it).
pub const MAX_WEBHOOK_BYTES: usize = 5 * 1024 * 1024;

pub struct CallsApi;

/// A voice call.
#[derive(Object)]
pub struct VoiceCallOut {
    pub id: i64,
    pub broker_id: i64,
    pub lead_id: i64,
    pub campaign_id: Option<i64>,
    /// The user who started the call (null for campaign calls).
    pub agent_user_id: Option<i64>,
    pub phone_number: String,
    /// VAPI's call id, once the call is placed.
    pub external_call_id: Option<String>,
    /// `initiated`, `ringing`, `answered`, `completed`, `failed`, `no_answer`, `busy` or `cancelled`
    pub status: String,
    /// Seconds.
    pub duration: Option<i32>,
    pub recording_url: Option<String>,
    pub transcript: Option<String>,
    pub summary: Option<String>,
    /// VAPI's `endedReason` (or ours: `dial_failed: …`, `hang`).
    pub ended_reason: Option<String>,
    /// The lead's pipeline stage after the call was processed.
    pub stage_after_call: Option<String>,
    /// How the lead's score changed with the call.
    pub score_delta: f64,
    /// The end-of-call report was processed.
    pub post_processed: bool,
    /// `ai_agent` (started by a person) or `outbound` (a campaign step)
    pub call_mode: String,
    pub call_purpose: Option<String>,
    /// What the assistant's capture tools reported during the call.
    pub call_output: Value,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Call> for VoiceCallOut {
    fn from(c: Call) -> Self {
        VoiceCallOut {
            id: c.id,
            broker_id: c.broker_id,
            lead_id: c.lead_id,
            campaign_id: c.campaign_id,
            agent_user_id: c.agent_user_id,
            phone_number: c.phone_number,
            external_call_id: c.external_call_id,
            status: c.status,
            duration: c.duration,
            recording_url: c.recording_url,
            transcript: c.transcript,
            summary: c.summary,
            ended_reason: c.ended_reason,
            stage_after_call: c.stage_after_call,
            score_delta: c.score_delta,
            post_processed: c.post_processed,
            call_mode: c.call_mode,
            call_purpose: c.call_purpose,
            call_output: c.call_output,
            started_at: c.started_at,
            completed_at: c.completed_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Object)]
pub struct VoiceCallIn {
    /// The lead to call (it needs a phone number).
    pub lead_id: i64,
    pub campaign_id: Option<i64>,
    /// `calificacion_inicial`, `calificacion_financiera`, `confirmacion_reunion`, `confirmacion_visita`,
    /// `seguimiento_post_visita` or `reactivacion` (picks the broker's assistant for it).
    #[oai(validator(max_length = 50))]
    pub call_purpose: Option<String>,
    /// Accepted for the reference service's clients: the same as `call_purpose`.
    #[oai(validator(max_length = 50))]
    pub agent_type: Option<String>,
}

#[derive(Object)]
pub struct VoiceCallPage {
    pub data: Vec<VoiceCallOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Object)]
pub struct VoiceCallList {
    pub data: Vec<VoiceCallOut>,
}

/// One transcript line.
#[derive(Object)]
pub struct VoiceTranscriptLineOut {
    /// `bot`, `customer` or `agent`
    pub speaker: String,
    pub text: String,
    /// Seconds from the start of the call.
    pub timestamp: f64,
    pub confidence: Option<f64>,
}

impl From<TranscriptLine> for VoiceTranscriptLineOut {
    fn from(l: TranscriptLine) -> Self {
        VoiceTranscriptLineOut { speaker: l.speaker, text: l.text, timestamp: l.timestamp, confidence: l.confidence }
    }
}

#[derive(Object)]
pub struct VoiceCallDetail {
    pub call: VoiceCallOut,
    /// In the order they were spoken.
    pub transcript_lines: Vec<VoiceTranscriptLineOut>,
}

#[derive(Object)]
pub struct VoiceCallMetrics {
    pub total: i64,
    /// Initiated, ringing or answered.
    pub active: i64,
    /// Created since the start of the month (UTC).
    pub this_month: i64,
    pub by_status: Value,
    pub by_purpose: Value,
    pub by_mode: Value,
    pub avg_duration_seconds: Option<f64>,
    pub total_duration_seconds: i64,
    pub month_start: DateTime<Utc>,
}

impl From<Metrics> for VoiceCallMetrics {
    fn from(m: Metrics) -> Self {
        VoiceCallMetrics {
            total: m.total,
            active: m.active,
            this_month: m.this_month,
            by_status: Value::Object(m.by_status),
            by_purpose: Value::Object(m.by_purpose),
            by_mode: Value::Object(m.by_mode),
            avg_duration_seconds: m.avg_duration_seconds,
            total_duration_seconds: m.total_duration_seconds,
            month_start: m.month_start,
        }
    }
}

#[derive(ApiResponse)]
pub enum VoiceCallCreated {
    /// The call is stored as `initiated`; the worker places it at VAPI.
    #[oai(status = 201)]
    Created(Json<VoiceCallOut>),
}

fn default_limit() -> u64 {
    50
}

impl CallsApi {
    async fn start(state: &AppState, auth: &Auth, body: VoiceCallIn) -> ApiResult<VoiceCallCreated> {
        let purpose = body.call_purpose.or(body.agent_type).filter(|p| !p.trim().is_empty() && p != "default");
        let call = service::place_call(&state.infra, auth, body.lead_id, body.campaign_id, purpose.as_deref()).await?;
        Ok(VoiceCallCreated::Created(Json(call.into())))
    }

    async fn receive(state: &AppState, req: &Request, body: Vec<u8>) -> ApiResult<Json<Value>> {
        if body.len() > MAX_WEBHOOK_BYTES {
            return Err(shared::Error::PayloadTooLarge("The webhook body is too large".into()).into());
        }
        let header = |name: &str| req.header(name).map(str::to_string);
        let headers = AuthHeaders {
            secret: header("x-vapi-secret"),
            signature: header("x-vapi-signature"),
            timestamp: header("x-vapi-timestamp"),
        };
        Ok(Json(webhook::handle(&state.infra, &headers, &body).await?))
    }
}

#[OpenApi(tag = "ApiTags::Voice")]
impl CallsApi {
    /// Start an outbound AI voice call to a lead
    ///
    /// 404 for a lead the caller cannot see; 422 `invalid_phone` when it has no phone to call; 409
    /// `lead_opted_out`; 400 `voice_not_configured`; 429 when the broker already has 5 active calls.
    #[oai(path = "/api/v1/calls", method = "post", operation_id = "calls_create")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<VoiceCallIn>,
    ) -> ApiResult<VoiceCallCreated> {
        Self::start(&state, &auth, body.0).await
    }

    /// Start an outbound AI voice call (alias of `POST /api/v1/calls`)
    #[oai(path = "/api/v1/calls/initiate", method = "post", operation_id = "calls_initiate")]
    async fn initiate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<VoiceCallIn>,
    ) -> ApiResult<VoiceCallCreated> {
        Self::start(&state, &auth, body.0).await
    }

    /// The calls the caller may see, newest first
    ///
    /// AGENTs see the calls they started and those of their leads.
    #[oai(path = "/api/v1/calls", method = "get", operation_id = "calls_list")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Query<Option<i64>>,
        /// `initiated`, `ringing`, `answered`, `completed`, `failed`, `no_answer`, `busy`, `cancelled`
        #[oai(validator(max_length = 32))]
        status: Query<Option<String>>,
        #[oai(validator(max_length = 50))] call_purpose: Query<Option<String>>,
        /// Created at or after (YYYY-MM-DD or RFC 3339)
        #[oai(validator(max_length = 40))]
        date_from: Query<Option<String>>,
        /// Created at or before (a bare date includes that day)
        #[oai(validator(max_length = 40))]
        date_to: Query<Option<String>>,
        /// SUPERADMIN: one broker (all when omitted)
        broker_id: Query<Option<i64>>,
        #[oai(default, validator(minimum(value = "0")))] skip: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<Json<VoiceCallPage>> {
        let q = ListQuery {
            lead_id: lead_id.0,
            status: status.0,
            call_purpose: call_purpose.0,
            date_from: date_from.0,
            date_to: date_to.0,
            broker_id: broker_id.0,
            skip: skip.0,
            limit: limit.0,
        };
        let (calls, total) = service::list(&state.infra, &auth, &q).await?;
        Ok(Json(VoiceCallPage {
            data: calls.into_iter().map(Into::into).collect(),
            total,
            skip: q.skip,
            limit: q.limit,
        }))
    }

    /// Call counts by status, purpose and mode, and durations
    #[oai(path = "/api/v1/calls/metrics", method = "get", operation_id = "calls_metrics")]
    async fn metrics(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// SUPERADMIN: one broker (all when omitted)
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<VoiceCallMetrics>> {
        Ok(Json(service::metrics(&state.infra, &auth, broker_id.0).await?.into()))
    }

    /// The calls of one lead, newest first (the reference service's path)
    #[oai(path = "/api/v1/calls/leads/:lead_id", method = "get", operation_id = "calls_for_lead")]
    async fn for_lead(&self, state: Data<&AppState>, auth: Auth, lead_id: Path<i64>) -> ApiResult<Json<VoiceCallList>> {
        let calls = service::for_lead(&state.infra, &auth, lead_id.0).await?;
        Ok(Json(VoiceCallList { data: calls.into_iter().map(Into::into).collect() }))
    }

    /// One call with its transcript lines
    #[oai(path = "/api/v1/calls/:call_id", method = "get", operation_id = "calls_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, call_id: Path<i64>) -> ApiResult<Json<VoiceCallDetail>> {
        let (call, lines) = service::get(&state.infra, &auth, call_id.0).await?;
        Ok(Json(VoiceCallDetail { call: call.into(), transcript_lines: lines.into_iter().map(Into::into).collect() }))
    }

    /// VAPI webhook receiver (called by VAPI)
    ///
    /// Authenticated by `x-vapi-secret`, or `x-vapi-signature` (hex HMAC-SHA256 of
    /// `"{x-vapi-timestamp}.{body}"`, timestamp within 5 minutes); anything else is 401 and changes
    /// nothing. Handles `status-update`, `transcript`, `tool-calls` (answered as
    /// `{"results": [{"toolCallId", "result"}]}`), `end-of-call-report`, `assistant-request`
    /// (`{"assistantId"}`) and `hang`; other types are acknowledged as `{"status": "ignored"}`.
    #[oai(path = "/api/v1/calls/webhook", method = "post", operation_id = "calls_webhook")]
    async fn webhook(&self, state: Data<&AppState>, req: &Request, body: Binary<Vec<u8>>) -> ApiResult<Json<Value>> {
        Self::receive(&state, req, body.0).await
    }

    /// VAPI webhook receiver (alias of `POST /api/v1/calls/webhook`)
    #[oai(path = "/api/v1/calls/webhooks/voice", method = "post", operation_id = "calls_webhook_voice")]
    async fn webhook_voice(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Binary<Vec<u8>>,
    ) -> ApiResult<Json<Value>> {
        Self::receive(&state, req, body.0).await
    }
}
