//! `/api/v1/pipeline`: the board, one stage's column, stale leads, funnel metrics, auto-advance —
//! plus the reference service's paths for the same things — and `POST /api/v1/leads/{id}/recalculate`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Serialize;
use serde_json::Value;
use shared::entities::appointments;
use shared::leads::RulesOutcome;
use shared::leads::service::ManualMove;
use shared::pipeline::service::{self, BoardLead, Metrics, Refresh, StageQuery};

use super::ApiTags;
use super::leads::LeadOut;
use crate::body::JsonBody;
use crate::error::ApiResult;
use crate::json_out::{JsonOut, rfc3339};
use crate::security::Auth;
use crate::state::AppState;

pub struct PipelineApi;

/// `POST /api/v1/leads/{id}/recalculate`, listed with the other lead endpoints.
pub struct LeadRulesApi;

/// One automatic stage move.
#[derive(Object, Serialize)]
pub struct MoveOut {
    pub lead_id: i64,
    pub from_stage: String,
    pub to_stage: String,
    /// `name_known` · `contact_known` · `income_known` · `appointment_booked` · `potencial` ·
    /// `no_calificado` · `appointment_completed`
    pub reason: String,
}

/// The lead after its rules ran.
#[derive(Object)]
pub struct RecalculateOut {
    pub message: String,
    pub lead_id: i64,
    /// 0–100.
    pub score: f64,
    /// `calificado` · `potencial` · `no_calificado`, or null until income and DICOM are known.
    pub calificacion: Option<String>,
    pub pipeline_stage: String,
    /// `cold` · `warm` · `hot` · `converted` · `lost`
    pub status: String,
    pub previous_status: String,
    /// Every term of the score: `profile`, `financial`, `engagement`, `intent`, `penalties`, `total`.
    pub lead_score_components: Value,
    /// The automatic forward moves this run made, in order.
    pub stage_moves: Vec<MoveOut>,
}

impl From<RulesOutcome> for RecalculateOut {
    fn from(o: RulesOutcome) -> Self {
        let lead_id = o.lead.id;
        RecalculateOut {
            message: "Lead recalculated".into(),
            lead_id,
            score: o.score,
            calificacion: o.calificacion.map(|c| c.as_str().to_string()),
            pipeline_stage: o.lead.pipeline_stage,
            status: o.status.as_str().into(),
            previous_status: o.previous_status.as_str().into(),
            lead_score_components: o.components,
            stage_moves: o
                .stage_moves
                .into_iter()
                .map(|(from, to, reason)| MoveOut {
                    lead_id,
                    from_stage: from.as_str().into(),
                    to_stage: to.as_str().into(),
                    reason: reason.as_str().into(),
                })
                .collect(),
        }
    }
}

/// The next appointment of a board card.
#[derive(Object, Serialize)]
pub struct NextAppointmentOut {
    pub id: i64,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub start_time: DateTime<Utc>,
    /// `scheduled` · `confirmed`
    pub status: String,
    pub meet_url: Option<String>,
    pub appointment_type: String,
}

impl From<appointments::Model> for NextAppointmentOut {
    fn from(a: appointments::Model) -> Self {
        NextAppointmentOut {
            id: a.id,
            start_time: a.start_time,
            status: a.status,
            meet_url: a.meet_url,
            appointment_type: a.appointment_type,
        }
    }
}

/// A lead as a board card shows it.
#[derive(Object, Serialize)]
pub struct BoardLeadOut {
    #[oai(flatten)]
    #[serde(flatten)]
    pub lead: LeadOut,
    pub assigned_agent_name: Option<String>,
    /// The earliest future scheduled or confirmed appointment.
    pub next_appointment: Option<NextAppointmentOut>,
}

impl From<BoardLead> for BoardLeadOut {
    fn from(b: BoardLead) -> Self {
        BoardLeadOut {
            lead: b.lead.into(),
            assigned_agent_name: b.assigned_agent_name,
            next_appointment: b.next_appointment.map(Into::into),
        }
    }
}

/// One column of the board.
#[derive(Object, Serialize)]
pub struct ColumnOut {
    pub stage: String,
    pub description: String,
    /// Every lead in the stage; `leads` holds at most `limit` of them.
    pub count: u64,
    /// Most recently entered first.
    pub leads: Vec<BoardLeadOut>,
}

#[derive(Object, Serialize)]
pub struct BoardOut {
    /// The 8 stages in pipeline order.
    pub stages: Vec<ColumnOut>,
    pub total_leads: u64,
}

#[derive(Object, Serialize)]
pub struct StagePageOut {
    pub stage: String,
    pub data: Vec<BoardLeadOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Object, Serialize)]
pub struct InactiveOut {
    pub stage: String,
    pub inactivity_days: i64,
    /// Every lead matching; `leads` holds the oldest 500.
    pub count: u64,
    pub leads: Vec<LeadOut>,
}

/// One stage of the funnel.
#[derive(Object)]
pub struct FunnelStageOut {
    pub stage: String,
    /// Leads now in the stage.
    pub count: u64,
    /// Leads that reached this stage or a later one (null for `perdido`, which is off the funnel).
    pub reached: Option<u64>,
    /// Average days since the leads now in the stage entered it (1 decimal).
    pub avg_days: f64,
}

#[derive(Object)]
pub struct WeekOut {
    /// `24 Nov`
    pub week: String,
    /// Monday of the week (America/Santiago).
    pub week_start: String,
    /// Leads created that week.
    pub count: u64,
}

/// Funnel KPIs.
#[derive(Object)]
pub struct MetricsOut {
    pub total_leads: u64,
    /// Leads now in each stage.
    pub stage_counts: BTreeMap<String, u64>,
    /// Average whole days since the leads now in each stage entered it (1 decimal).
    pub stage_avg_days: BTreeMap<String, f64>,
    /// What each stage means.
    pub stages: BTreeMap<String, String>,
    /// The stages in pipeline order with their counts.
    pub funnel: Vec<FunnelStageOut>,
    /// `"{from}_to_{to}"` between consecutive funnel stages (entrada → … → ganado): of the leads
    /// that reached `from`, the percentage that reached `to` or later (1 decimal).
    pub conversion_rates: BTreeMap<String, f64>,
    /// ganado / total × 100.
    pub conversion_rate: f64,
    /// Same as `conversion_rate` (the reference's `/funnel-metrics` name).
    pub total_conversion_rate: f64,
    /// Leads past `entrada` / total × 100.
    pub response_rate: f64,
    /// Leads created per week, the last 8 weeks, oldest first.
    pub weekly_trend: Vec<WeekOut>,
    /// Lost leads by the stage they were lost from.
    pub lost_by_stage: BTreeMap<String, u64>,
}

impl From<Metrics> for MetricsOut {
    fn from(m: Metrics) -> Self {
        let reached: BTreeMap<&str, u64> = m.reached.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        MetricsOut {
            total_leads: m.total_leads,
            stage_counts: m.stages.iter().map(|(s, n, _)| (s.as_str().to_string(), *n)).collect(),
            stage_avg_days: m.stages.iter().map(|(s, _, d)| (s.as_str().to_string(), *d)).collect(),
            stages: m
                .stages
                .iter()
                .map(|(s, _, _)| (s.as_str().to_string(), service::description(*s).into()))
                .collect(),
            funnel: m
                .stages
                .iter()
                .map(|(s, n, d)| FunnelStageOut {
                    stage: s.as_str().into(),
                    count: *n,
                    reached: reached.get(s.as_str()).copied(),
                    avg_days: *d,
                })
                .collect(),
            conversion_rates: m.conversion_rates.into_iter().collect(),
            conversion_rate: m.conversion_rate,
            total_conversion_rate: m.conversion_rate,
            response_rate: m.response_rate,
            weekly_trend: m
                .weekly_trend
                .into_iter()
                .map(|(monday, count)| WeekOut {
                    week: monday.format("%-d %b").to_string(),
                    week_start: monday.format("%Y-%m-%d").to_string(),
                    count,
                })
                .collect(),
            lost_by_stage: m.lost_by_stage.into_iter().map(|(s, n)| (s.as_str().to_string(), n)).collect(),
        }
    }
}

/// What auto-advance did.
#[derive(Object)]
pub struct AutoAdvanceOut {
    /// Leads the rules ran on (open leads in a stage with an automatic way out).
    pub checked: u64,
    /// Leads that moved at least one stage.
    pub advanced: u64,
    /// Leads whose score, status, calificación or stage changed.
    pub updated: u64,
    /// The moves (the first 1 000).
    pub moves: Vec<MoveOut>,
}

impl From<Refresh> for AutoAdvanceOut {
    fn from(r: Refresh) -> Self {
        AutoAdvanceOut {
            checked: r.checked,
            advanced: r.advanced,
            updated: r.updated,
            moves: r
                .moves
                .into_iter()
                .map(|m| MoveOut {
                    lead_id: m.lead_id,
                    from_stage: m.from.as_str().into(),
                    to_stage: m.to.as_str().into(),
                    reason: m.reason.as_str().into(),
                })
                .collect(),
        }
    }
}

/// The reference's per-lead auto-advance answer.
#[derive(Object)]
pub struct LeadAdvanceOut {
    /// `Lead stage advanced automatically` or `No automatic advancement conditions met`
    pub message: String,
    pub lead_id: i64,
    /// The stage now (null when it did not move).
    pub new_stage: Option<String>,
    pub stage_entered_at: Option<DateTime<Utc>>,
    pub stage_moves: Vec<MoveOut>,
}

#[derive(Object)]
pub struct MoveStageBody {
    /// `entrada` · `perfilamiento` · `calificacion_financiera` · `agendado` · `seguimiento` · `referidos` · `ganado` · `perdido`
    #[oai(validator(max_length = 64))]
    pub new_stage: String,
    /// Why (recorded in the activity and the `stage_changed` event; default `manual`).
    #[oai(validator(max_length = 200))]
    pub reason: Option<String>,
    /// Only into `ganado` / `perdido`: `precio`, `competencia`, `compra_directa`, …
    #[oai(validator(max_length = 100))]
    pub close_reason: Option<String>,
    #[oai(validator(max_length = 5000))]
    pub close_reason_detail: Option<String>,
}

#[derive(Object)]
pub struct MoveStageOut {
    pub message: String,
    pub lead_id: i64,
    pub old_stage: String,
    pub new_stage: String,
    pub stage_entered_at: DateTime<Utc>,
}

#[derive(Object)]
pub struct AgentOut {
    pub id: i64,
    pub name: String,
    pub email: String,
}

#[derive(Object)]
pub struct AssignAgentBody {
    /// An active user of the lead's broker; null leaves the lead unassigned.
    pub agent_id: Option<i64>,
}

#[derive(Object)]
pub struct AssignAgentOut {
    pub message: String,
    pub lead_id: i64,
    pub agent_id: Option<i64>,
    pub agent_name: Option<String>,
}

fn column(c: service::Column) -> ColumnOut {
    ColumnOut {
        stage: c.stage.as_str().into(),
        description: service::description(c.stage).into(),
        count: c.count,
        leads: c.leads.into_iter().map(Into::into).collect(),
    }
}

#[OpenApi(tag = "ApiTags::Leads")]
impl LeadRulesApi {
    /// Recalculate a lead
    ///
    /// Recomputes the score (with every component), status (the broker's thresholds), calificación
    /// and the automatic forward-only stage moves, and saves them. Another broker's lead, or for an
    /// AGENT a lead not assigned to it, is 404.
    #[oai(path = "/api/v1/leads/:lead_id/recalculate", method = "post", operation_id = "leads_recalculate")]
    async fn recalculate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
    ) -> ApiResult<Json<RecalculateOut>> {
        Ok(Json(service::recalculate(&state.infra, &auth, lead_id.0).await?.into()))
    }
}

#[OpenApi(tag = "ApiTags::Pipeline")]
impl PipelineApi {
    /// Pipeline board
    ///
    /// The 8 stages in order, each with its lead count and its `limit` (default 50, at most 200) most
    /// recently entered leads. AGENT sees only leads assigned to it; SUPERADMIN every broker, or one
    /// with `broker_id`.
    #[oai(path = "/api/v1/pipeline", method = "get", operation_id = "pipeline_board")]
    async fn board(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Leads per stage, 1–200 (default 50)
        limit: Query<Option<u64>>,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<JsonOut<BoardOut>> {
        let columns = service::board(&state.infra, &auth, broker_id.0, limit.0).await?;
        let total_leads = columns.iter().map(|c| c.count).sum();
        Ok(JsonOut(BoardOut { stages: columns.into_iter().map(column).collect(), total_leads }))
    }

    /// One stage's leads (board column)
    ///
    /// The reference service's board, one call per column: most recently entered first, with filters.
    #[oai(path = "/api/v1/pipeline/stages/:stage/leads", method = "get", operation_id = "pipeline_stage_leads")]
    #[allow(clippy::too_many_arguments)]
    async fn stage_leads(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        stage: Path<String>,
        /// A user id, or `unassigned`
        #[oai(name = "assignedTo")]
        assigned_to_camel: Query<Option<String>>,
        /// Same as `assignedTo`
        assigned_to: Query<Option<String>>,
        /// Name, phone or email (case- and accent-insensitive)
        search: Query<Option<String>>,
        /// `YYYY-MM-DD` (America/Santiago) or RFC 3339
        created_from: Query<Option<String>>,
        /// `YYYY-MM-DD` (inclusive) or RFC 3339
        created_to: Query<Option<String>>,
        calificacion: Query<Option<String>>,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
        #[oai(default, validator(minimum(value = "0"), maximum(value = "10000000")))] skip: Query<u64>,
        /// 1–200 (default 50)
        limit: Query<Option<u64>>,
    ) -> ApiResult<JsonOut<StagePageOut>> {
        let q = StageQuery {
            assigned_to: assigned_to_camel.0.or(assigned_to.0),
            search: search.0,
            created_from: created_from.0,
            created_to: created_to.0,
            calificacion: calificacion.0,
            broker_id: broker_id.0,
            skip: skip.0,
            limit: limit.0,
        };
        let page = service::stage_leads(&state.infra, &auth, &stage.0, &q).await?;
        Ok(JsonOut(StagePageOut {
            stage: page.stage.as_str().into(),
            data: page.leads.into_iter().map(Into::into).collect(),
            total: page.total,
            skip: page.skip,
            limit: page.limit,
        }))
    }

    /// Leads stuck in a stage
    ///
    /// Leads that entered `stage` at least `inactivity_days` (default 7) days ago and are still there.
    #[oai(path = "/api/v1/pipeline/stages/:stage/inactive", method = "get", operation_id = "pipeline_stage_inactive")]
    async fn inactive(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        stage: Path<String>,
        /// 1–3650 (default 7)
        inactivity_days: Query<Option<i64>>,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<JsonOut<InactiveOut>> {
        let days = inactivity_days.0.unwrap_or(7);
        let (stage, count, leads) = service::inactive(&state.infra, &auth, &stage.0, days, broker_id.0).await?;
        Ok(JsonOut(InactiveOut {
            stage: stage.as_str().into(),
            inactivity_days: days,
            count,
            leads: leads.into_iter().map(Into::into).collect(),
        }))
    }

    /// Funnel metrics
    ///
    /// Counts and average days per stage, conversion rates between consecutive stages, the overall
    /// conversion rate, leads created per week (last 8 weeks) and lost leads by the stage they were
    /// lost from. AGENT: over its assigned leads.
    #[oai(path = "/api/v1/pipeline/metrics", method = "get", operation_id = "pipeline_metrics")]
    async fn metrics(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<MetricsOut>> {
        Ok(Json(service::metrics(&state.infra, &auth, broker_id.0).await?.into()))
    }

    /// Funnel metrics (alias)
    ///
    /// The reference service's `/funnel-metrics`; same answer as `/api/v1/pipeline/metrics`.
    #[oai(path = "/api/v1/pipeline/funnel-metrics", method = "get", operation_id = "pipeline_funnel_metrics")]
    async fn funnel_metrics(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<MetricsOut>> {
        Ok(Json(service::metrics(&state.infra, &auth, broker_id.0).await?.into()))
    }

    /// Run auto-advance over the broker's leads (ADMIN)
    ///
    /// Applies the rules (score, status, calificación, forward-only stage moves) to every open lead
    /// of the broker in a stage with an automatic way out, and reports the moves. SUPERADMIN names
    /// the broker with `broker_id`.
    #[oai(path = "/api/v1/pipeline/auto-advance", method = "post", operation_id = "pipeline_auto_advance")]
    async fn auto_advance(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// SUPERADMIN: the broker (required)
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<AutoAdvanceOut>> {
        Ok(Json(service::auto_advance(&state.infra, &auth, broker_id.0).await?.into()))
    }

    /// Auto-advance one lead
    ///
    /// The reference service's per-lead auto-advance: the lead's rules run as in `recalculate`.
    #[oai(
        path = "/api/v1/pipeline/leads/:lead_id/auto-advance",
        method = "post",
        operation_id = "pipeline_lead_auto_advance"
    )]
    async fn lead_auto_advance(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
    ) -> ApiResult<Json<LeadAdvanceOut>> {
        let o = service::recalculate(&state.infra, &auth, lead_id.0).await?;
        let moved = !o.stage_moves.is_empty();
        let out = RecalculateOut::from(o.clone());
        Ok(Json(LeadAdvanceOut {
            message: if moved {
                "Lead stage advanced automatically".into()
            } else {
                "No automatic advancement conditions met".into()
            },
            lead_id: o.lead.id,
            new_stage: moved.then(|| o.lead.pipeline_stage.clone()),
            stage_entered_at: moved.then_some(o.lead.stage_entered_at),
            stage_moves: out.stage_moves,
        }))
    }

    /// Move a lead to a stage (alias)
    ///
    /// The reference service's path for `PUT /api/v1/leads/{lead_id}/pipeline`: a manual move, which
    /// may go backwards, with an optional reason and, into `ganado` / `perdido`, a close reason.
    #[oai(
        path = "/api/v1/pipeline/leads/:lead_id/move-stage",
        method = "post",
        operation_id = "pipeline_lead_move_stage"
    )]
    async fn move_stage(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        body: JsonBody<MoveStageBody>,
    ) -> ApiResult<Json<MoveStageOut>> {
        let b = body.0;
        let manual =
            ManualMove { reason: b.reason, close_reason: b.close_reason, close_reason_detail: b.close_reason_detail };
        let (old, lead) =
            shared::leads::service::move_stage_with(&state.infra, &auth, lead_id.0, &b.new_stage, "new_stage", manual)
                .await?;
        Ok(Json(MoveStageOut {
            message: "Lead moved".into(),
            lead_id: lead.row.id,
            old_stage: old.as_str().into(),
            new_stage: lead.row.pipeline_stage.clone(),
            stage_entered_at: lead.row.stage_entered_at,
        }))
    }

    /// Users leads can be assigned to
    ///
    /// Active ADMIN and AGENT users of the caller's broker (SUPERADMIN names it), by name.
    #[oai(path = "/api/v1/pipeline/agents", method = "get", operation_id = "pipeline_agents")]
    async fn agents(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// SUPERADMIN: the broker (required)
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<AgentOut>>> {
        let agents = service::agents(&state.infra, &auth, broker_id.0).await?;
        Ok(Json(agents.into_iter().map(|(id, name, email)| AgentOut { id, name, email }).collect()))
    }

    /// Assign a lead (ADMIN, alias)
    ///
    /// The reference service's path for `PUT /api/v1/leads/{lead_id}/assign`; `agent_id: null`
    /// leaves the lead unassigned.
    #[oai(path = "/api/v1/pipeline/leads/:lead_id/assign", method = "post", operation_id = "pipeline_lead_assign")]
    async fn assign(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        body: JsonBody<AssignAgentBody>,
    ) -> ApiResult<Json<AssignAgentOut>> {
        let agent_name = service::assign(&state.infra, &auth, lead_id.0, body.0.agent_id).await?;
        Ok(Json(AssignAgentOut {
            message: if body.0.agent_id.is_some() { "Agent assigned".into() } else { "Agent unassigned".into() },
            lead_id: lead_id.0,
            agent_id: body.0.agent_id,
            agent_name,
        }))
    }
}
