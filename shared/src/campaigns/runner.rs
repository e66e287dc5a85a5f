//! Running one `campaign_step` job: the step for one lead, once, then the next step's scheduling.
//!
//! Order of checks: the log, campaign, step and lead still exist (else nothing to do); a step
//! already run only makes sure its successor is scheduled (a redelivery); a paused campaign leaves
//! the step waiting (resuming pushes it again); for messages and calls, a lead who replied since
//! enrolling stops the enrolment (remaining messages and calls `skipped`, `lead_replied`), and quiet
//! hours move the step to 08:00. The effect itself runs under the job's effect key, so however
//! often the job is delivered the lead gets one message, one call, one move.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::{Value, json};

use super::compose::{self, failure};
use super::deliver::{self, Origin};
use super::enrol::{mark_replied, schedule_next};
use super::model::{Campaign, LOG_COLUMNS, Log, Step, outside_quiet_hours};
use super::service::{find_system, stmt};
use crate::ctx::Ctx;
use crate::effects::{Effect, Outcome, perform_once};
use crate::entities::leads;
use crate::error::Result;
use crate::jobs::{self, campaign_step::CampaignStep};
use crate::{Infra, events};

/// What a delivery of a `campaign_step` job did.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// The campaign, step, lead or log is gone.
    Gone,
    /// The step ran before (a redelivery); its successor is scheduled.
    AlreadyDone,
    /// The campaign is paused; the step waits for it to be resumed.
    Paused,
    /// In quiet hours: moved to this time.
    Deferred(DateTime<Utc>),
    /// Not run: `lead_replied` or `campaign_not_active`.
    Skipped(&'static str),
    /// Run now, with this log status (`sent` or `failed`).
    Ran(String),
}

async fn load_log(db: &impl ConnectionTrait, job: &CampaignStep) -> Result<Option<Log>> {
    let row = db
        .query_one_raw(stmt(
            &format!(
                "SELECT {LOG_COLUMNS} FROM campaign_logs WHERE campaign_id = $1 AND lead_id = $2 AND step_id = $3"
            ),
            vec![job.campaign_id.into(), job.lead_id.into(), job.step_id.into()],
        ))
        .await?;
    Ok(row.map(|r| Log::decode(&r)).transpose()?)
}

async fn finish_log(db: &impl ConnectionTrait, log_id: i64, status: &str, response: &Value) -> Result<bool> {
    let res = db
        .execute_raw(stmt(
            "UPDATE campaign_logs SET status = $2, response = $3, executed_at = now() WHERE id = $1 AND status = 'pending'",
            vec![log_id.into(), status.into(), response.clone().into()],
        ))
        .await?;
    Ok(res.rows_affected() > 0)
}

/// Whether the lead wrote after enrolling in the campaign.
async fn replied(db: &impl ConnectionTrait, campaign_id: i64, lead_id: i64) -> Result<bool> {
    Ok(db
        .query_one_raw(stmt(
            "SELECT 1 FROM campaign_enrolments e WHERE e.campaign_id = $1 AND e.lead_id = $2 AND \
               (e.replied_at IS NOT NULL OR EXISTS (SELECT 1 FROM chat_messages m WHERE m.lead_id = e.lead_id \
                  AND m.direction = 'in' AND m.created_at > e.enrolled_at))",
            vec![campaign_id.into(), lead_id.into()],
        ))
        .await?
        .is_some())
}

/// Runs the job's step (see the module documentation). `holder` names this attempt for the
/// effect's claim.
#[tracing::instrument(skip_all, fields(campaign_id = job.campaign_id, lead_id = job.lead_id, step_id = job.step_id))]
pub async fn run(infra: &Infra, job: &CampaignStep, holder: &str, now: DateTime<Utc>) -> Result<StepOutcome> {
    let Some(log) = load_log(&infra.db, job).await? else { return Ok(StepOutcome::Gone) };
    let Some(c) = find_system(&infra.db, job.campaign_id).await?.filter(|c| c.broker_id == job.broker_id) else {
        return Ok(StepOutcome::Gone);
    };
    let Some(step) = c.steps.iter().find(|s| s.id == job.step_id).cloned() else { return Ok(StepOutcome::Gone) };
    let Some(lead) =
        leads::Entity::find_by_id(job.lead_id).one(&infra.db).await?.filter(|l| l.broker_id == c.broker_id)
    else {
        return Ok(StepOutcome::Gone);
    };
    if log.status != "pending" {
        schedule_next(infra, &c, lead.id, step.step_number, now).await?;
        return Ok(StepOutcome::AlreadyDone);
    }
    match c.status.as_str() {
        "active" => {}
        "paused" => return Ok(StepOutcome::Paused),
        _ => {
            finish_log(&infra.db, log.id, "skipped", &json!({"reason": "campaign_not_active"})).await?;
            return Ok(StepOutcome::Skipped("campaign_not_active"));
        }
    }
    if step.reaches_lead() {
        if replied(&infra.db, c.id, lead.id).await? {
            mark_replied(&infra.db, lead.id).await?;
            // The enrolment may have been stopped by another campaign's reply check meanwhile, or
            // the log was pending for a reason mark_replied does not cover: make sure it is closed.
            finish_log(&infra.db, log.id, "skipped", &json!({"reason": "lead_replied"})).await?;
            schedule_next(infra, &c, lead.id, step.step_number, now).await?;
            return Ok(StepOutcome::Skipped("lead_replied"));
        }
        let due = outside_quiet_hours(now, infra.settings.campaign_quiet_hours);
        if due > now {
            infra
                .db
                .execute_raw(stmt(
                    "UPDATE campaign_logs SET scheduled_for = $2 WHERE id = $1 AND status = 'pending'",
                    vec![log.id.into(), due.into()],
                ))
                .await?;
            jobs::enqueue_at(infra, job.clone(), due).await?;
            return Ok(StepOutcome::Deferred(due));
        }
    }
    let key = job.effect_key();
    let effect = Effect { key: &key, kind: "campaign_step", broker_id: Some(c.broker_id), lead_id: Some(lead.id) };
    let origin = Origin {
        campaign_id: c.id,
        step_id: step.id,
        step_number: step.step_number,
        channel: step.channel.as_deref().unwrap_or(&c.channel),
    };
    let perform = || async {
        match step.action.as_str() {
            "send_message" => match compose::for_lead(infra, &c, &step, &lead, now).await? {
                Ok(m) => deliver::send_text(infra, &lead, &m.text, m.template, origin, holder).await,
                Err(failure) => Ok(failure),
            },
            "make_call" => deliver::place_call(infra, &lead, origin).await,
            _ => move_stage(infra, &c, &step, &lead).await,
        }
    };
    let outcome = perform_once(&infra.db, effect, holder, Duration::from_secs(180), perform).await?;
    let result = outcome.result().clone();
    let status = if result.get("status").and_then(Value::as_str) == Some("sent") { "sent" } else { "failed" };
    let mut response = result.clone();
    if let Value::Object(m) = &mut response {
        m.remove("status");
    }
    let updated = finish_log(&infra.db, log.id, status, &response).await?;
    if updated && matches!(outcome, Outcome::Performed(_)) {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            c.broker_id,
            "campaign_step_sent",
            json!({"campaign_id": c.id, "campaign_name": c.name, "lead_id": lead.id, "step_id": step.id,
                   "step_number": step.step_number, "action": step.action, "status": status,
                   "channel": response.get("channel"), "message_id": response.get("message_id"),
                   "error": response.get("error")}),
        )
        .await;
    }
    schedule_next(infra, &c, lead.id, step.step_number, now).await?;
    // Another delivery of the same job recorded it first.
    if !updated {
        return Ok(StepOutcome::AlreadyDone);
    }
    Ok(StepOutcome::Ran(status.to_string()))
}

/// An `update_stage` step: the lead moves as a manual move would (activity, `stage_changed`, the
/// stage's own campaigns), with the campaign and step as the reason.
async fn move_stage(infra: &Infra, c: &Campaign, step: &Step, lead: &leads::Model) -> Result<Value> {
    let Some(target) = step.target_stage.as_deref() else {
        return Ok(failure("target_stage_required", "The step has no target_stage"));
    };
    let manual = crate::leads::service::ManualMove {
        reason: Some(format!("Campaign {} step {}", c.id, step.step_number)),
        ..Default::default()
    };
    let ctx = Ctx::broker_system(c.broker_id);
    match crate::leads::service::move_stage_with(infra, &ctx, lead.id, target, "target_stage", manual).await {
        Ok((old, view)) => Ok(json!({"status": "sent", "stage": target, "old_stage": old.as_str(),
                                     "lead_status": view.row.status})),
        Err(e) if jobs::is_permanent(&e) => Ok(failure(e.code(), e.to_string())),
        Err(e) => Err(e),
    }
}
