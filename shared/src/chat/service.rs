//! The one message pipeline every channel uses (SPEC §6 steps 1–8): webchat (`chat/test`,
//! `chat/stream`), Telegram, WhatsApp and voice transcripts all call [`handle`].
//!
//! 1. sanitise ([`super::sanitize`]); 2. the lead: the one named (404 when the caller may not see
//!    it) or a new webchat lead — locked `FOR UPDATE` for the whole turn, so two messages to one lead
//!    never interleave: the second waits for the first to commit and reads what it wrote;
//! 3. the inbound row (`channel_message_id` unique per broker and provider: a redelivered message
//!    answers with the reply already given); 4. gates: human mode (logged, `human_mode_incoming`,
//!    no reply) and `do_not_reply` (a fixed text); 5. extraction and merge; 6–7. the engine's plan,
//!    its action on the same transaction (free slots, booking, escalation, opt-out) and the reply;
//!    then the rules (score, status, calificación, stage); 8. the outbound row, activity rows, the
//!    engine's memory, an `llm_calls` row — one commit — and after it the live events.
//!
//! Everything a turn reads or writes goes through its transaction's connection (a turn never holds
//! one pooled connection while waiting for another). The knowledge base is searched before the
//! transaction starts: it depends only on the message.

use std::time::Instant;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, IntoActiveModel,
    QueryFilter, Set, Statement, TransactionTrait,
};
use serde_json::{Map, Value, json};

use super::engine::extract::{ExtractCtx, Field, extract};
use super::engine::{
    Action, Booking, ConversationState, Identity, KbHit, Memory, Outcome, Plan, Profile, SlotOffer, TurnInput, merge,
    plan, reply,
};
use super::{ledger, llm_turn, sanitize, store};
use crate::appointments::{NewAppointment, Slot, service as appointments};
use crate::brokers::config::load_prompt_config;
use crate::ctx::{Ctx, Role};
use crate::entities::{activity_log, appointments as appointment_rows, chat_conversations, chat_messages, leads};
use crate::error::{Error, FieldError, Result};
use crate::leads::model::{TZ, open_metadata, seal_metadata, search_text};
use crate::leads::qualification::{Criteria, qualify};
use crate::leads::repo as lead_repo;
use crate::leads::rules_service as rules;
use crate::leads::scoring::Dicom;
use crate::{Infra, events, knowledge};

/// The channels a message can arrive on (`chat_messages.provider`).
pub const PROVIDERS: [&str; 7] = ["webchat", "telegram", "whatsapp", "instagram", "facebook", "tiktok", "voice"];

/// What a human-mode lead's message gets instead of an AI reply (the reference's sentinel).
pub const HUMAN_MODE_SENTINEL: &str = "[human_mode]";

/// One inbound message, as a channel hands it over.
#[derive(Clone, Debug, Default)]
pub struct Inbound {
    /// One of [`PROVIDERS`]; `None` = `webchat`.
    pub provider: Option<String>,
    /// As received (sanitised here).
    pub text: String,
    /// `None`: a new lead (webchat).
    pub lead_id: Option<i64>,
    /// The channel's id of the message (Telegram `message_id`, WhatsApp `wamid`): the dedupe key.
    pub channel_message_id: Option<String>,
    pub channel_user_id: Option<String>,
    pub channel_username: Option<String>,
}

/// What a turn did.
#[derive(Clone, Debug)]
pub struct TurnResult {
    /// The lead after the turn.
    pub lead: leads::Model,
    /// The reply sent (or [`HUMAN_MODE_SENTINEL`]).
    pub response: String,
    pub conversation_state: String,
    /// False in human mode: nothing is sent to the lead.
    pub replied: bool,
    /// The message had been received before (same `channel_message_id`); nothing was done again.
    pub duplicate: bool,
    /// This turn's extraction, as stored in `lead_metadata.last_analysis`.
    pub analysis: Value,
    pub key_points: Vec<String>,
    /// An appointment this turn booked.
    pub appointment_id: Option<i64>,
    /// The model's tokens went to the turn's [`TokenSink`] as they came.
    pub streamed: bool,
    /// After streaming, the model's text was replaced by the local engine's (`response`).
    pub replaced: bool,
}

/// Parses the provider name, or a 422 on `provider`.
pub fn parse_provider(raw: Option<&str>) -> Result<&'static str> {
    let raw = raw.map(str::trim).filter(|p| !p.is_empty()).unwrap_or("webchat").to_ascii_lowercase();
    let raw = if raw == "web_chat" { "webchat".to_string() } else { raw };
    PROVIDERS.iter().copied().find(|p| *p == raw).ok_or_else(|| {
        Error::invalid(
            "validation_error",
            FieldError::body("provider", format!("provider must be one of: {}", PROVIDERS.join(", ")), "enum"),
        )
    })
}

fn check_channel_field(v: Option<&str>, field: &str) -> Result<Option<String>> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if v.chars().count() > 255 => {
            Err(Error::invalid_body(field, format!("{field} must have at most 255 characters")))
        }
        Some(v) => Ok(Some(v.to_string())),
        None => Ok(None),
    }
}

/// The broker itself acting (knowledge-base search, rule activity rows).
fn broker_ctx(broker_id: i64) -> Ctx {
    Ctx { user_id: None, broker_id: Some(broker_id), role: Role::Admin, origin: None }
}

/// Who Sofía is for the broker, and its qualification criteria.
struct BrokerFacts {
    identity: Identity,
    criteria: Criteria,
}

async fn broker_facts(db: &impl ConnectionTrait, broker_id: i64) -> Result<BrokerFacts> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT b.name AS broker_name, COALESCE(p.agent_name, 'Sofía') AS agent_name, \
                    lc.qualification_criteria AS criteria \
             FROM brokers b \
             LEFT JOIN broker_prompt_configs p ON p.broker_id = b.id \
             LEFT JOIN broker_lead_configs lc ON lc.broker_id = b.id \
             WHERE b.id = $1",
            [broker_id.into()],
        ))
        .await?
        .ok_or(Error::NotFound("Broker"))?;
    let broker_name: String = row.try_get("", "broker_name")?;
    let agent_name: String = row.try_get("", "agent_name")?;
    let criteria: Option<Value> = row.try_get("", "criteria")?;
    Ok(BrokerFacts {
        identity: Identity { agent_name, broker_name },
        criteria: criteria.as_ref().map(Criteria::from_stored).unwrap_or_default(),
    })
}

/// Knowledge-base hits for a message that asks something (best effort: no hits on failure).
async fn kb_hits(infra: &Infra, broker_id: i64, text: &str, now: DateTime<Utc>) -> Vec<KbHit> {
    if !extract(text, &ExtractCtx::new(now)).question {
        return Vec::new();
    }
    match knowledge::answer_context(infra, &broker_ctx(broker_id), text).await {
        Ok(hits) => {
            hits.into_iter().map(|h| KbHit { title: h.title, snippet: h.snippet, similarity: h.similarity }).collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, broker_id, "knowledge base search failed; answering without it");
            Vec::new()
        }
    }
}

/// SPEC §9: 0.3 with the local embedder, 0.6 with a remote one.
fn kb_min_similarity(infra: &Infra) -> f64 {
    if infra.settings.embedding_provider == "local" { 0.3 } else { 0.6 }
}

/// The lead of this turn, locked for the rest of the transaction (or created in it).
async fn lead_for_turn(
    txn: &DatabaseTransaction,
    ctx: &Ctx,
    lead_id: Option<i64>,
    provider: &str,
    now: DateTime<Utc>,
) -> Result<(leads::Model, bool)> {
    if let Some(id) = lead_id {
        return Ok((lead_repo::lock_visible(txn, ctx, id).await?, false));
    }
    let broker_id = ctx.own_broker()?;
    let assigned_to = if ctx.role == Role::Agent { ctx.user_id } else { None };
    let lead = leads::ActiveModel {
        broker_id: Set(broker_id),
        assigned_to: Set(assigned_to),
        tags: Set(json!(["chat", provider])),
        metadata: Set(json!({"source": provider})),
        last_contacted: Set(Some(now)),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    lead_repo::add_activity(txn, ctx, &lead, "lead_created", json!({"source": provider})).await?;
    Ok((lead, true))
}

#[allow(clippy::too_many_arguments)]
async fn insert_message(
    txn: &DatabaseTransaction,
    lead: &leads::Model,
    provider: &str,
    inbound: &Inbound,
    text: &str,
    direction: &str,
    sender_type: &str,
    channel_message_id: Option<String>,
    prompt_version_id: Option<i64>,
) -> Result<chat_messages::Model> {
    chat_messages::ActiveModel {
        lead_id: Set(lead.id),
        broker_id: Set(lead.broker_id),
        provider: Set(provider.to_string()),
        channel_user_id: Set(Some(inbound.channel_user_id.clone().unwrap_or_else(|| "0".into()))),
        channel_username: Set(inbound.channel_username.clone()),
        channel_message_id: Set(channel_message_id),
        message_text: Set(text.to_string()),
        direction: Set(direction.to_string()),
        sender_type: Set(sender_type.to_string()),
        ai_response_used: Set(sender_type == "ai"),
        prompt_version_id: Set(prompt_version_id),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| match crate::db::unique_constraint(&e).as_deref() {
        Some("chat_messages_channel_message_key") => {
            Error::conflict("duplicate_message", "This channel message was already received")
        }
        _ => e.into(),
    })
}

/// The dedupe key of the reply to an inbound message.
fn reply_key(inbound_id: i64) -> String {
    format!("reply:{inbound_id}")
}

/// A message received before: the reply then given, nothing done again.
async fn replay_duplicate(
    txn: &DatabaseTransaction,
    lead: &leads::Model,
    provider: &str,
    channel_message_id: &str,
) -> Result<Option<TurnResult>> {
    let by_key = |key: String| {
        chat_messages::Entity::find()
            .filter(chat_messages::Column::BrokerId.eq(lead.broker_id))
            .filter(chat_messages::Column::Provider.eq(provider))
            .filter(chat_messages::Column::ChannelMessageId.eq(key))
    };
    let Some(previous) = by_key(channel_message_id.to_string()).one(txn).await? else {
        return Ok(None);
    };
    let answer = by_key(reply_key(previous.id)).one(txn).await?;
    let response = answer.map_or_else(|| HUMAN_MODE_SENTINEL.to_string(), |m| m.message_text);
    Ok(Some(TurnResult {
        conversation_state: lead.conversation_state.clone().unwrap_or_else(|| "greeting".into()),
        response,
        replied: false,
        duplicate: true,
        analysis: Value::Null,
        key_points: Vec::new(),
        appointment_id: None,
        streamed: false,
        replaced: false,
        lead: lead.clone(),
    }))
}

/// The conversation's memory row, updated with this turn's counters.
async fn save_conversation(
    txn: &DatabaseTransaction,
    lead: &leads::Model,
    existing: Option<chat_conversations::Model>,
    memory: Option<&Memory>,
    provider: &str,
    replied: bool,
    now: DateTime<Utc>,
) -> Result<chat_conversations::Model> {
    let memory_json = memory.map(|m| serde_json::to_value(m).unwrap_or_else(|_| json!({})));
    Ok(match existing {
        Some(c) => {
            let (inbound, outbound) = (c.inbound_count, c.outbound_count);
            let mut am = c.into_active_model();
            if let Some(m) = memory_json {
                am.memory = Set(m);
            }
            am.inbound_count = Set(inbound.saturating_add(1));
            am.outbound_count = Set(outbound.saturating_add(i32::from(replied)));
            am.last_inbound_at = Set(Some(now));
            if replied {
                am.last_outbound_at = Set(Some(now));
            }
            am.last_provider = Set(Some(provider.to_string()));
            am.updated_at = Set(now);
            am.update(txn).await?
        }
        None => {
            chat_conversations::ActiveModel {
                lead_id: Set(lead.id),
                broker_id: Set(lead.broker_id),
                memory: Set(memory_json.unwrap_or_else(|| json!({}))),
                inbound_count: Set(1),
                outbound_count: Set(i32::from(replied)),
                last_inbound_at: Set(Some(now)),
                last_outbound_at: Set(replied.then_some(now)),
                last_provider: Set(Some(provider.to_string())),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(txn)
            .await?
        }
    })
}

fn offer_of(s: &Slot) -> SlotOffer {
    SlotOffer { start: s.start.with_timezone(&Utc), end: s.end.with_timezone(&Utc) }
}

/// Up to 3 free slots: on `day` when given (else the first ones after it), else from `near` or now.
async fn free_slots(
    txn: &DatabaseTransaction,
    infra: &Infra,
    lead: &leads::Model,
    day: Option<chrono::NaiveDate>,
    near: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<SlotOffer>> {
    let from = match day {
        Some(d) => TZ
            .from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            .map_or(now, |t| t.with_timezone(&Utc))
            .max(now),
        None => near.unwrap_or(now).max(now),
    };
    let count = if day.is_some() { 12 } else { 3 };
    let slots = appointments::next_free_slots_in(txn, infra, lead.broker_id, lead.assigned_to, from, count).await?;
    let mut offers: Vec<SlotOffer> = match day {
        Some(d) => slots.iter().filter(|s| s.date() == d).map(offer_of).collect(),
        None => Vec::new(),
    };
    if offers.is_empty() {
        offers = slots.iter().map(offer_of).collect();
    }
    offers.truncate(3);
    Ok(offers)
}

/// Cancels the conversation's previous appointment (a reschedule) on the turn's transaction.
async fn cancel_previous(
    db: &impl ConnectionTrait,
    lead: &leads::Model,
    appointment_id: i64,
    now: DateTime<Utc>,
) -> Result<Option<appointment_rows::Model>> {
    let Some(row) = appointment_rows::Entity::find_by_id(appointment_id)
        .filter(appointment_rows::Column::LeadId.eq(lead.id))
        .filter(appointment_rows::Column::Status.is_in(["scheduled", "confirmed"]))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let mut am = row.into_active_model();
    am.status = Set("cancelled".into());
    am.cancelled_at = Set(Some(now));
    am.cancellation_reason = Set(Some("Reagendada por el lead en la conversación".into()));
    am.updated_at = Set(now);
    let row = am.update(db).await?;
    lead_repo::add_activity(
        db,
        &broker_ctx(lead.broker_id),
        lead,
        "appointment_cancelled",
        json!({"appointment_id": row.id, "reason": "rescheduled"}),
    )
    .await?;
    Ok(Some(row))
}

/// Side effects of a turn to run after its commit.
#[derive(Default)]
struct AfterCommit {
    booked: Option<crate::appointments::Appointment>,
    cancelled: Option<crate::appointments::Appointment>,
    escalated: Option<&'static str>,
    rules: Option<rules::RulesOutcome>,
}

/// Books `start` for the lead inside a savepoint (a reschedule cancels the previous appointment in
/// the same savepoint); a refusal rolls it back and offers alternatives.
#[allow(clippy::too_many_arguments)]
async fn book_turn(
    txn: &DatabaseTransaction,
    infra: &Infra,
    lead: &leads::Model,
    profile: &Profile,
    memory: &Memory,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<Outcome> {
    // The booking needs the contact data this very turn may have given.
    let mut with_contact = lead.clone();
    with_contact.name = profile.real_name().map(str::to_string).or(with_contact.name);
    with_contact.phone = profile.real_phone().map(str::to_string).or(with_contact.phone);
    with_contact.email = profile.real_email().map(str::to_string).or(with_contact.email);
    let ctx = broker_ctx(lead.broker_id);
    let sp = txn.begin().await?;
    let attempt: Result<(crate::appointments::Appointment, Option<appointment_rows::Model>)> = async {
        let cancelled = match memory.booked.as_ref() {
            Some(b) => cancel_previous(&sp, lead, b.appointment_id, now).await?,
            None => None,
        };
        let mut new = NewAppointment::new(lead.id, start);
        new.notes = Some("Agendada por Sofía en la conversación".into());
        let booked = appointments::book_in(&sp, &ctx, &with_contact, new, now).await?;
        Ok((booked, cancelled))
    }
    .await;
    match attempt {
        Ok((booked, cancelled)) => {
            sp.commit().await?;
            let booking = Booking {
                appointment_id: booked.row.id,
                start: booked.row.start_time,
                end: booked.row.end_time,
                location: booked.row.location.clone().or_else(|| booked.row.property_address.clone()),
                meet_url: booked.row.meet_url.clone(),
                agent_name: booked.agent_name.clone(),
            };
            after.cancelled = cancelled.map(|row| crate::appointments::Appointment {
                row,
                lead_name: with_contact.name.clone(),
                lead_phone: with_contact.phone.clone(),
                lead_email: with_contact.email.clone(),
                agent_name: booked.agent_name.clone(),
            });
            after.booked = Some(booked);
            Ok(Outcome::Booked(booking))
        }
        Err(e) if e.status() >= 500 => Err(e),
        Err(e) => {
            sp.rollback().await?;
            tracing::info!(lead_id = lead.id, code = e.code(), "the chosen slot could not be booked");
            let alternatives = free_slots(txn, infra, lead, None, Some(start), now).await.unwrap_or_default();
            Ok(Outcome::BookFailed { alternatives })
        }
    }
}

/// Runs the plan's action on the turn's transaction.
#[allow(clippy::too_many_arguments)]
async fn perform(
    txn: &DatabaseTransaction,
    infra: &Infra,
    lead: &leads::Model,
    profile: &Profile,
    memory: &Memory,
    plan: &Plan,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<Outcome> {
    Ok(match &plan.action {
        Action::None | Action::OptOut => Outcome::Nothing,
        Action::Escalate { reason } => {
            after.escalated = Some(*reason);
            Outcome::Escalated
        }
        Action::OfferSlots { day, near } => match free_slots(txn, infra, lead, *day, *near, now).await {
            Ok(slots) => Outcome::Slots(slots),
            Err(e) if matches!(e, Error::Unavailable(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, lead_id = lead.id, "free slots unavailable");
                Outcome::Nothing
            }
        },
        Action::Book { start } => book_turn(txn, infra, lead, profile, memory, *start, now, after).await?,
    })
}

/// `phone` / `email` another lead of the broker already uses: kept in metadata, not the column.
async fn contact_taken(
    db: &impl ConnectionTrait,
    lead: &leads::Model,
    phone: Option<&str>,
    email: Option<&str>,
) -> Result<bool> {
    Ok(lead_repo::find_by_contact(db, lead.broker_id, phone, email).await?.is_some_and(|id| id != lead.id))
}

/// The whole turn for one inbound message (see the module docs).
#[tracing::instrument(skip_all, fields(lead_id = inbound.lead_id))]
pub async fn handle(infra: &Infra, ctx: &Ctx, inbound: Inbound) -> Result<TurnResult> {
    turn(infra, ctx, inbound, None, None).await
}

/// [`handle`], with the model's tokens sent to `sink` as they come when a provider writes the reply
/// (`chat/stream`). Nothing is sent to it otherwise: the caller replays the reply.
pub async fn handle_streaming(
    infra: &Infra,
    ctx: &Ctx,
    inbound: Inbound,
    sink: Option<llm_turn::TokenSink>,
) -> Result<TurnResult> {
    turn(infra, ctx, inbound, None, sink).await
}

/// The turn for an inbound row a channel webhook already stored (`stored_message_id`, a row of
/// `inbound.lead_id`): the row is answered instead of inserted again, and a row already answered
/// replays its reply (`duplicate`). `inbound.text` may hold more than the row's own text (the
/// messages of a burst, answered together).
#[tracing::instrument(skip_all, fields(lead_id = inbound.lead_id, stored_message_id))]
pub async fn handle_stored(infra: &Infra, ctx: &Ctx, inbound: Inbound, stored_message_id: i64) -> Result<TurnResult> {
    if inbound.lead_id.is_none() {
        return Err(Error::invalid_body("lead_id", "a stored message names its lead"));
    }
    turn(infra, ctx, inbound, Some(stored_message_id), None).await
}

/// A stored inbound row of the lead, or the replay of its reply when it was answered already.
/// Whether an inbound message of `lead` on `row`'s channel newer than `row` has its reply (the
/// reply's `channel_message_id` is [`reply_key`] of its inbound row).
async fn answered_later(txn: &DatabaseTransaction, lead: &leads::Model, row: &chat_messages::Model) -> Result<bool> {
    let found = txn
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 FROM chat_messages i JOIN chat_messages o \
               ON o.broker_id = i.broker_id AND o.provider = i.provider AND o.channel_message_id = 'reply:' || i.id \
             WHERE i.lead_id = $1 AND i.provider = $2 AND i.direction = 'in' AND i.id > $3 LIMIT 1",
            [lead.id.into(), row.provider.clone().into(), row.id.into()],
        ))
        .await?;
    Ok(found.is_some())
}

async fn stored_inbound(
    txn: &DatabaseTransaction,
    lead: &leads::Model,
    id: i64,
) -> Result<std::result::Result<chat_messages::Model, TurnResult>> {
    let row = chat_messages::Entity::find_by_id(id)
        .filter(chat_messages::Column::LeadId.eq(lead.id))
        .filter(chat_messages::Column::Direction.eq("in"))
        .one(txn)
        .await?
        .ok_or(Error::NotFound("Message"))?;
    let answer = chat_messages::Entity::find()
        .filter(chat_messages::Column::BrokerId.eq(lead.broker_id))
        .filter(chat_messages::Column::Provider.eq(row.provider.clone()))
        .filter(chat_messages::Column::ChannelMessageId.eq(reply_key(row.id)))
        .one(txn)
        .await?;
    // A later message of the lead was answered already: its burst held this one (checked under
    // the lead's lock, so a job that read this row as pending before that turn committed does not
    // answer it a second time).
    if answer.is_none() && answered_later(txn, lead, &row).await? {
        return Ok(Err(TurnResult {
            conversation_state: lead.conversation_state.clone().unwrap_or_else(|| "greeting".into()),
            response: HUMAN_MODE_SENTINEL.into(),
            replied: false,
            duplicate: true,
            analysis: Value::Null,
            key_points: Vec::new(),
            appointment_id: None,
            streamed: false,
            replaced: false,
            lead: lead.clone(),
        }));
    }
    Ok(match answer {
        None => Ok(row),
        Some(m) => Err(TurnResult {
            conversation_state: lead.conversation_state.clone().unwrap_or_else(|| "greeting".into()),
            response: m.message_text,
            replied: false,
            duplicate: true,
            analysis: Value::Null,
            key_points: Vec::new(),
            appointment_id: None,
            streamed: false,
            replaced: false,
            lead: lead.clone(),
        }),
    })
}

async fn turn(
    infra: &Infra,
    ctx: &Ctx,
    inbound: Inbound,
    stored: Option<i64>,
    sink: Option<llm_turn::TokenSink>,
) -> Result<TurnResult> {
    let started = Instant::now();
    let now = Utc::now();
    if inbound.lead_id.is_some_and(|id| id <= 0) {
        return Err(Error::invalid_body("lead_id", "lead_id must be a positive integer"));
    }
    let provider = parse_provider(inbound.provider.as_deref())?;
    let text = sanitize::sanitize(&inbound.text)?;
    let channel_message_id = check_channel_field(inbound.channel_message_id.as_deref(), "channel_message_id")?;
    check_channel_field(inbound.channel_user_id.as_deref(), "channel_user_id")?;
    check_channel_field(inbound.channel_username.as_deref(), "channel_username")?;

    // The knowledge base first, outside the transaction (it depends only on the message).
    let kb_broker = match (ctx.broker_id, inbound.lead_id) {
        (Some(b), _) => Some(b),
        (None, Some(id)) => lead_repo::find_visible(&infra.db, ctx, id).await.ok().map(|l| l.broker_id),
        (None, None) => None,
    };
    let hits = match kb_broker {
        Some(b) => kb_hits(infra, b, &text, now).await,
        None => Vec::new(),
    };

    let txn = infra.db.begin().await?;
    let (lead, created) = lead_for_turn(&txn, ctx, inbound.lead_id, provider, now).await?;
    if let Some(key) = channel_message_id.as_deref()
        && !created
        && stored.is_none()
        // Checked under the lead's lock: a redelivery racing the first delivery waits for it.
        && let Some(result) = replay_duplicate(&txn, &lead, provider, key).await?
    {
        txn.commit().await?;
        return Ok(result);
    }
    let inbound_row = match stored {
        Some(id) => match stored_inbound(&txn, &lead, id).await? {
            Ok(row) => row,
            Err(replay) => {
                txn.commit().await?;
                return Ok(replay);
            }
        },
        None => {
            insert_message(&txn, &lead, provider, &inbound, &text, "in", "customer", channel_message_id.clone(), None)
                .await?
        }
    };
    let conversation = chat_conversations::Entity::find_by_id(lead.id).one(&txn).await?;
    let mut meta = open_metadata(&infra.cipher, lead.metadata.clone());

    // Gate: a person has the conversation.
    if lead.human_mode {
        save_conversation(&txn, &lead, conversation, None, provider, false, now).await?;
        let mut am = lead.clone().into_active_model();
        am.metadata = Set(seal_metadata(&infra.cipher, meta));
        am.last_contacted = Set(Some(now));
        am.updated_at = Set(now);
        let lead = am.update(&txn).await?;
        lead_repo::add_activity(
            &txn,
            &broker_ctx(lead.broker_id),
            &lead,
            "message",
            json!({"direction": "in", "message": text, "human_mode": true, "provider": provider}),
        )
        .await?;
        txn.commit().await?;
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            lead.broker_id,
            "human_mode_incoming",
            json!({"lead_id": lead.id, "lead_name": lead.name, "phone": lead.phone,
                   "message_text": truncate(&text, 300), "channel": provider, "assigned_to": lead.assigned_to,
                   "human_assigned_to": lead.human_assigned_to}),
        )
        .await;
        return Ok(TurnResult {
            conversation_state: lead.conversation_state.clone().unwrap_or_else(|| "greeting".into()),
            lead,
            response: HUMAN_MODE_SENTINEL.into(),
            replied: false,
            duplicate: false,
            analysis: Value::Null,
            key_points: Vec::new(),
            appointment_id: None,
            streamed: false,
            replaced: false,
        });
    }

    let facts = broker_facts(&txn, lead.broker_id).await?;
    // Gate: the broker asked Sofía not to answer this lead.
    if meta.get("do_not_reply").and_then(Value::as_bool).unwrap_or(false) {
        let response = format!(
            "Gracias por escribir a {}. Por este canal solo puedo ayudarte con consultas sobre propiedades; \
             un ejecutivo revisará tu mensaje.",
            facts.identity.broker_name
        );
        return finish_fixed(
            infra,
            txn,
            lead,
            conversation,
            meta,
            provider,
            &inbound,
            inbound_row,
            &text,
            response,
            now,
        )
        .await;
    }

    // Extraction and merge.
    let memory: Memory =
        conversation.as_ref().and_then(|c| serde_json::from_value(c.memory.clone()).ok()).unwrap_or_default();
    let state =
        lead.conversation_state.as_deref().and_then(ConversationState::parse).unwrap_or(ConversationState::Greeting);
    let before = store::profile_of(&lead, &meta);
    let ex = extract(&text, &ExtractCtx { now, expecting: &memory.asked, offered_slots: &memory.offered_slots });
    let (mut profile, mut changes) = merge(&before, &ex, &text, &memory.asked);
    profile.calificacion = qualify(
        &facts.criteria,
        profile.monthly_income,
        profile.dicom_status.and_then(|d| Dicom::parse(d.as_str())),
        profile.morosidad_amount,
    );
    let kb: Vec<KbHit> = if ex.question { hits } else { Vec::new() };
    let input = TurnInput {
        now,
        state,
        first_contact: conversation.is_none() && memory.turns == 0,
        text: &text,
        profile: &profile,
        changes: &changes,
        extraction: &ex,
        memory: &memory,
        identity: &facts.identity,
        kb_hits: &kb,
        kb_min_similarity: kb_min_similarity(infra),
        seed: u64::try_from(lead.id).unwrap_or_default(),
    };
    let plan = plan(&input);
    let mut after = AfterCommit::default();
    let outcome = perform(&txn, infra, &lead, &profile, &memory, &plan, now, &mut after).await?;
    let mut answer = reply(&input, &plan, &outcome);
    let analysis = serde_json::to_value(&ex).unwrap_or(Value::Null);

    // With a provider configured, the model writes a conversational turn's reply (the engine's
    // text is its draft and its fallback); action turns keep the engine's exact text.
    let mut written = None;
    let mut prompt_version_id = None;
    if let Some(router) = infra.llm.as_deref()
        && matches!(plan.action, Action::None)
    {
        let cfg = load_prompt_config(&txn, lead.broker_id).await?;
        prompt_version_id = cfg.version_id();
        let turn = llm_turn::TurnFacts {
            lead_id: lead.id,
            state: answer.next_state.as_str(),
            profile: &profile,
            kb: &kb,
            draft: &answer.text,
            release_note: meta.get("human_release_note").and_then(Value::as_str).map(str::to_string),
            now,
        };
        let req = llm_turn::request(&txn, &cfg, &turn).await?;
        let writing = async {
            match &sink {
                Some(sink) => llm_turn::write_streaming(infra, router, &req, &profile, &answer.text, sink).await,
                None => llm_turn::write(infra, router, &req, &profile, &answer.text).await,
            }
        };
        // The model's extraction runs alongside; its vetted facts fill what the rules left empty.
        let (mut w, (model_ex, extraction_calls)) =
            tokio::join!(writing, llm_turn::extract_with(infra, router, &text, now));
        let (filled, more) = merge(&profile, &llm_turn::gaps_filled(&ex, model_ex), &text, &memory.asked);
        if !more.is_empty() {
            profile = filled;
            profile.calificacion = qualify(
                &facts.criteria,
                profile.monthly_income,
                profile.dicom_status.and_then(|d| Dicom::parse(d.as_str())),
                profile.morosidad_amount,
            );
            changes.extend(more);
        }
        answer.text = w.text.clone();
        w.records.extend(extraction_calls);
        written = Some(w);
    }

    // The lead: contact columns, metadata, state.
    store::store_profile(&mut meta, &profile);
    meta.insert("conversation_state".into(), json!(answer.next_state.as_str()));
    meta.insert("last_analysis".into(), analysis.clone());
    meta.entry("source").or_insert_with(|| json!(provider));
    if matches!(plan.action, Action::OptOut) {
        meta.insert("opted_out".into(), json!(true));
    } else if answer.memory.opted_out != memory.opted_out && !answer.memory.opted_out {
        meta.insert("opted_out".into(), json!(false));
    }
    let changed_fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    let mut am = lead.clone().into_active_model();
    let mut name = lead.name.clone();
    if changes.iter().any(|c| c.field == Field::Name) {
        name = profile.real_name().map(str::to_string);
        am.name = Set(name.clone());
    }
    let mut phone = lead.phone.clone();
    if changes.iter().any(|c| c.field == Field::Phone)
        && let Some(p) = profile.real_phone()
    {
        if contact_taken(&txn, &lead, Some(p), None).await? {
            meta.insert("contact_phone".into(), json!(p));
        } else {
            phone = Some(p.to_string());
            am.phone = Set(phone.clone());
            meta.remove("contact_phone");
        }
    }
    let mut email = lead.email.clone();
    if changes.iter().any(|c| c.field == Field::Email)
        && let Some(e) = profile.real_email()
    {
        if contact_taken(&txn, &lead, None, Some(e)).await? {
            meta.insert("contact_email".into(), json!(e));
        } else {
            email = Some(e.to_string());
            am.email = Set(email.clone());
            meta.remove("contact_email");
        }
    }
    if let Some(reason) = after.escalated {
        am.human_mode = Set(true);
        am.human_taken_at = Set(Some(now));
        am.human_released_at = Set(None);
        meta.insert(
            "sentiment".into(),
            json!({"escalated": true, "escalated_at": now, "escalated_reason": reason, "tone_hint": null}),
        );
    }
    am.search_text = Set(search_text(name.as_deref(), phone.as_deref(), email.as_deref()));
    am.metadata = Set(seal_metadata(&infra.cipher, meta));
    am.conversation_state = Set(Some(answer.next_state.as_str().to_string()));
    am.last_contacted = Set(Some(now));
    am.updated_at = Set(now);
    let lead = am.update(&txn).await?;

    // The reply, the memory, the ledger, the activity.
    // The version is recorded when the model wrote the reply with it.
    let written_with = prompt_version_id.filter(|_| written.as_ref().is_some_and(|w| w.kept_draft.is_none()));
    let key = Some(reply_key(inbound_row.id));
    insert_message(&txn, &lead, provider, &inbound, &answer.text, "out", "ai", key, written_with).await?;
    save_conversation(&txn, &lead, conversation, Some(&answer.memory), provider, true, now).await?;
    // A ledger row per model attempt, and the local engine's when its text was sent.
    for call in written.iter().flat_map(|w| &w.records) {
        ledger::record(&txn, Some(lead.broker_id), Some(lead.id), call, prompt_version_id).await?;
    }
    if written.as_ref().is_none_or(|w| w.kept_draft.is_some()) {
        let context_chars = serde_json::to_string(&profile).map_or(0, |s| s.chars().count());
        let call = ledger::local_reply(
            text.chars().count() + context_chars,
            answer.text.chars().count(),
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
        ledger::record(&txn, Some(lead.broker_id), Some(lead.id), &call, prompt_version_id).await?;
    }
    // The turn's activity rows, in one statement.
    let row = |action: &str, details: Value| crate::leads::repo::activity_row(&lead, None, action, details);
    let mut rows = vec![row(
        "message",
        json!({"direction": "in", "message": text, "response": answer.text, "ai_used": true, "provider": provider,
               "conversation_state": answer.next_state.as_str(),
               "llm": written.as_ref().map(|w| json!({"used": w.kept_draft.is_none(), "kept_draft": w.kept_draft}))}),
    )];
    if !changed_fields.is_empty() {
        rows.push(row("data_extracted", json!({"fields": changed_fields})));
    }
    if let Some(reason) = after.escalated {
        rows.push(row("escalation", json!({"reason": reason, "message": text})));
    }
    if matches!(plan.action, Action::OptOut) {
        rows.push(row("opt_out", json!({"message": text})));
    }
    activity_log::Entity::insert_many(rows).exec(&txn).await?;
    let outcome_rules = rules::apply(infra, &txn, lead, now).await?;
    let lead = outcome_rules.lead.clone();
    after.rules = Some(outcome_rules);
    txn.commit().await?;

    let appointment_id = after.booked.as_ref().map(|a| a.row.id);
    publish_turn(infra, &lead, provider, &text, &answer.text, &after).await;
    Ok(TurnResult {
        conversation_state: answer.next_state.as_str().to_string(),
        response: answer.text,
        replied: true,
        duplicate: false,
        analysis,
        key_points: profile.key_points.clone(),
        appointment_id,
        streamed: written.as_ref().is_some_and(|w| w.streamed),
        replaced: written.as_ref().is_some_and(|w| w.streamed && w.kept_draft.is_some()),
        lead,
    })
}

/// A fixed reply (do-not-reply gate): logged, no engine, no ledger row.
#[allow(clippy::too_many_arguments)]
async fn finish_fixed(
    infra: &Infra,
    txn: DatabaseTransaction,
    lead: leads::Model,
    conversation: Option<chat_conversations::Model>,
    meta: Map<String, Value>,
    provider: &str,
    inbound: &Inbound,
    inbound_row: chat_messages::Model,
    text: &str,
    response: String,
    now: DateTime<Utc>,
) -> Result<TurnResult> {
    let mut am = lead.clone().into_active_model();
    am.metadata = Set(seal_metadata(&infra.cipher, meta));
    am.last_contacted = Set(Some(now));
    am.updated_at = Set(now);
    let lead = am.update(&txn).await?;
    insert_message(&txn, &lead, provider, inbound, &response, "out", "system", Some(reply_key(inbound_row.id)), None)
        .await?;
    save_conversation(&txn, &lead, conversation, None, provider, true, now).await?;
    lead_repo::add_activity(
        &txn,
        &broker_ctx(lead.broker_id),
        &lead,
        "message",
        json!({"direction": "in", "message": text, "response": response, "ai_used": false, "do_not_reply": true,
               "provider": provider}),
    )
    .await?;
    txn.commit().await?;
    Ok(TurnResult {
        conversation_state: lead.conversation_state.clone().unwrap_or_else(|| "greeting".into()),
        lead,
        response,
        replied: true,
        duplicate: false,
        analysis: Value::Null,
        key_points: Vec::new(),
        appointment_id: None,
        streamed: false,
        replaced: false,
    })
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The live events of a committed turn (published concurrently: one Redis connection, pipelined).
async fn publish_turn(
    infra: &Infra,
    lead: &leads::Model,
    provider: &str,
    text: &str,
    reply: &str,
    after: &AfterCommit,
) {
    let (redis, prefix, broker) = (&infra.redis, infra.prefix(), lead.broker_id);
    let message = events::publish_to_broker(
        redis,
        prefix,
        broker,
        "new_message",
        json!({"lead_id": lead.id, "lead_name": lead.name, "message": truncate(text, 200), "provider": provider}),
    );
    let answer = events::publish_to_broker(
        redis,
        prefix,
        broker,
        "ai_response",
        json!({"lead_id": lead.id, "message": truncate(reply, 200), "lead_score": lead.lead_score,
               "lead_status": lead.status}),
    );
    let handover = async {
        if let Some(reason) = after.escalated {
            events::publish_to_broker(
                redis,
                prefix,
                broker,
                "lead_frustrated",
                json!({"lead_id": lead.id, "lead_name": lead.name, "reason": reason,
                       "frustration_score": if reason == "explicit_request" { 0.0 } else { 0.8 },
                       "emotions": [], "last_message": truncate(text, 300), "channel": provider,
                       "assigned_to": lead.assigned_to}),
            )
            .await;
            events::publish_to_broker(
                redis,
                prefix,
                broker,
                "human_mode_changed",
                json!({"lead_id": lead.id, "human_mode": true, "taken_by": null, "reason": reason}),
            )
            .await;
        }
    };
    let rules = async {
        if let Some(o) = &after.rules {
            rules::publish(infra, o).await;
        }
    };
    tokio::join!(message, answer, handover, rules);
    crate::campaigns::on_inbound(infra, lead.id).await;
    if let Some(a) = &after.cancelled {
        appointments::after_cancel(infra, a).await;
    }
    if let Some(a) = &after.booked {
        appointments::after_booking(infra, a).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_parse_with_webchat_as_default() {
        assert_eq!(parse_provider(None).unwrap(), "webchat");
        assert_eq!(parse_provider(Some(" WhatsApp ")).unwrap(), "whatsapp");
        assert_eq!(parse_provider(Some("web_chat")).unwrap(), "webchat");
        let e = parse_provider(Some("fax")).unwrap_err();
        assert_eq!((e.status(), e.detail()[0]["loc"][1].as_str()), (422, Some("provider")));
    }

    #[test]
    fn the_reply_key_names_its_inbound_message() {
        assert_eq!(reply_key(42), "reply:42");
    }
}
