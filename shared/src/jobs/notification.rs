//! `notification`: time-based messages and checks — appointment reminders through the lead's
//! channel, and human-mode timeouts.

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// Remind the lead of an appointment `hours_before` its start (24 or 1).
    AppointmentReminder { broker_id: i64, lead_id: i64, appointment_id: i64, hours_before: u32 },
    /// Check a lead left in human mode (reminder, admin alert, auto-release).
    HumanModeTimeout { broker_id: i64, lead_id: i64 },
}

impl Notification {
    /// A reminder is sent once per appointment and offset.
    pub fn effect_key(&self) -> Option<String> {
        match self {
            Notification::AppointmentReminder { appointment_id, hours_before, .. } => {
                Some(format!("reminder:{appointment_id}:{hours_before}h"))
            }
            Notification::HumanModeTimeout { .. } => None,
        }
    }
}

impl Job for Notification {
    const QUEUE: &'static str = "notification";

    fn broker_id(&self) -> Option<i64> {
        match self {
            Notification::AppointmentReminder { broker_id, .. } | Notification::HumanModeTimeout { broker_id, .. } => {
                Some(*broker_id)
            }
        }
    }

    fn lead_id(&self) -> Option<i64> {
        match self {
            Notification::AppointmentReminder { lead_id, .. } | Notification::HumanModeTimeout { lead_id, .. } => {
                Some(*lead_id)
            }
        }
    }
}
