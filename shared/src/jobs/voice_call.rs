//! `voice_call`: place one stored outbound call through VAPI. The call is placed under the
//! idempotency key [`VoiceCall::effect_key`], so a retry never dials twice.

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceCall {
    pub broker_id: i64,
    pub lead_id: i64,
    /// The `voice_calls` row (status `initiated`).
    pub call_id: i64,
}

impl VoiceCall {
    pub fn effect_key(&self) -> String {
        format!("voice_call:{}", self.call_id)
    }
}

impl Job for VoiceCall {
    const QUEUE: &'static str = "voice_call";

    fn broker_id(&self) -> Option<i64> {
        Some(self.broker_id)
    }

    fn lead_id(&self) -> Option<i64> {
        Some(self.lead_id)
    }
}
