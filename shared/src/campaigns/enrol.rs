//! Enrolling leads and scheduling their steps: `apply` (a list of leads, or one), the hourly
//! trigger sweep, the stage-change hook, stop-on-reply, resuming a paused campaign, and the bulk
//! push of `campaign_step` jobs.
//!
//! Enrolling is one statement per call whatever the number of leads: it picks the visible leads
//! not yet enrolled (up to what `max_contacts` leaves, under a lock on the campaign row), inserts
//! their enrolments and the first step's `pending` log, and returns the enrolled ids; the jobs are
//! then pushed in batches of [`PUSH_CHUNK`], each batch one Redis script call. The log row is
//! written before its job exists, so a lost push leaves a `pending` log that [`requeue_stale`] finds.

use std::collections::HashMap;

use apalis::prelude::{TaskBuilder, TaskId};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::Serialize;
use serde_json::Value;

use super::model::{Campaign, DEFAULT_INACTIVITY_DAYS, LOG_COLUMNS, Log, MAX_APPLY, Step, due_at};
use super::service::{find, find_system, stmt};
use crate::Infra;
use crate::ctx::{Ctx, LeadScope};
use crate::error::{Error, Result};
use crate::jobs::campaign_step::CampaignStep;
use crate::jobs::{self, Job};
use crate::leads::model::Stage;

/// Jobs per Redis call when pushing many.
pub const PUSH_CHUNK: usize = 1_000;
/// A `pending` step this long past due is pushed again by the hourly sweep (its job was lost, or
/// never pushed); running it twice is harmless (the step's effect key and its log's status).
pub const STALE_AFTER_HOURS: i64 = 6;

/// What enrolling did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Enrolled {
    /// Leads of the request the caller may reach (or the trigger matched).
    pub matched: i64,
    /// Of those, already enrolled before.
    pub already_enrolled: i64,
    /// Newly enrolled, with their first step scheduled.
    pub lead_ids: Vec<i64>,
    /// When the first step is due.
    pub first_step_at: Option<DateTime<Utc>>,
}

/// The SQL condition over `leads l` that a trigger campaign's leads meet now (validated values
/// only are inlined: numbers, a stage name, a timestamp).
pub fn trigger_condition(c: &Campaign, now: DateTime<Utc>) -> Result<String> {
    let cond = &c.trigger_condition;
    let num = |k: &str| cond.get(k).and_then(Value::as_f64);
    let open = "l.status NOT IN ('converted', 'lost')";
    Ok(match c.triggered_by.as_str() {
        "lead_score" => {
            let min = num("score_min").unwrap_or(0.0).clamp(0.0, 100.0);
            let max = num("score_max").unwrap_or(100.0).clamp(0.0, 100.0);
            format!("{open} AND l.lead_score >= {min} AND l.lead_score <= {max}")
        }
        "stage_change" => {
            let stage =
                cond.get("stage").and_then(Value::as_str).and_then(|s| s.parse::<Stage>().ok()).ok_or_else(|| {
                    Error::bad_request("invalid_trigger_condition", "the campaign's stage is not valid")
                })?;
            format!("l.pipeline_stage = '{}'", stage.as_str())
        }
        "inactivity" => {
            let days = num("inactivity_days").map(|d| d.round() as i64).unwrap_or(DEFAULT_INACTIVITY_DAYS).max(1);
            let cutoff = (now - Duration::days(days)).to_rfc3339();
            format!("{open} AND COALESCE(l.last_contacted, l.created_at) < '{cutoff}'::timestamptz")
        }
        _ => "TRUE".to_string(),
    })
}

/// Enrols the leads of the broker meeting `leads_cond` (over `leads l`; its own values numbered
/// from `$10`) and schedules their first step. The campaign row is locked while counting toward
/// `max_contacts`, so concurrent enrolments never exceed it.
async fn enrol(
    infra: &Infra,
    c: &Campaign,
    leads_cond: &str,
    extra: Vec<sea_orm::Value>,
    trigger: &str,
    now: DateTime<Utc>,
) -> Result<Enrolled> {
    let Some(first) = c.steps.first() else {
        return Err(Error::bad_request("campaign_has_no_steps", format!("Campaign {} has no steps", c.id)));
    };
    let due = due_at(now, first.delay_hours, &first.action, infra.settings.campaign_quiet_hours);
    let txn = infra.db.begin().await?;
    let locked = txn
        .query_one_raw(stmt(
            "SELECT max_contacts, (SELECT count(*) FROM campaign_enrolments WHERE campaign_id = $1) \
             FROM campaigns WHERE id = $1 FOR UPDATE",
            vec![c.id.into()],
        ))
        .await?
        .ok_or(Error::NotFound("Campaign"))?;
    let max: Option<i32> = locked.try_get_by_index(0)?;
    let count: i64 = locked.try_get_by_index(1)?;
    let cap: Option<i64> = max.map(|m| (i64::from(m) - count).max(0));
    let mut values: Vec<sea_orm::Value> = vec![
        c.id.into(),
        cap.into(),
        c.broker_id.into(),
        trigger.into(),
        now.into(),
        first.id.into(),
        first.step_number.into(),
        first.action.clone().into(),
        due.into(),
    ];
    values.extend(extra);
    let row = txn
        .query_one_raw(stmt(
            &format!(
                "WITH wanted AS (SELECT l.id FROM leads l WHERE l.broker_id = $3 AND {leads_cond}), \
                 fresh AS (SELECT w.id FROM wanted w WHERE NOT EXISTS \
                     (SELECT 1 FROM campaign_enrolments e WHERE e.campaign_id = $1 AND e.lead_id = w.id) \
                   ORDER BY w.id LIMIT $2), \
                 ins AS (INSERT INTO campaign_enrolments (campaign_id, lead_id, broker_id, trigger, enrolled_at) \
                   SELECT $1, id, $3, $4, $5 FROM fresh ON CONFLICT DO NOTHING RETURNING lead_id), \
                 logs AS (INSERT INTO campaign_logs (campaign_id, lead_id, broker_id, step_id, step_number, action, \
                     status, scheduled_for, created_at) \
                   SELECT $1, lead_id, $3, $6, $7, $8, 'pending', $9, $5 FROM ins \
                   ON CONFLICT DO NOTHING RETURNING lead_id) \
                 SELECT (SELECT count(*) FROM wanted)::bigint, \
                        (SELECT count(*) FROM wanted w WHERE EXISTS \
                           (SELECT 1 FROM campaign_enrolments e WHERE e.campaign_id = $1 AND e.lead_id = w.id))::bigint, \
                        COALESCE((SELECT array_agg(lead_id ORDER BY lead_id) FROM logs), '{{}}'::bigint[])"
            ),
            values,
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("enrolment gave no row")))?;
    let matched: i64 = row.try_get_by_index(0)?;
    let already: i64 = row.try_get_by_index(1)?;
    let ids: Vec<i64> = row.try_get_by_index(2)?;
    txn.commit().await?;
    let jobs: Vec<(CampaignStep, DateTime<Utc>)> = ids
        .iter()
        .map(|&lead_id| (CampaignStep { broker_id: c.broker_id, campaign_id: c.id, lead_id, step_id: first.id }, due))
        .collect();
    enqueue_steps(infra, &jobs).await?;
    if !ids.is_empty() {
        tracing::info!(campaign_id = c.id, enrolled = ids.len(), trigger, "leads enrolled");
    }
    Ok(Enrolled { matched, already_enrolled: already, first_step_at: (!ids.is_empty()).then_some(due), lead_ids: ids })
}

fn startable(c: &Campaign) -> Result<()> {
    if c.status != "active" {
        return Err(Error::conflict(
            "campaign_not_active",
            format!("Campaign {} is {}; only an active campaign can be applied", c.id, c.status),
        ));
    }
    if c.steps.is_empty() {
        return Err(Error::bad_request("campaign_has_no_steps", format!("Campaign {} has no steps", c.id)));
    }
    Ok(())
}

/// The leads condition of the caller's reach within the campaign's broker (`$10` = ids).
fn caller_leads(ctx: &Ctx, c: &Campaign) -> Result<(String, Vec<sea_orm::Value>)> {
    match ctx.lead_scope(if ctx.is_superadmin() { Some(c.broker_id) } else { None })? {
        LeadScope::Assigned { user_id, .. } => {
            Ok(("l.id = ANY($10) AND l.assigned_to = $11".into(), vec![user_id.into()]))
        }
        _ => Ok(("l.id = ANY($10)".into(), vec![])),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Applied {
    pub campaign_id: i64,
    /// Distinct lead ids received.
    pub requested: usize,
    pub enrolled: usize,
    pub already_enrolled: i64,
    /// Ids that are no lead the caller may reach.
    pub not_found: i64,
    /// Reachable leads left out because `max_contacts` was reached.
    pub skipped_max_contacts: i64,
    /// One first-step job per enrolled lead.
    pub steps_enqueued: usize,
    pub first_step_at: Option<DateTime<Utc>>,
}

/// `POST /campaigns/{id}/apply {lead_ids}`: enrols the leads (idempotent: a lead already enrolled
/// is counted, not enrolled again) and schedules each one's first step.
pub async fn apply(infra: &Infra, ctx: &Ctx, campaign_id: i64, lead_ids: &[i64]) -> Result<Applied> {
    if lead_ids.is_empty() {
        return Err(Error::invalid_body("lead_ids", "lead_ids must not be empty"));
    }
    if lead_ids.len() > MAX_APPLY {
        return Err(Error::invalid_body("lead_ids", format!("at most {MAX_APPLY} leads per call")));
    }
    let mut ids: Vec<i64> = lead_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let c = find(&infra.db, ctx, campaign_id, false).await?;
    startable(&c)?;
    let (cond, mut extra) = caller_leads(ctx, &c)?;
    extra.insert(0, ids.clone().into());
    let e = enrol(infra, &c, &cond, extra, "manual", Utc::now()).await?;
    let enrolled = e.lead_ids.len();
    Ok(Applied {
        campaign_id: c.id,
        requested: ids.len(),
        enrolled,
        already_enrolled: e.already_enrolled,
        not_found: ids.len() as i64 - e.matched,
        skipped_max_contacts: (e.matched - e.already_enrolled - enrolled as i64).max(0),
        steps_enqueued: enrolled,
        first_step_at: e.first_step_at,
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppliedToLead {
    pub message: String,
    pub steps_enqueued: usize,
    pub logs: Vec<Log>,
}

/// `POST /campaigns/{id}/apply-to-lead/{lead_id}` (reference §3.5): one lead; applying again
/// returns the existing logs. `max_contacts` reached is a 409.
pub async fn apply_to_lead(infra: &Infra, ctx: &Ctx, campaign_id: i64, lead_id: i64) -> Result<AppliedToLead> {
    let c = find(&infra.db, ctx, campaign_id, false).await?;
    startable(&c)?;
    let (cond, extra) = caller_leads(ctx, &c)?;
    let mut values: Vec<sea_orm::Value> = vec![vec![lead_id].into()];
    values.extend(extra);
    let e = enrol(infra, &c, &cond, values, "manual", Utc::now()).await?;
    if e.matched == 0 {
        return Err(Error::NotFound("Lead"));
    }
    if e.lead_ids.is_empty() && e.already_enrolled == 0 {
        return Err(Error::conflict("max_contacts_reached", "The campaign reached its max_contacts"));
    }
    let rows = infra
        .db
        .query_all_raw(stmt(
            &format!("SELECT {LOG_COLUMNS} FROM campaign_logs WHERE campaign_id = $1 AND lead_id = $2 ORDER BY step_number, id"),
            vec![c.id.into(), lead_id.into()],
        ))
        .await?;
    let logs = rows.iter().map(Log::decode).collect::<std::result::Result<_, _>>()?;
    Ok(AppliedToLead {
        message: if e.lead_ids.is_empty() { "Campaign already applied" } else { "Campaign applied successfully" }
            .into(),
        steps_enqueued: e.lead_ids.len(),
        logs,
    })
}

/// The hook after a lead's stage changed (manual moves, the lead rules, campaign steps): every
/// active `stage_change` campaign of its broker for that stage enrols it at once. Best effort: a
/// failure is logged and the hourly sweep enrols the lead later.
pub async fn on_stage_change(infra: &Infra, broker_id: i64, lead_id: i64, stage: &str) {
    if let Err(e) = stage_change(infra, broker_id, lead_id, stage).await {
        tracing::warn!(error = %e, broker_id, lead_id, stage, "stage-change campaigns not applied; the hourly sweep will");
    }
}

async fn stage_change(infra: &Infra, broker_id: i64, lead_id: i64, stage: &str) -> Result<()> {
    let rows = infra
        .db
        .query_all_raw(stmt(
            "SELECT id FROM campaigns WHERE broker_id = $1 AND status = 'active' AND triggered_by = 'stage_change' \
               AND trigger_condition->>'stage' = $2 ORDER BY id",
            vec![broker_id.into(), stage.into()],
        ))
        .await?;
    for r in rows {
        let id: i64 = r.try_get_by_index(0)?;
        let Some(c) = find_system(&infra.db, id).await? else { continue };
        if c.steps.is_empty() {
            continue;
        }
        enrol(infra, &c, "l.id = $10", vec![lead_id.into()], "stage_change", Utc::now()).await?;
    }
    Ok(())
}

/// The hourly sweep: every active trigger campaign (lead_score, stage_change, inactivity) enrols
/// the leads that meet its condition now, up to `max_contacts`; then lost step jobs are pushed
/// again. Returns how many leads were enrolled.
pub async fn run_triggers(infra: &Infra, now: DateTime<Utc>) -> Result<u64> {
    let rows = infra
        .db
        .query_all_raw(stmt(
            "SELECT id FROM campaigns WHERE status = 'active' AND triggered_by <> 'manual' ORDER BY id",
            vec![],
        ))
        .await?;
    let mut enrolled = 0u64;
    for r in rows {
        let id: i64 = r.try_get_by_index(0)?;
        let Some(c) = find_system(&infra.db, id).await? else { continue };
        if c.steps.is_empty() {
            continue;
        }
        let cond = match trigger_condition(&c, now) {
            Ok(cond) => cond,
            Err(e) => {
                tracing::warn!(campaign_id = c.id, error = %e, "campaign trigger skipped");
                continue;
            }
        };
        match enrol(infra, &c, &cond, vec![], &c.triggered_by, now).await {
            Ok(e) => enrolled += e.lead_ids.len() as u64,
            Err(e) => tracing::warn!(campaign_id = c.id, error = %e, "campaign trigger failed"),
        }
    }
    requeue_stale(infra, now).await?;
    Ok(enrolled)
}

/// Pushes again the jobs of `pending` steps of active campaigns long past due. Returns how many.
pub async fn requeue_stale(infra: &Infra, now: DateTime<Utc>) -> Result<u64> {
    let rows = infra
        .db
        .query_all_raw(stmt(
            "SELECT g.broker_id, g.campaign_id, g.lead_id, g.step_id, g.scheduled_for FROM campaign_logs g \
             JOIN campaigns c ON c.id = g.campaign_id AND c.status = 'active' \
             WHERE g.status = 'pending' AND g.step_id IS NOT NULL AND g.scheduled_for < $1 \
             ORDER BY g.scheduled_for LIMIT 20000",
            vec![(now - Duration::hours(STALE_AFTER_HOURS)).into()],
        ))
        .await?;
    let jobs = decode_jobs(&rows, now)?;
    enqueue_steps(infra, &jobs).await?;
    Ok(jobs.len() as u64)
}

fn decode_jobs(rows: &[sea_orm::QueryResult], at: DateTime<Utc>) -> Result<Vec<(CampaignStep, DateTime<Utc>)>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let job = CampaignStep {
            broker_id: r.try_get_by_index(0)?,
            campaign_id: r.try_get_by_index(1)?,
            lead_id: r.try_get_by_index(2)?,
            step_id: r.try_get_by_index(3)?,
        };
        let due: Option<DateTime<Utc>> = r.try_get_by_index(4)?;
        out.push((job, due.map_or(at, |d| d.max(at))));
    }
    Ok(out)
}

/// A resumed campaign: the jobs of its waiting steps are pushed again, each for its due time.
pub async fn resume(infra: &Infra, campaign_id: i64) -> Result<u64> {
    let rows = infra
        .db
        .query_all_raw(stmt(
            "SELECT broker_id, campaign_id, lead_id, step_id, scheduled_for FROM campaign_logs \
             WHERE campaign_id = $1 AND status = 'pending' AND step_id IS NOT NULL",
            vec![campaign_id.into()],
        ))
        .await?;
    let jobs = decode_jobs(&rows, Utc::now())?;
    enqueue_steps(infra, &jobs).await?;
    Ok(jobs.len() as u64)
}

/// Stop on reply: every open enrolment of the lead that the lead answered after (an inbound
/// message later than the enrolment) gets `replied_at`, and its remaining message and call steps
/// are logged `skipped` (`lead_replied`) at once. Returns how many enrolments stopped.
pub async fn mark_replied(db: &impl ConnectionTrait, lead_id: i64) -> Result<u64> {
    let res = db
        .execute_raw(stmt(
            "WITH e AS (UPDATE campaign_enrolments e SET replied_at = \
                   (SELECT min(m.created_at) FROM chat_messages m \
                     WHERE m.lead_id = e.lead_id AND m.direction = 'in' AND m.created_at > e.enrolled_at) \
                 WHERE e.lead_id = $1 AND e.replied_at IS NULL AND e.finished_at IS NULL AND EXISTS \
                   (SELECT 1 FROM chat_messages m \
                     WHERE m.lead_id = e.lead_id AND m.direction = 'in' AND m.created_at > e.enrolled_at) \
                 RETURNING e.campaign_id, e.lead_id, e.broker_id, e.replied_at) \
             INSERT INTO campaign_logs (campaign_id, lead_id, broker_id, step_id, step_number, action, status, \
                 response, created_at, executed_at) \
             SELECT e.campaign_id, e.lead_id, e.broker_id, s.id, s.step_number, s.action, 'skipped', \
                 jsonb_build_object('reason', 'lead_replied', 'replied_at', e.replied_at), now(), now() \
             FROM e JOIN campaign_steps s ON s.campaign_id = e.campaign_id \
                 AND s.action IN ('send_message', 'make_call') \
             ON CONFLICT (campaign_id, lead_id, step_id) DO UPDATE SET status = 'skipped', \
                 response = EXCLUDED.response, executed_at = EXCLUDED.executed_at \
               WHERE campaign_logs.status = 'pending'",
            vec![lead_id.into()],
        ))
        .await?;
    Ok(res.rows_affected())
}

/// The hook after a lead's inbound message was stored: stop on reply, at once. Best effort (the
/// step job checks again before it sends).
pub async fn on_inbound(infra: &Infra, lead_id: i64) {
    if let Err(e) = mark_replied(&infra.db, lead_id).await {
        tracing::warn!(error = %e, lead_id, "campaign stop-on-reply not applied; the step job checks again");
    }
}

/// Schedules the lead's next step after `after` (a step number): the first later step that has
/// no log yet (steps skipped at once by a reply have one). Nothing left: the enrolment is finished.
/// A step already scheduled (a redelivered job got here before) is not scheduled twice.
pub async fn schedule_next(infra: &Infra, c: &Campaign, lead_id: i64, after: i32, now: DateTime<Utc>) -> Result<()> {
    let rows = infra
        .db
        .query_all_raw(stmt(
            "SELECT step_id, status FROM campaign_logs WHERE campaign_id = $1 AND lead_id = $2 AND step_id IS NOT NULL",
            vec![c.id.into(), lead_id.into()],
        ))
        .await?;
    let mut logged: HashMap<i64, String> = HashMap::new();
    for r in rows {
        logged.insert(r.try_get_by_index(0)?, r.try_get_by_index(1)?);
    }
    let next: Option<&Step> = c
        .steps
        .iter()
        .filter(|s| s.step_number > after)
        .find(|s| logged.get(&s.id).is_none_or(|status| status == "pending"));
    let Some(step) = next else {
        infra
            .db
            .execute_raw(stmt(
                "UPDATE campaign_enrolments SET finished_at = $3 \
                 WHERE campaign_id = $1 AND lead_id = $2 AND finished_at IS NULL",
                vec![c.id.into(), lead_id.into(), now.into()],
            ))
            .await?;
        return Ok(());
    };
    if logged.contains_key(&step.id) {
        return Ok(());
    }
    let due = due_at(now, step.delay_hours, &step.action, infra.settings.campaign_quiet_hours);
    let inserted = infra
        .db
        .query_one_raw(stmt(
            "INSERT INTO campaign_logs (campaign_id, lead_id, broker_id, step_id, step_number, action, status, \
               scheduled_for) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) \
             ON CONFLICT DO NOTHING RETURNING id",
            vec![
                c.id.into(),
                lead_id.into(),
                c.broker_id.into(),
                step.id.into(),
                step.step_number.into(),
                step.action.clone().into(),
                due.into(),
            ],
        ))
        .await?;
    if inserted.is_some() {
        let job = CampaignStep { broker_id: c.broker_id, campaign_id: c.id, lead_id, step_id: step.id };
        jobs::enqueue_at(infra, job, due).await?;
    }
    Ok(())
}

/// Pushes many `campaign_step` jobs, [`PUSH_CHUNK`] per Redis call, each due at its time.
pub async fn enqueue_steps(infra: &Infra, items: &[(CampaignStep, DateTime<Utc>)]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let cfg = jobs::config(infra.prefix(), CampaignStep::QUEUE);
    let mut conn = infra.redis.clone();
    let now = Utc::now();
    let mut any_due = false;
    for chunk in items.chunks(PUSH_CHUNK) {
        let mut tasks = Vec::with_capacity(chunk.len());
        for (job, at) in chunk {
            let payload = serde_json::to_vec(job).map_err(Error::internal)?;
            // Whole seconds, rounded up: a job never runs before its time (as `jobs::enqueue_at`).
            let secs = at.timestamp_millis().saturating_add(999).div_euclid(1000);
            any_due |= *at <= now;
            tasks.push(
                TaskBuilder::new(payload)
                    .task_id(TaskId::from_ulid(ulid::Ulid::generate()))
                    .run_at_timestamp(u64::try_from(secs).unwrap_or(0))
                    .build(),
            );
        }
        apalis_redis::queries::push_tasks(&mut conn, &cfg, &tasks).await.map_err(jobs::from_apalis)?;
    }
    if any_due {
        jobs::promote_due(infra, CampaignStep::QUEUE).await?;
    }
    Ok(())
}
