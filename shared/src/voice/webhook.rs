//! VAPI server messages (`POST /api/v1/calls/webhook`, reference §3.12): `{"message": {"type": …,
//! "call": {"id": …, "metadata": {…}}, …}}`.
//!
//! Authentication first, before anything is read or written: with `x-vapi-signature` the
//! `x-vapi-timestamp` must be within [`MAX_SKEW_SECS`] of now and the signature the hex
//! HMAC-SHA256 of `"{timestamp}.{raw body}"`; otherwise `x-vapi-secret` must equal the secret.
//! The secret is `VAPI_WEBHOOK_SECRET` or the call's broker's own; anything else is 401 and
//! changes nothing.
//!
//! Events arrive duplicated and out of order: a status never moves backwards and a finished call
//! stays finished; transcript lines are keyed by their event; tool calls merge once per tool call
//! id; the end-of-call report is post-processed once (`post_processed`).

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config;
use super::model::{self, Call, rank, status_from_ended_reason, status_from_vapi};
use super::service::{self, stmt};
use crate::error::{Error, Result};
use crate::jobs::{self, voice_report::VoiceReport};
use crate::{Infra, Settings};

/// A signed message older or newer than this is refused (replays).
pub const MAX_SKEW_SECS: i64 = 300;
/// Longest transcript line kept.
const MAX_LINE: usize = 5_000;
/// Largest tool-call parameters merged into `call_output` (serialised).
const MAX_TOOL_PARAMS: usize = 16 * 1024;
/// The assistant's capture tools: their parameters are merged into `call_output`.
pub const CAPTURE_TOOLS: [&str; 5] = [
    "capture_lead_info",
    "capture_financial_info",
    "capture_confirmation",
    "capture_post_visit_feedback",
    "capture_reactivation_outcome",
];

/// The authentication headers of a request.
#[derive(Clone, Debug, Default)]
pub struct AuthHeaders {
    pub secret: Option<String>,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
}

/// HMAC-SHA256 (RFC 2104) over SHA-256.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().into()
}

/// The signature VAPI sends for `body` at `timestamp` (hex).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    hex::encode(hmac_sha256(secret.as_bytes(), &msg))
}

fn unauthorized(why: &str) -> Error {
    Error::Unauthorized(format!("Invalid webhook credentials: {why}"))
}

/// Checks the request against `secrets` (see the module docs) at `now`.
pub fn verify<S: AsRef<str>>(secrets: &[S], headers: &AuthHeaders, body: &[u8], now: DateTime<Utc>) -> Result<()> {
    if secrets.is_empty() {
        return Err(Error::bad_request(
            "voice_not_configured",
            "The VAPI webhook secret is not configured (VAPI_WEBHOOK_SECRET)",
        ));
    }
    if let Some(sig) = headers.signature.as_deref() {
        let ts_raw = headers.timestamp.as_deref().map(str::trim).ok_or_else(|| unauthorized("missing timestamp"))?;
        let ts: i64 = ts_raw.parse().map_err(|_| unauthorized("malformed timestamp"))?;
        // Seconds, or milliseconds from clients that send those.
        let secs = if ts > 100_000_000_000 { ts / 1000 } else { ts };
        if (now.timestamp() - secs).abs() > MAX_SKEW_SECS {
            return Err(unauthorized("stale timestamp"));
        }
        let given = sig.trim().trim_start_matches("sha256=").to_ascii_lowercase();
        let ok = secrets.iter().any(|s| sign(s.as_ref(), ts_raw, body).as_bytes().ct_eq(given.as_bytes()).into());
        return if ok { Ok(()) } else { Err(unauthorized("wrong signature")) };
    }
    let given = headers.secret.as_deref().ok_or_else(|| unauthorized("missing x-vapi-secret"))?;
    if secrets.iter().any(|s| bool::from(s.as_ref().as_bytes().ct_eq(given.as_bytes()))) {
        Ok(())
    } else {
        Err(unauthorized("wrong secret"))
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str().filter(|s| !s.is_empty())
}

fn id_at(v: &Value, path: &[&str]) -> Option<i64> {
    let v = path.iter().try_fold(v, |v, k| v.get(*k))?;
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The call a message is about: by VAPI's call id, else by our id in the call's metadata (only
/// while that call is not linked to another VAPI call). Reads only; the second value is the VAPI
/// id to link the call to, once the message is authenticated.
async fn locate(infra: &Infra, message: &Value) -> Result<(Option<Call>, Option<String>)> {
    let external = str_at(message, &["call", "id"]);
    if let Some(ext) = external {
        let sql = format!("SELECT {} FROM voice_calls WHERE external_call_id = $1", model::COLUMNS);
        if let Some(r) = infra.db.query_one_raw(stmt(&sql, vec![ext.into()])).await? {
            return Ok((Some(Call::decode(&r)?), None));
        }
    }
    let Some(id) = id_at(message, &["call", "metadata", "call_id"]) else {
        return Ok((None, None));
    };
    let Some(call) = service::find(&infra.db, id).await? else {
        return Ok((None, None));
    };
    Ok(match (&call.external_call_id, external) {
        (None, Some(ext)) => (Some(call), Some(ext.to_string())),
        (Some(_), Some(_)) => (None, None),
        (_, None) => (Some(call), None),
    })
}

/// Links `call` to VAPI's call id `ext` (the call was placed, but its job has not recorded the id
/// yet). `None` when another call already has that id.
async fn link(infra: &Infra, call: Call, ext: &str) -> Result<Option<Call>> {
    let linked = infra
        .db
        .execute_raw(stmt(
            "UPDATE voice_calls SET external_call_id = $2, updated_at = now() WHERE id = $1 AND external_call_id IS NULL",
            vec![call.id.into(), ext.into()],
        ))
        .await;
    match linked {
        Ok(_) => {
            let now = service::find(&infra.db, call.id).await?;
            Ok(now.filter(|c| c.external_call_id.as_deref() == Some(ext)))
        }
        Err(e) if crate::db::unique_constraint(&e).is_some() => {
            tracing::warn!(call_id = call.id, "the VAPI call id belongs to another call");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The broker whose VAPI phone number a message names (assistant requests carry no call of ours).
async fn broker_of_phone_number(infra: &Infra, phone_number_id: &str) -> Result<Option<(i64, Option<String>)>> {
    let row = infra
        .db
        .query_one_raw(stmt(
            "SELECT broker_id, assistant_id_default FROM broker_voice_configs WHERE phone_number_id = $1 \
             ORDER BY id LIMIT 1",
            vec![phone_number_id.into()],
        ))
        .await?;
    Ok(row.map(|r| Ok::<_, sea_orm::DbErr>((r.try_get_by_index(0)?, r.try_get_by_index(1)?))).transpose()?)
}

fn phone_number_id(message: &Value) -> Option<&str> {
    str_at(message, &["call", "phoneNumberId"]).or_else(|| str_at(message, &["phoneNumber", "id"]))
}

/// Whether the request carries the deployment's own secret (`VAPI_WEBHOOK_SECRET`), checked
/// without reading anything.
fn deployment_secret_matches(settings: &Settings, headers: &AuthHeaders, raw: &[u8], now: DateTime<Utc>) -> bool {
    let Some(secret) = settings.providers.vapi_webhook_secret.as_ref().map(|s| s.expose_secret()) else {
        return false;
    };
    !secret.is_empty() && verify(&[secret], headers, raw, now).is_ok()
}

/// Handles one server message; returns the JSON VAPI gets back.
#[tracing::instrument(skip_all)]
pub async fn handle(infra: &Infra, headers: &AuthHeaders, raw: &[u8]) -> Result<Value> {
    let mut payload: Option<Value> = serde_json::from_slice(raw).ok();
    let message = payload.as_mut().and_then(|p| p.get_mut("message")).map(Value::take).unwrap_or(Value::Null);
    let now = Utc::now();
    let deployment_ok = deployment_secret_matches(&infra.settings, headers, raw, now);
    // Live transcript lines are most of a call's events: with the deployment's secret and VAPI's
    // call id, one statement finds the call and stores the line.
    if deployment_ok
        && is_transcript(str_at(&message, &["type"]))
        && let (Some(ext), Some(line)) = (str_at(&message, &["call", "id"]), final_line(&message))
        && store_line(infra, CallKey::External(ext), line).await?.is_some()
    {
        return Ok(json!({"ok": true}));
    }
    let (call, to_link) = if message.is_object() { locate(infra, &message).await? } else { (None, None) };
    let phone_broker = match (&call, phone_number_id(&message)) {
        (None, Some(p)) => broker_of_phone_number(infra, p).await?,
        _ => None,
    };
    let broker = call.as_ref().map(|c| c.broker_id).or(phone_broker.as_ref().map(|(b, _)| *b));
    // The deployment's secret first (no read); the broker's own only when that one does not match.
    if !deployment_ok {
        verify(&config::webhook_secrets(infra, broker).await?, headers, raw, now)?;
    }
    if payload.is_none() {
        return Err(Error::invalid_body("message", "The body is not valid JSON"));
    }
    let call = match (call, to_link) {
        (Some(c), Some(ext)) => link(infra, c, &ext).await?,
        (call, _) => call,
    };
    let kind = str_at(&message, &["type"]).ok_or_else(|| Error::invalid_body("message", "message.type is required"))?;
    tracing::debug!(kind, call_id = call.as_ref().map(|c| c.id), "VAPI server message");
    if kind == "assistant-request" {
        return Ok(assistant(&infra.settings, &message, phone_broker));
    }
    if kind == "tool-calls" {
        return tool_calls(infra, call.as_ref(), &message).await;
    }
    let Some(call) = call else {
        return Ok(json!({"ok": true}));
    };
    match kind {
        "status-update" => {
            let ended = str_at(&message, &["endedReason"]);
            if let Some(status) = str_at(&message, &["status"]).and_then(|s| status_from_vapi(s, ended)) {
                advance(infra, &call, status, ended, None).await?;
            }
            Ok(json!({"ok": true}))
        }
        "call-started" => {
            advance(infra, &call, "answered", None, None).await?;
            Ok(json!({"ok": true}))
        }
        _ if is_transcript(Some(kind)) => {
            if let Some(line) = final_line(&message).filter(|_| !call.post_processed) {
                store_line(infra, CallKey::Id(call.id), line).await?;
            }
            Ok(json!({"ok": true}))
        }
        "end-of-call-report" => {
            end_of_call(infra, &call, &message).await?;
            Ok(json!({"ok": true}))
        }
        "hang" => {
            advance(infra, &call, "cancelled", Some("hang"), None).await?;
            Ok(json!({"ok": true}))
        }
        _ => Ok(json!({"status": "ignored"})),
    }
}

/// `assistant-request`: the assistant of the broker that owns the phone number, else the
/// deployment's for its own number.
fn assistant(settings: &Settings, message: &Value, phone_broker: Option<(i64, Option<String>)>) -> Value {
    if let Some((_, Some(a))) = phone_broker.filter(|(_, a)| a.as_ref().is_some_and(|a| !a.trim().is_empty())) {
        return json!({"assistantId": a});
    }
    let p = &settings.providers;
    match (phone_number_id(message), p.vapi_phone_number_id.as_deref(), p.vapi_assistant_id.as_deref()) {
        (Some(asked), Some(ours), Some(a)) if asked == ours && !a.is_empty() => json!({"assistantId": a}),
        _ => json!({"error": "No assistant configured"}),
    }
}

/// Moves `call` to `status` if that is further along; publishes `call_status` when it moved.
async fn advance(
    infra: &Infra,
    call: &Call,
    status: &str,
    ended_reason: Option<&str>,
    duration: Option<i64>,
) -> Result<bool> {
    // A duplicated or late event (VAPI repeats statuses) changes nothing: no write. The UPDATE's
    // own condition still decides when two events race.
    if rank(&call.status) >= rank(status) {
        return Ok(false);
    }
    let terminal = model::is_terminal(status);
    let reason: Option<String> = ended_reason.map(|r| r.chars().take(200).collect());
    let row = infra
        .db
        .query_one_raw(stmt(
            "UPDATE voice_calls SET status = $2, \
               started_at = CASE WHEN $2 IN ('ringing', 'answered') THEN COALESCE(started_at, now()) ELSE started_at END, \
               completed_at = CASE WHEN $3 THEN COALESCE(completed_at, now()) ELSE completed_at END, \
               ended_reason = COALESCE($4, ended_reason), \
               duration = CASE WHEN $3 THEN COALESCE($5::int, duration, \
                   CASE WHEN started_at IS NULL THEN 0 ELSE GREATEST(0, extract(epoch FROM now() - started_at))::int END) \
                 ELSE duration END, \
               updated_at = now() \
             WHERE id = $1 AND (CASE status WHEN 'initiated' THEN 0 WHEN 'ringing' THEN 1 WHEN 'answered' THEN 2 \
                                ELSE 3 END) < $6 \
             RETURNING status",
            vec![
                call.id.into(),
                status.into(),
                terminal.into(),
                reason.into(),
                duration.map(|d| d.clamp(0, i64::from(i32::MAX))).into(),
                i32::from(rank(status)).into(),
            ],
        ))
        .await?;
    if row.is_some() {
        service::notify(
            infra,
            call,
            "call_status",
            json!({"call_id": call.id, "lead_id": call.lead_id, "status": status}),
        )
        .await;
    }
    Ok(row.is_some())
}

fn clean_line(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control() || *c == '\n').collect();
    s.trim().chars().take(MAX_LINE).collect()
}

/// A live transcript line, ready to store: the speaker, the cleaned text, VAPI's timestamp (epoch
/// milliseconds) and the key that makes a redelivered event add nothing.
struct Line {
    speaker: &'static str,
    text: String,
    at_ms: Option<i64>,
    key: String,
}

/// The line a `transcript` message carries: only final lines of a known speaker with some text.
fn final_line(message: &Value) -> Option<Line> {
    if str_at(message, &["transcriptType"]).is_some_and(|t| t != "final") {
        return None;
    }
    let speaker = str_at(message, &["role"]).and_then(model::speaker_from_role)?;
    let text = clean_line(str_at(message, &["transcript"]).unwrap_or_default());
    if text.is_empty() {
        return None;
    }
    let at_ms = message.get("timestamp").and_then(Value::as_i64);
    let digest = hex::encode(&Sha256::digest(format!("{speaker}\u{0}{text}").as_bytes())[..8]);
    let key = format!("live:{}:{digest}", at_ms.map_or_else(|| "-".to_string(), |m| m.to_string()));
    Some(Line { speaker, text, at_ms, key })
}

fn is_transcript(kind: Option<&str>) -> bool {
    matches!(kind, Some("transcript" | "transcript[transcriptType=\"final\"]"))
}

/// Which call a line belongs to: ours (already located) or VAPI's id.
enum CallKey<'a> {
    Id(i64),
    External(&'a str),
}

/// Stores `line` on the call `key` names, in one statement that also reads what the event needs
/// (the call's broker, lead and agent). `None` when no such call exists; otherwise whether the
/// line was new (not a redelivery, and the call not yet post-processed) — then `call_transcript`
/// is published.
///
/// The line's offset is taken from VAPI's timestamp against the call's start (its creation while
/// it has not started), else from now. Committed without waiting for the WAL flush (the wait
/// would be most of this request's time): a live line is a preview that the end-of-call report's
/// transcript replaces, so only a database crash within a fraction of a second of the line, on a
/// call whose report carries no transcript, could lose it. `set_config(…, true)` holds for this
/// statement's own transaction only.
async fn store_line(infra: &Infra, key: CallKey<'_>, line: Line) -> Result<Option<bool>> {
    let (cond, id): (&str, sea_orm::Value) = match key {
        CallKey::Id(id) => ("id = $1", id.into()),
        CallKey::External(ext) => ("external_call_id = $1", ext.into()),
    };
    let sql = format!(
        "WITH c AS (SELECT id, broker_id, lead_id, agent_user_id, post_processed, \
                           extract(epoch FROM COALESCE(started_at, created_at)) AS t0 \
                    FROM voice_calls WHERE {cond}), \
              ins AS (INSERT INTO call_transcripts (voice_call_id, speaker, text, \"timestamp\", source_key) \
                      SELECT c.id, $2, $3, \
                             GREATEST(0, COALESCE($4::bigint / 1000.0 - c.t0, extract(epoch FROM now()) - c.t0))::float8, $5 \
                      FROM c, (SELECT set_config('synchronous_commit', 'off', true)) async_commit \
                      WHERE NOT c.post_processed \
                      ON CONFLICT (voice_call_id, source_key) DO NOTHING RETURNING 1) \
         SELECT c.id, c.broker_id, c.lead_id, c.agent_user_id, EXISTS (SELECT 1 FROM ins) FROM c"
    );
    let values = vec![id, line.speaker.into(), line.text.clone().into(), line.at_ms.into(), line.key.into()];
    let Some(row) = infra.db.query_one_raw(stmt(&sql, values)).await? else {
        return Ok(None);
    };
    let (call_id, broker_id, lead_id, agent): (i64, i64, i64, Option<i64>) =
        (row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?, row.try_get_by_index(3)?);
    let inserted: bool = row.try_get_by_index(4)?;
    if inserted {
        let data = json!({"call_id": call_id, "lead_id": lead_id, "speaker": line.speaker, "transcript": line.text});
        service::notify_to(infra, broker_id, agent, "call_transcript", data).await;
    }
    Ok(Some(inserted))
}

/// One tool call of a `tool-calls` message: `{id, name, parameters}` in either of VAPI's shapes
/// (`toolCallList[]` with `function.arguments` as an object or a JSON string, or the older flat one).
fn tool_call(item: &Value) -> Option<(String, String, Value)> {
    let id = str_at(item, &["id"])?.to_string();
    let name = str_at(item, &["function", "name"]).or_else(|| str_at(item, &["name"]))?.to_string();
    let raw = item.get("function").and_then(|f| f.get("arguments")).or_else(|| item.get("parameters"));
    let params = match raw {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    Some((id, name, params))
}

/// `tool-calls`: runs each capture tool (its parameters merged into `call_output`, once per tool
/// call id) and answers in VAPI's result format.
async fn tool_calls(infra: &Infra, call: Option<&Call>, message: &Value) -> Result<Value> {
    let list: Vec<Value> = match message.get("toolCallList").and_then(Value::as_array) {
        Some(items) => items.clone(),
        None => message
            .get("toolWithToolCallList")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(|t| t.get("toolCall").cloned()).collect())
            .unwrap_or_default(),
    };
    let mut results = Vec::new();
    for (id, name, params) in list.iter().filter_map(tool_call) {
        let result = match call {
            None => "No encontré esta llamada; la información no se guardó.".to_string(),
            Some(_) if !CAPTURE_TOOLS.contains(&name.as_str()) => format!("Herramienta desconocida: {name}"),
            Some(c) => {
                let params = match params {
                    Value::Object(m) if serde_json::to_string(&m).map_or(0, |s| s.len()) <= MAX_TOOL_PARAMS => m,
                    _ => serde_json::Map::new(),
                };
                infra
                    .db
                    .execute_raw(stmt(
                        "UPDATE voice_calls SET call_output = call_output || jsonb_strip_nulls($2::jsonb), \
                           processed_tool_calls = processed_tool_calls || jsonb_build_array($3::text), \
                           updated_at = now() \
                         WHERE id = $1 AND NOT jsonb_exists(processed_tool_calls, $3::text)",
                        vec![c.id.into(), Value::Object(params).into(), id.clone().into()],
                    ))
                    .await?;
                "Información registrada.".to_string()
            }
        };
        results.push(json!({"name": name, "toolCallId": id, "result": result}));
    }
    Ok(json!({"results": results}))
}

/// `end-of-call-report`: the call's final status, duration and recording; the report is kept for
/// `voice_report`, which is enqueued (it runs once: `post_processed`).
async fn end_of_call(infra: &Infra, call: &Call, message: &Value) -> Result<()> {
    let ended = str_at(message, &["endedReason"]);
    let status = ended.map_or("completed", status_from_ended_reason);
    let duration = message
        .get("durationSeconds")
        .and_then(Value::as_f64)
        .or_else(|| message.get("durationMs").and_then(Value::as_f64).map(|ms| ms / 1000.0))
        .map(|d| d.round() as i64);
    advance(infra, call, status, ended, duration).await?;
    let mut report = message.clone();
    if let Some(obj) = report.as_object_mut() {
        // The call object repeats the assistant's whole configuration; the report needs none of it.
        obj.remove("call");
        obj.remove("assistant");
        obj.remove("customer");
        obj.remove("phoneNumber");
    }
    let recording = str_at(message, &["artifact", "recordingUrl"])
        .or_else(|| str_at(message, &["artifact", "recording", "url"]))
        .or_else(|| str_at(message, &["artifact", "recording", "mono", "combinedUrl"]))
        .or_else(|| str_at(message, &["recordingUrl"]))
        .map(|u| u.chars().take(1000).collect::<String>());
    let stored = infra
        .db
        .execute_raw(stmt(
            "UPDATE voice_calls SET report = $2, recording_url = COALESCE($3, recording_url), \
               duration = COALESCE($4::int, duration), updated_at = now() \
             WHERE id = $1 AND NOT post_processed",
            vec![
                call.id.into(),
                report.into(),
                recording.into(),
                duration.map(|d| d.clamp(0, i64::from(i32::MAX))).into(),
            ],
        ))
        .await?;
    if stored.rows_affected() > 0 {
        jobs::enqueue(infra, VoiceReport { broker_id: call.broker_id, lead_id: call.lead_id, call_id: call.id })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaau8; 131];
        assert_eq!(
            hex::encode(hmac_sha256(&long_key, b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signatures_and_secrets_are_checked() {
        let now = Utc::now();
        let secrets = vec!["s3cret".to_string()];
        let body = br#"{"message":{"type":"hang"}}"#;
        let ts = now.timestamp().to_string();
        let good =
            AuthHeaders { signature: Some(sign("s3cret", &ts, body)), timestamp: Some(ts.clone()), secret: None };
        assert!(verify(&secrets, &good, body, now).is_ok());
        let wrong = AuthHeaders { signature: Some(sign("other", &ts, body)), ..good.clone() };
        assert_eq!(verify(&secrets, &wrong, body, now).unwrap_err().status(), 401);
        let stale_ts = (now.timestamp() - 301).to_string();
        let stale =
            AuthHeaders { signature: Some(sign("s3cret", &stale_ts, body)), timestamp: Some(stale_ts), secret: None };
        assert_eq!(verify(&secrets, &stale, body, now).unwrap_err().status(), 401);
        let tampered = b"{\"message\":{\"type\":\"status-update\"}}";
        assert_eq!(verify(&secrets, &good, tampered, now).unwrap_err().status(), 401);
        let plain = AuthHeaders { secret: Some("s3cret".into()), ..AuthHeaders::default() };
        assert!(verify(&secrets, &plain, body, now).is_ok());
        let bad = AuthHeaders { secret: Some("s3cre".into()), ..AuthHeaders::default() };
        assert_eq!(verify(&secrets, &bad, body, now).unwrap_err().status(), 401);
        assert_eq!(verify(&secrets, &AuthHeaders::default(), body, now).unwrap_err().status(), 401);
        assert_eq!(verify::<&str>(&[], &plain, body, now).unwrap_err().code(), "voice_not_configured");
    }

    #[test]
    fn tool_calls_are_read_in_both_shapes() {
        let new = json!({"id": "t1", "type": "function",
                         "function": {"name": "capture_lead_info", "arguments": "{\"email\":\"a@b.cl\"}"}});
        assert_eq!(tool_call(&new), Some(("t1".into(), "capture_lead_info".into(), json!({"email": "a@b.cl"}))));
        let old = json!({"id": "t2", "name": "capture_confirmation", "parameters": {"confirmed": true}});
        assert_eq!(tool_call(&old), Some(("t2".into(), "capture_confirmation".into(), json!({"confirmed": true}))));
        assert_eq!(tool_call(&json!({"name": "x"})), None);
    }
}
