//! `calendar_sync`: mirrors one appointment into its broker's Google Calendar.

use shared::Infra;
use shared::appointments::sync::{self, Synced};
use shared::jobs::calendar_sync::CalendarSync;

use crate::queue::JobCtx;

#[tracing::instrument(skip_all, fields(broker_id = job.broker_id, appointment_id = job.appointment_id))]
pub async fn run(infra: Infra, job: CalendarSync, ctx: JobCtx) -> shared::Result<()> {
    let holder = format!("{}/{}", ctx.worker, ctx.task_id);
    match sync::run(&infra, &job, &holder).await? {
        Synced::Skipped(why) => tracing::debug!(why, "calendar sync skipped"),
        Synced::Upserted(event) => tracing::debug!(event_id = %event.id, "calendar event upserted"),
        Synced::Deleted => tracing::debug!("calendar event deleted"),
    }
    Ok(())
}
