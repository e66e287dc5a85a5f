//! `channel_send`: deliver one stored outbound `chat_messages` row (a person's message, a
//! reminder, a campaign message) through its channel. Sent under the idempotency key
//! `send:{message_id}`, the same key every other path uses for that row.

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSend {
    pub broker_id: i64,
    pub lead_id: i64,
    /// The outbound `chat_messages` row.
    pub message_id: i64,
}

impl Job for ChannelSend {
    const QUEUE: &'static str = "channel_send";

    fn broker_id(&self) -> Option<i64> {
        Some(self.broker_id)
    }

    fn lead_id(&self) -> Option<i64> {
        Some(self.lead_id)
    }
}
