//! The LLM provider layer against fake Gemini and OpenAI-compatible servers that answer and stream
//! in the providers' real wire formats: request shapes, JSON mode, usage and cost, SSE cut at
//! awkward byte boundaries, retries, fallback, the per-provider circuit breakers in `/health`,
//! streams failing before and after their first token, and time-outs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use poem::http::StatusCode;
use serde_json::{Value, json};
use shared::integrations::llm::{
    CallRecord, CallType, Completion, LlmStream, Message, Request, Router, StreamEvent, Usage, price,
};

use crate::common::{TestApp, body};

// ---------------------------------------------------------------------------------------------
// The fake provider

/// What the fake answers one request with.
#[derive(Clone)]
enum Reply {
    Json(u16, Value),
    /// A 200 `text/event-stream` written piece by piece.
    Sse(Vec<Piece>),
    /// Waits, then answers.
    Slow(Duration, Box<Reply>),
}

#[derive(Clone)]
enum Piece {
    Bytes(Vec<u8>),
    Pause(Duration),
    /// Drops the connection mid-body.
    Abort,
}

#[derive(Clone, Debug)]
struct Recorded {
    path: String,
    query: Option<String>,
    headers: poem::http::HeaderMap,
    body: Value,
}

struct FakeState {
    /// Answers in order; then `default` for ever.
    script: Mutex<VecDeque<Reply>>,
    default: Reply,
    requests: Mutex<Vec<Recorded>>,
}

struct Fake {
    state: Arc<FakeState>,
    url: String,
}

#[poem::handler]
async fn fake_llm(req: &poem::Request, body: poem::Body, state: poem::web::Data<&Arc<FakeState>>) -> poem::Response {
    let bytes = body.into_vec().await.unwrap_or_default();
    state.requests.lock().unwrap().push(Recorded {
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        headers: req.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    let reply = state.script.lock().unwrap().pop_front().unwrap_or_else(|| state.default.clone());
    respond(reply).await
}

async fn respond(reply: Reply) -> poem::Response {
    match reply {
        Reply::Json(status, v) => poem::Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .content_type("application/json")
            .body(v.to_string()),
        Reply::Sse(pieces) => {
            let stream = futures_util::stream::iter(pieces)
                .then(|p| async move {
                    match p {
                        Piece::Bytes(b) => Some(Ok(b)),
                        Piece::Pause(d) => {
                            tokio::time::sleep(d).await;
                            None
                        }
                        Piece::Abort => Some(Err(std::io::Error::other("connection dropped"))),
                    }
                })
                .filter_map(|x| async move { x });
            poem::Response::builder().content_type("text/event-stream").body(poem::Body::from_bytes_stream(stream))
        }
        Reply::Slow(wait, reply) => {
            tokio::time::sleep(wait).await;
            Box::pin(respond(*reply)).await
        }
    }
}

impl Fake {
    async fn start(script: Vec<Reply>, default: Reply) -> Self {
        use poem::EndpointExt;
        use poem::listener::{Acceptor, Listener, TcpListener};
        let state =
            Arc::new(FakeState { script: Mutex::new(script.into()), default, requests: Mutex::new(Vec::new()) });
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let app = poem::Route::new().at("/*path", poem::post(fake_llm)).data(state.clone());
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        Fake { state, url: format!("http://{addr}") }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }
}

const GEMINI_KEY: &str = "AIza-test-gemini-key";
const OPENAI_KEY: &str = "sk-test-openai-key";

/// Settings for an app whose providers are these fakes; `extra` overrides.
fn env(
    gemini: Option<&Fake>,
    openai: Option<&Fake>,
    extra: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> + use<> {
    let mut map: HashMap<String, String> = HashMap::new();
    if let Some(g) = gemini {
        map.insert("GEMINI_BASE_URL".into(), g.url.clone());
        map.insert("GEMINI_API_KEY".into(), GEMINI_KEY.into());
    }
    if let Some(o) = openai {
        map.insert("OPENAI_BASE_URL".into(), format!("{}/v1", o.url));
        map.insert("OPENAI_API_KEY".into(), OPENAI_KEY.into());
    }
    map.insert("LLM_RETRY_BACKOFF_MS".into(), "10".into());
    map.insert("LLM_TIMEOUT_MS".into(), "5000".into());
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    move |k| map.get(k).cloned()
}

fn router(app: &TestApp) -> Router {
    Router::from_settings(&app.infra().settings).unwrap().expect("a remote LLM is configured")
}

fn reply_request() -> Request {
    Request::new(
        CallType::Reply,
        vec![
            Message::system("Eres Sofía, asistente de Propiedades Ñuñoa."),
            Message::user("Hola, busco depto"),
            Message::assistant("¡Hola! ¿En qué comuna?"),
            Message::user("En Ñuñoa"),
        ],
    )
}

fn extraction_request() -> Request {
    let mut r = Request::new(
        CallType::Extraction,
        vec![Message::system("Extrae nombre y comuna como JSON."), Message::user("Soy Ana, vivo en Ñuñoa")],
    );
    r.json = true;
    r.temperature = Some(0.1);
    r.max_tokens = Some(256);
    r
}

// --- Gemini wire format

fn gemini_answer(text: &str, prompt_tokens: u32, output_tokens: u32) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": []
        }],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens, "totalTokenCount": prompt_tokens + output_tokens},
        "modelVersion": "gemini-2.0-flash"
    })
}

fn gemini_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::Json(code, json!({"error": {"code": code, "message": message, "status": status}}))
}

/// A `streamGenerateContent?alt=sse` body for `pieces`, as Gemini sends it (`\r\n` line endings,
/// usage so far in every chunk, `finishReason` and the total in the last).
fn gemini_sse(pieces: &[&str], prompt_tokens: u32, output_tokens: u32) -> Vec<u8> {
    let mut out = String::new();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let mut candidate = json!({"content": {"role": "model", "parts": [{"text": p}]}, "index": 0});
        if last {
            candidate["finishReason"] = json!("STOP");
        }
        let chunk = json!({
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": if last { output_tokens } else { i as u32 + 1 }},
            "modelVersion": "gemini-2.0-flash"
        });
        out.push_str(&format!("data: {chunk}\r\n\r\n"));
    }
    out.into_bytes()
}

// --- OpenAI wire format

fn openai_answer(text: &str, prompt_tokens: u32, output_tokens: u32) -> Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens, "total_tokens": prompt_tokens + output_tokens},
        "system_fingerprint": "fp_test"
    })
}

fn openai_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::Json(status, json!({"error": {"message": message, "type": kind, "param": null, "code": null}}))
}

/// A `/chat/completions` stream for `pieces`: a role chunk, one delta per piece, a finish chunk,
/// the usage chunk (when `usage`), then `[DONE]`.
fn openai_sse(pieces: &[&str], usage: Option<(u32, u32)>) -> Vec<u8> {
    let chunk = |choices: Value, usage: Value| json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o-mini-2024-07-18", "choices": choices, "usage": usage});
    let mut out = String::new();
    let mut push = |v: Value| out.push_str(&format!("data: {v}\n\n"));
    push(chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        Value::Null,
    ));
    for p in pieces {
        push(chunk(json!([{"index": 0, "delta": {"content": p}, "finish_reason": null}]), Value::Null));
    }
    push(chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]), Value::Null));
    if let Some((i, o)) = usage {
        push(chunk(json!([]), json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o})));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// `bytes` written as a server under load would: the first two events in one write, then small
/// writes cut anywhere — inside the two bytes of an "ñ", between `\r` and `\n` — with pauses so
/// they leave as separate TCP segments.
fn awkward(bytes: &[u8]) -> Vec<Piece> {
    let text = String::from_utf8_lossy(bytes);
    let end = if text.contains("\r\n\r\n") { "\r\n\r\n" } else { "\n\n" };
    let second_event_end = text.match_indices(end).nth(1).map(|(i, _)| i + end.len()).unwrap();
    let n_tilde = text.find('ñ').unwrap() + 1;
    assert!(n_tilde > second_event_end, "the ñ must come after the first two events");
    let mut cuts = vec![second_event_end, n_tilde];
    cuts.extend((second_event_end..bytes.len()).step_by(7));
    if let Some(cr) = text[second_event_end..].find('\r') {
        cuts.push(second_event_end + cr + 1);
    }
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        if cut > start {
            pieces.push(Piece::Bytes(bytes[start..cut].to_vec()));
            pieces.push(Piece::Pause(Duration::from_millis(2)));
            start = cut;
        }
    }
    pieces
}

/// Reads a stream to its end.
async fn drain(mut stream: LlmStream<'_>) -> (Vec<String>, Option<Completion>, Option<shared::Error>, CallRecord) {
    let (mut tokens, mut done, mut error) = (Vec::new(), None, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::Token(t)) => tokens.push(t),
            Ok(StreamEvent::Done(c)) => {
                assert!(done.is_none() && error.is_none(), "nothing comes after the end");
                done = Some(c);
            }
            Err(e) => {
                assert!(done.is_none() && error.is_none(), "nothing comes after the end");
                error = Some(e);
            }
        }
    }
    let record = stream.record();
    (tokens, done, error, record)
}

fn errors(records: &[CallRecord]) -> Vec<Option<String>> {
    records.iter().map(|r| r.error.clone()).collect()
}

const SOFIA: &str = "¡Hola! Soy Sofía, de Propiedades Ñuñoa. ¿Buscas comprar o arrendar?";

// ---------------------------------------------------------------------------------------------
// Whole answers

#[tokio::test]
async fn gemini_answers_through_generate_content_with_the_key_in_a_header() {
    let gemini = Fake::start(vec![], Reply::Json(200, gemini_answer(SOFIA, 1200, 300))).await;
    let app = TestApp::spawn_with(env(Some(&gemini), None, &[("LLM_PROVIDER", "gemini")])).await;
    let router = router(&app);

    let (records, outcome) = router.complete(app.infra(), &reply_request()).await;
    let c = outcome.unwrap();
    assert_eq!(c.text, SOFIA);
    assert_eq!((c.provider, c.model.as_str(), c.used_fallback), ("gemini", "gemini-2.0-flash", false));
    assert_eq!(c.usage, Usage { input_tokens: 1200, output_tokens: 300, cost_usd: None, estimated: false });

    // The request as Gemini documents it.
    let reqs = gemini.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(r.query, None, "the key never goes in the URL");
    assert_eq!(r.headers.get("x-goog-api-key").unwrap(), GEMINI_KEY);
    assert!(r.headers.get("authorization").is_none());
    assert_eq!(
        r.body["systemInstruction"],
        json!({"parts": [{"text": "Eres Sofía, asistente de Propiedades Ñuñoa."}]})
    );
    assert_eq!(
        r.body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Hola, busco depto"}]},
            {"role": "model", "parts": [{"text": "¡Hola! ¿En qué comuna?"}]},
            {"role": "user", "parts": [{"text": "En Ñuñoa"}]},
        ])
    );
    assert_eq!(r.body["generationConfig"]["maxOutputTokens"], 1024);
    assert!((r.body["generationConfig"]["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert!(r.body["generationConfig"].get("responseMimeType").is_none());

    // One record, priced from the usage: gemini-2.0-flash at 0.0001 / 0.0004 per 1 000.
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(
        (rec.provider, rec.model.as_str(), rec.call_type.as_str()),
        ("gemini", "gemini-2.0-flash", "chat_response")
    );
    assert_eq!((rec.input_tokens, rec.output_tokens, rec.error.clone(), rec.used_fallback), (1200, 300, None, false));
    assert_eq!(rec.cost_usd, Some(0.00024));
    assert_eq!(rec.cost_usd, price("gemini-2.0-flash", &c.usage));
    assert_eq!(c.cost_usd(), Some(0.00024));
}

#[tokio::test]
async fn gemini_json_mode_asks_for_application_json_and_returns_the_object() {
    let answer = "```json\n{\"name\": \"Ana\", \"location\": \"Ñuñoa\"}\n```";
    let gemini = Fake::start(vec![], Reply::Json(200, gemini_answer(answer, 40, 12))).await;
    let app = TestApp::spawn_with(env(Some(&gemini), None, &[("LLM_PROVIDER", "gemini")])).await;

    let (records, outcome) = router(&app).complete(app.infra(), &extraction_request()).await;
    let c = outcome.unwrap();
    let parsed: Value = serde_json::from_str(&c.text).unwrap();
    assert_eq!(parsed, json!({"name": "Ana", "location": "Ñuñoa"}));
    assert_eq!(records[0].call_type.as_str(), "qualification");

    let body = &gemini.requests()[0].body;
    assert_eq!(body["generationConfig"]["responseMimeType"], "application/json");
    assert_eq!(body["generationConfig"]["maxOutputTokens"], 256);
    assert!((body["generationConfig"]["temperature"].as_f64().unwrap() - 0.1).abs() < 1e-6);
}

#[tokio::test]
async fn openai_answers_through_chat_completions_with_a_bearer_key() {
    let openai = Fake::start(vec![], Reply::Json(200, openai_answer(SOFIA, 2000, 500))).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;

    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    let c = outcome.unwrap();
    assert_eq!((c.text.as_str(), c.provider, c.model.as_str()), (SOFIA, "openai", "gpt-4o-mini"));

    let r = &openai.requests()[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.headers.get("authorization").unwrap(), &format!("Bearer {OPENAI_KEY}"));
    assert_eq!(
        r.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Eres Sofía, asistente de Propiedades Ñuñoa."},
                {"role": "user", "content": "Hola, busco depto"},
                {"role": "assistant", "content": "¡Hola! ¿En qué comuna?"},
                {"role": "user", "content": "En Ñuñoa"},
            ],
            "max_tokens": 1024,
            "temperature": 0.7,
        })
    );
    // gpt-4o-mini, not gpt-4o: 2000 × 0.00015 + 500 × 0.0006 per 1 000.
    assert_eq!(records[0].cost_usd, Some(0.0006));
    assert_eq!((records[0].input_tokens, records[0].output_tokens), (2000, 500));
}

#[tokio::test]
async fn openai_json_mode_sends_response_format_and_openrouter_cost_wins() {
    let mut answer = openai_answer("{\"name\": \"Ana\"}", 50, 8);
    answer["usage"]["cost"] = json!(0.000321);
    let openai = Fake::start(vec![], Reply::Json(200, answer)).await;
    let app = TestApp::spawn_with(env(
        None,
        Some(&openai),
        &[("LLM_PROVIDER", "openai"), ("OPENAI_MODEL", "google/gemini-2.5-flash-lite")],
    ))
    .await;

    let (records, outcome) = router(&app).complete(app.infra(), &extraction_request()).await;
    assert_eq!(outcome.unwrap().text, "{\"name\": \"Ana\"}");
    let body = &openai.requests()[0].body;
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert_eq!(body["model"], "google/gemini-2.5-flash-lite");
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(records[0].cost_usd, Some(0.000321), "the provider's own cost wins over the table");
}

#[tokio::test]
async fn a_json_mode_answer_that_is_not_json_is_a_failed_attempt() {
    let openai = Fake::start(vec![], Reply::Json(200, openai_answer("Ana, de Ñuñoa", 50, 8))).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let (records, outcome) = router(&app).complete(app.infra(), &extraction_request()).await;
    assert_eq!(outcome.unwrap_err().code(), "llm_invalid_json");
    assert_eq!(openai.hits(), 1, "not retried: the same prompt gives the same kind of answer");
    assert!(records[0].error.as_deref().unwrap().contains("not a JSON object"));
}

#[tokio::test]
async fn an_error_body_in_a_200_is_a_failed_attempt() {
    // OpenRouter relays an upstream failure with status 200.
    let failure = Reply::Json(200, json!({"error": {"message": "Provider returned error", "code": 502}}));
    let openai = Fake::start(vec![failure], Reply::Json(200, openai_answer("Hola", 5, 1))).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    assert_eq!(outcome.unwrap().text, "Hola");
    assert_eq!(records.len(), 2, "transient (code 502): retried");
    assert!(records[0].error.as_deref().unwrap().contains("Provider returned error"));
}

#[tokio::test]
async fn a_compatible_server_without_a_key_gets_no_authorization_header() {
    // Ollama at OPENAI_BASE_URL needs no key.
    let ollama = Fake::start(vec![], Reply::Json(200, openai_answer("Hola", 5, 1))).await;
    let app = TestApp::spawn_with(env(
        None,
        None,
        &[
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &format!("{}/v1", ollama.url)),
            ("OPENAI_MODEL", "llama3.1:8b"),
        ],
    ))
    .await;
    let (_, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    assert_eq!(outcome.unwrap().model, "llama3.1:8b");
    let r = &ollama.requests()[0];
    assert!(r.headers.get("authorization").is_none());
    assert_eq!(r.body["model"], "llama3.1:8b");
}

#[tokio::test]
async fn usage_missing_from_an_answer_is_estimated_and_said_so() {
    let mut answer = openai_answer("Hola, ¿cómo estás?", 0, 0);
    answer.as_object_mut().unwrap().remove("usage");
    let openai = Fake::start(vec![], Reply::Json(200, answer)).await;
    let app =
        TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai"), ("OPENAI_MODEL", "llama3.1:8b")]))
            .await;
    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    let c = outcome.unwrap();
    assert!(c.usage.estimated);
    assert_eq!(c.usage.output_tokens, 5, "18 characters / 4, rounded up");
    assert!(c.usage.input_tokens > 0);
    assert!(records[0].estimated);
    assert_eq!(records[0].cost_usd, None, "an unknown model has no price");
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[tokio::test]
async fn gemini_streams_sse_cut_at_awkward_boundaries_into_the_exact_text() {
    let pieces = ["¡Hola! ", "Soy Sofía, ", "de Propiedades ", "Ñuñoa. ", "¿Buscas comprar ", "o arrendar?"];
    let sse = gemini_sse(&pieces, 900, 21);
    let gemini = Fake::start(vec![], Reply::Sse(awkward(&sse))).await;
    let app = TestApp::spawn_with(env(Some(&gemini), None, &[("LLM_PROVIDER", "gemini")])).await;
    let router = router(&app);
    let req = reply_request();

    let (records, stream) = router.stream(app.infra(), &req).await;
    assert!(records.is_empty());
    let (tokens, done, error, record) = drain(stream.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(tokens, pieces);
    let c = done.unwrap();
    assert_eq!(c.text, SOFIA);
    assert_eq!(c.usage, Usage { input_tokens: 900, output_tokens: 21, cost_usd: None, estimated: false });
    assert_eq!(record, c.record(CallType::Reply));
    assert_eq!(record.error, None);
    assert_eq!(record.cost_usd, price("gemini-2.0-flash", &c.usage));

    let r = &gemini.requests()[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.0-flash:streamGenerateContent");
    assert_eq!(r.query.as_deref(), Some("alt=sse"));
    assert_eq!(r.headers.get("x-goog-api-key").unwrap(), GEMINI_KEY);
    assert_eq!(r.body["contents"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn openai_streams_deltas_cut_at_awkward_boundaries_and_reads_the_final_usage() {
    let pieces = ["¡Hola! ", "Soy Sofía, ", "de Propiedades ", "Ñuñoa. ", "¿Buscas comprar ", "o arrendar?"];
    let sse = openai_sse(&pieces, Some((700, 19)));
    let openai = Fake::start(vec![], Reply::Sse(awkward(&sse))).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let router = router(&app);
    let req = reply_request();

    let (_, stream) = router.stream(app.infra(), &req).await;
    let (tokens, done, error, record) = drain(stream.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(tokens.concat(), SOFIA);
    assert_eq!(tokens, pieces);
    let c = done.unwrap();
    assert_eq!(
        (c.text.as_str(), c.usage.input_tokens, c.usage.output_tokens, c.usage.estimated),
        (SOFIA, 700, 19, false)
    );
    assert_eq!(record.cost_usd, Some(0.0001164), "700 × 0.00015 + 19 × 0.0006 per 1 000");

    let body = &openai.requests()[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(openai.requests()[0].path, "/v1/chat/completions");
}

#[tokio::test]
async fn a_stream_without_usage_gets_an_estimate() {
    // Some OpenAI-compatible servers ignore `stream_options` and even end without `[DONE]`.
    let mut sse = openai_sse(&["Hola ", "Ana"], None);
    sse.truncate(sse.len() - "data: [DONE]\n\n".len());
    let openai = Fake::start(vec![], Reply::Sse(vec![Piece::Bytes(sse)])).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let router = router(&app);
    let req = reply_request();
    let (_, stream) = router.stream(app.infra(), &req).await;
    let (tokens, done, error, record) = drain(stream.unwrap()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(tokens.concat(), "Hola Ana");
    let c = done.unwrap();
    assert!(c.usage.estimated && record.estimated);
    assert_eq!(c.usage.output_tokens, 2);
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_token_falls_back() {
    let gemini = Fake::start(vec![], gemini_error(503, "UNAVAILABLE", "The model is overloaded.")).await;
    let openai =
        Fake::start(vec![], Reply::Sse(vec![Piece::Bytes(openai_sse(&["Hola ", "desde OpenAI"], Some((10, 4))))]))
            .await;
    let app = TestApp::spawn_with(env(
        Some(&gemini),
        Some(&openai),
        &[("LLM_PROVIDER", "gemini"), ("LLM_FALLBACK_PROVIDER", "openai"), ("LLM_RETRIES", "1")],
    ))
    .await;
    let router = router(&app);
    let req = reply_request();

    let (records, stream) = router.stream(app.infra(), &req).await;
    assert_eq!(gemini.hits(), 2, "retried once");
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.provider == "gemini" && !r.used_fallback));
    assert!(records[0].error.as_deref().unwrap().contains("HTTP 503: UNAVAILABLE: The model is overloaded."));

    let stream = stream.unwrap();
    assert_eq!((stream.provider(), stream.used_fallback()), ("openai", true));
    let (tokens, done, error, record) = drain(stream).await;
    assert!(error.is_none());
    assert_eq!(tokens.concat(), "Hola desde OpenAI");
    assert!(done.unwrap().used_fallback);
    assert!(record.used_fallback && record.error.is_none());
}

#[tokio::test]
async fn an_error_as_the_first_event_of_a_stream_also_falls_back() {
    let first =
        format!("data: {}\r\n\r\n", json!({"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}));
    let gemini = Fake::start(vec![], Reply::Sse(vec![Piece::Bytes(first.into_bytes())])).await;
    let openai = Fake::start(vec![], Reply::Sse(vec![Piece::Bytes(openai_sse(&["Hola"], Some((3, 1))))])).await;
    let app = TestApp::spawn_with(env(
        Some(&gemini),
        Some(&openai),
        &[("LLM_PROVIDER", "gemini"), ("LLM_FALLBACK_PROVIDER", "openai"), ("LLM_RETRIES", "0")],
    ))
    .await;
    let router = router(&app);
    let req = reply_request();
    let (records, stream) = router.stream(app.infra(), &req).await;
    assert_eq!(errors(&records).len(), 1);
    assert!(records[0].error.as_deref().unwrap().contains("Internal error"));
    let (tokens, ..) = drain(stream.unwrap()).await;
    assert_eq!(tokens, ["Hola"]);
}

#[tokio::test]
async fn a_stream_that_breaks_mid_answer_ends_with_an_error_after_its_tokens() {
    let sse = String::from_utf8(openai_sse(&["Hola, ", "soy Sofía", " y te"], None)).unwrap();
    // Cut after the third delta: no finish, no [DONE], the connection drops.
    let cut = sse.find("\" y te\"").unwrap();
    let cut = cut + sse[cut..].find("\n\n").unwrap() + 2;
    let openai = Fake::start(
        vec![],
        Reply::Sse(vec![
            Piece::Bytes(sse.as_bytes()[..cut].to_vec()),
            Piece::Pause(Duration::from_millis(20)),
            Piece::Abort,
        ]),
    )
    .await;
    let gemini = Fake::start(vec![], Reply::Json(200, gemini_answer("no debería llamarse", 1, 1))).await;
    let app = TestApp::spawn_with(env(
        Some(&gemini),
        Some(&openai),
        &[("LLM_PROVIDER", "openai"), ("LLM_FALLBACK_PROVIDER", "gemini")],
    ))
    .await;
    let router = router(&app);
    let req = reply_request();

    let (records, stream) = router.stream(app.infra(), &req).await;
    assert!(records.is_empty());
    let (tokens, done, error, record) = drain(stream.unwrap()).await;
    assert_eq!(tokens, ["Hola, ", "soy Sofía", " y te"]);
    assert!(done.is_none());
    let error = error.expect("the break is reported");
    assert!(!shared::jobs::is_permanent(&error));
    assert_eq!(gemini.hits(), 0, "once tokens flowed, the caller decides; no silent second answer");
    assert_eq!(openai.hits(), 1);
    // The ledger still gets the attempt, with the tokens so far estimated.
    assert_eq!((record.provider, record.used_fallback, record.estimated), ("openai", false, true));
    assert!(record.error.is_some());
    assert_eq!(record.output_tokens, 5, "20 characters / 4");
}

#[tokio::test]
async fn a_gemini_stream_stopped_for_safety_ends_with_a_blocked_error() {
    let chunk = |text: &str, finish: Option<&str>| {
        let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        format!("data: {}\r\n\r\n", json!({"candidates": [candidate]}))
    };
    // Mid-answer: the tokens so far, then the error.
    let mid = format!("{}{}", chunk("Claro, ", None), chunk("", Some("SAFETY")));
    // At once: no stream, a permanent failure (not retried).
    let at_once = chunk("", Some("SAFETY"));
    let gemini = Fake::start(
        vec![Reply::Sse(vec![Piece::Bytes(mid.into_bytes())]), Reply::Sse(vec![Piece::Bytes(at_once.into_bytes())])],
        Reply::Json(500, json!({})),
    )
    .await;
    let app = TestApp::spawn_with(env(Some(&gemini), None, &[("LLM_PROVIDER", "gemini")])).await;
    let router = router(&app);
    let req = reply_request();

    let (_, stream) = router.stream(app.infra(), &req).await;
    let (tokens, done, error, _) = drain(stream.unwrap()).await;
    assert_eq!(tokens, ["Claro, "]);
    assert!(done.is_none());
    assert_eq!(error.unwrap().code(), "llm_blocked");

    let (records, stream) = router.stream(app.infra(), &req).await;
    assert_eq!(stream.err().unwrap().code(), "llm_blocked");
    assert_eq!(records.len(), 1, "permanent: not retried");
    assert!(records[0].error.as_deref().unwrap().contains("SAFETY"));
    assert_eq!(gemini.hits(), 2);
}

// ---------------------------------------------------------------------------------------------
// Retries, fallback, breakers

#[tokio::test]
async fn transient_errors_are_retried_with_backoff_until_one_succeeds() {
    let gemini = Fake::start(
        vec![
            gemini_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
            gemini_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        ],
        Reply::Json(200, gemini_answer("Hola", 10, 2)),
    )
    .await;
    let app =
        TestApp::spawn_with(env(Some(&gemini), None, &[("LLM_PROVIDER", "gemini"), ("LLM_RETRY_BACKOFF_MS", "100")]))
            .await;

    let started = Instant::now();
    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    assert_eq!(outcome.unwrap().text, "Hola");
    assert!(started.elapsed() >= Duration::from_millis(300), "waited 100 ms, then 200 ms");
    assert_eq!(gemini.hits(), 3);
    assert_eq!(records.len(), 3);
    let errs = errors(&records);
    assert!(errs[0].as_deref().unwrap().contains("HTTP 503: UNAVAILABLE"));
    assert!(errs[1].as_deref().unwrap().contains("HTTP 429: RESOURCE_EXHAUSTED"));
    assert_eq!(errs[2], None);
    assert!(records[..2].iter().all(|r| r.cost_usd == Some(0.0) && r.input_tokens == 0));
    assert!(records.iter().all(|r| !r.used_fallback));
    assert!(!errs.iter().flatten().any(|e| e.contains(GEMINI_KEY)));
}

#[tokio::test]
async fn when_the_primary_keeps_failing_the_fallback_answers() {
    let gemini = Fake::start(vec![], gemini_error(500, "INTERNAL", "An internal error has occurred.")).await;
    let openai = Fake::start(vec![], Reply::Json(200, openai_answer("Hola desde el respaldo", 30, 6))).await;
    let app = TestApp::spawn_with(env(
        Some(&gemini),
        Some(&openai),
        &[("LLM_PROVIDER", "gemini"), ("LLM_FALLBACK_PROVIDER", "openai")],
    ))
    .await;

    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    let c = outcome.unwrap();
    assert_eq!((c.text.as_str(), c.provider, c.used_fallback), ("Hola desde el respaldo", "openai", true));
    assert_eq!((gemini.hits(), openai.hits()), (3, 1));
    let who: Vec<(&str, bool, bool)> =
        records.iter().map(|r| (r.provider, r.used_fallback, r.error.is_some())).collect();
    assert_eq!(
        who,
        [("gemini", false, true), ("gemini", false, true), ("gemini", false, true), ("openai", true, false)]
    );
}

#[tokio::test]
async fn when_every_provider_fails_the_caller_gets_the_error_and_every_record() {
    let gemini = Fake::start(vec![], gemini_error(500, "INTERNAL", "An internal error has occurred.")).await;
    let openai = Fake::start(vec![], openai_error(503, "server_error", "The server is overloaded")).await;
    let app = TestApp::spawn_with(env(
        Some(&gemini),
        Some(&openai),
        &[("LLM_PROVIDER", "gemini"), ("LLM_FALLBACK_PROVIDER", "openai")],
    ))
    .await;

    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    let err = outcome.unwrap_err();
    assert!(err.to_string().contains("The server is overloaded"), "the last error: {err}");
    assert_eq!(records.len(), 4, "3 primary attempts + 1 fallback");
    assert!(records.iter().all(|r| r.error.is_some()));
    assert_eq!(records[3].provider, "openai");
    assert!(records[3].used_fallback);
}

#[tokio::test]
async fn permanent_errors_are_not_retried_but_the_fallback_is_tried() {
    let gemini =
        Fake::start(vec![], gemini_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")).await;
    // Alone: one attempt, and the error for the local engine to cover.
    let app = TestApp::spawn_with(env(Some(&gemini), None, &[("LLM_PROVIDER", "gemini")])).await;
    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    let err = outcome.unwrap_err();
    assert!(shared::jobs::is_permanent(&err));
    assert!(err.to_string().contains("HTTP 400: INVALID_ARGUMENT: Request contains an invalid argument."));
    assert_eq!((gemini.hits(), records.len()), (1, 1));

    // With a fallback: SPEC §2 tries it when the primary fails.
    let openai = Fake::start(vec![], Reply::Json(200, openai_answer("Hola", 3, 1))).await;
    let app = TestApp::spawn_with(env(
        Some(&gemini),
        Some(&openai),
        &[("LLM_PROVIDER", "gemini"), ("LLM_FALLBACK_PROVIDER", "openai")],
    ))
    .await;
    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    assert!(outcome.unwrap().used_fallback);
    assert_eq!((gemini.hits(), records.len()), (2, 2));
}

#[tokio::test]
async fn a_provider_that_echoes_the_key_never_leaks_it() {
    let echo = openai_error(401, "invalid_request_error", &format!("Incorrect API key provided: {OPENAI_KEY}."));
    let openai = Fake::start(vec![], echo).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    let err = outcome.unwrap_err();
    assert!(!err.to_string().contains(OPENAI_KEY));
    let recorded = records[0].error.as_deref().unwrap();
    assert!(recorded.contains("HTTP 401") && recorded.contains("***"), "{recorded}");
    assert!(!recorded.contains(OPENAI_KEY));
}

#[tokio::test]
async fn a_failing_provider_opens_its_breaker_and_is_then_skipped_as_health_shows() {
    let gemini = Fake::start(vec![], gemini_error(503, "UNAVAILABLE", "The model is overloaded.")).await;
    let openai = Fake::start(vec![], Reply::Json(200, openai_answer("Hola", 3, 1))).await;
    let app = TestApp::spawn_with(env(
        Some(&gemini),
        Some(&openai),
        &[("LLM_PROVIDER", "gemini"), ("LLM_FALLBACK_PROVIDER", "openai")],
    ))
    .await;
    let router = router(&app);
    let req = reply_request();

    // 3 failed attempts, then 2 more: the fifth consecutive failure opens the breaker, so the
    // second call's third attempt is not made.
    let (first, _) = router.complete(app.infra(), &req).await;
    assert_eq!((first.len(), gemini.hits()), (4, 3));
    let (second, outcome) = router.complete(app.infra(), &req).await;
    assert!(outcome.unwrap().used_fallback);
    assert_eq!(gemini.hits(), 5);
    assert_eq!(second.iter().filter(|r| r.provider == "gemini").count(), 2);

    // Open: the primary is not called at all; the fallback answers at once.
    let (third, outcome) = router.complete(app.infra(), &req).await;
    assert_eq!(outcome.unwrap().provider, "openai");
    assert_eq!(gemini.hits(), 5, "an open breaker makes no request");
    assert_eq!(third.len(), 1);
    assert_eq!(openai.hits(), 3);

    let health = body(app.client().get("/health").send().await).await;
    assert_eq!(health["circuit_breakers"]["llm"], "open", "{health}");
    assert_eq!(health["circuit_breakers"]["llm:gemini"], "open");
    assert_eq!(health["circuit_breakers"]["llm:openai"], "closed");

    // Alone, an open primary means an error at once, with no record: the local engine answers.
    let app_alone = TestApp::spawn_with(env(Some(&gemini), None, &[("LLM_PROVIDER", "gemini")])).await;
    let router_alone = self::router(&app_alone);
    for _ in 0..2 {
        let _ = router_alone.complete(app_alone.infra(), &req).await;
    }
    let before = gemini.hits();
    let (records, outcome) = router_alone.complete(app_alone.infra(), &req).await;
    assert_eq!(outcome.unwrap_err().code(), "circuit_open");
    assert!(records.is_empty());
    assert_eq!(gemini.hits(), before);
    let (records, stream) = router_alone.stream(app_alone.infra(), &req).await;
    assert_eq!(stream.err().unwrap().code(), "circuit_open");
    assert!(records.is_empty());
    assert_eq!(gemini.hits(), before);
}

#[tokio::test]
async fn health_shows_closed_llm_breakers_when_nothing_failed() {
    let gemini = Fake::start(vec![], Reply::Json(200, gemini_answer("Hola", 1, 1))).await;
    let app = TestApp::spawn_with(env(Some(&gemini), None, &[("LLM_PROVIDER", "gemini")])).await;
    let health = body(app.client().get("/health").send().await).await;
    assert_eq!(health["circuit_breakers"]["llm"], "closed");
    assert_eq!(health["circuit_breakers"]["llm:gemini"], "closed");
    assert!(health["circuit_breakers"].get("llm:openai").is_none(), "only configured providers are listed");
}

// ---------------------------------------------------------------------------------------------
// Time-outs

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_a_transient_failure() {
    let slow = Reply::Slow(Duration::from_millis(1500), Box::new(Reply::Json(200, openai_answer("tarde", 1, 1))));
    let openai = Fake::start(vec![], slow).await;
    let app = TestApp::spawn_with(env(
        None,
        Some(&openai),
        &[("LLM_PROVIDER", "openai"), ("LLM_TIMEOUT_MS", "300"), ("LLM_RETRIES", "1")],
    ))
    .await;
    let started = Instant::now();
    let (records, outcome) = router(&app).complete(app.infra(), &reply_request()).await;
    let elapsed = started.elapsed();
    let err = outcome.unwrap_err();
    assert!(!shared::jobs::is_permanent(&err));
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(records.len(), 2, "a time-out is retried");
    assert!(records.iter().all(|r| r.latency_ms >= 300 && r.latency_ms < 1500));
    assert!(elapsed < Duration::from_millis(1400), "did not wait for the slow answer: {elapsed:?}");
}

#[tokio::test]
async fn a_stream_that_does_not_start_in_time_falls_back() {
    let slow =
        Reply::Slow(Duration::from_millis(1500), Box::new(Reply::Sse(vec![Piece::Bytes(gemini_sse(&["x"], 1, 1))])));
    let gemini = Fake::start(vec![], slow).await;
    let openai = Fake::start(vec![], Reply::Sse(vec![Piece::Bytes(openai_sse(&["Hola"], Some((1, 1))))])).await;
    let app = TestApp::spawn_with(env(
        Some(&gemini),
        Some(&openai),
        &[
            ("LLM_PROVIDER", "gemini"),
            ("LLM_FALLBACK_PROVIDER", "openai"),
            ("LLM_TIMEOUT_MS", "300"),
            ("LLM_RETRIES", "0"),
        ],
    ))
    .await;
    let router = router(&app);
    let req = reply_request();
    let (records, stream) = router.stream(app.infra(), &req).await;
    assert!(records[0].error.as_deref().unwrap().contains("timed out"));
    let (tokens, done, ..) = drain(stream.unwrap()).await;
    assert_eq!(tokens, ["Hola"]);
    assert!(done.unwrap().used_fallback);
}

#[tokio::test]
async fn a_stream_that_stalls_mid_answer_ends_with_a_timeout() {
    let sse = openai_sse(&["Hola, ", "Ana"], Some((5, 2)));
    let first_delta_end = String::from_utf8_lossy(&sse).match_indices("\n\n").nth(1).unwrap().0 + 2;
    let openai = Fake::start(
        vec![],
        Reply::Sse(vec![
            Piece::Bytes(sse[..first_delta_end].to_vec()),
            Piece::Pause(Duration::from_millis(1500)),
            Piece::Bytes(sse[first_delta_end..].to_vec()),
        ]),
    )
    .await;
    let app =
        TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai"), ("LLM_TIMEOUT_MS", "300")])).await;
    let router = router(&app);
    let req = reply_request();
    let started = Instant::now();
    let (_, stream) = router.stream(app.infra(), &req).await;
    let (tokens, done, error, record) = drain(stream.unwrap()).await;
    assert_eq!(tokens, ["Hola, "]);
    assert!(done.is_none());
    assert!(error.unwrap().to_string().contains("stalled"));
    assert!(record.error.as_deref().unwrap().contains("stalled"));
    assert!(started.elapsed() < Duration::from_millis(1400));
}

// ---------------------------------------------------------------------------------------------
// The model in the conversation

/// A conversation turn through `POST /api/v1/chat/test`.
async fn chat(app: &TestApp, user: &crate::common::User, lead_id: Option<i64>, message: &str) -> Value {
    let resp = app
        .client()
        .post("/api/v1/chat/test")
        .header("authorization", user.bearer())
        .body_json(&json!({"message": message, "lead_id": lead_id}))
        .send()
        .await;
    assert_eq!(resp.0.status().as_u16(), 200);
    body(resp).await
}

async fn ledger_of(app: &TestApp, lead_id: i64) -> Vec<shared::entities::llm_calls::Model> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    use shared::entities::llm_calls;
    llm_calls::Entity::find()
        .filter(llm_calls::Column::LeadId.eq(lead_id))
        .order_by_asc(llm_calls::Column::Id)
        .all(app.db())
        .await
        .unwrap()
}

#[tokio::test]
async fn sofia_answers_through_the_model_with_the_active_prompt_and_the_history() {
    let written = "¡Hola Marcela! Qué bueno que escribes. ¿En qué comuna te gustaría vivir?";
    let openai = Fake::start(vec![], Reply::Json(200, openai_answer(written, 900, 40))).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let admin = app.new_broker().await;
    let version = app
        .client()
        .post(format!("/api/broker/brokers/{}/prompts", admin.broker_id.unwrap()))
        .header("authorization", admin.bearer())
        .body_json(&json!({"version_tag": "v-llm", "content": "Eres Sofía de Propiedades Test. Responde breve."}))
        .send()
        .await;
    assert_eq!(version.0.status().as_u16(), 201);
    let version_id = body(version).await["id"].as_i64().unwrap();
    let activated = app
        .client()
        .put(format!("/api/broker/brokers/{}/prompts/{version_id}/activate", admin.broker_id.unwrap()))
        .header("authorization", admin.bearer())
        .send()
        .await;
    assert_eq!(activated.0.status().as_u16(), 200);

    let first = chat(&app, &admin, None, "Hola, soy Marcela y busco depto").await;
    assert_eq!(first["response"], written, "{first}");
    let lead_id = first["lead_id"].as_i64().unwrap();
    // The rule extractor still runs: the name is on the lead.
    let second = chat(&app, &admin, Some(lead_id), "En Ñuñoa, ojalá cerca del metro").await;
    assert_eq!(second["response"], written);

    let requests = openai.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1].body["messages"].as_array().unwrap().clone();
    let system = messages[0]["content"].as_str().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(system.contains("Eres Sofía de Propiedades Test"), "the active version is the base prompt: {system}");
    assert!(system.contains("Marcela"), "collected data are in the prompt: {system}");
    assert!(system.contains("BORRADOR"), "the engine's draft is in the prompt");
    let turns: Vec<(String, String)> = messages[1..]
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        turns,
        vec![
            ("user".to_string(), "Hola, soy Marcela y busco depto".to_string()),
            ("assistant".to_string(), written.to_string()),
            ("user".to_string(), "En Ñuñoa, ojalá cerca del metro".to_string()),
        ]
    );

    let replies: Vec<Option<i64>> = {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        use shared::entities::chat_messages;
        chat_messages::Entity::find()
            .filter(chat_messages::Column::LeadId.eq(lead_id))
            .filter(chat_messages::Column::Direction.eq("out"))
            .all(app.db())
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.prompt_version_id)
            .collect()
    };
    assert_eq!(replies, vec![Some(version_id); 2], "each reply records the version that wrote it");
    let ledger = ledger_of(&app, lead_id).await;
    assert_eq!(ledger.len(), 2, "one row per model call, no local row: {ledger:?}");
    for row in &ledger {
        assert_eq!(row.provider, "openai");
        assert_eq!(row.call_type, "chat_response");
        assert_eq!((row.input_tokens, row.output_tokens), (900, 40));
        assert_eq!(row.prompt_version_id, Some(version_id));
        assert!(row.error.is_none());
    }
}

#[tokio::test]
async fn a_model_reply_that_promises_credit_is_replaced_by_the_engines() {
    let promise = "¡Tranquila! Con tu renta calificas para el crédito hipotecario sin problema.";
    let openai = Fake::start(vec![], Reply::Json(200, openai_answer(promise, 500, 30))).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let admin = app.new_broker().await;
    let r = chat(&app, &admin, None, "Hola, gano 1.500.000 líquidos, ¿me darían crédito?").await;
    let text = r["response"].as_str().unwrap();
    assert!(!text.is_empty());
    assert_ne!(text, promise);
    assert!(!text.to_lowercase().contains("calificas"), "{text}");
    assert_eq!(openai.hits(), 1);
    let ledger = ledger_of(&app, r["lead_id"].as_i64().unwrap()).await;
    let providers: Vec<&str> = ledger.iter().map(|c| c.provider.as_str()).collect();
    assert_eq!(providers, ["openai", "local"], "the model's call and the engine's reply that was sent");
}

#[tokio::test]
async fn when_every_provider_fails_the_lead_still_gets_the_engines_reply() {
    let openai = Fake::start(vec![], openai_error(503, "server_error", "overloaded")).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai"), ("LLM_RETRIES", "1")])).await;
    let admin = app.new_broker().await;
    let r = chat(&app, &admin, None, "Hola, busco casa en Maipú").await;
    assert!(!r["response"].as_str().unwrap().trim().is_empty(), "{r}");
    let ledger = ledger_of(&app, r["lead_id"].as_i64().unwrap()).await;
    let failed = ledger.iter().filter(|c| c.provider == "openai" && c.error.is_some()).count();
    assert_eq!(failed, openai.hits(), "every failed attempt is a ledger row: {ledger:?}");
    assert!(failed >= 1);
    assert_eq!(ledger.last().map(|c| c.provider.as_str()), Some("local"));
}

/// `POST /api/v1/chat/stream`: the status and the data frames.
async fn chat_stream(app: &TestApp, user: &crate::common::User, message: &str) -> (u16, Vec<Value>) {
    let resp = app
        .client()
        .post("/api/v1/chat/stream")
        .header("authorization", user.bearer())
        .body_json(&json!({"message": message}))
        .send()
        .await;
    let status = resp.0.status().as_u16();
    let text = resp.0.into_body().into_string().await.unwrap();
    let frames = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("frame {d:?}: {e}")))
        .collect();
    (status, frames)
}

fn tokens_of(frames: &[Value]) -> Vec<String> {
    frames.iter().filter_map(|f| f["token"].as_str().map(str::to_string)).collect()
}

#[tokio::test]
async fn chat_stream_sends_the_models_tokens_clause_by_clause() {
    let pieces = ["¡Hola", " Marcela!", " ¿Buscas", " en", " Ñuñoa?"];
    let sse = Reply::Sse(awkward(&openai_sse(&pieces, Some((700, 25)))));
    let openai = Fake::start(vec![], sse).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let admin = app.new_broker().await;
    let (status, frames) = chat_stream(&app, &admin, "Hola, soy Marcela").await;
    assert_eq!(status, 200);
    assert_eq!(tokens_of(&frames), ["¡Hola Marcela!", " ¿Buscas en Ñuñoa?"], "{frames:?}");
    let done = frames.last().unwrap();
    assert_eq!(done["done"], true);
    assert!(done.get("replaced").is_none(), "{done}");
    assert_eq!(openai.requests()[0].body["stream"], true);
    let lead_id = done["lead_id"].as_i64().unwrap();
    let ledger = ledger_of(&app, lead_id).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!((ledger[0].provider.as_str(), ledger[0].output_tokens), ("openai", 25));
    let b = app
        .client()
        .get(format!("/api/v1/chat/{lead_id}/messages"))
        .header("authorization", admin.bearer())
        .send()
        .await;
    let stored = body(b).await.to_string();
    assert!(stored.contains("¡Hola Marcela! ¿Buscas en Ñuñoa?"), "the streamed text is the stored reply: {stored}");
}

#[tokio::test]
async fn a_streamed_promise_is_never_shown_and_the_engines_reply_replaces_it() {
    let pieces = ["¡Hola!", " Con tu renta", " calificas para", " el crédito."];
    let openai = Fake::start(vec![], Reply::Sse(vec![Piece::Bytes(openai_sse(&pieces, Some((500, 20))))])).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let admin = app.new_broker().await;
    let (status, frames) = chat_stream(&app, &admin, "Gano 900 mil, ¿me aprueban el crédito?").await;
    assert_eq!(status, 200);
    let shown = tokens_of(&frames).concat();
    assert_eq!(shown, "¡Hola!", "only the clean clauses went out: {frames:?}");
    let done = frames.last().unwrap();
    assert_eq!(done["done"], true);
    assert_eq!(done["replaced"], true);
    let response = done["response"].as_str().unwrap();
    assert!(!response.is_empty() && !response.to_lowercase().contains("calificas"), "{response}");
}

#[tokio::test]
async fn chat_stream_replays_the_engines_reply_when_no_provider_streams() {
    let openai = Fake::start(vec![], openai_error(401, "invalid_request_error", "Incorrect API key provided")).await;
    let app = TestApp::spawn_with(env(None, Some(&openai), &[("LLM_PROVIDER", "openai")])).await;
    let admin = app.new_broker().await;
    let (status, frames) = chat_stream(&app, &admin, "Hola, busco depto en Ñuñoa").await;
    assert_eq!(status, 200);
    assert!(!tokens_of(&frames).concat().trim().is_empty(), "{frames:?}");
    assert_eq!(frames.last().unwrap()["done"], true);
    // Validation errors still come with their status before anything streams.
    let (status, frames) = chat_stream(&app, &admin, "").await;
    assert_eq!(status, 422);
    assert!(frames[0]["error"].is_string() && frames[0]["code"].is_string(), "{frames:?}");
}
