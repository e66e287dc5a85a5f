//! The `calendar_sync` job: mirror one appointment into Google Calendar — its agent's own calendar
//! when the agent connected one, else the broker's.
//!
//! The job reads the appointment as it is now, so a late or duplicated job does the right thing:
//! an active appointment is upserted, a cancelled one deleted, whatever action the job was enqueued
//! with. The Google calls run under an idempotency key made of the appointment, the action and the
//! row's `updated_at`, so every version of an appointment is mirrored at most once, and Google is
//! given our own event id (`corredor{broker}b{appointment}`, base32hex as Google requires), so even
//! two inserts racing for one appointment make one event (the second gets 409 and patches instead).

use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use secrecy::SecretString;
use serde_json::json;

use super::calendar::{Connection, Owner, access_token, calendar_for, connection_of, is_unauthorized};
use super::model::{AppointmentStatus, AppointmentType};
use crate::Infra;
use crate::effects::{Effect, perform_once};
use crate::entities::{appointments, leads, users};
use crate::error::{Error, Result};
use crate::integrations::google::calendar::{self as gcal, Event, EventInput};
use crate::jobs::calendar_sync::{CalendarAction, CalendarSync};

/// Our id for an appointment's event.
pub fn event_id(broker_id: i64, appointment_id: i64) -> String {
    format!("corredor{broker_id}b{appointment_id}")
}

/// What the job did.
#[derive(Clone, Debug, PartialEq)]
pub enum Synced {
    /// The event exists with this id (and Meet link).
    Upserted(Event),
    Deleted,
    /// Nothing to do: no calendar it belongs in is connected, or the appointment is gone.
    Skipped(&'static str),
}

/// What a job does to Google, decided from the appointment as it is now.
enum Plan {
    /// Write the event to `target`. `leave`: delete it first from the calendar holding it now (the
    /// appointment changed agent, or its agent connected or disconnected a calendar); `known`: the
    /// event's id in `target`, when it is there already.
    Write { target: Connection, leave: Option<Connection>, known: Option<String> },
    /// Delete the event from `from`.
    Remove { from: Connection, id: String },
}

/// Runs one job; `holder` names the attempt for the idempotency claim.
///
/// The event belongs in the agent's own calendar when the agent connected one, else in the
/// broker's; `appointments.google_event_user_id` says which holds it now, so a reassignment moves
/// it (deleted from the old calendar, created in the new one).
pub async fn run(infra: &Infra, job: &CalendarSync, holder: &str) -> Result<Synced> {
    let Some(appt) = appointments::Entity::find_by_id(job.appointment_id)
        .filter(appointments::Column::BrokerId.eq(job.broker_id))
        .one(&infra.db)
        .await?
    else {
        return Ok(Synced::Skipped("appointment_gone"));
    };
    let action = match AppointmentStatus::from_stored(&appt.status) {
        AppointmentStatus::Cancelled => CalendarAction::Delete,
        _ => CalendarAction::Upsert,
    };
    if action != job.action {
        tracing::debug!(appointment_id = appt.id, ?action, "the appointment changed since the job was enqueued");
    }
    let our_id = event_id(appt.broker_id, appt.id);
    let current = appt.google_event_id.as_ref().map(|_| Owner::from_user_id(appt.google_event_user_id));
    let target = calendar_for(&infra.db, appt.broker_id, appt.agent_id).await?;
    let holding = match current {
        Some(owner) if target.as_ref().is_some_and(|t| t.owner == owner) => target.clone(),
        Some(owner) => connection_of(&infra.db, appt.broker_id, owner).await?,
        None => None,
    };
    let known_id = appt.google_event_id.clone().unwrap_or_else(|| our_id.clone());
    let plan = match (action, target, holding) {
        (CalendarAction::Delete, target, holding) => match holding.or(target) {
            Some(from) => Plan::Remove { from, id: known_id },
            None => return Ok(Synced::Skipped("not_connected")),
        },
        // Its calendar was disconnected (or it changed to an agent without one, in a broker without
        // one): take the event out of the calendar that holds it.
        (CalendarAction::Upsert, None, Some(from)) => Plan::Remove { from, id: known_id },
        (CalendarAction::Upsert, None, None) => return Ok(Synced::Skipped("not_connected")),
        (CalendarAction::Upsert, Some(target), holding) => {
            let stays = current == Some(target.owner);
            let leave = holding.filter(|h| h.owner != target.owner);
            Plan::Write { target, leave, known: appt.google_event_id.clone().filter(|_| stays) }
        }
    };
    let key = format!(
        "gcal:{}:{}:{}",
        appt.id,
        match action {
            CalendarAction::Upsert => "upsert",
            CalendarAction::Delete => "delete",
        },
        appt.updated_at.timestamp_micros()
    );
    let effect =
        Effect { key: &key, kind: "calendar_sync", broker_id: Some(appt.broker_id), lead_id: Some(appt.lead_id) };
    let lease = std::time::Duration::from_secs(120);
    let outcome = perform_once(&infra.db, effect, holder, lease, || async {
        match &plan {
            Plan::Write { target, leave, known } => {
                if let Some(old) = leave {
                    let old_id = appt.google_event_id.as_deref().unwrap_or(&our_id);
                    delete_event(infra, old, old_id).await?;
                }
                let input = event_input(&infra.db, &appt).await?;
                let event = upsert_event(infra, target, known.as_deref(), &input).await?;
                Ok(json!({"event_id": event.id, "meet_url": event.meet_url, "user_id": target.owner.user_id()}))
            }
            Plan::Remove { from, id } => {
                delete_event(infra, from, id).await?;
                Ok(json!({"deleted": true, "user_id": from.owner.user_id()}))
            }
        }
    })
    .await?;
    let result = outcome.result();
    if matches!(plan, Plan::Remove { .. }) {
        // Not a change of the appointment: `updated_at` (and so the next job's key) stays.
        infra
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE appointments SET google_event_id = NULL, google_event_user_id = NULL WHERE id = $1",
                [appt.id.into()],
            ))
            .await?;
        return Ok(Synced::Deleted);
    }
    let event = Event {
        id: result["event_id"].as_str().unwrap_or_default().to_string(),
        meet_url: result["meet_url"].as_str().map(str::to_string),
    };
    infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE appointments SET google_event_id = $2, google_event_user_id = $3, \
               meet_url = COALESCE($4, meet_url) WHERE id = $1",
            [appt.id.into(), event.id.clone().into(), result["user_id"].as_i64().into(), event.meet_url.clone().into()],
        ))
        .await?;
    Ok(Synced::Upserted(event))
}

/// [`upsert`] with an access token, and once more with a refreshed one if Google says 401.
async fn upsert_event(infra: &Infra, conn: &Connection, known: Option<&str>, input: &EventInput) -> Result<Event> {
    let token = access_token(infra, conn, false).await?;
    match upsert(infra, &token, conn, known, input).await {
        Err(e) if is_unauthorized(&e) => {
            upsert(infra, &access_token(infra, conn, true).await?, conn, known, input).await
        }
        other => other,
    }
}

/// Deletes the event, refreshing the access token once on a 401.
async fn delete_event(infra: &Infra, conn: &Connection, event_id: &str) -> Result<()> {
    let token = access_token(infra, conn, false).await?;
    match gcal::delete_event(infra, &token, &conn.calendar_id, event_id).await {
        Err(e) if is_unauthorized(&e) => {
            gcal::delete_event(infra, &access_token(infra, conn, true).await?, &conn.calendar_id, event_id).await
        }
        other => other,
    }
}

/// Patches the known event, else inserts ours; an insert refused as a duplicate (409) patches it
/// (a concurrent insert won), and a patch of an event deleted in Google inserts again.
async fn upsert(
    infra: &Infra,
    token: &SecretString,
    conn: &Connection,
    known: Option<&str>,
    input: &EventInput,
) -> Result<Event> {
    let gone = |e: &Error| matches!(e, Error::Upstream { status: Some(404 | 410), .. });
    if let Some(id) = known {
        match gcal::patch_event(infra, token, &conn.calendar_id, id, input).await {
            Err(e) if gone(&e) => {}
            other => return other,
        }
    }
    match gcal::insert_event(infra, token, &conn.calendar_id, input).await {
        Err(Error::Upstream { status: Some(409), .. }) => {
            gcal::patch_event(infra, token, &conn.calendar_id, &input.id, input).await
        }
        other => other,
    }
}

/// The event of an appointment: title, description for the agent, attendees, place, Meet request.
async fn event_input(db: &impl ConnectionTrait, appt: &appointments::Model) -> Result<EventInput> {
    let lead = leads::Entity::find_by_id(appt.lead_id).one(db).await?.ok_or(Error::NotFound("Lead"))?;
    let agent = match appt.agent_id {
        Some(a) => users::Entity::find_by_id(a).one(db).await?,
        None => None,
    };
    let kind = AppointmentType::from_stored(&appt.appointment_type);
    let lead_name = lead.name.clone().unwrap_or_else(|| "cliente".into());
    let mut label = kind.label_es().to_string();
    if let Some(first) = label.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let mut description = vec![format!("{label} con {lead_name}, agendada en Corredor.")];
    for (what, value) in [
        ("Teléfono", lead.phone.as_deref()),
        ("Email", lead.email.as_deref()),
        ("Dirección de la propiedad", appt.property_address.as_deref()),
        ("Notas", appt.notes.as_deref()),
        ("Notas del cliente", appt.lead_notes.as_deref()),
    ] {
        if let Some(v) = value {
            description.push(format!("{what}: {v}"));
        }
    }
    let attendees: Vec<String> =
        [agent.as_ref().map(|a| a.email.clone()), lead.email.clone()].into_iter().flatten().collect();
    let wants_meet = kind == AppointmentType::VirtualMeeting && appt.meet_url.is_none();
    Ok(EventInput {
        id: event_id(appt.broker_id, appt.id),
        summary: format!("{label} con {lead_name}"),
        description: description.join("\n"),
        location: appt.property_address.clone().or_else(|| appt.location.clone()),
        start: appt.start_time,
        end: appt.end_time,
        attendees,
        // One id per appointment: Google ignores a repeated create request, so retries make one Meet.
        meet_request_id: wants_meet.then(|| format!("corredor-{}-{}", appt.broker_id, appt.id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_base32hex_and_unique_per_appointment() {
        let id = event_id(12, 345);
        assert_eq!(id, "corredor12b345");
        assert!(id.chars().all(|c| c.is_ascii_digit() || ('a'..='v').contains(&c)));
        assert!(id.len() >= 5);
        assert_ne!(event_id(1, 23), event_id(12, 3));
    }
}
