//! Appointment use cases: list, read, book, update, confirm, cancel, and free slots — for the API and
//! for the conversation engine ([`book`], [`next_free_slots`]).
//!
//! Booking: the lead must be visible to the caller and have a name, phone and email (400
//! `lead_incomplete`); the agent is the one named, else the lead's assigned agent, else the active
//! agent with the fewest upcoming appointments who is free then (a broker without AGENT users books
//! its ADMIN); an overlap with the agent's appointments or blocks is 409 `slot_unavailable` — checked
//! here for a clear answer, and guaranteed under races by the `appointments_agent_no_overlap`
//! constraint. Times outside the availability windows may be booked by hand; the windows only shape
//! the slots that are offered.
//!
//! After each commit: a WebSocket event to the broker, a `calendar_sync` job when a calendar the
//! appointment belongs in is connected (its agent's own or the broker's) or its event exists, and
//! reminder jobs 24 h and 1 h before a new start time.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Set, TransactionTrait};
use serde_json::{Value, json};

use super::availability::{self, Agents, Slot, Window};
use super::model::{
    Appointment, AppointmentPatch, AppointmentStatus, AppointmentType, DEFAULT_DURATION, DURATION_RANGE,
    NewAppointment, missing_lead_data,
};
use super::repo::{self, AgentChoice, Filter, slot_unavailable};
use super::{calendar, reminders};
use crate::ctx::Ctx;
use crate::entities::{appointments, leads, users};
use crate::error::{Error, FieldError, Result};
use crate::jobs::calendar_sync::{CalendarAction, CalendarSync};
use crate::leads::model::{TZ, parse_instant};
use crate::leads::repo as lead_repo;
use crate::text::clean_text;
use crate::{Infra, events, jobs};

/// Raw list parameters. `date_from`/`date_to` (API.md) and `start_date`/`end_date` (the reference
/// service) are the same filters on `start_time`; a bare date is a whole Santiago day.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub lead_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub status: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub broker_id: Option<i64>,
    pub skip: u64,
    pub limit: u64,
}

pub fn parse_filter(q: &ListQuery) -> Result<Filter> {
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| AppointmentStatus::parse_field(s, FieldError::query("status", "", "value_error")))
        .transpose()?;
    let bound = |primary: &Option<String>, pname: &str, alias: &Option<String>, aname: &str, end: bool| match (
        primary.as_deref(),
        alias.as_deref(),
    ) {
        (Some(v), _) => parse_instant(v, pname, end).map(Some),
        (None, Some(v)) => parse_instant(v, aname, end).map(Some),
        (None, None) => Ok(None),
    };
    let from = bound(&q.date_from, "date_from", &q.start_date, "start_date", false)?;
    let to = bound(&q.date_to, "date_to", &q.end_date, "end_date", true)?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(Error::invalid_query("date_to", "the end of the range must not be before its start"));
    }
    Ok(Filter {
        lead_id: q.lead_id,
        agent_id: q.agent_id,
        status,
        from,
        to,
        broker_id: q.broker_id,
        skip: q.skip,
        limit: q.limit,
    })
}

pub async fn list(infra: &Infra, ctx: &Ctx, q: &ListQuery) -> Result<(Vec<Appointment>, u64)> {
    let filter = parse_filter(q)?;
    let (rows, total) = repo::list(&infra.db, ctx, &filter).await?;
    Ok((repo::with_names(&infra.db, rows).await?, total))
}

pub async fn get(infra: &Infra, ctx: &Ctx, id: i64) -> Result<Appointment> {
    let row = repo::find_visible(&infra.db, ctx, id).await?;
    one_with_names(&infra.db, row).await
}

async fn one_with_names(db: &impl ConnectionTrait, row: appointments::Model) -> Result<Appointment> {
    repo::with_names(db, vec![row])
        .await?
        .pop()
        .ok_or_else(|| Error::internal(anyhow::anyhow!("an appointment lost on the way")))
}

fn duration_of(minutes: Option<i64>) -> Result<i64> {
    let minutes = minutes.unwrap_or(DEFAULT_DURATION);
    if !DURATION_RANGE.contains(&minutes) {
        return Err(Error::invalid_body("duration_minutes", "duration_minutes must be between 15 and 480"));
    }
    Ok(minutes)
}

/// Appointments are booked at most this far ahead.
pub const MAX_AHEAD_DAYS: i64 = 730;

fn future_start(start: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
    if start <= now {
        return Err(Error::invalid_body("start_time", "start_time must be in the future"));
    }
    if start > now + Duration::days(MAX_AHEAD_DAYS) {
        return Err(Error::invalid_body("start_time", "start_time must be within the next two years"));
    }
    Ok(())
}

fn text(raw: Option<String>, field: &str, max: usize) -> Result<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let t = clean_text(&raw);
    if t.chars().count() > max {
        return Err(Error::invalid_body(field, format!("{field} must have at most {max} characters")));
    }
    Ok(Some(t).filter(|t| !t.is_empty()))
}

fn patch_text(raw: Option<Option<String>>, field: &str, max: usize) -> Result<Option<Option<String>>> {
    raw.map(|v| text(v, field, max)).transpose()
}

/// The agent of a new appointment (see the module docs).
async fn choose_agent(
    db: &impl ConnectionTrait,
    lead: &leads::Model,
    requested: Option<i64>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<users::Model> {
    if let Some(id) = requested {
        return repo::active_agent(db, lead.broker_id, id).await;
    }
    if let Some(assigned) = lead.assigned_to {
        match repo::active_agent(db, lead.broker_id, assigned).await {
            Ok(agent) => return Ok(agent),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let pool = repo::agent_pool(db, lead.broker_id).await?;
    let ids: Vec<i64> = pool.iter().map(|u| u.id).collect();
    let load = repo::upcoming_counts(db, &ids, now).await?;
    let mut ranked = pool;
    ranked.sort_by_key(|u| (load.get(&u.id).copied().unwrap_or(0), u.id));
    for agent in ranked {
        if !repo::agent_is_busy(db, lead.broker_id, agent.id, start, end, None).await? {
            return Ok(agent);
        }
    }
    Err(slot_unavailable())
}

/// Books an appointment (`POST /api/v1/appointments`).
#[tracing::instrument(skip_all, fields(lead_id = new.lead_id))]
pub async fn book(infra: &Infra, ctx: &Ctx, new: NewAppointment) -> Result<Appointment> {
    let txn = infra.db.begin().await?;
    let lead = lead_repo::lock_visible(&txn, ctx, new.lead_id).await?;
    let appointment = book_in(&txn, ctx, &lead, new, Utc::now()).await?;
    txn.commit().await?;
    after_change(infra, &appointment, "appointment_created", true).await;
    Ok(appointment)
}

/// Books on the caller's transaction for a lead it has already locked (the conversation engine
/// books inside the turn that chose the slot). The caller commits, then calls [`after_booking`].
pub async fn book_in(
    db: &impl ConnectionTrait,
    ctx: &Ctx,
    lead: &leads::Model,
    new: NewAppointment,
    now: DateTime<Utc>,
) -> Result<Appointment> {
    let duration = duration_of(new.duration_minutes)?;
    future_start(new.start_time, now)?;
    let end = new.start_time + Duration::minutes(duration);
    let location = text(new.location, "location", 500)?;
    let property_address = text(new.property_address, "property_address", 500)?;
    let notes = text(new.notes, "notes", 5000)?;
    let lead_notes = text(new.lead_notes, "lead_notes", 5000)?;
    let kind = new.appointment_type.unwrap_or(AppointmentType::VirtualMeeting);

    let missing = missing_lead_data(lead.name.as_deref(), lead.phone.as_deref(), lead.email.as_deref());
    if !missing.is_empty() {
        return Err(Error::bad_request(
            "lead_incomplete",
            format!("Para agendar faltan datos del lead: {}", missing.join(", ")),
        ));
    }
    let agent = choose_agent(db, lead, new.agent_id, new.start_time, end, now).await?;
    if repo::agent_is_busy(db, lead.broker_id, agent.id, new.start_time, end, None).await? {
        return Err(slot_unavailable());
    }
    let row = appointments::ActiveModel {
        broker_id: Set(lead.broker_id),
        lead_id: Set(lead.id),
        agent_id: Set(Some(agent.id)),
        appointment_type: Set(kind.as_str().to_string()),
        status: Set(AppointmentStatus::Scheduled.as_str().to_string()),
        start_time: Set(new.start_time),
        end_time: Set(end),
        duration_minutes: Set(duration as i32),
        location: Set(location),
        property_address: Set(property_address),
        notes: Set(notes),
        lead_notes: Set(lead_notes),
        created_by: Set(ctx.user_id),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|e| if repo::is_slot_conflict(&e) { slot_unavailable() } else { e.into() })?;
    lead_repo::add_activity(
        db,
        ctx,
        lead,
        "appointment_created",
        json!({"appointment_id": row.id, "start_time": row.start_time, "agent_id": agent.id,
               "appointment_type": row.appointment_type}),
    )
    .await?;
    Ok(Appointment {
        row,
        lead_name: lead.name.clone(),
        lead_phone: lead.phone.clone(),
        lead_email: lead.email.clone(),
        agent_name: Some(agent.name),
    })
}

/// The work after the commit of a [`book_in`] (event, calendar sync, reminders).
pub async fn after_booking(infra: &Infra, a: &Appointment) {
    after_change(infra, a, "appointment_created", true).await;
}

/// The work after the commit of an appointment the caller cancelled on its own transaction.
pub async fn after_cancel(infra: &Infra, a: &Appointment) {
    after_change(infra, a, "appointment_updated", false).await;
}

/// What a write is for: a free edit (`PUT`), or the cancel / confirm transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intent {
    Edit,
    Cancel,
    Confirm,
}

/// `PUT /api/v1/appointments/{id}`: a partial update, re-validated like a booking (future start,
/// agent of the broker, no overlap with the agent's other appointments).
pub async fn update(infra: &Infra, ctx: &Ctx, id: i64, patch: AppointmentPatch) -> Result<Appointment> {
    write(infra, ctx, id, patch, Intent::Edit).await
}

/// Cancels (kept, status `cancelled`, with the time and the reason). Cancelling a cancelled
/// appointment changes nothing; a completed or no-show one is 409 `invalid_transition`.
pub async fn cancel(infra: &Infra, ctx: &Ctx, id: i64, reason: Option<String>) -> Result<Appointment> {
    let patch = AppointmentPatch {
        status: Some(AppointmentStatus::Cancelled),
        cancellation_reason: Some(reason),
        ..Default::default()
    };
    write(infra, ctx, id, patch, Intent::Cancel).await
}

/// Confirms a scheduled appointment (a confirmed one stays as it is; others are 409).
pub async fn confirm(infra: &Infra, ctx: &Ctx, id: i64) -> Result<Appointment> {
    let patch = AppointmentPatch { status: Some(AppointmentStatus::Confirmed), ..Default::default() };
    write(infra, ctx, id, patch, Intent::Confirm).await
}

async fn write(infra: &Infra, ctx: &Ctx, id: i64, patch: AppointmentPatch, intent: Intent) -> Result<Appointment> {
    let now = Utc::now();
    let duration = patch.duration_minutes.map(|d| duration_of(Some(d))).transpose()?;
    let location = patch_text(patch.location, "location", 500)?;
    let property_address = patch_text(patch.property_address, "property_address", 500)?;
    let notes = patch_text(patch.notes, "notes", 5000)?;
    let lead_notes = patch_text(patch.lead_notes, "lead_notes", 5000)?;
    let reason = patch_text(patch.cancellation_reason, "reason", 1000)?;

    let txn = infra.db.begin().await?;
    let current = repo::lock_visible(&txn, ctx, id).await?;
    let old_status = AppointmentStatus::from_stored(&current.status);
    let status = patch.status.unwrap_or(old_status);
    let unchanged = match intent {
        Intent::Cancel if old_status == AppointmentStatus::Cancelled => true,
        Intent::Confirm if old_status == AppointmentStatus::Confirmed => true,
        Intent::Cancel if !old_status.is_active() => return Err(invalid_transition(old_status, status)),
        Intent::Confirm if old_status != AppointmentStatus::Scheduled => {
            return Err(invalid_transition(old_status, status));
        }
        _ => false,
    };
    if unchanged {
        txn.commit().await?;
        return one_with_names(&infra.db, current).await;
    }
    let start = patch.start_time.unwrap_or(current.start_time);
    // A new start must lie ahead; a past appointment may still get its real duration recorded.
    if start != current.start_time {
        future_start(start, now)?;
    }
    let minutes = duration.unwrap_or_else(|| i64::from(current.duration_minutes));
    let end = start + Duration::minutes(minutes);
    let moved = start != current.start_time || end != current.end_time;
    let agent_id = match patch.agent_id {
        Some(a) if Some(a) != current.agent_id => Some(repo::active_agent(&txn, current.broker_id, a).await?.id),
        _ => current.agent_id,
    };
    let reactivated = status.is_active() && !old_status.is_active();
    if status.is_active()
        && (moved || reactivated || agent_id != current.agent_id)
        && let Some(agent) = agent_id
        && repo::agent_is_busy(&txn, current.broker_id, agent, start, end, Some(current.id)).await?
    {
        return Err(slot_unavailable());
    }

    let mut changed: Vec<&str> = Vec::new();
    let mut am = current.clone().into_active_model();
    if moved {
        am.start_time = Set(start);
        am.end_time = Set(end);
        am.duration_minutes = Set(minutes as i32);
        am.reminder_sent_24h = Set(false);
        am.reminder_sent_1h = Set(false);
        changed.push("start_time");
    }
    if agent_id != current.agent_id {
        am.agent_id = Set(agent_id);
        changed.push("agent_id");
    }
    if let Some(kind) = patch.appointment_type
        && kind.as_str() != current.appointment_type
    {
        am.appointment_type = Set(kind.as_str().to_string());
        changed.push("appointment_type");
    }
    for (field, value, column) in [
        ("location", location, &mut am.location),
        ("property_address", property_address, &mut am.property_address),
        ("notes", notes, &mut am.notes),
        ("lead_notes", lead_notes, &mut am.lead_notes),
    ] {
        if let Some(v) = value {
            *column = Set(v);
            changed.push(field);
        }
    }
    if status != old_status {
        am.status = Set(status.as_str().to_string());
        changed.push("status");
        if status == AppointmentStatus::Cancelled {
            am.cancelled_at = Set(Some(now));
            am.cancellation_reason = Set(reason.clone().flatten());
        } else if old_status == AppointmentStatus::Cancelled {
            am.cancelled_at = Set(None);
            am.cancellation_reason = Set(None);
        }
    }
    if changed.is_empty() {
        txn.commit().await?;
        return one_with_names(&infra.db, current).await;
    }
    am.updated_at = Set(now);
    let row =
        am.update(&txn).await.map_err(|e| if repo::is_slot_conflict(&e) { slot_unavailable() } else { e.into() })?;
    if let Some(lead) = leads::Entity::find_by_id(row.lead_id).one(&txn).await? {
        let action = if status == AppointmentStatus::Cancelled && status != old_status {
            "appointment_cancelled"
        } else {
            "appointment_updated"
        };
        lead_repo::add_activity(&txn, ctx, &lead, action, json!({"appointment_id": row.id, "fields": changed})).await?;
    }
    txn.commit().await?;
    let appointment = one_with_names(&infra.db, row).await?;
    after_change(infra, &appointment, "appointment_updated", moved || reactivated).await;
    Ok(appointment)
}

fn invalid_transition(from: AppointmentStatus, to: AppointmentStatus) -> Error {
    Error::conflict("invalid_transition", format!("A {from} appointment cannot become {to}"))
}

/// The appointment as live events carry it.
pub fn event_data(a: &Appointment) -> Value {
    json!({
        "appointment_id": a.row.id,
        "lead_id": a.row.lead_id,
        "lead_name": a.lead_name,
        "agent_id": a.row.agent_id,
        "agent_name": a.agent_name,
        "appointment_type": a.row.appointment_type,
        "status": a.row.status,
        "start_time": a.row.start_time.with_timezone(&TZ).to_rfc3339(),
        "end_time": a.row.end_time.with_timezone(&TZ).to_rfc3339(),
        "meet_url": a.row.meet_url,
    })
}

/// The work after a commit. Each step is best effort: the appointment is saved, so a failure here
/// is logged (Redis unreachable right after the commit) and never undoes or fails the request.
async fn after_change(infra: &Infra, a: &Appointment, event: &str, new_time: bool) {
    let row = &a.row;
    events::publish_to_broker(&infra.redis, infra.prefix(), row.broker_id, event, event_data(a)).await;
    match calendar::sync_wanted(&infra.db, row).await {
        Ok(false) => {}
        Ok(true) => {
            let action = match a.status() {
                AppointmentStatus::Cancelled => CalendarAction::Delete,
                _ => CalendarAction::Upsert,
            };
            let job = CalendarSync { broker_id: row.broker_id, appointment_id: row.id, action };
            if let Err(e) = jobs::enqueue(infra, job).await {
                tracing::error!(appointment_id = row.id, error = %e, "could not enqueue calendar_sync");
            }
        }
        Err(e) => tracing::error!(appointment_id = row.id, error = %e, "could not read the calendar connections"),
    }
    if new_time
        && a.status().is_active()
        && let Err(e) = reminders::schedule(infra, row, Utc::now()).await
    {
        tracing::error!(appointment_id = row.id, error = %e, "could not schedule reminders");
    }
    // A booked, confirmed, completed or cancelled appointment changes the lead's score and may move
    // its stage (calificacion_financiera → agendado → seguimiento); the nightly refresh catches a failure.
    if let Err(e) = crate::pipeline::service::reapply(infra, row.lead_id).await {
        tracing::error!(lead_id = row.lead_id, error = %e, "could not re-apply the lead rules");
    }
}

/// Raw `available-slots` parameters.
#[derive(Clone, Debug, Default)]
pub struct SlotQuery {
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub agent_id: Option<i64>,
    pub duration_minutes: Option<i64>,
    pub appointment_type: Option<String>,
    pub broker_id: Option<i64>,
}

/// The widest `available-slots` range, in days after `start_date`.
pub const MAX_RANGE_DAYS: i64 = 62;
/// The range when `end_date` is not given.
pub const DEFAULT_RANGE_DAYS: i64 = 14;

fn query_date(raw: Option<&str>, field: &str) -> Result<Option<NaiveDate>> {
    raw.filter(|r| !r.trim().is_empty())
        .map(|r| {
            NaiveDate::parse_from_str(r.trim(), "%Y-%m-%d")
                .ok()
                .filter(|d| (1970..=9999).contains(&d.year()))
                .ok_or_else(|| Error::invalid_query(field, "expected a date as YYYY-MM-DD"))
        })
        .transpose()
}

/// `GET /api/v1/appointments/available-slots`: free slots between two Santiago days (inclusive).
pub async fn available_slots(infra: &Infra, ctx: &Ctx, q: &SlotQuery) -> Result<Vec<Slot>> {
    let from = query_date(q.start_date.as_deref(), "start_date")?.ok_or_else(|| {
        Error::invalid("validation_error", FieldError::query("start_date", "Field required", "missing"))
    })?;
    let to = query_date(q.end_date.as_deref(), "end_date")?.unwrap_or(from + Duration::days(DEFAULT_RANGE_DAYS));
    if to < from {
        return Err(Error::invalid_query("end_date", "end_date must not be before start_date"));
    }
    if (to - from).num_days() > MAX_RANGE_DAYS {
        return Err(Error::invalid_query("end_date", format!("the range may span at most {MAX_RANGE_DAYS} days")));
    }
    let duration = q.duration_minutes.unwrap_or(DEFAULT_DURATION);
    if !DURATION_RANGE.contains(&duration) {
        return Err(Error::invalid_query("duration_minutes", "duration_minutes must be between 15 and 480"));
    }
    let kind = q
        .appointment_type
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| AppointmentType::parse_field(t, FieldError::query("appointment_type", "", "value_error")))
        .transpose()?;
    let broker_id = ctx.target_broker(q.broker_id)?;
    let choice = q.agent_id.map_or(AgentChoice::Pool, AgentChoice::Named);
    slots_between(&infra.db, infra, broker_id, choice, from, to, duration as u32, kind, Utc::now()).await
}

/// The broker's windows for `kind` (all kinds when `None`), or the default hours when it has
/// configured none at all.
fn windows(rows: Vec<repo::WindowRow>, kind: Option<AppointmentType>) -> Vec<Window> {
    if rows.is_empty() {
        return availability::default_windows();
    }
    rows.into_iter()
        .filter(|r| match (kind, r.appointment_type.as_deref()) {
            (Some(k), Some(t)) => k.as_str() == t,
            _ => true,
        })
        .map(|r| Window {
            day_of_week: u32::try_from(r.day_of_week).unwrap_or(u32::MAX),
            start: r.start_time,
            end: r.end_time,
            step_minutes: u32::try_from(r.slot_duration_minutes).unwrap_or(60),
            valid_from: Some(r.valid_from),
            valid_until: r.valid_until,
            agent_id: r.agent_id,
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn slots_between(
    db: &impl ConnectionTrait,
    infra: &Infra,
    broker_id: i64,
    choice: AgentChoice,
    from: NaiveDate,
    to: NaiveDate,
    duration_minutes: u32,
    kind: Option<AppointmentType>,
    now: DateTime<Utc>,
) -> Result<Vec<Slot>> {
    let day_start = |d: NaiveDate| {
        availability::local_instant(d, NaiveTime::MIN).unwrap_or_else(|| d.and_time(NaiveTime::MIN).and_utc())
    };
    let (range_start, range_end) = (day_start(from), day_start(to + Duration::days(1)) + Duration::hours(1));
    // One statement on the caller's connection (the chat turn's transaction when Sofía offers slots).
    let inputs = repo::slot_inputs(db, broker_id, choice, range_start, range_end).await?;
    let agents = match (choice, inputs.named) {
        (AgentChoice::Named(_), None) => return Err(Error::NotFound("Agent")),
        (_, Some(id)) => Agents::One(id),
        _ => Agents::AnyOf(inputs.pool),
    };
    let mut busy = inputs.busy;
    if inputs.calendars_connected {
        let agent_ids: &[i64] = match &agents {
            Agents::One(a) => std::slice::from_ref(a),
            Agents::AnyOf(list) => list,
        };
        busy.extend(calendar::google_busy(infra, broker_id, agent_ids, range_start.max(now), range_end).await);
    }
    let request = availability::Request { from, to, duration_minutes, now, agents: &agents };
    Ok(availability::free_slots(&windows(inputs.windows, kind), &busy, &request))
}

/// The first `count` free one-hour virtual-meeting slots from `from` on, for the conversation engine:
/// with the lead's assigned agent when it has one, else with any agent of the broker. Looks two
/// weeks ahead, then up to 62 days.
pub async fn next_free_slots(
    infra: &Infra,
    ctx: &Ctx,
    lead_id: Option<i64>,
    from: DateTime<Utc>,
    count: usize,
) -> Result<Vec<Slot>> {
    let (broker_id, assigned) = match lead_id {
        Some(id) => {
            let lead = lead_repo::find_visible(&infra.db, ctx, id).await?;
            (lead.broker_id, lead.assigned_to)
        }
        None => (ctx.own_broker()?, None),
    };
    next_free_slots_in(&infra.db, infra, broker_id, assigned, from, count).await
}

/// [`next_free_slots`] on the caller's connection (the conversation engine reads inside its turn).
pub async fn next_free_slots_in(
    db: &impl ConnectionTrait,
    infra: &Infra,
    broker_id: i64,
    assigned: Option<i64>,
    from: DateTime<Utc>,
    count: usize,
) -> Result<Vec<Slot>> {
    let choice = assigned.map_or(AgentChoice::Pool, AgentChoice::NamedOr);
    let now = from.max(Utc::now());
    let first_day = now.with_timezone(&TZ).date_naive();
    let kind = Some(AppointmentType::VirtualMeeting);
    let duration = DEFAULT_DURATION as u32;
    let mut slots = Vec::new();
    for days in [DEFAULT_RANGE_DAYS, MAX_RANGE_DAYS] {
        let Some(last_day) = first_day.checked_add_signed(Duration::days(days)).filter(|d| d.year() <= 9999) else {
            break;
        };
        slots = slots_between(db, infra, broker_id, choice, first_day, last_day, duration, kind, now).await?;
        if slots.len() >= count {
            break;
        }
    }
    slots.truncate(count);
    Ok(slots)
}
