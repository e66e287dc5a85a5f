//! The broker's schedule (`/api/broker/calendar/availability`, `/blocks`): weekly availability
//! windows and blocked time. Any user of a broker reads them; ADMIN writes its own broker's,
//! SUPERADMIN any broker's (naming it). Changes are audited.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde_json::json;

use super::model::AppointmentType;
use super::repo;
use crate::ctx::Ctx;
use crate::entities::{appointment_blocks as blocks, availability_slots as slots};
use crate::error::{Error, Result};
use crate::leads::model::TZ;
use crate::text::clean_text;
use crate::{Infra, audit};

/// Parses `HH:MM` (or `HH:MM:SS`), else a 422 on `field`.
pub fn parse_time(raw: &str, field: &str) -> Result<NaiveTime> {
    let raw = raw.trim();
    NaiveTime::parse_from_str(raw, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(raw, "%H:%M:%S"))
        .map_err(|_| Error::invalid_body(field, "expected a time as HH:MM (00:00–23:59)"))
}

/// Parses `YYYY-MM-DD`, else a 422 on `field`.
pub fn parse_date(raw: &str, field: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| Error::invalid_body(field, "expected a date as YYYY-MM-DD"))
}

fn clean_optional(raw: Option<String>, field: &str, max: usize) -> Result<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let text = clean_text(&raw);
    if text.chars().count() > max {
        return Err(Error::invalid_body(field, format!("must have at most {max} characters")));
    }
    Ok(Some(text).filter(|t| !t.is_empty()))
}

/// A window as sent (times and dates still text, checked here).
#[derive(Clone, Debug, Default)]
pub struct WindowInput {
    pub day_of_week: Option<i64>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub slot_duration_minutes: Option<i64>,
    pub valid_from: Option<String>,
    /// `Some(None)` clears it (open-ended).
    pub valid_until: Option<Option<String>>,
    pub appointment_type: Option<Option<String>>,
    pub agent_id: Option<Option<i64>>,
    pub is_active: Option<bool>,
    pub notes: Option<Option<String>>,
}

fn value<V: Into<sea_orm::Value>>(v: &sea_orm::ActiveValue<V>) -> Option<&V> {
    match v {
        sea_orm::ActiveValue::Set(v) | sea_orm::ActiveValue::Unchanged(v) => Some(v),
        sea_orm::ActiveValue::NotSet => None,
    }
}

fn check_window(m: &slots::ActiveModel) -> Result<()> {
    if let (Some(start), Some(end)) = (value(&m.start_time), value(&m.end_time))
        && end <= start
    {
        return Err(Error::invalid_body("end_time", "end_time must be later than start_time"));
    }
    if let (Some(from), Some(Some(until))) = (value(&m.valid_from), value(&m.valid_until))
        && until < from
    {
        return Err(Error::invalid_body("valid_until", "valid_until must not be before valid_from"));
    }
    Ok(())
}

/// Applies the given fields of `input` to `m` (all of them on create).
async fn apply_window(
    db: &impl ConnectionTrait,
    broker_id: i64,
    m: &mut slots::ActiveModel,
    input: WindowInput,
) -> Result<()> {
    if let Some(d) = input.day_of_week {
        let d = i16::try_from(d).ok().filter(|d| (0..=6).contains(d));
        m.day_of_week =
            Set(d.ok_or_else(|| Error::invalid_body("day_of_week", "day_of_week must be 0 (Monday) to 6 (Sunday)"))?);
    }
    if let Some(t) = input.start_time {
        m.start_time = Set(parse_time(&t, "start_time")?);
    }
    if let Some(t) = input.end_time {
        m.end_time = Set(parse_time(&t, "end_time")?);
    }
    if let Some(n) = input.slot_duration_minutes {
        let n = i32::try_from(n).ok().filter(|n| (15..=480).contains(n));
        m.slot_duration_minutes =
            Set(n.ok_or_else(|| {
                Error::invalid_body("slot_duration_minutes", "slot_duration_minutes must be 15 to 480")
            })?);
    }
    if let Some(d) = input.valid_from {
        m.valid_from = Set(parse_date(&d, "valid_from")?);
    }
    if let Some(d) = input.valid_until {
        m.valid_until = Set(d.map(|d| parse_date(&d, "valid_until")).transpose()?);
    }
    if let Some(t) = input.appointment_type {
        let t = t.map(|t| {
            AppointmentType::parse_field(&t, crate::error::FieldError::body("appointment_type", "", "value_error"))
        });
        m.appointment_type = Set(t.transpose()?.map(|t| t.as_str().to_string()));
    }
    if let Some(a) = input.agent_id {
        m.agent_id = Set(match a {
            Some(a) => Some(repo::active_agent(db, broker_id, a).await?.id),
            None => None,
        });
    }
    if let Some(active) = input.is_active {
        m.is_active = Set(active);
    }
    if let Some(n) = input.notes {
        m.notes = Set(clean_optional(n, "notes", 2000)?);
    }
    check_window(m)
}

pub async fn list_windows(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Vec<slots::Model>> {
    let broker_id = ctx.target_broker(broker_id)?;
    Ok(slots::Entity::find()
        .filter(slots::Column::BrokerId.eq(broker_id))
        .order_by_asc(slots::Column::DayOfWeek)
        .order_by_asc(slots::Column::StartTime)
        .order_by_asc(slots::Column::Id)
        .all(&infra.db)
        .await?)
}

/// A new window. Required: `day_of_week`, `start_time`, `end_time`; `valid_from` defaults to today
/// (America/Santiago), `slot_duration_minutes` to 60.
pub async fn create_window(
    infra: &Infra,
    ctx: &Ctx,
    broker_id: Option<i64>,
    input: WindowInput,
) -> Result<slots::Model> {
    ctx.require_admin()?;
    let broker_id = ctx.target_broker(broker_id)?;
    for (field, given) in [
        ("day_of_week", input.day_of_week.is_some()),
        ("start_time", input.start_time.is_some()),
        ("end_time", input.end_time.is_some()),
    ] {
        if !given {
            return Err(Error::invalid(
                "validation_error",
                crate::error::FieldError::body(field, "Field required", "missing"),
            ));
        }
    }
    let mut m = slots::ActiveModel {
        broker_id: Set(broker_id),
        valid_from: Set(Utc::now().with_timezone(&TZ).date_naive()),
        valid_until: Set(None),
        slot_duration_minutes: Set(60),
        max_appointments_per_slot: Set(1),
        is_active: Set(true),
        agent_id: Set(None),
        appointment_type: Set(None),
        notes: Set(None),
        ..Default::default()
    };
    apply_window(&infra.db, broker_id, &mut m, input).await?;
    let row = m.insert(&infra.db).await?;
    audit_change(infra, ctx, "availability_create", "availability_slot", row.id, broker_id).await?;
    Ok(row)
}

async fn find_window(infra: &Infra, ctx: &Ctx, id: i64) -> Result<slots::Model> {
    ctx.require_admin()?;
    let mut q = slots::Entity::find_by_id(id);
    if !ctx.is_superadmin() {
        q = q.filter(slots::Column::BrokerId.eq(ctx.own_broker()?));
    }
    q.one(&infra.db).await?.ok_or(Error::NotFound("Availability slot"))
}

pub async fn update_window(infra: &Infra, ctx: &Ctx, id: i64, input: WindowInput) -> Result<slots::Model> {
    let row = find_window(infra, ctx, id).await?;
    let broker_id = row.broker_id;
    let mut m = row.into_active_model();
    apply_window(&infra.db, broker_id, &mut m, input).await?;
    m.updated_at = Set(Utc::now());
    let row = m.update(&infra.db).await?;
    audit_change(infra, ctx, "availability_update", "availability_slot", row.id, broker_id).await?;
    Ok(row)
}

pub async fn delete_window(infra: &Infra, ctx: &Ctx, id: i64) -> Result<()> {
    let row = find_window(infra, ctx, id).await?;
    slots::Entity::delete_by_id(row.id).exec(&infra.db).await?;
    audit_change(infra, ctx, "availability_delete", "availability_slot", row.id, row.broker_id).await
}

/// A block as sent; times are RFC 3339 or Santiago wall clock without an offset.
#[derive(Clone, Debug, Default)]
pub struct BlockInput {
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub reason: Option<String>,
    pub notes: Option<String>,
    /// `None`: the whole broker.
    pub agent_id: Option<i64>,
}

pub async fn list_blocks(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Vec<blocks::Model>> {
    let broker_id = ctx.target_broker(broker_id)?;
    Ok(blocks::Entity::find()
        .filter(blocks::Column::BrokerId.eq(broker_id))
        .order_by_asc(blocks::Column::StartTime)
        .order_by_asc(blocks::Column::Id)
        .all(&infra.db)
        .await?)
}

pub async fn create_block(
    infra: &Infra,
    ctx: &Ctx,
    broker_id: Option<i64>,
    input: BlockInput,
) -> Result<blocks::Model> {
    ctx.require_admin()?;
    let broker_id = ctx.target_broker(broker_id)?;
    if input.end_time <= input.start_time {
        return Err(Error::invalid_body("end_time", "end_time must be later than start_time"));
    }
    let agent_id = match input.agent_id {
        Some(a) => Some(repo::active_agent(&infra.db, broker_id, a).await?.id),
        None => None,
    };
    let row = blocks::ActiveModel {
        broker_id: Set(broker_id),
        agent_id: Set(agent_id),
        start_time: Set(input.start_time),
        end_time: Set(input.end_time),
        reason: Set(clean_optional(input.reason, "reason", 200)?.unwrap_or_else(|| "blocked".into())),
        notes: Set(clean_optional(input.notes, "notes", 2000)?),
        ..Default::default()
    }
    .insert(&infra.db)
    .await?;
    audit_change(infra, ctx, "calendar_block_create", "appointment_block", row.id, broker_id).await?;
    Ok(row)
}

pub async fn delete_block(infra: &Infra, ctx: &Ctx, id: i64) -> Result<()> {
    ctx.require_admin()?;
    let mut q = blocks::Entity::find_by_id(id);
    if !ctx.is_superadmin() {
        q = q.filter(blocks::Column::BrokerId.eq(ctx.own_broker()?));
    }
    let row = q.one(&infra.db).await?.ok_or(Error::NotFound("Block"))?;
    blocks::Entity::delete_by_id(row.id).exec(&infra.db).await?;
    audit_change(infra, ctx, "calendar_block_delete", "appointment_block", row.id, row.broker_id).await
}

async fn audit_change(
    infra: &Infra,
    ctx: &Ctx,
    action: &str,
    resource_type: &str,
    id: i64,
    broker_id: i64,
) -> Result<()> {
    let entry =
        audit::Entry { action, resource_type, resource_id: Some(id), broker_id: Some(broker_id), changes: json!({}) };
    audit::record(&infra.db, ctx, entry).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_dates_are_strict() {
        assert_eq!(parse_time("09:30", "start_time").unwrap(), NaiveTime::from_hms_opt(9, 30, 0).unwrap());
        assert_eq!(parse_time("18:00:00", "end_time").unwrap(), NaiveTime::from_hms_opt(18, 0, 0).unwrap());
        for bad in ["24:00", "9", "9h", "", "12:60"] {
            let e = parse_time(bad, "start_time").unwrap_err();
            assert_eq!(e.detail()[0]["loc"], json!(["body", "start_time"]), "{bad}");
        }
        assert!(parse_date("2026-02-30", "valid_from").is_err());
        assert!(parse_date("2026-02-28", "valid_from").is_ok());
    }

    #[test]
    fn a_window_ends_after_it_starts_and_validity_is_ordered() {
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
        let d = |day| NaiveDate::from_ymd_opt(2026, 3, day).unwrap();
        let m = |start, end, from, until| slots::ActiveModel {
            start_time: Set(start),
            end_time: Set(end),
            valid_from: Set(from),
            valid_until: Set(until),
            ..Default::default()
        };
        assert!(check_window(&m(t(9), t(18), d(1), None)).is_ok());
        assert_eq!(check_window(&m(t(18), t(9), d(1), None)).unwrap_err().detail()[0]["loc"][1], "end_time");
        assert_eq!(check_window(&m(t(9), t(9), d(1), None)).unwrap_err().status(), 422);
        assert_eq!(check_window(&m(t(9), t(18), d(5), Some(d(4)))).unwrap_err().detail()[0]["loc"][1], "valid_until");
        assert!(check_window(&m(t(9), t(18), d(5), Some(d(5)))).is_ok());
    }
}
