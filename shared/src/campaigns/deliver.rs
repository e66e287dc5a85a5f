//! Where a campaign step reaches the lead: the two seams the channel sender and the voice service
//! plug into. Each returns the step's result as JSON (`{"status": "sent" | "failed", …}`), which the
//! step runner records in its log.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use serde_json::{Value, json};

use crate::channels::sender::{self, Outbound};
use crate::channels::whatsapp::TemplateMessage;
use crate::ctx::Ctx;
use crate::entities::leads;
use crate::error::Result;
use crate::{Infra, events, jobs, voice};

/// What a step sends, and on whose behalf.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub campaign_id: i64,
    pub step_id: i64,
    pub step_number: i32,
    /// The step's channel, or else the campaign's (recorded; the message goes out on the lead's
    /// last written channel, where the lead can answer).
    pub channel: &'a str,
}

/// Sends `text` to the lead through the channel sender, on the lead's last written channel
/// (webchat: recorded for the dashboard and published as a live `new_message`), idempotently per
/// (campaign, step, lead). `template` (from the step's message template) is what WhatsApp gets
/// outside the 24-hour window; without one the send fails there as `outside_24h_window`. A
/// provider's permanent refusal (`outside_24h_window`, a blocked bot, a
/// channel without credentials) is the step's failure, in its log; a transient one is the job's
/// error, retried with backoff (the retry finds the message recorded before and sends it once).
pub async fn send_text(
    infra: &Infra,
    lead: &leads::Model,
    text: &str,
    template: Option<TemplateMessage>,
    origin: Origin<'_>,
    holder: &str,
) -> Result<Value> {
    let out = Outbound {
        text: text.to_string(),
        kind: "campaign".into(),
        key: Some(format!("campaign:{}:step:{}:lead:{}", origin.campaign_id, origin.step_id, lead.id)),
        template,
    };
    let delivery = match sender::send_to_lead(infra, lead.broker_id, lead.id, out, holder).await {
        Ok(d) => d,
        Err(e) if jobs::is_permanent(&e) => {
            return Ok(json!({"status": "failed", "error": e.code(), "detail": e.detail()}));
        }
        Err(e) => return Err(e),
    };
    let mut am = lead.clone().into_active_model();
    am.last_contacted = Set(Some(Utc::now()));
    am.update(&infra.db).await?;
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        lead.broker_id,
        "new_message",
        json!({"lead_id": lead.id, "message_id": delivery.message_id,
               "message": text.chars().take(300).collect::<String>(), "direction": "out",
               "provider": delivery.provider, "campaign_id": origin.campaign_id,
               "campaign_channel": origin.channel}),
    )
    .await;
    Ok(json!({"status": "sent", "channel": delivery.provider, "message_id": delivery.message_id, "message": text,
              "delivery_status": delivery.status, "provider_message_id": delivery.provider_message_id}))
}

/// Places the step's call through the voice service (`voice_call` job, VAPI). A call that cannot
/// be placed — voice not configured, no callable phone, the lead opted out, five calls already
/// active — is the step's failure with the service's code (`voice_not_configured`, …).
pub async fn place_call(infra: &Infra, lead: &leads::Model, origin: Origin<'_>) -> Result<Value> {
    let ctx = Ctx::broker_system(lead.broker_id);
    match voice::place_call(infra, &ctx, lead.id, Some(origin.campaign_id), None).await {
        Ok(call) => Ok(json!({"status": "sent", "channel": "call", "voice_call_id": call.id})),
        Err(e) if e.status() < 500 => Ok(json!({"status": "failed", "error": e.code(), "detail": e.detail()})),
        Err(e) => Err(e),
    }
}
