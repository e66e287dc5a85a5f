//! Placing, dialling and reading calls. [`place_call`] is the one way a call starts (the API and
//! campaign `make_call` steps): it checks the lead and its phone, holds the broker to
//! [`MAX_ACTIVE_PER_BROKER`] active calls (race-free under a per-broker advisory lock), stores the
//! call as `initiated` and enqueues `voice_call`. [`dial`] runs in that job and places the call at
//! VAPI under the job's idempotency key, so a retry never dials twice.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement, TransactionTrait};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::model::{self, ACTIVE, COLUMNS, Call, MAX_ACTIVE_PER_BROKER, TranscriptLine};
use super::{config, vapi};
use crate::chat::engine::profile::is_real_phone;
use crate::ctx::{Ctx, LeadScope};
use crate::effects::{self, Effect};
use crate::entities::leads;
use crate::error::{Error, FieldError, Result};
use crate::jobs::{self, voice_call::VoiceCall};
use crate::leads::model::{open_metadata, parse_instant};
use crate::leads::repo as lead_repo;
use crate::{Infra, events};

/// The path VAPI posts server messages to (also served as `/api/v1/calls/webhooks/voice`).
pub const WEBHOOK_PATH: &str = "/api/v1/calls/webhook";
/// Longer than the provider time-out: a claim this old belongs to a worker that died.
const DIAL_LEASE: Duration = Duration::from_secs(120);
/// The advisory-lock namespace of "a broker's active calls" (the second key is the broker id).
const ACTIVE_LOCK: i32 = 0x766f_6963; // "voic"

pub(crate) fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The SQL condition (on `voice_calls c`) of the calls `scope` may see, with its values from `$n`.
fn scope_sql(scope: LeadScope, values: &mut Vec<sea_orm::Value>) -> String {
    match scope {
        LeadScope::All { broker_id: None } => "TRUE".into(),
        LeadScope::All { broker_id: Some(b) } | LeadScope::Broker(b) => {
            values.push(b.into());
            format!("c.broker_id = ${}", values.len())
        }
        LeadScope::Assigned { broker_id, user_id } => {
            values.push(broker_id.into());
            let b = values.len();
            values.push(user_id.into());
            let u = values.len();
            format!(
                "c.broker_id = ${b} AND (c.agent_user_id = ${u} OR EXISTS \
                 (SELECT 1 FROM leads l WHERE l.id = c.lead_id AND l.assigned_to = ${u}))"
            )
        }
    }
}

/// The call `id` if the caller may see it; otherwise 404.
pub async fn find_visible(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<Call> {
    let mut values = vec![id.into()];
    let cond = scope_sql(ctx.lead_scope(None)?, &mut values);
    let sql = format!("SELECT {COLUMNS} FROM voice_calls c WHERE c.id = $1 AND {cond}");
    let row = db.query_one_raw(stmt(&sql, values)).await?.ok_or(Error::NotFound("Call"))?;
    Ok(Call::decode(&row)?)
}

/// A call by id, for system work (jobs, webhooks).
pub async fn find(db: &impl ConnectionTrait, id: i64) -> Result<Option<Call>> {
    let sql = format!("SELECT {COLUMNS} FROM voice_calls WHERE id = $1");
    Ok(db.query_one_raw(stmt(&sql, vec![id.into()])).await?.map(|r| Call::decode(&r)).transpose()?)
}

/// Starts an outbound call to `lead_id` as `ctx` (an ADMIN or AGENT request, or a campaign step
/// with `Ctx::broker_system`): 404 for a lead (or campaign) the caller cannot see, 422 `invalid_phone` without a
/// callable phone, 409 `lead_opted_out`, 400 `voice_not_configured`, 429 at
/// [`MAX_ACTIVE_PER_BROKER`] active calls. The call is stored as `initiated` and `voice_call`
/// dials it.
#[tracing::instrument(skip_all, fields(lead_id = lead_id, campaign_id = ?campaign_id, broker_id = ctx.broker_id))]
pub async fn place_call(
    infra: &Infra,
    ctx: &Ctx,
    lead_id: i64,
    campaign_id: Option<i64>,
    purpose: Option<&str>,
) -> Result<Call> {
    if lead_id <= 0 {
        return Err(Error::invalid_body("lead_id", "lead_id must be a positive integer"));
    }
    if campaign_id.is_some_and(|c| c <= 0) {
        return Err(Error::invalid_body("campaign_id", "campaign_id must be a positive integer"));
    }
    let purpose = purpose.map(|p| model::parse_purpose(p, "call_purpose", false)).transpose()?;
    let lead = lead_repo::find_visible(&infra.db, ctx, lead_id).await?;
    let Some(phone) = lead.phone.clone().filter(|p| is_real_phone(p)) else {
        return Err(Error::invalid(
            "invalid_phone",
            FieldError::body("lead_id", "The lead has no phone number that can be called", "phone"),
        ));
    };
    if opted_out(&lead, &open_metadata(&infra.cipher, lead.metadata.clone())) {
        return Err(Error::conflict("lead_opted_out", "The lead asked not to be contacted"));
    }
    if let Some(c) = campaign_id {
        let found = infra
            .db
            .query_one_raw(stmt(
                "SELECT 1 AS one FROM campaigns WHERE id = $1 AND broker_id = $2",
                vec![c.into(), lead.broker_id.into()],
            ))
            .await?;
        if found.is_none() {
            return Err(Error::NotFound("Campaign"));
        }
    }
    config::resolve(infra, config::row(&infra.db, lead.broker_id).await?.as_ref(), purpose)?;

    let txn = infra.db.begin().await?;
    txn.execute_raw(stmt(
        "SELECT pg_advisory_xact_lock($1, $2::int)",
        vec![ACTIVE_LOCK.into(), (lead.broker_id % i64::from(i32::MAX)).into()],
    ))
    .await?;
    let active: i64 = txn
        .query_one_raw(stmt(
            "SELECT count(*)::bigint AS n FROM voice_calls WHERE broker_id = $1 AND status = ANY($2)",
            vec![lead.broker_id.into(), ACTIVE.iter().map(|s| s.to_string()).collect::<Vec<_>>().into()],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    if active >= MAX_ACTIVE_PER_BROKER {
        return Err(Error::RateLimited { retry_after: 30 });
    }
    let mode = if campaign_id.is_some() { "outbound" } else { "ai_agent" };
    let sql = format!(
        "INSERT INTO voice_calls (broker_id, lead_id, campaign_id, agent_user_id, phone_number, call_mode, call_purpose) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    );
    let row = txn
        .query_one_raw(stmt(
            &sql,
            vec![
                lead.broker_id.into(),
                lead.id.into(),
                campaign_id.into(),
                ctx.user_id.into(),
                phone.into(),
                mode.into(),
                purpose.map(str::to_string).into(),
            ],
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("INSERT … RETURNING gave no row")))?;
    let call = Call::decode(&row)?;
    lead_repo::add_activity(
        &txn,
        ctx,
        &lead,
        "call_initiated",
        json!({"call_id": call.id, "campaign_id": campaign_id, "call_purpose": purpose}),
    )
    .await?;
    txn.commit().await?;

    let job = VoiceCall { broker_id: call.broker_id, lead_id: call.lead_id, call_id: call.id };
    if let Err(e) = jobs::enqueue(infra, job).await {
        // Without its job the call would hold an active slot for ever.
        fail(infra, call.id, "enqueue_failed").await?;
        return Err(e);
    }
    tracing::info!(call_id = call.id, broker_id = call.broker_id, "call initiated");
    Ok(call)
}

/// The lead asked not to be contacted (the same signals the lead rules read: the engine's memory, a
/// metadata flag, an opt-out tag).
fn opted_out(lead: &leads::Model, meta: &Map<String, Value>) -> bool {
    let flag = |v: Option<&Value>| v.and_then(Value::as_bool).unwrap_or(false);
    flag(meta.get("engine").and_then(|e| e.get("opted_out")))
        || flag(meta.get("opted_out"))
        || flag(meta.get("do_not_contact"))
        || lead
            .tags
            .as_array()
            .is_some_and(|t| t.iter().filter_map(Value::as_str).any(|t| matches!(t, "opt_out" | "no_contactar")))
}

/// What [`dial`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Dialed {
    /// VAPI accepted the call (now, or in an earlier attempt whose result was recorded).
    Placed { external_call_id: String },
    /// Nothing to do: the call is linked already, or no longer waiting to be placed.
    Skipped(&'static str),
}

/// The `voice_call` job: places the stored call at VAPI, at most once per call.
#[tracing::instrument(skip_all, fields(call_id = job.call_id, broker_id = job.broker_id))]
pub async fn dial(infra: &Infra, job: &VoiceCall, holder: &str) -> Result<Dialed> {
    let call =
        find(&infra.db, job.call_id).await?.filter(|c| c.broker_id == job.broker_id).ok_or(Error::NotFound("Call"))?;
    if call.external_call_id.is_some() {
        return Ok(Dialed::Skipped("already placed"));
    }
    if call.status != "initiated" {
        return Ok(Dialed::Skipped("no longer initiated"));
    }
    let lead = leads::Entity::find_by_id(call.lead_id).one(&infra.db).await?.ok_or(Error::NotFound("Lead"))?;
    let cfg = config::row(&infra.db, call.broker_id).await?;
    let dial = config::resolve(infra, cfg.as_ref(), call.call_purpose.as_deref())?;
    let first_message = dial.first_message_template.as_deref().map(|t| {
        let name = lead.name.clone().unwrap_or_default();
        let first = name.split_whitespace().next().unwrap_or_default().to_string();
        let values: BTreeMap<String, String> = [
            ("name".to_string(), name.clone()),
            ("nombre".to_string(), name.clone()),
            ("lead_name".to_string(), name),
            ("first_name".to_string(), first),
        ]
        .into_iter()
        .collect();
        crate::templates::render(t, &values)
    });
    let metadata = json!({
        "call_id": call.id, "lead_id": call.lead_id, "broker_id": call.broker_id,
        "campaign_id": call.campaign_id, "call_purpose": call.call_purpose,
    });
    let server_url = infra.settings.providers.public_base_url.as_ref().map(|b| format!("{b}{WEBHOOK_PATH}"));
    let key = job.effect_key();
    let effect = Effect { key: &key, kind: "voice_call", broker_id: Some(call.broker_id), lead_id: Some(call.lead_id) };
    let outbound = vapi::Outbound {
        api_key: &dial.api_key,
        assistant_id: &dial.assistant_id,
        phone_number_id: &dial.phone_number_id,
        customer_number: &call.phone_number,
        customer_name: lead.name.as_deref(),
        server_url,
        first_message,
        metadata,
    };
    let outcome = effects::perform_once(&infra.db, effect, holder, DIAL_LEASE, || async {
        let answer = vapi::create_call(infra, &outbound).await?;
        Ok(json!({"id": answer["id"], "status": answer.get("status")}))
    })
    .await?;
    let external = outcome.result()["id"].as_str().unwrap_or_default().to_string();
    if external.is_empty() {
        return Err(Error::internal(anyhow::anyhow!("the recorded VAPI call has no id")));
    }
    infra
        .db
        .execute_raw(stmt(
            "UPDATE voice_calls SET external_call_id = $2, updated_at = now() WHERE id = $1 AND external_call_id IS NULL",
            vec![call.id.into(), external.clone().into()],
        ))
        .await
        .map_err(|e| match crate::db::unique_constraint(&e) {
            Some(_) => Error::conflict("external_call_taken", "VAPI's call id belongs to another call"),
            None => e.into(),
        })?;
    tracing::info!(call_id = call.id, external_call_id = %external, "call placed");
    Ok(Dialed::Placed { external_call_id: external })
}

/// Marks a call that will never be placed as `failed` (it no longer counts as active).
pub async fn fail(infra: &Infra, call_id: i64, reason: &str) -> Result<()> {
    let reason: String = reason.chars().take(200).collect();
    infra
        .db
        .execute_raw(stmt(
            "UPDATE voice_calls SET status = 'failed', ended_reason = $2, completed_at = now(), updated_at = now() \
             WHERE id = $1 AND status IN ('initiated', 'ringing', 'answered')",
            vec![call_id.into(), reason.into()],
        ))
        .await?;
    Ok(())
}

/// Sends a live event about `call` to the agent who started it (the broker's channel for calls no
/// person started, e.g. campaign calls).
pub async fn notify(infra: &Infra, call: &Call, event: &str, data: Value) {
    notify_to(infra, call.broker_id, call.agent_user_id, event, data).await;
}

/// [`notify`] for a call known by its broker and agent only.
pub async fn notify_to(infra: &Infra, broker_id: i64, agent_user_id: Option<i64>, event: &str, data: Value) {
    match agent_user_id {
        Some(u) => events::publish_to_user(&infra.redis, infra.prefix(), broker_id, u, event, data).await,
        None => events::publish_to_broker(&infra.redis, infra.prefix(), broker_id, event, data).await,
    }
}

/// Filters of the call list.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub lead_id: Option<i64>,
    pub status: Option<String>,
    pub call_purpose: Option<String>,
    /// Created at or after (a date or RFC 3339).
    pub date_from: Option<String>,
    /// Created at or before (a bare date includes that day).
    pub date_to: Option<String>,
    pub broker_id: Option<i64>,
    pub skip: u64,
    pub limit: u64,
}

/// One page of the calls the caller may see, newest first, and the total.
pub async fn list(infra: &Infra, ctx: &Ctx, q: &ListQuery) -> Result<(Vec<Call>, u64)> {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut conds = vec![scope_sql(ctx.lead_scope(q.broker_id)?, &mut values)];
    let mut push = |cond: &str, v: sea_orm::Value, values: &mut Vec<sea_orm::Value>| {
        values.push(v);
        conds.push(cond.replace("$?", &format!("${}", values.len())));
    };
    if let Some(l) = q.lead_id {
        push("c.lead_id = $?", l.into(), &mut values);
    }
    if let Some(s) = q.status.as_deref() {
        push("c.status = $?", model::parse_status(s, "status")?.into(), &mut values);
    }
    if let Some(p) = q.call_purpose.as_deref() {
        push("c.call_purpose = $?", model::parse_purpose(p, "call_purpose", true)?.into(), &mut values);
    }
    let from = q.date_from.as_deref().map(|d| parse_instant(d, "date_from", false)).transpose()?;
    let to = q.date_to.as_deref().map(|d| parse_instant(d, "date_to", true)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(Error::invalid_query("date_from", "date_from must not be after date_to"));
    }
    if let Some(f) = from {
        push("c.created_at >= $?", f.into(), &mut values);
    }
    if let Some(t) = to {
        push("c.created_at <= $?", t.into(), &mut values);
    }
    let filter = conds.join(" AND ");
    let total = infra
        .db
        .query_one_raw(stmt(&format!("SELECT count(*)::bigint AS n FROM voice_calls c WHERE {filter}"), values.clone()))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    let n = values.len();
    values.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
    values.push(i64::try_from(q.skip).unwrap_or(i64::MAX).into());
    let cols = COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {cols} FROM voice_calls c WHERE {filter} ORDER BY c.created_at DESC, c.id DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let rows = infra.db.query_all_raw(stmt(&sql, values)).await?;
    let calls = rows.iter().map(Call::decode).collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((calls, u64::try_from(total).unwrap_or(0)))
}

/// A call's transcript lines, in the order they were spoken.
pub async fn transcript_lines(db: &impl ConnectionTrait, call_id: i64) -> Result<Vec<TranscriptLine>> {
    let rows = db
        .query_all_raw(stmt(
            "SELECT speaker, text, \"timestamp\", confidence FROM call_transcripts WHERE voice_call_id = $1 \
             ORDER BY \"timestamp\", id",
            vec![call_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TranscriptLine {
                speaker: r.try_get_by_index(0)?,
                text: r.try_get_by_index(1)?,
                timestamp: r.try_get_by_index(2)?,
                confidence: r.try_get_by_index(3)?,
            })
        })
        .collect()
}

/// A call and its transcript lines.
pub async fn get(infra: &Infra, ctx: &Ctx, id: i64) -> Result<(Call, Vec<TranscriptLine>)> {
    let call = find_visible(&infra.db, ctx, id).await?;
    let lines = transcript_lines(&infra.db, call.id).await?;
    Ok((call, lines))
}

/// Call counts of the calls the caller may see.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    pub total: i64,
    pub active: i64,
    pub this_month: i64,
    pub by_status: Map<String, Value>,
    pub by_purpose: Map<String, Value>,
    pub by_mode: Map<String, Value>,
    /// Over calls with a duration; `None` when there are none.
    pub avg_duration_seconds: Option<f64>,
    pub total_duration_seconds: i64,
    /// Since the start of the current month (UTC).
    pub month_start: DateTime<Utc>,
}

pub async fn metrics(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Metrics> {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let filter = scope_sql(ctx.lead_scope(broker_id)?, &mut values);
    let sql = format!(
        "SELECT count(*)::bigint, \
           count(*) FILTER (WHERE c.status IN ('initiated', 'ringing', 'answered'))::bigint, \
           count(*) FILTER (WHERE c.created_at >= date_trunc('month', now()))::bigint, \
           avg(c.duration)::float8, COALESCE(sum(c.duration), 0)::bigint, date_trunc('month', now()) \
         FROM voice_calls c WHERE {filter}"
    );
    // The breakdowns come from one grouped query each (small: a handful of keys).
    let head = infra.db.query_one_raw(stmt(&sql, values.clone())).await?;
    let (total, active, this_month, avg, sum, month_start) = match head {
        Some(r) => (
            r.try_get_by_index::<i64>(0)?,
            r.try_get_by_index::<i64>(1)?,
            r.try_get_by_index::<i64>(2)?,
            r.try_get_by_index::<Option<f64>>(3)?,
            r.try_get_by_index::<i64>(4)?,
            r.try_get_by_index::<DateTime<Utc>>(5)?,
        ),
        None => (0, 0, 0, None, 0, Utc::now()),
    };
    let breakdown = |col: &'static str| {
        let sql = format!(
            "SELECT COALESCE(jsonb_object_agg(k, n), '{{}}'::jsonb) FROM \
             (SELECT COALESCE(c.{col}, 'unknown') AS k, count(*)::bigint AS n FROM voice_calls c WHERE {filter} \
              GROUP BY 1) g"
        );
        let values = values.clone();
        let db = infra.db.clone();
        async move {
            let row = db.query_one_raw(stmt(&sql, values)).await?;
            let v: Value = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or_else(|| json!({}));
            Ok::<_, Error>(v.as_object().cloned().unwrap_or_default())
        }
    };
    let by_status = breakdown("status").await?;
    let by_purpose = breakdown("call_purpose").await?;
    let by_mode = breakdown("call_mode").await?;
    Ok(Metrics {
        total,
        active,
        this_month,
        by_status,
        by_purpose,
        by_mode,
        avg_duration_seconds: avg.map(|a| (a * 10.0).round() / 10.0),
        total_duration_seconds: sum,
        month_start,
    })
}

/// A call still `initiated` without a VAPI id after this long was never placed (its job is dead or
/// lost) …
pub const NEVER_PLACED_AFTER: Duration = Duration::from_secs(30 * 60);
/// … and an active call VAPI has said nothing about for this long is over.
pub const SILENT_AFTER: Duration = Duration::from_secs(3 * 3600);

/// Fails the calls that hold an active slot but will never finish (see [`NEVER_PLACED_AFTER`],
/// [`SILENT_AFTER`]), so a lost job or a missed webhook cannot block a broker's calls for ever.
/// Returns how many were failed.
pub async fn expire_stale(infra: &Infra, now: DateTime<Utc>) -> Result<u64> {
    let never = now - chrono::Duration::from_std(NEVER_PLACED_AFTER).unwrap_or_default();
    let silent = now - chrono::Duration::from_std(SILENT_AFTER).unwrap_or_default();
    let res = infra
        .db
        .execute_raw(stmt(
            "UPDATE voice_calls SET status = 'failed', completed_at = now(), updated_at = now(), \
               ended_reason = CASE WHEN external_call_id IS NULL THEN 'never_placed' ELSE 'no_news_from_vapi' END \
             WHERE status IN ('initiated', 'ringing', 'answered') \
               AND ((external_call_id IS NULL AND status = 'initiated' AND created_at < $1) OR updated_at < $2)",
            vec![never.into(), silent.into()],
        ))
        .await?;
    if res.rows_affected() > 0 {
        tracing::warn!(calls = res.rows_affected(), "stale active calls failed");
    }
    Ok(res.rows_affected())
}

/// The calls of one lead the caller may see, newest first (404 for a lead it cannot see).
pub async fn for_lead(infra: &Infra, ctx: &Ctx, lead_id: i64) -> Result<Vec<Call>> {
    lead_repo::find_visible(&infra.db, ctx, lead_id).await?;
    let q = ListQuery { lead_id: Some(lead_id), limit: 200, ..ListQuery::default() };
    Ok(list(infra, ctx, &q).await?.0)
}
