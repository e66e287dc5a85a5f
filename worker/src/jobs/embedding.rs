//! `embedding`: chunks and embeds one knowledge-base entry (see `shared::knowledge::service`).

use shared::Infra;
use shared::jobs::embedding::Embedding;
use shared::knowledge::service;

use crate::queue::JobCtx;

/// Embeds the entry. When the failure will not be retried (a permanent error, or the last of the
/// queue's attempts), the entry is marked `failed` with the error before the job is dead-lettered,
/// so the client sees why instead of `pending` forever.
pub async fn run(infra: Infra, job: Embedding, ctx: JobCtx) -> shared::Result<()> {
    let err = match service::embed_entry(&infra, &job).await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if ctx.gives_up_on(&err)
        && let Err(e) = service::mark_failed(&infra, &job, &err).await
    {
        tracing::error!(error = %e, entry_id = job.entry_id, "could not mark an entry's embedding failed");
    }
    Err(err)
}
