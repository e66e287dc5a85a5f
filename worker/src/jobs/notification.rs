//! `notification`: appointment reminders. Human-mode timeouts belong to the conversations feature;
//! until its handler lands they are acknowledged and logged.

use chrono::Utc;
use shared::Infra;
use shared::appointments::reminders::{self, Sent};
use shared::jobs::notification::Notification;

use crate::queue::JobCtx;

#[tracing::instrument(skip_all, fields(queue = ctx.queue, task_id = %ctx.task_id))]
pub async fn run(infra: Infra, job: Notification, ctx: JobCtx) -> shared::Result<()> {
    match job {
        Notification::AppointmentReminder { broker_id, appointment_id, hours_before, .. } => {
            let holder = format!("{}/{}", ctx.worker, ctx.task_id);
            match reminders::send(&infra, broker_id, appointment_id, hours_before, &holder, Utc::now()).await? {
                Sent::Recorded(message_id) => {
                    tracing::info!(appointment_id, hours_before, message_id, "reminder recorded")
                }
                other => tracing::debug!(appointment_id, hours_before, outcome = ?other, "reminder not sent"),
            }
        }
        Notification::HumanModeTimeout { broker_id, lead_id } => {
            tracing::debug!(broker_id, lead_id, "human-mode timeout has no handler yet; acknowledged");
        }
    }
    Ok(())
}
