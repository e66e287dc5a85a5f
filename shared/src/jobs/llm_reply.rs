//! `llm_reply`: answer one stored inbound channel message (Telegram, WhatsApp) with Sofía's reply
//! on the same channel. The reply is sent under the idempotency key [`LlmReply::effect_key`].

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmReply {
    pub broker_id: i64,
    pub lead_id: i64,
    /// The inbound `chat_messages` row to answer (the latest of a burst; earlier ones are context).
    pub message_id: i64,
}

impl LlmReply {
    /// One reply per inbound message, whatever the number of deliveries.
    pub fn effect_key(&self) -> String {
        format!("reply:{}", self.message_id)
    }
}

impl Job for LlmReply {
    const QUEUE: &'static str = "llm_reply";

    fn broker_id(&self) -> Option<i64> {
        Some(self.broker_id)
    }

    fn lead_id(&self) -> Option<i64> {
        Some(self.lead_id)
    }
}
