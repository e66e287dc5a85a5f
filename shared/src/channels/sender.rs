//! The channel sender: the one way a written message reaches a lead on Telegram or WhatsApp —
//! Sofía's replies, a person's messages, appointment reminders and (later) campaigns.
//!
//! Every outbound message is first a `chat_messages` row (`direction = out`); [`deliver`] sends a
//! row under the idempotency key `send:{id}` ([`crate::effects`]), so retries, redeliveries,
//! sweeps and DLQ retries send it once. The row records the outcome: `sent` with the provider's
//! message id (`provider_metadata.provider_message_id`, which WhatsApp status callbacks move on to
//! `delivered` / `read` / `failed`), or `failed` with the provider's error.
//!
//! WhatsApp's 24-hour customer-service window: free text only within 24 h of the lead's last
//! WhatsApp message; outside it the row's approved template (`provider_metadata.whatsapp_template`
//! `{name, language, parameters}`) is sent, or the send fails with `outside_24h_window` (a
//! permanent error: the job is dead-lettered with it, the row is `failed`).

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Set, Statement};
use serde_json::{Value, json};

use super::whatsapp::TemplateMessage;
use super::{config, telegram, whatsapp};
use crate::Infra;
use crate::effects::{Effect, Outcome, perform_once};
use crate::entities::{chat_messages, leads};
use crate::error::{Error, Result};
use crate::jobs::{self, channel_send::ChannelSend};

/// The customer-service window of WhatsApp.
pub const WHATSAPP_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Longer than one provider call may take.
const LEASE: Duration = Duration::from_secs(60);

/// The outcome of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: i64,
    pub provider: String,
    /// `sent` (or later `delivered` / `read`); `sent` for webchat means shown in the dashboard.
    pub status: String,
    pub provider_message_id: Option<String>,
    /// Sent by an earlier attempt; nothing was sent now.
    pub already_sent: bool,
}

/// The idempotency key of an outbound row.
pub fn effect_key(message_id: i64) -> String {
    format!("send:{message_id}")
}

fn service_of(provider: &str) -> &'static str {
    if provider == "whatsapp" { "whatsapp" } else { "telegram" }
}

async fn merge_metadata(db: &impl ConnectionTrait, id: i64, status: Option<&str>, patch: Value) -> Result<()> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE chat_messages SET status = COALESCE($2, status), \
                provider_metadata = COALESCE(provider_metadata, '{}'::jsonb) || $3, updated_at = now() \
         WHERE id = $1",
        [id.into(), status.map(str::to_string).into(), patch.into()],
    ))
    .await?;
    Ok(())
}

/// Records on the row that its delivery failed for good (the job gives up with `err`).
pub async fn mark_failed(infra: &Infra, message_id: i64, err: &Error) -> Result<()> {
    merge_metadata(
        &infra.db,
        message_id,
        Some("failed"),
        json!({"delivery": "failed", "error": err.to_string(), "error_code": err.code(), "failed_at": Utc::now()}),
    )
    .await
}

/// Whether the lead wrote on WhatsApp within the window.
async fn inside_window(db: &impl ConnectionTrait, lead_id: i64) -> Result<bool> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT max(created_at) AS last FROM chat_messages \
             WHERE lead_id = $1 AND provider = 'whatsapp' AND direction = 'in'",
            [lead_id.into()],
        ))
        .await?;
    let last: Option<chrono::DateTime<Utc>> = match row {
        Some(r) => r.try_get("", "last")?,
        None => None,
    };
    Ok(last.is_some_and(|t| Utc::now() - t < WHATSAPP_WINDOW))
}

fn template_of(meta: Option<&Value>) -> Option<TemplateMessage> {
    let t = meta?.get("whatsapp_template")?;
    Some(TemplateMessage {
        name: t.get("name")?.as_str()?.to_string(),
        language: t.get("language").and_then(Value::as_str).unwrap_or("es").to_string(),
        parameters: t
            .get("parameters")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|p| p.as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default(),
    })
}

/// Sends one stored outbound row through its channel, at most once (see the module docs).
/// `holder` names the attempt (worker and task) for the idempotency claim.
pub async fn deliver(infra: &Infra, message_id: i64, holder: &str) -> Result<Delivery> {
    let row = chat_messages::Entity::find_by_id(message_id)
        .filter(chat_messages::Column::Direction.eq("out"))
        .one(&infra.db)
        .await?
        .ok_or(Error::NotFound("Message"))?;
    let meta = row.provider_metadata.clone();
    let sent_id = meta.as_ref().and_then(|m| m.get("provider_message_id")).and_then(Value::as_str);
    if !super::CHANNELS.contains(&row.provider.as_str()) || sent_id.is_some() {
        return Ok(Delivery {
            message_id,
            provider: row.provider.clone(),
            status: row.status.clone(),
            provider_message_id: sent_id.map(str::to_string),
            already_sent: sent_id.is_some(),
        });
    }
    let service = service_of(&row.provider);
    let result = async {
        let to =
            row.channel_user_id.clone().filter(|u| !u.is_empty() && u != "0").ok_or_else(|| {
                Error::upstream_permanent(service, "no_recipient", None, "the lead has no channel id")
            })?;
        let effect = Effect {
            key: &effect_key(message_id),
            kind: "channel_message",
            broker_id: Some(row.broker_id),
            lead_id: Some(row.lead_id),
        };
        let outcome = match row.provider.as_str() {
            "telegram" => {
                let creds = config::telegram_sender(infra, row.broker_id).await?.ok_or_else(|| {
                    Error::upstream_permanent(
                        service,
                        "channel_not_configured",
                        None,
                        "no Telegram bot for this broker",
                    )
                })?;
                perform_once(&infra.db, effect, holder, LEASE, || async {
                    let id = telegram::send_message(infra, &creds.bot_token, &to, &row.message_text).await?;
                    Ok(json!({"provider_message_id": id, "via": "text"}))
                })
                .await?
            }
            _ => {
                let creds = config::whatsapp_sender(infra, row.broker_id).await?.ok_or_else(|| {
                    Error::upstream_permanent(
                        service,
                        "channel_not_configured",
                        None,
                        "no WhatsApp number for this broker",
                    )
                })?;
                let open = inside_window(&infra.db, row.lead_id).await?;
                let template = template_of(meta.as_ref());
                if !open && template.is_none() {
                    return Err(Error::upstream_permanent(
                        service,
                        "outside_24h_window",
                        None,
                        "outside_24h_window: the lead last wrote more than 24 hours ago and the message has no \
                         approved template",
                    ));
                }
                perform_once(&infra.db, effect, holder, LEASE, || async {
                    match (open, &template) {
                        (true, _) | (false, None) => {
                            let id = whatsapp::send_text(infra, &creds, &to, &row.message_text).await?;
                            Ok(json!({"provider_message_id": id, "via": "text"}))
                        }
                        (false, Some(t)) => {
                            let id = whatsapp::send_template(infra, &creds, &to, t).await?;
                            Ok(json!({"provider_message_id": id, "via": "template", "template": t.name}))
                        }
                    }
                })
                .await?
            }
        };
        Ok::<Outcome, Error>(outcome)
    }
    .await;
    match result {
        Ok(outcome) => {
            let r = outcome.result();
            let pid = r.get("provider_message_id").and_then(Value::as_str).map(str::to_string);
            merge_metadata(
                &infra.db,
                message_id,
                Some("sent"),
                json!({"provider_message_id": pid, "delivery": "sent", "via": r.get("via"), "sent_at": Utc::now()}),
            )
            .await?;
            Ok(Delivery {
                message_id,
                provider: row.provider.clone(),
                status: "sent".into(),
                provider_message_id: pid,
                already_sent: matches!(outcome, Outcome::AlreadyDone(_)),
            })
        }
        Err(e) => {
            if jobs::is_permanent(&e) {
                mark_failed(infra, message_id, &e).await?;
            } else {
                merge_metadata(&infra.db, message_id, None, json!({"last_error": e.to_string()})).await?;
            }
            Err(e)
        }
    }
}

/// What [`send_to_lead`] sends.
#[derive(Clone, Debug, Default)]
pub struct Outbound {
    pub text: String,
    /// What it is (`campaign`, `reminder`, `human`, …), kept in `provider_metadata.kind`; `human`
    /// rows are `sender_type = human`, the rest `system`.
    pub kind: String,
    /// Makes the call idempotent: the same key finds the row recorded before (stored as the row's
    /// `channel_message_id`, so keep it ≤ 255 characters and unique per broker).
    pub key: Option<String>,
    /// The approved template for WhatsApp outside the 24-hour window.
    pub template: Option<TemplateMessage>,
}

/// Records `out` as an outbound message on the lead's last written channel and delivers it there
/// (webchat: recorded for the dashboard, `sent`). Campaign steps, reminders and other jobs call
/// this; errors are the job's to retry (transient) or dead-letter (permanent).
pub async fn send_to_lead(
    infra: &Infra,
    broker_id: i64,
    lead_id: i64,
    out: Outbound,
    holder: &str,
) -> Result<Delivery> {
    let lead = leads::Entity::find_by_id(lead_id)
        .filter(leads::Column::BrokerId.eq(broker_id))
        .one(&infra.db)
        .await?
        .ok_or(Error::NotFound("Lead"))?;
    let (provider, channel_user_id) = crate::conversations::last_channel(&infra.db, lead.id).await?;
    let existing = match &out.key {
        Some(k) => {
            chat_messages::Entity::find()
                .filter(chat_messages::Column::BrokerId.eq(broker_id))
                .filter(chat_messages::Column::Provider.eq(provider.clone()))
                .filter(chat_messages::Column::ChannelMessageId.eq(k.clone()))
                .one(&infra.db)
                .await?
        }
        None => None,
    };
    let row = match existing {
        Some(r) => r,
        None => {
            let template = out.template.as_ref().map(|t| {
                json!({"name": t.name, "language": t.language,
                                                                  "parameters": t.parameters})
            });
            let channel = super::CHANNELS.contains(&provider.as_str());
            chat_messages::ActiveModel {
                lead_id: Set(lead.id),
                broker_id: Set(broker_id),
                provider: Set(provider.clone()),
                channel_user_id: Set(channel_user_id),
                channel_message_id: Set(out.key.clone()),
                message_text: Set(out.text.clone()),
                direction: Set("out".into()),
                status: Set(if channel { "pending" } else { "sent" }.into()),
                sender_type: Set(if out.kind == "human" { "human" } else { "system" }.into()),
                ai_response_used: Set(false),
                provider_metadata: Set(Some(json!({"kind": out.kind, "whatsapp_template": template,
                    "delivery": if channel { "queued" } else { "dashboard" }}))),
                ..Default::default()
            }
            .insert(&infra.db)
            .await?
        }
    };
    deliver(infra, row.id, holder).await
}

/// Enqueues the delivery of a stored outbound row (for callers that must not wait on a provider,
/// such as an API request). Webchat rows need none.
pub async fn enqueue_delivery(infra: &Infra, broker_id: i64, lead_id: i64, message_id: i64) -> Result<()> {
    jobs::enqueue(infra, ChannelSend { broker_id, lead_id, message_id }).await?;
    Ok(())
}

/// Applies a WhatsApp status callback to the outbound row it names: statuses only move forward
/// (`sent` → `delivered` → `read`); `failed` keeps the provider's errors. Returns whether a row
/// changed.
pub async fn apply_status(
    infra: &Infra,
    broker_id: i64,
    wamid: &str,
    status: &str,
    errors: Option<&Value>,
) -> Result<bool> {
    let rank = |s: &str| match s {
        "pending" => 0,
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        _ => -1,
    };
    if status != "failed" && rank(status) < 0 {
        return Ok(false);
    }
    let row = chat_messages::Entity::find()
        .filter(chat_messages::Column::BrokerId.eq(broker_id))
        .filter(chat_messages::Column::Provider.eq("whatsapp"))
        .filter(chat_messages::Column::Direction.eq("out"))
        .filter(sea_orm::sea_query::Expr::cust_with_values(
            "provider_metadata->>'provider_message_id' = $1",
            [wamid.to_string()],
        ))
        .one(&infra.db)
        .await?;
    let Some(row) = row else { return Ok(false) };
    let moves = if status == "failed" { row.status != "read" } else { rank(status) > rank(&row.status) };
    if !moves {
        return Ok(false);
    }
    let mut patch = json!({format!("{status}_at"): Utc::now()});
    if let Some(e) = errors {
        patch["error"] = e.clone();
        patch["delivery"] = json!("failed");
    }
    let id = row.id;
    let mut am: chat_messages::ActiveModel = row.clone().into();
    am.status = Set(status.to_string());
    let mut meta = row.provider_metadata.unwrap_or_else(|| json!({}));
    if let (Some(m), Some(p)) = (meta.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            m.insert(k.clone(), v.clone());
        }
    }
    am.provider_metadata = Set(Some(meta));
    am.updated_at = Set(Utc::now());
    am.update(&infra.db).await?;
    tracing::debug!(message_id = id, status, "whatsapp status applied");
    Ok(true)
}
