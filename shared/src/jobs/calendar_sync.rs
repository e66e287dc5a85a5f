//! `calendar_sync`: mirror one appointment into the broker's Google Calendar (create, update or
//! delete its event).

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarAction {
    /// Create the event, or update it when it exists.
    Upsert,
    /// Delete the event (the appointment was cancelled or deleted).
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarSync {
    pub broker_id: i64,
    pub appointment_id: i64,
    pub action: CalendarAction,
}

impl Job for CalendarSync {
    const QUEUE: &'static str = "calendar_sync";

    fn broker_id(&self) -> Option<i64> {
        Some(self.broker_id)
    }
}
