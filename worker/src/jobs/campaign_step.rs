//! `campaign_step`: one step of a campaign for one lead (see `shared::campaigns::runner`).

use chrono::Utc;
use shared::Infra;
use shared::campaigns::runner;
use shared::jobs::campaign_step::CampaignStep;

use crate::queue::JobCtx;

#[tracing::instrument(skip_all, fields(queue = ctx.queue, task_id = %ctx.task_id, campaign_id = job.campaign_id, lead_id = job.lead_id))]
pub async fn run(infra: Infra, job: CampaignStep, ctx: JobCtx) -> shared::Result<()> {
    let holder = format!("{}/{}", ctx.worker, ctx.task_id);
    let outcome = runner::run(&infra, &job, &holder, Utc::now()).await?;
    tracing::info!(step_id = job.step_id, outcome = ?outcome, "campaign step");
    Ok(())
}
