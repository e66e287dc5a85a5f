//! Tenant-scoped appointment queries. Every read of appointments goes through [`scoped`], built from
//! the caller's `Ctx`: SUPERADMIN reaches every broker (optionally one), ADMIN its broker, AGENT the
//! appointments it takes or whose lead is assigned to it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, RuntimeErr, Select, Statement,
};

use super::availability::Busy;
use super::model::{Appointment, AppointmentStatus};
use crate::ctx::{Ctx, LeadScope, Role};
use crate::entities::{appointment_blocks, appointments, leads, users};
use crate::error::{Error, Result};

/// The exclusion constraint that keeps one agent's active appointments from overlapping.
pub const NO_OVERLAP: &str = "appointments_agent_no_overlap";

/// Whether `err` is the no-overlap constraint refusing a row: another request booked that time first.
pub fn is_slot_conflict(err: &DbErr) -> bool {
    let db_err = match err {
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => e.as_database_error(),
        _ => None,
    };
    db_err.is_some_and(|e| e.code().as_deref() == Some("23P01") && e.constraint() == Some(NO_OVERLAP))
}

/// 409 `slot_unavailable`.
pub fn slot_unavailable() -> Error {
    Error::conflict("slot_unavailable", "The agent already has an appointment or a block at that time")
}

/// `appointments` restricted to what the caller may see (`broker_filter` narrows SUPERADMIN).
pub fn scoped(ctx: &Ctx, broker_filter: Option<i64>) -> Result<Select<appointments::Entity>> {
    let q = appointments::Entity::find();
    Ok(match ctx.lead_scope(broker_filter)? {
        LeadScope::All { broker_id: None } => q,
        LeadScope::All { broker_id: Some(b) } | LeadScope::Broker(b) => q.filter(appointments::Column::BrokerId.eq(b)),
        LeadScope::Assigned { broker_id, user_id } => {
            let assigned = Query::select()
                .column(leads::Column::Id)
                .from(leads::Entity)
                .and_where(leads::Column::BrokerId.eq(broker_id))
                .and_where(leads::Column::AssignedTo.eq(user_id))
                .to_owned();
            q.filter(appointments::Column::BrokerId.eq(broker_id)).filter(
                Condition::any()
                    .add(appointments::Column::AgentId.eq(user_id))
                    .add(appointments::Column::LeadId.in_subquery(assigned)),
            )
        }
    })
}

/// The appointment if the caller may see it, else 404.
pub async fn find_visible(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<appointments::Model> {
    scoped(ctx, None)?.filter(appointments::Column::Id.eq(id)).one(db).await?.ok_or(Error::NotFound("Appointment"))
}

/// [`find_visible`], locking the row for the rest of the transaction.
pub async fn lock_visible(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<appointments::Model> {
    scoped(ctx, None)?
        .filter(appointments::Column::Id.eq(id))
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or(Error::NotFound("Appointment"))
}

/// Validated list filters.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub lead_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub status: Option<AppointmentStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub broker_id: Option<i64>,
    pub skip: u64,
    pub limit: u64,
}

/// One page, latest start first, and the number matching.
pub async fn list(db: &impl ConnectionTrait, ctx: &Ctx, f: &Filter) -> Result<(Vec<appointments::Model>, u64)> {
    let mut cond = Condition::all();
    if let Some(l) = f.lead_id {
        cond = cond.add(appointments::Column::LeadId.eq(l));
    }
    if let Some(a) = f.agent_id {
        cond = cond.add(appointments::Column::AgentId.eq(a));
    }
    if let Some(s) = f.status {
        cond = cond.add(appointments::Column::Status.eq(s.as_str()));
    }
    if let Some(from) = f.from {
        cond = cond.add(appointments::Column::StartTime.gte(from));
    }
    if let Some(to) = f.to {
        cond = cond.add(appointments::Column::StartTime.lte(to));
    }
    let q = scoped(ctx, f.broker_id)?.filter(cond);
    let page = q
        .clone()
        .order_by_desc(appointments::Column::StartTime)
        .order_by_desc(appointments::Column::Id)
        .offset(crate::db::offset(f.skip))
        .limit(f.limit);
    let (rows, total) = tokio::try_join!(page.all(db), q.count(db))?;
    Ok((rows, total))
}

/// A lead's name, phone and email.
type Contact = (Option<String>, Option<String>, Option<String>);

/// The rows with their lead's name, phone and email and their agent's name (two queries in all).
pub async fn with_names(db: &impl ConnectionTrait, rows: Vec<appointments::Model>) -> Result<Vec<Appointment>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let lead_ids: Vec<i64> = rows.iter().map(|r| r.lead_id).collect();
    let agent_ids: Vec<i64> = rows.iter().filter_map(|r| r.agent_id).collect();
    let leads: HashMap<i64, Contact> = leads::Entity::find()
        .select_only()
        .columns([leads::Column::Id, leads::Column::Name, leads::Column::Phone, leads::Column::Email])
        .filter(leads::Column::Id.is_in(lead_ids))
        .into_tuple::<(i64, Option<String>, Option<String>, Option<String>)>()
        .all(db)
        .await?
        .into_iter()
        .map(|(id, name, phone, email)| (id, (name, phone, email)))
        .collect();
    let agents: HashMap<i64, String> = if agent_ids.is_empty() {
        HashMap::new()
    } else {
        users::Entity::find()
            .select_only()
            .columns([users::Column::Id, users::Column::Name])
            .filter(users::Column::Id.is_in(agent_ids))
            .into_tuple::<(i64, String)>()
            .all(db)
            .await?
            .into_iter()
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let (lead_name, lead_phone, lead_email) = leads.get(&row.lead_id).cloned().unwrap_or_default();
            let agent_name = row.agent_id.and_then(|a| agents.get(&a).cloned());
            Appointment { row, lead_name, lead_phone, lead_email, agent_name }
        })
        .collect())
}

/// An active ADMIN or AGENT of `broker_id`, else 404 `Agent`.
pub async fn active_agent(db: &impl ConnectionTrait, broker_id: i64, user_id: i64) -> Result<users::Model> {
    users::Entity::find_by_id(user_id)
        .filter(users::Column::BrokerId.eq(broker_id))
        .filter(users::Column::IsActive.eq(true))
        .filter(users::Column::Role.is_in([Role::Admin.as_str(), Role::Agent.as_str()]))
        .one(db)
        .await?
        .ok_or(Error::NotFound("Agent"))
}

/// Who takes a broker's appointments when none is named: its active AGENT users, or, for a broker
/// without any (a one-person brokerage), its active ADMINs. Lowest id first.
pub async fn agent_pool(db: &impl ConnectionTrait, broker_id: i64) -> Result<Vec<users::Model>> {
    let of_role = |role: Role| {
        users::Entity::find()
            .filter(users::Column::BrokerId.eq(broker_id))
            .filter(users::Column::IsActive.eq(true))
            .filter(users::Column::Role.eq(role.as_str()))
            .order_by_asc(users::Column::Id)
    };
    let agents = of_role(Role::Agent).all(db).await?;
    if !agents.is_empty() {
        return Ok(agents);
    }
    Ok(of_role(Role::Admin).all(db).await?)
}

/// Scheduled/confirmed appointments starting after `now`, per agent.
pub async fn upcoming_counts(
    db: &impl ConnectionTrait,
    agent_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<HashMap<i64, i64>> {
    let rows: Vec<(i64, i64)> = appointments::Entity::find()
        .select_only()
        .column(appointments::Column::AgentId)
        .column_as(appointments::Column::Id.count(), "n")
        .filter(appointments::Column::AgentId.is_in(agent_ids.to_vec()))
        .filter(appointments::Column::Status.is_in(AppointmentStatus::ACTIVE))
        .filter(appointments::Column::StartTime.gt(now))
        .group_by(appointments::Column::AgentId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Whether `agent_id` has an active appointment (other than `except`) or a block (its own or the
/// broker's) overlapping `[start, end)`.
pub async fn agent_is_busy(
    db: &impl ConnectionTrait,
    broker_id: i64,
    agent_id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    except: Option<i64>,
) -> Result<bool> {
    let mut appointment = appointments::Entity::find()
        .filter(appointments::Column::AgentId.eq(agent_id))
        .filter(appointments::Column::Status.is_in(AppointmentStatus::ACTIVE))
        .filter(appointments::Column::StartTime.lt(end))
        .filter(appointments::Column::EndTime.gt(start));
    if let Some(id) = except {
        appointment = appointment.filter(appointments::Column::Id.ne(id));
    }
    let block = appointment_blocks::Entity::find()
        .filter(appointment_blocks::Column::BrokerId.eq(broker_id))
        .filter(
            Condition::any()
                .add(appointment_blocks::Column::AgentId.is_null())
                .add(appointment_blocks::Column::AgentId.eq(agent_id)),
        )
        .filter(appointment_blocks::Column::StartTime.lt(end))
        .filter(appointment_blocks::Column::EndTime.gt(start));
    let (appointments, blocks) = tokio::try_join!(appointment.count(db), block.count(db))?;
    Ok(appointments + blocks > 0)
}

/// Who may take the slots asked for: a named agent, or the broker's pool ([`agent_pool`]).
#[derive(Clone, Copy, Debug)]
pub enum AgentChoice {
    /// This user, which must be an active ADMIN or AGENT of the broker.
    Named(i64),
    /// This user if it is one, else the pool (a lead's assigned agent who has since left).
    NamedOr(i64),
    /// The broker's pool.
    Pool,
}

/// Everything free slots are computed from, read in one statement: who may take them, the broker's
/// active availability rows, the busy appointments and blocks overlapping `[from, to)`, and whether
/// any Google Calendar (the broker's or an agent's) is connected.
#[derive(Debug)]
pub struct SlotInputs {
    /// The named user, when it is an active ADMIN or AGENT of the broker.
    pub named: Option<i64>,
    /// The pool (lowest id first) when it may be needed: no agent named, or a [`AgentChoice::NamedOr`]
    /// that is not one; else empty.
    pub pool: Vec<i64>,
    pub windows: Vec<WindowRow>,
    pub busy: Vec<Busy>,
    pub calendars_connected: bool,
}

/// An `availability_slots` row, as [`slot_inputs`] reads it.
#[derive(Debug, serde::Deserialize)]
pub struct WindowRow {
    pub day_of_week: i16,
    pub start_time: chrono::NaiveTime,
    pub end_time: chrono::NaiveTime,
    pub slot_duration_minutes: i32,
    pub valid_from: chrono::NaiveDate,
    pub valid_until: Option<chrono::NaiveDate>,
    pub agent_id: Option<i64>,
    pub appointment_type: Option<String>,
}

const SLOT_INPUTS_SQL: &str = r#"
WITH pool AS (
    SELECT id FROM users
    WHERE broker_id = $1 AND is_active
      AND role = CASE WHEN EXISTS (SELECT 1 FROM users WHERE broker_id = $1 AND is_active AND role = 'AGENT')
                      THEN 'AGENT' ELSE 'ADMIN' END
), named AS (
    SELECT id FROM users WHERE id = $2 AND broker_id = $1 AND is_active AND role IN ('ADMIN', 'AGENT')
), busy AS (
    SELECT start_time, end_time, agent_id FROM appointments
    WHERE broker_id = $1 AND agent_id IS NOT NULL AND status IN ('scheduled', 'confirmed')
      AND start_time < $4 AND end_time > $3
    UNION ALL
    SELECT start_time, end_time, agent_id FROM appointment_blocks
    WHERE broker_id = $1 AND start_time < $4 AND end_time > $3
)
SELECT
    (SELECT id FROM named) AS named,
    CASE WHEN $2::int8 IS NULL OR $5 AND NOT EXISTS (SELECT 1 FROM named)
         THEN (SELECT coalesce(json_agg(id ORDER BY id), '[]') FROM pool)::text ELSE '[]' END AS pool,
    (SELECT coalesce(json_agg(w), '[]') FROM (
        SELECT day_of_week, start_time, end_time, slot_duration_minutes, valid_from, valid_until, agent_id,
               appointment_type
        FROM availability_slots WHERE broker_id = $1 AND is_active ORDER BY id) w)::text AS windows,
    (SELECT coalesce(json_agg(json_build_array(
                (extract(epoch FROM start_time) * 1000000)::int8,
                (extract(epoch FROM end_time) * 1000000)::int8,
                agent_id)), '[]')
     FROM busy)::text AS busy,
    EXISTS (SELECT 1 FROM broker_calendar_connections WHERE broker_id = $1)
        OR EXISTS (SELECT 1 FROM agent_calendar_connections WHERE broker_id = $1) AS calendars
"#;

/// [`SlotInputs`] of `broker_id` for `[from, to)`, in one round trip on the caller's connection.
pub async fn slot_inputs(
    db: &impl ConnectionTrait,
    broker_id: i64,
    choice: AgentChoice,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<SlotInputs> {
    let (named, fallback) = match choice {
        AgentChoice::Named(id) => (Some(id), false),
        AgentChoice::NamedOr(id) => (Some(id), true),
        AgentChoice::Pool => (None, false),
    };
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        SLOT_INPUTS_SQL,
        [broker_id.into(), named.into(), from.into(), to.into(), fallback.into()],
    );
    let row = db.query_one_raw(stmt).await?.ok_or_else(|| Error::internal(anyhow::anyhow!("slot inputs: no row")))?;
    fn decode<T: serde::de::DeserializeOwned>(row: &sea_orm::QueryResult, col: &str) -> Result<T> {
        let text: String = row.try_get("", col)?;
        serde_json::from_str(&text).map_err(|e| Error::internal(anyhow::anyhow!("slot inputs `{col}`: {e}")))
    }
    let raw_busy: Vec<(i64, i64, Option<i64>)> = decode(&row, "busy")?;
    let instant = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC);
    Ok(SlotInputs {
        named: row.try_get("", "named")?,
        pool: decode(&row, "pool")?,
        windows: decode(&row, "windows")?,
        busy: raw_busy
            .into_iter()
            .map(|(start, end, agent_id)| Busy { start: instant(start), end: instant(end), agent_id })
            .collect(),
        calendars_connected: row.try_get("", "calendars")?,
    })
}

/// The broker's active appointments already mirrored to its own (shared) Google Calendar in
/// `[from, to)`; events in an agent's own calendar are not in the broker's.
pub async fn synced_intervals(
    db: &impl ConnectionTrait,
    broker_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    Ok(appointments::Entity::find()
        .select_only()
        .columns([appointments::Column::StartTime, appointments::Column::EndTime])
        .filter(appointments::Column::BrokerId.eq(broker_id))
        .filter(appointments::Column::GoogleEventId.is_not_null())
        .filter(appointments::Column::GoogleEventUserId.is_null())
        .filter(appointments::Column::Status.is_in(AppointmentStatus::ACTIVE))
        .filter(appointments::Column::StartTime.lt(to))
        .filter(appointments::Column::EndTime.gt(from))
        .into_tuple()
        .all(db)
        .await?)
}
