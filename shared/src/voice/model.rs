//! The call as the API shows it, its statuses and purposes, and the mapping of VAPI's status words
//! and ended reasons onto them. Pure.

use chrono::{DateTime, Utc};
use sea_orm::QueryResult;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, FieldError, Result};

/// Statuses of a call; the first three are active (they count against the broker's limit).
pub const STATUSES: [&str; 8] =
    ["initiated", "ringing", "answered", "completed", "failed", "no_answer", "busy", "cancelled"];
pub const ACTIVE: [&str; 3] = ["initiated", "ringing", "answered"];
/// What a call is for (reference §1.17).
pub const PURPOSES: [&str; 6] = [
    "calificacion_inicial",
    "calificacion_financiera",
    "confirmacion_reunion",
    "confirmacion_visita",
    "seguimiento_post_visita",
    "reactivacion",
];
/// At most this many active calls per broker (reference §9.6).
pub const MAX_ACTIVE_PER_BROKER: i64 = 5;

/// How far along a status is: a webhook event never moves a call backwards, and a finished call
/// stays finished (events arrive duplicated and out of order).
pub fn rank(status: &str) -> u8 {
    match status {
        "initiated" => 0,
        "ringing" => 1,
        "answered" => 2,
        _ => 3,
    }
}

pub fn is_terminal(status: &str) -> bool {
    rank(status) == 3
}

/// Our status for a VAPI `status-update` status (`queued`, `ringing`, `in-progress`, `forwarding`,
/// `ended`); `ended` is refined by the ended reason when VAPI gives one.
pub fn status_from_vapi(status: &str, ended_reason: Option<&str>) -> Option<&'static str> {
    match status {
        "queued" | "scheduled" => Some("initiated"),
        "ringing" => Some("ringing"),
        "in-progress" | "forwarding" => Some("answered"),
        "ended" => Some(ended_reason.map_or("completed", status_from_ended_reason)),
        "failed" => Some("failed"),
        "busy" => Some("busy"),
        "no-answer" => Some("no_answer"),
        _ => None,
    }
}

/// Our final status for VAPI's `endedReason` (`customer-ended-call`, `customer-did-not-answer`,
/// `customer-busy`, `pipeline-error-…`, …).
pub fn status_from_ended_reason(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("did-not-answer") || r.contains("no-answer") || r.contains("voicemail") {
        "no_answer"
    } else if r.contains("busy") {
        "busy"
    } else if r.contains("error") || r.contains("failed") || r.contains("fault") {
        "failed"
    } else if r.contains("cancel") {
        "cancelled"
    } else {
        "completed"
    }
}

/// Parses a status filter (422 naming `field` otherwise).
pub fn parse_status(raw: &str, field: &str) -> Result<&'static str> {
    let s = raw.trim().to_ascii_lowercase();
    STATUSES.iter().find(|v| **v == s).copied().ok_or_else(|| {
        Error::invalid(
            "validation_error",
            FieldError::query(field, format!("status must be one of {}", STATUSES.join(", ")), "enum"),
        )
    })
}

/// Parses a call purpose; `query` says where it came from (for the error's `loc`).
pub fn parse_purpose(raw: &str, field: &str, query: bool) -> Result<&'static str> {
    let p = raw.trim().to_ascii_lowercase();
    PURPOSES.iter().find(|v| **v == p).copied().ok_or_else(|| {
        let msg = format!("call_purpose must be one of {}", PURPOSES.join(", "));
        let loc = if query { FieldError::query(field, msg, "enum") } else { FieldError::body(field, msg, "enum") };
        Error::invalid("validation_error", loc)
    })
}

/// A call as clients see it (reference §3.12 VoiceCall JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Call {
    pub id: i64,
    pub broker_id: i64,
    pub lead_id: i64,
    pub campaign_id: Option<i64>,
    pub agent_user_id: Option<i64>,
    pub phone_number: String,
    pub external_call_id: Option<String>,
    pub status: String,
    pub duration: Option<i32>,
    pub recording_url: Option<String>,
    pub transcript: Option<String>,
    pub summary: Option<String>,
    pub ended_reason: Option<String>,
    pub stage_after_call: Option<String>,
    pub score_delta: f64,
    pub post_processed: bool,
    pub call_mode: String,
    pub call_purpose: Option<String>,
    pub call_output: Value,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns [`Call::decode`] reads, in order.
pub const COLUMNS: &str = "id, broker_id, lead_id, campaign_id, agent_user_id, phone_number, external_call_id, status, \
     duration, recording_url, transcript, summary, ended_reason, stage_after_call, score_delta, post_processed, \
     call_mode, call_purpose, call_output, started_at, completed_at, created_at, updated_at";

impl Call {
    pub fn decode(r: &QueryResult) -> std::result::Result<Self, sea_orm::DbErr> {
        Ok(Call {
            id: r.try_get_by_index(0)?,
            broker_id: r.try_get_by_index(1)?,
            lead_id: r.try_get_by_index(2)?,
            campaign_id: r.try_get_by_index(3)?,
            agent_user_id: r.try_get_by_index(4)?,
            phone_number: r.try_get_by_index(5)?,
            external_call_id: r.try_get_by_index(6)?,
            status: r.try_get_by_index(7)?,
            duration: r.try_get_by_index(8)?,
            recording_url: r.try_get_by_index(9)?,
            transcript: r.try_get_by_index(10)?,
            summary: r.try_get_by_index(11)?,
            ended_reason: r.try_get_by_index(12)?,
            stage_after_call: r.try_get_by_index(13)?,
            score_delta: r.try_get_by_index(14)?,
            post_processed: r.try_get_by_index(15)?,
            call_mode: r.try_get_by_index(16)?,
            call_purpose: r.try_get_by_index(17)?,
            call_output: r.try_get_by_index(18)?,
            started_at: r.try_get_by_index(19)?,
            completed_at: r.try_get_by_index(20)?,
            created_at: r.try_get_by_index(21)?,
            updated_at: r.try_get_by_index(22)?,
        })
    }

    pub fn is_active(&self) -> bool {
        ACTIVE.contains(&self.status.as_str())
    }
}

/// One line of a call's transcript.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TranscriptLine {
    /// `bot`, `customer` or `agent`.
    pub speaker: String,
    pub text: String,
    /// Seconds from the start of the call.
    pub timestamp: f64,
    pub confidence: Option<f64>,
}

/// Our speaker for a VAPI role (`assistant`/`bot` → bot, `user`/`customer` → customer); `None` for
/// system prompts and tool messages, which are not part of the conversation.
pub fn speaker_from_role(role: &str) -> Option<&'static str> {
    match role {
        "assistant" | "bot" | "ai" => Some("bot"),
        "user" | "customer" => Some("customer"),
        "agent" | "human" => Some("agent"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vapi_statuses_map_onto_ours() {
        assert_eq!(status_from_vapi("queued", None), Some("initiated"));
        assert_eq!(status_from_vapi("ringing", None), Some("ringing"));
        assert_eq!(status_from_vapi("in-progress", None), Some("answered"));
        assert_eq!(status_from_vapi("ended", None), Some("completed"));
        assert_eq!(status_from_vapi("ended", Some("customer-did-not-answer")), Some("no_answer"));
        assert_eq!(status_from_vapi("ended", Some("customer-busy")), Some("busy"));
        assert_eq!(status_from_vapi("ended", Some("pipeline-error-openai-llm-failed")), Some("failed"));
        assert_eq!(status_from_vapi("ended", Some("customer-ended-call")), Some("completed"));
        assert_eq!(status_from_vapi("whatever", None), None);
    }

    #[test]
    fn statuses_only_move_forward() {
        assert!(rank("ringing") > rank("initiated"));
        assert!(rank("answered") > rank("ringing"));
        assert!(is_terminal("completed") && is_terminal("cancelled") && !is_terminal("answered"));
    }

    #[test]
    fn purposes_and_statuses_are_checked() {
        assert_eq!(parse_purpose(" Reactivacion ", "call_purpose", false).unwrap(), "reactivacion");
        assert_eq!(parse_purpose("x", "call_purpose", false).unwrap_err().status(), 422);
        assert_eq!(parse_status("BUSY", "status").unwrap(), "busy");
        assert!(parse_status("done", "status").is_err());
    }
}
