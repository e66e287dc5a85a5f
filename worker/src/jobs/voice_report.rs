//! `voice_report`: post-processes an ended call once (transcript, summary, extraction, lead rules).

use shared::Infra;
use shared::jobs::voice_report::VoiceReport;
use shared::voice::report::{self, Processed};

use crate::queue::JobCtx;

#[tracing::instrument(skip_all, fields(broker_id = job.broker_id, call_id = job.call_id))]
pub async fn run(infra: Infra, job: VoiceReport, _ctx: JobCtx) -> shared::Result<()> {
    match report::run(&infra, &job).await? {
        Processed::Done { fields, score_delta } => tracing::debug!(?fields, score_delta, "call post-processed"),
        Processed::Skipped(why) => tracing::debug!(why, "call report skipped"),
    }
    Ok(())
}
