//! `/api/broker/calendar/…`: the broker's availability windows and blocks, and its Google Calendar
//! connection (consent URL, OAuth callback, status, disconnect); `/api/v1/agents/me/calendar/…`: a
//! user's own Google Calendar (consent URL, status, disconnect; the same OAuth callback), and
//! `/api/broker/calendar/agents…` for ADMINs to see and disconnect their users' calendars.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use shared::appointments::calendar::{self, Callback, Owner, Status};
use shared::appointments::model::parse_start_time;
use shared::appointments::schedule::{self, BlockInput, WindowInput};
use shared::entities::{appointment_blocks, availability_slots};
use shared::error::FieldError;
use shared::leads::model::TZ;

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::json_out::CreatedJson;
use crate::security::Auth;
use crate::state::AppState;

pub struct CalendarApi;

fn local(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.with_timezone(&TZ).fixed_offset()
}

/// A weekly availability window (America/Santiago wall-clock times).
#[derive(Object, serde::Serialize)]
pub struct AvailabilityOut {
    pub id: i64,
    /// 0 = Monday … 6 = Sunday
    pub day_of_week: i16,
    /// `HH:MM`
    pub start_time: String,
    /// `HH:MM`
    pub end_time: String,
    /// Minutes between offered start times.
    pub slot_duration_minutes: i32,
    pub is_active: bool,
    pub valid_from: NaiveDate,
    /// Null: open-ended.
    pub valid_until: Option<NaiveDate>,
    /// Null: any appointment type.
    pub appointment_type: Option<String>,
    /// Null: every agent of the broker.
    pub agent_id: Option<i64>,
    pub notes: Option<String>,
}

impl From<availability_slots::Model> for AvailabilityOut {
    fn from(m: availability_slots::Model) -> Self {
        AvailabilityOut {
            id: m.id,
            day_of_week: m.day_of_week,
            start_time: m.start_time.format("%H:%M").to_string(),
            end_time: m.end_time.format("%H:%M").to_string(),
            slot_duration_minutes: m.slot_duration_minutes,
            is_active: m.is_active,
            valid_from: m.valid_from,
            valid_until: m.valid_until,
            appointment_type: m.appointment_type,
            agent_id: m.agent_id,
            notes: m.notes,
        }
    }
}

#[derive(Object)]
pub struct AvailabilityCreate {
    /// 0 = Monday … 6 = Sunday
    pub day_of_week: i64,
    /// `HH:MM`
    #[oai(validator(max_length = 8))]
    pub start_time: String,
    /// `HH:MM`, later than `start_time`
    #[oai(validator(max_length = 8))]
    pub end_time: String,
    /// 15–480, default 60
    pub slot_duration_minutes: Option<i64>,
    /// `YYYY-MM-DD`, default today
    #[oai(validator(max_length = 10))]
    pub valid_from: Option<String>,
    /// `YYYY-MM-DD`, not before `valid_from`
    #[oai(validator(max_length = 10))]
    pub valid_until: Option<String>,
    #[oai(validator(max_length = 32))]
    pub appointment_type: Option<String>,
    /// One agent's window (default: every agent's)
    pub agent_id: Option<i64>,
    #[oai(validator(max_length = 2000))]
    pub notes: Option<String>,
}

/// Partial update; `null` clears `valid_until`, `appointment_type`, `agent_id` or `notes`.
#[derive(Object)]
pub struct AvailabilityUpdate {
    pub day_of_week: Option<i64>,
    #[oai(validator(max_length = 8))]
    pub start_time: Option<String>,
    #[oai(validator(max_length = 8))]
    pub end_time: Option<String>,
    pub slot_duration_minutes: Option<i64>,
    #[oai(validator(max_length = 10))]
    pub valid_from: Option<String>,
    #[oai(validator(max_length = 10))]
    pub valid_until: MaybeUndefined<String>,
    #[oai(validator(max_length = 32))]
    pub appointment_type: MaybeUndefined<String>,
    pub agent_id: MaybeUndefined<i64>,
    pub is_active: Option<bool>,
    #[oai(validator(max_length = 2000))]
    pub notes: MaybeUndefined<String>,
}

/// Blocked time.
#[derive(Object, serde::Serialize)]
pub struct BlockOut {
    pub id: i64,
    pub start_time: DateTime<FixedOffset>,
    pub end_time: DateTime<FixedOffset>,
    pub reason: String,
    pub notes: Option<String>,
    /// Null: the whole broker.
    pub agent_id: Option<i64>,
}

impl From<appointment_blocks::Model> for BlockOut {
    fn from(m: appointment_blocks::Model) -> Self {
        BlockOut {
            id: m.id,
            start_time: local(m.start_time),
            end_time: local(m.end_time),
            reason: m.reason,
            notes: m.notes,
            agent_id: m.agent_id,
        }
    }
}

#[derive(Object)]
pub struct BlockCreate {
    /// RFC 3339, or America/Santiago wall-clock time without offset
    #[oai(validator(max_length = 64))]
    pub start_time: String,
    /// Later than `start_time`
    #[oai(validator(max_length = 64))]
    pub end_time: String,
    /// Default `blocked`
    #[oai(validator(max_length = 200))]
    pub reason: Option<String>,
    #[oai(validator(max_length = 2000))]
    pub notes: Option<String>,
    /// One agent's block (default: the whole broker)
    pub agent_id: Option<i64>,
}

#[derive(Object)]
pub struct OkOut {
    pub ok: bool,
    pub message: Option<String>,
}

#[derive(Object)]
pub struct AuthUrlOut {
    /// Google's consent screen; its `state` is signed and valid for 10 minutes.
    pub auth_url: String,
}

#[derive(Object)]
pub struct CalendarStatusOut {
    pub connected: bool,
    /// The Google account.
    pub email: Option<String>,
    pub calendar_id: Option<String>,
    pub connected_at: Option<DateTime<FixedOffset>>,
    /// Whether this server has Google OAuth credentials.
    pub configured: bool,
}

impl From<Status> for CalendarStatusOut {
    fn from(s: Status) -> Self {
        CalendarStatusOut {
            connected: s.connected,
            email: s.email,
            calendar_id: s.calendar_id,
            connected_at: s.connected_at.map(local),
            configured: s.configured,
        }
    }
}

/// A user who takes appointments, and their own Google Calendar.
#[derive(Object)]
pub struct AgentCalendarOut {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    /// `ADMIN` or `AGENT`
    pub role: String,
    pub calendar: CalendarStatusOut,
}

#[derive(ApiResponse)]
pub enum CallbackResponse {
    /// Back to the dashboard: `{FRONTEND_URL}/settings?tab=calendar&status=success` (or
    /// `status=error&reason=…`); for a user's own calendar `…?tab=calendar&owner=agent&status=…`
    #[oai(status = 302)]
    Redirect(#[oai(header = "Location")] String),
}

fn times(start: &str, end: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), shared::Error> {
    Ok((
        parse_start_time(start, FieldError::body("start_time", "", "value_error"))?,
        parse_start_time(end, FieldError::body("end_time", "", "value_error"))?,
    ))
}

#[OpenApi(tag = "ApiTags::Calendar")]
impl CalendarApi {
    /// List availability windows
    ///
    /// Any user of the broker (SUPERADMIN names it with `broker_id`).
    #[oai(path = "/api/broker/calendar/availability", method = "get", operation_id = "calendar_availability_list")]
    async fn list_availability(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<AvailabilityOut>>> {
        let rows = schedule::list_windows(&state.infra, &auth, broker_id.0).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Add an availability window (ADMIN)
    #[oai(path = "/api/broker/calendar/availability", method = "post", operation_id = "calendar_availability_create")]
    async fn create_availability(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        body: JsonBody<AvailabilityCreate>,
    ) -> ApiResult<CreatedJson<AvailabilityOut>> {
        let b = body.0;
        let input = WindowInput {
            day_of_week: Some(b.day_of_week),
            start_time: Some(b.start_time),
            end_time: Some(b.end_time),
            slot_duration_minutes: b.slot_duration_minutes,
            valid_from: b.valid_from,
            valid_until: Some(b.valid_until),
            appointment_type: Some(b.appointment_type),
            agent_id: Some(b.agent_id),
            is_active: None,
            notes: Some(b.notes),
        };
        Ok(CreatedJson(schedule::create_window(&state.infra, &auth, broker_id.0, input).await?.into()))
    }

    /// Update an availability window (ADMIN)
    #[oai(
        path = "/api/broker/calendar/availability/:slot_id",
        method = "put",
        operation_id = "calendar_availability_update"
    )]
    async fn update_availability(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        slot_id: Path<i64>,
        body: JsonBody<AvailabilityUpdate>,
    ) -> ApiResult<Json<AvailabilityOut>> {
        let b = body.0;
        let input = WindowInput {
            day_of_week: b.day_of_week,
            start_time: b.start_time,
            end_time: b.end_time,
            slot_duration_minutes: b.slot_duration_minutes,
            valid_from: b.valid_from,
            valid_until: maybe(b.valid_until),
            appointment_type: maybe(b.appointment_type),
            agent_id: maybe(b.agent_id),
            is_active: b.is_active,
            notes: maybe(b.notes),
        };
        Ok(Json(schedule::update_window(&state.infra, &auth, slot_id.0, input).await?.into()))
    }

    /// Delete an availability window (ADMIN)
    #[oai(
        path = "/api/broker/calendar/availability/:slot_id",
        method = "delete",
        operation_id = "calendar_availability_delete"
    )]
    async fn delete_availability(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        slot_id: Path<i64>,
    ) -> ApiResult<Json<OkOut>> {
        schedule::delete_window(&state.infra, &auth, slot_id.0).await?;
        Ok(Json(OkOut { ok: true, message: None }))
    }

    /// List blocked times
    #[oai(path = "/api/broker/calendar/blocks", method = "get", operation_id = "calendar_blocks_list")]
    async fn list_blocks(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<BlockOut>>> {
        let rows = schedule::list_blocks(&state.infra, &auth, broker_id.0).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Block time (ADMIN)
    ///
    /// Nobody (or the given agent) can be booked between `start_time` and `end_time`.
    #[oai(path = "/api/broker/calendar/blocks", method = "post", operation_id = "calendar_blocks_create")]
    async fn create_block(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        body: JsonBody<BlockCreate>,
    ) -> ApiResult<CreatedJson<BlockOut>> {
        let b = body.0;
        let (start_time, end_time) = times(&b.start_time, &b.end_time)?;
        let input = BlockInput { start_time, end_time, reason: b.reason, notes: b.notes, agent_id: b.agent_id };
        Ok(CreatedJson(schedule::create_block(&state.infra, &auth, broker_id.0, input).await?.into()))
    }

    /// Remove a block (ADMIN)
    #[oai(path = "/api/broker/calendar/blocks/:block_id", method = "delete", operation_id = "calendar_blocks_delete")]
    async fn delete_block(&self, state: Data<&AppState>, auth: Auth, block_id: Path<i64>) -> ApiResult<Json<OkOut>> {
        schedule::delete_block(&state.infra, &auth, block_id.0).await?;
        Ok(Json(OkOut { ok: true, message: None }))
    }

    /// Google consent URL (ADMIN)
    ///
    /// 400 `calendar_not_configured` when this server has no Google OAuth credentials.
    #[oai(path = "/api/broker/calendar/auth-url", method = "get", operation_id = "calendar_auth_url")]
    async fn auth_url(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<AuthUrlOut>> {
        Ok(Json(AuthUrlOut { auth_url: calendar::auth_url(&state.infra, &auth, broker_id.0)? }))
    }

    /// Google OAuth callback (public)
    ///
    /// Google sends the browser here after consent, for the broker's calendar and for a user's own
    /// (the signed `state` says which). A valid `state` stores the connection (the
    /// refresh token encrypted) and redirects to the dashboard; an invalid or expired `state` is 400
    /// `invalid_state` and nothing is stored.
    #[oai(path = "/api/broker/calendar/callback", method = "get", operation_id = "calendar_oauth_callback")]
    async fn callback(
        &self,
        state: Data<&AppState>,
        #[oai(validator(max_length = 2048))] code: Query<Option<String>>,
        #[oai(name = "state", validator(max_length = 4096))] oauth_state: Query<Option<String>>,
        #[oai(validator(max_length = 256))] error: Query<Option<String>>,
    ) -> ApiResult<CallbackResponse> {
        let Some(oauth_state) = oauth_state.0 else {
            return Err(shared::Error::bad_request("invalid_state", "The state parameter is missing").into());
        };
        let outcome = calendar::complete(&state.infra, code.0.as_deref(), &oauth_state, error.0.as_deref()).await?;
        let owner = match outcome {
            Callback::Connected { owner, .. } | Callback::Failed { owner, .. } => owner,
        };
        let mut base = format!("{}/settings?tab=calendar", state.infra.settings.frontend_url);
        if let Owner::Agent(_) = owner {
            base.push_str("&owner=agent");
        }
        Ok(CallbackResponse::Redirect(match outcome {
            Callback::Connected { .. } => format!("{base}&status=success"),
            Callback::Failed { reason, .. } => format!("{base}&status=error&reason={reason}"),
        }))
    }

    /// Google Calendar connection status
    #[oai(path = "/api/broker/calendar/status", method = "get", operation_id = "calendar_status")]
    async fn status(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<CalendarStatusOut>> {
        Ok(Json(calendar::status(&state.infra, &auth, broker_id.0).await?.into()))
    }

    /// Disconnect Google Calendar (ADMIN)
    ///
    /// Forgets the stored tokens; events already created stay in the calendar.
    #[oai(path = "/api/broker/calendar/disconnect", method = "delete", operation_id = "calendar_disconnect")]
    async fn disconnect(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<OkOut>> {
        let was = calendar::disconnect(&state.infra, &auth, broker_id.0).await?;
        let message = if was { "Google Calendar disconnected" } else { "Google Calendar was not connected" };
        Ok(Json(OkOut { ok: true, message: Some(message.into()) }))
    }

    /// Google consent URL for the caller's own calendar
    ///
    /// Any active AGENT or ADMIN of a broker. Once connected, the caller's appointments are written
    /// to this calendar instead of the broker's, and its busy times leave the caller's free slots.
    /// 400 `calendar_not_configured` when this server has no Google OAuth credentials.
    #[oai(path = "/api/v1/agents/me/calendar/auth-url", method = "get", operation_id = "agent_calendar_auth_url")]
    async fn agent_auth_url(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<AuthUrlOut>> {
        Ok(Json(AuthUrlOut { auth_url: calendar::agent_auth_url(&state.infra, &auth).await? }))
    }

    /// The caller's own Google Calendar connection
    #[oai(path = "/api/v1/agents/me/calendar/status", method = "get", operation_id = "agent_calendar_status")]
    async fn agent_status(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<CalendarStatusOut>> {
        Ok(Json(calendar::agent_status(&state.infra, &auth, None).await?.into()))
    }

    /// Disconnect the caller's own Google Calendar
    ///
    /// Forgets the stored tokens; the caller's next appointments go to the broker's calendar (when
    /// it is connected). Events already created stay in the calendar.
    #[oai(
        path = "/api/v1/agents/me/calendar/disconnect",
        method = "delete",
        operation_id = "agent_calendar_disconnect"
    )]
    async fn agent_disconnect(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<OkOut>> {
        let was = calendar::agent_disconnect(&state.infra, &auth, None).await?;
        Ok(Json(agent_disconnected(was)))
    }

    /// The broker's users and their own Google Calendars (ADMIN)
    #[oai(path = "/api/broker/calendar/agents", method = "get", operation_id = "calendar_agents")]
    async fn agent_calendars(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<AgentCalendarOut>>> {
        let rows = calendar::agent_calendars(&state.infra, &auth, broker_id.0).await?;
        Ok(Json(
            rows.into_iter()
                .map(|a| AgentCalendarOut {
                    user_id: a.user_id,
                    name: a.name,
                    email: a.email,
                    role: a.role,
                    calendar: a.calendar.into(),
                })
                .collect(),
        ))
    }

    /// A user's own Google Calendar connection (ADMIN, or the user)
    #[oai(path = "/api/broker/calendar/agents/:user_id/status", method = "get", operation_id = "calendar_agent_status")]
    async fn agent_status_of(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        user_id: Path<i64>,
    ) -> ApiResult<Json<CalendarStatusOut>> {
        Ok(Json(calendar::agent_status(&state.infra, &auth, Some(user_id.0)).await?.into()))
    }

    /// Disconnect a user's own Google Calendar (ADMIN, or the user)
    #[oai(
        path = "/api/broker/calendar/agents/:user_id/disconnect",
        method = "delete",
        operation_id = "calendar_agent_disconnect"
    )]
    async fn agent_disconnect_of(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        user_id: Path<i64>,
    ) -> ApiResult<Json<OkOut>> {
        let was = calendar::agent_disconnect(&state.infra, &auth, Some(user_id.0)).await?;
        Ok(Json(agent_disconnected(was)))
    }
}

fn agent_disconnected(was: bool) -> OkOut {
    let message = if was { "Google Calendar disconnected" } else { "Google Calendar was not connected" };
    OkOut { ok: true, message: Some(message.into()) }
}
