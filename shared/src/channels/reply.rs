//! The `llm_reply` job: answer a stored inbound message (and the rest of its burst) with one turn
//! of the conversation pipeline, then deliver the reply on the same channel.
//!
//! 1. A newer pending message of the same lead exists → exit: that message's job answers both.
//! 2. The burst: every pending inbound row of the lead on this channel up to this one, oldest
//!    first, joined into the turn's text ([`crate::chat::service::handle_stored`] answers this row
//!    without storing it again; an already answered row replays its reply).
//! 3. The burst's rows become `read`; WhatsApp gets a read receipt.
//! 4. The reply row is delivered through [`super::sender::deliver`] (key `send:{reply id}`), so a
//!    retry after the turn committed sends the same reply, once.

use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, Statement};

use super::sender::{self, Delivery};
use super::{config, whatsapp};
use crate::Infra;
use crate::chat::service::{self, HUMAN_MODE_SENTINEL, Inbound};
use crate::ctx::Ctx;
use crate::entities::chat_messages;
use crate::error::Result;
use crate::jobs::llm_reply::LlmReply;

/// What a job did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answered {
    /// The message or its lead is gone.
    Gone,
    /// A later message of the burst answers this one too.
    Superseded,
    /// No reply to send (human mode).
    NoReply,
    /// The pipeline refused the text (e.g. an injection attempt): no reply.
    Refused,
    Replied(Delivery),
}

/// What a media message without caption reads as in the turn.
const ATTACHMENT_TEXT: &str = "Te envié un archivo.";

/// Runs one `llm_reply` job (see the module docs); `holder` names the attempt.
pub async fn answer(infra: &Infra, job: &LlmReply, holder: &str) -> Result<Answered> {
    let Some(row) = chat_messages::Entity::find_by_id(job.message_id)
        .filter(chat_messages::Column::BrokerId.eq(job.broker_id))
        .filter(chat_messages::Column::Direction.eq("in"))
        .one(&infra.db)
        .await?
    else {
        return Ok(Answered::Gone);
    };
    if row.status != "pending" {
        // Answered already (alone, or within a later message's burst): only its own reply, if it
        // has one, still has to reach the lead.
        return match reply_row(infra, job, &row.provider).await? {
            Some(reply) => Ok(Answered::Replied(sender::deliver(infra, reply.id, holder).await?)),
            None => Ok(Answered::Superseded),
        };
    }
    let newer = chat_messages::Entity::find()
        .filter(chat_messages::Column::LeadId.eq(row.lead_id))
        .filter(chat_messages::Column::Provider.eq(row.provider.clone()))
        .filter(chat_messages::Column::Direction.eq("in"))
        .filter(chat_messages::Column::Status.eq("pending"))
        .filter(chat_messages::Column::Id.gt(row.id))
        .one(&infra.db)
        .await?;
    if newer.is_some() {
        return Ok(Answered::Superseded);
    }
    let burst = chat_messages::Entity::find()
        .filter(chat_messages::Column::LeadId.eq(row.lead_id))
        .filter(chat_messages::Column::Provider.eq(row.provider.clone()))
        .filter(chat_messages::Column::Direction.eq("in"))
        .filter(chat_messages::Column::Status.eq("pending"))
        .filter(chat_messages::Column::Id.lte(row.id))
        .order_by_asc(chat_messages::Column::Id)
        .all(&infra.db)
        .await?;
    let mut text: String =
        burst.iter().map(|m| m.message_text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n");
    if text.is_empty() {
        text = if row.message_text.trim().is_empty() { ATTACHMENT_TEXT.to_string() } else { row.message_text.clone() };
    }
    // The turn's own limit: keep the newest part of a long burst.
    let chars = text.chars().count();
    if chars > crate::chat::sanitize::MAX_CHARS {
        text = text.chars().skip(chars - crate::chat::sanitize::MAX_CHARS).collect();
    }
    let inbound = Inbound {
        provider: Some(row.provider.clone()),
        text,
        lead_id: Some(row.lead_id),
        channel_message_id: row.channel_message_id.clone(),
        channel_user_id: row.channel_user_id.clone(),
        channel_username: row.channel_username.clone(),
    };
    let ids: Vec<i64> = burst.iter().map(|m| m.id).chain([row.id]).collect();
    let result = match service::handle_stored(infra, &Ctx::broker_system(job.broker_id), inbound, row.id).await {
        Ok(r) => r,
        Err(crate::Error::NotFound(_)) => return Ok(Answered::Gone),
        Err(e) if matches!(e.status(), 400 | 422) => {
            // The pipeline refuses the text (an injection attempt, nothing left after cleaning):
            // no reply, and no retry can change that. Recorded on the rows, not dead-lettered.
            tracing::warn!(message_id = row.id, code = e.code(), "inbound channel message refused by the pipeline");
            infra
                .db
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE chat_messages SET status = 'read', updated_at = now(), \
                       provider_metadata = COALESCE(provider_metadata, '{}'::jsonb) || $2 \
                     WHERE id = ANY($1) AND status = 'pending'",
                    [ids.into(), serde_json::json!({"refused": e.code()}).into()],
                ))
                .await?;
            return Ok(Answered::Refused);
        }
        Err(e) => return Err(e),
    };
    infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE chat_messages SET status = 'read', updated_at = now() WHERE id = ANY($1) AND status = 'pending'",
            [ids.into()],
        ))
        .await?;
    if row.provider == "whatsapp"
        && let Some(wamid) = row.channel_message_id.as_deref()
    {
        match config::whatsapp_sender(infra, job.broker_id).await {
            Ok(Some(creds)) => {
                if let Err(e) = whatsapp::mark_read(infra, &creds, wamid).await {
                    tracing::warn!(error = %e, message_id = row.id, "whatsapp read receipt failed");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "whatsapp credentials unavailable for the read receipt"),
        }
    }
    if result.response == HUMAN_MODE_SENTINEL && !result.replied {
        return Ok(Answered::NoReply);
    }
    let Some(reply) = reply_row(infra, job, &row.provider).await? else { return Ok(Answered::NoReply) };
    if reply.status == "sent" && reply.provider_metadata.as_ref().is_none_or(|m| m.get("provider_message_id").is_none())
    {
        // The turn stored it as `sent`; it is not, until the provider took it. Another job of the
        // same message (a redelivery) may have delivered it since `reply` was read: a row with the
        // provider's id stays `sent` (`deliver` returns early for it and would not mend it).
        infra
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE chat_messages SET status = 'pending' WHERE id = $1 AND status = 'sent' \
                   AND provider_metadata->>'provider_message_id' IS NULL",
                [reply.id.into()],
            ))
            .await?;
    }
    Ok(Answered::Replied(sender::deliver(infra, reply.id, holder).await?))
}

/// The reply the turn stored for the job's message (`channel_message_id = reply:{id}`).
async fn reply_row(infra: &Infra, job: &LlmReply, provider: &str) -> Result<Option<chat_messages::Model>> {
    Ok(chat_messages::Entity::find()
        .filter(chat_messages::Column::BrokerId.eq(job.broker_id))
        .filter(chat_messages::Column::Provider.eq(provider))
        .filter(chat_messages::Column::ChannelMessageId.eq(job.effect_key()))
        .filter(chat_messages::Column::Direction.eq("out"))
        .one(&infra.db)
        .await?)
}
