//! `llm_reply` and `channel_send`: Sofía's answer to a stored channel message, and the delivery
//! of any other stored outbound message (a person's, a reminder), both through the channel sender.

use shared::Infra;
use shared::channels::{reply, sender};
use shared::jobs::channel_send::ChannelSend;
use shared::jobs::llm_reply::LlmReply;

use crate::queue::JobCtx;

#[tracing::instrument(skip_all, fields(queue = ctx.queue, task_id = %ctx.task_id, message_id = job.message_id))]
pub async fn run(infra: Infra, job: LlmReply, ctx: JobCtx) -> shared::Result<()> {
    let holder = format!("{}/{}", ctx.worker, ctx.task_id);
    match reply::answer(&infra, &job, &holder).await {
        Ok(outcome) => {
            tracing::info!(lead_id = job.lead_id, outcome = ?outcome, "channel message answered");
            Ok(())
        }
        Err(e) => {
            if ctx.gives_up_on(&e)
                && let Some(reply_id) = reply_row_id(&infra, &job).await
                && let Err(mark) = sender::mark_failed(&infra, reply_id, &e).await
            {
                tracing::warn!(error = %mark, "could not mark the reply failed");
            }
            Err(e)
        }
    }
}

async fn reply_row_id(infra: &Infra, job: &LlmReply) -> Option<i64> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    use shared::entities::chat_messages;
    chat_messages::Entity::find()
        .select_only()
        .column(chat_messages::Column::Id)
        .filter(chat_messages::Column::BrokerId.eq(job.broker_id))
        .filter(chat_messages::Column::ChannelMessageId.eq(job.effect_key()))
        .filter(chat_messages::Column::Direction.eq("out"))
        .into_tuple::<i64>()
        .one(&infra.db)
        .await
        .ok()
        .flatten()
}

#[tracing::instrument(skip_all, fields(queue = ctx.queue, task_id = %ctx.task_id, message_id = job.message_id))]
pub async fn run_send(infra: Infra, job: ChannelSend, ctx: JobCtx) -> shared::Result<()> {
    let holder = format!("{}/{}", ctx.worker, ctx.task_id);
    match sender::deliver(&infra, job.message_id, &holder).await {
        Ok(d) => {
            tracing::info!(lead_id = job.lead_id, provider = %d.provider, already = d.already_sent, "message delivered");
            Ok(())
        }
        Err(e) => {
            if ctx.gives_up_on(&e)
                && let Err(mark) = sender::mark_failed(&infra, job.message_id, &e).await
            {
                tracing::warn!(error = %mark, "could not mark the message failed");
            }
            Err(e)
        }
    }
}
