//! Clients of external providers. Each integration is a module with a reqwest client speaking the
//! provider's real wire format, pointed at a configurable base URL (tests use local fakes).
//!
//! - [`breaker`]: a circuit breaker per provider, shared by every process through Redis.
//! - [`google`]: OAuth and Calendar (events with Meet links, free/busy).
//! - [`llm`]: Gemini and OpenAI-compatible chat models behind one trait, with retries and fallback.
//! - [`http`] here: one `reqwest::Client` per process and the mapping of provider answers into
//!   [`Error::Upstream`] (permanent for 4xx other than 408/429, transient otherwise; SPEC §15).

pub mod breaker;
pub mod embeddings;
pub mod google;
pub mod llm;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};

/// The process' HTTP client (connection pools are per client, so share one). The per-call
/// time-out is set on each request from `Settings::providers.timeout`.
pub fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::install_crypto_provider();
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("corredor/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                // Building fails only when the TLS backend cannot initialise; a client without
                // custom settings is the best remaining option.
                tracing::error!(error = %e, "could not build the HTTP client; using defaults");
                reqwest::Client::new()
            })
    })
}

/// Longest provider body kept in an error (the rest is cut).
const MAX_ERROR_BODY: usize = 500;

/// Sends `req` and returns the JSON body of a 2xx answer; anything else becomes
/// [`Error::Upstream`] for `service`, classed as SPEC §15 says. A 2xx body that is not JSON is
/// returned as a JSON string.
pub async fn send_json(service: &'static str, req: reqwest::RequestBuilder) -> Result<Value> {
    let resp = req.send().await.map_err(|e| transport_error(service, e))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| transport_error(service, e))?;
    if status.is_success() {
        return Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)));
    }
    Err(status_error(service, status.as_u16(), &text))
}

/// The error for a non-2xx answer with body `body`.
pub fn status_error(service: &'static str, status: u16, body: &str) -> Error {
    let detail = format!("HTTP {status}: {}", truncate(body.trim(), MAX_ERROR_BODY));
    if is_retryable_status(status) {
        Error::upstream_transient(service, Some(status), detail)
    } else {
        Error::upstream_permanent(service, "upstream_rejected", Some(status), detail)
    }
}

/// 5xx, 408 (request time-out) and 429 (rate limited) may succeed later; other statuses will not.
pub fn is_retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// A failure before an answer arrived (time-out, refused connection, broken body): transient.
/// The URL is dropped from the message, since some providers (Telegram) carry the token in it.
pub fn transport_error(service: &'static str, err: reqwest::Error) -> Error {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    Error::upstream_transient(service, None, format!("{kind}: {}", err.without_url()))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_statuses_are_classed_as_spec_15_says() {
        for s in [500, 502, 503, 408, 429] {
            assert!(!crate::jobs::is_permanent(&status_error("x", s, "")), "{s} is transient");
        }
        for s in [400, 401, 403, 404, 422] {
            let e = status_error("x", s, "nope");
            assert!(crate::jobs::is_permanent(&e), "{s} is permanent");
            assert_eq!(e.status(), 502);
            assert!(e.to_string().contains(&format!("HTTP {s}: nope")));
        }
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        let body = "ñ".repeat(600);
        let e = status_error("x", 400, &body);
        assert_eq!(e.to_string().matches('ñ').count(), MAX_ERROR_BODY);
    }
}
