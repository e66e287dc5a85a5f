//! `/api/v1/appointments`: list, detail, create, update, cancel (DELETE, or `POST …/cancel`),
//! confirm, and free slots (`available-slots`, also served as `available/slots`).

use chrono::{DateTime, FixedOffset, Utc};
use poem::web::Data;
use poem::{Request, RequestBody};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaRequest, Registry};
use poem_openapi::types::{MaybeUndefined, ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, Object, OpenApi};
use shared::appointments::model::{AppointmentPatch, AppointmentStatus, AppointmentType, parse_start_time};
use shared::appointments::service::{self, ListQuery, SlotQuery};
use shared::appointments::{Appointment, NewAppointment, Slot};
use shared::error::FieldError;
use shared::leads::model::TZ;

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::json_out::{CreatedJson, JsonOut};
use crate::security::Auth;
use crate::state::AppState;

pub struct AppointmentsApi;

/// A time in America/Santiago, with its offset (`-03:00` in summer, `-04:00` in winter).
fn local(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.with_timezone(&TZ).fixed_offset()
}

/// An appointment.
#[derive(Object, serde::Serialize)]
pub struct AppointmentOut {
    pub id: i64,
    pub broker_id: i64,
    pub lead_id: i64,
    /// The lead's name; null when unknown.
    pub lead_name: Option<String>,
    pub lead_phone: Option<String>,
    pub agent_id: Option<i64>,
    pub agent_name: Option<String>,
    /// `property_visit` · `virtual_meeting` · `phone_call` · `office_meeting` · `other`
    pub appointment_type: String,
    /// `scheduled` · `confirmed` · `cancelled` · `completed` · `no_show`
    pub status: String,
    /// RFC 3339 in America/Santiago.
    pub start_time: DateTime<FixedOffset>,
    pub end_time: DateTime<FixedOffset>,
    pub duration_minutes: i32,
    pub location: Option<String>,
    pub property_address: Option<String>,
    /// The Google Meet link, once the broker's Google Calendar has the event; null without Google.
    pub meet_url: Option<String>,
    pub notes: Option<String>,
    pub lead_notes: Option<String>,
    pub reminder_sent_24h: bool,
    pub reminder_sent_1h: bool,
    pub cancelled_at: Option<DateTime<FixedOffset>>,
    pub cancellation_reason: Option<String>,
    pub created_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
}

impl From<Appointment> for AppointmentOut {
    fn from(a: Appointment) -> Self {
        let r = a.row;
        AppointmentOut {
            id: r.id,
            broker_id: r.broker_id,
            lead_id: r.lead_id,
            lead_name: a.lead_name,
            lead_phone: a.lead_phone,
            agent_id: r.agent_id,
            agent_name: a.agent_name,
            appointment_type: r.appointment_type,
            status: r.status,
            start_time: local(r.start_time),
            end_time: local(r.end_time),
            duration_minutes: r.duration_minutes,
            location: r.location,
            property_address: r.property_address,
            meet_url: r.meet_url,
            notes: r.notes,
            lead_notes: r.lead_notes,
            reminder_sent_24h: r.reminder_sent_24h,
            reminder_sent_1h: r.reminder_sent_1h,
            cancelled_at: r.cancelled_at.map(local),
            cancellation_reason: r.cancellation_reason,
            created_at: local(r.created_at),
            updated_at: local(r.updated_at),
        }
    }
}

#[derive(Object)]
pub struct AppointmentPage {
    pub data: Vec<AppointmentOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Object)]
pub struct AppointmentCreate {
    /// A lead of the caller's broker (for an AGENT: assigned to it) with name, phone and email.
    pub lead_id: i64,
    /// RFC 3339 (`2026-03-10T10:00:00-03:00`), or without offset as America/Santiago wall-clock time.
    #[oai(validator(max_length = 64))]
    pub start_time: String,
    /// 15–480, default 60.
    pub duration_minutes: Option<i64>,
    /// Default `virtual_meeting`.
    #[oai(validator(max_length = 32))]
    pub appointment_type: Option<String>,
    /// An active user of the broker. Default: the lead's assigned agent, else the active agent with
    /// the fewest upcoming appointments who is free then (the ADMIN in a broker without agents).
    pub agent_id: Option<i64>,
    #[oai(validator(max_length = 500))]
    pub location: Option<String>,
    #[oai(validator(max_length = 500))]
    pub property_address: Option<String>,
    #[oai(validator(max_length = 5000))]
    pub notes: Option<String>,
    #[oai(validator(max_length = 5000))]
    pub lead_notes: Option<String>,
}

/// Partial update: omitted fields stay, `null` clears a text field. A new time or agent is checked
/// against the agent's other appointments (409 `slot_unavailable`).
#[derive(Object)]
pub struct AppointmentUpdate {
    #[oai(validator(max_length = 64))]
    pub start_time: Option<String>,
    pub duration_minutes: Option<i64>,
    #[oai(validator(max_length = 32))]
    pub appointment_type: Option<String>,
    pub agent_id: Option<i64>,
    /// `scheduled` · `confirmed` · `cancelled` · `completed` · `no_show`
    #[oai(validator(max_length = 32))]
    pub status: Option<String>,
    #[oai(validator(max_length = 500))]
    pub location: MaybeUndefined<String>,
    #[oai(validator(max_length = 500))]
    pub property_address: MaybeUndefined<String>,
    #[oai(validator(max_length = 5000))]
    pub notes: MaybeUndefined<String>,
    #[oai(validator(max_length = 5000))]
    pub lead_notes: MaybeUndefined<String>,
    /// With `status: cancelled`.
    #[oai(validator(max_length = 1000))]
    pub cancellation_reason: MaybeUndefined<String>,
}

#[derive(Object)]
pub struct CancelBody {
    #[oai(validator(max_length = 1000))]
    pub reason: Option<String>,
}

/// A free slot.
#[derive(Object, serde::Serialize)]
pub struct SlotOut {
    /// RFC 3339 with the Santiago offset (`-03:00` / `-04:00`).
    #[serde(serialize_with = "crate::json_out::rfc3339::serialize")]
    pub start_time: DateTime<FixedOffset>,
    #[serde(serialize_with = "crate::json_out::rfc3339::serialize")]
    pub end_time: DateTime<FixedOffset>,
    pub duration_minutes: u32,
    /// Local day, `YYYY-MM-DD`.
    pub date: String,
    /// Local start, `HH:MM`.
    pub time: String,
}

impl From<Slot> for SlotOut {
    fn from(s: Slot) -> Self {
        SlotOut {
            date: s.date().to_string(),
            time: s.time(),
            start_time: s.start.fixed_offset(),
            end_time: s.end.fixed_offset(),
            duration_minutes: s.duration_minutes,
        }
    }
}

/// An optional JSON body: absent or empty is `None`; anything else is parsed like [`JsonBody`].
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<'a, T: ParseFromJSON + Type + Send> ApiExtractor<'a> for OptionalJsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        JsonBody::<T>::request_meta().map(|m| MetaRequest { required: false, ..m })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let data = body.take()?.into_bytes_limit(crate::body::MAX_JSON_BYTES).await.map_err(|e| {
            crate::error::ApiError(shared::Error::invalid_body("body", format!("The body could not be read: {e}")))
        })?;
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        let mut again = RequestBody::new(poem::Body::from(data));
        Ok(OptionalJsonBody(Some(JsonBody::<T>::from_request(request, &mut again, opts).await?.0)))
    }
}

fn kind(raw: Option<&str>) -> Result<Option<AppointmentType>, shared::Error> {
    raw.map(|t| AppointmentType::parse_field(t, FieldError::body("appointment_type", "", "value_error"))).transpose()
}

fn start(raw: &str) -> Result<chrono::DateTime<Utc>, shared::Error> {
    parse_start_time(raw, FieldError::body("start_time", "", "value_error"))
}

impl AppointmentsApi {
    async fn slots(state: &AppState, auth: &Auth, q: SlotQuery) -> ApiResult<JsonOut<Vec<SlotOut>>> {
        let slots = service::available_slots(&state.infra, auth, &q).await?;
        Ok(JsonOut(slots.into_iter().map(Into::into).collect()))
    }
}

#[OpenApi(tag = "ApiTags::Appointments")]
impl AppointmentsApi {
    /// List appointments
    ///
    /// Latest start first. ADMIN sees its broker's, AGENT those it takes or whose lead is assigned to
    /// it, SUPERADMIN all (or one broker's with `broker_id`). `date_from`/`date_to` (or their aliases
    /// `start_date`/`end_date`) filter the start time; a bare date is a whole day in America/Santiago.
    #[oai(path = "/api/v1/appointments", method = "get", operation_id = "appointments_list")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Query<Option<i64>>,
        agent_id: Query<Option<i64>>,
        /// `scheduled` · `confirmed` · `cancelled` · `completed` · `no_show`
        status: Query<Option<String>>,
        /// `YYYY-MM-DD` or RFC 3339
        date_from: Query<Option<String>>,
        /// `YYYY-MM-DD` (inclusive) or RFC 3339
        date_to: Query<Option<String>>,
        /// Alias of `date_from` (the reference service's name)
        start_date: Query<Option<String>>,
        /// Alias of `date_to`
        end_date: Query<Option<String>>,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
        #[oai(default, validator(minimum(value = "0"), maximum(value = "10000000")))] skip: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<Json<AppointmentPage>> {
        let q = ListQuery {
            lead_id: lead_id.0,
            agent_id: agent_id.0,
            status: status.0,
            date_from: date_from.0,
            date_to: date_to.0,
            start_date: start_date.0,
            end_date: end_date.0,
            broker_id: broker_id.0,
            skip: skip.0,
            limit: limit.0,
        };
        let (rows, total) = service::list(&state.infra, &auth, &q).await?;
        Ok(Json(AppointmentPage {
            data: rows.into_iter().map(Into::into).collect(),
            total,
            skip: q.skip,
            limit: q.limit,
        }))
    }

    /// Book an appointment
    ///
    /// The lead needs a name, phone and email (400 `lead_incomplete` lists what is missing). The
    /// start must be in the future (422); an overlap with the agent's appointments or blocks is 409
    /// `slot_unavailable`. Reminders are scheduled 24 h and 1 h before; with Google Calendar
    /// connected, the event (and Meet link) is created in the background.
    #[oai(path = "/api/v1/appointments", method = "post", operation_id = "appointments_create")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<AppointmentCreate>,
    ) -> ApiResult<CreatedJson<AppointmentOut>> {
        let b = body.0;
        let new = NewAppointment {
            lead_id: b.lead_id,
            start_time: start(&b.start_time)?,
            duration_minutes: b.duration_minutes,
            appointment_type: kind(b.appointment_type.as_deref())?,
            agent_id: b.agent_id,
            location: b.location,
            property_address: b.property_address,
            notes: b.notes,
            lead_notes: b.lead_notes,
        };
        Ok(CreatedJson(service::book(&state.infra, &auth, new).await?.into()))
    }

    /// Free appointment slots
    ///
    /// From the broker's availability windows (or Monday–Friday 09:00–18:00 and Saturday
    /// 09:00–13:00 America/Santiago when it has none), minus booked appointments, blocks and, when
    /// connected, the busy times of its Google Calendar; never in the past. Without `agent_id` a slot
    /// is free when at least one agent is. `end_date` defaults to `start_date` + 14 days; the range
    /// may span at most 62 days.
    #[oai(path = "/api/v1/appointments/available-slots", method = "get", operation_id = "appointments_available_slots")]
    #[allow(clippy::too_many_arguments)]
    async fn available_slots(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// `YYYY-MM-DD` (required)
        start_date: Query<Option<String>>,
        /// `YYYY-MM-DD` (inclusive)
        end_date: Query<Option<String>>,
        agent_id: Query<Option<i64>>,
        /// 15–480, default 60
        duration_minutes: Query<Option<i64>>,
        appointment_type: Query<Option<String>>,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<JsonOut<Vec<SlotOut>>> {
        let q = SlotQuery {
            start_date: start_date.0,
            end_date: end_date.0,
            agent_id: agent_id.0,
            duration_minutes: duration_minutes.0,
            appointment_type: appointment_type.0,
            broker_id: broker_id.0,
        };
        Self::slots(&state, &auth, q).await
    }

    /// Free appointment slots (alias)
    ///
    /// The reference service's path for `available-slots`; same parameters and answer.
    #[oai(
        path = "/api/v1/appointments/available/slots",
        method = "get",
        operation_id = "appointments_available_slots_alias"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn available_slots_alias(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        start_date: Query<Option<String>>,
        end_date: Query<Option<String>>,
        agent_id: Query<Option<i64>>,
        duration_minutes: Query<Option<i64>>,
        appointment_type: Query<Option<String>>,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<JsonOut<Vec<SlotOut>>> {
        let q = SlotQuery {
            start_date: start_date.0,
            end_date: end_date.0,
            agent_id: agent_id.0,
            duration_minutes: duration_minutes.0,
            appointment_type: appointment_type.0,
            broker_id: broker_id.0,
        };
        Self::slots(&state, &auth, q).await
    }

    /// Get an appointment
    #[oai(path = "/api/v1/appointments/:appointment_id", method = "get", operation_id = "appointments_get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        appointment_id: Path<i64>,
    ) -> ApiResult<Json<AppointmentOut>> {
        Ok(Json(service::get(&state.infra, &auth, appointment_id.0).await?.into()))
    }

    /// Update an appointment (partial)
    ///
    /// Re-validated like a booking; the appointment itself does not count as an overlap. A new start
    /// time reschedules the reminders.
    #[oai(path = "/api/v1/appointments/:appointment_id", method = "put", operation_id = "appointments_update")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        appointment_id: Path<i64>,
        body: JsonBody<AppointmentUpdate>,
    ) -> ApiResult<Json<AppointmentOut>> {
        let b = body.0;
        let patch = AppointmentPatch {
            appointment_type: kind(b.appointment_type.as_deref())?,
            start_time: b.start_time.as_deref().map(start).transpose()?,
            duration_minutes: b.duration_minutes,
            agent_id: b.agent_id,
            status: b
                .status
                .as_deref()
                .map(|s| AppointmentStatus::parse_field(s, FieldError::body("status", "", "value_error")))
                .transpose()?,
            location: maybe(b.location),
            property_address: maybe(b.property_address),
            notes: maybe(b.notes),
            lead_notes: maybe(b.lead_notes),
            cancellation_reason: maybe(b.cancellation_reason),
        };
        Ok(Json(service::update(&state.infra, &auth, appointment_id.0, patch).await?.into()))
    }

    /// Cancel an appointment
    ///
    /// The appointment is kept with status `cancelled` (and `cancelled_at`; `reason` as a query
    /// parameter) and returned with 200. Its Google event is deleted in the background; no reminder
    /// goes out. Cancelling again changes nothing.
    #[oai(path = "/api/v1/appointments/:appointment_id", method = "delete", operation_id = "appointments_delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        appointment_id: Path<i64>,
        #[oai(validator(max_length = 1000))] reason: Query<Option<String>>,
    ) -> ApiResult<Json<AppointmentOut>> {
        Ok(Json(service::cancel(&state.infra, &auth, appointment_id.0, reason.0).await?.into()))
    }

    /// Cancel an appointment (alias of DELETE)
    ///
    /// `reason` as a query parameter or in an optional JSON body `{reason}`.
    #[oai(path = "/api/v1/appointments/:appointment_id/cancel", method = "post", operation_id = "appointments_cancel")]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        appointment_id: Path<i64>,
        #[oai(validator(max_length = 1000))] reason: Query<Option<String>>,
        body: OptionalJsonBody<CancelBody>,
    ) -> ApiResult<Json<AppointmentOut>> {
        let reason = body.0.and_then(|b| b.reason).or(reason.0);
        Ok(Json(service::cancel(&state.infra, &auth, appointment_id.0, reason).await?.into()))
    }

    /// Confirm an appointment
    ///
    /// `scheduled` → `confirmed` (a confirmed one stays; cancelled, completed or no-show ones are
    /// 409 `invalid_transition`).
    #[oai(
        path = "/api/v1/appointments/:appointment_id/confirm",
        method = "post",
        operation_id = "appointments_confirm"
    )]
    async fn confirm(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        appointment_id: Path<i64>,
    ) -> ApiResult<Json<AppointmentOut>> {
        Ok(Json(service::confirm(&state.infra, &auth, appointment_id.0).await?.into()))
    }
}

fn default_limit() -> u64 {
    50
}
