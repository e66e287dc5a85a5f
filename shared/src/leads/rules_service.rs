//! The lead rules applied to one lead row (SPEC §7): score with its explained components, status,
//! calificación and the automatic forward-only stage moves, written back in the caller's transaction.
//!
//! # Contract (used by the chat service, the recalculate endpoint, auto-advance and the nightly job)
//!
//! ```text
//! let txn = infra.db.begin().await?;
//! let lead = /* the lead row, locked (SELECT … FOR UPDATE), with this turn's data already written */;
//! let outcome = rules_service::apply(&infra, &txn, lead, Utc::now()).await?;
//! txn.commit().await?;
//! rules_service::publish(&infra, &outcome).await;   // after commit: stage_changed per move, lead_hot
//! ```
//!
//! - [`apply`] reads everything it needs itself on `db`: the broker's `broker_lead_configs` row (fresh
//!   on every call, so a change of weights, thresholds or criteria applies to the very next message),
//!   the decrypted metadata (`monthly_income`, `dicom_status`, `morosidad_amount`, `location`,
//!   `budget`, `timeline`, `intent`, and the opt-out flags `engine.opted_out` / `opted_out`), inbound
//!   message count and reply speed from `chat_messages`, and appointments (scheduled/confirmed,
//!   completed).
//! - It updates only the columns it owns: `lead_score`, `lead_score_components`, `status`,
//!   `calificacion`, `pipeline_stage`, `stage_entered_at`, `close_reason`/`closed_at` (a lead lost as
//!   `no_calificado`), `metadata.response_metrics` and the `respuesta_rapida` tag; the other columns
//!   are left as they are in the database. [`RulesOutcome::lead`] is the row after the update: a
//!   caller that writes the lead again must continue from it.
//! - Activity rows: `stage_change` per move (`reason`, `automatic: true`) and `score_update` when the
//!   score, status or calificación changed. Nothing is written when nothing changed.
//! - [`publish`] also enrols the lead in the stage-change campaigns of its new stage.
//! - Stage moves only go forward ([`crate::pipeline::rules`]); closed leads (`converted`/`lost`) keep
//!   their status.
//! - It never publishes; [`publish`] sends the events of an outcome once the caller committed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, IntoActiveModel,
    QueryFilter, Set, Statement,
};
use serde_json::{Map, Value, json};

use super::model::{Calificacion, Stage, Status, open_metadata};
use super::qualification::{self, Criteria};
use super::scoring::{self, Dicom, ScoreInput, ScoringConfig};
use crate::chat::engine::profile::{is_real_email, is_real_name, is_real_phone};
use crate::entities::{activity_log, broker_lead_configs, leads};
use crate::error::Result;
use crate::pipeline::rules::{self, Facts, Reason};
use crate::{Infra, events};

/// The tag a fast responder carries.
pub const FAST_TAG: &str = "respuesta_rapida";
/// A reply within this many seconds is fast.
pub const FAST_SECONDS: f64 = 60.0;
/// Replies needed before a lead can be called a fast responder.
pub const MIN_REPLIES: i64 = 3;

/// What [`apply`] decided and wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct RulesOutcome {
    /// The row after the update.
    pub lead: leads::Model,
    pub score: f64,
    /// The explained score components, as stored in `lead_score_components`.
    pub components: Value,
    pub status: Status,
    pub previous_status: Status,
    pub calificacion: Option<Calificacion>,
    /// The automatic forward-only moves applied, in order.
    pub stage_moves: Vec<(Stage, Stage, Reason)>,
    /// The lead turned `hot` with this call.
    pub became_hot: bool,
    /// Whether anything was written (false: the lead already agreed with the rules).
    pub changed: bool,
}

/// A broker's rule parameters, read from `broker_lead_configs` (defaults when it has no row).
#[derive(Clone, Debug, PartialEq)]
pub struct RulesConfig {
    pub scoring: ScoringConfig,
    pub criteria: Criteria,
    pub cold_max: i32,
    pub warm_max: i32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self { scoring: ScoringConfig::default(), criteria: Criteria::default(), cold_max: 20, warm_max: 50 }
    }
}

impl RulesConfig {
    pub fn from_row(c: &broker_lead_configs::Model) -> Self {
        Self {
            scoring: ScoringConfig::from_stored(&c.field_weights, c.scoring_config.as_ref(), c.max_acceptable_debt),
            criteria: Criteria::from_stored(&c.qualification_criteria),
            cold_max: c.cold_max_score,
            warm_max: c.warm_max_score,
        }
    }

    /// The broker's current configuration.
    pub async fn load(db: &impl ConnectionTrait, broker_id: i64) -> Result<Self> {
        let row = broker_lead_configs::Entity::find()
            .filter(broker_lead_configs::Column::BrokerId.eq(broker_id))
            .one(db)
            .await?;
        Ok(row.as_ref().map(Self::from_row).unwrap_or_default())
    }
}

/// What the database knows about a lead's conversation and appointments.
#[derive(Clone, Debug, Default, PartialEq, FromQueryResult)]
pub struct Activity {
    pub lead_id: i64,
    pub inbound: i64,
    /// Outbound → inbound turnarounds (consecutive inbounds count once).
    pub replies: i64,
    pub avg_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    pub fast_replies: i64,
    pub last_seconds: Option<f64>,
    pub appointment_active: bool,
    pub appointment_completed: bool,
}

impl Activity {
    /// Reference §4.6: at least 3 replies averaging at most 60 s.
    pub fn fast_responder(&self) -> bool {
        self.replies >= MIN_REPLIES && self.avg_seconds.is_some_and(|a| a <= FAST_SECONDS)
    }

    /// The `response_metrics` object kept in the lead's metadata.
    pub fn response_metrics(&self) -> Value {
        let r1 = |v: Option<f64>| v.map(round1);
        json!({
            "reply_count": self.replies,
            "avg_response_seconds": r1(self.avg_seconds),
            "median_response_seconds": r1(self.median_seconds),
            "fast_reply_count": self.fast_replies,
            "last_response_seconds": r1(self.last_seconds),
            "is_fast_responder": self.fast_responder(),
            "threshold_seconds": FAST_SECONDS,
            "min_replies_required": MIN_REPLIES,
        })
    }
}

/// One round trip for a batch of leads (`$1`: a JSON array of ids): message counts and reply speed
/// over `chat_messages` (index `chat_messages_lead_idx`), and appointment facts.
const ACTIVITY_SQL: &str = "\
SELECT l.id AS lead_id, a.* FROM (SELECT (jsonb_array_elements_text($1::jsonb))::bigint AS id) l
CROSS JOIN LATERAL (
  SELECT
    count(*) FILTER (WHERE direction = 'in')::bigint AS inbound,
    count(*) FILTER (WHERE reply)::bigint AS replies,
    avg(gap) FILTER (WHERE reply) AS avg_seconds,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FILTER (WHERE reply) AS median_seconds,
    count(*) FILTER (WHERE reply AND gap <= 60)::bigint AS fast_replies,
    (array_agg(gap ORDER BY sent_at DESC, mid DESC) FILTER (WHERE reply))[1] AS last_seconds,
    EXISTS (SELECT 1 FROM appointments p WHERE p.lead_id = l.id AND p.status IN ('scheduled', 'confirmed'))
      AS appointment_active,
    EXISTS (SELECT 1 FROM appointments p WHERE p.lead_id = l.id AND p.status = 'completed') AS appointment_completed
  FROM (
    SELECT c.id AS mid, c.created_at AS sent_at, c.direction,
           COALESCE(c.direction = 'in' AND lag(c.direction) OVER w = 'out' AND c.created_at > lag(c.created_at) OVER w,
                    false) AS reply,
           extract(epoch FROM c.created_at - lag(c.created_at) OVER w)::float8 AS gap
    FROM chat_messages c WHERE c.lead_id = l.id
    WINDOW w AS (ORDER BY c.created_at, c.id)
  ) m
) a";

/// The conversation and appointment facts of each lead in `ids`.
pub async fn activities(db: &impl ConnectionTrait, ids: &[i64]) -> Result<HashMap<i64, Activity>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, ACTIVITY_SQL, [json!(ids).into()]);
    let rows = Activity::find_by_statement(stmt).all(db).await?;
    Ok(rows.into_iter().map(|a| (a.lead_id, a)).collect())
}

/// The conversation and appointment facts of one lead.
pub async fn activity(db: &impl ConnectionTrait, lead_id: i64) -> Result<Activity> {
    let mut all = activities(db, &[lead_id]).await?;
    Ok(all.remove(&lead_id).unwrap_or(Activity { lead_id, ..Activity::default() }))
}

/// Recomputes score (with components), status (thresholds from the broker's lead config, read fresh
/// so a config change applies at once), calificación and the automatic forward-only stage moves for
/// one lead, writes them to the lead row and activity rows on `db` (the caller's transaction).
/// Does not publish: call [`publish`] after commit.
#[tracing::instrument(skip_all, fields(lead_id = lead.id, broker_id = lead.broker_id))]
pub async fn apply(
    infra: &Infra,
    db: &impl ConnectionTrait,
    lead: leads::Model,
    now: DateTime<Utc>,
) -> Result<RulesOutcome> {
    let cfg = RulesConfig::load(db, lead.broker_id).await?;
    let facts = activity(db, lead.id).await?;
    apply_with(infra, db, &cfg, &facts, lead, now).await
}

/// [`apply`] with the configuration and facts already read (batch callers read them once per batch).
pub async fn apply_with(
    infra: &Infra,
    db: &impl ConnectionTrait,
    cfg: &RulesConfig,
    facts: &Activity,
    lead: leads::Model,
    now: DateTime<Utc>,
) -> Result<RulesOutcome> {
    let metadata = open_metadata(&infra.cipher, lead.metadata.clone());
    let d = decide(cfg, &lead, &metadata, facts, now);
    if !d.changed {
        return Ok(d.into_outcome(lead, false));
    }

    let mut am = lead.clone().into_active_model();
    if d.score != lead.lead_score {
        am.lead_score = Set(d.score);
    }
    if d.components != lead.lead_score_components {
        am.lead_score_components = Set(d.components.clone());
    }
    if d.status.as_str() != lead.status {
        am.status = Set(d.status.as_str().to_string());
    }
    let calificacion = d.calificacion.map(|c| c.as_str().to_string());
    if calificacion != lead.calificacion {
        am.calificacion = Set(calificacion);
    }
    if let Some((_, to, reason)) = d.moves.last() {
        am.pipeline_stage = Set(to.as_str().to_string());
        am.stage_entered_at = Set(now);
        if *to == Stage::Perdido {
            am.close_reason = Set(Some(reason.as_str().to_string()));
            am.closed_at = Set(Some(now));
        }
    }
    if let Some(tags) = &d.tags {
        am.tags = Set(tags.clone());
    }
    if let Some(metrics) = &d.response_metrics {
        // The stored metadata keeps its sealed values; only this key is replaced.
        let mut stored = match &lead.metadata {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        stored.insert("response_metrics".into(), metrics.clone());
        am.metadata = Set(Value::Object(stored));
    }
    am.updated_at = Set(now);
    let updated = am.update(db).await?;

    let mut rows = Vec::new();
    for (from, to, reason) in &d.moves {
        rows.push(activity_row(
            &updated,
            "stage_change",
            json!({"old_stage": from.as_str(), "new_stage": to.as_str(), "reason": reason.as_str(), "automatic": true,
                   "triggered_by_campaign": null, "stage_entered_at": now}),
            now,
        ));
    }
    let previous_calificacion = lead.calificacion.as_deref();
    if d.score != lead.lead_score
        || d.status.as_str() != lead.status
        || d.calificacion.map(Calificacion::as_str) != previous_calificacion
    {
        rows.push(activity_row(
            &updated,
            "score_update",
            json!({"old_score": lead.lead_score, "new_score": d.score, "delta": round1(d.score - lead.lead_score),
                   "old_status": lead.status, "new_status": d.status.as_str(),
                   "old_calificacion": previous_calificacion, "calificacion": d.calificacion.map(Calificacion::as_str),
                   "components": d.components}),
            now,
        ));
    }
    if !rows.is_empty() {
        activity_log::Entity::insert_many(rows).exec(db).await?;
    }
    Ok(d.into_outcome(updated, true))
}

fn activity_row(lead: &leads::Model, action: &str, details: Value, now: DateTime<Utc>) -> activity_log::ActiveModel {
    activity_log::ActiveModel {
        lead_id: Set(lead.id),
        broker_id: Set(lead.broker_id),
        user_id: Set(None),
        action_type: Set(action.to_string()),
        details: Set(details),
        created_at: Set(now),
        ..Default::default()
    }
}

/// WS events for an outcome: `stage_changed` per move, `lead_hot` when it turned hot.
pub async fn publish(infra: &Infra, outcome: &RulesOutcome) {
    let lead = &outcome.lead;
    for (from, to, reason) in &outcome.stage_moves {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            lead.broker_id,
            "stage_changed",
            json!({"lead_id": lead.id, "old_stage": from.as_str(), "new_stage": to.as_str(), "reason": reason.as_str(),
                   "automatic": true}),
        )
        .await;
    }
    if let Some((_, to, _)) = outcome.stage_moves.last() {
        crate::campaigns::on_stage_change(infra, lead.broker_id, lead.id, to.as_str()).await;
    }
    if outcome.became_hot {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            lead.broker_id,
            "lead_hot",
            json!({"lead_id": lead.id, "lead_name": lead.name, "lead_score": outcome.score,
                   "previous_status": outcome.previous_status.as_str(), "pipeline_stage": lead.pipeline_stage,
                   "assigned_to": lead.assigned_to}),
        )
        .await;
    }
}

/// The pure part: what the rules decide for a lead, given its data and the database facts.
#[derive(Clone, Debug, PartialEq)]
struct Decision {
    score: f64,
    components: Value,
    status: Status,
    previous_status: Status,
    calificacion: Option<Calificacion>,
    moves: Vec<(Stage, Stage, Reason)>,
    /// New tags, when the fast-responder tag changes.
    tags: Option<Value>,
    /// New `response_metrics`, when they changed.
    response_metrics: Option<Value>,
    changed: bool,
}

impl Decision {
    fn into_outcome(self, lead: leads::Model, changed: bool) -> RulesOutcome {
        RulesOutcome {
            lead,
            score: self.score,
            components: self.components,
            status: self.status,
            previous_status: self.previous_status,
            calificacion: self.calificacion,
            became_hot: changed && self.status == Status::Hot && self.previous_status != Status::Hot,
            stage_moves: self.moves,
            changed,
        }
    }
}

fn decide(
    cfg: &RulesConfig,
    lead: &leads::Model,
    metadata: &Map<String, Value>,
    facts: &Activity,
    now: DateTime<Utc>,
) -> Decision {
    let income = metadata.get("monthly_income").and_then(as_amount);
    let dicom = metadata.get("dicom_status").and_then(Value::as_str).and_then(Dicom::parse);
    let debt = metadata.get("morosidad_amount").and_then(as_amount);
    let has_location = metadata.get("location").is_some_and(is_present);
    let has_phone = lead.phone.as_deref().is_some_and(is_real_phone);
    let has_name = lead.name.as_deref().is_some_and(is_real_name);
    let fast = facts.fast_responder();
    let input = ScoreInput {
        has_name,
        has_phone,
        has_email: lead.email.as_deref().is_some_and(is_real_email),
        has_location,
        has_budget: metadata.get("budget").is_some_and(is_present),
        monthly_income: income,
        dicom,
        morosidad_amount: debt,
        inbound_messages: u32::try_from(facts.inbound).unwrap_or(u32::MAX),
        fast_responder: fast,
        appointment_booked: facts.appointment_active || facts.appointment_completed,
        timeline: metadata.get("timeline").and_then(Value::as_str).map(String::from),
        intent: metadata.get("intent").and_then(Value::as_str).map(String::from),
        opted_out: opted_out(lead, metadata),
        last_contacted: lead.last_contacted,
        created_at: Some(lead.created_at),
    };
    let score = scoring::score(&input, &cfg.scoring, now);
    let calificacion = qualification::qualify(&cfg.criteria, income, dicom, debt);

    let stage: Stage = lead.pipeline_stage.parse().unwrap_or(Stage::Entrada);
    let stage_facts = Facts {
        has_real_name: has_name,
        has_phone,
        has_location,
        has_income: income.is_some(),
        calificacion,
        appointment_active: facts.appointment_active,
        appointment_completed: facts.appointment_completed,
    };
    let moves = rules::advance(stage, &stage_facts);
    let final_stage = moves.last().map_or(stage, |(_, to, _)| *to);
    let previous_status: Status = lead.status.parse().unwrap_or(Status::Cold);
    let status = scoring::status(score.total, final_stage.as_str(), &lead.status, cfg.cold_max, cfg.warm_max);

    let tags = fast_tag_change(&lead.tags, fast);
    let metrics = facts.response_metrics();
    let response_metrics = (metadata.get("response_metrics") != Some(&metrics)).then_some(metrics);

    let changed = score.total != lead.lead_score
        || score.components != lead.lead_score_components
        || status.as_str() != lead.status
        || calificacion.map(Calificacion::as_str) != lead.calificacion.as_deref()
        || !moves.is_empty()
        || tags.is_some()
        || response_metrics.is_some();
    Decision {
        score: score.total,
        components: score.components,
        status,
        previous_status,
        calificacion,
        moves,
        tags,
        response_metrics,
        changed,
    }
}

/// The tags with the fast-responder tag added or removed, or `None` when they stay as they are.
fn fast_tag_change(tags: &Value, fast: bool) -> Option<Value> {
    let current: Vec<Value> = tags.as_array().cloned().unwrap_or_default();
    let has = current.iter().any(|t| t.as_str() == Some(FAST_TAG));
    match (fast, has) {
        (true, false) => {
            let mut next = current;
            next.push(Value::String(FAST_TAG.into()));
            Some(Value::Array(next))
        }
        (false, true) => Some(Value::Array(current.into_iter().filter(|t| t.as_str() != Some(FAST_TAG)).collect())),
        _ => None,
    }
}

/// The lead asked not to be contacted: the engine's memory (`engine.opted_out`), a metadata flag, or
/// an opt-out tag.
fn opted_out(lead: &leads::Model, metadata: &Map<String, Value>) -> bool {
    let flag = |v: Option<&Value>| v.and_then(Value::as_bool).unwrap_or(false);
    flag(metadata.get("engine").and_then(|e| e.get("opted_out")))
        || flag(metadata.get("opted_out"))
        || flag(metadata.get("do_not_contact"))
        || lead
            .tags
            .as_array()
            .is_some_and(|t| t.iter().filter_map(Value::as_str).any(|t| matches!(t, "opt_out" | "no_contactar")))
}

/// A CLP amount stored as a number or as digits ("1.500.000" included).
fn as_amount(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.round() as i64)),
        Value::String(s) => {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            if digits.is_empty() || digits.len() > 15 { None } else { digits.parse().ok() }
        }
        _ => None,
    }
}

/// A known value: not null, not an empty string, object or array.
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn lead() -> leads::Model {
        leads::Model {
            id: 1,
            broker_id: 1,
            phone: None,
            name: None,
            email: None,
            status: "cold".into(),
            lead_score: 0.0,
            lead_score_components: json!({}),
            pipeline_stage: "entrada".into(),
            stage_entered_at: now(),
            calificacion: None,
            conversation_state: None,
            assigned_to: None,
            tags: json!([]),
            metadata: json!({}),
            campaign_history: json!([]),
            human_mode: false,
            human_assigned_to: None,
            human_taken_at: None,
            human_released_at: None,
            close_reason: None,
            close_reason_detail: None,
            closed_at: None,
            notes: None,
            last_contacted: Some(now()),
            search_text: String::new(),
            created_at: now(),
            updated_at: now(),
        }
    }

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_qualified_lead_walks_to_financial_qualification_and_turns_hot() {
        let l = leads::Model {
            name: Some("María Pérez".into()),
            phone: Some("+56912345678".into()),
            email: Some("maria@correo.cl".into()),
            ..lead()
        };
        let m = meta(json!({"location": "Ñuñoa", "monthly_income": 2_500_000, "dicom_status": "clean"}));
        let d = decide(&RulesConfig::default(), &l, &m, &Activity::default(), now());
        assert_eq!(d.calificacion, Some(Calificacion::Calificado));
        let to: Vec<_> = d.moves.iter().map(|(_, to, _)| *to).collect();
        assert_eq!(to, [Stage::Perfilamiento, Stage::CalificacionFinanciera], "waits for an appointment");
        // profile 35 + income 25 + dicom 15
        assert_eq!(d.score, 75.0);
        assert_eq!(d.status, Status::Hot);
        assert!(d.changed);
        assert!(d.into_outcome(l, true).became_hot);
    }

    #[test]
    fn a_no_calificado_lead_is_lost_and_stays_lost() {
        let l = leads::Model {
            name: Some("Pedro Soto".into()),
            pipeline_stage: "calificacion_financiera".into(),
            ..lead()
        };
        let m = meta(json!({"monthly_income": 300_000, "dicom_status": "clean"}));
        let d = decide(&RulesConfig::default(), &l, &m, &Activity::default(), now());
        assert_eq!(d.moves, [(Stage::CalificacionFinanciera, Stage::Perdido, Reason::NoCalificado)]);
        assert_eq!(d.status, Status::Lost);
    }

    #[test]
    fn thresholds_come_from_the_config() {
        let l = leads::Model { name: Some("Ana Rojas".into()), phone: Some("+56911112222".into()), ..lead() };
        let d = decide(&RulesConfig::default(), &l, &Map::new(), &Activity::default(), now());
        assert_eq!((d.score, d.status), (20.0, Status::Cold));
        let strict = RulesConfig { cold_max: 10, warm_max: 15, ..RulesConfig::default() };
        assert_eq!(decide(&strict, &l, &Map::new(), &Activity::default(), now()).status, Status::Hot);
    }

    #[test]
    fn an_unchanged_lead_writes_nothing() {
        let l = lead();
        let first = decide(&RulesConfig::default(), &l, &Map::new(), &Activity::default(), now());
        let settled = leads::Model { lead_score_components: first.components.clone(), ..lead() };
        let m = meta(json!({"response_metrics": Activity::default().response_metrics()}));
        assert!(!decide(&RulesConfig::default(), &settled, &m, &Activity::default(), now()).changed);
    }

    #[test]
    fn fast_responders_are_tagged_and_untagged() {
        let fast = Activity { replies: 3, avg_seconds: Some(20.0), ..Activity::default() };
        assert!(fast.fast_responder());
        assert!(!Activity { replies: 2, avg_seconds: Some(5.0), ..Activity::default() }.fast_responder());
        assert_eq!(fast_tag_change(&json!(["vip"]), true), Some(json!(["vip", FAST_TAG])));
        assert_eq!(fast_tag_change(&json!(["vip", FAST_TAG]), false), Some(json!(["vip"])));
        assert_eq!(fast_tag_change(&json!([FAST_TAG]), true), None);
    }

    #[test]
    fn opt_out_flags_and_amounts_are_read_in_every_stored_form() {
        let l = lead();
        assert!(opted_out(&l, &meta(json!({"engine": {"opted_out": true}}))));
        assert!(opted_out(&leads::Model { tags: json!(["opt_out"]), ..lead() }, &Map::new()));
        assert!(!opted_out(&l, &meta(json!({"engine": {"opted_out": false}}))));
        assert_eq!(as_amount(&json!(1_500_000)), Some(1_500_000));
        assert_eq!(as_amount(&json!("1.500.000")), Some(1_500_000));
        assert_eq!(as_amount(&json!(1.5e6)), Some(1_500_000));
        assert_eq!(as_amount(&json!("mucho")), None);
        assert!(!is_present(&json!("  ")) && !is_present(&json!({})) && is_present(&json!({"amount": 3000})));
    }

    #[test]
    fn closed_leads_never_move_or_change_status() {
        let l = leads::Model {
            name: Some("Juan Díaz".into()),
            status: "converted".into(),
            pipeline_stage: "ganado".into(),
            ..lead()
        };
        let m = meta(json!({"monthly_income": 100_000, "dicom_status": "has_debt", "morosidad_amount": 9_000_000}));
        let d = decide(&RulesConfig::default(), &l, &m, &Activity::default(), now());
        assert!(d.moves.is_empty());
        assert_eq!(d.status, Status::Converted);
    }
}
