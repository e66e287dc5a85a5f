//! The Telegram Bot API: webhook updates in, `sendMessage` / `setWebhook` out.

use serde_json::{Value, json};

use super::inbound::InboundMessage;
use crate::Infra;
use crate::error::Result;
use crate::integrations::{breaker, http, send_json};

const SERVICE: &str = "telegram";

/// What one update carries for us.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// A `message` or `edited_message` from a person.
    Message { update_id: i64, message: Box<InboundMessage> },
    /// Anything else (channel posts, callbacks, member updates, bots): acknowledged, ignored.
    Ignored { update_id: Option<i64> },
}

fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The attachments of a message, as `{type, file_id, file_size, mime_type}` (the largest photo size).
fn attachments(m: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(sizes) = m.get("photo").and_then(Value::as_array)
        && let Some(best) = sizes.iter().max_by_key(|p| p.get("file_size").and_then(Value::as_i64).unwrap_or(0))
    {
        out.push(json!({"type": "photo", "file_id": best.get("file_id"), "file_size": best.get("file_size"),
                        "mime_type": "image/jpeg"}));
    }
    for kind in ["video", "audio", "document", "voice", "sticker", "video_note", "animation"] {
        if let Some(f) = m.get(kind).filter(|v| v.is_object()) {
            out.push(json!({"type": kind, "file_id": f.get("file_id"), "file_size": f.get("file_size"),
                            "mime_type": f.get("mime_type")}));
        }
    }
    if m.get("location").is_some_and(Value::is_object) {
        out.push(json!({"type": "location", "location": m.get("location")}));
    }
    if m.get("contact").is_some_and(Value::is_object) {
        out.push(json!({"type": "contact", "contact": m.get("contact")}));
    }
    out
}

/// Parses one update (`None` when the body is not an update at all).
pub fn parse_update(body: &Value) -> Option<Update> {
    let update_id = body.get("update_id").and_then(Value::as_i64);
    let obj = body.as_object()?;
    let (m, edited) = match (obj.get("message"), obj.get("edited_message")) {
        (Some(m), _) if m.is_object() => (m, false),
        (_, Some(m)) if m.is_object() => (m, true),
        _ => return update_id.map(|_| Update::Ignored { update_id }),
    };
    let update_id = update_id?;
    let from = m.get("from");
    if from.and_then(|f| f.get("is_bot")).and_then(Value::as_bool).unwrap_or(false) {
        return Some(Update::Ignored { update_id: Some(update_id) });
    }
    let Some(chat_id) = m.get("chat").and_then(|c| c.get("id")).and_then(str_of) else {
        return Some(Update::Ignored { update_id: Some(update_id) });
    };
    let Some(message_id) = m.get("message_id").and_then(str_of) else {
        return Some(Update::Ignored { update_id: Some(update_id) });
    };
    let username = from.and_then(|f| f.get("username")).and_then(str_of);
    let display = [from.and_then(|f| f.get("first_name")), from.and_then(|f| f.get("last_name"))]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let attachments = attachments(m);
    let text = m
        .get("text")
        .or_else(|| m.get("caption"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    // An edit is a message of its own (the person changed what they said); its key names the edit.
    let channel_message_id = if edited {
        let at = m.get("edit_date").and_then(Value::as_i64).unwrap_or(update_id);
        format!("{chat_id}:{message_id}:e{at}")
    } else {
        format!("{chat_id}:{message_id}")
    };
    Some(Update::Message {
        update_id,
        message: Box::new(InboundMessage {
            provider: "telegram",
            channel_user_id: chat_id,
            channel_username: username,
            display_name: Some(display).filter(|d| !d.trim().is_empty()),
            phone: None,
            channel_message_id,
            text,
            attachments,
            metadata: json!({"update_id": update_id, "telegram_message_id": message_id, "edited": edited}),
        }),
    })
}

fn url(infra: &Infra, token: &str, method: &str) -> String {
    format!("{}/bot{token}/{method}", infra.settings.providers.telegram_api_base.trim_end_matches('/'))
}

/// `sendMessage` in HTML parse mode (the text escaped); returns the sent message's id. Through the
/// Telegram circuit breaker: while the Bot API keeps failing, sends fail at once (and retry later).
pub async fn send_message(infra: &Infra, token: &str, chat_id: &str, text: &str) -> Result<String> {
    let chat: Value = chat_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(chat_id));
    let body = json!({"chat_id": chat, "text": super::html_escape(text), "parse_mode": "HTML"});
    let req = http().post(url(infra, token, "sendMessage")).timeout(infra.settings.providers.timeout).json(&body);
    let resp = breaker::TELEGRAM.call(infra, || send_json(SERVICE, req)).await?;
    Ok(resp.get("result").and_then(|r| r.get("message_id")).and_then(str_of).unwrap_or_default())
}

/// `setWebhook` with the secret token Telegram sends back on every update.
pub async fn set_webhook(infra: &Infra, token: &str, webhook_url: &str, secret: &str) -> Result<Value> {
    let body = json!({"url": webhook_url, "secret_token": secret,
                      "allowed_updates": ["message", "edited_message"]});
    let req = http().post(url(infra, token, "setWebhook")).timeout(infra.settings.providers.timeout).json(&body);
    send_json(SERVICE, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_message_is_parsed() {
        let u = json!({"update_id": 10, "message": {"message_id": 7, "date": 1,
            "from": {"id": 42, "is_bot": false, "first_name": "Ana", "last_name": "Soto", "username": "anita"},
            "chat": {"id": 42, "type": "private"}, "text": " hola "}});
        let Some(Update::Message { update_id, message }) = parse_update(&u) else { panic!("a message") };
        assert_eq!(update_id, 10);
        assert_eq!(message.channel_user_id, "42");
        assert_eq!(message.channel_message_id, "42:7");
        assert_eq!(message.text.as_deref(), Some("hola"));
        assert_eq!(message.display_name.as_deref(), Some("Ana Soto"));
        assert_eq!(message.channel_username.as_deref(), Some("anita"));
    }

    #[test]
    fn media_edits_and_other_updates() {
        let photo = json!({"update_id": 11, "message": {"message_id": 8, "chat": {"id": 42}, "from": {"id": 42},
            "photo": [{"file_id": "s", "file_size": 10}, {"file_id": "b", "file_size": 900}], "caption": "esta"}});
        let Some(Update::Message { message, .. }) = parse_update(&photo) else { panic!("a message") };
        assert_eq!(message.attachments[0]["file_id"], "b");
        assert_eq!(message.text.as_deref(), Some("esta"));
        let edit = json!({"update_id": 12, "edited_message": {"message_id": 8, "edit_date": 99, "chat": {"id": 42},
            "text": "otra"}});
        let Some(Update::Message { message, .. }) = parse_update(&edit) else { panic!("an edit") };
        assert_eq!(message.channel_message_id, "42:8:e99");
        assert_eq!(
            parse_update(&json!({"update_id": 13, "my_chat_member": {}})),
            Some(Update::Ignored { update_id: Some(13) })
        );
        assert_eq!(parse_update(&json!([1, 2])), None);
    }
}
