//! `embedding`: chunk and embed one knowledge-base entry.

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Embedding {
    pub broker_id: i64,
    pub entry_id: i64,
    /// The entry's content version when the job was enqueued: a job for an older version (the entry
    /// was edited since) does nothing, since a newer job embeds the current text.
    pub version: i64,
}

impl Job for Embedding {
    const QUEUE: &'static str = "embedding";

    fn broker_id(&self) -> Option<i64> {
        Some(self.broker_id)
    }
}
