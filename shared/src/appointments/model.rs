//! Appointment types parsed at the edge, the appointment as the API and the conversation engine see
//! it, and the small pure rules of booking (who must be known about the lead, start-time parsing).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};

use crate::entities::appointments;
use crate::error::{Error, FieldError, Result};
use crate::leads::model::TZ;

/// Shortest and longest appointment, in minutes.
pub const DURATION_RANGE: std::ops::RangeInclusive<i64> = 15..=480;
pub const DEFAULT_DURATION: i64 = 60;

/// Picks `raw` out of `all` by its snake_case name, or a 422 with `code` listing the valid values.
fn parse_one<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    raw: &str,
    code: &'static str,
    loc: FieldError,
) -> Result<T> {
    let wanted = raw.trim().to_ascii_lowercase();
    all.iter().copied().find(|v| name(*v) == wanted).ok_or_else(|| {
        let valid: Vec<&str> = all.iter().map(|v| name(*v)).collect();
        Error::invalid(code, FieldError { msg: format!("must be one of: {}", valid.join(", ")), ..loc })
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppointmentType {
    PropertyVisit,
    VirtualMeeting,
    PhoneCall,
    OfficeMeeting,
    Other,
}

impl AppointmentType {
    pub const ALL: [AppointmentType; 5] = [
        AppointmentType::PropertyVisit,
        AppointmentType::VirtualMeeting,
        AppointmentType::PhoneCall,
        AppointmentType::OfficeMeeting,
        AppointmentType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentType::PropertyVisit => "property_visit",
            AppointmentType::VirtualMeeting => "virtual_meeting",
            AppointmentType::PhoneCall => "phone_call",
            AppointmentType::OfficeMeeting => "office_meeting",
            AppointmentType::Other => "other",
        }
    }

    /// 422 `invalid_appointment_type` naming `loc`.
    pub fn parse_field(raw: &str, loc: FieldError) -> Result<Self> {
        parse_one(&Self::ALL, Self::as_str, raw, "invalid_appointment_type", loc)
    }

    /// A stored value (written by this module, so known to be valid).
    pub fn from_stored(s: &str) -> Self {
        Self::ALL.into_iter().find(|t| t.as_str() == s).unwrap_or(AppointmentType::Other)
    }

    /// How a lead reads it, in Chilean Spanish.
    pub fn label_es(self) -> &'static str {
        match self {
            AppointmentType::PropertyVisit => "visita a la propiedad",
            AppointmentType::VirtualMeeting => "reunión virtual",
            AppointmentType::PhoneCall => "llamada",
            AppointmentType::OfficeMeeting => "reunión en la oficina",
            AppointmentType::Other => "cita",
        }
    }
}

impl fmt::Display for AppointmentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppointmentStatus {
    Scheduled,
    Confirmed,
    Cancelled,
    Completed,
    NoShow,
}

impl AppointmentStatus {
    pub const ALL: [AppointmentStatus; 5] = [
        AppointmentStatus::Scheduled,
        AppointmentStatus::Confirmed,
        AppointmentStatus::Cancelled,
        AppointmentStatus::Completed,
        AppointmentStatus::NoShow,
    ];

    /// The statuses that hold the agent's time (and count as "has an appointment" for the pipeline).
    pub const ACTIVE: [&'static str; 2] = ["scheduled", "confirmed"];

    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::Scheduled => "scheduled",
            AppointmentStatus::Confirmed => "confirmed",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::Completed => "completed",
            AppointmentStatus::NoShow => "no_show",
        }
    }

    /// 422 `invalid_status` naming `loc`.
    pub fn parse_field(raw: &str, loc: FieldError) -> Result<Self> {
        parse_one(&Self::ALL, Self::as_str, raw, "invalid_status", loc)
    }

    pub fn from_stored(s: &str) -> Self {
        Self::ALL.into_iter().find(|t| t.as_str() == s).unwrap_or(AppointmentStatus::Scheduled)
    }

    pub fn is_active(self) -> bool {
        matches!(self, AppointmentStatus::Scheduled | AppointmentStatus::Confirmed)
    }
}

impl fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An appointment with the names the dashboard shows next to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Appointment {
    pub row: appointments::Model,
    pub lead_name: Option<String>,
    pub lead_phone: Option<String>,
    pub lead_email: Option<String>,
    pub agent_name: Option<String>,
}

impl Appointment {
    pub fn status(&self) -> AppointmentStatus {
        AppointmentStatus::from_stored(&self.row.status)
    }

    pub fn kind(&self) -> AppointmentType {
        AppointmentType::from_stored(&self.row.appointment_type)
    }
}

/// A booking request, from `POST /api/v1/appointments` or from the conversation engine.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAppointment {
    pub lead_id: i64,
    /// See [`parse_start_time`] for text input.
    pub start_time: DateTime<Utc>,
    /// 15–480; 60 when `None`.
    pub duration_minutes: Option<i64>,
    /// `virtual_meeting` when `None`.
    pub appointment_type: Option<AppointmentType>,
    /// `None`: the lead's assigned agent, else the active agent with the fewest upcoming appointments
    /// who is free then (SPEC §15); a broker without AGENT users books its ADMIN.
    pub agent_id: Option<i64>,
    pub location: Option<String>,
    pub property_address: Option<String>,
    pub notes: Option<String>,
    pub lead_notes: Option<String>,
}

impl NewAppointment {
    /// A virtual meeting of 60 minutes with the automatically chosen agent.
    pub fn new(lead_id: i64, start_time: DateTime<Utc>) -> Self {
        Self {
            lead_id,
            start_time,
            duration_minutes: None,
            appointment_type: None,
            agent_id: None,
            location: None,
            property_address: None,
            notes: None,
            lead_notes: None,
        }
    }
}

/// A partial update: `None` leaves a field alone; `Some(None)` clears a nullable text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppointmentPatch {
    pub appointment_type: Option<AppointmentType>,
    pub start_time: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    pub agent_id: Option<i64>,
    pub status: Option<AppointmentStatus>,
    pub location: Option<Option<String>>,
    pub property_address: Option<Option<String>>,
    pub notes: Option<Option<String>>,
    pub lead_notes: Option<Option<String>>,
    pub cancellation_reason: Option<Option<String>>,
}

/// Parses an appointment start: RFC 3339 with an offset, or a date-time without one, which is
/// America/Santiago wall-clock time (`2026-03-10T10:00`, `2026-03-10 10:00:00`).
pub fn parse_start_time(raw: &str, loc: FieldError) -> Result<DateTime<Utc>> {
    let raw = raw.trim();
    let invalid = |msg: &str| Error::invalid("validation_error", FieldError { msg: msg.into(), ..loc.clone() });
    let sane = |t: DateTime<Utc>| {
        if (1970..=9999).contains(&t.year()) { Ok(t) } else { Err(invalid("the year must be between 1970 and 9999")) }
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return sane(t.with_timezone(&Utc));
    }
    let normalized = raw.replacen(' ', "T", 1);
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&normalized, f).ok())
        .ok_or_else(|| {
            invalid("expected an ISO 8601 date-time (RFC 3339, or local America/Santiago time without offset)")
        })?;
    let t = TZ
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| invalid("this local time does not exist in America/Santiago (the clocks skip it)"))?;
    sane(t)
}

/// Placeholder names that channel leads get before they say who they are.
const PLACEHOLDER_NAMES: [&str; 2] = ["user", "test user"];

/// What must be known about a lead before it can be booked, in the words the broker reads
/// (`nombre`, `teléfono`, `email`); empty when nothing is missing.
pub fn missing_lead_data(name: Option<&str>, phone: Option<&str>, email: Option<&str>) -> Vec<&'static str> {
    let blank = |v: Option<&str>| v.is_none_or(|s| s.trim().is_empty());
    let mut missing = Vec::new();
    if blank(name) || name.is_some_and(|n| PLACEHOLDER_NAMES.contains(&n.trim().to_lowercase().as_str())) {
        missing.push("nombre");
    }
    if blank(phone) {
        missing.push("teléfono");
    }
    if blank(email) {
        missing.push("email");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> FieldError {
        FieldError::body("start_time", "", "value_error")
    }

    #[test]
    fn naive_start_times_are_santiago_wall_clock() {
        let summer = parse_start_time("2026-03-10T10:00:00", loc()).unwrap();
        assert_eq!(summer.to_rfc3339(), "2026-03-10T13:00:00+00:00");
        let winter = parse_start_time("2026-07-14 10:00", loc()).unwrap();
        assert_eq!(winter.to_rfc3339(), "2026-07-14T14:00:00+00:00");
        let explicit = parse_start_time("2026-07-14T10:00:00Z", loc()).unwrap();
        assert_eq!(explicit.to_rfc3339(), "2026-07-14T10:00:00+00:00");
        let err = parse_start_time("mañana a las 10", loc()).unwrap_err();
        assert_eq!((err.status(), err.code()), (422, "validation_error"));
        assert_eq!(err.detail()[0]["loc"], serde_json::json!(["body", "start_time"]));
        // 00:30 on the September change day is skipped by the clocks.
        assert!(parse_start_time("2026-09-06T00:30:00", loc()).is_err());
        assert!(parse_start_time("+262142-12-31T23:30:00", loc()).is_err());
        assert!(parse_start_time("1900-01-01T10:00:00Z", loc()).is_err());
    }

    #[test]
    fn lead_data_needed_for_booking() {
        assert_eq!(missing_lead_data(Some("Ana"), Some("+56911111111"), Some("a@b.cl")), Vec::<&str>::new());
        assert_eq!(missing_lead_data(None, None, None), ["nombre", "teléfono", "email"]);
        assert_eq!(missing_lead_data(Some("Test User"), Some("+56911111111"), Some(" ")), ["nombre", "email"]);
    }

    #[test]
    fn statuses_and_types_parse_with_their_codes() {
        assert_eq!(AppointmentStatus::parse_field("No_Show", loc()).unwrap(), AppointmentStatus::NoShow);
        assert_eq!(AppointmentStatus::parse_field("done", loc()).unwrap_err().code(), "invalid_status");
        assert_eq!(AppointmentType::parse_field("visit", loc()).unwrap_err().code(), "invalid_appointment_type");
        assert!(AppointmentStatus::Confirmed.is_active() && !AppointmentStatus::Cancelled.is_active());
    }
}
