//! `/api/v1/chat`: talk to Sofía as a lead (`test`, and `stream` over SSE), read a lead's messages,
//! and the debug view `verify`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Body, IntoResponse, Request, RequestBody, Response};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{
    MetaMediaType, MetaRequest, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi};
use serde::Serialize;
use serde_json::Value;
use shared::chat::history;
use shared::chat::service::{self, Inbound, TurnResult};
use shared::entities::{activity_log, chat_messages};

use super::ApiTags;
use crate::body::StrictJsonBody;
use crate::error::ApiResult;
use crate::json_out::{JsonOut, rfc3339};
use crate::security::Auth;
use crate::state::AppState;

pub struct ChatApi;

/// A message from the lead.
#[derive(Object)]
pub struct ChatBody {
    /// 1–4000 characters after cleaning; HTML is stripped, prompt-injection markers are refused
    /// (422 `message_rejected`).
    pub message: String,
    /// The lead writing; omitted or null creates a new lead in the caller's broker.
    pub lead_id: Option<i64>,
    /// `webchat` (default) · `telegram` · `whatsapp` · `instagram` · `facebook` · `tiktok` · `voice`
    pub provider: Option<String>,
}

/// What the engine saw and decided this turn (for the dashboard's test chat).
#[derive(Object, Serialize)]
pub struct DebugInfo {
    pub conversation_state: String,
    /// This turn's extraction.
    pub last_analysis: Value,
    pub key_points: Vec<String>,
    pub human_mode: bool,
    pub pipeline_stage: String,
    pub calificacion: Option<String>,
    /// An appointment this turn booked.
    pub appointment_id: Option<i64>,
    /// The message had been received before; the earlier reply is returned.
    pub duplicate: bool,
}

/// Sofía's answer.
#[derive(Object, Serialize)]
pub struct ChatOut {
    /// The reply sent to the lead; `[human_mode]` while a person has the conversation.
    pub response: String,
    pub lead_id: i64,
    pub lead_score: f64,
    /// `cold` · `warm` · `hot` · `converted` · `lost`
    pub lead_status: String,
    pub conversation_state: String,
    pub debug_info: DebugInfo,
}

impl From<TurnResult> for ChatOut {
    fn from(t: TurnResult) -> Self {
        ChatOut {
            response: t.response,
            lead_id: t.lead.id,
            lead_score: t.lead.lead_score,
            lead_status: t.lead.status,
            conversation_state: t.conversation_state.clone(),
            debug_info: DebugInfo {
                conversation_state: t.conversation_state,
                last_analysis: t.analysis,
                key_points: t.key_points,
                human_mode: t.lead.human_mode,
                pipeline_stage: t.lead.pipeline_stage,
                calificacion: t.lead.calificacion,
                appointment_id: t.appointment_id,
                duplicate: t.duplicate,
            },
        }
    }
}

fn inbound(b: ChatBody, query_provider: Option<String>) -> Inbound {
    Inbound { provider: b.provider.or(query_provider), text: b.message, lead_id: b.lead_id, ..Inbound::default() }
}

/// One message of the history.
#[derive(Object, Serialize)]
pub struct MessageOut {
    pub id: i64,
    /// `in` (from the lead) · `out` (to the lead)
    pub direction: String,
    pub message_text: String,
    /// `customer` · `bot` · `human` · `system`
    pub sender_type: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    pub ai_response_used: bool,
    pub provider: String,
    pub channel_message_id: Option<String>,
}

impl From<chat_messages::Model> for MessageOut {
    fn from(m: chat_messages::Model) -> Self {
        let sender_type = if m.sender_type == "ai" { "bot".to_string() } else { m.sender_type };
        MessageOut {
            id: m.id,
            direction: m.direction,
            message_text: m.message_text,
            sender_type,
            created_at: m.created_at,
            ai_response_used: m.ai_response_used,
            provider: m.provider,
            channel_message_id: m.channel_message_id,
        }
    }
}

/// A page of a lead's messages, oldest first.
#[derive(Object, Serialize)]
pub struct MessagesOut {
    pub lead_id: i64,
    /// Always `chat_messages` (the table the history comes from).
    pub provider: String,
    pub messages: Vec<MessageOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Object)]
pub struct VerifyLead {
    pub id: i64,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub status: String,
    pub lead_score: f64,
    pub lead_score_components: Value,
    pub pipeline_stage: String,
    pub calificacion: Option<String>,
    pub conversation_state: Option<String>,
    pub human_mode: bool,
    /// Decrypted.
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Object)]
pub struct VerifyActivity {
    pub id: i64,
    pub action_type: String,
    pub details: Value,
    pub timestamp: DateTime<Utc>,
}

impl From<activity_log::Model> for VerifyActivity {
    fn from(a: activity_log::Model) -> Self {
        VerifyActivity { id: a.id, action_type: a.action_type, details: a.details, timestamp: a.created_at }
    }
}

#[derive(Object)]
pub struct VerifySummary {
    pub total_messages: u64,
    pub inbound_messages: u64,
    pub outbound_messages: u64,
    pub total_activities: u64,
    pub has_name: bool,
    pub has_phone: bool,
    pub has_email: bool,
    pub has_location: bool,
    pub has_budget: bool,
    pub has_income: bool,
    pub has_dicom: bool,
}

/// Everything about a lead's conversation.
#[derive(Object)]
pub struct VerifyOut {
    pub lead: VerifyLead,
    /// Newest first.
    pub messages: Vec<MessageOut>,
    /// The 20 newest.
    pub activities: Vec<VerifyActivity>,
    /// What the engine remembers between turns (asked fields, offered slots, booking).
    pub conversation_memory: Value,
    pub summary: VerifySummary,
}

impl From<history::Verification> for VerifyOut {
    fn from(v: history::Verification) -> Self {
        let r = v.lead.row;
        let s = v.summary;
        VerifyOut {
            lead: VerifyLead {
                id: r.id,
                name: r.name,
                phone: r.phone,
                email: r.email,
                status: r.status,
                lead_score: r.lead_score,
                lead_score_components: r.lead_score_components,
                pipeline_stage: r.pipeline_stage,
                calificacion: r.calificacion,
                conversation_state: r.conversation_state,
                human_mode: r.human_mode,
                metadata: Value::Object(v.lead.metadata),
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            messages: v.messages.into_iter().map(Into::into).collect(),
            activities: v.activities.into_iter().map(Into::into).collect(),
            conversation_memory: v.memory,
            summary: VerifySummary {
                total_messages: s.total_messages,
                inbound_messages: s.inbound_messages,
                outbound_messages: s.outbound_messages,
                total_activities: s.total_activities,
                has_name: s.has_name,
                has_phone: s.has_phone,
                has_email: s.has_email,
                has_location: s.has_location,
                has_budget: s.has_budget,
                has_income: s.has_income,
                has_dicom: s.has_dicom,
            },
        }
    }
}

// ---- SSE ------------------------------------------------------------------------------------------

/// `data: <json>\n\n` with the separators of API.md (`{"token": "Hola"}`).
fn frame(json: String) -> Vec<u8> {
    format!("data: {json}\n\n").into_bytes()
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub fn token_frame(token: &str) -> Vec<u8> {
    frame(format!("{{\"token\": {}}}", js(token)))
}

pub fn done_frame(t: &TurnResult) -> Vec<u8> {
    let score = serde_json::to_string(&t.lead.lead_score).unwrap_or_else(|_| "0.0".into());
    frame(format!(
        "{{\"done\": true, \"lead_id\": {}, \"lead_score\": {}, \"lead_status\": {}, \"conversation_state\": {}}}",
        t.lead.id,
        score,
        js(&t.lead.status),
        js(&t.conversation_state)
    ))
}

pub fn error_frame(message: &str, code: &str) -> Vec<u8> {
    frame(format!("{{\"error\": {}, \"code\": {}}}", js(message), js(code)))
}

/// The reply as the replay sends it: the first word bare, every later one with its leading space.
pub fn replay_tokens(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|w| !w.is_empty())
        .enumerate()
        .map(|(i, w)| if i == 0 { w.to_string() } else { format!(" {w}") })
        .collect()
}

/// A `text/event-stream` response: the replayed reply then `done`, or one `error` frame with a 4xx
/// (5xx) status.
pub struct EventStream(Response);

fn sse_response(status: StatusCode, body: Body) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/event-stream")
        .header("Cache-Control", "no-cache")
        .header("X-Accel-Buffering", "no")
        .body(body)
}

/// The sentence of an error for the `error` frame (a 422's first `loc: msg`).
fn error_message(detail: &Value) -> String {
    match detail {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let loc: Vec<&str> =
                    i["loc"].as_array().map(|l| l.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                format!("{}: {}", loc.join("."), i["msg"].as_str().unwrap_or("invalid"))
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

impl EventStream {
    fn error(status: u16, detail: &Value, code: &str) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        EventStream(sse_response(status, Body::from(error_frame(&error_message(detail), code))))
    }

    fn from_error(e: &shared::Error) -> Self {
        if e.status() >= 500 {
            tracing::error!(error = ?e, "chat stream failed");
        }
        Self::error(e.status(), &e.detail(), e.code())
    }

    fn replay(turn: TurnResult, delay: Duration) -> Self {
        let mut frames: Vec<Vec<u8>> = replay_tokens(&turn.response).iter().map(|t| token_frame(t)).collect();
        frames.push(done_frame(&turn));
        let stream = futures_util::stream::iter(frames.into_iter().enumerate()).then(move |(i, f)| async move {
            // The first token goes out at once; the pacing is between words.
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, std::io::Error>(f)
        });
        EventStream(sse_response(StatusCode::OK, Body::from_bytes_stream(stream)))
    }
}

impl EventStream {
    /// The turn with a provider writing the reply: its tokens are sent as they come. The response
    /// starts with the first token; a turn that ends before any (an error, an action turn, a
    /// provider that did not start) is answered as without a provider. The turn runs in its own
    /// task, so a client that goes away does not cut it short.
    async fn live(infra: &shared::Infra, ctx: shared::Ctx, inbound: service::Inbound) -> Self {
        let (sink, mut tokens) = tokio::sync::mpsc::unbounded_channel();
        let task_infra = infra.clone();
        let mut turn =
            tokio::spawn(async move { service::handle_streaming(&task_infra, &ctx, inbound, Some(sink)).await });
        let first = tokio::select! {
            first = tokens.recv() => first,
            ended = &mut turn => return Self::ended(ended, infra.settings.chat_stream_delay),
        };
        let Some(first) = first else {
            return Self::ended(turn.await, infra.settings.chat_stream_delay);
        };
        let rest = futures_util::stream::unfold((Some(tokens), Some(turn)), |(tokens, turn)| async move {
            if let Some(mut rx) = tokens
                && let Some(t) = rx.recv().await
            {
                return Some((Ok::<_, std::io::Error>(token_frame(&t)), (Some(rx), turn)));
            }
            let frame = match turn?.await {
                Ok(Ok(t)) if t.replaced => replaced_frame(&t),
                Ok(Ok(t)) => done_frame(&t),
                Ok(Err(e)) => error_frame(&error_message(&e.detail()), e.code()),
                Err(e) => {
                    tracing::error!(error = %e, "chat stream turn panicked");
                    error_frame("Internal server error", "internal_error")
                }
            };
            Some((Ok(frame), (None, None)))
        });
        let body = futures_util::stream::once(async move { Ok(token_frame(&first)) }).chain(rest);
        EventStream(sse_response(StatusCode::OK, Body::from_bytes_stream(body)))
    }

    fn ended(turn: Result<shared::Result<TurnResult>, tokio::task::JoinError>, delay: Duration) -> Self {
        match turn {
            Ok(Ok(turn)) => Self::replay(turn, delay),
            Ok(Err(e)) => Self::from_error(&e),
            Err(e) => Self::from_error(&shared::Error::internal(e)),
        }
    }
}

/// The `done` frame of a streamed reply the policy guard replaced: the reply sent is `response`.
pub fn replaced_frame(t: &TurnResult) -> Vec<u8> {
    let score = serde_json::to_string(&t.lead.lead_score).unwrap_or_else(|_| "0.0".into());
    frame(format!(
        "{{\"done\": true, \"lead_id\": {}, \"lead_score\": {}, \"lead_status\": {}, \"conversation_state\": {}, \
         \"replaced\": true, \"response\": {}}}",
        t.lead.id,
        score,
        js(&t.lead.status),
        js(&t.conversation_state),
        js(&t.response)
    ))
}

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        self.0
    }
}

/// One server-sent event, as OpenAPI 3.2 reads the schema of `text/event-stream` (and validators
/// such as schemathesis read it in 3.0 too): `data` is the frame's JSON text; `event` is never
/// sent, so it is the SSE default, `message`.
fn sse_event_schema() -> MetaSchema {
    let string = |description: &'static str| {
        MetaSchemaRef::Inline(Box::new(MetaSchema { description: Some(description), ..MetaSchema::new("string") }))
    };
    MetaSchema {
        description: Some("One event of the stream."),
        required: vec!["data"],
        properties: vec![
            ("event", string("The event type: always the SSE default, `message`.")),
            ("data", string("The frame, a JSON object written as text (see the response's description).")),
        ],
        ..MetaSchema::new("object")
    }
}

impl ApiResponse for EventStream {
    fn meta() -> MetaResponses {
        let sse = |status: u16, description: &'static str| MetaResponse {
            description,
            status: Some(status),
            status_range: None,
            content: vec![MetaMediaType {
                content_type: "text/event-stream",
                schema: MetaSchemaRef::Inline(Box::new(sse_event_schema())),
            }],
            headers: vec![],
        };
        MetaResponses {
            responses: vec![
                sse(
                    200,
                    "`data: {\"token\": …}` frames, then `data: {\"done\": true, \"lead_id\", \"lead_score\", \"lead_status\", \"conversation_state\"}`",
                ),
                sse(
                    404,
                    "The lead is not visible to the caller: one `data: {\"error\", \"code\": \"not_found\"}` frame",
                ),
                sse(
                    422,
                    "Bad body or message: one `data: {\"error\", \"code\"}` frame (`validation_error`, `message_rejected`)",
                ),
            ],
        }
    }

    fn register(_registry: &mut Registry) {}
}

/// The `stream` body: its parse errors become `error` frames instead of JSON errors.
pub struct StreamBody(Result<ChatBody, (u16, Value, String)>);

impl<'a> ApiExtractor<'a> for StreamBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        ChatBody::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: "application/json", schema: ChatBody::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match StrictJsonBody::<ChatBody>::from_request(request, body, opts).await {
            Ok(b) => Ok(StreamBody(Ok(b.0))),
            Err(e) => {
                let resp = e.into_response();
                let status = resp.status().as_u16();
                let bytes = resp.into_body().into_bytes().await.unwrap_or_default();
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let code = v["code"].as_str().unwrap_or("validation_error").to_string();
                Ok(StreamBody(Err((status, v["detail"].clone(), code))))
            }
        }
    }
}

#[OpenApi(tag = "ApiTags::Chat")]
impl ChatApi {
    /// Send a message to Sofía
    ///
    /// Runs the whole pipeline — sanitising, the lead (created when `lead_id` is omitted),
    /// extraction, scoring, qualification, pipeline stage, free slots and booking — and returns the
    /// reply. Another broker's lead is 404; an empty or too long message 422 `validation_error`; a
    /// prompt-injection attempt 422 `message_rejected`.
    #[oai(path = "/api/v1/chat/test", method = "post", operation_id = "chat_test")]
    async fn test(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: StrictJsonBody<ChatBody>,
        /// The channel, when the body does not name one.
        provider: Query<Option<String>>,
    ) -> ApiResult<JsonOut<ChatOut>> {
        let turn = service::handle(&state.infra, &auth, inbound(body.0, provider.0)).await?;
        Ok(JsonOut(turn.into()))
    }

    /// Send a message to Sofía, streaming the reply (SSE)
    ///
    /// The same pipeline as `chat/test`; the reply comes as `data: {"token": "…"}` frames (the local
    /// answer replayed word by word, `CHAT_STREAM_DELAY_MS` apart, the first at once), then
    /// `data: {"done": true, "lead_id", "lead_score", "lead_status", "conversation_state"}`. Errors are
    /// one `data: {"error": "…", "code": "…"}` frame with the error's 4xx status. Headers:
    /// `Cache-Control: no-cache`, `X-Accel-Buffering: no`.
    #[oai(path = "/api/v1/chat/stream", method = "post", operation_id = "chat_stream")]
    async fn stream(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: StreamBody,
        /// The channel, when the body does not name one.
        provider: Query<Option<String>>,
    ) -> EventStream {
        let b = match body.0 {
            Ok(b) => b,
            Err((status, detail, code)) => return EventStream::error(status, &detail, &code),
        };
        let inbound = inbound(b, provider.0);
        if state.infra.llm.is_some() {
            return EventStream::live(&state.infra, (*auth).clone(), inbound).await;
        }
        match service::handle(&state.infra, &auth, inbound).await {
            Ok(turn) => EventStream::replay(turn, state.infra.settings.chat_stream_delay),
            Err(e) => EventStream::from_error(&e),
        }
    }

    /// A lead's messages
    ///
    /// Oldest first, from `chat_messages`; `provider` narrows to one channel.
    #[oai(path = "/api/v1/chat/:lead_id/messages", method = "get", operation_id = "chat_messages")]
    async fn messages(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        lead_id: Path<i64>,
        #[oai(default, validator(minimum(value = "0"), maximum(value = "10000000")))] skip: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<u64>,
        provider: Query<Option<String>>,
    ) -> ApiResult<JsonOut<MessagesOut>> {
        let (rows, total) =
            history::messages(&state.infra, &auth, lead_id.0, provider.0.as_deref(), skip.0, limit.0).await?;
        Ok(JsonOut(MessagesOut {
            lead_id: lead_id.0,
            provider: "chat_messages".into(),
            messages: rows.into_iter().map(Into::into).collect(),
            total,
            skip: skip.0,
            limit: limit.0,
        }))
    }

    /// Debug view of a lead's conversation
    ///
    /// The lead (metadata decrypted), every message (newest first), the 20 newest activities, the
    /// engine's memory and a completeness summary (`has_name`, `has_phone`, `has_location`, `has_budget`, …).
    #[oai(path = "/api/v1/chat/verify/:lead_id", method = "get", operation_id = "chat_verify")]
    async fn verify(&self, state: Data<&AppState>, auth: Auth, lead_id: Path<i64>) -> ApiResult<Json<VerifyOut>> {
        Ok(Json(history::verify(&state.infra, &auth, lead_id.0).await?.into()))
    }
}

fn default_limit() -> u64 {
    100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_use_the_api_md_bytes() {
        assert_eq!(token_frame("Hola"), b"data: {\"token\": \"Hola\"}\n\n");
        assert_eq!(token_frame(" \"soy\""), b"data: {\"token\": \" \\\"soy\\\"\"}\n\n");
        assert_eq!(
            error_frame("x", "validation_error"),
            b"data: {\"error\": \"x\", \"code\": \"validation_error\"}\n\n"
        );
    }

    #[test]
    fn the_replay_keeps_every_character() {
        let text = "¡Hola! Soy Sofía,  de Inmobiliaria\nAndes.";
        let tokens = replay_tokens(text);
        assert_eq!(tokens[0], "¡Hola!");
        assert_eq!(tokens[1], " Soy");
        assert_eq!(tokens.concat(), text);
    }
}
