//! `notification`: appointment reminders, and the timeouts of leads left in human mode.

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
        Notification::HumanModeTimeout { broker_id, lead_id, stage } => {
            let holder = format!("{}/{}", ctx.worker, ctx.task_id);
            let outcome =
                shared::conversations::run_timeout(&infra, broker_id, lead_id, stage, &holder, Utc::now()).await?;
            tracing::info!(lead_id, stage = stage.as_str(), outcome = ?outcome, "human-mode timeout");
        }
    }
    Ok(())
}
