//! The broker's AI configuration (`/api/broker/config…`, reference §3.7): the assistant's identity
//! and prompt sections, situation handlers and per-stage agent prompts (`broker_prompt_configs`),
//! scoring weights, thresholds and qualification criteria (`broker_lead_configs`, read by the lead
//! rules on every computation, so a change applies at once), the assignment mode, the preview of
//! the effective prompt, and [`load_prompt_config`] for the conversation.
//!
//! ADMIN edits its own broker; SUPERADMIN names the broker with `broker_id`; AGENT gets 403
//! (`API.md`: "ADMIN/SUPERADMIN only"). Another broker's configuration is 404. Every change is
//! audited, and a change that alters the prompt snapshots a new active prompt version.

use std::collections::BTreeMap;

use chrono::Utc;
use sea_orm::sea_query::LockType;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::{Map, Value, json};

use super::prompt::{
    self, Agent, DEFAULT_AGENT_NAME, DEFAULT_AGENT_ROLE, DEFAULT_TIMEZONE, FIELDS, PromptConfig, PromptSections,
    TurnContext, agent_key, build_system_prompt, skill_key,
};
use super::versions::{self, PromptVersion, lock_prompt_config};
use crate::audit;
use crate::ctx::Ctx;
use crate::entities::{broker_lead_configs, broker_prompt_configs, brokers};
use crate::error::{Error, FieldError, Result};
use crate::leads::qualification::Criteria;
use crate::leads::scoring::ScoringConfig;
use crate::text::Email;

/// The broker a config request acts on: ADMIN its own (another → 404); SUPERADMIN the one it names
/// (422 `broker_id_required` without one); AGENT 403.
pub fn scope(ctx: &Ctx, requested: Option<i64>) -> Result<i64> {
    ctx.require_admin()?;
    if ctx.is_superadmin() && requested.is_none() {
        return Err(Error::invalid(
            "broker_id_required",
            FieldError::query("broker_id", "A platform user must say which broker (broker_id)", "missing"),
        ));
    }
    ctx.target_broker(requested)
}

/// The broker, or 404.
pub async fn ensure_broker(db: &impl ConnectionTrait, broker_id: i64) -> Result<brokers::Model> {
    brokers::Entity::find_by_id(broker_id).one(db).await?.ok_or(Error::NotFound("Broker"))
}

async fn lead_config(db: &impl ConnectionTrait, broker_id: i64, lock: bool) -> Result<broker_lead_configs::Model> {
    let mut q = broker_lead_configs::Entity::find().filter(broker_lead_configs::Column::BrokerId.eq(broker_id));
    if lock {
        q = q.lock_exclusive();
    }
    q.one(db).await?.ok_or(Error::NotFound("Broker"))
}

fn field_priority(stored: &Value) -> Vec<String> {
    stored.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}

/// `meeting_config.timezone`, else America/Santiago.
pub fn timezone_of(p: &broker_prompt_configs::Model) -> String {
    p.meeting_config
        .as_ref()
        .and_then(|m| m.get("timezone"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TIMEZONE)
        .to_string()
}

fn handlers_of(p: &broker_prompt_configs::Model) -> BTreeMap<String, String> {
    p.situation_handlers
        .as_ref()
        .and_then(Value::as_object)
        .map(|o| o.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

/// The prompt inputs as stored.
pub fn sections_from(broker_name: &str, p: &broker_prompt_configs::Model, priority: &Value) -> PromptSections {
    PromptSections {
        agent_name: p.agent_name.clone(),
        agent_role: p.agent_role.clone(),
        broker_name: broker_name.to_string(),
        identity_prompt: p.identity_prompt.clone(),
        business_context: p.business_context.clone(),
        agent_objective: p.agent_objective.clone(),
        data_collection_prompt: p.data_collection_prompt.clone(),
        behavior_rules: p.behavior_rules.clone(),
        restrictions: p.restrictions.clone(),
        output_format: p.output_format.clone(),
        full_custom_prompt: p.full_custom_prompt.clone(),
        tools_instructions: p.tools_instructions.clone(),
        situation_handlers: handlers_of(p),
        enable_appointment_booking: p.enable_appointment_booking,
        field_priority: field_priority(priority),
        timezone: timezone_of(p),
    }
}

/// The prompt inputs of `p`'s broker, read now.
pub(crate) async fn sections_of(db: &impl ConnectionTrait, p: &broker_prompt_configs::Model) -> Result<PromptSections> {
    let broker = ensure_broker(db, p.broker_id).await?;
    let leads = lead_config(db, p.broker_id, false).await?;
    Ok(sections_from(&broker.name, p, &leads.field_priority))
}

/// Writes the prompt-config part of `s` into `p` (broker name and field priority live elsewhere).
fn write_sections(p: broker_prompt_configs::Model, s: &PromptSections) -> broker_prompt_configs::ActiveModel {
    let mut meeting = p.meeting_config.clone().and_then(|m| m.as_object().cloned()).unwrap_or_default();
    meeting.insert("timezone".into(), json!(s.timezone));
    let mut am: broker_prompt_configs::ActiveModel = p.into();
    am.agent_name = Set(s.agent_name.clone());
    am.agent_role = Set(s.agent_role.clone());
    am.identity_prompt = Set(s.identity_prompt.clone());
    am.business_context = Set(s.business_context.clone());
    am.agent_objective = Set(s.agent_objective.clone());
    am.data_collection_prompt = Set(s.data_collection_prompt.clone());
    am.behavior_rules = Set(s.behavior_rules.clone());
    am.restrictions = Set(s.restrictions.clone());
    am.output_format = Set(s.output_format.clone());
    am.full_custom_prompt = Set(s.full_custom_prompt.clone());
    am.tools_instructions = Set(s.tools_instructions.clone());
    am.situation_handlers = Set(Some(json!(s.situation_handlers)));
    am.enable_appointment_booking = Set(s.enable_appointment_booking);
    am.meeting_config = Set(Some(Value::Object(meeting)));
    am.updated_at = Set(Utc::now());
    am
}

/// The keys of two section sets that differ, with their new values (for the audit log).
fn diff(old: &PromptSections, new: &PromptSections) -> Map<String, Value> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Map::new();
    };
    b.into_iter().filter(|(k, v)| a.get(k) != Some(v)).collect()
}

/// Everything `GET /api/broker/config` shows.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub broker: brokers::Model,
    pub prompt: broker_prompt_configs::Model,
    pub leads: broker_lead_configs::Model,
    pub active_version: Option<PromptVersion>,
}

pub async fn get(db: &DatabaseConnection, ctx: &Ctx, requested: Option<i64>) -> Result<BrokerConfig> {
    let broker_id = scope(ctx, requested)?;
    let broker = ensure_broker(db, broker_id).await?;
    let prompt = broker_prompt_configs::Entity::find()
        .filter(broker_prompt_configs::Column::BrokerId.eq(broker_id))
        .one(db)
        .await?
        .ok_or(Error::NotFound("Broker"))?;
    let leads = lead_config(db, broker_id, false).await?;
    let active_version = versions::active_version(db, broker_id).await?;
    Ok(BrokerConfig { broker, prompt, leads, active_version })
}

/// What the conversation builds its system prompt from: the broker's current sections and its
/// active prompt version (whose text is the base). Pass it to [`build_system_prompt`] and record
/// [`PromptConfig::version_id`] on the reply.
pub async fn load_prompt_config(db: &impl ConnectionTrait, broker_id: i64) -> Result<PromptConfig> {
    Ok(load_with_version(db, broker_id).await?.0)
}

async fn load_with_version(db: &impl ConnectionTrait, broker_id: i64) -> Result<(PromptConfig, Option<PromptVersion>)> {
    let p = broker_prompt_configs::Entity::find()
        .filter(broker_prompt_configs::Column::BrokerId.eq(broker_id))
        .one(db)
        .await?
        .ok_or(Error::NotFound("Broker"))?;
    let sections = sections_of(db, &p).await?;
    let version = versions::active_version(db, broker_id).await?;
    let active =
        version.as_ref().map(|v| prompt::ActivePrompt { id: v.id, version: v.version, content: v.content.clone() });
    Ok((PromptConfig { sections, active }, version))
}

// ---------------------------------------------------------------------------------------------
// Prompt sections
// ---------------------------------------------------------------------------------------------

const MAX_SECTION: usize = 20_000;
const MAX_CUSTOM_PROMPT: usize = 50_000;
const MAX_HANDLERS: usize = 50;

/// A change of the prompt configuration. `None` leaves a field as it is; for the text sections
/// `Some(None)` (or an empty text) clears it, so the default applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptPatch {
    pub agent_name: Option<String>,
    pub agent_role: Option<String>,
    pub identity_prompt: Option<Option<String>>,
    pub business_context: Option<Option<String>>,
    pub agent_objective: Option<Option<String>>,
    pub data_collection_prompt: Option<Option<String>>,
    pub behavior_rules: Option<Option<String>>,
    pub restrictions: Option<Option<String>>,
    pub output_format: Option<Option<String>>,
    pub full_custom_prompt: Option<Option<String>>,
    pub tools_instructions: Option<Option<String>>,
    /// Replaces the situation handlers a person wrote; the reserved `_agent_…` / `_skill_…`
    /// entries are kept (they have their own endpoint).
    pub situation_handlers: Option<BTreeMap<String, String>>,
    /// Replaces every handler, reserved ones included (restoring a snapshot).
    pub all_handlers: Option<BTreeMap<String, String>>,
    pub enable_appointment_booking: Option<bool>,
    pub timezone: Option<String>,
}

fn body_field(loc: &[&str], msg: impl Into<String>) -> FieldError {
    FieldError {
        loc: std::iter::once("body").chain(loc.iter().copied()).map(str::to_string).collect(),
        msg: msg.into(),
        kind: "value_error".into(),
    }
}

fn check_name(v: &mut Option<String>, loc: &[&str], max: usize) -> Result<()> {
    if let Some(s) = v {
        *s = s.trim().to_string();
        if s.is_empty() || s.chars().count() > max {
            return Err(Error::invalid(
                "validation_error",
                body_field(loc, format!("must have 1 to {max} characters")),
            ));
        }
    }
    Ok(())
}

fn check_text(v: &mut Option<Option<String>>, loc: &[&str], max: usize) -> Result<()> {
    if let Some(inner) = v {
        let cleaned = inner.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        if cleaned.as_ref().is_some_and(|s| s.chars().count() > max) {
            return Err(Error::invalid(
                "validation_error",
                body_field(loc, format!("must have at most {max} characters")),
            ));
        }
        *inner = cleaned;
    }
    Ok(())
}

/// A known reserved handler key (`_agent_<agent>` / `_skill_<agent>`).
fn reserved_key(k: &str) -> bool {
    Agent::ALL.iter().any(|a| k == agent_key(*a) || k == skill_key(*a))
}

fn check_handlers(map: &mut BTreeMap<String, String>, loc: &[&str], allow_reserved: bool) -> Result<()> {
    if map.len() > MAX_HANDLERS {
        return Err(Error::invalid(
            "validation_error",
            body_field(loc, format!("at most {MAX_HANDLERS} situation handlers")),
        ));
    }
    let mut cleaned = BTreeMap::new();
    for (k, v) in std::mem::take(map) {
        let key = k.trim().to_string();
        let mut at: Vec<&str> = loc.to_vec();
        at.push(&k);
        if key.is_empty() || key.chars().count() > 100 {
            return Err(Error::invalid("validation_error", body_field(&at, "keys must have 1 to 100 characters")));
        }
        if key.starts_with('_') && !(allow_reserved && reserved_key(&key)) {
            return Err(Error::invalid(
                "validation_error",
                body_field(&at, "keys starting with '_' are reserved (agent prompts have their own endpoint)"),
            ));
        }
        if v.chars().count() > MAX_SECTION {
            return Err(Error::invalid(
                "validation_error",
                body_field(&at, format!("at most {MAX_SECTION} characters")),
            ));
        }
        let v = v.trim().to_string();
        if !v.is_empty() {
            cleaned.insert(key, v);
        }
    }
    *map = cleaned;
    Ok(())
}

fn check_timezone(tz: &mut Option<String>, loc: &[&str]) -> Result<()> {
    if let Some(t) = tz {
        *t = t.trim().to_string();
        if t.parse::<chrono_tz::Tz>().is_err() {
            return Err(Error::invalid(
                "invalid_timezone",
                body_field(loc, format!("'{t}' is not an IANA time zone (e.g. America/Santiago)")),
            ));
        }
    }
    Ok(())
}

/// A `{situation: instruction}` object as sent (`null` is empty); anything else is a 422 at `loc`.
pub fn handlers_from_json(v: &Value, loc: &[&str]) -> Result<BTreeMap<String, String>> {
    let err = |at: &[&str]| Error::invalid("validation_error", body_field(at, "must be an object of texts"));
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let mut at = loc.to_vec();
                at.push(k);
                v.as_str().map(|s| (k.clone(), s.to_string())).ok_or_else(|| err(&at))
            })
            .collect(),
        _ => Err(err(loc)),
    }
}

impl PromptPatch {
    /// Trims every text, turns empty sections into `None` and checks lengths, handler keys and the
    /// time zone (422 naming the field).
    pub fn validate(&mut self) -> Result<()> {
        self.validate_at(&[])
    }

    fn validate_at(&mut self, prefix: &[&str]) -> Result<()> {
        let at = |f: &'static str| -> Vec<&str> { prefix.iter().copied().chain(std::iter::once(f)).collect() };
        check_name(&mut self.agent_name, &at("agent_name"), 100)?;
        check_name(&mut self.agent_role, &at("agent_role"), 200)?;
        check_text(&mut self.identity_prompt, &at("identity_prompt"), MAX_SECTION)?;
        check_text(&mut self.business_context, &at("business_context"), MAX_SECTION)?;
        check_text(&mut self.agent_objective, &at("agent_objective"), MAX_SECTION)?;
        check_text(&mut self.data_collection_prompt, &at("data_collection_prompt"), MAX_SECTION)?;
        check_text(&mut self.behavior_rules, &at("behavior_rules"), MAX_SECTION)?;
        check_text(&mut self.restrictions, &at("restrictions"), MAX_SECTION)?;
        check_text(&mut self.output_format, &at("output_format"), MAX_SECTION)?;
        check_text(&mut self.full_custom_prompt, &at("full_custom_prompt"), MAX_CUSTOM_PROMPT)?;
        check_text(&mut self.tools_instructions, &at("tools_instructions"), MAX_SECTION)?;
        if let Some(h) = &mut self.situation_handlers {
            check_handlers(h, &at("situation_handlers"), false)?;
        }
        if let Some(h) = &mut self.all_handlers {
            check_handlers(h, &at("situation_handlers"), true)?;
        }
        check_timezone(&mut self.timezone, &at("timezone"))
    }

    /// Reads the known prompt keys of a version's `sections_json` (a snapshot restores them all;
    /// other keys are ignored). A known key with the wrong type is a 422 at `body.<loc>.<key>`.
    pub fn from_sections_json(v: &Value, loc: &'static str) -> Result<Self> {
        let Some(obj) = v.as_object() else {
            return Err(Error::invalid("validation_error", body_field(&[loc], "must be a JSON object")));
        };
        let bad =
            |k: &str, what: &str| Error::invalid("validation_error", body_field(&[loc, k], format!("must be {what}")));
        let string = |k: &str| -> Result<Option<String>> {
            match obj.get(k) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(k, "a string")),
            }
        };
        let text = |k: &str| -> Result<Option<Option<String>>> {
            match obj.get(k) {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(None)),
                Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
                Some(_) => Err(bad(k, "a string or null")),
            }
        };
        let all_handlers = match obj.get("situation_handlers") {
            None => None,
            Some(v) => Some(handlers_from_json(v, &[loc, "situation_handlers"])?),
        };
        let enable_appointment_booking = match obj.get("enable_appointment_booking") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(bad("enable_appointment_booking", "a boolean")),
        };
        let mut p = PromptPatch {
            agent_name: string("agent_name")?,
            agent_role: string("agent_role")?,
            identity_prompt: text("identity_prompt")?,
            business_context: text("business_context")?,
            agent_objective: text("agent_objective")?,
            data_collection_prompt: text("data_collection_prompt")?,
            behavior_rules: text("behavior_rules")?,
            restrictions: text("restrictions")?,
            output_format: text("output_format")?,
            full_custom_prompt: text("full_custom_prompt")?,
            tools_instructions: text("tools_instructions")?,
            situation_handlers: None,
            all_handlers,
            enable_appointment_booking,
            timezone: string("timezone")?,
        };
        p.validate_at(&[loc])?;
        Ok(p)
    }

    /// Applies the patch (already validated) to a set of sections.
    pub fn apply_to_sections(&self, s: &mut PromptSections) {
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut s.agent_name, &self.agent_name);
        set(&mut s.agent_role, &self.agent_role);
        set(&mut s.identity_prompt, &self.identity_prompt);
        set(&mut s.business_context, &self.business_context);
        set(&mut s.agent_objective, &self.agent_objective);
        set(&mut s.data_collection_prompt, &self.data_collection_prompt);
        set(&mut s.behavior_rules, &self.behavior_rules);
        set(&mut s.restrictions, &self.restrictions);
        set(&mut s.output_format, &self.output_format);
        set(&mut s.full_custom_prompt, &self.full_custom_prompt);
        set(&mut s.tools_instructions, &self.tools_instructions);
        set(&mut s.enable_appointment_booking, &self.enable_appointment_booking);
        set(&mut s.timezone, &self.timezone);
        if let Some(all) = &self.all_handlers {
            s.situation_handlers = all.clone();
        }
        if let Some(public) = &self.situation_handlers {
            s.situation_handlers.retain(|k, _| k.starts_with('_'));
            s.situation_handlers.extend(public.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}

/// Writes a restored snapshot into the configuration (the caller holds the lock; no new version).
pub(crate) async fn restore_prompt(
    txn: &impl ConnectionTrait,
    current: broker_prompt_configs::Model,
    patch: &PromptPatch,
) -> Result<()> {
    let mut sections = sections_of(txn, &current).await?;
    patch.apply_to_sections(&mut sections);
    write_sections(current, &sections).update(txn).await?;
    Ok(())
}

/// Saves the new sections; when they differ from the old ones, snapshots and audits. Returns the
/// stored prompt config and the snapshot. The caller holds the lock and commits.
async fn save_sections(
    txn: &impl ConnectionTrait,
    ctx: &Ctx,
    current: broker_prompt_configs::Model,
    old: &PromptSections,
    new: &PromptSections,
    action: &'static str,
    note: &str,
) -> Result<(broker_prompt_configs::Model, Option<PromptVersion>)> {
    if old == new {
        return Ok((current, None));
    }
    let broker_id = current.broker_id;
    let saved = write_sections(current, new).update(txn).await?;
    let snap = versions::snapshot(txn, broker_id, ctx.user_id, new, note).await?;
    let mut changes = diff(old, new);
    changes.insert("prompt_version_id".into(), json!(snap.id));
    audit::record(
        txn,
        ctx,
        audit::Entry {
            action,
            resource_type: "broker_prompt_config",
            resource_id: Some(saved.id),
            broker_id: Some(broker_id),
            changes: Value::Object(changes),
        },
    )
    .await?;
    Ok((saved, Some(snap)))
}

/// `PUT /api/broker/config/prompt`.
pub async fn update_prompt(
    db: &DatabaseConnection,
    ctx: &Ctx,
    requested: Option<i64>,
    mut patch: PromptPatch,
) -> Result<(broker_prompt_configs::Model, Option<PromptVersion>)> {
    let broker_id = scope(ctx, requested)?;
    patch.all_handlers = None;
    patch.validate()?;
    let txn = db.begin().await?;
    let current = lock_prompt_config(&txn, broker_id).await?;
    let old = sections_of(&txn, &current).await?;
    let mut new = old.clone();
    patch.apply_to_sections(&mut new);
    let out =
        save_sections(&txn, ctx, current, &old, &new, "broker_config_prompt_update", "Prompt configuration changed")
            .await?;
    txn.commit().await?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Agent prompts
// ---------------------------------------------------------------------------------------------

/// `PUT /api/broker/config/agent-prompts`: per agent, `Some("")` clears the override, `None` keeps it.
#[derive(Clone, Debug, Default)]
pub struct AgentPromptsPatch {
    pub prompts: Vec<(Agent, Option<String>)>,
    pub skills: Vec<(Agent, Option<String>)>,
}

/// The stored prompt configuration of the broker (for the agent-prompts view).
pub async fn prompt_config(
    db: &DatabaseConnection,
    ctx: &Ctx,
    requested: Option<i64>,
) -> Result<(broker_prompt_configs::Model, PromptSections)> {
    let broker_id = scope(ctx, requested)?;
    let p = broker_prompt_configs::Entity::find()
        .filter(broker_prompt_configs::Column::BrokerId.eq(broker_id))
        .one(db)
        .await?
        .ok_or(Error::NotFound("Broker"))?;
    let sections = sections_of(db, &p).await?;
    Ok((p, sections))
}

pub async fn update_agent_prompts(
    db: &DatabaseConnection,
    ctx: &Ctx,
    requested: Option<i64>,
    patch: AgentPromptsPatch,
) -> Result<Option<PromptVersion>> {
    let broker_id = scope(ctx, requested)?;
    let mut edits: Vec<(String, Option<String>)> = Vec::new();
    for (agent, text) in &patch.prompts {
        edits.push((agent_key(*agent), text.clone()));
    }
    for (agent, text) in &patch.skills {
        edits.push((skill_key(*agent), text.clone()));
    }
    for (key, text) in &edits {
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_SECTION) {
            let field = key.trim_start_matches("_agent_").replace("_skill_", "skill_");
            return Err(Error::invalid(
                "validation_error",
                body_field(&[&field], format!("must have at most {MAX_SECTION} characters")),
            ));
        }
    }
    let txn = db.begin().await?;
    let current = lock_prompt_config(&txn, broker_id).await?;
    let old = sections_of(&txn, &current).await?;
    let mut new = old.clone();
    for (key, text) in edits {
        match text.as_deref().map(str::trim) {
            Some("") => {
                new.situation_handlers.remove(&key);
            }
            Some(t) => {
                new.situation_handlers.insert(key, t.to_string());
            }
            None => {}
        }
    }
    let (_, snap) =
        save_sections(&txn, ctx, current, &old, &new, "broker_config_agent_prompts_update", "Agent prompts changed")
            .await?;
    txn.commit().await?;
    Ok(snap)
}

// ---------------------------------------------------------------------------------------------
// Lead scoring and qualification
// ---------------------------------------------------------------------------------------------

/// A change of the lead configuration; `None` leaves a field as it is. JSON fields are checked here
/// so every client gets the same errors.
#[derive(Clone, Debug, Default)]
pub struct LeadPatch {
    pub field_weights: Option<Value>,
    pub cold_max_score: Option<i64>,
    pub warm_max_score: Option<i64>,
    pub hot_min_score: Option<i64>,
    pub qualified_min_score: Option<i64>,
    pub field_priority: Option<Vec<String>>,
    pub qualification_criteria: Option<Value>,
    pub max_acceptable_debt: Option<i64>,
    /// `Some(None)` goes back to the default tiers.
    pub scoring_config: Option<Option<Value>>,
    pub alert_on_hot_lead: Option<bool>,
    pub alert_on_qualified: Option<bool>,
    pub alert_score_threshold: Option<i64>,
    pub alert_email: Option<Option<String>>,
}

fn invalid(code: &'static str, loc: &[&str], msg: impl Into<String>) -> Error {
    Error::invalid(code, body_field(loc, msg))
}

fn number_in(v: &Value, max: f64) -> Option<f64> {
    v.as_f64().filter(|n| n.is_finite() && *n >= 0.0 && *n <= max)
}

fn check_weights(v: &Value) -> Result<()> {
    let Some(obj) = v.as_object() else {
        return Err(invalid("invalid_weights", &["field_weights"], "must be an object of field → points"));
    };
    for (k, w) in obj {
        if prompt::field_label(k).is_none() {
            let known: Vec<&str> = FIELDS.iter().map(|(k, _)| *k).collect();
            return Err(invalid(
                "invalid_weights",
                &["field_weights", k],
                format!("unknown field; expected one of {}", known.join(", ")),
            ));
        }
        if number_in(w, 100.0).is_none() {
            return Err(invalid("invalid_weights", &["field_weights", k], "must be a number from 0 to 100"));
        }
    }
    Ok(())
}

fn check_priority(p: &[String]) -> Result<()> {
    if p.is_empty() || p.len() > FIELDS.len() {
        return Err(invalid("invalid_field_priority", &["field_priority"], "must list 1 to 7 fields"));
    }
    for (i, k) in p.iter().enumerate() {
        let idx = i.to_string();
        if prompt::field_label(k).is_none() {
            return Err(invalid("invalid_field_priority", &["field_priority", &idx], format!("unknown field '{k}'")));
        }
        if p[..i].contains(k) {
            return Err(invalid("invalid_field_priority", &["field_priority", &idx], format!("'{k}' is repeated")));
        }
    }
    Ok(())
}

fn check_tier(v: &Value, name: &str) -> Result<()> {
    let loc = |k: &str| ["qualification_criteria", name, k].map(str::to_string);
    let err = |k: &str, msg: &str| {
        let l = loc(k);
        invalid("invalid_criteria", &[l[0].as_str(), l[1].as_str(), l[2].as_str()], msg)
    };
    let Some(obj) = v.as_object() else {
        return Err(invalid("invalid_criteria", &["qualification_criteria", name], "must be an object"));
    };
    for (k, val) in obj {
        match k.as_str() {
            "min_monthly_income" | "max_debt_amount" => {
                if val.as_i64().is_none_or(|n| n < 0) {
                    return Err(err(k, "must be a non-negative integer (CLP)"));
                }
            }
            "dicom_status" => {
                let ok = val.as_array().is_some_and(|a| {
                    !a.is_empty() && a.iter().all(|s| matches!(s.as_str(), Some("clean" | "has_debt")))
                });
                if !ok {
                    return Err(err(k, "must be a non-empty list of 'clean' / 'has_debt'"));
                }
            }
            _ => return Err(err(k, "unknown key; expected min_monthly_income, dicom_status, max_debt_amount")),
        }
    }
    Ok(())
}

fn check_criteria(v: &Value) -> Result<()> {
    let Some(obj) = v.as_object() else {
        return Err(invalid("invalid_criteria", &["qualification_criteria"], "must be an object"));
    };
    for (k, val) in obj {
        match k.as_str() {
            "calificado" | "potencial" => check_tier(val, k)?,
            "no_calificado" if val.is_object() || val.is_null() => {}
            _ => {
                return Err(invalid(
                    "invalid_criteria",
                    &["qualification_criteria", k],
                    "expected calificado, potencial or no_calificado (an object)",
                ));
            }
        }
    }
    let c = Criteria::from_stored(v);
    if c.calificado.min_monthly_income < c.potencial.min_monthly_income {
        return Err(invalid(
            "invalid_criteria",
            &["qualification_criteria", "calificado", "min_monthly_income"],
            "calificado needs at least the income of potencial",
        ));
    }
    Ok(())
}

fn check_scoring(v: &Value) -> Result<()> {
    let Some(obj) = v.as_object() else {
        return Err(invalid("invalid_scoring_config", &["scoring_config"], "must be an object"));
    };
    for (k, val) in obj {
        match k.as_str() {
            "income_tiers" => {
                let Some(tiers) = val.as_array().filter(|t| !t.is_empty() && t.len() <= 20) else {
                    return Err(invalid("invalid_scoring_config", &["scoring_config", k], "must list 1 to 20 tiers"));
                };
                for (i, t) in tiers.iter().enumerate() {
                    let idx = i.to_string();
                    let loc = ["scoring_config", "income_tiers", idx.as_str()];
                    let min_ok = t.get("min").and_then(Value::as_i64).is_some_and(|m| m >= 0);
                    let pts_ok = t.get("points").and_then(|p| number_in(p, 100.0)).is_some();
                    let label_ok =
                        t.get("label").is_none_or(|l| l.is_null() || l.as_str().is_some_and(|s| s.len() <= 50));
                    let keys_ok = t
                        .as_object()
                        .is_some_and(|o| o.keys().all(|k| matches!(k.as_str(), "min" | "points" | "label")));
                    if !(min_ok && pts_ok && label_ok && keys_ok) {
                        return Err(invalid(
                            "invalid_scoring_config",
                            &loc,
                            "a tier is {min: CLP ≥ 0, points: 0–100, label?: text}",
                        ));
                    }
                }
            }
            "dicom_clean_pts" | "dicom_has_debt_pts" | "dicom_small_debt_pts" => {
                if number_in(val, 100.0).is_none() {
                    return Err(invalid(
                        "invalid_scoring_config",
                        &["scoring_config", k],
                        "must be a number from 0 to 100",
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    "invalid_scoring_config",
                    &["scoring_config", k],
                    "unknown key; expected income_tiers, dicom_clean_pts, dicom_has_debt_pts",
                ));
            }
        }
    }
    Ok(())
}

fn score_field(v: Option<i64>, field: &str) -> Result<Option<i32>> {
    match v {
        None => Ok(None),
        Some(n) if (0..=100).contains(&n) => Ok(Some(n as i32)),
        Some(_) => Err(invalid("invalid_thresholds", &[field], "must be between 0 and 100")),
    }
}

/// The default scoring parameters as the API shows them.
pub fn default_scoring_config() -> Value {
    let d = ScoringConfig::default();
    json!({
        "income_tiers": d.income_tiers.iter().map(|t| json!({"min": t.min, "points": t.points, "label": t.label})).collect::<Vec<_>>(),
        "dicom_clean_pts": d.dicom_clean_pts,
        "dicom_has_debt_pts": d.dicom_small_debt_pts,
    })
}

/// `PUT /api/broker/config/leads`. Thresholds must stay ordered: 0 ≤ cold_max < warm_max < 100 and
/// warm_max ≤ hot_min ≤ 100 (`hot_min_score`, informational, follows `warm_max_score` up when not
/// given). The lead rules read this row on every computation, so changes apply at once.
pub async fn update_leads(
    db: &DatabaseConnection,
    ctx: &Ctx,
    requested: Option<i64>,
    patch: LeadPatch,
) -> Result<(broker_lead_configs::Model, Option<PromptVersion>)> {
    let broker_id = scope(ctx, requested)?;
    if let Some(w) = &patch.field_weights {
        check_weights(w)?;
    }
    if let Some(p) = &patch.field_priority {
        check_priority(p)?;
    }
    if let Some(c) = &patch.qualification_criteria {
        check_criteria(c)?;
    }
    if let Some(Some(s)) = &patch.scoring_config {
        check_scoring(s)?;
    }
    if patch.max_acceptable_debt.is_some_and(|d| d < 0) {
        return Err(invalid("validation_error", &["max_acceptable_debt"], "must be ≥ 0 (CLP)"));
    }
    let cold = score_field(patch.cold_max_score, "cold_max_score")?;
    let warm = score_field(patch.warm_max_score, "warm_max_score")?;
    let hot = score_field(patch.hot_min_score, "hot_min_score")?;
    let qualified = score_field(patch.qualified_min_score, "qualified_min_score")?;
    let alert = score_field(patch.alert_score_threshold, "alert_score_threshold")?;
    let alert_email = match patch.alert_email.clone() {
        Some(Some(e)) if !e.trim().is_empty() => {
            Some(Some(Email::parse(&e).map_err(|m| invalid("validation_error", &["alert_email"], m))?.into_string()))
        }
        Some(_) => Some(None),
        None => None,
    };

    let txn = db.begin().await?;
    let prompt_row = lock_prompt_config(&txn, broker_id).await?;
    let current = lead_config(&txn, broker_id, true).await?;
    let old_sections = sections_of(&txn, &prompt_row).await?;

    let cold = cold.unwrap_or(current.cold_max_score);
    let warm = warm.unwrap_or(current.warm_max_score);
    let hot = hot.unwrap_or(current.hot_min_score.max(warm));
    if cold >= warm {
        let field = if patch.cold_max_score.is_some() { "cold_max_score" } else { "warm_max_score" };
        return Err(invalid(
            "invalid_thresholds",
            &[field],
            format!("cold_max_score ({cold}) must be lower than warm_max_score ({warm})"),
        ));
    }
    if warm >= 100 {
        return Err(invalid(
            "invalid_thresholds",
            &["warm_max_score"],
            "warm_max_score must be below 100 so a lead can be hot",
        ));
    }
    if hot < warm {
        return Err(invalid(
            "invalid_thresholds",
            &["hot_min_score"],
            format!("hot_min_score ({hot}) must be at least warm_max_score ({warm})"),
        ));
    }

    let mut changes = Map::new();
    let mut am: broker_lead_configs::ActiveModel = current.clone().into();
    macro_rules! change {
        ($field:ident, $new:expr) => {{
            let new = $new;
            if current.$field != new {
                changes.insert(stringify!($field).into(), json!(new));
                am.$field = Set(new);
            }
        }};
    }
    if let Some(w) = patch.field_weights {
        change!(field_weights, w);
    }
    change!(cold_max_score, cold);
    change!(warm_max_score, warm);
    change!(hot_min_score, hot);
    if let Some(q) = qualified {
        change!(qualified_min_score, q);
    }
    if let Some(p) = patch.field_priority {
        change!(field_priority, json!(p));
    }
    if let Some(c) = patch.qualification_criteria {
        change!(qualification_criteria, c);
    }
    if let Some(d) = patch.max_acceptable_debt {
        change!(max_acceptable_debt, d);
    }
    if let Some(s) = patch.scoring_config {
        change!(scoring_config, s);
    }
    if let Some(b) = patch.alert_on_hot_lead {
        change!(alert_on_hot_lead, b);
    }
    if let Some(b) = patch.alert_on_qualified {
        change!(alert_on_qualified, b);
    }
    if let Some(a) = alert {
        change!(alert_score_threshold, a);
    }
    if let Some(e) = alert_email {
        change!(alert_email, e);
    }
    if changes.is_empty() {
        txn.commit().await?;
        return Ok((current, None));
    }
    am.updated_at = Set(Utc::now());
    let saved = am.update(&txn).await?;
    let broker = ensure_broker(&txn, broker_id).await?;
    let new_sections = sections_from(&broker.name, &prompt_row, &saved.field_priority);
    let snap = if new_sections != old_sections {
        let s = versions::snapshot(&txn, broker_id, ctx.user_id, &new_sections, "Data priority changed").await?;
        changes.insert("prompt_version_id".into(), json!(s.id));
        Some(s)
    } else {
        None
    };
    audit::record(
        &txn,
        ctx,
        audit::Entry {
            action: "broker_config_leads_update",
            resource_type: "broker_lead_config",
            resource_id: Some(saved.id),
            broker_id: Some(broker_id),
            changes: Value::Object(changes),
        },
    )
    .await?;
    txn.commit().await?;
    Ok((saved, snap))
}

/// `PUT /api/broker/config/assignment`.
pub async fn update_assignment(
    db: &DatabaseConnection,
    ctx: &Ctx,
    requested: Option<i64>,
    enabled: bool,
) -> Result<brokers::Model> {
    let broker_id = scope(ctx, requested)?;
    let txn = db.begin().await?;
    let broker = brokers::Entity::find_by_id(broker_id)
        // NO KEY UPDATE: leads and users keep inserting (their foreign-key checks take KEY SHARE).
        .lock(LockType::NoKeyUpdate)
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("Broker"))?;
    if broker.priority_assignment_enabled == enabled {
        txn.commit().await?;
        return Ok(broker);
    }
    let mut am: brokers::ActiveModel = broker.into();
    am.priority_assignment_enabled = Set(enabled);
    am.updated_at = Set(Utc::now());
    let saved = am.update(&txn).await?;
    audit::record(
        &txn,
        ctx,
        audit::Entry {
            action: "broker_config_assignment_update",
            resource_type: "broker",
            resource_id: Some(broker_id),
            broker_id: Some(broker_id),
            changes: json!({"priority_assignment_enabled": enabled}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(saved)
}

// ---------------------------------------------------------------------------------------------
// Preview and defaults
// ---------------------------------------------------------------------------------------------

/// Conversation states a preview may be rendered for.
pub const STATES: [&str; 7] =
    ["greeting", "interest_check", "data_collection", "financial_qualification", "scheduling", "completed", "lost"];

/// `GET /api/broker/config/prompt/preview`: the system prompt the LLM gets (for `state`, with that
/// stage's agent prompt), and the active version it is based on.
pub async fn preview(
    db: &DatabaseConnection,
    ctx: &Ctx,
    requested: Option<i64>,
    state: Option<String>,
) -> Result<(String, Option<PromptVersion>)> {
    let broker_id = scope(ctx, requested)?;
    if let Some(s) = &state
        && !STATES.contains(&s.as_str())
    {
        return Err(Error::invalid(
            "validation_error",
            FieldError::query("conversation_state", format!("expected one of {}", STATES.join(", ")), "enum"),
        ));
    }
    let (cfg, version) = load_with_version(db, broker_id).await?;
    let turn = TurnContext { conversation_state: state, ..Default::default() };
    Ok((build_system_prompt(&cfg, &turn), version))
}

/// `GET /api/broker/config/defaults`: what a new broker starts with.
pub fn defaults() -> Value {
    let sections = PromptSections::default();
    json!({
        "prompt": {
            "agent_name": DEFAULT_AGENT_NAME,
            "agent_role": DEFAULT_AGENT_ROLE,
            "enable_appointment_booking": true,
            "timezone": DEFAULT_TIMEZONE,
            "identity_prompt": prompt::DEFAULT_IDENTITY,
            "business_context": prompt::DEFAULT_CONTEXT,
            "agent_objective": prompt::DEFAULT_OBJECTIVE,
            "behavior_rules": prompt::DEFAULT_RULES,
            "restrictions": prompt::DEFAULT_RESTRICTIONS,
            "default_system_prompt": prompt::compose_base(&sections),
            "agent_prompts": Agent::ALL.iter().map(|a| (a.key().to_string(), json!(a.default_prompt()))).collect::<Map<_, _>>(),
        },
        "leads": {
            "field_weights": {"name": 10, "phone": 10, "email": 5, "location": 10, "budget": 5},
            "cold_max_score": 20,
            "warm_max_score": 50,
            "hot_min_score": 50,
            "qualified_min_score": 75,
            "field_priority": ["name", "phone", "email", "location", "budget"],
            "qualification_criteria": {
                "calificado": {"min_monthly_income": 1_000_000, "dicom_status": ["clean"], "max_debt_amount": 0},
                "potencial": {"min_monthly_income": 500_000, "dicom_status": ["clean"], "max_debt_amount": 0},
            },
            "max_acceptable_debt": 0,
            "scoring_config": default_scoring_config(),
            "alert_on_hot_lead": true,
            "alert_on_qualified": true,
            "alert_score_threshold": 70,
        },
    })
}
