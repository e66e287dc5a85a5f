//! `/api/broker/config…` and `/api/broker/brokers/{broker_id}/prompts…` (reference §3.7): the
//! broker's AI configuration and its prompt versions. ADMIN edits its own broker; SUPERADMIN names
//! the broker (`?broker_id=` on config paths, the path on version paths); AGENT gets 403; another
//! broker's data is 404.
//!
//! Aliases: `/api/broker/config/prompt-versions[/{id}[/activate]]` serve the version endpoints for
//! the caller's own broker (SUPERADMIN: `?broker_id=`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use shared::brokers::config::{self, AgentPromptsPatch, LeadPatch, PromptPatch};
use shared::brokers::prompt::Agent;
use shared::brokers::versions::{self, PromptVersion, VersionInput, VersionStats};
use shared::entities::{broker_lead_configs, broker_prompt_configs, brokers};

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

pub struct BrokerConfigApi;

// ---------------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------------

#[derive(Object)]
pub struct ConfigBroker {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub business_hours: Option<String>,
    pub service_zones: Option<Value>,
    pub is_active: bool,
    pub priority_assignment_enabled: bool,
}

impl From<brokers::Model> for ConfigBroker {
    fn from(b: brokers::Model) -> Self {
        ConfigBroker {
            id: b.id,
            name: b.name,
            slug: b.slug,
            contact_phone: b.contact_phone,
            contact_email: b.contact_email,
            business_hours: b.business_hours,
            service_zones: b.service_zones,
            is_active: b.is_active,
            priority_assignment_enabled: b.priority_assignment_enabled,
        }
    }
}

/// The assistant's identity and prompt sections. Texts may use `{agent_name}`, `{agent_role}` and
/// `{broker_name}`; an empty section means the default applies.
#[derive(Object)]
pub struct PromptConfigOut {
    pub agent_name: String,
    pub agent_role: String,
    pub identity_prompt: Option<String>,
    pub business_context: Option<String>,
    pub agent_objective: Option<String>,
    pub data_collection_prompt: Option<String>,
    pub behavior_rules: Option<String>,
    pub restrictions: Option<String>,
    /// `{situation: instruction}` (agent prompts are under `/api/broker/config/agent-prompts`).
    pub situation_handlers: BTreeMap<String, String>,
    pub output_format: Option<String>,
    /// When set, used instead of all the sections.
    pub full_custom_prompt: Option<String>,
    pub enable_appointment_booking: bool,
    pub tools_instructions: Option<String>,
    /// IANA time zone of the broker's meetings.
    pub timezone: String,
}

impl From<broker_prompt_configs::Model> for PromptConfigOut {
    fn from(p: broker_prompt_configs::Model) -> Self {
        let timezone = config::timezone_of(&p);
        let situation_handlers = p
            .situation_handlers
            .as_ref()
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !k.starts_with('_'))
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        PromptConfigOut {
            agent_name: p.agent_name,
            agent_role: p.agent_role,
            identity_prompt: p.identity_prompt,
            business_context: p.business_context,
            agent_objective: p.agent_objective,
            data_collection_prompt: p.data_collection_prompt,
            behavior_rules: p.behavior_rules,
            restrictions: p.restrictions,
            situation_handlers,
            output_format: p.output_format,
            full_custom_prompt: p.full_custom_prompt,
            enable_appointment_booking: p.enable_appointment_booking,
            tools_instructions: p.tools_instructions,
            timezone,
        }
    }
}

/// Scoring weights, status thresholds and qualification criteria, as the lead rules read them.
#[derive(Object)]
pub struct LeadConfigOut {
    /// Points per known field: `name`, `phone`, `email`, `location`, `budget` (and
    /// `monthly_income`, `dicom_status`).
    pub field_weights: Value,
    /// `cold` up to this score.
    pub cold_max_score: i32,
    /// `warm` up to this score; `hot` above it.
    pub warm_max_score: i32,
    pub hot_min_score: i32,
    pub qualified_min_score: i32,
    /// The order in which Sofía asks for data.
    pub field_priority: Value,
    /// Always null (accepted on update for compatibility, not stored).
    pub income_ranges: Option<Value>,
    pub qualification_criteria: Value,
    /// Largest DICOM debt (CLP) that still earns the small-debt points.
    pub max_acceptable_debt: i64,
    /// Income tiers and DICOM points (the defaults when never set).
    pub scoring_config: Value,
    pub alert_on_hot_lead: bool,
    pub alert_on_qualified: bool,
    pub alert_score_threshold: i32,
    pub alert_email: Option<String>,
}

impl From<broker_lead_configs::Model> for LeadConfigOut {
    fn from(l: broker_lead_configs::Model) -> Self {
        LeadConfigOut {
            field_weights: l.field_weights,
            cold_max_score: l.cold_max_score,
            warm_max_score: l.warm_max_score,
            hot_min_score: l.hot_min_score,
            qualified_min_score: l.qualified_min_score,
            field_priority: l.field_priority,
            income_ranges: None,
            qualification_criteria: l.qualification_criteria,
            max_acceptable_debt: l.max_acceptable_debt,
            scoring_config: l.scoring_config.unwrap_or_else(config::default_scoring_config),
            alert_on_hot_lead: l.alert_on_hot_lead,
            alert_on_qualified: l.alert_on_qualified,
            alert_score_threshold: l.alert_score_threshold,
            alert_email: l.alert_email,
        }
    }
}

/// A prompt version in short.
#[derive(Object)]
pub struct VersionRef {
    pub id: i64,
    /// 1, 2, 3, … per broker.
    pub version: i32,
    pub version_tag: String,
    pub activated_at: Option<DateTime<Utc>>,
}

impl From<&PromptVersion> for VersionRef {
    fn from(v: &PromptVersion) -> Self {
        VersionRef { id: v.id, version: v.version, version_tag: v.version_tag.clone(), activated_at: v.activated_at }
    }
}

#[derive(Object)]
pub struct ConfigOut {
    pub broker: ConfigBroker,
    pub prompt_config: PromptConfigOut,
    pub lead_config: LeadConfigOut,
    /// The version the LLM uses now.
    pub active_prompt_version: Option<VersionRef>,
}

/// Partial update of the prompt configuration; `null` or `""` clears a section (its default then
/// applies). A change that alters the prompt creates and activates a new version (`auto-NNN`).
#[derive(Object)]
pub struct PromptConfigUpdate {
    #[oai(validator(max_length = 100))]
    pub agent_name: Option<String>,
    #[oai(validator(max_length = 200))]
    pub agent_role: Option<String>,
    pub identity_prompt: MaybeUndefined<String>,
    pub business_context: MaybeUndefined<String>,
    pub agent_objective: MaybeUndefined<String>,
    pub data_collection_prompt: MaybeUndefined<String>,
    pub behavior_rules: MaybeUndefined<String>,
    pub restrictions: MaybeUndefined<String>,
    /// `{situation: instruction}`; replaces the situation handlers (keys starting with `_` are reserved).
    pub situation_handlers: Option<Value>,
    pub output_format: MaybeUndefined<String>,
    pub full_custom_prompt: MaybeUndefined<String>,
    pub enable_appointment_booking: Option<bool>,
    pub tools_instructions: MaybeUndefined<String>,
    /// IANA time zone, e.g. `America/Santiago`.
    #[oai(validator(max_length = 64))]
    pub timezone: Option<String>,
}

#[derive(Object)]
pub struct PromptSummary {
    pub agent_name: String,
    pub agent_role: String,
    pub has_custom_prompt: bool,
}

#[derive(Object)]
pub struct PromptUpdateOut {
    pub message: String,
    pub config: PromptSummary,
    /// The version this change created and activated (null when the prompt did not change).
    pub prompt_version: Option<VersionRef>,
}

/// Partial update of the lead configuration. Thresholds: 0 ≤ `cold_max_score` < `warm_max_score` <
/// 100 ≤ … and `hot_min_score` ≥ `warm_max_score`; weights 0–100 per known field.
#[derive(Object)]
pub struct LeadConfigUpdate {
    pub field_weights: Option<Value>,
    pub cold_max_score: Option<i64>,
    pub warm_max_score: Option<i64>,
    pub hot_min_score: Option<i64>,
    pub qualified_min_score: Option<i64>,
    pub field_priority: Option<Vec<String>>,
    /// Accepted for compatibility; not stored.
    pub income_ranges: Option<Value>,
    /// `{calificado: {min_monthly_income, dicom_status: [...], max_debt_amount}, potencial: {...}}`
    pub qualification_criteria: Option<Value>,
    pub max_acceptable_debt: Option<i64>,
    /// `{income_tiers: [{min, points, label}], dicom_clean_pts, dicom_has_debt_pts}`; `null` resets.
    pub scoring_config: MaybeUndefined<Value>,
    pub alert_on_hot_lead: Option<bool>,
    pub alert_on_qualified: Option<bool>,
    pub alert_score_threshold: Option<i64>,
    #[oai(validator(max_length = 254))]
    pub alert_email: MaybeUndefined<String>,
}

#[derive(Object)]
pub struct LeadUpdateOut {
    pub message: String,
    pub config: LeadConfigOut,
    /// The version this change created (a new data priority changes the prompt), else null.
    pub prompt_version: Option<VersionRef>,
}

#[derive(Object)]
pub struct AssignmentUpdate {
    pub priority_assignment_enabled: bool,
}

#[derive(Object)]
pub struct AssignmentOut {
    pub priority_assignment_enabled: bool,
}

#[derive(Object)]
pub struct PreviewOut {
    /// The system prompt the LLM receives (without the per-lead blocks).
    pub prompt: String,
    /// Characters.
    pub length: u64,
    /// The active version it is based on (null: composed from the sections).
    pub prompt_version: Option<VersionRef>,
}

#[derive(Object)]
pub struct AgentPromptOut {
    /// The built-in instructions of the stage.
    pub default: String,
    /// The broker's override (null: the default applies).
    pub custom: Option<String>,
    /// The broker's extension, added after the instructions.
    pub skill: Option<String>,
}

#[derive(Object)]
pub struct AgentPromptsOut {
    pub qualifier: AgentPromptOut,
    pub scheduler: AgentPromptOut,
    pub follow_up: AgentPromptOut,
    pub property: AgentPromptOut,
    /// Always true: the stage's agent prompt is added to the system prompt of each turn.
    pub multi_agent_enabled: bool,
}

/// `""` clears an override; an absent key keeps it.
#[derive(Object)]
pub struct AgentPromptsUpdate {
    pub qualifier: Option<String>,
    pub scheduler: Option<String>,
    pub follow_up: Option<String>,
    pub property: Option<String>,
    pub skill_qualifier: Option<String>,
    pub skill_scheduler: Option<String>,
    pub skill_follow_up: Option<String>,
    pub skill_property: Option<String>,
}

#[derive(Object)]
pub struct AgentPromptsUpdated {
    pub ok: bool,
    pub prompt_version: Option<VersionRef>,
}

/// A prompt version with how it performed.
#[derive(Object)]
pub struct VersionOut {
    pub id: i64,
    pub broker_id: i64,
    pub version: i32,
    pub version_tag: String,
    pub prompt_type: String,
    pub is_active: bool,
    /// Created by a configuration change (`auto-NNN`).
    pub is_auto: bool,
    pub notes: Option<String>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    /// Replies written with this version.
    pub total_uses: i64,
    /// Average tokens (input + output) of its LLM calls; null while none recorded.
    pub avg_tokens_per_call: Option<f64>,
    /// Average latency of its LLM calls; null while none recorded.
    pub avg_latency_ms: Option<f64>,
    /// Not computed (kept for compatibility): null.
    pub avg_lead_score_delta: Option<f64>,
    /// Not computed (kept for compatibility): null.
    pub escalation_rate: Option<f64>,
    /// Distinct leads this version answered that are now `calificado`.
    pub leads_qualified: i64,
    /// Appointments booked right after this version's reply (the lead's last reply before booking).
    pub appointments_booked: i64,
}

impl VersionOut {
    fn new(v: PromptVersion, s: VersionStats) -> Self {
        VersionOut {
            id: v.id,
            broker_id: v.broker_id,
            version: v.version,
            version_tag: v.version_tag,
            prompt_type: v.prompt_type,
            is_active: v.is_active,
            is_auto: v.is_auto,
            notes: v.notes,
            created_by: v.created_by,
            created_at: v.created_at,
            activated_at: v.activated_at,
            total_uses: s.total_uses,
            avg_tokens_per_call: s.avg_tokens_per_call,
            avg_latency_ms: s.avg_latency_ms,
            avg_lead_score_delta: None,
            escalation_rate: None,
            leads_qualified: s.leads_qualified,
            appointments_booked: s.appointments_booked,
        }
    }
}

#[derive(Object)]
pub struct VersionList {
    pub broker_id: i64,
    /// Newest first.
    pub versions: Vec<VersionOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

/// A version with its text.
#[derive(Object)]
pub struct VersionDetail {
    pub id: i64,
    pub broker_id: i64,
    pub version: i32,
    pub version_tag: String,
    pub prompt_type: String,
    pub is_active: bool,
    pub is_auto: bool,
    pub notes: Option<String>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    /// The base prompt text the LLM uses while this version is active.
    pub content: String,
    /// The configuration it was made from (restored on activation).
    pub sections_json: Option<Value>,
}

impl From<PromptVersion> for VersionDetail {
    fn from(v: PromptVersion) -> Self {
        VersionDetail {
            id: v.id,
            broker_id: v.broker_id,
            version: v.version,
            version_tag: v.version_tag,
            prompt_type: v.prompt_type,
            is_active: v.is_active,
            is_auto: v.is_auto,
            notes: v.notes,
            created_by: v.created_by,
            created_at: v.created_at,
            activated_at: v.activated_at,
            content: v.content,
            sections_json: v.sections_json,
        }
    }
}

#[derive(Object)]
pub struct VersionCreate {
    /// Unique per broker, 1–50 characters.
    #[oai(validator(max_length = 200))]
    pub version_tag: String,
    /// The full base prompt; composed from `sections_json` over the current configuration when absent.
    pub content: Option<String>,
    /// The configuration this version stands for (known prompt keys are restored on activation).
    pub sections_json: Option<Value>,
    #[oai(validator(max_length = 5000))]
    pub notes: Option<String>,
    /// Make it the active version at once (default false).
    pub activate: Option<bool>,
}

#[derive(Object)]
pub struct VersionCreatedOut {
    pub id: i64,
    pub broker_id: i64,
    pub version: i32,
    pub version_tag: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum VersionCreated {
    /// Created
    #[oai(status = 201)]
    Ok(Json<VersionCreatedOut>),
}

#[derive(Object)]
pub struct VersionActivated {
    pub id: i64,
    pub broker_id: i64,
    pub version: i32,
    pub version_tag: String,
    pub is_active: bool,
    pub activated_at: Option<DateTime<Utc>>,
}

impl From<PromptVersion> for VersionActivated {
    fn from(v: PromptVersion) -> Self {
        VersionActivated {
            id: v.id,
            broker_id: v.broker_id,
            version: v.version,
            version_tag: v.version_tag,
            is_active: v.is_active,
            activated_at: v.activated_at,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers shared by the reference paths and the aliases
// ---------------------------------------------------------------------------------------------

impl BrokerConfigApi {
    async fn list_versions(
        state: &AppState,
        auth: &Auth,
        broker_id: i64,
        skip: u64,
        limit: u64,
    ) -> ApiResult<Json<VersionList>> {
        let (rows, total) = versions::list(&state.infra.db, auth, broker_id, skip, limit).await?;
        Ok(Json(VersionList {
            broker_id,
            versions: rows.into_iter().map(|(v, s)| VersionOut::new(v, s)).collect(),
            total,
            skip,
            limit,
        }))
    }

    async fn create_version(
        state: &AppState,
        auth: &Auth,
        broker_id: i64,
        b: VersionCreate,
    ) -> ApiResult<VersionCreated> {
        let v = versions::create(
            &state.infra.db,
            auth,
            broker_id,
            VersionInput {
                version_tag: b.version_tag,
                content: b.content,
                sections_json: b.sections_json,
                notes: b.notes,
                activate: b.activate.unwrap_or(false),
            },
        )
        .await?;
        Ok(VersionCreated::Ok(Json(VersionCreatedOut {
            id: v.id,
            broker_id: v.broker_id,
            version: v.version,
            version_tag: v.version_tag,
            is_active: v.is_active,
            created_at: v.created_at,
        })))
    }

    /// The broker of an alias path: the caller's own, or the SUPERADMIN's `broker_id`.
    fn own(auth: &Auth, broker_id: Option<i64>) -> ApiResult<i64> {
        Ok(config::scope(auth, broker_id)?)
    }
}

fn agent_out(sections: &shared::brokers::prompt::PromptSections, agent: Agent) -> AgentPromptOut {
    AgentPromptOut {
        default: agent.default_prompt().to_string(),
        custom: sections.agent_prompt(agent).map(str::to_string),
        skill: sections.skill(agent).map(str::to_string),
    }
}

#[OpenApi]
impl BrokerConfigApi {
    /// The broker's AI configuration (ADMIN; SUPERADMIN with `broker_id`)
    ///
    /// The broker, the assistant's prompt configuration, the lead scoring / qualification
    /// configuration and the active prompt version.
    #[oai(
        path = "/api/broker/config",
        method = "get",
        operation_id = "broker_config_get",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<ConfigOut>> {
        let c = config::get(&state.infra.db, &auth, broker_id.0).await?;
        Ok(Json(ConfigOut {
            active_prompt_version: c.active_version.as_ref().map(Into::into),
            broker: c.broker.into(),
            prompt_config: c.prompt.into(),
            lead_config: c.leads.into(),
        }))
    }

    /// Update the assistant's identity and prompt sections
    ///
    /// When the prompt changes, a new prompt version (`auto-NNN`) is created and activated.
    #[oai(
        path = "/api/broker/config/prompt",
        method = "put",
        operation_id = "broker_config_prompt_update",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn update_prompt(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        body: JsonBody<PromptConfigUpdate>,
    ) -> ApiResult<Json<PromptUpdateOut>> {
        let b = body.0;
        let situation_handlers = b
            .situation_handlers
            .as_ref()
            .map(|h| config::handlers_from_json(h, &["situation_handlers"]))
            .transpose()?;
        let patch = PromptPatch {
            agent_name: b.agent_name,
            agent_role: b.agent_role,
            identity_prompt: maybe(b.identity_prompt),
            business_context: maybe(b.business_context),
            agent_objective: maybe(b.agent_objective),
            data_collection_prompt: maybe(b.data_collection_prompt),
            behavior_rules: maybe(b.behavior_rules),
            restrictions: maybe(b.restrictions),
            output_format: maybe(b.output_format),
            full_custom_prompt: maybe(b.full_custom_prompt),
            tools_instructions: maybe(b.tools_instructions),
            situation_handlers,
            all_handlers: None,
            enable_appointment_booking: b.enable_appointment_booking,
            timezone: b.timezone,
        };
        let (p, snap) = config::update_prompt(&state.infra.db, &auth, broker_id.0, patch).await?;
        Ok(Json(PromptUpdateOut {
            message: "Prompt configuration updated".into(),
            config: PromptSummary {
                has_custom_prompt: p.full_custom_prompt.is_some(),
                agent_name: p.agent_name,
                agent_role: p.agent_role,
            },
            prompt_version: snap.as_ref().map(Into::into),
        }))
    }

    /// Update scoring weights, thresholds and qualification criteria
    ///
    /// The lead rules use the new values from the next computation on.
    #[oai(
        path = "/api/broker/config/leads",
        method = "put",
        operation_id = "broker_config_leads_update",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn update_leads(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        body: JsonBody<LeadConfigUpdate>,
    ) -> ApiResult<Json<LeadUpdateOut>> {
        let b = body.0;
        let patch = LeadPatch {
            field_weights: b.field_weights,
            cold_max_score: b.cold_max_score,
            warm_max_score: b.warm_max_score,
            hot_min_score: b.hot_min_score,
            qualified_min_score: b.qualified_min_score,
            field_priority: b.field_priority,
            qualification_criteria: b.qualification_criteria,
            max_acceptable_debt: b.max_acceptable_debt,
            scoring_config: maybe(b.scoring_config),
            alert_on_hot_lead: b.alert_on_hot_lead,
            alert_on_qualified: b.alert_on_qualified,
            alert_score_threshold: b.alert_score_threshold,
            alert_email: maybe(b.alert_email),
        };
        let (l, snap) = config::update_leads(&state.infra.db, &auth, broker_id.0, patch).await?;
        Ok(Json(LeadUpdateOut {
            message: "Lead configuration updated".into(),
            config: l.into(),
            prompt_version: snap.as_ref().map(Into::into),
        }))
    }

    /// Switch agent auto-assignment between round-robin and priority order
    #[oai(
        path = "/api/broker/config/assignment",
        method = "put",
        operation_id = "broker_config_assignment_update",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn update_assignment(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        body: JsonBody<AssignmentUpdate>,
    ) -> ApiResult<Json<AssignmentOut>> {
        let b =
            config::update_assignment(&state.infra.db, &auth, broker_id.0, body.0.priority_assignment_enabled).await?;
        Ok(Json(AssignmentOut { priority_assignment_enabled: b.priority_assignment_enabled }))
    }

    /// Preview the effective system prompt
    ///
    /// What the LLM receives before the per-lead blocks; with `conversation_state`, including that
    /// stage's agent prompt.
    #[oai(
        path = "/api/broker/config/prompt/preview",
        method = "get",
        operation_id = "broker_config_prompt_preview",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn preview(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        #[oai(validator(max_length = 32))] conversation_state: Query<Option<String>>,
    ) -> ApiResult<Json<PreviewOut>> {
        let (prompt, version) = config::preview(&state.infra.db, &auth, broker_id.0, conversation_state.0).await?;
        Ok(Json(PreviewOut {
            length: prompt.chars().count() as u64,
            prompt,
            prompt_version: version.as_ref().map(Into::into),
        }))
    }

    /// Per-stage agent prompts: built-in defaults and the broker's overrides
    #[oai(
        path = "/api/broker/config/agent-prompts",
        method = "get",
        operation_id = "broker_config_agent_prompts_get",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn agent_prompts(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<AgentPromptsOut>> {
        let (_, s) = config::prompt_config(&state.infra.db, &auth, broker_id.0).await?;
        Ok(Json(AgentPromptsOut {
            qualifier: agent_out(&s, Agent::Qualifier),
            scheduler: agent_out(&s, Agent::Scheduler),
            follow_up: agent_out(&s, Agent::FollowUp),
            property: agent_out(&s, Agent::Property),
            multi_agent_enabled: true,
        }))
    }

    /// Override per-stage agent prompts (`""` clears one)
    #[oai(
        path = "/api/broker/config/agent-prompts",
        method = "put",
        operation_id = "broker_config_agent_prompts_update",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn update_agent_prompts(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        body: JsonBody<AgentPromptsUpdate>,
    ) -> ApiResult<Json<AgentPromptsUpdated>> {
        let b = body.0;
        let prompts = [
            (Agent::Qualifier, b.qualifier),
            (Agent::Scheduler, b.scheduler),
            (Agent::FollowUp, b.follow_up),
            (Agent::Property, b.property),
        ];
        let skills = [
            (Agent::Qualifier, b.skill_qualifier),
            (Agent::Scheduler, b.skill_scheduler),
            (Agent::FollowUp, b.skill_follow_up),
            (Agent::Property, b.skill_property),
        ];
        let patch = AgentPromptsPatch {
            prompts: prompts.into_iter().filter(|(_, t)| t.is_some()).collect(),
            skills: skills.into_iter().filter(|(_, t)| t.is_some()).collect(),
        };
        let snap = config::update_agent_prompts(&state.infra.db, &auth, broker_id.0, patch).await?;
        Ok(Json(AgentPromptsUpdated { ok: true, prompt_version: snap.as_ref().map(Into::into) }))
    }

    /// What a new broker starts with
    #[oai(
        path = "/api/broker/config/defaults",
        method = "get",
        operation_id = "broker_config_defaults",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn defaults(&self, auth: Auth) -> ApiResult<Json<Value>> {
        auth.require_admin()?;
        Ok(Json(config::defaults()))
    }

    /// A broker's prompt versions, newest first, with how each performed
    #[oai(
        path = "/api/broker/brokers/:broker_id/prompts",
        method = "get",
        operation_id = "prompt_versions_list",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn versions(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Path<i64>,
        #[oai(default, validator(minimum(value = "0")))] skip: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<Json<VersionList>> {
        Self::list_versions(&state, &auth, broker_id.0, skip.0, limit.0).await
    }

    /// Create a prompt version (optionally active at once)
    #[oai(
        path = "/api/broker/brokers/:broker_id/prompts",
        method = "post",
        operation_id = "prompt_versions_create",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Path<i64>,
        body: JsonBody<VersionCreate>,
    ) -> ApiResult<VersionCreated> {
        Self::create_version(&state, &auth, broker_id.0, body.0).await
    }

    /// One prompt version with its text
    #[oai(
        path = "/api/broker/brokers/:broker_id/prompts/:version_id",
        method = "get",
        operation_id = "prompt_versions_get",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn version(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Path<i64>,
        version_id: Path<i64>,
    ) -> ApiResult<Json<VersionDetail>> {
        Ok(Json(versions::get(&state.infra.db, &auth, broker_id.0, version_id.0).await?.into()))
    }

    /// Activate a prompt version (rollback when it is an older one)
    ///
    /// It becomes the only active version — the one the LLM uses — and the configuration it was made
    /// from is restored.
    #[oai(
        path = "/api/broker/brokers/:broker_id/prompts/:version_id/activate",
        method = "put",
        operation_id = "prompt_versions_activate",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn activate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Path<i64>,
        version_id: Path<i64>,
    ) -> ApiResult<Json<VersionActivated>> {
        Ok(Json(versions::activate(&state.infra.db, &auth, broker_id.0, version_id.0).await?.into()))
    }

    /// Alias of `GET /api/broker/brokers/{broker_id}/prompts` for the caller's broker
    #[oai(
        path = "/api/broker/config/prompt-versions",
        method = "get",
        operation_id = "prompt_versions_list_own",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn own_versions(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        #[oai(default, validator(minimum(value = "0")))] skip: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<Json<VersionList>> {
        let b = Self::own(&auth, broker_id.0)?;
        Self::list_versions(&state, &auth, b, skip.0, limit.0).await
    }

    /// Alias of `POST /api/broker/brokers/{broker_id}/prompts` for the caller's broker
    #[oai(
        path = "/api/broker/config/prompt-versions",
        method = "post",
        operation_id = "prompt_versions_create_own",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn own_create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        body: JsonBody<VersionCreate>,
    ) -> ApiResult<VersionCreated> {
        let b = Self::own(&auth, broker_id.0)?;
        Self::create_version(&state, &auth, b, body.0).await
    }

    /// Alias of `GET /api/broker/brokers/{broker_id}/prompts/{version_id}` for the caller's broker
    #[oai(
        path = "/api/broker/config/prompt-versions/:version_id",
        method = "get",
        operation_id = "prompt_versions_get_own",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn own_version(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        version_id: Path<i64>,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<VersionDetail>> {
        let b = Self::own(&auth, broker_id.0)?;
        Ok(Json(versions::get(&state.infra.db, &auth, b, version_id.0).await?.into()))
    }

    /// Alias of `PUT /api/broker/brokers/{broker_id}/prompts/{version_id}/activate` for the caller's broker
    #[oai(
        path = "/api/broker/config/prompt-versions/:version_id/activate",
        method = "post",
        operation_id = "prompt_versions_activate_own",
        tag = "ApiTags::BrokerConfig"
    )]
    async fn own_activate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        version_id: Path<i64>,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<VersionActivated>> {
        let b = Self::own(&auth, broker_id.0)?;
        Ok(Json(versions::activate(&state.infra.db, &auth, b, version_id.0).await?.into()))
    }
}

fn default_limit() -> u64 {
    50
}
