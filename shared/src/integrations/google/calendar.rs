//! Google Calendar API v3: insert / patch / delete one event (with a Google Meet conference
//! request) and read free/busy times.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{SERVICE, url};
use crate::error::{Error, Result};
use crate::infra::Infra;
use crate::integrations::{breaker, http, send_json};
use crate::leads::model::TZ;

/// An event as we write it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventInput {
    /// Our own id for the event (base32hex, see `appointments::sync`), used on insert so a
    /// repeated insert is refused (409) instead of creating a second event.
    pub id: String,
    pub summary: String,
    pub description: String,
    pub location: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub attendees: Vec<String>,
    /// Ask Google for a Meet link under this request id (Google creates one conference per id).
    pub meet_request_id: Option<String>,
}

impl EventInput {
    fn body(&self, with_id: bool) -> Value {
        let when = |t: &DateTime<Utc>| json!({"dateTime": t.with_timezone(&TZ).to_rfc3339(), "timeZone": TZ.name()});
        let mut body = json!({
            "summary": self.summary,
            "description": self.description,
            "start": when(&self.start),
            "end": when(&self.end),
            "status": "confirmed",
            "attendees": self.attendees.iter().map(|e| json!({"email": e})).collect::<Vec<_>>(),
        });
        if with_id {
            body["id"] = json!(self.id);
        }
        if let Some(loc) = &self.location {
            body["location"] = json!(loc);
        }
        if let Some(request_id) = &self.meet_request_id {
            body["conferenceData"] =
                json!({"createRequest": {"requestId": request_id, "conferenceSolutionKey": {"type": "hangoutsMeet"}}});
        }
        body
    }
}

/// What we keep of Google's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    /// The Meet link (`hangoutLink`, else the conference's video entry point).
    pub meet_url: Option<String>,
}

fn event(body: &Value) -> Result<Event> {
    let id = body["id"]
        .as_str()
        .ok_or_else(|| Error::upstream_permanent(SERVICE, "upstream_invalid", None, "event answer without id"))?;
    let video = body["conferenceData"]["entryPoints"]
        .as_array()
        .and_then(|points| points.iter().find(|p| p["entryPointType"] == "video"))
        .and_then(|p| p["uri"].as_str());
    Ok(Event { id: id.to_string(), meet_url: body["hangoutLink"].as_str().or(video).map(str::to_string) })
}

fn events_url(infra: &Infra, calendar_id: &str, event_id: Option<&str>) -> Result<reqwest::Url> {
    let mut segments = vec!["calendar", "v3", "calendars", calendar_id, "events"];
    segments.extend(event_id);
    url(&infra.settings.providers.google_api_base, &segments)
}

async fn call(infra: &Infra, req: reqwest::RequestBuilder) -> Result<Value> {
    breaker::CALENDAR.call(infra, || send_json(SERVICE, req)).await
}

/// `POST …/calendars/{calendar}/events?conferenceDataVersion=1`.
pub async fn insert_event(infra: &Infra, token: &SecretString, calendar_id: &str, input: &EventInput) -> Result<Event> {
    let mut url = events_url(infra, calendar_id, None)?;
    url.query_pairs_mut().append_pair("conferenceDataVersion", "1");
    let req = http()
        .post(url)
        .timeout(infra.settings.providers.timeout)
        .bearer_auth(token.expose_secret())
        .json(&input.body(true));
    event(&call(infra, req).await?)
}

/// `PATCH …/calendars/{calendar}/events/{event}?conferenceDataVersion=1`; also restores an event
/// deleted earlier (its status becomes `confirmed` again).
pub async fn patch_event(
    infra: &Infra,
    token: &SecretString,
    calendar_id: &str,
    event_id: &str,
    input: &EventInput,
) -> Result<Event> {
    let mut url = events_url(infra, calendar_id, Some(event_id))?;
    url.query_pairs_mut().append_pair("conferenceDataVersion", "1");
    let req = http()
        .patch(url)
        .timeout(infra.settings.providers.timeout)
        .bearer_auth(token.expose_secret())
        .json(&input.body(false));
    event(&call(infra, req).await?)
}

/// `DELETE …/calendars/{calendar}/events/{event}`. An event that is already gone (404, 410) is
/// what was wanted.
pub async fn delete_event(infra: &Infra, token: &SecretString, calendar_id: &str, event_id: &str) -> Result<()> {
    let req = http()
        .delete(events_url(infra, calendar_id, Some(event_id))?)
        .timeout(infra.settings.providers.timeout)
        .bearer_auth(token.expose_secret());
    match call(infra, req).await {
        Ok(_) => Ok(()),
        Err(Error::Upstream { status: Some(404 | 410), .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `POST /calendar/v3/freeBusy`: the busy intervals of one calendar in `[from, to)`, waiting at
/// most `timeout` (it is read while a client waits for slots).
pub async fn free_busy(
    infra: &Infra,
    token: &SecretString,
    calendar_id: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    timeout: std::time::Duration,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let req = http()
        .post(url(&infra.settings.providers.google_api_base, &["calendar", "v3", "freeBusy"])?)
        .timeout(timeout)
        .bearer_auth(token.expose_secret())
        .json(&json!({
            "timeMin": from.to_rfc3339(),
            "timeMax": to.to_rfc3339(),
            "timeZone": TZ.name(),
            "items": [{"id": calendar_id}],
        }));
    busy_of(&call(infra, req).await?, calendar_id)
}

fn busy_of(body: &Value, calendar_id: &str) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let cal = &body["calendars"][calendar_id];
    if let Some(errors) = cal["errors"].as_array().filter(|e| !e.is_empty()) {
        return Err(Error::upstream_transient(
            SERVICE,
            None,
            format!("freeBusy errors: {}", Value::from(errors.clone())),
        ));
    }
    let parse =
        |v: &Value| v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc));
    let busy = cal["busy"]
        .as_array()
        .ok_or_else(|| Error::upstream_transient(SERVICE, None, "freeBusy answer without the calendar"))?;
    Ok(busy.iter().filter_map(|b| Some((parse(&b["start"])?, parse(&b["end"])?))).filter(|(s, e)| s < e).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_written_in_santiago_time_with_a_meet_request() {
        let input = EventInput {
            id: "corredor1a2".into(),
            summary: "Reunión con Ana".into(),
            description: "d".into(),
            location: None,
            start: "2026-07-14T14:00:00Z".parse().unwrap(),
            end: "2026-07-14T15:00:00Z".parse().unwrap(),
            attendees: vec!["a@x.cl".into()],
            meet_request_id: Some("corredor-2-1".into()),
        };
        let body = input.body(true);
        assert_eq!(body["start"]["dateTime"], "2026-07-14T10:00:00-04:00");
        assert_eq!(body["start"]["timeZone"], "America/Santiago");
        assert_eq!(body["conferenceData"]["createRequest"]["conferenceSolutionKey"]["type"], "hangoutsMeet");
        assert_eq!(body["id"], "corredor1a2");
        assert!(input.body(false).get("id").is_none());
    }

    #[test]
    fn the_meet_link_comes_from_the_hangout_link_or_the_video_entry_point() {
        let e = event(&json!({"id": "e1", "hangoutLink": "https://meet.google.com/abc-defg-hij"})).unwrap();
        assert_eq!(e.meet_url.as_deref(), Some("https://meet.google.com/abc-defg-hij"));
        let e = event(&json!({"id": "e2", "conferenceData": {"entryPoints": [
            {"entryPointType": "phone", "uri": "tel:+1"}, {"entryPointType": "video", "uri": "https://meet.google.com/x"}]}}))
        .unwrap();
        assert_eq!(e.meet_url.as_deref(), Some("https://meet.google.com/x"));
        assert!(event(&json!({})).is_err());
    }

    #[test]
    fn free_busy_answers_are_read_per_calendar() {
        let body = json!({"calendars": {"primary": {"busy": [
            {"start": "2026-03-09T13:00:00Z", "end": "2026-03-09T14:00:00Z"},
            {"start": "2026-03-09T11:00:00-03:00", "end": "2026-03-09T11:30:00-03:00"}]}}});
        let busy = busy_of(&body, "primary").unwrap();
        assert_eq!(busy.len(), 2);
        assert_eq!(busy[1].0.to_rfc3339(), "2026-03-09T14:00:00+00:00");
        let failed = json!({"calendars": {"primary": {"errors": [{"domain": "global", "reason": "notFound"}]}}});
        assert!(busy_of(&failed, "primary").is_err());
        assert!(busy_of(&json!({}), "primary").is_err());
    }
}
