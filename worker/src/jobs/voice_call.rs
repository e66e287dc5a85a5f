//! `voice_call`: places one stored call at VAPI (at most once: the job's idempotency key). A call
//! that can never be placed (a permanent failure, or the last attempt) is marked `failed`, so it
//! stops counting against the broker's active calls.

use shared::Infra;
use shared::jobs::voice_call::VoiceCall;
use shared::voice::service::{self, Dialed};

use crate::queue::JobCtx;

#[tracing::instrument(skip_all, fields(broker_id = job.broker_id, call_id = job.call_id))]
pub async fn run(infra: Infra, job: VoiceCall, ctx: JobCtx) -> shared::Result<()> {
    let holder = format!("{}/{}", ctx.worker, ctx.task_id);
    match service::dial(&infra, &job, &holder).await {
        Ok(Dialed::Placed { external_call_id }) => {
            tracing::debug!(%external_call_id, "call placed");
            Ok(())
        }
        Ok(Dialed::Skipped(why)) => {
            tracing::debug!(why, "call not placed");
            Ok(())
        }
        Err(e) => {
            if shared::jobs::is_permanent(&e) || ctx.attempt >= ctx.max_attempts {
                service::fail(&infra, job.call_id, &format!("dial_failed: {}", e.code())).await?;
            }
            Err(e)
        }
    }
}
