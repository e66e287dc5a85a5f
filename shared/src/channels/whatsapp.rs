//! The WhatsApp Cloud API: webhook payloads (messages and status callbacks) in, Graph API
//! `/{phone_number_id}/messages` out (text, approved templates, read receipts).

use serde_json::{Value, json};

use super::config::WhatsAppCreds;
use super::inbound::InboundMessage;
use crate::Infra;
use crate::error::Result;
use crate::integrations::{breaker, http, send_json};

const SERVICE: &str = "whatsapp";

/// One thing a webhook delivery reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A message from a person to the number `phone_number_id`.
    Message { phone_number_id: String, message: InboundMessage },
    /// What happened to a message we sent: `sent`, `delivered`, `read` or `failed` (with errors).
    Status { phone_number_id: String, wamid: String, status: String, errors: Option<Value>, timestamp: Option<String> },
}

/// Whether `X-Hub-Signature-256` (`sha256=<hex>`) is the HMAC-SHA256 of the raw body under the app
/// secret (compared in constant time).
pub fn signature_ok(app_secret: &str, raw_body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.map(str::trim).and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let Ok(given) = hex::decode(hex_sig) else { return false };
    super::secrets_match(&given, &super::hmac_sha256(app_secret.as_bytes(), raw_body))
}

fn s(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The text a person sent: text body, quick-reply button text, interactive reply title, or a
/// media caption.
fn text_of(m: &Value) -> Option<String> {
    let t = match m.get("type").and_then(Value::as_str)? {
        "text" => s(m.pointer("/text/body")),
        "button" => s(m.pointer("/button/text")).or_else(|| s(m.pointer("/button/payload"))),
        "interactive" => {
            s(m.pointer("/interactive/button_reply/title")).or_else(|| s(m.pointer("/interactive/list_reply/title")))
        }
        kind @ ("image" | "video" | "document" | "audio" | "sticker") => s(m.pointer(&format!("/{kind}/caption"))),
        _ => None,
    };
    t.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

fn attachments(m: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for kind in ["image", "video", "document", "audio", "sticker"] {
        if let Some(f) = m.get(kind).filter(|v| v.is_object()) {
            out.push(json!({"type": kind, "id": f.get("id"), "mime_type": f.get("mime_type"),
                            "sha256": f.get("sha256"), "caption": f.get("caption")}));
        }
    }
    for kind in ["location", "contacts"] {
        if let Some(v) = m.get(kind) {
            out.push(json!({"type": kind, kind: v}));
        }
    }
    out
}

/// Every message and status in a delivery (an `entry[].changes[].value` may carry several).
pub fn parse(body: &Value) -> Vec<Event> {
    let mut out = Vec::new();
    for entry in body.get("entry").and_then(Value::as_array).into_iter().flatten() {
        for change in entry.get("changes").and_then(Value::as_array).into_iter().flatten() {
            let Some(value) = change.get("value") else { continue };
            let Some(phone_number_id) = s(value.pointer("/metadata/phone_number_id")) else { continue };
            let contacts = value.get("contacts").and_then(Value::as_array);
            for m in value.get("messages").and_then(Value::as_array).into_iter().flatten() {
                let (Some(from), Some(wamid)) = (s(m.get("from")), s(m.get("id"))) else { continue };
                let kind = m.get("type").and_then(Value::as_str).unwrap_or("unknown");
                if matches!(kind, "reaction" | "system" | "unsupported" | "request_welcome") {
                    continue;
                }
                let name = contacts
                    .and_then(|c| c.iter().find(|c| s(c.get("wa_id")).as_deref() == Some(from.as_str())))
                    .and_then(|c| s(c.pointer("/profile/name")));
                let digits: String = from.chars().filter(char::is_ascii_digit).collect();
                out.push(Event::Message {
                    phone_number_id: phone_number_id.clone(),
                    message: InboundMessage {
                        provider: "whatsapp",
                        channel_user_id: digits.clone(),
                        channel_username: None,
                        display_name: name,
                        phone: (digits.len() >= 8 && digits.len() <= 15).then(|| format!("+{digits}")),
                        channel_message_id: wamid.clone(),
                        text: text_of(m),
                        attachments: attachments(m),
                        metadata: json!({"wamid": wamid, "phone_number_id": phone_number_id, "type": kind,
                                         "timestamp": m.get("timestamp")}),
                    },
                });
            }
            for st in value.get("statuses").and_then(Value::as_array).into_iter().flatten() {
                let (Some(wamid), Some(status)) = (s(st.get("id")), s(st.get("status"))) else { continue };
                out.push(Event::Status {
                    phone_number_id: phone_number_id.clone(),
                    wamid,
                    status,
                    errors: st.get("errors").cloned(),
                    timestamp: s(st.get("timestamp")),
                });
            }
        }
    }
    out
}

/// An approved template to send outside the 24-hour window.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateMessage {
    pub name: String,
    pub language: String,
    pub parameters: Vec<String>,
}

/// One Graph API `messages` call, through the WhatsApp circuit breaker.
async fn post(infra: &Infra, creds: &WhatsAppCreds, body: Value) -> Result<Value> {
    let url = format!(
        "{}/{}/messages",
        infra.settings.providers.whatsapp_api_base.trim_end_matches('/'),
        creds.phone_number_id
    );
    let req = http().post(url).bearer_auth(&creds.access_token).timeout(infra.settings.providers.timeout).json(&body);
    breaker::WHATSAPP.call(infra, || send_json(SERVICE, req)).await
}

fn wamid_of(resp: &Value) -> String {
    s(resp.pointer("/messages/0/id")).unwrap_or_default()
}

/// A free-text message (inside the 24-hour window); returns the `wamid`.
pub async fn send_text(infra: &Infra, creds: &WhatsAppCreds, to: &str, text: &str) -> Result<String> {
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                      "type": "text", "text": {"preview_url": false, "body": text}});
    Ok(wamid_of(&post(infra, creds, body).await?))
}

/// An approved template with its body parameters; returns the `wamid`.
pub async fn send_template(infra: &Infra, creds: &WhatsAppCreds, to: &str, t: &TemplateMessage) -> Result<String> {
    let mut template = json!({"name": t.name, "language": {"code": t.language}});
    if !t.parameters.is_empty() {
        let params: Vec<Value> = t.parameters.iter().map(|p| json!({"type": "text", "text": p})).collect();
        template["components"] = json!([{"type": "body", "parameters": params}]);
    }
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                      "type": "template", "template": template});
    Ok(wamid_of(&post(infra, creds, body).await?))
}

/// Marks a received message read (the blue ticks).
pub async fn mark_read(infra: &Infra, creds: &WhatsAppCreds, wamid: &str) -> Result<()> {
    post(infra, creds, json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid})).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(value: Value) -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages",
               "value": value}]}]})
    }

    #[test]
    fn text_buttons_interactive_and_media_are_read() {
        let body = delivery(json!({"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1065"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "56912345678"}],
        "messages": [
            {"from": "56912345678", "id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "hola"}},
            {"from": "56912345678", "id": "wamid.2", "type": "button", "button": {"payload": "P", "text": "Sí"}},
            {"from": "56912345678", "id": "wamid.3", "type": "interactive",
             "interactive": {"type": "list_reply", "list_reply": {"id": "l1", "title": "Ñuñoa"}}},
            {"from": "56912345678", "id": "wamid.4", "type": "image",
             "image": {"id": "m1", "mime_type": "image/jpeg", "sha256": "x"}},
            {"from": "56912345678", "id": "wamid.5", "type": "reaction", "reaction": {"emoji": "👍"}}
        ]}));
        let events = parse(&body);
        assert_eq!(events.len(), 4);
        let texts: Vec<Option<String>> = events
            .iter()
            .map(|e| match e {
                Event::Message { message, .. } => message.text.clone(),
                Event::Status { .. } => None,
            })
            .collect();
        assert_eq!(texts, vec![Some("hola".into()), Some("Sí".into()), Some("Ñuñoa".into()), None]);
        let Event::Message { message, phone_number_id } = &events[3] else { panic!() };
        assert_eq!(phone_number_id, "1065");
        assert_eq!(message.attachments[0]["id"], "m1");
        assert_eq!(message.phone.as_deref(), Some("+56912345678"));
        assert_eq!(message.display_name.as_deref(), Some("Ana"));
    }

    #[test]
    fn statuses_and_signatures() {
        let body = delivery(json!({"metadata": {"phone_number_id": "1065"}, "statuses": [
            {"id": "wamid.9", "status": "failed", "timestamp": "2", "recipient_id": "569",
             "errors": [{"code": 131047, "title": "Re-engagement message"}]}]}));
        let events = parse(&body);
        assert!(matches!(&events[0], Event::Status { status, errors: Some(_), .. } if status == "failed"));
        let raw = br#"{"a":1}"#;
        let sig = format!("sha256={}", hex::encode(crate::channels::hmac_sha256(b"appsecret", raw)));
        assert!(signature_ok("appsecret", raw, Some(&sig)));
        assert!(!signature_ok("other", raw, Some(&sig)));
        assert!(!signature_ok("appsecret", raw, None));
        assert!(!signature_ok("appsecret", raw, Some("sha256=zz")));
    }
}
