//! Telegram and WhatsApp end to end (SPEC §1 "channel configuration", §10).
//!
//! - [`config`]: platform-wide (env) and per-broker channel credentials, secrets encrypted at rest
//!   and masked on read; the Telegram `setWebhook` registration.
//! - [`telegram`], [`whatsapp`]: the providers' wire formats — webhook payloads in, Bot API and
//!   Graph API calls out — and webhook authentication.
//! - [`inbound`]: what a webhook does with a message: find or create the sender's lead, store the
//!   message (`status = pending`), enqueue its `llm_reply` job 2 s later (bursts coalesce). A
//!   webhook answers 200 only once both happened. The stale-inbound sweeper lives here too.
//! - [`sender`]: the one way anything reaches a lead on a channel — Sofía's replies, people's
//!   messages, reminders, campaigns: [`sender::send_to_lead`] / [`sender::deliver`], idempotent
//!   through [`crate::effects`], with the WhatsApp 24-hour window.
//! - [`reply`]: the `llm_reply` job: run the turn for the stored message(s), deliver the reply.

pub mod config;
pub mod inbound;
pub mod reply;
pub mod sender;
pub mod telegram;
pub mod webhooks;
pub mod whatsapp;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The written channels with a sender.
pub const CHANNELS: [&str; 2] = ["telegram", "whatsapp"];

/// Constant-time equality of two secrets (lengths may leak, contents do not).
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Escapes text for Telegram's HTML parse mode (`<`, `>`, `&`; quotes for attribute safety).
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(secrets_match(b"abc", b"abc"));
        assert!(!secrets_match(b"abd", b"abc"));
        assert!(!secrets_match(b"ab", b"abc"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(html_escape("<b>UF 3.000 & más</b>"), "&lt;b&gt;UF 3.000 &amp; más&lt;/b&gt;");
    }
}
