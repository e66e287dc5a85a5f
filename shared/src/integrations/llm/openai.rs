//! OpenAI chat completions, and every server that speaks them (OpenRouter, Ollama, vLLM,
//! llama.cpp) through `OPENAI_BASE_URL`: `POST {OPENAI_BASE_URL}/chat/completions` with
//! `Authorization: Bearer`, body `{model, messages: [{role, content}], temperature, max_tokens,
//! response_format: {type: "json_object"} (JSON mode), stream: true + stream_options:
//! {include_usage: true} (streaming)}`. The answer is `choices[0].message.content` with
//! `usage.prompt_tokens` / `completion_tokens` (and `usage.cost` in USD on OpenRouter); a stream is
//! SSE `data: {choices: [{delta: {content}}]}` chunks, a last chunk with `usage`, then `data: [DONE]`.
//! Servers that send no usage get the characters / 4 estimate, marked `estimated`.
//!
//! Reasoning models (`o1`, `o3`, `o4-mini`, `gpt-5`…) take `max_completion_tokens` and only their
//! default temperature, so those are sent that way. JSON mode requires the word "JSON" in the
//! messages; when the caller's prompt lacks it, one line asking for a JSON object is added to the
//! system message. A key is optional for a server other than OpenAI's (a local Ollama needs none).

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{
    Completion, Decoder, Provider, Request, Role, StreamEvent, StreamMeta, Usage, body_error, decode_stream,
    empty_answer, millis, open, send, wire_number,
};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::infra::Infra;
use crate::integrations::http;

/// The `service` of OpenAI errors.
pub const SERVICE: &str = "openai";

const OPENAI_API: &str = "https://api.openai.com/v1";

/// The line added to a JSON-mode prompt that does not mention JSON.
const JSON_HINT: &str = "Responde únicamente con un objeto JSON válido.";

pub struct OpenAi {
    key: Option<SecretString>,
    model: String,
    base_url: String,
    timeout: Duration,
    max_tokens: u32,
    temperature: f32,
}

impl OpenAi {
    /// From `OPENAI_API_KEY`, `OPENAI_MODEL`, `OPENAI_BASE_URL` and the `LLM_*` settings.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let p = &settings.providers;
        if p.openai_api_key.is_none() && p.openai_base_url == OPENAI_API {
            return Err(Error::Config("the LLM provider openai needs OPENAI_API_KEY".into()));
        }
        let model = p.openai_model.trim().to_string();
        if model.is_empty() {
            return Err(Error::Config("OPENAI_MODEL is empty".into()));
        }
        Ok(Self {
            key: p.openai_api_key.clone(),
            model,
            base_url: p.openai_base_url.clone(),
            timeout: settings.llm_timeout,
            max_tokens: settings.llm_max_tokens,
            temperature: settings.llm_temperature,
        })
    }

    fn secret(&self) -> &str {
        self.key.as_ref().map_or("", |k| k.expose_secret())
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let req = http().post(format!("{}/chat/completions", self.base_url)).json(body);
        match &self.key {
            Some(key) => req.bearer_auth(key.expose_secret()),
            None => req,
        }
    }
}

/// Whether `model` is a reasoning model (`o1`, `o3-mini`, `openai/o4-mini`, `gpt-5-nano`…).
pub fn is_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let o_series = ["o1", "o3", "o4"].iter().any(|p| name == *p || name.starts_with(&format!("{p}-")));
    o_series || name == "gpt-5" || name.starts_with("gpt-5-") || name.starts_with("gpt-5.")
}

/// The `/chat/completions` body of `req` for `model`.
pub fn request_body(model: &str, req: &Request, max_tokens: u32, temperature: f32, stream: bool) -> Value {
    let role = |r: Role| match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let mut messages: Vec<Value> =
        req.messages.iter().map(|m| json!({"role": role(m.role), "content": m.content})).collect();
    if req.json && !req.messages.iter().any(|m| m.content.to_ascii_lowercase().contains("json")) {
        match req.messages.iter().position(|m| m.role == Role::System) {
            Some(i) => messages[i]["content"] = json!(format!("{}\n\n{JSON_HINT}", req.messages[i].content)),
            None => messages.insert(0, json!({"role": "system", "content": JSON_HINT})),
        }
    }
    let mut body = json!({"model": model, "messages": messages});
    let max_tokens = req.max_tokens.unwrap_or(max_tokens);
    if is_reasoning_model(model) {
        body["max_completion_tokens"] = json!(max_tokens);
    } else {
        body["max_tokens"] = json!(max_tokens);
        body["temperature"] = wire_number(req.temperature.unwrap_or(temperature));
    }
    if req.json {
        body["response_format"] = json!({"type": "json_object"});
    }
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// `usage` of an answer or of a stream's last chunk (`None` when absent or null).
pub fn read_usage(body: &Value) -> Option<Usage> {
    let u = body.get("usage").filter(|u| u.is_object())?;
    let count = |k: &str| u.get(k).and_then(Value::as_u64).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    Some(Usage {
        input_tokens: count("prompt_tokens"),
        output_tokens: count("completion_tokens"),
        cost_usd: u.get("cost").and_then(Value::as_f64),
        estimated: false,
    })
}

fn refused(detail: String) -> Error {
    Error::upstream_permanent(SERVICE, "llm_blocked", None, detail)
}

/// The text and usage of a whole answer.
pub fn parse_response(body: &Value) -> Result<(String, Option<Usage>)> {
    let choice = body.pointer("/choices/0");
    let finish = choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str);
    let message = choice.and_then(|c| c.get("message"));
    if let Some(refusal) = message.and_then(|m| m.get("refusal")).and_then(Value::as_str) {
        return Err(refused(format!("the model refused: {}", super::truncate(refusal, 200))));
    }
    if finish == Some("content_filter") {
        return Err(refused("the answer was stopped by the content filter".into()));
    }
    let text = message.and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(empty_answer(SERVICE, finish));
    }
    Ok((text.to_string(), read_usage(body)))
}

/// Decodes `/chat/completions` stream chunks.
#[derive(Default)]
struct StreamDecoder {
    usage: Option<Usage>,
    finished: bool,
    done: bool,
}

impl Decoder for StreamDecoder {
    fn decode(&mut self, data: &str) -> Result<Vec<String>> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| {
            Error::upstream_permanent(SERVICE, "llm_invalid_response", None, "a stream chunk is not JSON")
        })?;
        if let Some(e) = body_error(SERVICE, "", &chunk) {
            return Err(e);
        }
        if let Some(u) = read_usage(&chunk) {
            self.usage = Some(u);
        }
        let mut pieces = Vec::new();
        for choice in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
                pieces.push(text.to_string());
            }
            match choice.get("finish_reason").and_then(Value::as_str) {
                Some("content_filter") => return Err(refused("the answer was stopped by the content filter".into())),
                Some("error") => {
                    return Err(Error::upstream_transient(SERVICE, None, "the provider failed mid-answer"));
                }
                Some(_) => self.finished = true,
                None => {}
            }
        }
        Ok(pieces)
    }

    fn done(&self) -> bool {
        self.done
    }

    fn finish(&mut self) -> Result<Option<Usage>> {
        if !self.done && !self.finished {
            return Err(Error::upstream_transient(SERVICE, None, "the stream ended before the answer was complete"));
        }
        Ok(self.usage)
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete<'a>(&'a self, _: &'a Infra, req: &'a Request) -> BoxFuture<'a, Result<Completion>> {
        Box::pin(async move {
            let started = Instant::now();
            let body = request_body(&self.model, req, self.max_tokens, self.temperature, false);
            let answer = send(SERVICE, self.secret(), self.post(&body).timeout(self.timeout)).await?;
            let (text, usage) = parse_response(&answer)?;
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
            let body = request_body(&self.model, req, self.max_tokens, self.temperature, true);
            let http_req = self.post(&body).header("accept", "text/event-stream");
            let resp = open(SERVICE, self.secret(), http_req, self.timeout).await?;
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
    fn requests_carry_the_roles_and_limits() {
        let r = req(vec![Message::system("Eres Sofía."), Message::user("Hola"), Message::assistant("¡Hola!")]);
        let body = request_body("gpt-4o-mini", &r, 1024, 0.5, false);
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Eres Sofía."},
                    {"role": "user", "content": "Hola"},
                    {"role": "assistant", "content": "¡Hola!"},
                ],
                "max_tokens": 1024,
                "temperature": 0.5,
            })
        );
    }

    #[test]
    fn streaming_asks_for_usage_and_json_mode_for_an_object() {
        let mut r = req(vec![Message::system("Extrae los datos como JSON."), Message::user("soy Ana")]);
        r.json = true;
        let body = request_body("gpt-4o-mini", &r, 1024, 0.7, true);
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        // The prompt already says JSON: left as written.
        assert_eq!(body["messages"][0]["content"], "Extrae los datos como JSON.");
    }

    #[test]
    fn a_json_mode_prompt_without_the_word_gets_one() {
        let mut r = req(vec![Message::system("Extrae los datos."), Message::user("soy Ana")]);
        r.json = true;
        let body = request_body("m", &r, 10, 0.0, false);
        assert_eq!(body["messages"][0]["content"], format!("Extrae los datos.\n\n{JSON_HINT}"));
        let mut r = req(vec![Message::user("soy Ana")]);
        r.json = true;
        let body = request_body("m", &r, 10, 0.0, false);
        assert_eq!(body["messages"][0], json!({"role": "system", "content": JSON_HINT}));
        assert_eq!(body["messages"][1]["content"], "soy Ana");
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_and_no_temperature() {
        for m in ["o1", "o3-mini", "openai/o4-mini", "gpt-5", "gpt-5-nano", "gpt-5.1"] {
            assert!(is_reasoning_model(m), "{m}");
            let body = request_body(m, &req(vec![Message::user("x")]), 500, 0.7, false);
            assert_eq!(body["max_completion_tokens"], 500);
            assert!(body.get("temperature").is_none() && body.get("max_tokens").is_none());
        }
        for m in ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano", "llama3.1:8b", "google/gemini-2.5-flash", "o1x"] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }

    #[test]
    fn answers_give_text_usage_and_openrouter_cost() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hola", "refusal": null}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23, "cost": 0.00042}
        });
        let (text, usage) = parse_response(&body).unwrap();
        assert_eq!(text, "Hola");
        assert_eq!(
            usage,
            Some(Usage { input_tokens: 20, output_tokens: 3, cost_usd: Some(0.00042), estimated: false })
        );
    }

    #[test]
    fn refusals_filters_and_empty_answers_are_permanent_failures() {
        let refusal = json!({"choices": [{"message": {"content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]});
        assert_eq!(parse_response(&refusal).unwrap_err().code(), "llm_blocked");
        let filtered = json!({"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]});
        assert_eq!(parse_response(&filtered).unwrap_err().code(), "llm_blocked");
        for empty in [json!({"choices": []}), json!({"choices": [{"message": {"content": "  "}}]}), json!({})] {
            assert_eq!(parse_response(&empty).unwrap_err().code(), "llm_empty", "{empty}");
        }
    }

    #[test]
    fn stream_chunks_give_deltas_usage_and_the_end() {
        let mut d = StreamDecoder::default();
        let role =
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#;
        assert_eq!(d.decode(role).unwrap(), [""]);
        assert_eq!(
            d.decode(r#"{"choices":[{"index":0,"delta":{"content":"Ho"},"finish_reason":null}]}"#).unwrap(),
            ["Ho"]
        );
        assert!(d.finish().is_err(), "no end yet: cut short");
        d.decode(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#).unwrap();
        d.decode(r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#).unwrap();
        assert!(!d.done());
        assert!(d.decode("[DONE]").unwrap().is_empty());
        assert!(d.done());
        assert_eq!(d.finish().unwrap().unwrap().input_tokens, 9);
    }

    #[test]
    fn stream_errors_end_the_answer() {
        let mut d = StreamDecoder::default();
        let e = d.decode(r#"{"error":{"message":"upstream overloaded","code":502}}"#).unwrap_err();
        assert!(!crate::jobs::is_permanent(&e));
        let e = d.decode(r#"{"choices":[{"delta":{},"finish_reason":"content_filter"}]}"#).unwrap_err();
        assert_eq!(e.code(), "llm_blocked");
    }
}
