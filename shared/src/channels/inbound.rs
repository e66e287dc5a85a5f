//! What a webhook does with one message, and the stale-inbound sweeper.
//!
//! [`receive`]: the message is deduplicated by `(broker, provider, channel_message_id)` (the
//! unique index of `chat_messages`), the sender's lead found (by the sender's earlier messages on
//! this channel, else by phone for WhatsApp) or created (no placeholder name: the lead's name stays
//! unknown until the person says it), and the message stored with `status = pending`. A sender
//! seen before takes one statement; finding or creating the lead of a new one runs under a
//! per-sender advisory lock. After the commit an `llm_reply` job is enqueued to run
//! [`COALESCE`] later: messages of one sender inside that window are answered once, by the job of
//! the last one (see [`super::reply`]). The webhook answers 200 only after both; an error is a
//! 5xx so the provider retries, and a retried delivery of a stored, still pending message enqueues
//! its job again (the job is idempotent).

use std::time::Duration;

use chrono::Utc;
use redis::AsyncCommands;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, Set, Statement, TransactionTrait};
use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::entities::{chat_messages, leads};
use crate::error::{Error, Result};
use crate::jobs::{self, channel_send::ChannelSend, llm_reply::LlmReply};
use crate::leads::model::search_text;
use crate::leads::repo as lead_repo;
use crate::ratelimit::{self, Limit};
use crate::{Infra, events};

/// Messages of one sender this close together are answered once.
pub const COALESCE: Duration = Duration::from_secs(2);

/// Per-sender budget: beyond it messages are stored (the log stays complete) but not answered.
pub const SENDER_LIMIT: Limit = Limit { name: "channel_sender", limit: 20, window_secs: 60 };

/// Stored inbound messages still unanswered after this long are enqueued again by the sweeper.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// Longest stored text (a longer message is cut; the turn's own limit is 4 000 characters).
const MAX_TEXT_CHARS: usize = 4000;

/// One inbound message, as a provider's payload gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundMessage {
    pub provider: &'static str,
    /// Where replies go: Telegram chat id, WhatsApp number (digits).
    pub channel_user_id: String,
    pub channel_username: Option<String>,
    /// The profile name the channel shows (kept in metadata, never taken as the lead's name).
    pub display_name: Option<String>,
    /// A real phone number (WhatsApp), `+` and digits.
    pub phone: Option<String>,
    /// The dedupe key: Telegram `{chat_id}:{message_id}`, WhatsApp `wamid`.
    pub channel_message_id: String,
    /// `None` for media without caption.
    pub text: Option<String>,
    pub attachments: Vec<Value>,
    pub metadata: Value,
}

/// What [`receive`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// Stored now; `answered` = a reply job was enqueued (false over the sender's rate limit).
    Stored { message_id: i64, lead_id: i64, answered: bool },
    /// Received before (a redelivery).
    Duplicate { message_id: i64, lead_id: i64 },
}

fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| *c != '\0').take(max).collect()
}

fn check_len(field: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.chars().count() > 255 {
        return Err(Error::bad_request("invalid_payload", format!("{field} must have 1 to 255 characters")));
    }
    Ok(())
}

/// The lead of the sender: by its earlier messages on this channel, else (WhatsApp) by phone,
/// else a new lead.
async fn sender_lead(db: &impl ConnectionTrait, broker_id: i64, msg: &InboundMessage) -> Result<(i64, bool)> {
    let known = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT lead_id FROM chat_messages \
             WHERE broker_id = $1 AND provider = $2 AND channel_user_id = $3 AND direction = 'in' \
             ORDER BY id DESC LIMIT 1",
            [broker_id.into(), msg.provider.into(), msg.channel_user_id.clone().into()],
        ))
        .await?;
    if let Some(row) = known {
        return Ok((row.try_get("", "lead_id")?, false));
    }
    if let Some(id) = lead_repo::find_by_contact(db, broker_id, msg.phone.as_deref(), None).await? {
        return Ok((id, false));
    }
    let channel = json!({
        "provider": msg.provider, "user_id": msg.channel_user_id, "username": msg.channel_username,
        "display_name": msg.display_name,
    });
    let mut metadata = json!({"source": msg.provider, "channel": channel});
    if msg.provider == "telegram" {
        metadata["telegram_user_id"] = json!(msg.channel_user_id);
    }
    let lead = leads::ActiveModel {
        broker_id: Set(broker_id),
        phone: Set(msg.phone.clone()),
        tags: Set(json!([msg.provider, "inbound"])),
        metadata: Set(metadata),
        search_text: Set(search_text(None, msg.phone.as_deref(), None)),
        last_contacted: Set(Some(Utc::now())),
        ..Default::default()
    }
    .insert(db)
    .await?;
    lead_repo::add_activity(
        db,
        &Ctx::broker_system(broker_id),
        &lead,
        "lead_created",
        json!({"source": msg.provider, "channel_user_id": msg.channel_user_id}),
    )
    .await?;
    Ok((lead.id, true))
}

/// What [`store_known`] found.
enum Known {
    /// Stored now for the lead of the sender's earlier messages.
    Stored { message_id: i64, lead_id: i64 },
    /// Stored before (a redelivery): the row's id, lead and status.
    Duplicate { message_id: i64, lead_id: i64, status: String },
    /// The sender has no earlier message here (or a concurrent delivery of the same message is
    /// not visible yet): the locked path decides.
    Unknown,
}

/// The usual case in one statement: a sender seen before. Stores the message for the lead of
/// the sender's earlier messages unless its `(broker, provider, channel_message_id)` is stored
/// already (the unique index; `DO NOTHING`), and reads the row stored before in the same
/// statement. No lead is created here, so the per-sender lock (which guards creating one) is
/// not taken.
async fn store_known(
    db: &impl ConnectionTrait,
    broker_id: i64,
    msg: &InboundMessage,
    text: &str,
    status: &str,
    metadata: &Value,
) -> Result<Known> {
    let attachments: Option<Value> = (!msg.attachments.is_empty()).then(|| json!(msg.attachments));
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH known AS (SELECT lead_id FROM chat_messages \
                 WHERE broker_id = $1 AND provider = $2 AND channel_user_id = $3 AND direction = 'in' \
                 ORDER BY id DESC LIMIT 1), \
             ins AS (INSERT INTO chat_messages (lead_id, broker_id, provider, channel_user_id, channel_username, \
                   channel_message_id, message_text, direction, status, sender_type, provider_metadata, attachments, \
                   ai_response_used) \
                 SELECT lead_id, $1, $2, $3, $5, $4, $6, 'in', $7, 'customer', $8, $9, false FROM known \
                 ON CONFLICT (broker_id, provider, channel_message_id) WHERE channel_message_id IS NOT NULL \
                 DO NOTHING RETURNING id, lead_id) \
             SELECT (SELECT id FROM ins) AS new_id, (SELECT lead_id FROM ins) AS new_lead_id, \
                    e.id AS old_id, e.lead_id AS old_lead_id, e.status AS old_status \
             FROM (SELECT 1) one LEFT JOIN chat_messages e \
               ON e.broker_id = $1 AND e.provider = $2 AND e.channel_message_id = $4",
            [
                broker_id.into(),
                msg.provider.into(),
                msg.channel_user_id.clone().into(),
                msg.channel_message_id.clone().into(),
                msg.channel_username.as_deref().map(|u| clean(u, 255)).into(),
                text.into(),
                status.into(),
                metadata.clone().into(),
                attachments.into(),
            ],
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("the inbound statement gave no row")))?;
    let new_id: Option<i64> = row.try_get("", "new_id")?;
    let new_lead: Option<i64> = row.try_get("", "new_lead_id")?;
    if let (Some(message_id), Some(lead_id)) = (new_id, new_lead) {
        return Ok(Known::Stored { message_id, lead_id });
    }
    let old_id: Option<i64> = row.try_get("", "old_id")?;
    let old_lead: Option<i64> = row.try_get("", "old_lead_id")?;
    let old_status: Option<String> = row.try_get("", "old_status")?;
    Ok(match (old_id, old_lead, old_status) {
        (Some(message_id), Some(lead_id), Some(status)) => Known::Duplicate { message_id, lead_id, status },
        _ => Known::Unknown,
    })
}

/// A message stored before: a still pending one gets its job again (a provider retry after a
/// failed enqueue, or a plain redelivery: the job is idempotent).
async fn redelivered(infra: &Infra, broker_id: i64, message_id: i64, lead_id: i64, status: &str) -> Result<Received> {
    if status == "pending" {
        enqueue_reply(infra, broker_id, lead_id, message_id).await?;
    }
    Ok(Received::Duplicate { message_id, lead_id })
}

/// Stores one inbound message for `broker_id` and enqueues its reply (see the module docs). One
/// transaction: a sender seen before takes one statement in it ([`store_known`]); a new sender
/// (or a race with a concurrent delivery of the same message) continues under the sender's lock
/// ([`store_locked`]).
pub async fn receive(infra: &Infra, broker_id: i64, msg: InboundMessage) -> Result<Received> {
    check_len("channel_user_id", &msg.channel_user_id)?;
    check_len("channel_message_id", &msg.channel_message_id)?;
    let text = clean(msg.text.as_deref().unwrap_or_default(), MAX_TEXT_CHARS);
    let sender = format!("{broker_id}:{}:{}", msg.provider, msg.channel_user_id);
    let limited = ratelimit::hit(&infra.redis, infra.prefix(), SENDER_LIMIT, &sender).await.is_err();
    let mut metadata = msg.metadata.clone();
    if limited && let Some(m) = metadata.as_object_mut() {
        m.insert("rate_limited".into(), json!(true));
    }
    // `pending` = stored, not yet answered; over the rate limit it is never answered.
    let status = if limited { "delivered" } else { "pending" };

    let txn = infra.db.begin().await?;
    let known = store_known(&txn, broker_id, &msg, &text, status, &metadata).await?;
    let (message_id, lead_id, created) = match known {
        Known::Stored { message_id, lead_id } => {
            txn.commit().await?;
            (message_id, lead_id, false)
        }
        Known::Duplicate { message_id, lead_id, status } => {
            txn.commit().await?;
            return redelivered(infra, broker_id, message_id, lead_id, &status).await;
        }
        Known::Unknown => match store_locked(txn, broker_id, &msg, &sender, text, status, metadata).await? {
            Locked::Stored { message_id, lead_id, created } => (message_id, lead_id, created),
            Locked::Duplicate { message_id, lead_id, status } => {
                return redelivered(infra, broker_id, message_id, lead_id, &status).await;
            }
        },
    };
    if created {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            broker_id,
            "lead_created",
            json!({"lead_id": lead_id, "source": msg.provider}),
        )
        .await;
    }
    if limited {
        tracing::warn!(broker_id, provider = msg.provider, lead_id, "sender over its rate limit; stored, not answered");
        return Ok(Received::Stored { message_id, lead_id, answered: false });
    }
    enqueue_reply(infra, broker_id, lead_id, message_id).await?;
    Ok(Received::Stored { message_id, lead_id, answered: true })
}

/// What [`store_locked`] did.
enum Locked {
    Stored { message_id: i64, lead_id: i64, created: bool },
    Duplicate { message_id: i64, lead_id: i64, status: String },
}

/// Under a per-sender advisory lock (two first messages of one sender must not create two
/// leads): the dedupe by `(broker, provider, channel_message_id)`, the sender's lead found or
/// created, the message stored; then the commit.
async fn store_locked(
    txn: DatabaseTransaction,
    broker_id: i64,
    msg: &InboundMessage,
    sender: &str,
    text: String,
    status: &str,
    metadata: Value,
) -> Result<Locked> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        [format!("channel-sender:{sender}").into()],
    ))
    .await?;
    let existing = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, lead_id, status FROM chat_messages \
             WHERE broker_id = $1 AND provider = $2 AND channel_message_id = $3",
            [broker_id.into(), msg.provider.into(), msg.channel_message_id.clone().into()],
        ))
        .await?;
    if let Some(row) = existing {
        txn.commit().await?;
        return Ok(Locked::Duplicate {
            message_id: row.try_get("", "id")?,
            lead_id: row.try_get("", "lead_id")?,
            status: row.try_get("", "status")?,
        });
    }
    let (lead_id, created) = sender_lead(&txn, broker_id, msg).await?;
    let row = chat_messages::ActiveModel {
        lead_id: Set(lead_id),
        broker_id: Set(broker_id),
        provider: Set(msg.provider.to_string()),
        channel_user_id: Set(Some(msg.channel_user_id.clone())),
        channel_username: Set(msg.channel_username.as_deref().map(|u| clean(u, 255))),
        channel_message_id: Set(Some(msg.channel_message_id.clone())),
        message_text: Set(text),
        direction: Set("in".into()),
        status: Set(status.into()),
        sender_type: Set("customer".into()),
        provider_metadata: Set(Some(metadata)),
        attachments: Set((!msg.attachments.is_empty()).then(|| json!(msg.attachments))),
        ai_response_used: Set(false),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(Locked::Stored { message_id: row.id, lead_id, created })
}

async fn enqueue_reply(infra: &Infra, broker_id: i64, lead_id: i64, message_id: i64) -> Result<()> {
    let at = Utc::now() + chrono::Duration::from_std(COALESCE).unwrap_or_default();
    jobs::enqueue_at(infra, LlmReply { broker_id, lead_id, message_id }, at).await?;
    Ok(())
}

/// What one sweep re-enqueued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub replies: u64,
    pub sends: u64,
}

/// Re-enqueues (once each) the newest pending inbound message of every lead left unanswered for
/// `stale` (an enqueue that failed, a job lost), and outbound messages still pending after it.
/// Messages older than a day are left alone.
pub async fn sweep(infra: &Infra, stale: Duration) -> Result<Swept> {
    let secs = stale.as_secs_f64();
    let inbound = infra
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT DISTINCT ON (lead_id) id, broker_id, lead_id FROM chat_messages \
             WHERE direction = 'in' AND status = 'pending' AND provider IN ('telegram', 'whatsapp') \
               AND created_at < now() - make_interval(secs => $1) AND created_at > now() - interval '1 day' \
             ORDER BY lead_id, id DESC LIMIT 500",
            [secs.into()],
        ))
        .await?;
    let outbound = infra
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, broker_id, lead_id FROM chat_messages \
             WHERE direction = 'out' AND status = 'pending' AND provider IN ('telegram', 'whatsapp') \
               AND created_at < now() - make_interval(secs => $1) AND created_at > now() - interval '1 day' \
             ORDER BY id LIMIT 500",
            [secs.into()],
        ))
        .await?;
    let mut swept = Swept::default();
    let mut conn = infra.redis.clone();
    for (rows, dir) in [(inbound, "in"), (outbound, "out")] {
        for row in rows {
            let (id, broker_id, lead_id): (i64, i64, i64) =
                (row.try_get("", "id")?, row.try_get("", "broker_id")?, row.try_get("", "lead_id")?);
            let key = format!("{}:swept:{dir}:{id}", infra.prefix());
            let first: bool = conn.set_nx(&key, 1).await?;
            if !first {
                continue;
            }
            let _: () = conn.expire(&key, 2 * 86_400).await?;
            if dir == "in" {
                jobs::enqueue(infra, LlmReply { broker_id, lead_id, message_id: id }).await?;
                swept.replies += 1;
            } else {
                jobs::enqueue(infra, ChannelSend { broker_id, lead_id, message_id: id }).await?;
                swept.sends += 1;
            }
        }
    }
    if swept != Swept::default() {
        tracing::warn!(replies = swept.replies, sends = swept.sends, "stale channel messages enqueued again");
    }
    Ok(swept)
}
