//! Cost analytics over the `llm_calls` ledger (reference §3.10, SPEC §12): summary, zero-filled
//! daily series, per-lead outliers by z-score, the calls list, a streamed CSV export and the
//! per-broker ranking for SUPERADMIN — with the cost per qualified lead and per booked appointment.
//!
//! ADMIN reads its own broker (naming another is a 403); SUPERADMIN any broker, or all of them when
//! it names none; AGENTs are refused (the reference let them in).

use std::collections::BTreeMap;

use chrono::DurationRound;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures_util::{Stream, StreamExt};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde::Serialize;

use crate::Infra;
use crate::ctx::{Ctx, Role};
use crate::error::{Error, FieldError, Result};

/// A z-score at or above this flags a lead's spend as an outlier.
pub const OUTLIER_Z: f64 = 3.0;

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// `period`: `today` (since 00:00 UTC), `week` (7 days), `month` (30), `quarter` (90).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Today,
    Week,
    Month,
    Quarter,
}

impl Period {
    pub fn parse(raw: Option<&str>) -> Result<Self> {
        match raw.map(str::trim).unwrap_or("month") {
            "today" => Ok(Period::Today),
            "week" => Ok(Period::Week),
            "month" | "" => Ok(Period::Month),
            "quarter" => Ok(Period::Quarter),
            _ => Err(Error::invalid(
                "validation_error",
                FieldError::query("period", "period must be one of today, week, month, quarter", "value_error"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Today => "today",
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
        }
    }

    /// `[from, now]`.
    pub fn window(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let from = match self {
            Period::Today => now.date_naive().and_hms_opt(0, 0, 0).map_or(now, |d| d.and_utc()),
            Period::Week => now - Duration::days(7),
            Period::Month => now - Duration::days(30),
            Period::Quarter => now - Duration::days(90),
        };
        (from, now)
    }
}

/// Which broker(s) a cost query reads: `None` = every broker (SUPERADMIN only).
pub fn scope(ctx: &Ctx, requested: Option<i64>) -> Result<Option<i64>> {
    match (ctx.role, ctx.broker_id) {
        (Role::Superadmin, _) => Ok(requested),
        (Role::Admin, Some(own)) => match requested {
            Some(b) if b != own => Err(Error::forbidden("You can only read your own broker's costs")),
            _ => Ok(Some(own)),
        },
        (Role::Admin, None) => Err(Error::forbidden("No broker is associated with this account")),
        _ => Err(Error::forbidden("Costs are for administrators")),
    }
}

/// `broker_id` condition on `alias.broker_id` as `$n` (or nothing for all brokers).
fn broker_cond(alias: &str, broker: Option<i64>, values: &mut Vec<sea_orm::Value>) -> String {
    match broker {
        Some(b) => {
            values.push(b.into());
            format!(" AND {alias}.broker_id = ${}", values.len())
        }
        None => String::new(),
    }
}

fn round(x: f64, dp: i32) -> f64 {
    let f = 10f64.powi(dp);
    (x * f).round() / f
}

/// The first multiple of `unit` (an hour, a day) since the epoch at or after `t`, in UTC.
fn ceil_to(t: DateTime<Utc>, unit: Duration) -> DateTime<Utc> {
    let floor = t.duration_trunc(unit).unwrap_or(t);
    if floor == t { t } else { floor + unit }
}

/// A `WITH u AS (…)` over the window's calls as rows of `(provider, call_type, at, calls, errors,
/// fallbacks, cost_usd, latency_ms_sum, input_tokens, output_tokens)`. Below the fold watermark the
/// calls come from the roll-ups: whole UTC days that the fold has finished from the daily ones, the
/// hours around them (the window's first day, and the day the watermark is in) from the hourly
/// ones; the window's ragged first hour and everything since the watermark from the ledger. The
/// parts are disjoint and together hold every call of the window once.
fn ledger(broker: Option<i64>, from: DateTime<Utc>, to: DateTime<Utc>) -> (String, Vec<sea_orm::Value>) {
    let hours_from = ceil_to(from, Duration::hours(1));
    let days_from = ceil_to(from, Duration::days(1));
    let mut v: Vec<sea_orm::Value> = vec![from.into(), to.into(), hours_from.into(), days_from.into()];
    // The broker is the last value: callers add their own conditions on it.
    let rb = broker_cond("r", broker, &mut v);
    let (db, cb) = match broker {
        Some(_) => (format!(" AND d.broker_id = ${}", v.len()), format!(" AND c.broker_id = ${}", v.len())),
        None => (String::new(), String::new()),
    };
    let cols = "provider, call_type, bucket AS at, calls, errors, fallbacks, cost_usd, latency_ms_sum, \
                input_tokens, output_tokens";
    let raw = "SELECT c.provider, c.call_type, c.created_at AS at, 1::int8 AS calls, \
               (c.error IS NOT NULL)::int::int8 AS errors, c.fallback_used::int::int8 AS fallbacks, \
               COALESCE(c.estimated_cost_usd, 0)::float8 AS cost_usd, c.latency_ms::int8 AS latency_ms_sum, \
               c.input_tokens::int8 AS input_tokens, c.output_tokens::int8 AS output_tokens FROM llm_calls c";
    // The watermark is read by the same statement: roll-ups below it, raw rows from it on. Daily
    // roll-ups cover [days_from, dend), the days wholly below the watermark; hourly ones the hours
    // before days_from and from dend on (each range its own index scan).
    let sql = format!(
        "WITH w AS (\
           SELECT t, GREATEST($4::timestamptz, date_trunc('day', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS dend \
           FROM (SELECT COALESCE((SELECT folded_until FROM llm_rollup_state WHERE id = 1), 'epoch'::timestamptz) AS t) s\
         ), u AS (\
           SELECT {cols} FROM llm_call_rollups_daily d \
           WHERE d.bucket >= $4 AND d.bucket < (SELECT dend FROM w){db} \
           UNION ALL SELECT {cols} FROM llm_call_rollups r \
           WHERE r.bucket >= $3 AND r.bucket < LEAST($4, (SELECT t FROM w)){rb} \
           UNION ALL SELECT {cols} FROM llm_call_rollups r \
           WHERE r.bucket >= (SELECT dend FROM w) AND r.bucket < (SELECT t FROM w){rb} \
           UNION ALL {raw} WHERE c.created_at >= $1 AND c.created_at < $3 AND c.created_at <= $2{cb} \
           UNION ALL {raw} WHERE c.created_at >= GREATEST((SELECT t FROM w), $3) AND c.created_at >= $1 \
                               AND c.created_at <= $2{cb})"
    );
    (sql, v)
}

/// How a fold adds a bucket's new calls to the roll-up row already there (`r`).
const ADD_ROLLUP: &str = "calls = r.calls + EXCLUDED.calls, errors = r.errors + EXCLUDED.errors, \
     fallbacks = r.fallbacks + EXCLUDED.fallbacks, cost_usd = r.cost_usd + EXCLUDED.cost_usd, \
     latency_ms_sum = r.latency_ms_sum + EXCLUDED.latency_ms_sum, input_tokens = r.input_tokens + EXCLUDED.input_tokens, \
     output_tokens = r.output_tokens + EXCLUDED.output_tokens";

/// How far behind the clock the fold stays, so a transaction still writing older rows is not missed.
pub const FOLD_LAG: Duration = Duration::minutes(2);

/// Folds the calls created since the last fold (up to `now − FOLD_LAG`) into the hourly and daily
/// roll-ups.
/// Returns how many calls it folded. Runs under a row lock, so concurrent folds never double-add.
pub async fn fold(infra: &Infra, now: DateTime<Utc>) -> Result<u64> {
    let txn = infra.db.begin().await?;
    let since: DateTime<Utc> = txn
        .query_one_raw(stmt("SELECT folded_until FROM llm_rollup_state WHERE id = 1 FOR UPDATE", vec![]))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let until = now - FOLD_LAG;
    if until <= since {
        txn.commit().await?;
        return Ok(0);
    }
    let folded: i64 = txn
        .query_one_raw(stmt(
            &format!(
                "WITH src AS (\
               SELECT COALESCE(broker_id, 0) AS broker_id, \
                      date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, \
                      provider, call_type, count(*) AS calls, count(*) FILTER (WHERE error IS NOT NULL) AS errors, \
                      count(*) FILTER (WHERE fallback_used) AS fallbacks, \
                      COALESCE(sum(estimated_cost_usd), 0) AS cost_usd, sum(latency_ms) AS latency_ms_sum, \
                      sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens \
               FROM llm_calls WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4), \
             ins AS (\
               INSERT INTO llm_call_rollups AS r (broker_id, bucket, provider, call_type, calls, errors, fallbacks, \
                                                  cost_usd, latency_ms_sum, input_tokens, output_tokens) \
               SELECT * FROM src \
               ON CONFLICT (broker_id, bucket, provider, call_type) DO UPDATE SET {add}), \
             daily AS (\
               INSERT INTO llm_call_rollups_daily AS r (broker_id, bucket, provider, call_type, calls, errors, \
                                                        fallbacks, cost_usd, latency_ms_sum, input_tokens, output_tokens) \
               SELECT broker_id, date_trunc('day', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', provider, call_type, \
                      sum(calls), sum(errors), sum(fallbacks), sum(cost_usd), sum(latency_ms_sum), \
                      sum(input_tokens), sum(output_tokens) \
               FROM src GROUP BY 1, 2, 3, 4 \
               ON CONFLICT (broker_id, bucket, provider, call_type) DO UPDATE SET {add}) \
             SELECT COALESCE(sum(calls), 0)::int8 FROM src",
                add = ADD_ROLLUP,
            ),
            vec![since.into(), until.into()],
        ))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0);
    txn.execute_raw(stmt("UPDATE llm_rollup_state SET folded_until = $1 WHERE id = 1", vec![until.into()])).await?;
    txn.commit().await?;
    Ok(folded.max(0) as u64)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub broker_id: Option<i64>,
    pub period: &'static str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub total_cost_usd: f64,
    pub total_calls: i64,
    pub error_calls: i64,
    pub fallback_calls: i64,
    pub fallback_rate: f64,
    pub avg_latency_ms: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_by_provider: BTreeMap<String, f64>,
    pub cost_by_call_type: BTreeMap<String, f64>,
    /// Leads Sofía talked to in the window (a call names them) that are qualified (`calificado`).
    pub qualified_leads: i64,
    pub cost_per_qualified_lead_usd: Option<f64>,
    /// Appointments booked in the window (not cancelled).
    pub booked_appointments: i64,
    pub cost_per_booked_appointment_usd: Option<f64>,
    /// Spend so far today (UTC) and whether it reached `DAILY_COST_ALERT_USD`.
    pub daily_cost_usd: f64,
    pub daily_alert: bool,
    pub daily_alert_threshold_usd: f64,
}

pub async fn summary(
    infra: &Infra,
    ctx: &Ctx,
    broker: Option<i64>,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Summary> {
    let broker = scope(ctx, broker)?;
    let (from, to) = period.window(now);
    let db = &infra.db;
    let (union, mut v) = ledger(broker, from, to);
    // Every figure in one statement. The periods all end now and start at or before today's
    // 00:00 UTC, so today's cost is the part of the same rows from then on.
    let broker_param = v.len();
    v.push(Period::Today.window(now).0.into());
    let day = v.len();
    let of = |alias: &str| match broker {
        Some(_) => format!(" AND {alias}.broker_id = ${broker_param}"),
        None => String::new(),
    };
    let sql = format!(
        "{union}, g AS (\
           SELECT provider, call_type, sum(calls)::int8 AS calls, sum(errors)::int8 AS errors, \
                  sum(fallbacks)::int8 AS fallbacks, sum(cost_usd)::float8 AS cost, \
                  sum(latency_ms_sum)::int8 AS latency, sum(input_tokens)::int8 AS input_tokens, \
                  sum(output_tokens)::int8 AS output_tokens, \
                  COALESCE(sum(cost_usd) FILTER (WHERE at >= ${day}), 0)::float8 AS today \
           FROM u GROUP BY 1, 2) \
         SELECT g.*, \
           (SELECT count(*) FROM leads l WHERE l.calificacion = 'calificado'{lb} AND EXISTS \
              (SELECT 1 FROM llm_calls c WHERE c.lead_id = l.id AND c.created_at >= $1 AND c.created_at <= $2)) \
             AS qualified, \
           (SELECT count(*) FROM appointments a WHERE a.status <> 'cancelled' \
              AND a.created_at >= $1 AND a.created_at <= $2{ab}) AS booked \
         FROM (SELECT 1) one LEFT JOIN g ON true",
        lb = of("l"),
        ab = of("a"),
    );
    let rows = db.query_all_raw(stmt(&sql, v)).await?;
    let (mut total_cost, mut total_calls, mut error_calls, mut fallback_calls) = (0.0f64, 0i64, 0i64, 0i64);
    let (mut latency_sum, mut input_tokens, mut output_tokens, mut daily) = (0i64, 0i64, 0i64, 0.0f64);
    let (mut qualified, mut booked) = (0i64, 0i64);
    let mut cost_by_provider: BTreeMap<String, f64> = BTreeMap::new();
    let mut cost_by_call_type: BTreeMap<String, f64> = BTreeMap::new();
    for r in rows {
        qualified = r.try_get("", "qualified")?;
        booked = r.try_get("", "booked")?;
        // The one row of a period without calls has no provider.
        let Some(provider) = r.try_get::<Option<String>>("", "provider")? else { continue };
        let call_type: String = r.try_get("", "call_type")?;
        let cost: f64 = r.try_get("", "cost")?;
        total_calls += r.try_get::<i64>("", "calls")?;
        error_calls += r.try_get::<i64>("", "errors")?;
        fallback_calls += r.try_get::<i64>("", "fallbacks")?;
        total_cost += cost;
        latency_sum += r.try_get::<i64>("", "latency")?;
        input_tokens += r.try_get::<i64>("", "input_tokens")?;
        output_tokens += r.try_get::<i64>("", "output_tokens")?;
        daily += r.try_get::<f64>("", "today")?;
        *cost_by_provider.entry(provider).or_default() += cost;
        *cost_by_call_type.entry(call_type).or_default() += cost;
    }
    let avg_latency = if total_calls > 0 { latency_sum as f64 / total_calls as f64 } else { 0.0 };
    let threshold = infra.settings.daily_cost_alert_usd;
    let per = |n: i64| (n > 0).then(|| round(total_cost / n as f64, 6));
    let split =
        |m: BTreeMap<String, f64>| -> BTreeMap<String, f64> { m.into_iter().map(|(k, v)| (k, round(v, 6))).collect() };
    Ok(Summary {
        broker_id: broker,
        period: period.as_str(),
        from,
        to,
        total_cost_usd: round(total_cost, 6),
        total_calls,
        error_calls,
        fallback_calls,
        fallback_rate: if total_calls > 0 { round(fallback_calls as f64 / total_calls as f64, 3) } else { 0.0 },
        avg_latency_ms: round(avg_latency, 1),
        input_tokens,
        output_tokens,
        cost_by_provider: split(cost_by_provider),
        cost_by_call_type: split(cost_by_call_type),
        qualified_leads: qualified,
        cost_per_qualified_lead_usd: per(qualified),
        booked_appointments: booked,
        cost_per_booked_appointment_usd: per(booked),
        daily_cost_usd: round(daily, 6),
        daily_alert: daily >= threshold,
        daily_alert_threshold_usd: threshold,
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Day {
    pub date: NaiveDate,
    pub cost_usd: f64,
    pub calls: i64,
}

/// One entry per UTC day of the window, zero-filled.
pub async fn daily(
    infra: &Infra,
    ctx: &Ctx,
    broker: Option<i64>,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Vec<Day>> {
    let broker = scope(ctx, broker)?;
    let (from, to) = period.window(now);
    let (union, v) = ledger(broker, from, to);
    let rows = infra
        .db
        .query_all_raw(stmt(
            &format!(
                "{union} SELECT (at AT TIME ZONE 'UTC')::date, sum(cost_usd)::float8, sum(calls)::int8 FROM u GROUP BY 1"
            ),
            v,
        ))
        .await?;
    let mut found: BTreeMap<NaiveDate, (f64, i64)> = BTreeMap::new();
    for r in rows {
        found.insert(r.try_get_by_index(0)?, (r.try_get_by_index(1)?, r.try_get_by_index(2)?));
    }
    let mut out = Vec::new();
    let mut d = from.date_naive();
    while d <= to.date_naive() {
        let (cost, calls) = found.get(&d).copied().unwrap_or((0.0, 0));
        out.push(Day { date: d, cost_usd: round(cost, 6), calls });
        d = d.succ_opt().unwrap_or(d + Duration::days(1));
    }
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outlier {
    pub lead_id: i64,
    pub total_cost_usd: f64,
    pub call_count: i64,
    pub avg_latency_ms: f64,
    /// Standard deviations above the mean spend per lead in the window.
    pub z_score: f64,
    pub is_outlier: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outliers {
    pub mean_cost_usd: f64,
    pub stddev_cost_usd: f64,
    pub leads_with_cost: i64,
    pub outliers: Vec<Outlier>,
}

/// The `limit` costliest leads of the window with their z-score over every lead's spend.
pub async fn outliers(
    infra: &Infra,
    ctx: &Ctx,
    broker: Option<i64>,
    period: Period,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<Outliers> {
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid(
            "validation_error",
            FieldError::query("limit", "limit must be between 1 and 100", "value_error"),
        ));
    }
    let broker = scope(ctx, broker)?;
    let (from, to) = period.window(now);
    let mut v: Vec<sea_orm::Value> = vec![from.into(), to.into()];
    let cond = broker_cond("c", broker, &mut v);
    v.push((limit as i64).into());
    let rows = infra
        .db
        .query_all_raw(stmt(
            &format!(
                "WITH per AS (SELECT c.lead_id, COALESCE(sum(estimated_cost_usd), 0)::float8 cost, count(*) n, \
                                     COALESCE(avg(latency_ms), 0)::float8 lat \
                              FROM llm_calls c WHERE c.lead_id IS NOT NULL AND c.created_at >= $1 AND c.created_at <= $2{cond} \
                              GROUP BY c.lead_id), \
                      st AS (SELECT COALESCE(avg(cost), 0)::float8 m, COALESCE(stddev_pop(cost), 0)::float8 sd, count(*) k FROM per) \
                 SELECT per.lead_id, per.cost, per.n, per.lat, st.m, st.sd, st.k FROM per, st \
                 ORDER BY per.cost DESC, per.lead_id LIMIT ${}",
                v.len()
            ),
            v,
        ))
        .await?;
    let mut out = Outliers { mean_cost_usd: 0.0, stddev_cost_usd: 0.0, leads_with_cost: 0, outliers: vec![] };
    for r in rows {
        let (cost, mean, sd): (f64, f64, f64) =
            (r.try_get_by_index(1)?, r.try_get_by_index(4)?, r.try_get_by_index(5)?);
        out.mean_cost_usd = round(mean, 6);
        out.stddev_cost_usd = round(sd, 6);
        out.leads_with_cost = r.try_get_by_index(6)?;
        let z = if sd > 0.0 { (cost - mean) / sd } else { 0.0 };
        out.outliers.push(Outlier {
            lead_id: r.try_get_by_index(0)?,
            total_cost_usd: round(cost, 6),
            call_count: r.try_get_by_index(2)?,
            avg_latency_ms: round(r.try_get_by_index(3)?, 1),
            z_score: round(z, 3),
            is_outlier: z >= OUTLIER_Z,
        });
    }
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BrokerCost {
    pub broker_id: i64,
    pub broker_name: String,
    pub total_cost_usd: f64,
    pub total_calls: i64,
    pub leads_qualified: i64,
    pub cost_per_lead: Option<f64>,
}

/// SUPERADMIN: every broker's spend in the window, costliest first.
pub async fn by_broker(infra: &Infra, ctx: &Ctx, period: Period, now: DateTime<Utc>) -> Result<Vec<BrokerCost>> {
    ctx.require_superadmin()?;
    let (from, to) = period.window(now);
    let rows = infra
        .db
        .query_all_raw(stmt(
            "WITH w AS (SELECT broker_id, lead_id, estimated_cost_usd FROM llm_calls \
                        WHERE broker_id IS NOT NULL AND created_at >= $1 AND created_at <= $2) \
             SELECT b.id, b.name, COALESCE(sum(w.estimated_cost_usd), 0)::float8, count(*), \
                    (SELECT count(*) FROM leads l WHERE l.broker_id = b.id AND l.calificacion = 'calificado' \
                       AND l.id IN (SELECT w2.lead_id FROM w w2 WHERE w2.broker_id = b.id)) \
             FROM w JOIN brokers b ON b.id = w.broker_id GROUP BY b.id, b.name \
             ORDER BY 3 DESC, b.id",
            vec![from.into(), to.into()],
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let cost: f64 = r.try_get_by_index(2)?;
        let qualified: i64 = r.try_get_by_index(4)?;
        out.push(BrokerCost {
            broker_id: r.try_get_by_index(0)?,
            broker_name: r.try_get_by_index(1)?,
            total_cost_usd: round(cost, 6),
            total_calls: r.try_get_by_index(3)?,
            leads_qualified: qualified,
            cost_per_lead: (qualified > 0).then(|| round(cost / qualified as f64, 6)),
        });
    }
    Ok(out)
}

#[derive(Clone, Debug, Default)]
pub struct CallsQuery {
    pub page: Option<u64>,
    pub limit: Option<u64>,
    pub provider: Option<String>,
    pub broker_id: Option<i64>,
    pub lead_id: Option<i64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `success` or `error`.
    pub status: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Call {
    pub id: i64,
    pub broker_id: Option<i64>,
    pub lead_id: Option<i64>,
    pub provider: String,
    pub model: String,
    pub call_type: String,
    pub used_fallback: bool,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub estimated_cost_usd: Option<f64>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub prompt_version_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

const CALL_COLUMNS: &str = "c.id, c.broker_id, c.lead_id, c.provider, c.model, c.call_type, c.fallback_used, \
     c.input_tokens, c.output_tokens, c.estimated_cost_usd, c.latency_ms, c.error, c.prompt_version_id, c.created_at";

fn decode_call(r: &sea_orm::QueryResult) -> std::result::Result<Call, sea_orm::DbErr> {
    Ok(Call {
        id: r.try_get_by_index(0)?,
        broker_id: r.try_get_by_index(1)?,
        lead_id: r.try_get_by_index(2)?,
        provider: r.try_get_by_index(3)?,
        model: r.try_get_by_index(4)?,
        call_type: r.try_get_by_index(5)?,
        used_fallback: r.try_get_by_index(6)?,
        input_tokens: r.try_get_by_index(7)?,
        output_tokens: r.try_get_by_index(8)?,
        estimated_cost_usd: r.try_get_by_index(9)?,
        latency_ms: r.try_get_by_index(10)?,
        error: r.try_get_by_index(11)?,
        prompt_version_id: r.try_get_by_index(12)?,
        created_at: r.try_get_by_index(13)?,
    })
}

/// The ledger's rows, newest first.
pub async fn calls(infra: &Infra, ctx: &Ctx, q: &CallsQuery) -> Result<(Vec<Call>, u64, u64, u64)> {
    let broker = scope(ctx, q.broker_id)?;
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(50);
    if page == 0 {
        return Err(Error::invalid("validation_error", FieldError::query("page", "page starts at 1", "value_error")));
    }
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid(
            "validation_error",
            FieldError::query("limit", "limit must be between 1 and 100", "value_error"),
        ));
    }
    let mut v: Vec<sea_orm::Value> = Vec::new();
    let mut cond = String::from("TRUE");
    cond.push_str(&broker_cond("c", broker, &mut v));
    if let Some(p) = q.provider.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        v.push(p.to_ascii_lowercase().into());
        cond.push_str(&format!(" AND c.provider = ${}", v.len()));
    }
    if let Some(l) = q.lead_id {
        v.push(l.into());
        cond.push_str(&format!(" AND c.lead_id = ${}", v.len()));
    }
    if let Some(f) = q.from {
        v.push(f.into());
        cond.push_str(&format!(" AND c.created_at >= ${}", v.len()));
    }
    if let Some(t) = q.to {
        v.push(t.into());
        cond.push_str(&format!(" AND c.created_at <= ${}", v.len()));
    }
    match q.status.as_deref().map(str::trim) {
        None | Some("") => {}
        Some("success") => cond.push_str(" AND c.error IS NULL"),
        Some("error") => cond.push_str(" AND c.error IS NOT NULL"),
        Some(_) => {
            return Err(Error::invalid(
                "validation_error",
                FieldError::query("status", "status must be `success` or `error`", "value_error"),
            ));
        }
    }
    let total: i64 = infra
        .db
        .query_one_raw(stmt(&format!("SELECT count(*) FROM llm_calls c WHERE {cond}"), v.clone()))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0);
    v.push((limit as i64).into());
    v.push((((page - 1).saturating_mul(limit)).min(i64::MAX as u64) as i64).into());
    let rows = infra
        .db
        .query_all_raw(stmt(
            &format!(
                "SELECT {CALL_COLUMNS} FROM llm_calls c WHERE {cond} ORDER BY c.created_at DESC, c.id DESC \
                 LIMIT ${} OFFSET ${}",
                v.len() - 1,
                v.len()
            ),
            v,
        ))
        .await?;
    let items = rows.iter().map(decode_call).collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((items, total.max(0) as u64, page, limit))
}

/// The CSV export's header, in the reference's column order.
pub const CSV_HEADER: &str = "id,broker_id,lead_id,provider,model,call_type,used_fallback,input_tokens,output_tokens,\
estimated_cost_usd,latency_ms,error,created_at\n";

/// A CSV cell: quoted when needed, and a leading `=`, `+`, `-` or `@` neutralised with `'` so a
/// spreadsheet never runs it as a formula.
pub fn csv_cell(raw: &str) -> String {
    let s = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{raw}") } else { raw.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

fn csv_line(c: &Call) -> String {
    let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        c.id,
        opt(c.broker_id),
        opt(c.lead_id),
        csv_cell(&c.provider),
        csv_cell(&c.model),
        csv_cell(&c.call_type),
        u8::from(c.used_fallback),
        c.input_tokens,
        c.output_tokens,
        c.estimated_cost_usd.map(|x| x.to_string()).unwrap_or_default(),
        c.latency_ms,
        csv_cell(c.error.as_deref().unwrap_or("")),
        c.created_at.to_rfc3339(),
    )
}

/// Rows per page of the export (keyset pagination by id, so memory stays flat).
const EXPORT_PAGE: i64 = 2000;

/// The window's calls as CSV, oldest first, produced page by page while the client reads.
/// Returns the file name and the byte stream.
pub fn export(
    infra: &Infra,
    ctx: &Ctx,
    broker: Option<i64>,
    period: Period,
    now: DateTime<Utc>,
) -> Result<(String, impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static)> {
    let broker = scope(ctx, broker)?;
    let (from, to) = period.window(now);
    let name = match broker {
        Some(b) => format!("llm_costs_broker{b}_{}.csv", period.as_str()),
        None => format!("llm_costs_all_{}.csv", period.as_str()),
    };
    let db = infra.db.clone();
    // State: (after id, header sent, finished).
    let pages = futures_util::stream::unfold((0i64, false, false), move |(after, header_sent, done)| {
        let db = db.clone();
        async move {
            if done {
                return None;
            }
            if !header_sent {
                return Some((Ok(CSV_HEADER.as_bytes().to_vec()), (after, true, false)));
            }
            let mut v: Vec<sea_orm::Value> = vec![from.into(), to.into(), after.into()];
            let cond = broker_cond("c", broker, &mut v);
            v.push(EXPORT_PAGE.into());
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM llm_calls c WHERE c.created_at >= $1 AND c.created_at <= $2 \
                 AND c.id > $3{cond} ORDER BY c.id LIMIT ${}",
                v.len()
            );
            match db.query_all_raw(stmt(&sql, v)).await {
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), (after, true, true))),
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let last_page = (rows.len() as i64) < EXPORT_PAGE;
                    let mut buf = String::with_capacity(rows.len() * 120);
                    let mut last = after;
                    for r in &rows {
                        match decode_call(r) {
                            Ok(c) => {
                                last = c.id;
                                buf.push_str(&csv_line(&c));
                            }
                            Err(e) => return Some((Err(std::io::Error::other(e.to_string())), (after, true, true))),
                        }
                    }
                    Some((Ok(buf.into_bytes()), (last, true, last_page)))
                }
            }
        }
    });
    Ok((name, pages.boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_reject_the_rest() {
        assert_eq!(Period::parse(None).unwrap(), Period::Month);
        assert_eq!(Period::parse(Some("quarter")).unwrap(), Period::Quarter);
        assert!(Period::parse(Some("year")).is_err());
        let now = "2026-12-01T15:30:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(Period::Today.window(now).0.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(Period::Week.window(now).0.to_rfc3339(), "2026-11-24T15:30:00+00:00");
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_cell("gemini"), "gemini");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1+1"), "'-1+1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }

    #[test]
    fn only_admins_and_superadmins_read_costs() {
        let admin = Ctx::user(1, Some(7), Role::Admin);
        assert_eq!(scope(&admin, None).unwrap(), Some(7));
        assert!(matches!(scope(&admin, Some(8)), Err(Error::Forbidden(_))));
        assert!(scope(&Ctx::user(2, Some(7), Role::Agent), None).is_err());
        let root = Ctx::user(3, None, Role::Superadmin);
        assert_eq!(scope(&root, None).unwrap(), None);
        assert_eq!(scope(&root, Some(9)).unwrap(), Some(9));
    }
}
