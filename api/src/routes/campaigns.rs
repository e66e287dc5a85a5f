//! `/api/v1/campaigns`: drip campaigns (API.md "Campaigns", reference §3.5, SPEC §10). Every broker
//! member reads, drafts, edits and submits its broker's campaigns and applies active ones to the
//! leads it can reach; activating, pausing and deleting are ADMIN's. SUPERADMIN names a `broker_id`.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use shared::campaigns::model::{Campaign, Log, Step};
use shared::campaigns::service::{self, CampaignPatch, ListQuery, LogQuery, NewCampaign, NewStep, StepPatch};
use shared::campaigns::{compose, enrol};

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

pub struct CampaignsApi;

#[derive(Object)]
pub struct StepOut {
    pub id: i64,
    pub campaign_id: i64,
    /// 1-based; steps run in this order.
    pub step_number: i32,
    /// `send_message`, `make_call` or `update_stage`
    pub action: String,
    /// Hours after the previous step ran (after enrolment for the first).
    pub delay_hours: i32,
    pub message_template_id: Option<i64>,
    pub message_text: Option<String>,
    pub use_ai_message: bool,
    /// Null: the campaign's channel.
    pub channel: Option<String>,
    pub conditions: Value,
    pub target_stage: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Step> for StepOut {
    fn from(s: Step) -> Self {
        StepOut {
            id: s.id,
            campaign_id: s.campaign_id,
            step_number: s.step_number,
            action: s.action,
            delay_hours: s.delay_hours,
            message_template_id: s.message_template_id,
            message_text: s.message_text,
            use_ai_message: s.use_ai_message,
            channel: s.channel,
            conditions: s.conditions,
            target_stage: s.target_stage,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Object)]
pub struct CampaignOut {
    pub id: i64,
    pub broker_id: i64,
    pub name: String,
    pub description: Option<String>,
    /// `telegram`, `whatsapp`, `email`, `call` or `webchat`
    pub channel: String,
    /// `draft`, `pending_review`, `active`, `paused` or `completed`
    pub status: String,
    /// `manual`, `lead_score`, `stage_change` or `inactivity`
    pub triggered_by: String,
    /// lead_score `{score_min, score_max}`, stage_change `{stage}`, inactivity `{inactivity_days}`
    pub trigger_condition: Value,
    /// Leads enrolled at most (null: unlimited).
    pub max_contacts: Option<i32>,
    pub created_by: Option<i64>,
    pub approved_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Ordered by step_number.
    pub steps: Vec<StepOut>,
}

impl From<Campaign> for CampaignOut {
    fn from(c: Campaign) -> Self {
        CampaignOut {
            id: c.id,
            broker_id: c.broker_id,
            name: c.name,
            description: c.description,
            channel: c.channel,
            status: c.status,
            triggered_by: c.triggered_by,
            trigger_condition: c.trigger_condition,
            max_contacts: c.max_contacts,
            created_by: c.created_by,
            approved_by: c.approved_by,
            created_at: c.created_at,
            updated_at: c.updated_at,
            steps: c.steps.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Object)]
pub struct CampaignIn {
    /// At most 200 characters.
    pub name: String,
    pub description: Option<String>,
    /// Default `telegram`.
    pub channel: Option<String>,
    /// Default `manual`.
    pub triggered_by: Option<String>,
    pub trigger_condition: Option<Value>,
    /// At least 1; omitted: unlimited.
    pub max_contacts: Option<i64>,
    /// SUPERADMIN: the broker the campaign belongs to.
    pub broker_id: Option<i64>,
}

#[derive(Object)]
pub struct CampaignUpdate {
    pub name: Option<String>,
    pub description: MaybeUndefined<String>,
    /// AGENTs may only move a campaign between `draft` and `pending_review`.
    pub status: Option<String>,
    pub channel: Option<String>,
    pub triggered_by: Option<String>,
    pub trigger_condition: Option<Value>,
    /// Null: unlimited.
    pub max_contacts: MaybeUndefined<i64>,
}

#[derive(Object)]
pub struct CampaignList {
    pub data: Vec<CampaignOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Object)]
pub struct StepIn {
    pub step_number: i64,
    /// `send_message`, `make_call` or `update_stage`
    pub action: String,
    /// Default 0.
    pub delay_hours: Option<i64>,
    pub message_template_id: Option<i64>,
    /// May use the template `{{variables}}`.
    pub message_text: Option<String>,
    /// The LLM writes the message (a fixed greeting when no LLM is configured).
    pub use_ai_message: Option<bool>,
    pub channel: Option<String>,
    pub conditions: Option<Value>,
    /// Required for `update_stage`.
    pub target_stage: Option<String>,
}

#[derive(Object)]
pub struct StepUpdate {
    pub step_number: Option<i64>,
    pub action: Option<String>,
    pub delay_hours: Option<i64>,
    pub message_template_id: MaybeUndefined<i64>,
    pub message_text: MaybeUndefined<String>,
    pub use_ai_message: Option<bool>,
    pub channel: MaybeUndefined<String>,
    pub conditions: Option<Value>,
    pub target_stage: MaybeUndefined<String>,
}

#[derive(Object)]
pub struct ApplyIn {
    /// 1 to 100 000 lead ids of the campaign's broker.
    pub lead_ids: Vec<i64>,
}

#[derive(Object)]
pub struct ApplyOut {
    pub campaign_id: i64,
    pub requested: u64,
    pub enrolled: u64,
    pub already_enrolled: i64,
    /// Ids that are no lead you can reach.
    pub not_found: i64,
    /// Left out because the campaign reached `max_contacts`.
    pub skipped_max_contacts: i64,
    pub steps_enqueued: u64,
    /// When the first step is due (quiet hours applied).
    pub first_step_at: Option<DateTime<Utc>>,
}

#[derive(Object)]
pub struct LogOut {
    pub id: i64,
    pub campaign_id: i64,
    pub lead_id: i64,
    pub step_id: Option<i64>,
    pub step_number: i32,
    pub action: String,
    /// `pending`, `sent`, `failed` or `skipped`
    pub status: String,
    /// What happened: `{channel, message_id, message}`, `{stage}`, `{error, detail}`, `{reason}`.
    pub response: Value,
    /// When the step is (or was) due.
    pub scheduled_for: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub executed_at: Option<DateTime<Utc>>,
}

impl From<Log> for LogOut {
    fn from(l: Log) -> Self {
        LogOut {
            id: l.id,
            campaign_id: l.campaign_id,
            lead_id: l.lead_id,
            step_id: l.step_id,
            step_number: l.step_number,
            action: l.action,
            status: l.status,
            response: l.response,
            scheduled_for: l.scheduled_for,
            created_at: l.created_at,
            executed_at: l.executed_at,
        }
    }
}

#[derive(Object)]
pub struct AppliedToLeadOut {
    pub message: String,
    pub steps_enqueued: u64,
    pub logs: Vec<LogOut>,
}

#[derive(Object)]
pub struct LogList {
    pub data: Vec<LogOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Object)]
pub struct StatsOut {
    pub campaign_id: i64,
    /// Log rows: one per lead and step scheduled or run.
    pub total_steps: i64,
    pub unique_leads: i64,
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Percent of log rows `sent`.
    pub success_rate: f64,
    /// Percent of log rows `failed`.
    pub failure_rate: f64,
    pub enrolled: i64,
    pub replied: i64,
}

#[derive(Object)]
pub struct MatchingLeadOut {
    pub id: i64,
    pub name: String,
    pub score: f64,
    pub pipeline_stage: String,
}

#[derive(Object)]
pub struct MatchingOut {
    pub trigger: String,
    pub total: i64,
    pub note: String,
    pub leads: Vec<MatchingLeadOut>,
}

#[derive(Object)]
pub struct CampaignPreviewIn {
    /// `telegram`, `whatsapp`, `email`, `call` or `webchat` (default: the step's, else the campaign's)
    pub channel: Option<String>,
    /// `send_message` (default) or `make_call` (the opening of the call)
    pub action: Option<String>,
}

#[derive(Object)]
pub struct CampaignPreviewOut {
    /// The message as a sample lead (María González, of Ñuñoa) would get it.
    pub message: String,
    pub channel: String,
    pub action: String,
    /// `llm` (written by one call to the configured LLM), `template` or `message_text` (the
    /// step's own words rendered for the sample lead), `default` (the fixed greeting).
    pub generated_by: String,
    /// The first step of that action the preview is based on.
    pub step_id: Option<i64>,
}

#[derive(ApiResponse)]
pub enum CampaignCreated {
    #[oai(status = 201)]
    Created(Json<CampaignOut>),
}

#[derive(ApiResponse)]
pub enum StepCreated {
    #[oai(status = 201)]
    Created(Json<StepOut>),
}

#[derive(ApiResponse)]
pub enum AppliedToLead {
    #[oai(status = 201)]
    Created(Json<AppliedToLeadOut>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Ok,
}

#[OpenApi(tag = "ApiTags::Campaigns")]
impl CampaignsApi {
    /// Create a campaign (status `draft`)
    #[oai(path = "/api/v1/campaigns", method = "post", operation_id = "campaigns_create")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<CampaignIn>,
    ) -> ApiResult<CampaignCreated> {
        let b = body.0;
        let c = service::create(
            &state.infra,
            &auth,
            NewCampaign {
                name: b.name,
                description: b.description,
                channel: b.channel,
                triggered_by: b.triggered_by,
                trigger_condition: b.trigger_condition,
                max_contacts: b.max_contacts,
                broker_id: b.broker_id,
            },
        )
        .await?;
        Ok(CampaignCreated::Created(Json(c.into())))
    }

    /// List campaigns, newest first
    #[oai(path = "/api/v1/campaigns", method = "get", operation_id = "campaigns_list")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        status: Query<Option<String>>,
        channel: Query<Option<String>>,
        skip: Query<Option<u64>>,
        /// 1 to 200 (default 50)
        limit: Query<Option<u64>>,
        /// SUPERADMIN: one broker (all when omitted)
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<CampaignList>> {
        let q =
            ListQuery { status: status.0, channel: channel.0, skip: skip.0, limit: limit.0, broker_id: broker_id.0 };
        let (data, total, skip, limit) = service::list(&state.infra, &auth, &q).await?;
        Ok(Json(CampaignList { data: data.into_iter().map(Into::into).collect(), total, skip, limit }))
    }

    /// Campaign detail with its steps
    #[oai(path = "/api/v1/campaigns/:campaign_id", method = "get", operation_id = "campaigns_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, campaign_id: Path<i64>) -> ApiResult<Json<CampaignOut>> {
        Ok(Json(service::get(&state.infra, &auth, campaign_id.0).await?.into()))
    }

    /// Update a campaign
    #[oai(path = "/api/v1/campaigns/:campaign_id", method = "put", operation_id = "campaigns_update")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        body: JsonBody<CampaignUpdate>,
    ) -> ApiResult<Json<CampaignOut>> {
        let b = body.0;
        let patch = CampaignPatch {
            name: b.name,
            description: maybe(b.description),
            status: b.status,
            channel: b.channel,
            triggered_by: b.triggered_by,
            trigger_condition: b.trigger_condition,
            max_contacts: maybe(b.max_contacts),
        };
        Ok(Json(service::update(&state.infra, &auth, campaign_id.0, patch).await?.into()))
    }

    /// Delete a campaign with its steps and logs (ADMIN)
    #[oai(path = "/api/v1/campaigns/:campaign_id", method = "delete", operation_id = "campaigns_delete")]
    async fn delete(&self, state: Data<&AppState>, auth: Auth, campaign_id: Path<i64>) -> ApiResult<Deleted> {
        service::delete(&state.infra, &auth, campaign_id.0).await?;
        Ok(Deleted::Ok)
    }

    /// Add a step to a campaign
    #[oai(path = "/api/v1/campaigns/:campaign_id/steps", method = "post", operation_id = "campaigns_add_step")]
    async fn add_step(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        body: JsonBody<StepIn>,
    ) -> ApiResult<StepCreated> {
        let b = body.0;
        let s = service::add_step(
            &state.infra,
            &auth,
            campaign_id.0,
            NewStep {
                step_number: b.step_number,
                action: b.action,
                delay_hours: b.delay_hours,
                message_template_id: b.message_template_id,
                message_text: b.message_text,
                use_ai_message: b.use_ai_message,
                channel: b.channel,
                conditions: b.conditions,
                target_stage: b.target_stage,
            },
        )
        .await?;
        Ok(StepCreated::Created(Json(s.into())))
    }

    /// Change a step
    #[oai(
        path = "/api/v1/campaigns/:campaign_id/steps/:step_id",
        method = "patch",
        operation_id = "campaigns_update_step"
    )]
    async fn update_step(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        step_id: Path<i64>,
        body: JsonBody<StepUpdate>,
    ) -> ApiResult<Json<StepOut>> {
        let b = body.0;
        let patch = StepPatch {
            step_number: b.step_number,
            action: b.action,
            delay_hours: b.delay_hours,
            message_template_id: maybe(b.message_template_id),
            message_text: maybe(b.message_text),
            use_ai_message: b.use_ai_message,
            channel: maybe(b.channel),
            conditions: b.conditions,
            target_stage: maybe(b.target_stage),
        };
        Ok(Json(service::update_step(&state.infra, &auth, campaign_id.0, step_id.0, patch).await?.into()))
    }

    /// Delete a step (its waiting runs are logged `skipped`)
    #[oai(
        path = "/api/v1/campaigns/:campaign_id/steps/:step_id",
        method = "delete",
        operation_id = "campaigns_delete_step"
    )]
    async fn delete_step(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        step_id: Path<i64>,
    ) -> ApiResult<Deleted> {
        service::delete_step(&state.infra, &auth, campaign_id.0, step_id.0).await?;
        Ok(Deleted::Ok)
    }

    /// Apply an active campaign to leads
    ///
    /// Enrols each lead once (already enrolled leads are counted, not enrolled again), up to
    /// `max_contacts`, and schedules each one's first step. 409 `campaign_not_active` unless active.
    #[oai(path = "/api/v1/campaigns/:campaign_id/apply", method = "post", operation_id = "campaigns_apply")]
    async fn apply(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        body: JsonBody<ApplyIn>,
    ) -> ApiResult<Json<ApplyOut>> {
        let a = enrol::apply(&state.infra, &auth, campaign_id.0, &body.0.lead_ids).await?;
        Ok(Json(ApplyOut {
            campaign_id: a.campaign_id,
            requested: a.requested as u64,
            enrolled: a.enrolled as u64,
            already_enrolled: a.already_enrolled,
            not_found: a.not_found,
            skipped_max_contacts: a.skipped_max_contacts,
            steps_enqueued: a.steps_enqueued as u64,
            first_step_at: a.first_step_at,
        }))
    }

    /// Apply an active campaign to one lead (alias of `apply`)
    ///
    /// Applying again returns the lead's existing logs.
    #[oai(
        path = "/api/v1/campaigns/:campaign_id/apply-to-lead/:lead_id",
        method = "post",
        operation_id = "campaigns_apply_to_lead"
    )]
    async fn apply_to_lead(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        lead_id: Path<i64>,
    ) -> ApiResult<AppliedToLead> {
        let a = enrol::apply_to_lead(&state.infra, &auth, campaign_id.0, lead_id.0).await?;
        Ok(AppliedToLead::Created(Json(AppliedToLeadOut {
            message: a.message,
            steps_enqueued: a.steps_enqueued as u64,
            logs: a.logs.into_iter().map(Into::into).collect(),
        })))
    }

    /// Execution logs, newest first
    #[oai(path = "/api/v1/campaigns/:campaign_id/logs", method = "get", operation_id = "campaigns_logs")]
    #[allow(clippy::too_many_arguments)]
    async fn logs(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        lead_id: Query<Option<i64>>,
        /// `pending`, `sent`, `failed` or `skipped`
        status: Query<Option<String>>,
        skip: Query<Option<u64>>,
        /// 1 to 200 (default 50)
        limit: Query<Option<u64>>,
    ) -> ApiResult<Json<LogList>> {
        let q = LogQuery { lead_id: lead_id.0, status: status.0, skip: skip.0, limit: limit.0 };
        let (data, total, skip, limit) = service::logs(&state.infra, &auth, campaign_id.0, &q).await?;
        Ok(Json(LogList { data: data.into_iter().map(Into::into).collect(), total, skip, limit }))
    }

    /// Step outcomes: counts and rates
    #[oai(path = "/api/v1/campaigns/:campaign_id/stats", method = "get", operation_id = "campaigns_stats")]
    async fn stats(&self, state: Data<&AppState>, auth: Auth, campaign_id: Path<i64>) -> ApiResult<Json<StatsOut>> {
        let s = service::stats(&state.infra, &auth, campaign_id.0).await?;
        Ok(Json(StatsOut {
            campaign_id: s.campaign_id,
            total_steps: s.total_steps,
            unique_leads: s.unique_leads,
            pending: s.pending,
            sent: s.sent,
            failed: s.failed,
            skipped: s.skipped,
            success_rate: s.success_rate,
            failure_rate: s.failure_rate,
            enrolled: s.enrolled,
            replied: s.replied,
        }))
    }

    /// Preview the leads the campaign's trigger would enrol now
    #[oai(
        path = "/api/v1/campaigns/:campaign_id/matching-leads",
        method = "get",
        operation_id = "campaigns_matching_leads"
    )]
    async fn matching_leads(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        /// 1 to 20 (default 5)
        limit: Query<Option<u64>>,
    ) -> ApiResult<Json<MatchingOut>> {
        let m = service::matching_leads(&state.infra, &auth, campaign_id.0, limit.0).await?;
        Ok(Json(MatchingOut {
            trigger: m.trigger,
            total: m.total,
            note: m.note,
            leads: m
                .leads
                .into_iter()
                .map(|l| MatchingLeadOut { id: l.id, name: l.name, score: l.score, pipeline_stage: l.pipeline_stage })
                .collect(),
        }))
    }

    /// Preview the campaign's message for a sample lead
    ///
    /// Written by one call to the configured LLM (recorded in the cost ledger) from the first step
    /// of the action; without an LLM, that step's template or text rendered for the sample lead,
    /// or the fixed greeting. `update_stage` sends no message (422 `action_sends_no_message`).
    #[oai(
        path = "/api/v1/campaigns/:campaign_id/preview-message",
        method = "post",
        operation_id = "campaigns_preview_message"
    )]
    async fn preview_message(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
        body: JsonBody<Option<CampaignPreviewIn>>,
    ) -> ApiResult<Json<CampaignPreviewOut>> {
        let b = body.0.unwrap_or(CampaignPreviewIn { channel: None, action: None });
        let p = compose::preview(&state.infra, &auth, campaign_id.0, b.channel.as_deref(), b.action.as_deref()).await?;
        Ok(Json(CampaignPreviewOut {
            message: p.message,
            channel: p.channel,
            action: p.action,
            generated_by: p.generated_by,
            step_id: p.step_id,
        }))
    }

    /// Submit a draft for review (draft → pending_review)
    #[oai(path = "/api/v1/campaigns/:campaign_id/submit", method = "put", operation_id = "campaigns_submit")]
    async fn submit(&self, state: Data<&AppState>, auth: Auth, campaign_id: Path<i64>) -> ApiResult<Json<CampaignOut>> {
        Ok(Json(service::submit(&state.infra, &auth, campaign_id.0).await?.into()))
    }

    /// Approve and start a campaign (ADMIN; draft, pending_review or paused → active)
    #[oai(path = "/api/v1/campaigns/:campaign_id/activate", method = "put", operation_id = "campaigns_activate")]
    async fn activate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        campaign_id: Path<i64>,
    ) -> ApiResult<Json<CampaignOut>> {
        Ok(Json(service::activate(&state.infra, &auth, campaign_id.0).await?.into()))
    }

    /// Pause a campaign (ADMIN; active → paused); due steps wait until it is activated again
    #[oai(path = "/api/v1/campaigns/:campaign_id/pause", method = "put", operation_id = "campaigns_pause")]
    async fn pause(&self, state: Data<&AppState>, auth: Auth, campaign_id: Path<i64>) -> ApiResult<Json<CampaignOut>> {
        Ok(Json(service::pause(&state.infra, &auth, campaign_id.0).await?.into()))
    }
}
