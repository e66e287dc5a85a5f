//! Campaign types as stored and shown, the checks of what clients send, and the pure timing rules
//! (quiet hours, step delays).

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use sea_orm::QueryResult;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, FieldError, Result};
use crate::leads::model::{Stage, TZ};
use crate::text::clean_text;

pub const CHANNELS: [&str; 5] = ["telegram", "whatsapp", "email", "call", "webchat"];
pub const STATUSES: [&str; 5] = ["draft", "pending_review", "active", "paused", "completed"];
pub const TRIGGERS: [&str; 4] = ["manual", "lead_score", "stage_change", "inactivity"];
pub const ACTIONS: [&str; 3] = ["send_message", "make_call", "update_stage"];
pub const LOG_STATUSES: [&str; 4] = ["pending", "sent", "failed", "skipped"];
pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 5_000;
pub const MAX_MESSAGE: usize = 4_000;
/// A step waits at most a year after the previous one.
pub const MAX_DELAY_HOURS: i32 = 24 * 365;
/// Leads one `apply` call takes.
pub const MAX_APPLY: usize = 100_000;
/// Inactivity days when the condition does not say (the hourly trigger; reference §7.2).
pub const DEFAULT_INACTIVITY_DAYS: i64 = 30;
/// Default quiet hours in the business time zone: no message or call from 21:00 to 08:00.
pub const QUIET_FROM_HOUR: u32 = 21;
pub const QUIET_UNTIL_HOUR: u32 = 8;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Campaign {
    pub id: i64,
    pub broker_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub channel: String,
    pub status: String,
    pub triggered_by: String,
    pub trigger_condition: Value,
    pub max_contacts: Option<i32>,
    pub created_by: Option<i64>,
    pub approved_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub steps: Vec<Step>,
}

pub const CAMPAIGN_COLUMNS: &str = "id, broker_id, name, description, channel, status, triggered_by, \
    trigger_condition, max_contacts, created_by, approved_by, created_at, updated_at";

impl Campaign {
    pub fn decode(r: &QueryResult) -> std::result::Result<Self, sea_orm::DbErr> {
        Ok(Campaign {
            id: r.try_get_by_index(0)?,
            broker_id: r.try_get_by_index(1)?,
            name: r.try_get_by_index(2)?,
            description: r.try_get_by_index(3)?,
            channel: r.try_get_by_index(4)?,
            status: r.try_get_by_index(5)?,
            triggered_by: r.try_get_by_index(6)?,
            trigger_condition: r.try_get_by_index(7)?,
            max_contacts: r.try_get_by_index(8)?,
            created_by: r.try_get_by_index(9)?,
            approved_by: r.try_get_by_index(10)?,
            created_at: r.try_get_by_index(11)?,
            updated_at: r.try_get_by_index(12)?,
            steps: Vec::new(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub id: i64,
    pub campaign_id: i64,
    pub step_number: i32,
    pub action: String,
    pub delay_hours: i32,
    pub message_template_id: Option<i64>,
    pub message_text: Option<String>,
    pub use_ai_message: bool,
    pub channel: Option<String>,
    pub conditions: Value,
    pub target_stage: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const STEP_COLUMNS: &str = "id, campaign_id, step_number, action, delay_hours, message_template_id, \
    message_text, use_ai_message, channel, conditions, target_stage, created_at, updated_at";

impl Step {
    pub fn decode(r: &QueryResult) -> std::result::Result<Self, sea_orm::DbErr> {
        Ok(Step {
            id: r.try_get_by_index(0)?,
            campaign_id: r.try_get_by_index(1)?,
            step_number: r.try_get_by_index(2)?,
            action: r.try_get_by_index(3)?,
            delay_hours: r.try_get_by_index(4)?,
            message_template_id: r.try_get_by_index(5)?,
            message_text: r.try_get_by_index(6)?,
            use_ai_message: r.try_get_by_index(7)?,
            channel: r.try_get_by_index(8)?,
            conditions: r.try_get_by_index(9)?,
            target_stage: r.try_get_by_index(10)?,
            created_at: r.try_get_by_index(11)?,
            updated_at: r.try_get_by_index(12)?,
        })
    }

    /// Messages and calls reach the lead: quiet hours and stop-on-reply apply to them.
    pub fn reaches_lead(&self) -> bool {
        reaches_lead(&self.action)
    }
}

pub fn reaches_lead(action: &str) -> bool {
    matches!(action, "send_message" | "make_call")
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Log {
    pub id: i64,
    pub campaign_id: i64,
    pub lead_id: i64,
    pub step_id: Option<i64>,
    pub step_number: i32,
    pub action: String,
    pub status: String,
    pub response: Value,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub executed_at: Option<DateTime<Utc>>,
}

pub const LOG_COLUMNS: &str =
    "id, campaign_id, lead_id, step_id, step_number, action, status, response, scheduled_for, created_at, executed_at";

impl Log {
    pub fn decode(r: &QueryResult) -> std::result::Result<Self, sea_orm::DbErr> {
        Ok(Log {
            id: r.try_get_by_index(0)?,
            campaign_id: r.try_get_by_index(1)?,
            lead_id: r.try_get_by_index(2)?,
            step_id: r.try_get_by_index(3)?,
            step_number: r.try_get_by_index(4)?,
            action: r.try_get_by_index(5)?,
            status: r.try_get_by_index(6)?,
            response: r.try_get_by_index(7)?,
            scheduled_for: r.try_get_by_index(8)?,
            created_at: r.try_get_by_index(9)?,
            executed_at: r.try_get_by_index(10)?,
        })
    }
}

fn one_of(raw: &str, field: &str, valid: &[&str], query: bool) -> Result<String> {
    let v = raw.trim().to_ascii_lowercase();
    if valid.contains(&v.as_str()) {
        return Ok(v);
    }
    let msg = format!("{field} must be one of: {}", valid.join(", "));
    Err(Error::invalid(
        "validation_error",
        if query { FieldError::query(field, msg, "enum") } else { FieldError::body(field, msg, "enum") },
    ))
}

pub fn check_channel(raw: &str, field: &str, query: bool) -> Result<String> {
    one_of(raw, field, &CHANNELS, query)
}

pub fn check_status(raw: &str, field: &str, query: bool) -> Result<String> {
    one_of(raw, field, &STATUSES, query)
}

pub fn check_trigger(raw: &str) -> Result<String> {
    one_of(raw, "triggered_by", &TRIGGERS, false)
}

pub fn check_log_status(raw: &str) -> Result<String> {
    one_of(raw, "status", &LOG_STATUSES, true)
}

pub fn check_action(raw: &str) -> Result<String> {
    let a = raw.trim().to_ascii_lowercase();
    if a == "schedule_meeting" {
        return Err(Error::invalid(
            "unsupported_action",
            FieldError::body("action", "schedule_meeting steps are not supported; use send_message", "enum"),
        ));
    }
    one_of(&a, "action", &ACTIONS, false)
}

pub fn check_name(raw: &str) -> Result<String> {
    let n = clean_text(raw);
    if n.is_empty() {
        return Err(Error::invalid_body("name", "name must not be empty"));
    }
    if n.chars().count() > MAX_NAME {
        return Err(Error::invalid_body("name", format!("name must be at most {MAX_NAME} characters")));
    }
    Ok(n)
}

pub fn check_description(raw: Option<&str>) -> Result<Option<String>> {
    let d = raw.map(str::trim).filter(|d| !d.is_empty()).map(str::to_string);
    if d.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        return Err(Error::invalid_body(
            "description",
            format!("description must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(d)
}

pub fn check_max_contacts(v: Option<i64>) -> Result<Option<i32>> {
    match v {
        None => Ok(None),
        Some(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as i32)),
        Some(_) => Err(Error::invalid_body("max_contacts", "max_contacts must be at least 1")),
    }
}

/// A message step's text as it will be sent: line breaks kept, other control characters dropped.
pub fn check_message(raw: Option<&str>) -> Result<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let m: String = raw.chars().filter(|c| !c.is_control() || matches!(c, '\n' | '\t')).collect();
    let m = m.trim().to_string();
    if m.is_empty() {
        return Ok(None);
    }
    if m.chars().count() > MAX_MESSAGE {
        return Err(Error::invalid_body(
            "message_text",
            format!("message_text must be at most {MAX_MESSAGE} characters"),
        ));
    }
    Ok(Some(m))
}

pub fn check_delay(v: i64) -> Result<i32> {
    if (0..=i64::from(MAX_DELAY_HOURS)).contains(&v) {
        Ok(v as i32)
    } else {
        Err(Error::invalid_body("delay_hours", format!("delay_hours must be between 0 and {MAX_DELAY_HOURS}")))
    }
}

pub fn check_step_number(v: i64) -> Result<i32> {
    if (1..=10_000).contains(&v) {
        Ok(v as i32)
    } else {
        Err(Error::invalid_body("step_number", "step_number must be between 1 and 10000"))
    }
}

pub fn check_stage(raw: &str) -> Result<String> {
    Ok(Stage::parse_field(raw, FieldError::body("target_stage", "", "value_error"))?.as_str().to_string())
}

fn condition_number(map: &Map<String, Value>, key: &str, min: f64, max: f64) -> Result<Option<f64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Error::invalid(
                "invalid_trigger_condition",
                FieldError::body(
                    "trigger_condition",
                    format!("{key} must be a number from {min} to {max}"),
                    "value_error",
                ),
            )),
        },
    }
}

/// The trigger condition for `trigger` in its canonical shape (reference §1.15): lead_score
/// `{score_min?, score_max?}`, stage_change `{stage}` (required), inactivity `{inactivity_days?}`,
/// manual `{}`-or-anything-kept.
pub fn check_condition(trigger: &str, raw: Option<&Value>) -> Result<Value> {
    let map = match raw {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(Error::invalid(
                "invalid_trigger_condition",
                FieldError::body("trigger_condition", "trigger_condition must be an object", "dict_type"),
            ));
        }
    };
    let invalid = |msg: &str| {
        Error::invalid("invalid_trigger_condition", FieldError::body("trigger_condition", msg, "value_error"))
    };
    let mut out = Map::new();
    match trigger {
        "lead_score" => {
            let min = condition_number(&map, "score_min", 0.0, 100.0)?;
            let max = condition_number(&map, "score_max", 0.0, 100.0)?;
            if min.is_none() && max.is_none() {
                return Err(invalid("a lead_score trigger needs score_min and/or score_max"));
            }
            if let (Some(a), Some(b)) = (min, max)
                && a > b
            {
                return Err(invalid("score_min must not be above score_max"));
            }
            if let Some(a) = min {
                out.insert("score_min".into(), Value::from(a));
            }
            if let Some(b) = max {
                out.insert("score_max".into(), Value::from(b));
            }
        }
        "stage_change" => {
            let Some(stage) = map.get("stage").and_then(Value::as_str) else {
                return Err(invalid("a stage_change trigger needs `stage`"));
            };
            let stage = stage.parse::<Stage>().map_err(|_| {
                let valid: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
                invalid(&format!("stage must be one of: {}", valid.join(", ")))
            })?;
            out.insert("stage".into(), Value::from(stage.as_str()));
        }
        "inactivity" => {
            if let Some(d) = condition_number(&map, "inactivity_days", 1.0, 3650.0)? {
                out.insert("inactivity_days".into(), Value::from(d.round() as i64));
            }
        }
        _ => return Ok(Value::Object(map)),
    }
    Ok(Value::Object(out))
}

/// Business-time hours in which no message or call goes out: from `from`:00 to `until`:00 (across
/// midnight when `from > until`). Default 21:00–08:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    pub from: u32,
    pub until: u32,
}

impl Default for QuietHours {
    fn default() -> Self {
        QuietHours { from: QUIET_FROM_HOUR, until: QUIET_UNTIL_HOUR }
    }
}

impl QuietHours {
    /// `off` → `Some(None)`; `21-8` → `Some(Some(..))`; anything else → `None`.
    pub fn parse(raw: &str) -> Option<Option<Self>> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Some(None);
        }
        let (a, b) = raw.split_once('-')?;
        let (from, until) = (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?);
        (from < 24 && until < 24 && from != until).then_some(Some(QuietHours { from, until }))
    }

    fn contains(&self, hour: u32) -> bool {
        if self.from > self.until {
            hour >= self.from || hour < self.until
        } else {
            hour >= self.from && hour < self.until
        }
    }
}

/// The same instant, or the end of quiet hours (business time) when it falls inside them.
pub fn outside_quiet_hours(at: DateTime<Utc>, quiet: Option<QuietHours>) -> DateTime<Utc> {
    let Some(q) = quiet else { return at };
    let local = at.with_timezone(&TZ);
    if !q.contains(local.hour()) {
        return at;
    }
    let day = if local.hour() >= q.until { local.date_naive() + Duration::days(1) } else { local.date_naive() };
    let open = day.and_time(NaiveTime::from_hms_opt(q.until, 0, 0).unwrap_or_default());
    // The hour exists in Santiago (its clock changes at midnight), but stay total anyway.
    TZ.from_local_datetime(&open).earliest().map(|t| t.with_timezone(&Utc)).unwrap_or(at)
}

/// When a step scheduled at `from` is due: `delay_hours` later, moved out of quiet hours when the
/// step reaches the lead.
pub fn due_at(from: DateTime<Utc>, delay_hours: i32, action: &str, quiet: Option<QuietHours>) -> DateTime<Utc> {
    let at = from + Duration::hours(i64::from(delay_hours));
    if reaches_lead(action) { outside_quiet_hours(at, quiet) } else { at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn santiago(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        TZ.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap().with_timezone(&Utc)
    }

    const Q: Option<QuietHours> = Some(QuietHours { from: 21, until: 8 });

    #[test]
    fn quiet_hours_move_a_step_to_eight_in_the_morning() {
        assert_eq!(outside_quiet_hours(santiago(2026, 12, 1, 22, 30), Q), santiago(2026, 12, 2, 8, 0));
        assert_eq!(outside_quiet_hours(santiago(2026, 12, 2, 3, 0), Q), santiago(2026, 12, 2, 8, 0));
        assert_eq!(outside_quiet_hours(santiago(2026, 12, 2, 21, 0), Q), santiago(2026, 12, 3, 8, 0));
        let noon = santiago(2026, 12, 2, 12, 0);
        assert_eq!(outside_quiet_hours(noon, Q), noon);
        assert_eq!(outside_quiet_hours(santiago(2026, 12, 2, 8, 0), Q), santiago(2026, 12, 2, 8, 0));
        // Winter time (UTC-4) too.
        assert_eq!(outside_quiet_hours(santiago(2026, 6, 10, 23, 0), Q), santiago(2026, 6, 11, 8, 0));
        let late = santiago(2026, 12, 1, 23, 0);
        assert_eq!(outside_quiet_hours(late, None), late);
    }

    #[test]
    fn quiet_hours_are_configurable() {
        assert_eq!(QuietHours::parse("21-8"), Some(Q));
        assert_eq!(QuietHours::parse("off"), Some(None));
        assert_eq!(QuietHours::parse("8-8"), None);
        assert_eq!(QuietHours::parse("25-8"), None);
        let day = Some(QuietHours { from: 13, until: 15 });
        assert_eq!(outside_quiet_hours(santiago(2026, 12, 1, 14, 0), day), santiago(2026, 12, 1, 15, 0));
        assert_eq!(outside_quiet_hours(santiago(2026, 12, 1, 16, 0), day), santiago(2026, 12, 1, 16, 0));
    }

    #[test]
    fn stage_moves_ignore_quiet_hours() {
        let late = santiago(2026, 12, 1, 20, 0);
        assert_eq!(due_at(late, 2, "update_stage", Q), santiago(2026, 12, 1, 22, 0));
        assert_eq!(due_at(late, 2, "send_message", Q), santiago(2026, 12, 2, 8, 0));
    }

    #[test]
    fn trigger_conditions_are_checked_and_canonical() {
        assert_eq!(
            check_condition("stage_change", Some(&json!({"stage": "Agendado"}))).unwrap(),
            json!({"stage": "agendado"})
        );
        assert!(check_condition("stage_change", Some(&json!({}))).is_err());
        assert!(check_condition("stage_change", Some(&json!({"stage": "nope"}))).is_err());
        assert!(check_condition("lead_score", Some(&json!({"score_min": 80, "score_max": 20}))).is_err());
        assert!(check_condition("lead_score", Some(&json!({}))).is_err());
        assert_eq!(check_condition("inactivity", None).unwrap(), json!({}));
        assert!(check_condition("inactivity", Some(&json!({"inactivity_days": 0}))).is_err());
        assert!(check_condition("manual", Some(&json!([1]))).is_err());
    }

    #[test]
    fn schedule_meeting_is_refused_clearly() {
        assert_eq!(check_action("schedule_meeting").unwrap_err().code(), "unsupported_action");
        assert_eq!(check_action("Send_Message").unwrap(), "send_message");
    }
}
