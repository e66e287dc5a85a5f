//! `notification`: time-based messages and checks — appointment reminders through the lead's
//! channel, and human-mode timeouts.

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// Remind the lead of an appointment `hours_before` its start (24 or 1).
    AppointmentReminder { broker_id: i64, lead_id: i64, appointment_id: i64, hours_before: u32 },
    /// A lead left in human mode: remind its holder, alert the admins, or release it to Sofía.
    HumanModeTimeout { broker_id: i64, lead_id: i64, stage: TimeoutStage },
}

/// The steps of a human-mode timeout, in the order they fall due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutStage {
    Reminder,
    AdminAlert,
    AutoRelease,
}

impl TimeoutStage {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutStage::Reminder => "reminder",
            TimeoutStage::AdminAlert => "admin_alert",
            TimeoutStage::AutoRelease => "auto_release",
        }
    }
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
