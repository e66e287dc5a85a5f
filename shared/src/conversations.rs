//! Human handoff (reference §5.6, §11; SPEC §6): the conversations inbox, taking a lead over from
//! Sofía, releasing it, replying as a person, the do-not-reply switch, and the timeouts of a lead
//! left in human mode.
//!
//! While `leads.human_mode` is set Sofía does not answer that lead on any channel (the chat pipeline
//! checks the flag); `human_assigned_to` is the person holding the conversation (`NULL` after an
//! automatic escalation, until somebody takes it). AGENTs see their assigned leads plus the
//! escalated ones nobody holds; a conversation held by another person is hidden from them, and
//! taking it is a 409. ADMINs see their whole broker, SUPERADMIN every broker.
//!
//! Timeouts are measured from the last human activity (the takeover or the latest human message):
//! a periodic sweep ([`due_timeouts`]) enqueues `notification` jobs, and [`run_timeout`] sends the
//! reminder to the holder, the alert to the admins, or releases the lead back to Sofía — each once
//! per stage and activity, whatever the redeliveries.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement, TransactionTrait,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::ctx::{Ctx, Role};
use crate::effects::{Effect, Outcome, perform_once};
use crate::entities::{chat_messages, leads, users};
use crate::error::{Error, FieldError, Result};
use crate::jobs::notification::{Notification, TimeoutStage};
use crate::leads::model::{open_metadata, search_needle};
use crate::leads::repo;
use crate::text::clean_text;
use crate::{Infra, events, jobs, knowledge};

/// A human message is at most this long (the chat pipeline's limit).
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Inbox page size: default and maximum.
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// How the caller narrows the leads it may act on, as SQL over `leads l` (`$1`, `$2` bound by
/// [`Scope::values`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    All,
    Broker(i64),
    Agent { broker_id: i64, user_id: i64 },
}

impl Scope {
    fn of(ctx: &Ctx, broker_filter: Option<i64>) -> Result<Self> {
        match (ctx.role, ctx.broker_id, ctx.user_id) {
            (Role::Superadmin, _, _) => Ok(broker_filter.map_or(Scope::All, Scope::Broker)),
            (_, Some(b), _) if broker_filter.is_some_and(|f| f != b) => Err(Error::NotFound("Broker")),
            (Role::Admin, Some(b), _) => Ok(Scope::Broker(b)),
            (Role::Agent, Some(b), Some(u)) => Ok(Scope::Agent { broker_id: b, user_id: u }),
            _ => Err(Error::forbidden("No broker is associated with this account")),
        }
    }

    /// The condition and its values, numbered from `$first`.
    fn condition(self, first: usize) -> (String, Vec<sea_orm::Value>) {
        match self {
            Scope::All => ("TRUE".into(), vec![]),
            Scope::Broker(b) => (format!("l.broker_id = ${first}"), vec![b.into()]),
            Scope::Agent { broker_id, user_id } => (
                format!(
                    "l.broker_id = ${first} AND (l.human_assigned_to = ${u} \
                     OR (l.human_assigned_to IS NULL AND (l.assigned_to = ${u} OR l.human_mode)))",
                    u = first + 1
                ),
                vec![broker_id.into(), user_id.into()],
            ),
        }
    }
}

/// The lead `id` if the caller may act on its conversation, locked for the transaction; else 404.
async fn lock_lead(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<leads::Model> {
    let (cond, mut values) = Scope::of(ctx, None)?.condition(2);
    values.insert(0, id.into());
    let found: Option<i64> = db
        .query_one_raw(stmt(&format!("SELECT l.id FROM leads l WHERE l.id = $1 AND {cond} FOR UPDATE"), values))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?;
    let Some(id) = found else { return Err(Error::NotFound("Lead")) };
    leads::Entity::find_by_id(id).one(db).await?.ok_or(Error::NotFound("Lead"))
}

// ---------------------------------------------------------------------------------------------
// Inbox

#[derive(Clone, Debug, Default)]
pub struct InboxQuery {
    /// `human` or `ai`.
    pub mode: Option<String>,
    /// Substring of the name, phone or email (accent- and case-insensitive).
    pub search: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    /// SUPERADMIN: one broker.
    pub broker_id: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InboxItem {
    pub id: i64,
    pub broker_id: i64,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub pipeline_stage: String,
    pub status: String,
    pub human_mode: bool,
    pub human_assigned_to: Option<i64>,
    pub do_not_reply: bool,
    pub last_message: String,
    pub last_message_at: DateTime<Utc>,
    /// `in` or `out`.
    pub last_message_direction: String,
    /// The provider of the last message (`webchat`, `telegram`, `whatsapp`…).
    pub channel: String,
    /// Inbound messages since the last outbound one.
    pub unread_count: i64,
}

/// Conversations (leads with at least one message) in the caller's scope, latest activity first.
pub async fn inbox(infra: &Infra, ctx: &Ctx, q: &InboxQuery) -> Result<(Vec<InboxItem>, u64)> {
    let mode = match q.mode.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        None => None,
        Some("human") => Some(true),
        Some("ai") => Some(false),
        Some(_) => {
            return Err(Error::invalid(
                "validation_error",
                FieldError::query("mode", "mode must be `human` or `ai`", "value_error"),
            ));
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::invalid(
            "validation_error",
            FieldError::query("limit", format!("limit must be between 1 and {MAX_LIMIT}"), "value_error"),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    let scope = Scope::of(ctx, q.broker_id)?;
    let (cond, mut values) = scope.condition(1);
    let mut filters = vec![cond];
    if let Some(m) = mode {
        values.push(m.into());
        filters.push(format!("l.human_mode = ${}", values.len()));
    }
    if let Some(needle) = q.search.as_deref().and_then(search_needle) {
        let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        values.push(format!("%{escaped}%").into());
        filters.push(format!("l.search_text LIKE ${}", values.len()));
    }
    let filter = filters.join(" AND ");
    let total: i64 = infra
        .db
        .query_one_raw(stmt(
            &format!(
                "SELECT count(*) FROM leads l WHERE {filter} \
                 AND EXISTS (SELECT 1 FROM chat_messages c WHERE c.lead_id = l.id)"
            ),
            values.clone(),
        ))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0);
    values.push((limit as i64).into());
    values.push((crate::db::offset(offset) as i64).into());
    let sql = format!(
        "SELECT l.id, l.broker_id, l.name, l.phone, l.pipeline_stage, l.status, l.human_mode, l.human_assigned_to, \
                COALESCE((l.metadata->>'do_not_reply')::boolean, false), \
                m.message_text, m.created_at, m.direction, m.provider, \
                (SELECT count(*) FROM chat_messages u WHERE u.lead_id = l.id AND u.direction = 'in' \
                   AND u.id > COALESCE((SELECT max(o.id) FROM chat_messages o \
                                         WHERE o.lead_id = l.id AND o.direction = 'out'), 0)) \
         FROM leads l \
         JOIN LATERAL (SELECT c.message_text, c.created_at, c.direction, c.provider FROM chat_messages c \
                       WHERE c.lead_id = l.id ORDER BY c.created_at DESC, c.id DESC LIMIT 1) m ON TRUE \
         WHERE {filter} \
         ORDER BY m.created_at DESC, l.id DESC LIMIT ${} OFFSET ${}",
        values.len() - 1,
        values.len()
    );
    let rows = infra.db.query_all_raw(stmt(&sql, values)).await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(InboxItem {
            id: r.try_get_by_index(0)?,
            broker_id: r.try_get_by_index(1)?,
            name: r.try_get_by_index(2)?,
            phone: r.try_get_by_index(3)?,
            pipeline_stage: r.try_get_by_index(4)?,
            status: r.try_get_by_index(5)?,
            human_mode: r.try_get_by_index(6)?,
            human_assigned_to: r.try_get_by_index(7)?,
            do_not_reply: r.try_get_by_index(8)?,
            last_message: preview(&r.try_get_by_index::<String>(9)?),
            last_message_at: r.try_get_by_index(10)?,
            last_message_direction: r.try_get_by_index(11)?,
            channel: r.try_get_by_index(12)?,
            unread_count: r.try_get_by_index(13)?,
        });
    }
    Ok((items, total.max(0) as u64))
}

/// The first 300 characters of a message, for lists and live events.
fn preview(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Takeover, release, human messages, do-not-reply

/// A lead's handoff state after an action.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HandoffState {
    pub ok: bool,
    pub lead_id: i64,
    pub human_mode: bool,
    pub human_assigned_to: Option<i64>,
    pub human_taken_at: Option<DateTime<Utc>>,
    pub human_released_at: Option<DateTime<Utc>>,
}

impl From<&leads::Model> for HandoffState {
    fn from(l: &leads::Model) -> Self {
        HandoffState {
            ok: true,
            lead_id: l.id,
            human_mode: l.human_mode,
            human_assigned_to: l.human_assigned_to,
            human_taken_at: l.human_taken_at,
            human_released_at: l.human_released_at,
        }
    }
}

fn caller_id(ctx: &Ctx) -> Result<i64> {
    ctx.user_id.ok_or_else(|| Error::forbidden("A person must be signed in to hold a conversation"))
}

fn already_held(holder: i64) -> Error {
    Error::conflict("already_assigned", format!("This conversation is held by user {holder}"))
}

/// Puts the lead in human mode held by the caller (inside the caller's transaction). Taking a
/// conversation the caller already holds keeps its start time.
async fn hold(db: &impl ConnectionTrait, ctx: &Ctx, lead: leads::Model, now: DateTime<Utc>) -> Result<leads::Model> {
    let me = caller_id(ctx)?;
    match lead.human_assigned_to {
        Some(holder) if holder != me => return Err(already_held(holder)),
        Some(_) if lead.human_mode => return Ok(lead),
        _ => {}
    }
    let taken_at = if lead.human_mode { lead.human_taken_at.unwrap_or(now) } else { now };
    let mut am = lead.into_active_model();
    am.human_mode = Set(true);
    am.human_assigned_to = Set(Some(me));
    am.human_taken_at = Set(Some(taken_at));
    am.human_released_at = Set(None);
    am.updated_at = Set(now);
    let lead = am.update(db).await?;
    // A person took it: no automatic "a human will contact you" notice.
    set_metadata(db, lead.id, json!({"human_mode_notified": true}), &[]).await?;
    repo::add_activity(db, ctx, &lead, "human_takeover", json!({"taken_by": me, "taken_at": taken_at})).await?;
    Ok(lead)
}

/// Merges `set` into the lead's metadata and removes `remove` (plain, non-sensitive keys only).
async fn set_metadata(db: &impl ConnectionTrait, lead_id: i64, set: Value, remove: &[&str]) -> Result<()> {
    let remove: Vec<String> = remove.iter().map(|k| k.to_string()).collect();
    db.execute_raw(stmt(
        "UPDATE leads SET metadata = (COALESCE(metadata, '{}'::jsonb) - $3::text[]) || $2::jsonb WHERE id = $1",
        vec![lead_id.into(), set.into(), remove.into()],
    ))
    .await?;
    Ok(())
}

/// `POST /conversations/leads/{id}/takeover`: Sofía stops answering this lead; the caller holds it.
pub async fn takeover(infra: &Infra, ctx: &Ctx, lead_id: i64) -> Result<HandoffState> {
    let now = Utc::now();
    let txn = infra.db.begin().await?;
    let lead = lock_lead(&txn, ctx, lead_id).await?;
    let was_held = lead.human_mode && lead.human_assigned_to == ctx.user_id;
    let lead = hold(&txn, ctx, lead, now).await?;
    txn.commit().await?;
    if !was_held {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            lead.broker_id,
            "human_mode_changed",
            json!({"lead_id": lead.id, "human_mode": true, "taken_by": lead.human_assigned_to}),
        )
        .await;
    }
    Ok(HandoffState::from(&lead))
}

#[derive(Clone, Debug, Default)]
pub struct Release {
    /// Shown to Sofía on later turns (what the person agreed with the lead).
    pub note: Option<String>,
    /// With a `resolution_summary`, the resolution becomes a knowledge-base entry.
    pub trainable: bool,
    pub resolution_summary: Option<String>,
    pub resolution_category: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Released {
    #[serde(flatten)]
    pub state: HandoffState,
    /// The knowledge-base entry made from the resolution, when one was.
    pub knowledge_entry_id: Option<i64>,
}

/// `POST /conversations/leads/{id}/release`: Sofía answers the lead again. The holder or an ADMIN
/// may release; a lead not in human mode is answered as it is.
pub async fn release(infra: &Infra, ctx: &Ctx, lead_id: i64, input: Release) -> Result<Released> {
    let note = input.note.as_deref().map(clean_text).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(Error::invalid_body("note", "note must be at most 2000 characters"));
    }
    let summary = input.resolution_summary.as_deref().map(clean_text).filter(|s| !s.is_empty());
    if input.trainable && summary.is_none() {
        return Err(Error::invalid_body("resolution_summary", "a trainable release needs a resolution_summary"));
    }
    let now = Utc::now();
    let txn = infra.db.begin().await?;
    let lead = lock_lead(&txn, ctx, lead_id).await?;
    if !lead.human_mode {
        txn.commit().await?;
        return Ok(Released { state: HandoffState::from(&lead), knowledge_entry_id: None });
    }
    if let (Some(holder), Role::Agent) = (lead.human_assigned_to, ctx.role)
        && Some(holder) != ctx.user_id
    {
        return Err(already_held(holder));
    }
    let previous = lead.human_assigned_to;
    let lead = unhold(&txn, lead, now).await?;
    let mut set = json!({});
    if let Some(n) = &note {
        set["human_release_note"] = json!(n);
    }
    set_metadata(&txn, lead.id, set, &["human_mode_notified", "sentiment"]).await?;
    repo::add_activity(
        &txn,
        ctx,
        &lead,
        "human_release",
        json!({"released_by": ctx.user_id, "previously_assigned_to": previous, "note": note}),
    )
    .await?;
    txn.commit().await?;

    let mut knowledge_entry_id = None;
    if let (true, Some(summary)) = (input.trainable, summary) {
        let category = input.resolution_category.as_deref().map(clean_text).filter(|c| !c.is_empty());
        let entry = knowledge::service::create(
            infra,
            ctx,
            knowledge::service::NewEntry {
                title: format!("Resolución: {}", category.as_deref().unwrap_or("caso_escalado")),
                content: summary,
                source_type: Some("custom".into()),
                metadata: Some(json!({"source_subtype": "resolution", "lead_id": lead.id, "agent_id": ctx.user_id,
                                      "date": now.date_naive().to_string()})),
                broker_id: Some(lead.broker_id),
                lead_id: Some(lead.id),
            },
        )
        .await?;
        knowledge_entry_id = Some(entry.id);
    }
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        lead.broker_id,
        "human_mode_changed",
        json!({"lead_id": lead.id, "human_mode": false, "release_note": note}),
    )
    .await;
    Ok(Released { state: HandoffState::from(&lead), knowledge_entry_id })
}

async fn unhold(db: &impl ConnectionTrait, lead: leads::Model, now: DateTime<Utc>) -> Result<leads::Model> {
    let mut am = lead.into_active_model();
    am.human_mode = Set(false);
    am.human_assigned_to = Set(None);
    am.human_released_at = Set(Some(now));
    am.updated_at = Set(now);
    Ok(am.update(db).await?)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HumanMessage {
    pub ok: bool,
    pub lead_id: i64,
    pub message_id: i64,
    /// The channel it goes out on: the lead's last written channel (`webchat` when none).
    pub provider: String,
    /// `sent` for webchat (the widget shows it); `pending` for a channel whose sender delivers it.
    pub status: String,
    pub human_mode: bool,
}

/// `POST /conversations/leads/{id}/human-message {text}`: a person writes to the lead. Replying
/// pauses Sofía for this lead on every channel (the sender takes the conversation when nobody
/// holds it; held by somebody else it is a 409).
pub async fn human_message(infra: &Infra, ctx: &Ctx, lead_id: i64, raw: &str) -> Result<HumanMessage> {
    let text = clean_text(raw);
    if text.is_empty() {
        return Err(Error::invalid_body("text", "text must not be empty"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(Error::invalid_body("text", format!("text must be at most {MAX_MESSAGE_CHARS} characters")));
    }
    let me = caller_id(ctx)?;
    let now = Utc::now();
    let txn = infra.db.begin().await?;
    let lead = lock_lead(&txn, ctx, lead_id).await?;
    let was_human = lead.human_mode && lead.human_assigned_to == Some(me);
    let lead = hold(&txn, ctx, lead, now).await?;
    let (provider, channel_user_id) = last_channel(&txn, lead.id).await?;
    let sender: Option<String> =
        users::Entity::find_by_id(me).select_only().column(users::Column::Name).into_tuple().one(&txn).await?;
    let status = if provider == "webchat" { "sent" } else { "pending" };
    let message = chat_messages::ActiveModel {
        lead_id: Set(lead.id),
        broker_id: Set(lead.broker_id),
        provider: Set(provider.clone()),
        channel_user_id: Set(channel_user_id),
        message_text: Set(text.clone()),
        direction: Set("out".into()),
        status: Set(status.into()),
        sender_type: Set("human".into()),
        ai_response_used: Set(false),
        provider_metadata: Set(Some(json!({
            "sent_by": me, "agent_name": sender,
            "delivery": if provider == "webchat" { "widget" } else { "queued" },
        }))),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut am = lead.clone().into_active_model();
    am.last_contacted = Set(Some(now));
    let lead = am.update(&txn).await?;
    txn.commit().await?;
    if crate::channels::CHANNELS.contains(&provider.as_str())
        && let Err(e) = crate::channels::sender::enqueue_delivery(infra, lead.broker_id, lead.id, message.id).await
    {
        // The message is stored `pending`; the stale-message sweeper enqueues it again.
        tracing::warn!(error = %e, message_id = message.id, "could not enqueue the delivery of a human message");
    }
    if !was_human {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            lead.broker_id,
            "human_mode_changed",
            json!({"lead_id": lead.id, "human_mode": true, "taken_by": me}),
        )
        .await;
    }
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        lead.broker_id,
        "new_message",
        json!({"lead_id": lead.id, "message_id": message.id, "message": preview(&text), "direction": "out",
               "human": true, "sent_by": me, "provider": provider}),
    )
    .await;
    Ok(HumanMessage {
        ok: true,
        lead_id: lead.id,
        message_id: message.id,
        provider,
        status: status.into(),
        human_mode: lead.human_mode,
    })
}

/// The lead's last written inbound channel and the sender's id on it (`webchat` when none): where a
/// person's message or a reminder goes out. A call is no channel for written text.
pub async fn last_channel(db: &impl ConnectionTrait, lead_id: i64) -> Result<(String, Option<String>)> {
    let last: Option<(String, Option<String>)> = chat_messages::Entity::find()
        .select_only()
        .columns([chat_messages::Column::Provider, chat_messages::Column::ChannelUserId])
        .filter(chat_messages::Column::LeadId.eq(lead_id))
        .filter(chat_messages::Column::Direction.eq("in"))
        .filter(chat_messages::Column::Provider.ne("voice"))
        .order_by_desc(chat_messages::Column::CreatedAt)
        .order_by_desc(chat_messages::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    Ok(last.unwrap_or_else(|| ("webchat".into(), None)))
}

/// `POST|DELETE /conversations/leads/{id}/do-not-reply`: while on, every inbound message gets the
/// fixed fallback and no generated reply.
pub async fn set_do_not_reply(infra: &Infra, ctx: &Ctx, lead_id: i64, on: bool) -> Result<Value> {
    let txn = infra.db.begin().await?;
    let lead = lock_lead(&txn, ctx, lead_id).await?;
    let current = lead.metadata.get("do_not_reply").and_then(Value::as_bool).unwrap_or(false);
    if current != on {
        set_metadata(&txn, lead.id, json!({"do_not_reply": on}), &[]).await?;
        repo::add_activity(&txn, ctx, &lead, "do_not_reply", json!({"do_not_reply": on, "by": ctx.user_id})).await?;
    }
    txn.commit().await?;
    if current != on {
        events::publish_to_broker(
            &infra.redis,
            infra.prefix(),
            lead.broker_id,
            "do_not_reply_changed",
            json!({"lead_id": lead.id, "do_not_reply": on}),
        )
        .await;
    }
    Ok(json!({"ok": true, "lead_id": lead.id, "do_not_reply": on}))
}

/// `GET /conversations/leads/{id}/escalation-brief`: what a person taking the conversation needs —
/// why it was handed over, what is known and missing, and the last messages.
pub async fn escalation_brief(infra: &Infra, ctx: &Ctx, lead_id: i64) -> Result<Value> {
    let txn = infra.db.begin().await?;
    let lead = lock_lead(&txn, ctx, lead_id).await?;
    let last: Vec<chat_messages::Model> = chat_messages::Entity::find()
        .filter(chat_messages::Column::LeadId.eq(lead.id))
        .order_by_desc(chat_messages::Column::CreatedAt)
        .order_by_desc(chat_messages::Column::Id)
        .limit(8)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let meta = open_metadata(&infra.cipher, lead.metadata.clone());
    let reason = meta
        .get("sentiment")
        .and_then(|s| s.get("escalated_reason"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| if lead.human_mode { "manual_takeover".into() } else { "not_escalated".into() });
    let fields: [(&str, Option<Value>); 9] = [
        ("name", lead.name.clone().map(Value::from)),
        ("phone", lead.phone.clone().filter(|p| p.starts_with('+')).map(Value::from)),
        ("email", lead.email.clone().map(Value::from)),
        ("location", meta.get("location").cloned()),
        ("monthly_income", meta.get("monthly_income").cloned()),
        ("dicom_status", meta.get("dicom_status").cloned()),
        ("budget", meta.get("budget").cloned()),
        ("property_type", meta.get("property_type").cloned()),
        ("timeline", meta.get("timeline").cloned()),
    ];
    let mut collected = serde_json::Map::new();
    let mut missing = Vec::new();
    for (k, v) in fields {
        match v.filter(|v| !v.is_null()) {
            Some(v) => {
                collected.insert(k.into(), v);
            }
            None => missing.push(k),
        }
    }
    let suggested_action = if missing.contains(&"phone") || missing.contains(&"email") {
        "Saluda por su nombre, resuelve su consulta y pide los datos de contacto que faltan."
    } else if missing.contains(&"monthly_income") || missing.contains(&"dicom_status") {
        "Resuelve su consulta y completa la calificación financiera (renta y DICOM) sin prometer aprobación."
    } else {
        "Tiene los datos completos: resuelve su consulta y ofrece agendar una visita."
    };
    let messages: Vec<Value> = last
        .into_iter()
        .rev()
        .map(|m| {
            json!({"direction": m.direction, "sender_type": m.sender_type, "message_text": preview(&m.message_text),
                   "created_at": m.created_at.to_rfc3339(), "provider": m.provider})
        })
        .collect();
    let name = lead.name.clone().unwrap_or_else(|| "El lead".into());
    let brief = format!(
        "{name} ({stage}, {status}, puntaje {score:.0}). Motivo: {reason}. Datos conocidos: {known}. Faltan: {miss}.",
        stage = lead.pipeline_stage,
        status = lead.status,
        score = lead.lead_score,
        known = if collected.is_empty() {
            "ninguno".to_string()
        } else {
            collected.keys().cloned().collect::<Vec<_>>().join(", ")
        },
        miss = if missing.is_empty() { "nada".to_string() } else { missing.join(", ") },
    );
    Ok(json!({
        "lead_id": lead.id, "reason": reason, "brief": brief, "collected": collected, "missing": missing,
        "human_mode": lead.human_mode, "human_assigned_to": lead.human_assigned_to,
        "last_messages": messages, "suggested_action": suggested_action,
    }))
}

// ---------------------------------------------------------------------------------------------
// Timeouts

/// Minutes after the last human activity at which a lead in human mode gets a reminder to its
/// holder, an alert to the admins, and is released back to Sofía (`HUMAN_MODE_*_MINUTES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub reminder_minutes: i64,
    pub admin_alert_minutes: i64,
    pub auto_release_minutes: i64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { reminder_minutes: 15, admin_alert_minutes: 30, auto_release_minutes: 60 }
    }
}

impl Timeouts {
    pub fn after(&self, stage: TimeoutStage) -> Duration {
        Duration::minutes(match stage {
            TimeoutStage::Reminder => self.reminder_minutes,
            TimeoutStage::AdminAlert => self.admin_alert_minutes,
            TimeoutStage::AutoRelease => self.auto_release_minutes,
        })
    }

    /// The latest stage due `idle` after the last activity, if any.
    pub fn due(&self, idle: Duration) -> Option<TimeoutStage> {
        [TimeoutStage::AutoRelease, TimeoutStage::AdminAlert, TimeoutStage::Reminder]
            .into_iter()
            .find(|s| idle >= self.after(*s))
    }
}

/// When the conversation last saw a person: the takeover or the newest human message.
async fn last_human_activity(db: &impl ConnectionTrait, lead: &leads::Model) -> Result<Option<DateTime<Utc>>> {
    let Some(taken) = lead.human_taken_at else { return Ok(None) };
    let last_message: Option<DateTime<Utc>> = chat_messages::Entity::find()
        .select_only()
        .column_as(chat_messages::Column::CreatedAt.max(), "last")
        .filter(chat_messages::Column::LeadId.eq(lead.id))
        .filter(chat_messages::Column::SenderType.eq("human"))
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await?
        .flatten();
    Ok(Some(last_message.map_or(taken, |m| m.max(taken))))
}

/// The sweep: enqueues a `notification` job for every lead in human mode with a timeout due now.
/// Returns how many were enqueued. The job decides again when it runs, so a sweep that races a
/// release or a new message enqueues a job that does nothing.
pub async fn due_timeouts(infra: &Infra, now: DateTime<Utc>) -> Result<u64> {
    let t = infra.settings.human_mode;
    let earliest = now - Duration::minutes(t.reminder_minutes.min(t.admin_alert_minutes).min(t.auto_release_minutes));
    let rows = infra
        .db
        .query_all_raw(stmt(
            "SELECT l.id, l.broker_id, GREATEST(l.human_taken_at, \
                    COALESCE((SELECT max(c.created_at) FROM chat_messages c \
                              WHERE c.lead_id = l.id AND c.sender_type = 'human'), l.human_taken_at)) \
             FROM leads l WHERE l.human_mode AND l.human_taken_at IS NOT NULL AND l.human_taken_at <= $1 \
             ORDER BY l.id LIMIT 5000",
            vec![earliest.into()],
        ))
        .await?;
    let mut enqueued = 0;
    for r in rows {
        let (lead_id, broker_id, activity): (i64, i64, DateTime<Utc>) =
            (r.try_get_by_index(0)?, r.try_get_by_index(1)?, r.try_get_by_index(2)?);
        if let Some(stage) = t.due(now - activity) {
            if already_done(&infra.db, &effect_key(lead_id, stage, activity)).await? {
                continue;
            }
            jobs::enqueue(infra, Notification::HumanModeTimeout { broker_id, lead_id, stage }).await?;
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

fn effect_key(lead_id: i64, stage: TimeoutStage, activity: DateTime<Utc>) -> String {
    format!("human_timeout:{lead_id}:{}:{}", stage.as_str(), activity.timestamp_millis())
}

async fn already_done(db: &impl ConnectionTrait, key: &str) -> Result<bool> {
    Ok(db
        .query_one_raw(stmt(
            "SELECT 1 FROM performed_effects WHERE idempotency_key = $1 AND completed_at IS NOT NULL",
            vec![key.into()],
        ))
        .await?
        .is_some())
}

/// What a timeout job did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeoutOutcome {
    /// The lead is gone, no longer in human mode, or a person was active since: nothing to do.
    NotDue,
    /// This stage was already handled for this period of inactivity.
    AlreadyDone,
    Performed(TimeoutStage),
}

/// The `notification` handler of a human-mode timeout.
pub async fn run_timeout(
    infra: &Infra,
    broker_id: i64,
    lead_id: i64,
    stage: TimeoutStage,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<TimeoutOutcome> {
    let Some(lead) = leads::Entity::find_by_id(lead_id).one(&infra.db).await? else {
        return Ok(TimeoutOutcome::NotDue);
    };
    if lead.broker_id != broker_id || !lead.human_mode {
        return Ok(TimeoutOutcome::NotDue);
    }
    let Some(activity) = last_human_activity(&infra.db, &lead).await? else { return Ok(TimeoutOutcome::NotDue) };
    let t = infra.settings.human_mode;
    let idle = now - activity;
    if idle < t.after(stage) {
        return Ok(TimeoutOutcome::NotDue);
    }
    let key = effect_key(lead_id, stage, activity);
    let effect = Effect { key: &key, kind: "human_mode_timeout", broker_id: Some(broker_id), lead_id: Some(lead_id) };
    let elapsed = idle.num_minutes();
    let lead_name = lead.name.clone();
    let perform = || async {
        match stage {
            TimeoutStage::Reminder => {
                let data = json!({"lead_id": lead_id, "lead_name": lead_name, "assigned_to": lead.human_assigned_to,
                                  "elapsed_minutes": elapsed, "target_user_id": lead.human_assigned_to});
                events::publish_to_broker(&infra.redis, infra.prefix(), broker_id, "human_mode_reminder", data.clone())
                    .await;
                if let Some(user) = lead.human_assigned_to {
                    events::publish_to_user(&infra.redis, infra.prefix(), broker_id, user, "human_mode_reminder", data)
                        .await;
                }
            }
            TimeoutStage::AdminAlert => {
                let data = json!({"lead_id": lead_id, "lead_name": lead_name, "assigned_to": lead.human_assigned_to,
                                  "elapsed_minutes": elapsed});
                events::publish_to_broker(&infra.redis, infra.prefix(), broker_id, "human_mode_admin_alert", data)
                    .await;
            }
            TimeoutStage::AutoRelease => {
                let txn = infra.db.begin().await?;
                let locked = leads::Entity::find_by_id(lead_id).lock_exclusive().one(&txn).await?;
                // Released or taken again meanwhile: leave it.
                let Some(locked) = locked.filter(|l| l.human_mode && l.human_taken_at == lead.human_taken_at) else {
                    txn.commit().await?;
                    return Ok(json!({"released": false}));
                };
                let previous = locked.human_assigned_to;
                let released = unhold(&txn, locked, now).await?;
                set_metadata(&txn, lead_id, json!({}), &["human_mode_notified", "sentiment"]).await?;
                repo::add_activity(
                    &txn,
                    &Ctx::broker_system(broker_id),
                    &released,
                    "human_auto_release",
                    json!({"previously_assigned_to": previous, "idle_minutes": elapsed}),
                )
                .await?;
                txn.commit().await?;
                events::publish_to_broker(
                    &infra.redis,
                    infra.prefix(),
                    broker_id,
                    "human_mode_auto_released",
                    json!({"lead_id": lead_id, "lead_name": lead_name, "previously_assigned_to": previous}),
                )
                .await;
                events::publish_to_broker(
                    &infra.redis,
                    infra.prefix(),
                    broker_id,
                    "human_mode_changed",
                    json!({"lead_id": lead_id, "human_mode": false, "release_note": null, "automatic": true}),
                )
                .await;
            }
        }
        Ok(json!({"stage": stage.as_str()}))
    };
    match perform_once(&infra.db, effect, holder, std::time::Duration::from_secs(60), perform).await? {
        Outcome::Performed(_) => Ok(TimeoutOutcome::Performed(stage)),
        Outcome::AlreadyDone(_) => Ok(TimeoutOutcome::AlreadyDone),
    }
}

/// Parses a `HUMAN_MODE_*_MINUTES` value list, for settings.
pub fn timeouts_from(reminder: u64, alert: u64, release: u64) -> Timeouts {
    Timeouts {
        reminder_minutes: reminder.clamp(1, 24 * 60) as i64,
        admin_alert_minutes: alert.clamp(1, 24 * 60) as i64,
        auto_release_minutes: release.clamp(1, 7 * 24 * 60) as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_due_stage_wins() {
        let t = Timeouts::default();
        assert_eq!(t.due(Duration::minutes(14)), None);
        assert_eq!(t.due(Duration::minutes(15)), Some(TimeoutStage::Reminder));
        assert_eq!(t.due(Duration::minutes(29)), Some(TimeoutStage::Reminder));
        assert_eq!(t.due(Duration::minutes(30)), Some(TimeoutStage::AdminAlert));
        assert_eq!(t.due(Duration::minutes(61)), Some(TimeoutStage::AutoRelease));
    }

    #[test]
    fn agents_reach_their_leads_and_unheld_escalations_only() {
        let agent = Ctx::user(5, Some(2), Role::Agent);
        let (cond, values) = Scope::of(&agent, None).unwrap().condition(1);
        assert!(cond.contains("l.human_assigned_to = $2"), "{cond}");
        assert_eq!(values.len(), 2);
        assert!(matches!(Scope::of(&agent, Some(3)), Err(Error::NotFound(_))));
        let admin = Ctx::user(1, Some(2), Role::Admin);
        assert_eq!(Scope::of(&admin, None).unwrap(), Scope::Broker(2));
    }

    #[test]
    fn previews_are_cut_at_300_characters() {
        let long = "á".repeat(400);
        assert_eq!(preview(&long).chars().count(), 301);
        assert_eq!(preview("hola"), "hola");
    }
}
