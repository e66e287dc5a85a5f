//! Campaign CRUD, the approval workflow (draft → pending_review → active ⇄ paused), steps, logs,
//! statistics and the matching-leads preview. Every campaign belongs to one broker: ADMIN and
//! AGENT reach their own broker's, SUPERADMIN every broker's (naming `broker_id` to create one).
//! AGENTs draft, edit and submit; activating, pausing, deleting and other status changes are ADMIN's.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement, TransactionTrait};
use serde::Serialize;
use serde_json::{Value, json};

use super::enrol;
use super::model::*;
use crate::ctx::{Ctx, Role};
use crate::error::{Error, Result};
use crate::jobs::campaign_step::CampaignStep;
use crate::{Infra, audit};

pub(crate) fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;

fn check_page(skip: Option<u64>, limit: Option<u64>) -> Result<(u64, u64)> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::invalid_query("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    Ok((skip.unwrap_or(0), limit))
}

/// The brokers the caller reads: its own; SUPERADMIN one (`requested`) or all (`None`).
fn read_scope(ctx: &Ctx, requested: Option<i64>) -> Result<Option<i64>> {
    match (ctx.role, ctx.broker_id) {
        (Role::Superadmin, _) => Ok(requested),
        (_, Some(b)) if requested.is_none_or(|r| r == b) => Ok(Some(b)),
        (_, Some(_)) => Err(Error::NotFound("Broker")),
        _ => Err(Error::forbidden("No broker is associated with this account")),
    }
}

/// One campaign the caller may reach (another broker's is a 404), optionally locked, with its steps.
pub(crate) async fn find(db: &impl ConnectionTrait, ctx: &Ctx, id: i64, lock: bool) -> Result<Campaign> {
    let scope = read_scope(ctx, None)?;
    let mut values: Vec<sea_orm::Value> = vec![id.into()];
    let mut cond = String::from("id = $1");
    if let Some(b) = scope {
        values.push(b.into());
        cond.push_str(" AND broker_id = $2");
    }
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = db
        .query_one_raw(stmt(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE {cond}{lock}"), values))
        .await?
        .ok_or(Error::NotFound("Campaign"))?;
    let mut c = Campaign::decode(&row)?;
    c.steps = steps_of(db, c.id).await?;
    Ok(c)
}

/// A campaign by id with no caller (jobs and hooks, which carry their broker).
pub(crate) async fn find_system(db: &impl ConnectionTrait, id: i64) -> Result<Option<Campaign>> {
    let Some(row) = db
        .query_one_raw(stmt(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"), vec![id.into()]))
        .await?
    else {
        return Ok(None);
    };
    let mut c = Campaign::decode(&row)?;
    c.steps = steps_of(db, c.id).await?;
    Ok(Some(c))
}

pub(crate) async fn steps_of(db: &impl ConnectionTrait, campaign_id: i64) -> Result<Vec<Step>> {
    let rows = db
        .query_all_raw(stmt(
            &format!("SELECT {STEP_COLUMNS} FROM campaign_steps WHERE campaign_id = $1 ORDER BY step_number, id"),
            vec![campaign_id.into()],
        ))
        .await?;
    Ok(rows.iter().map(Step::decode).collect::<std::result::Result<_, _>>()?)
}

fn require_admin(ctx: &Ctx, what: &str) -> Result<()> {
    if ctx.role == Role::Agent {
        return Err(Error::forbidden(format!("Only administrators {what}")));
    }
    Ok(())
}

async fn record(
    db: &impl ConnectionTrait,
    ctx: &Ctx,
    action: &'static str,
    c: &Campaign,
    changes: Value,
) -> Result<()> {
    audit::record(
        db,
        ctx,
        audit::Entry {
            action,
            resource_type: "campaign",
            resource_id: Some(c.id),
            broker_id: Some(c.broker_id),
            changes,
        },
    )
    .await
}

#[derive(Clone, Debug, Default)]
pub struct NewCampaign {
    pub name: String,
    pub description: Option<String>,
    pub channel: Option<String>,
    pub triggered_by: Option<String>,
    pub trigger_condition: Option<Value>,
    pub max_contacts: Option<i64>,
    /// SUPERADMIN: the broker it belongs to.
    pub broker_id: Option<i64>,
}

/// `POST /campaigns`: a new campaign in `draft`.
pub async fn create(infra: &Infra, ctx: &Ctx, input: NewCampaign) -> Result<Campaign> {
    let broker_id = ctx.target_broker(input.broker_id)?;
    let name = check_name(&input.name)?;
    let description = check_description(input.description.as_deref())?;
    let channel = check_channel(input.channel.as_deref().unwrap_or("telegram"), "channel", false)?;
    let trigger = check_trigger(input.triggered_by.as_deref().unwrap_or("manual"))?;
    let condition = check_condition(&trigger, input.trigger_condition.as_ref())?;
    let max_contacts = check_max_contacts(input.max_contacts)?;
    if crate::entities::brokers::Entity::find_by_id(broker_id).one(&infra.db).await?.is_none() {
        return Err(Error::NotFound("Broker"));
    }
    let row = infra
        .db
        .query_one_raw(stmt(
            &format!(
                "INSERT INTO campaigns (broker_id, name, description, channel, triggered_by, trigger_condition, \
                   max_contacts, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {CAMPAIGN_COLUMNS}"
            ),
            vec![
                broker_id.into(),
                name.into(),
                description.into(),
                channel.into(),
                trigger.into(),
                condition.into(),
                max_contacts.into(),
                ctx.user_id.into(),
            ],
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("INSERT … RETURNING gave no row")))?;
    let c = Campaign::decode(&row)?;
    record(&infra.db, ctx, "campaign_create", &c, json!({"name": c.name, "triggered_by": c.triggered_by})).await?;
    Ok(c)
}

#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub status: Option<String>,
    pub channel: Option<String>,
    pub skip: Option<u64>,
    pub limit: Option<u64>,
    pub broker_id: Option<i64>,
}

/// A page of `table` rows matching `cond` (its `$n` bound to `values`), newest first, and how many
/// match in all.
async fn newest_page(
    infra: &Infra,
    table: &str,
    columns: &str,
    cond: &str,
    mut values: Vec<sea_orm::Value>,
    skip: u64,
    limit: u64,
) -> Result<(i64, Vec<sea_orm::QueryResult>)> {
    let total: i64 = infra
        .db
        .query_one_raw(stmt(&format!("SELECT count(*) FROM {table} WHERE {cond}"), values.clone()))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0);
    values.push((limit as i64).into());
    values.push((skip.min(i64::MAX as u64) as i64).into());
    let (l, o) = (values.len() - 1, values.len());
    let sql =
        format!("SELECT {columns} FROM {table} WHERE {cond} ORDER BY created_at DESC, id DESC LIMIT ${l} OFFSET ${o}");
    Ok((total, infra.db.query_all_raw(stmt(&sql, values)).await?))
}

/// `GET /campaigns`: newest first, with their steps.
pub async fn list(infra: &Infra, ctx: &Ctx, q: &ListQuery) -> Result<(Vec<Campaign>, u64, u64, u64)> {
    let (skip, limit) = check_page(q.skip, q.limit)?;
    let scope = read_scope(ctx, q.broker_id)?;
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut cond = String::from("TRUE");
    if let Some(b) = scope {
        values.push(b.into());
        cond.push_str(&format!(" AND broker_id = ${}", values.len()));
    }
    if let Some(s) = q.status.as_deref().filter(|s| !s.trim().is_empty()) {
        values.push(check_status(s, "status", true)?.into());
        cond.push_str(&format!(" AND status = ${}", values.len()));
    }
    if let Some(c) = q.channel.as_deref().filter(|c| !c.trim().is_empty()) {
        values.push(check_channel(c, "channel", true)?.into());
        cond.push_str(&format!(" AND channel = ${}", values.len()));
    }
    let (total, rows) = newest_page(infra, "campaigns", CAMPAIGN_COLUMNS, &cond, values, skip, limit).await?;
    let mut out: Vec<Campaign> = rows.iter().map(Campaign::decode).collect::<std::result::Result<_, _>>()?;
    if !out.is_empty() {
        let ids: Vec<i64> = out.iter().map(|c| c.id).collect();
        let steps = infra
            .db
            .query_all_raw(stmt(
                &format!(
                    "SELECT {STEP_COLUMNS} FROM campaign_steps WHERE campaign_id = ANY($1) ORDER BY step_number, id"
                ),
                vec![ids.into()],
            ))
            .await?;
        for r in &steps {
            let s = Step::decode(r)?;
            if let Some(c) = out.iter_mut().find(|c| c.id == s.campaign_id) {
                c.steps.push(s);
            }
        }
    }
    Ok((out, total.max(0) as u64, skip, limit))
}

pub async fn get(infra: &Infra, ctx: &Ctx, id: i64) -> Result<Campaign> {
    find(&infra.db, ctx, id, false).await
}

#[derive(Clone, Debug, Default)]
pub struct CampaignPatch {
    pub name: Option<String>,
    /// `Some(None)`: cleared.
    pub description: Option<Option<String>>,
    pub status: Option<String>,
    pub channel: Option<String>,
    pub triggered_by: Option<String>,
    pub trigger_condition: Option<Value>,
    /// `Some(None)`: unlimited.
    pub max_contacts: Option<Option<i64>>,
}

/// `PUT /campaigns/{id}`. A status sent here follows the workflow's rules: AGENTs may only move a
/// campaign between `draft` and `pending_review`.
pub async fn update(infra: &Infra, ctx: &Ctx, id: i64, patch: CampaignPatch) -> Result<Campaign> {
    let txn = infra.db.begin().await?;
    let mut c = find(&txn, ctx, id, true).await?;
    let before = c.status.clone();
    if let Some(n) = &patch.name {
        c.name = check_name(n)?;
    }
    if let Some(d) = &patch.description {
        c.description = check_description(d.as_deref())?;
    }
    if let Some(ch) = &patch.channel {
        c.channel = check_channel(ch, "channel", false)?;
    }
    if let Some(t) = &patch.triggered_by {
        c.triggered_by = check_trigger(t)?;
    }
    if patch.triggered_by.is_some() || patch.trigger_condition.is_some() {
        let raw = patch.trigger_condition.clone().unwrap_or_else(|| c.trigger_condition.clone());
        c.trigger_condition = check_condition(&c.triggered_by, Some(&raw))?;
    }
    if let Some(m) = patch.max_contacts {
        c.max_contacts = check_max_contacts(m)?;
    }
    if let Some(s) = &patch.status {
        let s = check_status(s, "status", false)?;
        let review = |x: &str| matches!(x, "draft" | "pending_review");
        if s != c.status && !(review(&s) && review(&c.status)) {
            require_admin(ctx, "activate, pause, stop or complete campaigns")?;
        }
        if s == "active" && c.steps.is_empty() {
            return Err(no_steps(c.id));
        }
        if s == "active" && before != "active" {
            c.approved_by = ctx.user_id.or(c.approved_by);
        }
        c.status = s;
    }
    let row = txn
        .query_one_raw(stmt(
            &format!(
                "UPDATE campaigns SET name = $2, description = $3, channel = $4, triggered_by = $5, \
                   trigger_condition = $6, max_contacts = $7, status = $8, approved_by = $9, \
                   approved_at = CASE WHEN $8 = 'active' AND status <> 'active' THEN now() ELSE approved_at END, \
                   updated_at = now() WHERE id = $1 RETURNING {CAMPAIGN_COLUMNS}"
            ),
            vec![
                c.id.into(),
                c.name.clone().into(),
                c.description.clone().into(),
                c.channel.clone().into(),
                c.triggered_by.clone().into(),
                c.trigger_condition.clone().into(),
                c.max_contacts.into(),
                c.status.clone().into(),
                c.approved_by.into(),
            ],
        ))
        .await?
        .ok_or(Error::NotFound("Campaign"))?;
    let mut updated = Campaign::decode(&row)?;
    updated.steps = std::mem::take(&mut c.steps);
    record(&txn, ctx, "campaign_update", &updated, json!({"status": updated.status, "previous_status": before}))
        .await?;
    txn.commit().await?;
    if updated.status == "active" && before == "paused" {
        enrol::resume(infra, updated.id).await?;
    }
    Ok(updated)
}

/// `DELETE /campaigns/{id}` (ADMIN): the campaign, its steps, enrolments and logs. Jobs already
/// queued find nothing and end.
pub async fn delete(infra: &Infra, ctx: &Ctx, id: i64) -> Result<()> {
    require_admin(ctx, "delete campaigns")?;
    let c = find(&infra.db, ctx, id, false).await?;
    infra.db.execute_raw(stmt("DELETE FROM campaigns WHERE id = $1", vec![c.id.into()])).await?;
    record(&infra.db, ctx, "campaign_delete", &c, json!({"name": c.name})).await?;
    Ok(())
}

fn no_steps(id: i64) -> Error {
    Error::bad_request("campaign_has_no_steps", format!("Campaign {id} has no steps"))
}

fn bad_transition(from: &str, to: &str) -> Error {
    Error::bad_request("invalid_status_transition", format!("A {from} campaign cannot become {to}"))
}

/// `PUT /campaigns/{id}/submit`: draft → pending_review.
pub async fn submit(infra: &Infra, ctx: &Ctx, id: i64) -> Result<Campaign> {
    transition(infra, ctx, id, &["draft"], "pending_review").await
}

/// `PUT /campaigns/{id}/activate` (ADMIN): draft, pending_review or paused → active. Resuming a
/// paused campaign re-queues its waiting steps.
pub async fn activate(infra: &Infra, ctx: &Ctx, id: i64) -> Result<Campaign> {
    require_admin(ctx, "activate campaigns")?;
    transition(infra, ctx, id, &["draft", "pending_review", "paused"], "active").await
}

/// `PUT /campaigns/{id}/pause` (ADMIN): active → paused. Steps falling due meanwhile wait.
pub async fn pause(infra: &Infra, ctx: &Ctx, id: i64) -> Result<Campaign> {
    require_admin(ctx, "pause campaigns")?;
    transition(infra, ctx, id, &["active"], "paused").await
}

async fn transition(infra: &Infra, ctx: &Ctx, id: i64, from: &[&str], to: &str) -> Result<Campaign> {
    let txn = infra.db.begin().await?;
    let c = find(&txn, ctx, id, true).await?;
    if !from.contains(&c.status.as_str()) {
        return Err(bad_transition(&c.status, to));
    }
    if to == "active" && c.steps.is_empty() {
        return Err(no_steps(c.id));
    }
    let approve = to == "active";
    let row = txn
        .query_one_raw(stmt(
            &format!(
                "UPDATE campaigns SET status = $2, \
                   approved_by = CASE WHEN $3 THEN $4 ELSE approved_by END, \
                   approved_at = CASE WHEN $3 THEN now() ELSE approved_at END, updated_at = now() \
                 WHERE id = $1 RETURNING {CAMPAIGN_COLUMNS}"
            ),
            vec![c.id.into(), to.into(), approve.into(), ctx.user_id.into()],
        ))
        .await?
        .ok_or(Error::NotFound("Campaign"))?;
    let mut updated = Campaign::decode(&row)?;
    updated.steps = c.steps;
    record(&txn, ctx, "campaign_status", &updated, json!({"from": c.status, "to": to})).await?;
    txn.commit().await?;
    if c.status == "paused" && to == "active" {
        enrol::resume(infra, updated.id).await?;
    }
    Ok(updated)
}

// ---------------------------------------------------------------------------------------------
// Steps

#[derive(Clone, Debug, Default)]
pub struct NewStep {
    pub step_number: i64,
    pub action: String,
    pub delay_hours: Option<i64>,
    pub message_template_id: Option<i64>,
    pub message_text: Option<String>,
    pub use_ai_message: Option<bool>,
    pub channel: Option<String>,
    pub conditions: Option<Value>,
    pub target_stage: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct StepPatch {
    pub step_number: Option<i64>,
    pub action: Option<String>,
    pub delay_hours: Option<i64>,
    pub message_template_id: Option<Option<i64>>,
    pub message_text: Option<Option<String>>,
    pub use_ai_message: Option<bool>,
    pub channel: Option<Option<String>>,
    pub conditions: Option<Value>,
    pub target_stage: Option<Option<String>>,
}

/// Checks a whole step (after a patch is applied) against its action.
async fn check_step(db: &impl ConnectionTrait, broker_id: i64, s: &mut Step) -> Result<()> {
    s.action = check_action(&s.action)?;
    s.message_text = check_message(s.message_text.as_deref())?;
    if let Some(ch) = &s.channel {
        s.channel = Some(check_channel(ch, "channel", false)?);
    }
    if !s.conditions.is_object() {
        return Err(Error::invalid_body("conditions", "conditions must be an object"));
    }
    if let Some(t) = s.message_template_id {
        let found = db
            .query_one_raw(stmt(
                "SELECT 1 FROM message_templates WHERE id = $1 AND broker_id = $2",
                vec![t.into(), broker_id.into()],
            ))
            .await?;
        if found.is_none() {
            return Err(Error::invalid(
                "invalid_template",
                crate::error::FieldError::body(
                    "message_template_id",
                    format!("template {t} does not exist"),
                    "value_error",
                ),
            ));
        }
    }
    match s.action.as_str() {
        "send_message" if s.message_template_id.is_none() && s.message_text.is_none() && !s.use_ai_message => {
            Err(Error::invalid(
                "message_required",
                crate::error::FieldError::body(
                    "message_text",
                    "a send_message step needs message_text, message_template_id or use_ai_message",
                    "missing",
                ),
            ))
        }
        "update_stage" => match &s.target_stage {
            Some(t) => {
                s.target_stage = Some(check_stage(t)?);
                Ok(())
            }
            None => Err(Error::invalid(
                "target_stage_required",
                crate::error::FieldError::body("target_stage", "an update_stage step needs target_stage", "missing"),
            )),
        },
        _ => {
            if let Some(t) = &s.target_stage {
                s.target_stage = Some(check_stage(t)?);
            }
            Ok(())
        }
    }
}

fn step_conflict(e: sea_orm::DbErr) -> Error {
    if crate::db::unique_constraint(&e).is_some_and(|c| c == "campaign_steps_number_key") {
        return Error::conflict("step_exists", "The campaign already has a step with this step_number");
    }
    e.into()
}

/// `POST /campaigns/{id}/steps`.
pub async fn add_step(infra: &Infra, ctx: &Ctx, campaign_id: i64, input: NewStep) -> Result<Step> {
    let c = find(&infra.db, ctx, campaign_id, false).await?;
    let now = Utc::now();
    let mut s = Step {
        id: 0,
        campaign_id: c.id,
        step_number: check_step_number(input.step_number)?,
        action: input.action,
        delay_hours: check_delay(input.delay_hours.unwrap_or(0))?,
        message_template_id: input.message_template_id,
        message_text: input.message_text,
        use_ai_message: input.use_ai_message.unwrap_or(false),
        channel: input.channel,
        conditions: input.conditions.unwrap_or_else(|| json!({})),
        target_stage: input.target_stage,
        created_at: now,
        updated_at: now,
    };
    check_step(&infra.db, c.broker_id, &mut s).await?;
    let row = infra
        .db
        .query_one_raw(stmt(
            &format!(
                "INSERT INTO campaign_steps (campaign_id, step_number, action, delay_hours, message_template_id, \
                   message_text, use_ai_message, channel, conditions, target_stage) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {STEP_COLUMNS}"
            ),
            step_values(&s),
        ))
        .await
        .map_err(step_conflict)?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("INSERT … RETURNING gave no row")))?;
    let step = Step::decode(&row)?;
    record(&infra.db, ctx, "campaign_step_create", &c, json!({"step_id": step.id, "step_number": step.step_number}))
        .await?;
    Ok(step)
}

fn step_values(s: &Step) -> Vec<sea_orm::Value> {
    vec![
        s.campaign_id.into(),
        s.step_number.into(),
        s.action.clone().into(),
        s.delay_hours.into(),
        s.message_template_id.into(),
        s.message_text.clone().into(),
        s.use_ai_message.into(),
        s.channel.clone().into(),
        s.conditions.clone().into(),
        s.target_stage.clone().into(),
    ]
}

/// `PATCH /campaigns/{id}/steps/{step_id}`.
pub async fn update_step(infra: &Infra, ctx: &Ctx, campaign_id: i64, step_id: i64, p: StepPatch) -> Result<Step> {
    let c = find(&infra.db, ctx, campaign_id, false).await?;
    let mut s = c.steps.iter().find(|s| s.id == step_id).cloned().ok_or(Error::NotFound("Step"))?;
    if let Some(n) = p.step_number {
        s.step_number = check_step_number(n)?;
    }
    if let Some(a) = p.action {
        s.action = a;
    }
    if let Some(d) = p.delay_hours {
        s.delay_hours = check_delay(d)?;
    }
    if let Some(t) = p.message_template_id {
        s.message_template_id = t;
    }
    if let Some(t) = p.message_text {
        s.message_text = t;
    }
    if let Some(u) = p.use_ai_message {
        s.use_ai_message = u;
    }
    if let Some(ch) = p.channel {
        s.channel = ch;
    }
    if let Some(cond) = p.conditions {
        s.conditions = cond;
    }
    if let Some(t) = p.target_stage {
        s.target_stage = t;
    }
    check_step(&infra.db, c.broker_id, &mut s).await?;
    let mut values = step_values(&s);
    values.push(s.id.into());
    let row = infra
        .db
        .query_one_raw(stmt(
            &format!(
                "UPDATE campaign_steps SET step_number = $2, action = $3, delay_hours = $4, message_template_id = $5, \
                   message_text = $6, use_ai_message = $7, channel = $8, conditions = $9, target_stage = $10, \
                   updated_at = now() WHERE id = $11 AND campaign_id = $1 RETURNING {STEP_COLUMNS}"
            ),
            values,
        ))
        .await
        .map_err(step_conflict)?
        .ok_or(Error::NotFound("Step"))?;
    Ok(Step::decode(&row)?)
}

/// `DELETE /campaigns/{id}/steps/{step_id}`: its waiting runs are logged `skipped`
/// (`step_deleted`) and each of those leads goes on with the next existing step (see
/// [`continue_after_deleted`]); leads already past it are not affected.
pub async fn delete_step(infra: &Infra, ctx: &Ctx, campaign_id: i64, step_id: i64) -> Result<()> {
    let c = find(&infra.db, ctx, campaign_id, false).await?;
    let Some(deleted) = c.steps.iter().find(|s| s.id == step_id).cloned() else {
        return Err(Error::NotFound("Step"));
    };
    let txn = infra.db.begin().await?;
    let rows = txn
        .query_all_raw(stmt(
            "UPDATE campaign_logs SET status = 'skipped', response = '{\"reason\": \"step_deleted\"}', \
               executed_at = now() \
             WHERE campaign_id = $1 AND step_id = $2 AND status = 'pending' RETURNING lead_id, scheduled_for",
            vec![c.id.into(), step_id.into()],
        ))
        .await?;
    txn.execute_raw(stmt("DELETE FROM campaign_steps WHERE id = $1", vec![step_id.into()])).await?;
    record(&txn, ctx, "campaign_step_delete", &c, json!({"step_id": step_id, "waiting": rows.len()})).await?;
    txn.commit().await?;
    let mut waiting = Vec::with_capacity(rows.len());
    for r in rows {
        waiting.push((r.try_get_by_index::<i64>(0)?, r.try_get_by_index::<Option<DateTime<Utc>>>(1)?));
    }
    let mut rest = c;
    rest.steps.retain(|s| s.id != step_id);
    continue_after_deleted(infra, &rest, deleted.step_number, &waiting, Utc::now()).await
}

/// The leads that were waiting for a deleted step (`waiting`: lead and when that step was due)
/// continue with the next step of `c` numbered above it that they have not run, as
/// [`enrol::schedule_next`] does after a step runs; its delay counts from when the deleted step
/// was due (or from `now` if that has passed), so the rest of the lead's timeline does not move.
/// A lead with nothing left has its enrolment finished. In bulk: one read, one insert, one push
/// per thousand jobs, whatever the number of leads.
async fn continue_after_deleted(
    infra: &Infra,
    c: &Campaign,
    after: i32,
    waiting: &[(i64, Option<DateTime<Utc>>)],
    now: DateTime<Utc>,
) -> Result<()> {
    if waiting.is_empty() {
        return Ok(());
    }
    let lead_ids: Vec<i64> = waiting.iter().map(|(l, _)| *l).collect();
    let rows = infra
        .db
        .query_all_raw(stmt(
            "SELECT lead_id, step_id, status FROM campaign_logs \
             WHERE campaign_id = $1 AND lead_id = ANY($2) AND step_id IS NOT NULL",
            vec![c.id.into(), lead_ids.into()],
        ))
        .await?;
    let mut logged: HashMap<(i64, i64), String> = HashMap::with_capacity(rows.len());
    for r in rows {
        logged.insert((r.try_get_by_index(0)?, r.try_get_by_index(1)?), r.try_get_by_index(2)?);
    }
    let quiet = infra.settings.campaign_quiet_hours;
    let (mut leads, mut steps, mut numbers, mut actions, mut dues) = (vec![], vec![], vec![], vec![], vec![]);
    let mut finished: Vec<i64> = Vec::new();
    for &(lead_id, was_due) in waiting {
        let next = c
            .steps
            .iter()
            .filter(|s| s.step_number > after)
            .find(|s| logged.get(&(lead_id, s.id)).is_none_or(|status| status == "pending"));
        match next {
            // Scheduled already (a runner got there first).
            Some(s) if logged.contains_key(&(lead_id, s.id)) => {}
            Some(s) => {
                leads.push(lead_id);
                steps.push(s.id);
                numbers.push(s.step_number);
                actions.push(s.action.clone());
                dues.push(due_at(was_due.map_or(now, |d| d.max(now)), s.delay_hours, &s.action, quiet).to_rfc3339());
            }
            None => finished.push(lead_id),
        }
    }
    if !finished.is_empty() {
        infra
            .db
            .execute_raw(stmt(
                "UPDATE campaign_enrolments SET finished_at = $3 \
                 WHERE campaign_id = $1 AND lead_id = ANY($2) AND finished_at IS NULL",
                vec![c.id.into(), finished.into(), now.into()],
            ))
            .await?;
    }
    if leads.is_empty() {
        return Ok(());
    }
    let inserted = infra
        .db
        .query_all_raw(stmt(
            "INSERT INTO campaign_logs (campaign_id, lead_id, broker_id, step_id, step_number, action, status, \
               scheduled_for) \
             SELECT $1, t.lead_id, $2, t.step_id, t.step_number, t.action, 'pending', t.due \
             FROM unnest($3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::text[]::timestamptz[]) \
               AS t(lead_id, step_id, step_number, action, due) \
             ON CONFLICT DO NOTHING RETURNING lead_id, step_id, scheduled_for",
            vec![
                c.id.into(),
                c.broker_id.into(),
                leads.into(),
                steps.into(),
                numbers.into(),
                actions.into(),
                dues.into(),
            ],
        ))
        .await?;
    let mut jobs = Vec::with_capacity(inserted.len());
    for r in inserted {
        let job = CampaignStep {
            broker_id: c.broker_id,
            campaign_id: c.id,
            lead_id: r.try_get_by_index(0)?,
            step_id: r.try_get_by_index(1)?,
        };
        jobs.push((job, r.try_get_by_index::<Option<DateTime<Utc>>>(2)?.unwrap_or(now)));
    }
    enrol::enqueue_steps(infra, &jobs).await
}

// ---------------------------------------------------------------------------------------------
// Logs, stats, matching leads

#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    pub lead_id: Option<i64>,
    pub status: Option<String>,
    pub skip: Option<u64>,
    pub limit: Option<u64>,
}

/// `GET /campaigns/{id}/logs`: newest first.
pub async fn logs(infra: &Infra, ctx: &Ctx, id: i64, q: &LogQuery) -> Result<(Vec<Log>, u64, u64, u64)> {
    let (skip, limit) = check_page(q.skip, q.limit)?;
    let c = find(&infra.db, ctx, id, false).await?;
    let mut values: Vec<sea_orm::Value> = vec![c.id.into()];
    let mut cond = String::from("campaign_id = $1");
    if let Some(l) = q.lead_id {
        values.push(l.into());
        cond.push_str(&format!(" AND lead_id = ${}", values.len()));
    }
    if let Some(s) = q.status.as_deref().filter(|s| !s.trim().is_empty()) {
        values.push(check_log_status(s)?.into());
        cond.push_str(&format!(" AND status = ${}", values.len()));
    }
    let (total, rows) = newest_page(infra, "campaign_logs", LOG_COLUMNS, &cond, values, skip, limit).await?;
    let logs = rows.iter().map(Log::decode).collect::<std::result::Result<_, _>>()?;
    Ok((logs, total.max(0) as u64, skip, limit))
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub campaign_id: i64,
    /// Log rows (one per lead and step scheduled or run).
    pub total_steps: i64,
    pub unique_leads: i64,
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    /// sent / total_steps × 100 (0 without logs).
    pub success_rate: f64,
    pub failure_rate: f64,
    /// Leads enrolled (what `max_contacts` counts).
    pub enrolled: i64,
    /// Enrolled leads who wrote back (their remaining messages and calls are skipped).
    pub replied: i64,
}

/// `GET /campaigns/{id}/stats`.
pub async fn stats(infra: &Infra, ctx: &Ctx, id: i64) -> Result<Stats> {
    let c = find(&infra.db, ctx, id, false).await?;
    let r = infra
        .db
        .query_one_raw(stmt(
            "SELECT count(*), count(DISTINCT lead_id), count(*) FILTER (WHERE status = 'pending'), \
                    count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed'), \
                    count(*) FILTER (WHERE status = 'skipped'), \
                    (SELECT count(*) FROM campaign_enrolments WHERE campaign_id = $1), \
                    (SELECT count(*) FROM campaign_enrolments WHERE campaign_id = $1 AND replied_at IS NOT NULL) \
             FROM campaign_logs WHERE campaign_id = $1",
            vec![c.id.into()],
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("stats gave no row")))?;
    let n = |i: usize| -> Result<i64> { Ok(r.try_get_by_index::<i64>(i)?) };
    let (total, sent, failed) = (n(0)?, n(3)?, n(4)?);
    let rate = |x: i64| if total == 0 { 0.0 } else { (x as f64 * 10_000.0 / total as f64).round() / 100.0 };
    Ok(Stats {
        campaign_id: c.id,
        total_steps: total,
        unique_leads: n(1)?,
        pending: n(2)?,
        sent,
        failed,
        skipped: n(5)?,
        success_rate: rate(sent),
        failure_rate: rate(failed),
        enrolled: n(6)?,
        replied: n(7)?,
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MatchingLead {
    pub id: i64,
    pub name: String,
    pub score: f64,
    pub pipeline_stage: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Matching {
    pub trigger: String,
    pub total: i64,
    pub note: String,
    pub leads: Vec<MatchingLead>,
}

/// `GET /campaigns/{id}/matching-leads?limit=`: the leads the trigger would enrol now (already
/// enrolled ones excluded); for a manual campaign, every lead of the broker not yet enrolled.
pub async fn matching_leads(infra: &Infra, ctx: &Ctx, id: i64, limit: Option<u64>) -> Result<Matching> {
    let limit = limit.unwrap_or(5);
    if !(1..=20).contains(&limit) {
        return Err(Error::invalid_query("limit", "limit must be between 1 and 20"));
    }
    let c = find(&infra.db, ctx, id, false).await?;
    let now = Utc::now();
    let cond = enrol::trigger_condition(&c, now)?;
    let from = format!(
        "FROM leads l WHERE l.broker_id = $1 AND {cond} AND NOT EXISTS \
           (SELECT 1 FROM campaign_enrolments e WHERE e.campaign_id = $2 AND e.lead_id = l.id)"
    );
    let total: i64 = infra
        .db
        .query_one_raw(stmt(&format!("SELECT count(*) {from}"), vec![c.broker_id.into(), c.id.into()]))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0);
    let rows = infra
        .db
        .query_all_raw(stmt(
            &format!("SELECT l.id, l.name, l.lead_score, l.pipeline_stage {from} ORDER BY l.id LIMIT $3"),
            vec![c.broker_id.into(), c.id.into(), (limit as i64).into()],
        ))
        .await?;
    let mut leads = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get_by_index(0)?;
        let name: Option<String> = r.try_get_by_index(1)?;
        leads.push(MatchingLead {
            id,
            name: name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| format!("Lead #{id}")),
            score: r.try_get_by_index(2)?,
            pipeline_stage: r.try_get_by_index(3)?,
        });
    }
    let note = match c.triggered_by.as_str() {
        "manual" => "Manual campaign: every lead of the broker not yet enrolled; apply it to the leads you choose.",
        "lead_score" => "Leads whose score is within the bounds, not yet enrolled; enrolled by the hourly trigger.",
        "stage_change" => "Leads in the stage, not yet enrolled; new arrivals are enrolled as they enter it.",
        _ => "Leads without contact for the inactivity days (30 by default), not yet enrolled; enrolled hourly.",
    };
    Ok(Matching { trigger: c.triggered_by, total, note: note.into(), leads })
}
