//! `/api/v1/admin/costs`: what the LLM calls cost (reference §3.10, SPEC §12). ADMIN reads its own
//! broker; SUPERADMIN any broker (`broker_id`) or all of them; AGENT is 403.

use chrono::{DateTime, NaiveDate, Utc};
use poem::Body;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use shared::costs::{self, BrokerCost, Call, CallsQuery, Day, Outlier, Period, Summary};
use std::collections::BTreeMap;

use super::ApiTags;
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

pub struct CostsApi;

#[derive(Object)]
pub struct SummaryOut {
    /// `null`: every broker (SUPERADMIN without `broker_id`).
    pub broker_id: Option<i64>,
    pub period: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub total_cost_usd: f64,
    pub total_calls: i64,
    pub error_calls: i64,
    pub fallback_calls: i64,
    /// 0–1
    pub fallback_rate: f64,
    pub avg_latency_ms: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_by_provider: BTreeMap<String, f64>,
    pub cost_by_call_type: BTreeMap<String, f64>,
    /// Qualified (`calificado`) leads among those the window's calls were about.
    pub qualified_leads: i64,
    pub cost_per_qualified_lead_usd: Option<f64>,
    /// Appointments booked in the window (not cancelled).
    pub booked_appointments: i64,
    pub cost_per_booked_appointment_usd: Option<f64>,
    /// Spend so far today (UTC).
    pub daily_cost_usd: f64,
    /// Today's spend reached `daily_alert_threshold_usd` (`DAILY_COST_ALERT_USD`).
    pub daily_alert: bool,
    pub daily_alert_threshold_usd: f64,
}

impl From<Summary> for SummaryOut {
    fn from(s: Summary) -> Self {
        SummaryOut {
            broker_id: s.broker_id,
            period: s.period.into(),
            from: s.from,
            to: s.to,
            total_cost_usd: s.total_cost_usd,
            total_calls: s.total_calls,
            error_calls: s.error_calls,
            fallback_calls: s.fallback_calls,
            fallback_rate: s.fallback_rate,
            avg_latency_ms: s.avg_latency_ms,
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            cost_by_provider: s.cost_by_provider,
            cost_by_call_type: s.cost_by_call_type,
            qualified_leads: s.qualified_leads,
            cost_per_qualified_lead_usd: s.cost_per_qualified_lead_usd,
            booked_appointments: s.booked_appointments,
            cost_per_booked_appointment_usd: s.cost_per_booked_appointment_usd,
            daily_cost_usd: s.daily_cost_usd,
            daily_alert: s.daily_alert,
            daily_alert_threshold_usd: s.daily_alert_threshold_usd,
        }
    }
}

#[derive(Object)]
pub struct DayOut {
    /// `YYYY-MM-DD` (UTC)
    pub date: NaiveDate,
    pub cost_usd: f64,
    pub calls: i64,
}

impl From<Day> for DayOut {
    fn from(d: Day) -> Self {
        DayOut { date: d.date, cost_usd: d.cost_usd, calls: d.calls }
    }
}

#[derive(Object)]
pub struct DailyOut {
    pub broker_id: Option<i64>,
    pub period: String,
    /// One entry per UTC day of the window, zero-filled.
    pub daily: Vec<DayOut>,
}

#[derive(Object)]
pub struct OutlierOut {
    pub lead_id: i64,
    pub total_cost_usd: f64,
    pub call_count: i64,
    pub avg_latency_ms: f64,
    /// Standard deviations above the mean spend per lead.
    pub z_score: f64,
    /// `z_score` ≥ 3
    pub is_outlier: bool,
}

impl From<Outlier> for OutlierOut {
    fn from(o: Outlier) -> Self {
        OutlierOut {
            lead_id: o.lead_id,
            total_cost_usd: o.total_cost_usd,
            call_count: o.call_count,
            avg_latency_ms: o.avg_latency_ms,
            z_score: o.z_score,
            is_outlier: o.is_outlier,
        }
    }
}

#[derive(Object)]
pub struct OutliersOut {
    pub broker_id: Option<i64>,
    pub period: String,
    pub mean_cost_usd: f64,
    pub stddev_cost_usd: f64,
    pub leads_with_cost: i64,
    /// The costliest leads, descending.
    pub outliers: Vec<OutlierOut>,
}

#[derive(Object)]
pub struct BrokerCostOut {
    pub broker_id: i64,
    pub broker_name: String,
    pub total_cost_usd: f64,
    pub total_calls: i64,
    pub leads_qualified: i64,
    pub cost_per_lead: Option<f64>,
}

impl From<BrokerCost> for BrokerCostOut {
    fn from(b: BrokerCost) -> Self {
        BrokerCostOut {
            broker_id: b.broker_id,
            broker_name: b.broker_name,
            total_cost_usd: b.total_cost_usd,
            total_calls: b.total_calls,
            leads_qualified: b.leads_qualified,
            cost_per_lead: b.cost_per_lead,
        }
    }
}

#[derive(Object)]
pub struct ByBrokerOut {
    pub period: String,
    pub brokers: Vec<BrokerCostOut>,
}

#[derive(Object)]
pub struct CallOut {
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

impl From<Call> for CallOut {
    fn from(c: Call) -> Self {
        CallOut {
            id: c.id,
            broker_id: c.broker_id,
            lead_id: c.lead_id,
            provider: c.provider,
            model: c.model,
            call_type: c.call_type,
            used_fallback: c.used_fallback,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            estimated_cost_usd: c.estimated_cost_usd,
            latency_ms: c.latency_ms,
            error: c.error,
            prompt_version_id: c.prompt_version_id,
            created_at: c.created_at,
        }
    }
}

#[derive(Object)]
pub struct CallsPage {
    pub items: Vec<CallOut>,
    pub total: u64,
    pub page: u64,
    pub limit: u64,
}

#[derive(ApiResponse)]
pub enum CsvFile {
    /// The window's calls, oldest first, streamed
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Ok(Binary<Body>, #[oai(header = "Content-Disposition")] String),
}

#[OpenApi(tag = "ApiTags::Costs")]
impl CostsApi {
    /// Spend, calls and cost per result over a period
    ///
    /// `period` is `today`, `week` (7 days), `month` (30, the default) or `quarter` (90).
    #[oai(path = "/api/v1/admin/costs/summary", method = "get", operation_id = "costs_summary")]
    async fn summary(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        period: Query<Option<String>>,
        /// SUPERADMIN: one broker (all when omitted); ADMIN: its own only
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<SummaryOut>> {
        let p = Period::parse(period.0.as_deref())?;
        Ok(Json(costs::summary(&state.infra, &auth, broker_id.0, p, Utc::now()).await?.into()))
    }

    /// Spend per UTC day, zero-filled
    #[oai(path = "/api/v1/admin/costs/daily", method = "get", operation_id = "costs_daily")]
    async fn daily(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        period: Query<Option<String>>,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<DailyOut>> {
        let p = Period::parse(period.0.as_deref())?;
        let broker = costs::scope(&auth, broker_id.0)?;
        let days = costs::daily(&state.infra, &auth, broker_id.0, p, Utc::now()).await?;
        Ok(Json(DailyOut {
            broker_id: broker,
            period: p.as_str().into(),
            daily: days.into_iter().map(Into::into).collect(),
        }))
    }

    /// The costliest leads, with z-scores
    ///
    /// Every lead's spend in the window is compared with the mean over all leads; `is_outlier`
    /// marks a z-score of 3 or more.
    #[oai(path = "/api/v1/admin/costs/outliers", method = "get", operation_id = "costs_outliers")]
    async fn outliers(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        period: Query<Option<String>>,
        broker_id: Query<Option<i64>>,
        /// 1–100, default 10
        limit: Query<Option<u64>>,
    ) -> ApiResult<Json<OutliersOut>> {
        let p = Period::parse(period.0.as_deref())?;
        let broker = costs::scope(&auth, broker_id.0)?;
        let o = costs::outliers(&state.infra, &auth, broker_id.0, p, limit.0.unwrap_or(10), Utc::now()).await?;
        Ok(Json(OutliersOut {
            broker_id: broker,
            period: p.as_str().into(),
            mean_cost_usd: o.mean_cost_usd,
            stddev_cost_usd: o.stddev_cost_usd,
            leads_with_cost: o.leads_with_cost,
            outliers: o.outliers.into_iter().map(Into::into).collect(),
        }))
    }

    /// Every call of the period as CSV
    ///
    /// Streamed page by page; cells that a spreadsheet would run as formulas are neutralised.
    #[oai(path = "/api/v1/admin/costs/export", method = "get", operation_id = "costs_export")]
    async fn export(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        period: Query<Option<String>>,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<CsvFile> {
        let p = Period::parse(period.0.as_deref())?;
        let (name, stream) = costs::export(&state.infra, &auth, broker_id.0, p, Utc::now())?;
        Ok(CsvFile::Ok(Binary(Body::from_bytes_stream(stream)), format!("attachment; filename={name}")))
    }

    /// Spend per broker (SUPERADMIN)
    #[oai(path = "/api/v1/admin/costs/by-broker", method = "get", operation_id = "costs_by_broker")]
    async fn by_broker(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        period: Query<Option<String>>,
    ) -> ApiResult<Json<ByBrokerOut>> {
        let p = Period::parse(period.0.as_deref())?;
        let brokers = costs::by_broker(&state.infra, &auth, p, Utc::now()).await?;
        Ok(Json(ByBrokerOut { period: p.as_str().into(), brokers: brokers.into_iter().map(Into::into).collect() }))
    }

    /// The ledger: one row per LLM or embedding call, newest first
    #[oai(path = "/api/v1/admin/costs/calls", method = "get", operation_id = "costs_calls")]
    #[allow(clippy::too_many_arguments)]
    async fn calls(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        page: Query<Option<u64>>,
        /// 1–100, default 50
        limit: Query<Option<u64>>,
        provider: Query<Option<String>>,
        broker_id: Query<Option<i64>>,
        lead_id: Query<Option<i64>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        /// `success` or `error`
        status: Query<Option<String>>,
    ) -> ApiResult<Json<CallsPage>> {
        let q = CallsQuery {
            page: page.0,
            limit: limit.0,
            provider: provider.0,
            broker_id: broker_id.0,
            lead_id: lead_id.0,
            from: from.0,
            to: to.0,
            status: status.0,
        };
        let (items, total, page, limit) = costs::calls(&state.infra, &auth, &q).await?;
        Ok(Json(CallsPage { items: items.into_iter().map(Into::into).collect(), total, page, limit }))
    }
}
