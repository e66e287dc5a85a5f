//! The webhook endpoints' work, provider by provider (the API routes only hand over the raw
//! request). Authentication comes first and nothing is read or stored before it passes:
//! Telegram's `X-Telegram-Bot-Api-Secret-Token` (401 when wrong or when no secret is configured),
//! WhatsApp's `X-Hub-Signature-256` (403). An answer of 200 means every message of the delivery is
//! stored and its job enqueued; a failure is a 5xx, so the provider delivers again.

use redis::AsyncCommands;
use serde_json::{Value, json};

use super::config::{self, WhatsAppCreds};
use super::inbound::{self, Received};
use super::telegram::{self, Update};
use super::whatsapp::{self, Event};
use crate::Infra;
use crate::error::{Error, Result};

/// Telegram keeps undelivered updates for 24 hours; so does the `update_id` dedupe.
const UPDATE_TTL_SECS: u64 = 86_400;

fn parse_json(raw: &[u8]) -> Result<Value> {
    serde_json::from_slice(raw).map_err(|_| Error::bad_request("invalid_payload", "The body is not valid JSON"))
}

/// `POST /webhooks/telegram` (`broker_id = None`: the platform bot) and
/// `POST /webhooks/chat/{broker_id}/telegram` (the broker's own bot).
pub async fn telegram(infra: &Infra, broker_id: Option<i64>, secret: Option<&str>, raw: &[u8]) -> Result<Value> {
    let (broker, creds) = match broker_id {
        Some(b) => (b, config::broker_telegram(infra, b).await?.ok_or(Error::NotFound("Channel"))?),
        None => match config::platform_telegram(infra) {
            Some((Some(b), c)) => (b, c),
            _ => return Err(Error::NotFound("Channel")),
        },
    };
    let authentic = match (&creds.webhook_secret, secret) {
        (Some(expected), Some(given)) => super::secrets_match(given.as_bytes(), expected.as_bytes()),
        _ => false,
    };
    if !authentic {
        return Err(Error::Unauthorized("Invalid secret token".into()));
    }
    let body = parse_json(raw)?;
    let Some(update) = telegram::parse_update(&body) else {
        return Err(Error::bad_request("invalid_payload", "The body is not a Telegram update"));
    };
    let (update_id, message) = match update {
        Update::Ignored { .. } => return Ok(json!({"ok": true})),
        Update::Message { update_id, message } => (update_id, message),
    };
    let scope = broker_id.map_or_else(|| "platform".to_string(), |b| b.to_string());
    let key = format!("{}:tg_update:{scope}:{update_id}", infra.prefix());
    let mut conn = infra.redis.clone();
    let seen: bool = conn.exists(&key).await?;
    if seen {
        return Ok(json!({"ok": true, "duplicate": true}));
    }
    let received = inbound::receive(infra, broker, *message).await?;
    // Only once stored and enqueued: a failed attempt must not hide the redelivery.
    let _: () = conn.set_ex(&key, 1, UPDATE_TTL_SECS).await?;
    Ok(json!({"ok": true, "duplicate": matches!(received, Received::Duplicate { .. })}))
}

/// `GET /webhooks/whatsapp` and `GET /webhooks/chat/{broker_id}/whatsapp`: the subscription
/// handshake. Returns the challenge to echo, or 403.
pub async fn whatsapp_verify(
    infra: &Infra,
    broker_id: Option<i64>,
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
) -> Result<String> {
    let expected = match broker_id {
        Some(b) => config::broker_whatsapp(infra, b).await?.and_then(|c| c.verify_token),
        None => {
            use secrecy::ExposeSecret;
            infra.settings.providers.whatsapp_verify_token.as_ref().map(|t| t.expose_secret().to_string())
        }
    };
    let ok = mode == Some("subscribe")
        && matches!((&expected, token), (Some(e), Some(t)) if super::secrets_match(t.as_bytes(), e.as_bytes()));
    match (ok, challenge) {
        (true, Some(c)) if c.len() <= 256 => Ok(c.to_string()),
        _ => Err(Error::forbidden("Verification failed")),
    }
}

/// The credentials whose app secret signs a delivery: the broker's for its own path; on the
/// platform path the platform's app secret, else the secret of the broker owning the first
/// `phone_number_id` in the (not yet trusted) body.
async fn signer(infra: &Infra, broker_id: Option<i64>, raw: &[u8]) -> Result<Option<String>> {
    if let Some(b) = broker_id {
        let creds = config::broker_whatsapp(infra, b).await?.ok_or(Error::NotFound("Channel"))?;
        return Ok(creds.app_secret);
    }
    if let Some((_, c)) = config::platform_whatsapp(infra)
        && let Some(secret) = c.app_secret
    {
        return Ok(Some(secret));
    }
    if let Some(secret) = infra.settings.providers.whatsapp_app_secret.as_ref() {
        use secrecy::ExposeSecret;
        return Ok(Some(secret.expose_secret().to_string()));
    }
    let Ok(body) = serde_json::from_slice::<Value>(raw) else { return Ok(None) };
    let first = whatsapp::parse(&body).into_iter().next().map(|e| match e {
        Event::Message { phone_number_id, .. } | Event::Status { phone_number_id, .. } => phone_number_id,
    });
    match first {
        Some(p) => Ok(config::whatsapp_by_phone(infra, &p).await?.and_then(|(_, c)| c.app_secret)),
        None => Ok(None),
    }
}

/// `POST /webhooks/whatsapp` and `POST /webhooks/chat/{broker_id}/whatsapp`.
pub async fn whatsapp(infra: &Infra, broker_id: Option<i64>, signature: Option<&str>, raw: &[u8]) -> Result<Value> {
    let secret = signer(infra, broker_id, raw).await?;
    if !secret.as_deref().is_some_and(|s| whatsapp::signature_ok(s, raw, signature)) {
        return Err(Error::forbidden("Invalid signature"));
    }
    let body = parse_json(raw)?;
    let own: Option<WhatsAppCreds> = match broker_id {
        Some(b) => config::broker_whatsapp(infra, b).await?,
        None => None,
    };
    let (mut stored, mut duplicates, mut statuses, mut ignored) = (0u32, 0u32, 0u32, 0u32);
    for event in whatsapp::parse(&body) {
        let phone = match &event {
            Event::Message { phone_number_id, .. } | Event::Status { phone_number_id, .. } => phone_number_id.clone(),
        };
        let broker = match (broker_id, &own) {
            (Some(b), Some(c)) if c.phone_number_id == phone => Some(b),
            (Some(_), _) => None,
            (None, _) => config::whatsapp_by_phone(infra, &phone).await?.map(|(b, _)| b),
        };
        let Some(broker) = broker else {
            tracing::warn!(phone_number_id = %phone, "whatsapp event for a number no broker has; ignored");
            ignored += 1;
            continue;
        };
        match event {
            Event::Message { message, .. } => match inbound::receive(infra, broker, message).await? {
                Received::Stored { .. } => stored += 1,
                Received::Duplicate { .. } => duplicates += 1,
            },
            Event::Status { wamid, status, errors, .. } => {
                super::sender::apply_status(infra, broker, &wamid, &status, errors.as_ref()).await?;
                statuses += 1;
            }
        }
    }
    Ok(json!({"status": "ok", "stored": stored, "duplicates": duplicates, "statuses": statuses, "ignored": ignored}))
}
