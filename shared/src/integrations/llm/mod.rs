//! Remote LLMs behind one trait, [`Provider`], and the chain that calls them, [`Router`]:
//!
//! - [`gemini`]: `generateContent` / `streamGenerateContent?alt=sse` (key in `x-goog-api-key`);
//! - [`openai`]: `/chat/completions` with `stream` and `response_format`, for OpenAI and any
//!   compatible server (OpenRouter, Ollama, vLLM, llama.cpp) through `OPENAI_BASE_URL`;
//! - [`sse`]: the incremental server-sent-events parser both streams use;
//! - [`pricing`]: USD per 1 000 tokens, most specific model name first.
//!
//! `LLM_PROVIDER` names the primary, `LLM_FALLBACK_PROVIDER` the fallback (SPEC §2). The router
//! gives the primary `1 + LLM_RETRIES` attempts on transient errors (5xx, 408, 429, time-outs,
//! connection errors), waiting `LLM_RETRY_BACKOFF_MS`, doubling, at most 8× that, between them;
//! then the fallback once. A permanent error (another 4xx, a blocked or empty answer, invalid JSON
//! in JSON mode) is not retried on the same provider, but the fallback is still tried: SPEC §2 says
//! the fallback is tried when the primary fails (the reference raised at once, §9.4). When every
//! provider failed the router returns the error and the caller answers with the local engine, so a
//! lead always gets a reply.
//!
//! Each provider has its own circuit breaker (`llm:gemini`, `llm:openai`: open after 5 consecutive
//! transient failures, half-open after 30 s), so a primary that is down costs nothing once open and
//! does not take the fallback down with it; `/health` shows `llm` as the worst of them, and each
//! ([`breaker_states`]). An attempt the breaker refuses makes no request and has no ledger record.
//!
//! Nothing here writes the `llm_calls` ledger: every attempt, failed ones included, comes back as a
//! [`CallRecord`] for the caller to write with its broker, lead and prompt version.

pub mod gemini;
pub mod openai;
pub mod pricing;
pub mod sse;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use serde_json::Value;

pub use pricing::price;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::infra::Infra;
use crate::integrations::breaker::{self, Breaker, State};
use crate::integrations::{is_retryable_status, transport_error};

/// Longest provider message kept in an error, and longest error kept in a [`CallRecord`].
const MAX_ERROR: usize = 500;

/// Longest SSE line accepted from a provider (a stream that never breaks its lines is refused).
const MAX_SSE_LINE: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: Role::System, content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: Role::Assistant, content: content.into() }
    }
}

/// What a call is for; stored as the ledger's `call_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallType {
    /// Sofía's reply (`chat_response`).
    Reply,
    /// Lead data extraction in JSON mode (`qualification`).
    Extraction,
    /// Conversation and call summaries (`summary`).
    Summary,
    /// Knowledge-base embeddings of a remote provider (`embedding`).
    Embedding,
    Other,
}

impl CallType {
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::Reply => "chat_response",
            CallType::Extraction => "qualification",
            CallType::Summary => "summary",
            CallType::Embedding => "embedding",
            CallType::Other => "other",
        }
    }
}

/// One call: the conversation so far and how to answer it.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// System messages become Gemini's `systemInstruction`; the rest alternate user / assistant.
    pub messages: Vec<Message>,
    /// JSON mode (extraction): the answer is one JSON object; [`Router::complete`] checks it and
    /// returns just the object (a stream's tokens are passed on as they come).
    pub json: bool,
    /// `None`: `LLM_MAX_TOKENS`.
    pub max_tokens: Option<u32>,
    /// `None`: `LLM_TEMPERATURE`.
    pub temperature: Option<f32>,
    pub call_type: CallType,
}

impl Request {
    pub fn new(call_type: CallType, messages: Vec<Message>) -> Self {
        Self { messages, json: false, max_tokens: None, temperature: None, call_type }
    }

    /// Characters of every message, to estimate tokens when a provider reports no usage.
    fn input_chars(&self) -> usize {
        self.messages.iter().map(|m| m.content.chars().count()).sum()
    }
}

/// Tokens of one call, as the provider reported them (or estimated, see `estimated`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u32,
    /// Gemini's thinking tokens included: they are billed as output.
    pub output_tokens: u32,
    /// The cost the provider reported itself (OpenRouter's `usage.cost`); wins over the table.
    pub cost_usd: Option<f64>,
    /// The provider sent no usage (some OpenAI-compatible streams): tokens are characters / 4.
    pub estimated: bool,
}

impl Usage {
    /// The characters / 4 estimate (rounded up) for a provider that reported nothing.
    pub fn estimate(input_chars: usize, output_chars: usize) -> Self {
        let tokens = |chars: usize| u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX);
        Usage {
            input_tokens: tokens(input_chars),
            output_tokens: tokens(output_chars),
            cost_usd: None,
            estimated: true,
        }
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub text: String,
    pub usage: Usage,
    /// `gemini` or `openai`.
    pub provider: &'static str,
    /// The configured model name.
    pub model: String,
    /// From the start of the attempt to the whole answer.
    pub latency_ms: u64,
    /// The fallback provider answered.
    pub used_fallback: bool,
}

impl Completion {
    /// Its cost in USD ([`price`]); `None` for a model the pricing table does not know.
    pub fn cost_usd(&self) -> Option<f64> {
        price(&self.model, &self.usage)
    }

    /// Its ledger record.
    pub fn record(&self, call_type: CallType) -> CallRecord {
        CallRecord {
            provider: self.provider,
            model: self.model.clone(),
            call_type,
            input_tokens: self.usage.input_tokens,
            output_tokens: self.usage.output_tokens,
            cost_usd: self.cost_usd(),
            latency_ms: self.latency_ms,
            error: None,
            used_fallback: self.used_fallback,
            estimated: self.usage.estimated,
        }
    }
}

/// One attempt, for the `llm_calls` ledger (failed attempts too).
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub provider: &'static str,
    pub model: String,
    pub call_type: CallType,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// `None` when the pricing table does not know the model (NULL in the ledger). A failed
    /// attempt costs 0 unless it failed mid-stream, when its tokens so far are estimated.
    pub cost_usd: Option<f64>,
    pub latency_ms: u64,
    /// `None` on success; else the provider's status and message (≤ 500 characters, no secrets).
    pub error: Option<String>,
    pub used_fallback: bool,
    /// The tokens are the characters / 4 estimate, not the provider's count.
    pub estimated: bool,
}

impl CallRecord {
    fn failed(link: &Link, call_type: CallType, err: &Error, latency: Duration) -> Self {
        CallRecord {
            provider: link.provider.name(),
            model: link.provider.model().to_string(),
            call_type,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: Some(0.0),
            latency_ms: millis(latency),
            error: Some(truncate(&err.to_string(), MAX_ERROR)),
            used_fallback: link.fallback,
            estimated: false,
        }
    }
}

/// An item of a streamed answer: text as it arrives, then the whole answer once.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    Token(String),
    /// The concatenated text of every token, with usage and latency.
    Done(Completion),
}

/// A remote LLM.
pub trait Provider: Send + Sync {
    /// `gemini` or `openai` (the ledger's `provider`).
    fn name(&self) -> &'static str;

    fn model(&self) -> &str;

    /// One attempt at a whole answer.
    fn complete<'a>(&'a self, infra: &'a Infra, req: &'a Request) -> BoxFuture<'a, Result<Completion>>;

    /// One streamed attempt: resolves once the provider accepted the request (an error status
    /// fails here); the stream then yields tokens and ends with `Done`, or with one `Err` when the
    /// answer breaks off, is blocked, or stalls longer than `LLM_TIMEOUT_MS`.
    fn stream<'a>(
        &'a self,
        infra: &'a Infra,
        req: &'a Request,
    ) -> BoxFuture<'a, Result<BoxStream<'a, Result<StreamEvent>>>>;
}

/// The breaker of one provider.
pub fn breaker_for(provider: &str) -> Breaker {
    match provider {
        "gemini" => breaker::LLM.named("llm:gemini"),
        "openai" => breaker::LLM.named("llm:openai"),
        _ => breaker::LLM,
    }
}

/// The provider names `LLM_PROVIDER` and `LLM_FALLBACK_PROVIDER` configure (none for `local`),
/// without checking their keys.
fn configured_names(settings: &Settings) -> Result<Vec<&'static str>> {
    let parse = |var: &str, value: &str| -> Result<Option<&'static str>> {
        match value.trim().to_ascii_lowercase().as_str() {
            "local" | "" | "none" => Ok(None),
            "gemini" => Ok(Some("gemini")),
            "openai" => Ok(Some("openai")),
            other => Err(Error::Config(format!("{var} {other:?} is not one of local, gemini, openai"))),
        }
    };
    let Some(primary) = parse("LLM_PROVIDER", &settings.llm_provider)? else {
        return Ok(Vec::new());
    };
    let fallback = match settings.llm_fallback_provider.as_deref() {
        Some(f) => parse("LLM_FALLBACK_PROVIDER", f)?,
        None => None,
    };
    Ok(match fallback {
        Some(f) if f != primary => vec![primary, f],
        _ => vec![primary],
    })
}

/// The LLM breakers for `/health`: the worst state of them (`llm`), and each configured
/// provider's (`llm:gemini`, `llm:openai`).
pub async fn breaker_states(infra: &Infra) -> (State, Vec<(&'static str, State)>) {
    let names = configured_names(&infra.settings).unwrap_or_default();
    let mut each = Vec::with_capacity(names.len());
    let mut worst = breaker::LLM.state(infra).await;
    for name in names {
        let b = breaker_for(name);
        let state = b.state(infra).await;
        worst = worse(worst, state);
        each.push((b.name, state));
    }
    (worst, each)
}

fn worse(a: State, b: State) -> State {
    let rank = |s: State| match s {
        State::Closed => 0,
        State::HalfOpen => 1,
        State::Open => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

struct Link {
    provider: Box<dyn Provider>,
    breaker: Breaker,
    fallback: bool,
}

/// The configured chain: the primary with retries, then the fallback once.
pub struct Router {
    links: Vec<Link>,
    retries: u32,
    backoff: Duration,
}

impl Router {
    /// The chain `LLM_PROVIDER` / `LLM_FALLBACK_PROVIDER` configure; `None` for `local`. An unknown
    /// provider or a missing API key is [`Error::Config`], for start-up to refuse. A fallback equal
    /// to the primary, or `local`, adds nothing (the local engine is always the last resort).
    pub fn from_settings(settings: &Settings) -> Result<Option<Router>> {
        let mut providers = configured_names(settings)?.into_iter().map(|name| -> Result<Box<dyn Provider>> {
            Ok(match name {
                "gemini" => Box::new(gemini::Gemini::from_settings(settings)?),
                _ => Box::new(openai::OpenAi::from_settings(settings)?),
            })
        });
        let Some(primary) = providers.next().transpose()? else {
            return Ok(None);
        };
        let fallback = providers.next().transpose()?;
        Ok(Some(Router::new(primary, fallback, settings.llm_retries, settings.llm_retry_backoff)))
    }

    /// A chain of the given providers (`retries` on the primary, first wait `backoff`).
    pub fn new(
        primary: Box<dyn Provider>,
        fallback: Option<Box<dyn Provider>>,
        retries: u32,
        backoff: Duration,
    ) -> Router {
        let link =
            |provider: Box<dyn Provider>, fallback| Link { breaker: breaker_for(provider.name()), provider, fallback };
        let mut links = vec![link(primary, false)];
        links.extend(fallback.map(|f| link(f, true)));
        Router { links, retries, backoff }
    }

    /// `(provider, model)` of the chain, primary first.
    pub fn providers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.links.iter().map(|l| (l.provider.name(), l.provider.model()))
    }

    /// The wait before retry `n` (1-based): the backoff, doubling, at most 8×.
    fn delay(&self, n: u32) -> Duration {
        self.backoff.saturating_mul(1 << n.saturating_sub(1).min(3))
    }

    /// Attempts on `link` (the primary retries transient errors).
    fn attempts(&self, link: &Link) -> u32 {
        if link.fallback { 1 } else { 1 + self.retries }
    }

    /// A whole answer from the first provider that gives one. Every attempt's record comes back,
    /// failed ones included; `Err` (the last error) only when every provider failed.
    #[tracing::instrument(skip_all, fields(call_type = req.call_type.as_str()))]
    pub async fn complete(&self, infra: &Infra, req: &Request) -> (Vec<CallRecord>, Result<Completion>) {
        let mut records = Vec::new();
        let mut last = None;
        for link in &self.links {
            for attempt in 1..=self.attempts(link) {
                if attempt > 1 {
                    tokio::time::sleep(self.delay(attempt - 1)).await;
                }
                let started = Instant::now();
                let outcome = link.breaker.call(infra, || attempt_complete(link, infra, req)).await;
                match outcome {
                    Ok(mut c) => {
                        c.used_fallback = link.fallback;
                        records.push(c.record(req.call_type));
                        return (records, Ok(c));
                    }
                    Err(e) => {
                        let next = self.after_failure(link, req, &e, started, attempt, &mut records);
                        last = Some(e);
                        if next == Next::Provider {
                            break;
                        }
                    }
                }
            }
        }
        (records, Err(last.unwrap_or_else(|| Error::internal(anyhow::anyhow!("the LLM chain is empty")))))
    }

    /// A streamed answer from the first provider that starts one: a provider that fails before its
    /// first token is retried or failed over as in [`Router::complete`]; once tokens flow, a failure
    /// ends the stream with an `Err` (the caller decides what the lead sees). The records are those
    /// of the attempts before the stream began; the streamed attempt's is [`LlmStream::record`].
    #[tracing::instrument(skip_all, fields(call_type = req.call_type.as_str()))]
    pub async fn stream<'a>(&'a self, infra: &'a Infra, req: &'a Request) -> (Vec<CallRecord>, Result<LlmStream<'a>>) {
        let mut records = Vec::new();
        let mut last = None;
        for link in &self.links {
            for attempt in 1..=self.attempts(link) {
                if attempt > 1 {
                    tokio::time::sleep(self.delay(attempt - 1)).await;
                }
                let started = Instant::now();
                let outcome = link.breaker.call(infra, || start_stream(link, infra, req)).await;
                match outcome {
                    Ok((first, inner)) => {
                        let stream = LlmStream {
                            inner,
                            first: Some(first),
                            provider: link.provider.name(),
                            model: link.provider.model().to_string(),
                            call_type: req.call_type,
                            used_fallback: link.fallback,
                            started,
                            input_chars: req.input_chars(),
                            output_chars: 0,
                            outcome: None,
                        };
                        return (records, Ok(stream));
                    }
                    Err(e) => {
                        let next = self.after_failure(link, req, &e, started, attempt, &mut records);
                        last = Some(e);
                        if next == Next::Provider {
                            break;
                        }
                    }
                }
            }
        }
        (records, Err(last.unwrap_or_else(|| Error::internal(anyhow::anyhow!("the LLM chain is empty")))))
    }

    /// Records a failed attempt and says whether the same provider gets another.
    fn after_failure(
        &self,
        link: &Link,
        req: &Request,
        err: &Error,
        started: Instant,
        attempt: u32,
        records: &mut Vec<CallRecord>,
    ) -> Next {
        let (provider, model) = (link.provider.name(), link.provider.model());
        if is_circuit_open(err) {
            // No request was made: nothing to record, and no point waiting for a retry.
            tracing::warn!(provider, model, "LLM circuit open; skipping the provider");
            return Next::Provider;
        }
        tracing::warn!(provider, model, attempt, fallback = link.fallback, error = %err, "LLM attempt failed");
        records.push(CallRecord::failed(link, req.call_type, err, started.elapsed()));
        if crate::jobs::is_permanent(err) { Next::Provider } else { Next::Retry }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Retry,
    Provider,
}

fn is_circuit_open(err: &Error) -> bool {
    matches!(err, Error::Upstream { code: "circuit_open", .. })
}

/// One `complete` attempt; in JSON mode the text is reduced to the JSON object it holds.
async fn attempt_complete(link: &Link, infra: &Infra, req: &Request) -> Result<Completion> {
    let mut c = link.provider.complete(infra, req).await?;
    if req.json {
        c.text = json_text(&c.text).ok_or_else(|| {
            Error::upstream_permanent(
                link.provider.name(),
                "llm_invalid_json",
                None,
                format!("JSON mode answer is not a JSON object: {}", truncate(&c.text, 200)),
            )
        })?;
    }
    Ok(c)
}

/// Opens a stream and waits for its first event, so a provider that fails before answering
/// anything counts as a failed attempt.
async fn start_stream<'a>(
    link: &'a Link,
    infra: &'a Infra,
    req: &'a Request,
) -> Result<(StreamEvent, BoxStream<'a, Result<StreamEvent>>)> {
    let mut stream = link.provider.stream(infra, req).await?;
    match stream.next().await {
        Some(Ok(first)) => Ok((first, stream)),
        Some(Err(e)) => Err(e),
        None => Err(Error::upstream_transient(link.provider.name(), None, "the stream ended before any answer")),
    }
}

/// A streamed answer (see [`Router::stream`]). After it ended — `Done`, an `Err`, or dropped
/// early — [`LlmStream::record`] is its ledger record.
pub struct LlmStream<'a> {
    inner: BoxStream<'a, Result<StreamEvent>>,
    first: Option<StreamEvent>,
    provider: &'static str,
    model: String,
    call_type: CallType,
    used_fallback: bool,
    started: Instant,
    input_chars: usize,
    output_chars: usize,
    outcome: Option<CallRecord>,
}

impl LlmStream<'_> {
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn used_fallback(&self) -> bool {
        self.used_fallback
    }

    /// The ledger record of the streamed attempt: the completion's after `Done`; after an `Err`, or
    /// when the stream is dropped unfinished, a failed record whose tokens (and cost) are estimated
    /// from the characters so far, since the provider bills what it generated.
    pub fn record(&self) -> CallRecord {
        if let Some(r) = &self.outcome {
            return r.clone();
        }
        self.failed_record("the stream was not read to its end")
    }

    fn failed_record(&self, error: &str) -> CallRecord {
        let usage = Usage::estimate(self.input_chars, self.output_chars);
        CallRecord {
            provider: self.provider,
            model: self.model.clone(),
            call_type: self.call_type,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_usd: price(&self.model, &usage),
            latency_ms: millis(self.started.elapsed()),
            error: Some(truncate(error, MAX_ERROR)),
            used_fallback: self.used_fallback,
            estimated: true,
        }
    }
}

impl Stream for LlmStream<'_> {
    type Item = Result<StreamEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.outcome.is_some() {
            return Poll::Ready(None);
        }
        let item = match this.first.take() {
            Some(first) => Ok(first),
            None => match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(item)) => item,
                Poll::Ready(None) => Err(Error::upstream_transient(this.provider, None, "the stream ended early")),
            },
        };
        Poll::Ready(Some(match item {
            Ok(StreamEvent::Token(t)) => {
                this.output_chars += t.chars().count();
                Ok(StreamEvent::Token(t))
            }
            Ok(StreamEvent::Done(mut c)) => {
                c.used_fallback = this.used_fallback;
                this.outcome = Some(c.record(this.call_type));
                Ok(StreamEvent::Done(c))
            }
            Err(e) => {
                tracing::warn!(provider = this.provider, model = %this.model, error = %e, "LLM stream failed mid-answer");
                this.outcome = Some(this.failed_record(&e.to_string()));
                Err(e)
            }
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by the providers

/// A JSON-mode answer reduced to its JSON object: as is when it parses, else without Markdown
/// fences or text around the outermost braces (servers that ignore JSON mode add them).
pub fn json_text(text: &str) -> Option<String> {
    let is_object = |s: &str| matches!(serde_json::from_str::<Value>(s), Ok(Value::Object(_)));
    let trimmed = text.trim();
    if is_object(trimmed) {
        return Some(trimmed.to_string());
    }
    let (start, end) = (trimmed.find('{')?, trimmed.rfind('}')?);
    let inner = trimmed.get(start..=end)?;
    is_object(inner).then(|| inner.to_string())
}

/// Sends a whole-answer request and returns its JSON body; an error status or an error object in
/// a 2xx body (some OpenAI-compatible servers) becomes the provider's error.
async fn send(service: &'static str, secret: &str, req: reqwest::RequestBuilder) -> Result<Value> {
    let resp = req.send().await.map_err(|e| transport_error(service, e))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| transport_error(service, e))?;
    if !(200..300).contains(&status) {
        return Err(provider_error(service, secret, status, &text));
    }
    let body: Value = serde_json::from_str(&text).map_err(|_| {
        Error::upstream_permanent(
            service,
            "llm_invalid_response",
            Some(status),
            format!("the answer is not JSON: {}", redact(&truncate(&text, 200), secret)),
        )
    })?;
    match body_error(service, secret, &body) {
        Some(e) => Err(e),
        None => Ok(body),
    }
}

/// Sends a streaming request and returns the response once its status is known (within `wait`).
async fn open(
    service: &'static str,
    secret: &str,
    req: reqwest::RequestBuilder,
    wait: Duration,
) -> Result<reqwest::Response> {
    let timed_out = || Error::upstream_transient(service, None, format!("timed out after {} ms", wait.as_millis()));
    let resp = tokio::time::timeout(wait, req.send()).await.map_err(|_| timed_out())?;
    let resp = resp.map_err(|e| transport_error(service, e))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let text = match tokio::time::timeout(wait, resp.text()).await {
        Ok(Ok(t)) => t,
        _ => String::new(),
    };
    Err(provider_error(service, secret, status, &text))
}

/// The error for a non-2xx answer: classed by status (SPEC §15), with the provider's own status
/// word and message when the body is its error object.
fn provider_error(service: &'static str, secret: &str, status: u16, body: &str) -> Error {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| error_message(&v))
        .unwrap_or_else(|| truncate(body.trim(), MAX_ERROR));
    let detail = redact(&format!("HTTP {status}: {message}"), secret);
    if is_retryable_status(status) {
        Error::upstream_transient(service, Some(status), detail)
    } else {
        Error::upstream_permanent(service, "upstream_rejected", Some(status), detail)
    }
}

/// `{error: {code, message, status}}` (Gemini) or `{error: {message, type, code}}` (OpenAI) as
/// `STATUS: message`.
fn error_message(body: &Value) -> Option<String> {
    let err = body.get("error")?;
    if let Some(s) = err.as_str() {
        return Some(truncate(s, MAX_ERROR));
    }
    let message = err.get("message").and_then(Value::as_str).unwrap_or("").trim();
    let word =
        ["status", "type", "code"].iter().find_map(|k| err.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()));
    let text = match word {
        Some(w) if !message.is_empty() => format!("{w}: {message}"),
        Some(w) => w.to_string(),
        None if !message.is_empty() => message.to_string(),
        None => err.to_string(),
    };
    Some(truncate(&text, MAX_ERROR))
}

/// An error object inside a 2xx answer (or a stream chunk). Its numeric `code` classes it when it
/// is an HTTP status; otherwise an invalid request is permanent and anything else transient.
fn body_error(service: &'static str, secret: &str, body: &Value) -> Option<Error> {
    let err = body.get("error").filter(|e| !e.is_null())?;
    let message = error_message(body).unwrap_or_default();
    let code =
        err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).filter(|c| (400..600).contains(c));
    let kind = [err.get("type"), err.get("status"), err.get("code")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let detail = redact(&format!("error in a successful answer: {message}"), secret);
    let permanent = match code {
        Some(c) => !is_retryable_status(c),
        None => kind.contains("invalid") || kind.contains("permission") || kind.contains("authentication"),
    };
    Some(if permanent {
        Error::upstream_permanent(service, "upstream_rejected", code, detail)
    } else {
        Error::upstream_transient(service, code, detail)
    })
}

/// What a provider's stream decoder does with the `data` of each server-sent event.
trait Decoder: Send {
    /// The text pieces of one event; `Err` for an error event or a blocked answer.
    fn decode(&mut self, data: &str) -> Result<Vec<String>>;
    /// The provider said the answer is complete (OpenAI's `[DONE]`): stop reading.
    fn done(&self) -> bool;
    /// At the end of the body: the usage, if reported; `Err` when the answer was cut short.
    fn finish(&mut self) -> Result<Option<Usage>>;
}

/// Everything a stream needs to build its `Completion`.
struct StreamMeta {
    provider: &'static str,
    model: String,
    started: Instant,
    input_chars: usize,
    /// The longest wait for the next chunk.
    idle: Duration,
}

struct StreamState<D> {
    resp: reqwest::Response,
    parser: sse::Parser,
    decoder: D,
    meta: StreamMeta,
    text: String,
    queue: VecDeque<Result<StreamEvent>>,
    eof: bool,
    finished: bool,
}

impl<D: Decoder> StreamState<D> {
    fn handle(&mut self, event: sse::Event) {
        if self.finished || self.decoder.done() {
            return;
        }
        match self.decoder.decode(&event.data) {
            Ok(pieces) => {
                for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
                    self.text.push_str(&piece);
                    self.queue.push_back(Ok(StreamEvent::Token(piece)));
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, err: Error) {
        self.finished = true;
        self.queue.push_back(Err(err));
    }

    fn complete(&mut self) {
        self.finished = true;
        let usage = match self.decoder.finish() {
            Ok(usage) => usage,
            Err(e) => return self.fail(e),
        };
        if self.text.trim().is_empty() {
            return self.fail(empty_answer(self.meta.provider, None));
        }
        let usage = usage.unwrap_or_else(|| Usage::estimate(self.meta.input_chars, self.text.chars().count()));
        let completion = Completion {
            text: std::mem::take(&mut self.text),
            usage,
            provider: self.meta.provider,
            model: self.meta.model.clone(),
            latency_ms: millis(self.meta.started.elapsed()),
            used_fallback: false,
        };
        self.queue.push_back(Ok(StreamEvent::Done(completion)));
    }
}

/// The events of an SSE response, decoded by `decoder` into tokens and a final `Done`.
fn decode_stream<'a, D: Decoder + 'a>(
    resp: reqwest::Response,
    decoder: D,
    meta: StreamMeta,
) -> BoxStream<'a, Result<StreamEvent>> {
    let state = StreamState {
        resp,
        parser: sse::Parser::new(),
        decoder,
        meta,
        text: String::new(),
        queue: VecDeque::new(),
        eof: false,
        finished: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some((item, st));
            }
            if st.finished {
                return None;
            }
            if st.eof || st.decoder.done() {
                st.complete();
                continue;
            }
            let service = st.meta.provider;
            match tokio::time::timeout(st.meta.idle, st.resp.chunk()).await {
                Err(_) => st.fail(Error::upstream_transient(
                    service,
                    None,
                    format!("the stream stalled for {} ms", st.meta.idle.as_millis()),
                )),
                Ok(Err(e)) => st.fail(transport_error(service, e)),
                Ok(Ok(None)) => {
                    st.eof = true;
                    if let Some(event) = st.parser.finish() {
                        st.handle(event);
                    }
                }
                Ok(Ok(Some(bytes))) => {
                    for event in st.parser.push(&bytes) {
                        st.handle(event);
                    }
                    if st.parser.buffered() > MAX_SSE_LINE {
                        st.fail(Error::upstream_permanent(
                            service,
                            "llm_invalid_response",
                            None,
                            "an SSE line is too long",
                        ));
                    }
                }
            }
        }
    })
    .boxed()
}

fn empty_answer(service: &'static str, finish_reason: Option<&str>) -> Error {
    let detail = match finish_reason {
        Some(r) => format!("the model returned no text (finish reason {r})"),
        None => "the model returned no text".to_string(),
    };
    Error::upstream_permanent(service, "llm_empty", None, detail)
}

/// An `f32` setting as the JSON number it was written as (`0.7`, not `0.699999988079071`).
fn wire_number(x: f32) -> Value {
    let shortest: Option<f64> = x.to_string().parse().ok();
    Value::from(shortest.unwrap_or(f64::from(x)))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// `text` without `secret` in it (a provider that echoes the key back never leaks it further).
fn redact(text: &str, secret: &str) -> String {
    if secret.len() < 4 { text.to_string() } else { text.replace(secret, "***") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_types_have_the_ledger_names() {
        let names: Vec<&str> =
            [CallType::Reply, CallType::Extraction, CallType::Summary, CallType::Other].map(CallType::as_str).to_vec();
        assert_eq!(names, ["chat_response", "qualification", "summary", "other"]);
    }

    #[test]
    fn usage_is_estimated_as_characters_over_four() {
        let u = Usage::estimate(9, 4);
        assert_eq!((u.input_tokens, u.output_tokens, u.estimated), (3, 1, true));
        assert_eq!(Usage::estimate(0, 0).input_tokens, 0);
    }

    #[test]
    fn json_mode_answers_are_reduced_to_their_object() {
        assert_eq!(json_text(" {\"a\": 1}\n").as_deref(), Some("{\"a\": 1}"));
        assert_eq!(json_text("```json\n{\"name\": \"Ana\"}\n```").as_deref(), Some("{\"name\": \"Ana\"}"));
        assert_eq!(json_text("Claro: {\"a\": {\"b\": 2}} listo").as_deref(), Some("{\"a\": {\"b\": 2}}"));
        assert_eq!(json_text("no json here"), None);
        assert_eq!(json_text("[1, 2]"), None);
        assert_eq!(json_text("{broken"), None);
    }

    #[test]
    fn provider_errors_carry_their_status_and_message_but_never_the_key() {
        let gemini = r#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#;
        let e = provider_error("gemini", "AIzaSECRET", 503, gemini);
        assert!(!crate::jobs::is_permanent(&e));
        assert_eq!(e.to_string(), "gemini failed: HTTP 503: UNAVAILABLE: The model is overloaded.");

        let openai = r#"{"error": {"message": "Incorrect API key provided: sk-live-123.", "type": "invalid_request_error", "code": "invalid_api_key"}}"#;
        let e = provider_error("openai", "sk-live-123", 401, openai);
        assert!(crate::jobs::is_permanent(&e));
        assert!(e.to_string().contains("HTTP 401: invalid_request_error: Incorrect API key provided: ***."), "{e}");
        assert!(!e.to_string().contains("sk-live-123"));

        let e = provider_error("openai", "k", 429, "rate limited, slow down");
        assert!(!crate::jobs::is_permanent(&e));
        assert!(e.to_string().ends_with("HTTP 429: rate limited, slow down"));
    }

    #[test]
    fn error_objects_in_successful_answers_are_classed() {
        let body = |v: &str| serde_json::from_str::<Value>(v).unwrap();
        let e = body_error("openai", "", &body(r#"{"error": {"code": 502, "message": "Provider returned error"}}"#));
        assert!(!crate::jobs::is_permanent(&e.unwrap()));
        let e = body_error("openai", "", &body(r#"{"error": {"message": "bad", "type": "invalid_request_error"}}"#));
        assert!(crate::jobs::is_permanent(&e.unwrap()));
        let e = body_error("openai", "", &body(r#"{"error": {"message": "overloaded", "type": "server_error"}}"#));
        assert!(!crate::jobs::is_permanent(&e.unwrap()));
        assert!(body_error("openai", "", &body(r#"{"error": null, "choices": []}"#)).is_none());
        assert!(body_error("openai", "", &body(r#"{"choices": []}"#)).is_none());
    }

    #[test]
    fn retries_wait_longer_each_time_up_to_eight_times_the_backoff() {
        struct Nobody;
        impl Provider for Nobody {
            fn name(&self) -> &'static str {
                "openai"
            }
            fn model(&self) -> &str {
                "m"
            }
            fn complete<'a>(&'a self, _: &'a Infra, _: &'a Request) -> BoxFuture<'a, Result<Completion>> {
                Box::pin(async { Err(Error::upstream_transient("openai", None, "x")) })
            }
            fn stream<'a>(
                &'a self,
                _: &'a Infra,
                _: &'a Request,
            ) -> BoxFuture<'a, Result<BoxStream<'a, Result<StreamEvent>>>> {
                Box::pin(async { Err(Error::upstream_transient("openai", None, "x")) })
            }
        }
        let r = Router::new(Box::new(Nobody), None, 2, Duration::from_millis(500));
        let waits: Vec<u64> = (1..=6).map(|n| r.delay(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(r.attempts(&r.links[0]), 3);
        assert_eq!(r.links[0].breaker.name, "llm:openai");
    }

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(move |k| map.get(k).cloned())
    }

    #[test]
    fn the_chain_follows_the_settings_and_bad_ones_are_config_errors() {
        assert!(Router::from_settings(&settings(&[]).unwrap()).unwrap().is_none());
        let s = settings(&[
            ("LLM_PROVIDER", "Gemini"),
            ("LLM_FALLBACK_PROVIDER", "openai"),
            ("GEMINI_API_KEY", "g"),
            ("OPENAI_API_KEY", "o"),
        ])
        .unwrap();
        let r = Router::from_settings(&s).unwrap().unwrap();
        assert_eq!(r.providers().collect::<Vec<_>>(), [("gemini", "gemini-2.0-flash"), ("openai", "gpt-4o-mini")]);

        // Same fallback as primary, or local: no second provider.
        for f in ["gemini", "local"] {
            let s = settings(&[("LLM_PROVIDER", "gemini"), ("LLM_FALLBACK_PROVIDER", f), ("GEMINI_API_KEY", "g")]);
            assert_eq!(Router::from_settings(&s.unwrap()).unwrap().unwrap().providers().count(), 1);
        }

        let config_error = |pairs: &[(&str, &str)]| match Router::from_settings(&settings(pairs).unwrap()) {
            Err(Error::Config(msg)) => msg,
            Err(other) => panic!("not a config error: {other}"),
            Ok(_) => panic!("accepted {pairs:?}"),
        };
        assert!(config_error(&[("LLM_PROVIDER", "claude")]).contains("LLM_PROVIDER \"claude\""));
        assert!(config_error(&[("LLM_PROVIDER", "gemini")]).contains("GEMINI_API_KEY"));
        let msg =
            config_error(&[("LLM_PROVIDER", "gemini"), ("GEMINI_API_KEY", "g"), ("LLM_FALLBACK_PROVIDER", "openai")]);
        assert!(msg.contains("OPENAI_API_KEY"), "{msg}");
        let msg = config_error(&[("LLM_PROVIDER", "openai"), ("OPENAI_API_KEY", "o"), ("LLM_FALLBACK_PROVIDER", "x")]);
        assert!(msg.contains("LLM_FALLBACK_PROVIDER"), "{msg}");
        assert!(config_error(&[("LLM_PROVIDER", "openai")]).contains("OPENAI_API_KEY"));
        // A server of one's own (Ollama, vLLM) may need no key.
        let s = settings(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")]).unwrap();
        assert!(Router::from_settings(&s).unwrap().is_some());
    }

    #[test]
    fn the_worst_breaker_state_wins() {
        assert_eq!(worse(State::Closed, State::Open), State::Open);
        assert_eq!(worse(State::Open, State::HalfOpen), State::Open);
        assert_eq!(worse(State::Closed, State::HalfOpen), State::HalfOpen);
        assert_eq!(worse(State::Closed, State::Closed), State::Closed);
    }
}
