//! Pipeline use cases (SPEC §7, reference §3.14): the board (every stage with its leads), one
//! stage's column, stale leads, funnel metrics, and running the lead rules over many leads —
//! `auto-advance` for one broker, and the nightly refresh for all of them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DbBackend, EntityTrait, FromQueryResult, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, Statement, TransactionTrait,
};
use serde_json::json;

use crate::ctx::{Ctx, LeadScope};
use crate::entities::{appointments, leads, users};
use crate::error::{Error, FieldError, Result};
use crate::leads::model::{Calificacion, LeadView, Stage, TZ, parse_instant, search_needle};
use crate::leads::repo;
use crate::leads::rules_service::{self, RulesConfig, RulesOutcome};
use crate::pipeline::rules::Reason;
use crate::{Infra, events};

/// Leads per board column unless the caller asks otherwise, and the most it may ask for.
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;

/// What each stage means (reference `PIPELINE_STAGES`, in Spanish as the dashboard shows it).
pub fn description(stage: Stage) -> &'static str {
    match stage {
        Stage::Entrada => "Lead recién recibido",
        Stage::Perfilamiento => "Recopilando información del cliente",
        Stage::CalificacionFinanciera => "Validando capacidad financiera",
        Stage::Agendado => "Visita o reunión agendada",
        Stage::Seguimiento => "Seguimiento comercial",
        Stage::Referidos => "Cliente que refiere a otros",
        Stage::Ganado => "Cliente convertido",
        Stage::Perdido => "Lead perdido",
    }
}

/// A lead as a board card shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct BoardLead {
    pub lead: LeadView,
    pub assigned_agent_name: Option<String>,
    /// The earliest future scheduled or confirmed appointment.
    pub next_appointment: Option<appointments::Model>,
}

/// One board column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub stage: Stage,
    /// Every lead in the stage (the column shows at most `limit`).
    pub count: u64,
    pub leads: Vec<BoardLead>,
}

fn parse_limit(limit: Option<u64>) -> Result<u64> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(_) => Err(Error::invalid_query("limit", format!("limit must be between 1 and {MAX_LIMIT}"))),
    }
}

/// The board: the 8 stages in order, each with its count and its `limit` most recently entered leads.
/// AGENT sees only its assigned leads; SUPERADMIN every broker's, or one with `broker_id`.
#[tracing::instrument(skip_all)]
pub async fn board(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>, limit: Option<u64>) -> Result<Vec<Column>> {
    let limit = parse_limit(limit)?;
    let scope = ctx.lead_scope(broker_id)?;
    let counts: HashMap<String, i64> = repo::scoped(scope)
        .select_only()
        .column(leads::Column::PipelineStage)
        .column_as(Expr::cust("count(*)"), "n")
        .group_by(leads::Column::PipelineStage)
        .into_tuple::<(String, i64)>()
        .all(&infra.db)
        .await?
        .into_iter()
        .collect();
    // One pass over the broker's leads: the newest `limit` of each stage.
    let inner = repo::scoped(scope)
        .expr_as(
            Expr::cust("row_number() OVER (PARTITION BY pipeline_stage ORDER BY stage_entered_at DESC, id DESC)"),
            "board_rank",
        )
        .build(DbBackend::Postgres);
    let sql = format!(
        "SELECT * FROM ({}) ranked WHERE board_rank <= {limit} ORDER BY pipeline_stage, stage_entered_at DESC, id DESC",
        inner.sql
    );
    let stmt = Statement { sql, values: inner.values, db_backend: DbBackend::Postgres };
    let rows = leads::Model::find_by_statement(stmt).all(&infra.db).await?;
    let mut cards = decorate(infra, rows).await?;
    Ok(Stage::ALL
        .iter()
        .map(|stage| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                std::mem::take(&mut cards).into_iter().partition(|c| c.lead.row.pipeline_stage == stage.as_str());
            cards = rest;
            Column {
                stage: *stage,
                count: u64::try_from(counts.get(stage.as_str()).copied().unwrap_or(0)).unwrap_or(0),
                leads: mine,
            }
        })
        .collect())
}

/// Agent names and next appointments for a page of leads (two queries, whatever the page size).
async fn decorate(infra: &Infra, rows: Vec<leads::Model>) -> Result<Vec<BoardLead>> {
    let ids: Vec<i64> = rows.iter().map(|l| l.id).collect();
    let agent_ids: Vec<i64> = rows.iter().filter_map(|l| l.assigned_to).collect();
    let names: HashMap<i64, String> = if agent_ids.is_empty() {
        HashMap::new()
    } else {
        users::Entity::find()
            .select_only()
            .columns([users::Column::Id, users::Column::Name])
            .filter(users::Column::Id.is_in(agent_ids))
            .into_tuple::<(i64, String)>()
            .all(&infra.db)
            .await?
            .into_iter()
            .collect()
    };
    let mut next: HashMap<i64, appointments::Model> = HashMap::new();
    if !ids.is_empty() {
        let upcoming = appointments::Entity::find()
            .filter(appointments::Column::LeadId.is_in(ids))
            .filter(appointments::Column::Status.is_in(["scheduled", "confirmed"]))
            .filter(appointments::Column::StartTime.gt(Utc::now()))
            .order_by_asc(appointments::Column::StartTime)
            .all(&infra.db)
            .await?;
        for a in upcoming {
            next.entry(a.lead_id).or_insert(a);
        }
    }
    Ok(rows
        .into_iter()
        .map(|l| BoardLead {
            assigned_agent_name: l.assigned_to.and_then(|a| names.get(&a).cloned()),
            next_appointment: next.remove(&l.id),
            lead: LeadView::new(&infra.cipher, l),
        })
        .collect())
}

/// Raw parameters of one column (`GET /pipeline/stages/{stage}/leads`).
#[derive(Clone, Debug, Default)]
pub struct StageQuery {
    /// A user id, or `unassigned`.
    pub assigned_to: Option<String>,
    pub search: Option<String>,
    pub created_from: Option<String>,
    pub created_to: Option<String>,
    pub calificacion: Option<String>,
    pub broker_id: Option<i64>,
    pub skip: u64,
    pub limit: Option<u64>,
}

/// A page of one column, most recently entered first, and the number of leads matching.
pub struct StagePage {
    pub stage: Stage,
    pub leads: Vec<BoardLead>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

fn parse_stage(raw: &str) -> Result<Stage> {
    // The stage is a path segment here.
    let loc = FieldError { loc: vec!["path".into(), "stage".into()], msg: String::new(), kind: "value_error".into() };
    Stage::parse_field(raw, loc)
}

/// One stage's leads with the reference's filters.
#[tracing::instrument(skip_all)]
pub async fn stage_leads(infra: &Infra, ctx: &Ctx, raw_stage: &str, q: &StageQuery) -> Result<StagePage> {
    let stage = parse_stage(raw_stage)?;
    let limit = parse_limit(q.limit)?;
    let mut cond = Condition::all().add(leads::Column::PipelineStage.eq(stage.as_str()));
    match q.assigned_to.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => {}
        Some(a) if a.eq_ignore_ascii_case("unassigned") => cond = cond.add(leads::Column::AssignedTo.is_null()),
        Some(a) => {
            let id: i64 = a
                .parse()
                .map_err(|_| Error::invalid_query("assigned_to", "assigned_to must be a user id or \"unassigned\""))?;
            cond = cond.add(leads::Column::AssignedTo.eq(id));
        }
    }
    if let Some(s) = &q.search {
        if s.chars().count() > 200 {
            return Err(Error::invalid_query("search", "search must have at most 200 characters"));
        }
        if let Some(needle) = search_needle(s) {
            let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            cond = cond.add(Expr::col(leads::Column::SearchText).like(format!("%{escaped}%")));
        }
    }
    if let Some(from) = q.created_from.as_deref() {
        cond = cond.add(leads::Column::CreatedAt.gte(parse_instant(from, "created_from", false)?));
    }
    if let Some(to) = q.created_to.as_deref() {
        cond = cond.add(leads::Column::CreatedAt.lte(parse_instant(to, "created_to", true)?));
    }
    if let Some(c) = q.calificacion.as_deref().filter(|c| !c.trim().is_empty()) {
        let c = Calificacion::parse_field(c, FieldError::query("calificacion", "", "value_error"))?;
        cond = cond.add(leads::Column::Calificacion.eq(c.as_str()));
    }
    let filtered = repo::scoped(ctx.lead_scope(q.broker_id)?).filter(cond);
    let total = filtered.clone().count(&infra.db).await?;
    let rows = filtered
        .order_by_desc(leads::Column::StageEnteredAt)
        .order_by_desc(leads::Column::Id)
        .offset(crate::db::offset(q.skip))
        .limit(limit)
        .all(&infra.db)
        .await?;
    Ok(StagePage { stage, leads: decorate(infra, rows).await?, total, skip: q.skip, limit })
}

/// Leads that entered `stage` at least `days` days ago and are still there (oldest first, at most 500).
pub async fn inactive(
    infra: &Infra,
    ctx: &Ctx,
    raw_stage: &str,
    days: i64,
    broker_id: Option<i64>,
) -> Result<(Stage, u64, Vec<LeadView>)> {
    let stage = parse_stage(raw_stage)?;
    if !(1..=3650).contains(&days) {
        return Err(Error::invalid_query("inactivity_days", "inactivity_days must be between 1 and 3650"));
    }
    let cutoff = Utc::now() - Duration::days(days);
    let q = repo::scoped(ctx.lead_scope(broker_id)?)
        .filter(leads::Column::PipelineStage.eq(stage.as_str()))
        .filter(leads::Column::StageEnteredAt.lte(cutoff));
    let count = q.clone().count(&infra.db).await?;
    let rows =
        q.order_by_asc(leads::Column::StageEnteredAt).order_by_asc(leads::Column::Id).limit(500).all(&infra.db).await?;
    Ok((stage, count, rows.into_iter().map(|l| LeadView::new(&infra.cipher, l)).collect()))
}

/// Runs the rules on one lead the caller may see (`POST /leads/{id}/recalculate`, and the
/// reference's per-lead auto-advance), then publishes the events.
#[tracing::instrument(skip_all, fields(lead_id = id))]
pub async fn recalculate(infra: &Infra, ctx: &Ctx, id: i64) -> Result<RulesOutcome> {
    let txn = infra.db.begin().await?;
    let lead = repo::lock_visible(&txn, ctx, id).await?;
    let outcome = rules_service::apply(infra, &txn, lead, Utc::now()).await?;
    txn.commit().await?;
    rules_service::publish(infra, &outcome).await;
    Ok(outcome)
}

/// Runs the rules on one lead after something outside a conversation changed its facts (an
/// appointment booked, confirmed, completed or cancelled): its own transaction, then the events.
pub async fn reapply(infra: &Infra, lead_id: i64) -> Result<Option<RulesOutcome>> {
    let txn = infra.db.begin().await?;
    let Some(lead) = leads::Entity::find_by_id(lead_id).lock_exclusive().one(&txn).await? else {
        return Ok(None);
    };
    let outcome = rules_service::apply(infra, &txn, lead, Utc::now()).await?;
    txn.commit().await?;
    rules_service::publish(infra, &outcome).await;
    Ok(Some(outcome))
}

/// One automatic move, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub lead_id: i64,
    pub from: Stage,
    pub to: Stage,
    pub reason: Reason,
}

/// What a run of the rules over many leads did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Refresh {
    /// Leads the rules ran on.
    pub checked: u64,
    /// Leads whose row changed (score, status, calificación, stage, tags or reply metrics).
    pub updated: u64,
    /// Leads that moved at least one stage.
    pub advanced: u64,
    /// Leads that turned hot.
    pub became_hot: u64,
    /// The moves, the first [`MAX_REPORTED_MOVES`] of them.
    pub moves: Vec<Move>,
}

pub const MAX_REPORTED_MOVES: usize = 1000;

/// Leads locked and processed per transaction.
const BATCH: u64 = 200;

/// Which leads a run covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Every open lead (not `converted` / `lost`) of every broker, or of one: the nightly refresh.
    Scores { broker_id: Option<i64> },
    /// One broker's leads in a stage with an automatic way out: auto-advance.
    Moves { broker_id: i64 },
}

/// Runs the rules over the leads of `sweep` in batches of 200 (each batch one transaction that locks
/// its rows, reads the configuration fresh and the facts in one query), publishing each batch's
/// events after its commit.
#[tracing::instrument(skip_all, fields(sweep = ?sweep))]
pub async fn refresh(infra: &Infra, sweep: Sweep, now: DateTime<Utc>) -> Result<Refresh> {
    let mut report = Refresh::default();
    let mut last_id = 0i64;
    loop {
        let txn = infra.db.begin().await?;
        let mut q = leads::Entity::find()
            .filter(leads::Column::Id.gt(last_id))
            .filter(leads::Column::Status.is_not_in(["converted", "lost"]));
        match sweep {
            Sweep::Scores { broker_id: Some(b) } => q = q.filter(leads::Column::BrokerId.eq(b)),
            Sweep::Scores { broker_id: None } => {}
            Sweep::Moves { broker_id } => {
                q = q.filter(leads::Column::BrokerId.eq(broker_id)).filter(leads::Column::PipelineStage.is_in([
                    Stage::Entrada.as_str(),
                    Stage::Perfilamiento.as_str(),
                    Stage::CalificacionFinanciera.as_str(),
                    Stage::Agendado.as_str(),
                ]))
            }
        }
        let batch = q.order_by_asc(leads::Column::Id).limit(BATCH).lock_exclusive().all(&txn).await?;
        let Some(last) = batch.last() else {
            txn.commit().await?;
            break;
        };
        last_id = last.id;
        let ids: Vec<i64> = batch.iter().map(|l| l.id).collect();
        let mut facts = rules_service::activities(&txn, &ids).await?;
        let mut configs: HashMap<i64, RulesConfig> = HashMap::new();
        let mut outcomes = Vec::new();
        for lead in batch {
            let cfg = match configs.entry(lead.broker_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(RulesConfig::load(&txn, lead.broker_id).await?),
            };
            let f = facts.remove(&lead.id).unwrap_or_default();
            let outcome = rules_service::apply_with(infra, &txn, cfg, &f, lead, now).await?;
            report.checked += 1;
            if outcome.changed {
                report.updated += 1;
            }
            if outcome.became_hot {
                report.became_hot += 1;
            }
            if !outcome.stage_moves.is_empty() {
                report.advanced += 1;
                for (from, to, reason) in &outcome.stage_moves {
                    if report.moves.len() < MAX_REPORTED_MOVES {
                        report.moves.push(Move { lead_id: outcome.lead.id, from: *from, to: *to, reason: *reason });
                    }
                }
            }
            if outcome.changed {
                outcomes.push(outcome);
            }
        }
        txn.commit().await?;
        for o in &outcomes {
            rules_service::publish(infra, o).await;
        }
    }
    tracing::info!(checked = report.checked, updated = report.updated, advanced = report.advanced, "rules refreshed");
    Ok(report)
}

/// ADMIN: runs the rules over its broker's leads (SUPERADMIN names the broker) and reports the moves.
pub async fn auto_advance(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Refresh> {
    ctx.require_admin()?;
    let broker_id = ctx.target_broker(broker_id)?;
    refresh(infra, Sweep::Moves { broker_id }, Utc::now()).await
}

/// The people leads can be assigned to: active ADMIN and AGENT users of the broker, by name.
pub async fn agents(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Vec<(i64, String, String)>> {
    let broker_id = ctx.target_broker(broker_id)?;
    Ok(users::Entity::find()
        .select_only()
        .columns([users::Column::Id, users::Column::Name, users::Column::Email])
        .filter(users::Column::BrokerId.eq(broker_id))
        .filter(users::Column::IsActive.eq(true))
        .filter(users::Column::Role.is_in(["ADMIN", "AGENT"]))
        .order_by_asc(users::Column::Name)
        .order_by_asc(users::Column::Id)
        .into_tuple()
        .all(&infra.db)
        .await?)
}

/// ADMIN assigns a lead to an active user of its broker, or with `None` leaves it unassigned
/// (activity `assignment`, WS `lead_assigned`). Returns the agent's name.
pub async fn assign(infra: &Infra, ctx: &Ctx, lead_id: i64, agent_id: Option<i64>) -> Result<Option<String>> {
    if let Some(agent) = agent_id {
        crate::leads::service::assign(infra, ctx, lead_id, agent).await?;
        return Ok(users::Entity::find_by_id(agent).one(&infra.db).await?.map(|u| u.name));
    }
    ctx.require_admin()?;
    let txn = infra.db.begin().await?;
    let lead = repo::lock_visible(&txn, ctx, lead_id).await?;
    let previous = lead.assigned_to;
    let mut am = lead.into_active_model();
    am.assigned_to = Set(None);
    am.updated_at = Set(Utc::now());
    let lead = am.update(&txn).await?;
    repo::add_activity(
        &txn,
        ctx,
        &lead,
        "assignment",
        json!({"assigned_to": null, "previous": previous, "assigned_by": ctx.user_id}),
    )
    .await?;
    txn.commit().await?;
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        lead.broker_id,
        "lead_assigned",
        json!({"lead_id": lead.id, "agent_id": null, "agent_name": null, "assigned_by": ctx.user_id}),
    )
    .await;
    Ok(None)
}

/// Funnel KPIs (reference §3.14 `/metrics` and `/funnel-metrics` in one).
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    pub total_leads: u64,
    /// Every stage, in order: (stage, leads now in it, average days since they entered it).
    pub stages: Vec<(Stage, u64, f64)>,
    /// Leads that reached each stage of the funnel (or a later one), in funnel order.
    pub reached: Vec<(Stage, u64)>,
    /// `"{from}_to_{to}"` between consecutive funnel stages: reached(to) / reached(from) × 100.
    pub conversion_rates: Vec<(String, f64)>,
    /// ganado / total × 100.
    pub conversion_rate: f64,
    /// Leads past `entrada` / total × 100.
    pub response_rate: f64,
    /// Leads created per week (Monday, America/Santiago), the last 8 weeks, oldest first.
    pub weekly_trend: Vec<(NaiveDate, u64)>,
    /// Lost leads by the stage they were lost from.
    pub lost_by_stage: Vec<(Stage, u64)>,
}

/// The funnel's stages, in order: everything but `perdido`.
pub const FUNNEL: [Stage; 7] = [
    Stage::Entrada,
    Stage::Perfilamiento,
    Stage::CalificacionFinanciera,
    Stage::Agendado,
    Stage::Seguimiento,
    Stage::Referidos,
    Stage::Ganado,
];

/// `WHERE` for the leads of `scope` (alias `l`), with its values from `$1`.
fn scope_sql(scope: LeadScope) -> (String, Vec<sea_orm::Value>) {
    match scope {
        LeadScope::All { broker_id: None } => ("TRUE".into(), vec![]),
        LeadScope::All { broker_id: Some(b) } | LeadScope::Broker(b) => ("l.broker_id = $1".into(), vec![b.into()]),
        LeadScope::Assigned { broker_id, user_id } => {
            ("l.broker_id = $1 AND l.assigned_to = $2".into(), vec![broker_id.into(), user_id.into()])
        }
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { (part as f64 * 1000.0 / whole as f64).round() / 10.0 }
}

#[derive(FromQueryResult)]
struct StageRow {
    stage: Option<String>,
    n: i64,
    days: Option<f64>,
}

/// Funnel metrics over the leads the caller may see.
#[tracing::instrument(skip_all)]
pub async fn metrics(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Metrics> {
    let scope = ctx.lead_scope(broker_id)?;
    let (where_sql, values) = scope_sql(scope);
    let now = Utc::now();
    let next = values.len() + 1;
    let query = |sql: String, mut extra: Vec<sea_orm::Value>| {
        let mut v = values.clone();
        v.append(&mut extra);
        Statement::from_sql_and_values(DbBackend::Postgres, sql, v)
    };
    let db = &infra.db;

    let per_stage = StageRow::find_by_statement(query(
        format!(
            "SELECT l.pipeline_stage AS stage, count(*)::bigint AS n, \
                    (avg(extract(epoch FROM ${next}::timestamptz - l.stage_entered_at)) / 86400)::float8 AS days \
             FROM leads l WHERE {where_sql} GROUP BY 1"
        ),
        vec![now.into()],
    ))
    .all(db)
    .await?;
    let furthest = StageRow::find_by_statement(query(
        format!(
            "WITH s(stage, ord) AS (VALUES {funnel}), \
                  scoped AS (SELECT l.id, l.pipeline_stage FROM leads l WHERE {where_sql}), \
                  visits AS ( \
                    SELECT id AS lead_id, pipeline_stage AS stage FROM scoped \
                    UNION ALL SELECT a.lead_id, a.details->>'old_stage' FROM activity_log a JOIN scoped ON scoped.id = a.lead_id \
                      WHERE a.action_type = 'stage_change' \
                    UNION ALL SELECT a.lead_id, a.details->>'new_stage' FROM activity_log a JOIN scoped ON scoped.id = a.lead_id \
                      WHERE a.action_type = 'stage_change'), \
                  furthest AS (SELECT v.lead_id, COALESCE(max(s.ord), 0) AS ord FROM visits v LEFT JOIN s ON s.stage = v.stage \
                    GROUP BY v.lead_id) \
             SELECT ord::text AS stage, count(*)::bigint AS n, NULL::float8 AS days FROM furthest GROUP BY ord",
            funnel = FUNNEL.iter().enumerate().map(|(i, s)| format!("('{}', {i})", s.as_str())).collect::<Vec<_>>().join(", ")
        ),
        vec![],
    ))
    .all(db)
    .await?;
    let lost = StageRow::find_by_statement(query(
        format!(
            "SELECT stage, count(*)::bigint AS n, NULL::float8 AS days FROM ( \
               SELECT DISTINCT ON (a.lead_id) a.details->>'old_stage' AS stage \
               FROM activity_log a JOIN leads l ON l.id = a.lead_id \
               WHERE {where_sql} AND l.pipeline_stage = 'perdido' AND a.action_type = 'stage_change' \
                 AND a.details->>'new_stage' = 'perdido' \
               ORDER BY a.lead_id, a.created_at DESC, a.id DESC) t GROUP BY stage"
        ),
        vec![],
    ))
    .all(db)
    .await?;
    let this_monday = {
        let today = now.with_timezone(&TZ).date_naive();
        today - Duration::days(i64::from(today.weekday().num_days_from_monday()))
    };
    let first_monday = this_monday - Duration::weeks(7);
    let since = TZ
        .from_local_datetime(&first_monday.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map_or(now - Duration::weeks(8), |d| d.with_timezone(&Utc));
    let weeks = StageRow::find_by_statement(query(
        format!(
            "SELECT to_char(date_trunc('week', l.created_at AT TIME ZONE 'America/Santiago'), 'YYYY-MM-DD') AS stage, \
                    count(*)::bigint AS n, NULL::float8 AS days \
             FROM leads l WHERE {where_sql} AND l.created_at >= ${next} GROUP BY 1"
        ),
        vec![since.into()],
    ))
    .all(db)
    .await?;

    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let by_stage: HashMap<String, (u64, f64)> = per_stage
        .into_iter()
        .filter_map(|r| Some((r.stage?, (count(r.n), (r.days.unwrap_or(0.0) * 10.0).round() / 10.0))))
        .collect();
    let total_leads: u64 = by_stage.values().map(|(n, _)| n).sum();
    let stages: Vec<(Stage, u64, f64)> = Stage::ALL
        .iter()
        .map(|s| {
            let (n, d) = by_stage.get(s.as_str()).copied().unwrap_or((0, 0.0));
            (*s, n, d)
        })
        .collect();
    let mut at_ord = [0u64; FUNNEL.len()];
    for r in furthest {
        if let Some(i) = r.stage.and_then(|s| s.parse::<usize>().ok()).filter(|i| *i < FUNNEL.len()) {
            at_ord[i] += count(r.n);
        }
    }
    let reached: Vec<(Stage, u64)> = FUNNEL.iter().enumerate().map(|(i, s)| (*s, at_ord[i..].iter().sum())).collect();
    let conversion_rates = reached
        .windows(2)
        .map(|w| (format!("{}_to_{}", w[0].0.as_str(), w[1].0.as_str()), pct(w[1].1, w[0].1)))
        .collect();
    let ganado = stages.iter().find(|(s, _, _)| *s == Stage::Ganado).map_or(0, |(_, n, _)| *n);
    let entrada = stages.first().map_or(0, |(_, n, _)| *n);
    let weekly: HashMap<String, u64> = weeks.into_iter().filter_map(|r| Some((r.stage?, count(r.n)))).collect();
    let weekly_trend = (0..8)
        .map(|k| {
            let monday = first_monday + Duration::weeks(k);
            (monday, weekly.get(&monday.format("%Y-%m-%d").to_string()).copied().unwrap_or(0))
        })
        .collect();
    let lost: HashMap<String, u64> = lost.into_iter().filter_map(|r| Some((r.stage?, count(r.n)))).collect();
    let lost_by_stage = Stage::ALL
        .iter()
        .filter(|s| **s != Stage::Perdido)
        .map(|s| (*s, lost.get(s.as_str()).copied().unwrap_or(0)))
        .collect();
    Ok(Metrics {
        total_leads,
        stages,
        reached,
        conversion_rates,
        conversion_rate: pct(ganado, total_leads),
        response_rate: pct(total_leads - entrada, total_leads),
        weekly_trend,
        lost_by_stage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_have_one_decimal_and_survive_empty_sets() {
        assert_eq!(pct(1, 3), 33.3);
        assert_eq!(pct(2, 3), 66.7);
        assert_eq!(pct(0, 0), 0.0);
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some(200)).unwrap(), 200);
        assert_eq!(parse_limit(Some(201)).unwrap_err().code(), "validation_error");
        assert!(parse_limit(Some(0)).is_err());
    }

    #[test]
    fn a_bad_stage_names_the_path_segment() {
        let e = parse_stage("potencial").unwrap_err();
        assert_eq!(e.code(), "invalid_stage");
        assert_eq!(e.detail()[0]["loc"], json!(["path", "stage"]));
    }

    #[test]
    fn every_stage_is_described_and_the_funnel_leaves_out_perdido() {
        assert!(Stage::ALL.iter().all(|s| !description(*s).is_empty()));
        assert!(!FUNNEL.contains(&Stage::Perdido));
    }
}
