//! The LLM's part of a turn. With a provider configured (`LLM_PROVIDER` other than `local`), the
//! model writes the reply of a conversational turn: the system prompt is the broker's active prompt
//! (its active version, else its sections) with the collected and pending data, the conversation
//! stage, the knowledge-base hits and the local engine's draft; the chat history is the latest
//! messages, older ones summarised in one line.
//!
//! The local engine stays in charge of what must be exact: turns that book, offer slots, escalate
//! or opt out keep its text (times, confirmations). A model reply that breaks the DICOM / no-promise
//! rules ([`violation`]) or comes back empty is replaced by the draft, and when every provider fails
//! the draft is sent: a lead always gets an answer. Every attempt is a ledger row.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::engine::extract::DicomStatus;
use super::engine::policy::violation;
use super::engine::profile::Profile;
use super::engine::turn::KbHit;
use crate::Infra;
use crate::brokers::prompt::{FIELDS, KnowledgeHit, PromptConfig, TurnContext, build_system_prompt};
use crate::entities::chat_messages;
use crate::error::Result;
use crate::integrations::llm::{CallRecord, CallType, Message, Request, Router, StreamEvent};

/// Messages sent as chat history; older ones are summarised.
pub const HISTORY_WINDOW: u64 = 12;

/// What the model wrote, or why the draft was kept.
#[derive(Debug)]
pub struct Written {
    /// The text the lead gets.
    pub text: String,
    /// Every attempt, failed ones included, for the ledger.
    pub records: Vec<CallRecord>,
    /// `None`: the model's text is sent. Else why the draft was: `policy:<rule>`, `empty`, `failed`.
    pub kept_draft: Option<String>,
    /// Tokens went to the stream's sink (the draft then replaces them when `kept_draft` is set).
    pub streamed: bool,
}

/// Where a streamed turn's tokens go as they are released.
pub type TokenSink = tokio::sync::mpsc::UnboundedSender<String>;

/// The facts of the turn the prompt is built from.
pub struct TurnFacts<'a> {
    pub lead_id: i64,
    pub state: &'a str,
    pub profile: &'a Profile,
    pub kb: &'a [KbHit],
    pub draft: &'a str,
    pub release_note: Option<String>,
    pub now: DateTime<Utc>,
}

/// The known fields and the missing ones, as the prompt lists them.
fn collected_and_pending(p: &Profile) -> (Vec<(String, String)>, Vec<String>) {
    let value = |key: &str| -> Option<String> {
        match key {
            "name" => p.real_name().map(str::to_string),
            "phone" => p.real_phone().map(str::to_string),
            "email" => p.real_email().map(str::to_string),
            "location" => p.location.clone(),
            "monthly_income" => p.monthly_income.map(|v| v.to_string()),
            "dicom_status" => p.dicom_status.map(|d| d.as_str().to_string()),
            "budget" => p.budget.as_ref().and_then(|b| serde_json::to_value(b).ok()).map(|v| v.to_string()),
            _ => None,
        }
    };
    let mut collected = Vec::new();
    let mut pending = Vec::new();
    for (key, _) in FIELDS {
        match value(key) {
            Some(v) => collected.push((key.to_string(), v)),
            None => pending.push(key.to_string()),
        }
    }
    (collected, pending)
}

/// The system prompt and the chat messages of the turn. The lead's message is the last stored
/// inbound one, so it is in the history already.
pub async fn request(db: &impl ConnectionTrait, cfg: &PromptConfig, facts: &TurnFacts<'_>) -> Result<Request> {
    let mut recent: Vec<(String, String)> = chat_messages::Entity::find()
        .select_only()
        .columns([chat_messages::Column::Direction, chat_messages::Column::MessageText])
        .filter(chat_messages::Column::LeadId.eq(facts.lead_id))
        .order_by_desc(chat_messages::Column::Id)
        .limit(HISTORY_WINDOW + 1)
        .into_tuple()
        .all(db)
        .await?;
    let older = recent.len() > HISTORY_WINDOW as usize;
    recent.truncate(HISTORY_WINDOW as usize);
    recent.reverse();
    let (collected, pending) = collected_and_pending(facts.profile);
    let summary = older.then(|| {
        let points = facts.profile.key_points.join("; ");
        if points.is_empty() {
            "La conversación empezó antes de estos mensajes.".to_string()
        } else {
            format!("La conversación empezó antes de estos mensajes. Puntos clave: {points}.")
        }
    });
    let turn = TurnContext {
        conversation_state: Some(facts.state.to_string()),
        collected,
        pending,
        knowledge: facts
            .kb
            .iter()
            .map(|h| KnowledgeHit { title: h.title.clone(), content: h.snippet.clone() })
            .collect(),
        summary,
        release_note: facts.release_note.clone(),
        lead_id: Some(facts.lead_id),
        now: Some(facts.now),
    };
    let mut system = build_system_prompt(cfg, &turn);
    system.push_str(
        "\n\n## BORRADOR DEL SISTEMA\nEste borrador tiene los datos verificados de esta respuesta. Úsalo como \
         contenido y escríbelo con tu estilo; no agregues cifras, fechas ni promesas que no estén en él.\n",
    );
    system.push_str(facts.draft);
    let mut messages = vec![Message::system(system)];
    messages.extend(
        recent.into_iter().map(
            |(direction, text)| {
                if direction == "in" { Message::user(text) } else { Message::assistant(text) }
            },
        ),
    );
    Ok(Request::new(CallType::Reply, messages))
}

/// Whether the outgoing text may mention approval words: never when the lead has debts.
fn debt_context(p: &Profile) -> bool {
    p.dicom_status == Some(DicomStatus::HasDebt) || p.morosidad_amount.is_some_and(|a| a > 0)
}

/// The model's reply to `req`, guarded; the draft when it fails or breaks a rule.
pub async fn write(infra: &Infra, router: &Router, req: &Request, profile: &Profile, draft: &str) -> Written {
    let (records, outcome) = router.complete(infra, req).await;
    let keep = |why: String| Written {
        text: draft.to_string(),
        records: records.clone(),
        kept_draft: Some(why),
        streamed: false,
    };
    match outcome {
        Err(e) => {
            tracing::warn!(error = %e, "every LLM provider failed; the local engine's reply is sent");
            keep("failed".into())
        }
        Ok(c) => {
            let text = c.text.trim();
            if text.is_empty() {
                return keep("empty".into());
            }
            if let Some(rule) = violation(text, debt_context(profile)) {
                tracing::warn!(rule, "the LLM reply broke a policy rule; the local engine's reply is sent");
                return keep(format!("policy:{rule}"));
            }
            Written { text: text.to_string(), records, kept_draft: None, streamed: false }
        }
    }
}

/// Whether released text may end here: after a clause or sentence mark, or a line break.
fn at_clause_end(text: &str) -> bool {
    text.trim_end_matches(' ').ends_with(['.', ',', ';', ':', '!', '?', '\n'])
}

/// [`write`], streamed: the provider's tokens go to `sink` as they arrive, held back to the end of
/// each clause so the policy check sees the whole text released so far — nothing that breaks a rule
/// is ever shown. A stream that breaks a rule, breaks off or ends empty stops there and the draft is
/// the reply (`kept_draft`; the caller tells the client the streamed text was replaced). When no
/// provider starts a stream, nothing was sent and the draft is the reply.
pub async fn write_streaming(
    infra: &Infra,
    router: &Router,
    req: &Request,
    profile: &Profile,
    draft: &str,
    sink: &TokenSink,
) -> Written {
    use futures_util::StreamExt;
    let (mut records, started) = router.stream(infra, req).await;
    let mut stream = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no LLM provider started a stream; the local engine's reply is sent");
            return Written { text: draft.to_string(), records, kept_draft: Some("failed".into()), streamed: false };
        }
    };
    let debt = debt_context(profile);
    let (mut released, mut held) = (String::new(), String::new());
    let mut streamed = false;
    let mut verdict: Option<String> = None;
    let mut finished = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(StreamEvent::Token(t)) => {
                held.push_str(&t);
                if at_clause_end(&held) {
                    let candidate = format!("{released}{held}");
                    if let Some(rule) = violation(&candidate, debt) {
                        verdict = Some(format!("policy:{rule}"));
                        break;
                    }
                    streamed |= sink.send(std::mem::take(&mut held)).is_ok();
                    released = candidate;
                }
            }
            Ok(StreamEvent::Done(_)) => {
                finished = true;
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the LLM stream broke off; the local engine's reply is sent");
                verdict = Some("failed".into());
                break;
            }
        }
    }
    if verdict.is_none() {
        let whole = format!("{released}{held}");
        if let Some(rule) = violation(&whole, debt) {
            verdict = Some(format!("policy:{rule}"));
        } else if whole.trim().is_empty() {
            verdict = Some("empty".into());
        } else if !finished {
            verdict = Some("failed".into());
        } else {
            if !held.is_empty() {
                streamed |= sink.send(held).is_ok();
            }
            records.push(stream.record());
            return Written { text: whole.trim().to_string(), records, kept_draft: None, streamed };
        }
    }
    if let Some(why) = &verdict
        && why.starts_with("policy:")
    {
        tracing::warn!(
            rule = why.as_str(),
            "the streamed LLM reply broke a policy rule; the local engine's reply is sent"
        );
    }
    records.push(stream.record());
    Written { text: draft.to_string(), records, kept_draft: verdict, streamed }
}
