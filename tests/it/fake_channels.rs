//! Fake Telegram Bot API and WhatsApp Cloud API servers speaking the providers' wire formats
//! (`sendMessage` / `setWebhook` answers and error bodies, Graph `/{phone_number_id}/messages`
//! answers and error bodies), and builders of the payloads they send to our webhooks (updates,
//! message objects, status callbacks, signatures).

use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem::{Request, Response};
use serde_json::{Value, json};

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Call {
    pub path: String,
    pub auth: Option<String>,
    pub json: Value,
}

#[derive(Default)]
pub struct State {
    pub calls: Vec<Call>,
    /// Answer every send with this status (Telegram / Graph error bodies).
    pub fail_status: Option<u16>,
    /// Answer only this many sends with `fail_status`, then succeed.
    pub fail_times: Option<u32>,
    next_id: u64,
}

pub struct FakeChannels {
    pub base: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeChannels {
    pub fn calls(&self, path_part: &str) -> Vec<Call> {
        self.state.lock().unwrap().calls.iter().filter(|c| c.path.contains(path_part)).cloned().collect()
    }

    /// Telegram `sendMessage` calls.
    pub fn telegram_sends(&self) -> Vec<Call> {
        self.calls("/sendMessage")
    }

    /// Graph `messages` calls that send a message (not read receipts).
    pub fn whatsapp_sends(&self) -> Vec<Call> {
        self.calls("/messages").into_iter().filter(|c| c.json.get("status").is_none()).collect()
    }

    pub fn whatsapp_reads(&self) -> Vec<Call> {
        self.calls("/messages").into_iter().filter(|c| c.json["status"] == "read").collect()
    }

    pub fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
    }
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

fn telegram_error(status: u16) -> Response {
    let description = match status {
        400 => "Bad Request: chat not found",
        403 => "Forbidden: bot was blocked by the user",
        429 => "Too Many Requests: retry after 1",
        _ => "Internal Server Error",
    };
    reply(status, json!({"ok": false, "error_code": status, "description": description}))
}

fn graph_error(status: u16) -> Response {
    let (code, message) = match status {
        400 => (131026, "Message undeliverable"),
        401 => (190, "Error validating access token"),
        _ => (2, "Service temporarily unavailable"),
    };
    reply(
        status,
        json!({"error": {"message": message, "type": "OAuthException", "code": code,
                                   "error_data": {"messaging_product": "whatsapp", "details": message},
                                   "fbtrace_id": "AbCdEf"}}),
    )
}

async fn handle(state: Arc<Mutex<State>>, mut req: Request) -> Response {
    let path = req.uri().path().to_string();
    let auth = req.header("authorization").map(str::to_string);
    let bytes = req.take_body().into_vec().await.unwrap_or_default();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    s.calls.push(Call { path: path.clone(), auth, json: json.clone() });
    let failing = match (s.fail_status, s.fail_times) {
        (Some(_), Some(0)) => false,
        (Some(_), Some(n)) => {
            s.fail_times = Some(n - 1);
            true
        }
        (Some(_), None) => true,
        (None, _) => false,
    };
    s.next_id += 1;
    let id = s.next_id;
    if path.starts_with("/bot") {
        if path.ends_with("/setWebhook") {
            return reply(200, json!({"ok": true, "result": true, "description": "Webhook was set"}));
        }
        if path.ends_with("/sendMessage") {
            if let Some(status) = s.fail_status.filter(|_| failing) {
                return telegram_error(status);
            }
            return reply(
                200,
                json!({"ok": true, "result": {"message_id": 9000 + id, "date": 1_700_000_000,
                "chat": {"id": json["chat_id"], "type": "private"}, "text": json["text"]}}),
            );
        }
        return reply(404, json!({"ok": false, "error_code": 404, "description": "Not Found"}));
    }
    if path.ends_with("/messages") {
        if json["status"] == "read" {
            return reply(200, json!({"success": true}));
        }
        if let Some(status) = s.fail_status.filter(|_| failing) {
            return graph_error(status);
        }
        return reply(
            200,
            json!({"messaging_product": "whatsapp",
            "contacts": [{"input": json["to"], "wa_id": json["to"]}],
            "messages": [{"id": format!("wamid.OUT{id}")}]}),
        );
    }
    reply(404, json!({"error": {"message": "Unknown path", "code": 100}}))
}

pub async fn fake_channels() -> FakeChannels {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let state = Arc::new(Mutex::new(State::default()));
    let shared_state = state.clone();
    let endpoint = poem::endpoint::make(move |req: Request| handle(shared_state.clone(), req));
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    FakeChannels { base: format!("http://{addr}"), state }
}

// ---------------------------------------------------------------------------------------------
// What the providers send us

/// A Telegram `Update` with a private-chat text `message`.
pub fn tg_update(update_id: i64, chat_id: i64, message_id: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {"message_id": message_id, "date": 1_700_000_000,
        "from": {"id": chat_id, "is_bot": false, "first_name": "Rosa", "username": "rosa_tg", "language_code": "es"},
        "chat": {"id": chat_id, "first_name": "Rosa", "username": "rosa_tg", "type": "private"},
        "text": text}})
}

/// A WhatsApp Cloud API delivery with one `value`.
pub fn wa_delivery(phone_number_id: &str, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({"display_phone_number": "15550001111", "phone_number_id": phone_number_id});
    json!({"object": "whatsapp_business_account",
           "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]})
}

/// A text message from `from` (digits).
pub fn wa_text(phone_number_id: &str, from: &str, wamid: &str, text: &str) -> Value {
    wa_delivery(
        phone_number_id,
        json!({
            "contacts": [{"profile": {"name": "Rosa"}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}]
        }),
    )
}

/// A status callback for a message we sent.
pub fn wa_status(phone_number_id: &str, wamid: &str, status: &str, recipient: &str) -> Value {
    let mut st = json!({"id": wamid, "status": status, "timestamp": "1700000100", "recipient_id": recipient});
    if status == "failed" {
        st["errors"] = json!([{"code": 131047, "title": "Re-engagement message",
            "message": "Re-engagement message", "error_data": {"details": "More than 24 hours have passed"}}]);
    }
    wa_delivery(phone_number_id, json!({"statuses": [st]}))
}

/// `X-Hub-Signature-256` of `body` under `secret`.
pub fn wa_signature(secret: &str, body: &[u8]) -> String {
    let mac = shared::channels::hmac_sha256(secret.as_bytes(), body);
    format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>())
}
