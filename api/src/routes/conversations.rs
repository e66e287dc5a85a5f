//! `/api/v1/conversations`: the inbox and human handoff (reference §5.6, §11). A person takes a
//! conversation over (Sofía stops answering that lead on every channel), writes to the lead, and
//! releases it; `do-not-reply` silences generated replies.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use shared::conversations::{self, HandoffState, InboxItem, InboxQuery, Release};
use shared::text::clean_text;

use super::ApiTags;
use crate::body::JsonBody;
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

pub struct ConversationsApi;

/// One conversation of the inbox.
#[derive(Object)]
pub struct InboxItemOut {
    /// The lead's id.
    pub id: i64,
    pub broker_id: i64,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub pipeline_stage: String,
    pub status: String,
    pub human_mode: bool,
    pub human_assigned_to: Option<i64>,
    pub do_not_reply: bool,
    /// The last message (first 300 characters).
    pub last_message: String,
    pub last_message_at: DateTime<Utc>,
    /// `in` or `out`
    pub last_message_direction: String,
    /// The channel of the last message.
    pub channel: String,
    /// Inbound messages since the last outbound one.
    pub unread_count: i64,
}

impl From<InboxItem> for InboxItemOut {
    fn from(i: InboxItem) -> Self {
        InboxItemOut {
            id: i.id,
            broker_id: i.broker_id,
            name: i.name,
            phone: i.phone,
            pipeline_stage: i.pipeline_stage,
            status: i.status,
            human_mode: i.human_mode,
            human_assigned_to: i.human_assigned_to,
            do_not_reply: i.do_not_reply,
            last_message: i.last_message,
            last_message_at: i.last_message_at,
            last_message_direction: i.last_message_direction,
            channel: i.channel,
            unread_count: i.unread_count,
        }
    }
}

#[derive(Object)]
pub struct InboxPage {
    pub items: Vec<InboxItemOut>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Object)]
pub struct HandoffOut {
    pub ok: bool,
    pub lead_id: i64,
    pub human_mode: bool,
    /// The person holding the conversation.
    pub human_assigned_to: Option<i64>,
    pub human_taken_at: Option<DateTime<Utc>>,
    pub human_released_at: Option<DateTime<Utc>>,
    /// After a trainable release: the knowledge-base entry made from the resolution.
    pub knowledge_entry_id: Option<i64>,
}

impl HandoffOut {
    fn new(s: HandoffState, knowledge_entry_id: Option<i64>) -> Self {
        HandoffOut {
            ok: s.ok,
            lead_id: s.lead_id,
            human_mode: s.human_mode,
            human_assigned_to: s.human_assigned_to,
            human_taken_at: s.human_taken_at,
            human_released_at: s.human_released_at,
            knowledge_entry_id,
        }
    }
}

#[derive(Object, Default)]
pub struct ReleaseBody {
    /// What the person agreed with the lead; Sofía reads it on later turns.
    pub note: Option<String>,
    /// Turn the resolution into a knowledge-base entry (needs `resolution_summary`).
    #[oai(default)]
    pub trainable: bool,
    pub resolution_summary: Option<String>,
    pub resolution_category: Option<String>,
}

#[derive(Object)]
pub struct TextBody {
    pub text: String,
}

#[derive(Object)]
pub struct HumanMessageOut {
    pub ok: bool,
    pub lead_id: i64,
    pub message_id: i64,
    /// The channel it goes out on (the lead's last written channel, `webchat` when none).
    pub provider: String,
    /// `sent` (webchat) or `pending` (delivered by the channel's sender).
    pub status: String,
    pub human_mode: bool,
}

#[derive(Object)]
pub struct DoNotReplyOut {
    pub ok: bool,
    pub lead_id: i64,
    pub do_not_reply: bool,
}

#[derive(Object)]
pub struct ImprovedOut {
    pub improved: String,
}

fn do_not_reply_out(v: Value) -> DoNotReplyOut {
    DoNotReplyOut {
        ok: true,
        lead_id: v["lead_id"].as_i64().unwrap_or_default(),
        do_not_reply: v["do_not_reply"].as_bool().unwrap_or_default(),
    }
}

#[OpenApi(tag = "ApiTags::Conversations")]
impl ConversationsApi {
    /// The conversations inbox
    ///
    /// Leads with messages, latest activity first. `mode=human` lists the ones a person holds or
    /// that were escalated, `mode=ai` the ones Sofía answers. AGENTs see their assigned leads and
    /// escalations nobody holds yet; a conversation held by another person is hidden from them.
    #[oai(path = "/api/v1/conversations", method = "get", operation_id = "conversations_inbox")]
    #[allow(clippy::too_many_arguments)]
    async fn inbox(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// `human` or `ai`
        mode: Query<Option<String>>,
        /// Name, phone or email substring
        search: Query<Option<String>>,
        /// 1–200, default 50
        limit: Query<Option<u64>>,
        offset: Query<Option<u64>>,
        /// SUPERADMIN: one broker
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<InboxPage>> {
        let q = InboxQuery { mode: mode.0, search: search.0, limit: limit.0, offset: offset.0, broker_id: broker_id.0 };
        let (items, total) = conversations::inbox(&state.infra, &auth, &q).await?;
        Ok(Json(InboxPage {
            items: items.into_iter().map(Into::into).collect(),
            total,
            limit: q.limit.unwrap_or(conversations::DEFAULT_LIMIT),
            offset: q.offset.unwrap_or(0),
        }))
    }

    /// Take a conversation over
    ///
    /// Sofía stops answering this lead on every channel; the caller holds the conversation. Held by
    /// somebody else → 409 `already_assigned`.
    #[oai(
        path = "/api/v1/conversations/leads/:lead_id/takeover",
        method = "post",
        operation_id = "conversations_takeover"
    )]
    async fn takeover(&self, state: Data<&AppState>, auth: Auth, lead_id: Path<i64>) -> ApiResult<Json<HandoffOut>> {
        let s = conversations::takeover(&state.infra, &auth, lead_id.0).await?;
        Ok(Json(HandoffOut::new(s, None)))
    }

    /// Release a conversation back to Sofía
    ///
    /// The holder or an ADMIN releases; the optional `note` is shown to Sofía on later turns. With
    /// `trainable` and a `resolution_summary` the resolution becomes a knowledge-base entry.
    #[oai(
        path = "/api/v1/conversations/leads/:lead_id/release",
        method = "post",
        operation_id = "conversations_release"
    )]
    async fn release(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        body: JsonBody<Option<ReleaseBody>>,
    ) -> ApiResult<Json<HandoffOut>> {
        let b = body.0.unwrap_or_default();
        let input = Release {
            note: b.note,
            trainable: b.trainable,
            resolution_summary: b.resolution_summary,
            resolution_category: b.resolution_category,
        };
        let r = conversations::release(&state.infra, &auth, lead_id.0, input).await?;
        Ok(Json(HandoffOut::new(r.state, r.knowledge_entry_id)))
    }

    /// Write to the lead as a person
    ///
    /// Goes out on the lead's last written channel (webchat: shown in the widget). Replying pauses
    /// Sofía for this lead: the sender takes the conversation when nobody holds it.
    #[oai(
        path = "/api/v1/conversations/leads/:lead_id/human-message",
        method = "post",
        operation_id = "conversations_human_message"
    )]
    async fn human_message(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        body: JsonBody<TextBody>,
    ) -> ApiResult<Json<HumanMessageOut>> {
        let m = conversations::human_message(&state.infra, &auth, lead_id.0, &body.0.text).await?;
        Ok(Json(HumanMessageOut {
            ok: m.ok,
            lead_id: m.lead_id,
            message_id: m.message_id,
            provider: m.provider,
            status: m.status,
            human_mode: m.human_mode,
        }))
    }

    /// Write to the lead as a person (the reference documentation's path)
    #[oai(
        path = "/api/v1/conversations/leads/:lead_id/send-message",
        method = "post",
        operation_id = "conversations_send_message"
    )]
    async fn send_message(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        body: JsonBody<TextBody>,
    ) -> ApiResult<Json<HumanMessageOut>> {
        self.human_message(state, auth, lead_id, body).await
    }

    /// Stop generated replies to this lead
    ///
    /// While on, every inbound message gets the broker's fixed fallback instead of Sofía's reply.
    #[oai(
        path = "/api/v1/conversations/leads/:lead_id/do-not-reply",
        method = "post",
        operation_id = "conversations_do_not_reply_on"
    )]
    async fn do_not_reply_on(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
    ) -> ApiResult<Json<DoNotReplyOut>> {
        Ok(Json(do_not_reply_out(conversations::set_do_not_reply(&state.infra, &auth, lead_id.0, true).await?)))
    }

    /// Let Sofía reply to this lead again
    #[oai(
        path = "/api/v1/conversations/leads/:lead_id/do-not-reply",
        method = "delete",
        operation_id = "conversations_do_not_reply_off"
    )]
    async fn do_not_reply_off(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
    ) -> ApiResult<Json<DoNotReplyOut>> {
        Ok(Json(do_not_reply_out(conversations::set_do_not_reply(&state.infra, &auth, lead_id.0, false).await?)))
    }

    /// What a person taking the conversation needs to know
    ///
    /// Why it was handed over, the data known and missing, the last messages and a suggested next step.
    #[oai(
        path = "/api/v1/conversations/leads/:lead_id/escalation-brief",
        method = "get",
        operation_id = "conversations_escalation_brief"
    )]
    async fn escalation_brief(&self, state: Data<&AppState>, auth: Auth, lead_id: Path<i64>) -> ApiResult<Json<Value>> {
        Ok(Json(conversations::escalation_brief(&state.infra, &auth, lead_id.0).await?))
    }

    /// Tidy a message before sending it
    ///
    /// Removes markup and stray white space and capitalises the first letter.
    #[oai(path = "/api/v1/conversations/improve-message", method = "post", operation_id = "conversations_improve")]
    async fn improve_message(&self, _auth: Auth, body: JsonBody<TextBody>) -> ApiResult<Json<ImprovedOut>> {
        let cleaned = clean_text(&body.0.text);
        if cleaned.is_empty() {
            return Err(shared::Error::invalid_body("text", "text must not be empty").into());
        }
        if cleaned.chars().count() > conversations::MAX_MESSAGE_CHARS {
            return Err(shared::Error::invalid_body(
                "text",
                format!("text must be at most {} characters", conversations::MAX_MESSAGE_CHARS),
            )
            .into());
        }
        let mut chars = cleaned.chars();
        let improved = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
            None => cleaned,
        };
        let improved = improved.replace(" ,", ",").replace(" .", ".").replace(" ?", "?").replace(" !", "!");
        Ok(Json(ImprovedOut { improved }))
    }
}
