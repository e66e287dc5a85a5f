//! `voice_report`: post-process an ended call (transcript, summary, extraction, scoring).
//! Idempotent through the call's `post_processed` flag.

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceReport {
    pub broker_id: i64,
    pub lead_id: i64,
    pub call_id: i64,
}

impl Job for VoiceReport {
    const QUEUE: &'static str = "voice_report";

    fn broker_id(&self) -> Option<i64> {
        Some(self.broker_id)
    }

    fn lead_id(&self) -> Option<i64> {
        Some(self.lead_id)
    }
}
