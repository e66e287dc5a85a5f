//! The rules a chat turn runs after its data landed on the lead (SPEC §6 step 6, §7): score with its
//! components, status, calificación and the forward-only stage moves — the pure
//! `leads::scoring`, `leads::qualification` and `pipeline::rules`, applied on the turn's transaction.
//!
//! A small private adapter with the contract of `leads::rules_service` (`apply` on the caller's
//! connection, `publish` after the commit), used until that service is merged.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, Set, Statement};
use serde_json::{Value, json};

use crate::chat::engine::{is_real_name, profile::is_real_email, profile::is_real_phone};
use crate::entities::{activity_log, leads};
use crate::error::Result;
use crate::leads::model::{Stage, Status, open_metadata};
use crate::leads::qualification::{Criteria, qualify};
use crate::leads::scoring::{self, Dicom, ScoreInput, ScoringConfig};
use crate::pipeline::rules::{self as stage_rules, Facts, Reason};
use crate::{Infra, events};

/// What the rules changed, for the events published after the commit.
#[derive(Clone, Debug)]
pub struct RulesOutcome {
    /// The lead as written.
    pub lead: leads::Model,
    /// Every automatic stage move, in order.
    pub moves: Vec<(Stage, Stage, Reason)>,
    /// The status turned `hot` with this recomputation.
    pub became_hot: bool,
}

/// Recomputes and writes score, components, status, calificación and stage of `lead` on `db`.
pub async fn apply(
    infra: &Infra,
    db: &impl ConnectionTrait,
    lead: leads::Model,
    now: DateTime<Utc>,
) -> Result<RulesOutcome> {
    // One round trip for everything the rules read besides the lead itself.
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT lc.field_weights, lc.scoring_config, lc.max_acceptable_debt, lc.cold_max_score, \
                    lc.warm_max_score, lc.qualification_criteria, \
                    EXISTS (SELECT 1 FROM appointments a WHERE a.lead_id = $2 \
                            AND a.status IN ('scheduled', 'confirmed')) AS appointment_active, \
                    EXISTS (SELECT 1 FROM appointments a WHERE a.lead_id = $2 AND a.status = 'completed') \
                            AS appointment_completed, \
                    COALESCE((SELECT c.inbound_count FROM chat_conversations c WHERE c.lead_id = $2), 0) AS inbound \
             FROM (SELECT 1) one LEFT JOIN broker_lead_configs lc ON lc.broker_id = $1",
            [lead.broker_id.into(), lead.id.into()],
        ))
        .await?
        .ok_or_else(|| crate::error::Error::internal(anyhow::anyhow!("the rules query returned no row")))?;
    let weights: Option<Value> = row.try_get("", "field_weights")?;
    let (scoring_cfg, criteria, cold, warm) = match weights {
        Some(w) => {
            let sc: Option<Value> = row.try_get("", "scoring_config")?;
            let debt: i64 = row.try_get("", "max_acceptable_debt")?;
            let crit: Value = row.try_get("", "qualification_criteria")?;
            (
                ScoringConfig::from_stored(&w, sc.as_ref(), debt),
                Criteria::from_stored(&crit),
                row.try_get::<i32>("", "cold_max_score")?,
                row.try_get::<i32>("", "warm_max_score")?,
            )
        }
        None => (ScoringConfig::default(), Criteria::default(), 20, 50),
    };
    let appointment_active: bool = row.try_get("", "appointment_active")?;
    let appointment_completed: bool = row.try_get("", "appointment_completed")?;
    let inbound: i32 = row.try_get("", "inbound")?;
    let meta = open_metadata(&infra.cipher, lead.metadata.clone());
    let income = meta.get("monthly_income").and_then(Value::as_i64);
    let dicom = meta.get("dicom_status").and_then(Value::as_str).and_then(Dicom::parse);
    let debt = meta.get("morosidad_amount").and_then(Value::as_i64);

    let has_name = lead.name.as_deref().is_some_and(is_real_name);
    let has_phone = lead.phone.as_deref().is_some_and(is_real_phone);
    let has_location = meta.get("location").and_then(Value::as_str).is_some_and(|l| !l.trim().is_empty());
    let input = ScoreInput {
        has_name,
        has_phone,
        has_email: lead.email.as_deref().is_some_and(is_real_email),
        has_location,
        has_budget: meta.get("budget").is_some_and(|b| !b.is_null()),
        monthly_income: income,
        dicom,
        morosidad_amount: debt,
        inbound_messages: u32::try_from(inbound).unwrap_or(0),
        fast_responder: meta
            .get("response_metrics")
            .and_then(|m| m.get("is_fast_responder"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        appointment_booked: appointment_active || appointment_completed,
        timeline: meta.get("timeline").and_then(Value::as_str).map(String::from),
        intent: meta.get("intent").and_then(Value::as_str).map(String::from),
        opted_out: meta.get("opted_out").and_then(Value::as_bool).unwrap_or(false),
        last_contacted: lead.last_contacted,
        created_at: Some(lead.created_at),
    };
    let score = scoring::score(&input, &scoring_cfg, now);
    let calificacion = qualify(&criteria, income, dicom, debt);
    let facts = Facts {
        has_real_name: has_name,
        has_phone,
        has_location,
        has_income: income.is_some(),
        calificacion,
        appointment_active,
        appointment_completed,
    };
    let old_stage: Stage = lead.pipeline_stage.parse().unwrap_or(Stage::Entrada);
    let moves = stage_rules::advance(old_stage, &facts);
    let stage = moves.last().map_or(old_stage, |(_, to, _)| *to);
    let status = scoring::status(score.total, stage.as_str(), &lead.status, cold, warm);

    let (old_score, old_status) = (lead.lead_score, lead.status.clone());
    let mut am = lead.into_active_model();
    am.lead_score = Set(score.total);
    am.lead_score_components = Set(score.components.clone());
    am.status = Set(status.as_str().to_string());
    am.calificacion = Set(calificacion.map(|c| c.as_str().to_string()));
    if stage != old_stage {
        am.pipeline_stage = Set(stage.as_str().to_string());
        am.stage_entered_at = Set(now);
        if stage == Stage::Perdido {
            am.close_reason = Set(Some(Reason::NoCalificado.as_str().to_string()));
            am.closed_at = Set(Some(now));
        }
    }
    am.updated_at = Set(now);
    let lead = am.update(db).await?;

    let row = |action: &str, details: Value| activity_log::ActiveModel {
        lead_id: Set(lead.id),
        broker_id: Set(lead.broker_id),
        user_id: Set(None),
        action_type: Set(action.to_string()),
        details: Set(details),
        ..Default::default()
    };
    let mut rows: Vec<activity_log::ActiveModel> = moves
        .iter()
        .map(|(from, to, reason)| {
            row(
                "stage_change",
                json!({"old_stage": from.as_str(), "new_stage": to.as_str(), "reason": reason.as_str(),
                       "automatic": true, "triggered_by_campaign": null, "stage_entered_at": now}),
            )
        })
        .collect();
    if (score.total - old_score).abs() > f64::EPSILON {
        rows.push(row(
            "score_update",
            json!({"old_score": old_score, "new_score": score.total, "delta": score.total - old_score,
                   "reason": "chat_message", "components": score.components}),
        ));
    }
    if !rows.is_empty() {
        activity_log::Entity::insert_many(rows).exec(db).await?;
    }
    let became_hot = status == Status::Hot && old_status != Status::Hot.as_str();
    Ok(RulesOutcome { lead, moves, became_hot })
}

/// The live events of a recomputation: `stage_changed` per move, `lead_hot` when it turned hot.
pub async fn publish(infra: &Infra, o: &RulesOutcome) {
    let lead = &o.lead;
    for (from, to, reason) in &o.moves {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            lead.broker_id,
            "stage_changed",
            json!({"lead_id": lead.id, "old_stage": from.as_str(), "new_stage": to.as_str(), "reason": reason.as_str()}),
        )
        .await;
    }
    if o.became_hot {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            lead.broker_id,
            "lead_hot",
            json!({"lead_id": lead.id, "lead_name": lead.name, "lead_score": lead.lead_score,
                   "calificacion": lead.calificacion, "assigned_to": lead.assigned_to}),
        )
        .await;
    }
}
