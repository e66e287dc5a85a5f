//! The VAPI client: `POST {VAPI_BASE_URL}/call` places an outbound phone call with an assistant
//! (bearer API key; answers `{"id": …, "status": "queued", …}`). Through the `vapi` circuit breaker,
//! with the providers' time-out; a 4xx other than 408/429 is permanent (SPEC §15).

use serde_json::{Value, json};

use crate::Infra;
use crate::error::{Error, Result};
use crate::integrations::{breaker, http, send_json};

pub const SERVICE: &str = "vapi";

/// What one outbound call is placed with.
#[derive(Clone, Debug)]
pub struct Outbound<'a> {
    pub api_key: &'a str,
    pub assistant_id: &'a str,
    pub phone_number_id: &'a str,
    /// E.164.
    pub customer_number: &'a str,
    pub customer_name: Option<&'a str>,
    /// Where VAPI sends this call's server messages (`None`: the assistant's own server URL).
    pub server_url: Option<String>,
    pub first_message: Option<String>,
    /// Our ids, echoed back in every server message as `call.metadata`.
    pub metadata: Value,
}

/// The request body of `POST /call`.
pub fn call_body(o: &Outbound<'_>) -> Value {
    let mut customer = json!({"number": o.customer_number, "numberE164CheckEnabled": true});
    if let Some(name) = o.customer_name {
        customer["name"] = json!(name);
    }
    let mut overrides = serde_json::Map::new();
    if let Some(url) = &o.server_url {
        overrides.insert("server".into(), json!({"url": url}));
    }
    if let Some(first) = &o.first_message {
        overrides.insert("firstMessage".into(), json!(first));
    }
    overrides.insert("metadata".into(), o.metadata.clone());
    json!({
        "assistantId": o.assistant_id,
        "phoneNumberId": o.phone_number_id,
        "customer": customer,
        "assistantOverrides": Value::Object(overrides),
        "metadata": o.metadata,
    })
}

/// Places the call; returns VAPI's call object (its `id` is the external call id).
pub async fn create_call(infra: &Infra, o: &Outbound<'_>) -> Result<Value> {
    let url = format!("{}/call", infra.settings.providers.vapi_base_url);
    let req = http().post(url).bearer_auth(o.api_key).timeout(infra.settings.providers.timeout).json(&call_body(o));
    let answer = breaker::VAPI.call(infra, || send_json(SERVICE, req)).await?;
    if answer.get("id").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(Error::upstream_transient(SERVICE, Some(200), "VAPI answered without a call id"));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_body_carries_our_ids_and_the_webhook() {
        let body = call_body(&Outbound {
            api_key: "k",
            assistant_id: "asst_1",
            phone_number_id: "pn_1",
            customer_number: "+56912345678",
            customer_name: Some("Ana"),
            server_url: Some("https://api.test/api/v1/calls/webhook".into()),
            first_message: None,
            metadata: json!({"call_id": 7, "broker_id": 1, "lead_id": 3}),
        });
        assert_eq!(body["assistantId"], "asst_1");
        assert_eq!(body["phoneNumberId"], "pn_1");
        assert_eq!(body["customer"]["number"], "+56912345678");
        assert_eq!(body["assistantOverrides"]["server"]["url"], "https://api.test/api/v1/calls/webhook");
        assert_eq!(body["metadata"]["call_id"], 7);
        assert!(body.to_string().find("\"k\"").is_none(), "the key never goes in the body");
    }
}
