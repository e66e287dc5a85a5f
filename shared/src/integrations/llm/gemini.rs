//! Google Gemini: `POST {GEMINI_BASE_URL}/v1beta/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for streaming, with the key in `x-goog-api-key` (never in the
//! URL). The body is `{systemInstruction, contents: [{role: "user" | "model", parts: [{text}]}],
//! generationConfig: {temperature, maxOutputTokens, responseMimeType}}`; JSON mode asks for
//! `application/json`. An answer is a `GenerateContentResponse`: the text of
//! `candidates[0].content.parts[]`, its `finishReason`, and `usageMetadata` (prompt, candidates and
//! thinking tokens; thinking is billed as output). A stream is SSE `data:` lines, each a partial
//! response; the usage of the last one is the total.
//!
//! A prompt blocked by `promptFeedback.blockReason`, or an answer that ends for safety, recitation
//! or another content reason, is a permanent failure (`llm_blocked`); an answer without text is
//! `llm_empty`.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{
    Completion, Decoder, Provider, Request, Role, StreamEvent, StreamMeta, Usage, decode_stream, empty_answer, millis,
    open, send, wire_number,
};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::infra::Infra;
use crate::integrations::http;

/// The `service` of Gemini errors.
pub const SERVICE: &str = "gemini";

pub struct Gemini {
    key: SecretString,
    /// Without the `models/` prefix (`gemini-2.0-flash`).
    model: String,
    base_url: String,
    timeout: Duration,
    max_tokens: u32,
    temperature: f32,
}

impl Gemini {
    /// From `GEMINI_API_KEY`, `GEMINI_MODEL`, `GEMINI_BASE_URL` and the `LLM_*` settings.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let p = &settings.providers;
        let key = p
            .gemini_api_key
            .clone()
            .ok_or_else(|| Error::Config("the LLM provider gemini needs GEMINI_API_KEY".into()))?;
        let model = p.gemini_model.trim().trim_start_matches("models/").to_string();
        if model.is_empty() {
            return Err(Error::Config("GEMINI_MODEL is empty".into()));
        }
        Ok(Self {
            key,
            model,
            base_url: p.gemini_base_url.clone(),
            timeout: settings.llm_timeout,
            max_tokens: settings.llm_max_tokens,
            temperature: settings.llm_temperature,
        })
    }

    /// `method` with its query string (`streamGenerateContent?alt=sse`).
    fn post(&self, method: &str) -> reqwest::RequestBuilder {
        http()
            .post(format!("{}/v1beta/models/{}:{method}", self.base_url, self.model))
            .header("x-goog-api-key", self.key.expose_secret())
    }
}

/// The `generateContent` body of `req`. System messages join into `systemInstruction`; consecutive
/// turns of one role share a content (Gemini wants turns to alternate).
pub fn request_body(req: &Request, max_tokens: u32, temperature: f32) -> Value {
    let system: Vec<&str> =
        req.messages.iter().filter(|m| m.role == Role::System).map(|m| m.content.as_str()).collect();
    let mut contents: Vec<Value> = Vec::new();
    let mut last_role = "";
    for m in req.messages.iter().filter(|m| m.role != Role::System) {
        let role = if m.role == Role::Assistant { "model" } else { "user" };
        let part = json!({"text": m.content});
        match contents.last_mut() {
            Some(last) if last_role == role => {
                if let Some(parts) = last["parts"].as_array_mut() {
                    parts.push(part);
                }
            }
            _ => contents.push(json!({"role": role, "parts": [part]})),
        }
        last_role = role;
    }
    let mut config = json!({
        "temperature": wire_number(req.temperature.unwrap_or(temperature)),
        "maxOutputTokens": req.max_tokens.unwrap_or(max_tokens),
    });
    if req.json {
        config["responseMimeType"] = json!("application/json");
    }
    let mut body = json!({"contents": contents, "generationConfig": config});
    let instruction = system.join("\n\n");
    if contents_is_empty(&body) {
        // Only instructions: Gemini refuses an empty `contents`, so they are the user's turn.
        body["contents"] = json!([{"role": "user", "parts": [{"text": instruction}]}]);
    } else if !instruction.is_empty() {
        body["systemInstruction"] = json!({"parts": [{"text": instruction}]});
    }
    body
}

fn contents_is_empty(body: &Value) -> bool {
    body["contents"].as_array().is_none_or(Vec::is_empty)
}

/// What one `GenerateContentResponse` (a whole answer or a stream chunk) says.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk {
    /// The text parts of the first candidate, joined (thought summaries left out).
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

/// Reads one response; a blocked prompt or answer, or an error object, is `Err`.
pub fn read_chunk(body: &Value) -> Result<Chunk> {
    if let Some(e) = super::body_error(SERVICE, "", body) {
        return Err(e);
    }
    if let Some(reason) = body.pointer("/promptFeedback/blockReason").and_then(Value::as_str) {
        return Err(blocked(&format!("the prompt was blocked ({reason})")));
    }
    let candidate = body.pointer("/candidates/0");
    let text = candidate
        .and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>()
        })
        .unwrap_or_default();
    let finish_reason = candidate.and_then(|c| c.get("finishReason")).and_then(Value::as_str).map(str::to_string);
    if let Some(reason) =
        finish_reason.as_deref().filter(|r| !matches!(*r, "STOP" | "MAX_TOKENS" | "FINISH_REASON_UNSPECIFIED"))
    {
        return Err(blocked(&format!("the answer was stopped ({reason})")));
    }
    let usage = body.get("usageMetadata").filter(|u| u.is_object()).map(|u| {
        let count = |k: &str| u.get(k).and_then(Value::as_u64).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        Usage {
            input_tokens: count("promptTokenCount"),
            output_tokens: count("candidatesTokenCount").saturating_add(count("thoughtsTokenCount")),
            cost_usd: None,
            estimated: false,
        }
    });
    Ok(Chunk { text, finish_reason, usage })
}

fn blocked(detail: &str) -> Error {
    Error::upstream_permanent(SERVICE, "llm_blocked", None, detail.to_string())
}

/// The text and usage of a whole `generateContent` answer.
pub fn parse_response(body: &Value) -> Result<(String, Option<Usage>)> {
    let chunk = read_chunk(body)?;
    if chunk.text.trim().is_empty() {
        return Err(empty_answer(SERVICE, chunk.finish_reason.as_deref()));
    }
    Ok((chunk.text, chunk.usage))
}

/// Decodes `streamGenerateContent` chunks.
#[derive(Default)]
struct StreamDecoder {
    usage: Option<Usage>,
    finish_reason: Option<String>,
}

impl Decoder for StreamDecoder {
    fn decode(&mut self, data: &str) -> Result<Vec<String>> {
        let body: Value = serde_json::from_str(data).map_err(|_| {
            Error::upstream_permanent(SERVICE, "llm_invalid_response", None, "a stream chunk is not JSON")
        })?;
        let chunk = read_chunk(&body)?;
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.finish_reason.is_some() {
            self.finish_reason = chunk.finish_reason;
        }
        Ok(vec![chunk.text])
    }

    fn done(&self) -> bool {
        false
    }

    fn finish(&mut self) -> Result<Option<Usage>> {
        if self.finish_reason.is_none() {
            return Err(Error::upstream_transient(SERVICE, None, "the stream ended before the answer was complete"));
        }
        Ok(self.usage)
    }
}

impl Provider for Gemini {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete<'a>(&'a self, _: &'a Infra, req: &'a Request) -> BoxFuture<'a, Result<Completion>> {
        Box::pin(async move {
            let started = Instant::now();
            let http_req = self.post("generateContent").timeout(self.timeout).json(&request_body(
                req,
                self.max_tokens,
                self.temperature,
            ));
            let body = send(SERVICE, self.key.expose_secret(), http_req).await?;
            let (text, usage) = parse_response(&body)?;
            let usage = usage.unwrap_or_else(|| Usage::estimate(req.input_chars(), text.chars().count()));
            Ok(Completion {
                text,
                usage,
                provider: SERVICE,
                model: self.model.clone(),
                latency_ms: millis(started.elapsed()),
                used_fallback: false,
            })
        })
    }

    fn stream<'a>(
        &'a self,
        _: &'a Infra,
        req: &'a Request,
    ) -> BoxFuture<'a, Result<BoxStream<'a, Result<StreamEvent>>>> {
        Box::pin(async move {
            let started = Instant::now();
            let http_req = self
                .post("streamGenerateContent?alt=sse")
                .header("accept", "text/event-stream")
                .json(&request_body(req, self.max_tokens, self.temperature));
            let resp = open(SERVICE, self.key.expose_secret(), http_req, self.timeout).await?;
            let meta = StreamMeta {
                provider: SERVICE,
                model: self.model.clone(),
                started,
                input_chars: req.input_chars(),
                idle: self.timeout,
            };
            Ok(decode_stream(resp, StreamDecoder::default(), meta))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::llm::{CallType, Message};

    fn req(messages: Vec<Message>) -> Request {
        Request::new(CallType::Reply, messages)
    }

    #[test]
    fn system_messages_become_the_instruction_and_roles_alternate() {
        let r = req(vec![
            Message::system("Eres Sofía."),
            Message::system("Sé breve."),
            Message::user("Hola"),
            Message::user("¿Hay deptos en Ñuñoa?"),
            Message::assistant("Sí, tenemos."),
            Message::user("Genial"),
        ]);
        let body = request_body(&r, 1024, 0.7);
        assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "Eres Sofía.\n\nSé breve."}]}));
        assert_eq!(
            body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Hola"}, {"text": "¿Hay deptos en Ñuñoa?"}]},
                {"role": "model", "parts": [{"text": "Sí, tenemos."}]},
                {"role": "user", "parts": [{"text": "Genial"}]},
            ])
        );
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 1024);
        assert_eq!(body["generationConfig"]["temperature"], 0.7);
        assert!(body["generationConfig"].get("responseMimeType").is_none());
    }

    #[test]
    fn json_mode_and_per_call_limits_are_sent() {
        let mut r = req(vec![Message::user("extrae")]);
        r.json = true;
        r.max_tokens = Some(300);
        r.temperature = Some(0.1);
        let body = request_body(&r, 1024, 0.7);
        assert_eq!(body["generationConfig"]["responseMimeType"], "application/json");
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 300);
        assert!(body.get("systemInstruction").is_none());
    }

    #[test]
    fn instructions_alone_are_sent_as_the_user_turn() {
        let body = request_body(&req(vec![Message::system("Resume esto: …")]), 10, 0.0);
        assert_eq!(body["contents"], json!([{"role": "user", "parts": [{"text": "Resume esto: …"}]}]));
        assert!(body.get("systemInstruction").is_none());
    }

    #[test]
    fn answers_give_their_text_and_usage_with_thinking_as_output() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "pensando…", "thought": true}, {"text": "Hola, "}, {"text": "soy Sofía."}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "totalTokenCount": 24},
            "modelVersion": "gemini-2.5-flash"
        });
        let (text, usage) = parse_response(&body).unwrap();
        assert_eq!(text, "Hola, soy Sofía.");
        let usage = usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens, usage.estimated), (12, 12, false));
    }

    #[test]
    fn blocked_and_empty_answers_are_permanent_failures() {
        let safety = json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "SAFETY"}]});
        assert_eq!(parse_response(&safety).unwrap_err().code(), "llm_blocked");
        let prompt = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}});
        let e = parse_response(&prompt).unwrap_err();
        assert_eq!(e.code(), "llm_blocked");
        assert!(e.to_string().contains("PROHIBITED_CONTENT"));
        for empty in [json!({"candidates": []}), json!({}), json!({"candidates": [{"finishReason": "MAX_TOKENS"}]})] {
            let e = parse_response(&empty).unwrap_err();
            assert_eq!(e.code(), "llm_empty", "{empty}");
            assert!(crate::jobs::is_permanent(&e));
        }
        // An answer cut by the token limit is still an answer.
        let cut = json!({"candidates": [{"content": {"parts": [{"text": "Hola"}]}, "finishReason": "MAX_TOKENS"}]});
        assert_eq!(parse_response(&cut).unwrap().0, "Hola");
    }

    #[test]
    fn an_error_chunk_in_a_stream_is_its_error() {
        let mut d = StreamDecoder::default();
        let e = d.decode(r#"{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}"#).unwrap_err();
        assert!(!crate::jobs::is_permanent(&e));
        assert!(d.decode("not json").is_err());
    }

    #[test]
    fn a_stream_without_a_finish_reason_was_cut_short() {
        let mut d = StreamDecoder::default();
        assert_eq!(d.decode(r#"{"candidates": [{"content": {"parts": [{"text": "Ho"}]}}]}"#).unwrap(), ["Ho"]);
        assert!(d.finish().is_err());
        d.decode(r#"{"candidates": [{"content": {"parts": [{"text": "la"}]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}"#).unwrap();
        assert_eq!(d.finish().unwrap().unwrap().output_tokens, 2);
    }
}
