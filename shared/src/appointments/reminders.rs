//! Appointment reminders, 24 hours and 1 hour before the start, through the lead's channel.
//!
//! Each booking (and each reschedule) enqueues one `notification` job per offset, to run at the
//! reminder's time. Jobs carry ids only, so the handler re-reads the appointment and sends only when
//! the appointment is still active and still starts when that reminder was meant for
//! ([`decide`]): a job scheduled for an earlier start time is too early and skips, and the job of
//! the new start time sends. The idempotency key includes the start time, so one reminder per
//! offset and start time is ever recorded, whatever the retries and duplicates.
//!
//! A reminder is recorded as an outbound `chat_messages` row (`sender_type = system`) on the
//! lead's last inbound written channel (`webchat` when none), with status `sent` for webchat (the
//! dashboard is its delivery) and `pending` for Telegram and WhatsApp, then delivered by the channel
//! sender ([`crate::channels::sender::deliver`], idempotent per row) within the same job: a
//! failed delivery fails the job, whose retry finds the row recorded and delivers it.
//!
//! WhatsApp outside the 24-hour window takes an approved template. The reminder's is the broker's
//! [`reminder_template`]: a `whatsapp` message template with a `whatsapp_template_name` and agent
//! type `agendador` (the scheduling agent's), one whose name contains "recordatorio" (or
//! "reminder") first, else the most recently updated. Its body parameters are filled from the
//! template values of the lead (`name`, `first_name`, `broker_name`, …) and of this appointment:
//! `appointment_date` ("martes 10 de marzo"), `appointment_time` ("10:00"), `appointment_type`
//! ("reunión virtual"), `appointment_place` (the address, the place or the meeting link),
//! `meet_url` and `agent_name` (the appointment's agent). Without such a template, a reminder to a
//! lead outside the window fails as `outside_24h_window`: the message row is `failed` with that
//! code, the job is dead-lettered with it, and the reminder is not flagged as sent.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Set, Statement};
use serde_json::json;

use super::model::{AppointmentStatus, AppointmentType};
use crate::effects::{Effect, Outcome, perform_once};
use crate::entities::{appointments, chat_messages, leads, users};
use crate::error::{Error, Result};
use crate::jobs::notification::Notification;
use crate::leads::model::TZ;
use crate::{Infra, events, jobs};

/// Hours before the start at which reminders go out, largest first.
pub const OFFSETS_HOURS: [u32; 2] = [24, 1];

/// A job may run this much before its time and still count as on time.
const EARLY_TOLERANCE: Duration = Duration::minutes(2);

/// Enqueues the reminders of an appointment that are still ahead (`now` < start − offset).
pub async fn schedule(infra: &Infra, appointment: &appointments::Model, now: DateTime<Utc>) -> Result<()> {
    for hours in OFFSETS_HOURS {
        let at = appointment.start_time - Duration::hours(i64::from(hours));
        if at <= now {
            continue;
        }
        let job = Notification::AppointmentReminder {
            broker_id: appointment.broker_id,
            lead_id: appointment.lead_id,
            appointment_id: appointment.id,
            hours_before: hours,
        };
        jobs::enqueue_at(infra, job, at).await?;
    }
    Ok(())
}

/// Why a reminder is not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Cancelled, completed or no-show.
    NotActive,
    /// The appointment has started.
    Started,
    /// Too early for this start time: the appointment moved later (its new job will send).
    Rescheduled,
    /// A closer reminder is already due (e.g. a late 24 h job when only an hour is left).
    Superseded,
    /// This reminder was recorded for the current start time.
    AlreadySent,
}

/// Whether the `hours_before` reminder of an appointment in `status` starting at `start` goes out
/// at `now`.
pub fn decide(
    status: AppointmentStatus,
    start: DateTime<Utc>,
    hours_before: u32,
    already_sent: bool,
    now: DateTime<Utc>,
) -> Result<(), Skip> {
    let due = |h: u32| start - Duration::hours(i64::from(h));
    if !status.is_active() {
        Err(Skip::NotActive)
    } else if now >= start {
        Err(Skip::Started)
    } else if now < due(hours_before) - EARLY_TOLERANCE {
        Err(Skip::Rescheduled)
    } else if OFFSETS_HOURS.iter().any(|h| *h < hours_before && now >= due(*h)) {
        Err(Skip::Superseded)
    } else if already_sent {
        Err(Skip::AlreadySent)
    } else {
        Ok(())
    }
}

/// What the reminder says about one appointment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderFacts<'a> {
    pub lead_name: Option<&'a str>,
    pub kind: AppointmentType,
    pub start: DateTime<Utc>,
    pub agent_name: Option<&'a str>,
    pub location: Option<&'a str>,
    pub property_address: Option<&'a str>,
    pub meet_url: Option<&'a str>,
}

/// The reminder in Chilean Spanish: day (today / tomorrow / the date), time, with whom, and the
/// place or the link.
pub fn reminder_text(f: &ReminderFacts<'_>, now: DateTime<Utc>) -> String {
    let start = f.start.with_timezone(&TZ);
    let today = now.with_timezone(&TZ).date_naive();
    let date = crate::text::day_long_es(start.date_naive());
    let day = match (start.date_naive() - today).num_days() {
        0 => format!("hoy {date}"),
        1 => format!("mañana {date}"),
        _ => format!("el {date}"),
    };
    let greeting = match f.lead_name.and_then(|n| n.split_whitespace().next()) {
        Some(first) => format!("Hola {first}"),
        None => "Hola".to_string(),
    };
    let with = f.agent_name.map(|a| format!(" con {a}")).unwrap_or_default();
    let place = match f.kind {
        AppointmentType::VirtualMeeting => match f.meet_url {
            Some(url) => format!("Link de la reunión: {url}"),
            None => "Te enviaremos el link de la reunión antes de la hora.".to_string(),
        },
        AppointmentType::PropertyVisit => match f.property_address.or(f.location) {
            Some(address) => format!("Dirección: {address}."),
            None => "Te confirmaremos la dirección de la propiedad.".to_string(),
        },
        AppointmentType::PhoneCall => "Te llamaremos a tu teléfono.".to_string(),
        AppointmentType::OfficeMeeting | AppointmentType::Other => match f.location {
            Some(place) => format!("Lugar: {place}."),
            None => String::new(),
        },
    };
    let text = format!(
        "{greeting}, te recordamos tu {}{with} {day} a las {} hrs. {place} Si necesitas cambiar la hora, respóndenos por este medio.",
        f.kind.label_es(),
        start.format("%H:%M"),
    );
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What happened to one reminder job.
#[derive(Clone, Debug, PartialEq)]
pub enum Sent {
    /// Recorded now (the message id).
    Recorded(i64),
    /// Recorded by an earlier delivery of the same reminder.
    AlreadyRecorded,
    Skipped(Skip),
    /// The appointment or its lead no longer exists.
    Gone,
}

/// Runs one `AppointmentReminder` job at `now`; `holder` names the attempt for the idempotency claim.
pub async fn send(
    infra: &Infra,
    broker_id: i64,
    appointment_id: i64,
    hours_before: u32,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<Sent> {
    let Some(appt) = appointments::Entity::find_by_id(appointment_id)
        .filter(appointments::Column::BrokerId.eq(broker_id))
        .one(&infra.db)
        .await?
    else {
        return Ok(Sent::Gone);
    };
    let already_sent = match hours_before {
        24 => appt.reminder_sent_24h,
        1 => appt.reminder_sent_1h,
        _ => false,
    };
    let status = AppointmentStatus::from_stored(&appt.status);
    if let Err(skip) = decide(status, appt.start_time, hours_before, already_sent, now) {
        return Ok(Sent::Skipped(skip));
    }
    let Some(lead) = leads::Entity::find_by_id(appt.lead_id).one(&infra.db).await? else {
        return Ok(Sent::Gone);
    };
    let agent_name = match appt.agent_id {
        Some(a) => users::Entity::find_by_id(a).one(&infra.db).await?.map(|u| u.name),
        None => None,
    };
    let facts = ReminderFacts {
        lead_name: lead.name.as_deref(),
        kind: AppointmentType::from_stored(&appt.appointment_type),
        start: appt.start_time,
        agent_name: agent_name.as_deref(),
        location: appt.location.as_deref(),
        property_address: appt.property_address.as_deref(),
        meet_url: appt.meet_url.as_deref(),
    };
    let text = reminder_text(&facts, now);
    let (provider, channel_user_id) = crate::conversations::last_channel(&infra.db, lead.id).await?;
    let template = match provider.as_str() {
        "whatsapp" => match reminder_template(&infra.db, broker_id).await? {
            Some(t) => {
                let values = reminder_values(infra, &lead, &facts, now).await?;
                Some(crate::campaigns::compose::whatsapp_template(&t.name, &t.language, &t.parameters, &values))
            }
            None => None,
        },
        _ => None,
    };
    let whatsapp_template =
        template.as_ref().map(|t| json!({"name": t.name, "language": t.language, "parameters": t.parameters}));
    let job = Notification::AppointmentReminder { broker_id, lead_id: lead.id, appointment_id, hours_before };
    let base = job.effect_key().ok_or_else(|| Error::internal(anyhow::anyhow!("a reminder has an effect key")))?;
    let key = format!("{base}:{}", appt.start_time.timestamp());
    let effect = Effect { key: &key, kind: "appointment_reminder", broker_id: Some(broker_id), lead_id: Some(lead.id) };
    let record = || async {
        let message = chat_messages::ActiveModel {
            lead_id: Set(lead.id),
            broker_id: Set(broker_id),
            provider: Set(provider.clone()),
            channel_user_id: Set(channel_user_id.clone()),
            message_text: Set(text.clone()),
            direction: Set("out".into()),
            status: Set(if provider == "webchat" { "sent" } else { "pending" }.into()),
            sender_type: Set("system".into()),
            ai_response_used: Set(false),
            provider_metadata: Set(Some(json!({
                "kind": "appointment_reminder", "appointment_id": appointment_id, "hours_before": hours_before,
                "delivery": if provider == "webchat" { "dashboard" } else { "queued" },
                "whatsapp_template": whatsapp_template,
            }))),
            ..Default::default()
        }
        .insert(&infra.db)
        .await?;
        Ok(json!({"message_id": message.id}))
    };
    let outcome = perform_once(&infra.db, effect, holder, std::time::Duration::from_secs(60), record).await?;
    let message_id = outcome.result()["message_id"].as_i64().unwrap_or_default();
    if let (Outcome::AlreadyDone(_), Some(t)) = (&outcome, &whatsapp_template) {
        // Recorded by an attempt that failed before the broker had a reminder template: the retry
        // (a dead job retried after adding one) sends with it.
        attach_template(&infra.db, message_id, t).await?;
    }
    if crate::channels::CHANNELS.contains(&provider.as_str()) && message_id > 0 {
        crate::channels::sender::deliver(infra, message_id, holder).await?;
    }
    mark_sent(&infra.db, appointment_id, hours_before, appt.start_time).await?;
    let Outcome::Performed(_) = outcome else { return Ok(Sent::AlreadyRecorded) };
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        broker_id,
        "appointment_reminder",
        json!({"appointment_id": appointment_id, "lead_id": lead.id, "hours_before": hours_before,
               "message_id": message_id, "provider": provider, "message": text}),
    )
    .await;
    Ok(Sent::Recorded(message_id))
}

/// The approved WhatsApp template a broker's reminders use outside the 24-hour window (the rule is
/// in the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderTemplate {
    pub template_id: i64,
    pub name: String,
    pub language: String,
    /// The template variables that fill the body parameters, in order.
    pub parameters: Vec<String>,
}

/// The broker's reminder template, if it has one.
pub async fn reminder_template(db: &impl ConnectionTrait, broker_id: i64) -> Result<Option<ReminderTemplate>> {
    let Some(r) = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, whatsapp_template_name, COALESCE(whatsapp_language, 'es'), whatsapp_parameters \
             FROM message_templates \
             WHERE broker_id = $1 AND channel = 'whatsapp' AND agent_type = 'agendador' \
               AND whatsapp_template_name IS NOT NULL \
             ORDER BY (lower(name) LIKE '%recordatorio%' OR lower(name) LIKE '%reminder%') DESC, \
                      updated_at DESC, id DESC \
             LIMIT 1",
            [broker_id.into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let parameters: serde_json::Value = r.try_get_by_index(3)?;
    Ok(Some(ReminderTemplate {
        template_id: r.try_get_by_index(0)?,
        name: r.try_get_by_index(1)?,
        language: r.try_get_by_index(2)?,
        parameters: parameters
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
    }))
}

/// The template values of the lead, with this appointment's facts (module documentation).
async fn reminder_values(
    infra: &Infra,
    lead: &leads::Model,
    f: &ReminderFacts<'_>,
    now: DateTime<Utc>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut values = crate::templates::lead_values(infra, &infra.db, lead, now).await?;
    let start = f.start.with_timezone(&TZ);
    values.insert("appointment_date".into(), crate::text::day_long_es(start.date_naive()));
    values.insert("appointment_time".into(), start.format("%H:%M").to_string());
    values.insert("appointment_type".into(), f.kind.label_es().to_string());
    let place = match f.kind {
        AppointmentType::VirtualMeeting => f.meet_url.or(f.location),
        AppointmentType::PropertyVisit => f.property_address.or(f.location),
        _ => f.location.or(f.property_address),
    };
    if let Some(place) = place {
        values.insert("appointment_place".into(), place.to_string());
    }
    if let Some(url) = f.meet_url {
        values.insert("meet_url".into(), url.to_string());
    }
    if let Some(agent) = f.agent_name {
        values.insert("agent_name".into(), agent.to_string());
    }
    Ok(values)
}

async fn attach_template(db: &impl ConnectionTrait, message_id: i64, template: &serde_json::Value) -> Result<()> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE chat_messages SET provider_metadata = provider_metadata || jsonb_build_object('whatsapp_template', $2::jsonb) \
         WHERE id = $1 AND status IN ('pending', 'failed') \
           AND jsonb_typeof(provider_metadata->'whatsapp_template') IS DISTINCT FROM 'object'",
        [message_id.into(), template.clone().into()],
    ))
    .await?;
    Ok(())
}

/// Flags the reminder as sent, unless the appointment moved meanwhile.
async fn mark_sent(db: &impl ConnectionTrait, id: i64, hours_before: u32, start: DateTime<Utc>) -> Result<()> {
    let column = match hours_before {
        24 => "reminder_sent_24h",
        1 => "reminder_sent_1h",
        _ => return Ok(()),
    };
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("UPDATE appointments SET {column} = true WHERE id = $1 AND start_time = $2"),
        [id.into(), start.into()],
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn reminders_go_out_on_time_for_the_current_start_only() {
        use AppointmentStatus::*;
        let start = t("2026-03-10T13:00:00Z");
        let at = |s: &str| t(s);
        assert_eq!(decide(Scheduled, start, 24, false, at("2026-03-09T13:00:00Z")), Ok(()));
        assert_eq!(decide(Confirmed, start, 24, false, at("2026-03-09T12:59:00Z")), Ok(()), "a little early is fine");
        assert_eq!(decide(Scheduled, start, 24, false, at("2026-03-09T15:00:00Z")), Ok(()), "late but useful");
        assert_eq!(decide(Scheduled, start, 1, false, at("2026-03-10T12:00:00Z")), Ok(()));
        // The job of an earlier start time fires a day too early for the new one.
        assert_eq!(decide(Scheduled, start, 24, false, at("2026-03-08T13:00:00Z")), Err(Skip::Rescheduled));
        assert_eq!(decide(Cancelled, start, 24, false, at("2026-03-09T13:00:00Z")), Err(Skip::NotActive));
        assert_eq!(decide(Completed, start, 1, false, at("2026-03-10T12:00:00Z")), Err(Skip::NotActive));
        assert_eq!(decide(Scheduled, start, 1, false, at("2026-03-10T13:00:00Z")), Err(Skip::Started));
        assert_eq!(decide(Scheduled, start, 24, false, at("2026-03-10T12:30:00Z")), Err(Skip::Superseded));
        assert_eq!(decide(Scheduled, start, 24, true, at("2026-03-09T13:00:00Z")), Err(Skip::AlreadySent));
    }

    #[test]
    fn the_text_says_when_where_and_with_whom_in_chilean_spanish() {
        let facts = ReminderFacts {
            lead_name: Some("María José Pérez"),
            kind: AppointmentType::VirtualMeeting,
            start: t("2026-03-10T13:00:00Z"),
            agent_name: Some("Carla"),
            location: None,
            property_address: None,
            meet_url: Some("https://meet.google.com/abc-defg-hij"),
        };
        let day_before = reminder_text(&facts, t("2026-03-09T13:00:00Z"));
        assert_eq!(
            day_before,
            "Hola María, te recordamos tu reunión virtual con Carla mañana martes 10 de marzo a las 10:00 hrs. \
             Link de la reunión: https://meet.google.com/abc-defg-hij Si necesitas cambiar la hora, respóndenos por este medio."
        );
        let hour_before = reminder_text(&facts, t("2026-03-10T12:00:00Z"));
        assert!(hour_before.contains("hoy martes 10 de marzo a las 10:00 hrs"), "{hour_before}");
        let visit = ReminderFacts {
            kind: AppointmentType::PropertyVisit,
            property_address: Some("Av. Irarrázaval 1234, Ñuñoa"),
            lead_name: None,
            agent_name: None,
            start: t("2026-07-14T14:00:00Z"),
            ..facts
        };
        let text = reminder_text(&visit, t("2026-07-13T14:00:00Z"));
        assert!(
            text.starts_with("Hola, te recordamos tu visita a la propiedad mañana martes 14 de julio a las 10:00 hrs."),
            "{text}"
        );
        assert!(text.contains("Dirección: Av. Irarrázaval 1234, Ñuñoa."));
    }
}
