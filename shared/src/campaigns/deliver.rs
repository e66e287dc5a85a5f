//! Where a campaign step reaches the lead: the two seams the channel sender and the voice service
//! plug into. Each returns the step's result as JSON (`{"status": "sent" | "failed", …}`), which the
//! step runner records in its log.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use serde_json::{Value, json};

use crate::entities::{chat_messages, leads};
use crate::error::Result;
use crate::{Infra, conversations, events};

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

/// Sends `text` to the lead: stored as an outbound `chat_messages` row on the lead's last written
/// channel (webchat when none), like a person's message (`conversations::human_message`), and
/// published as a live `new_message` event (the webchat widget and the dashboard show it). On
/// Telegram and WhatsApp the row is `pending` with `delivery: pending_channel_sender`, for the
/// channel sender to deliver.
pub async fn send_text(infra: &Infra, lead: &leads::Model, text: &str, origin: Origin<'_>) -> Result<Value> {
    let (provider, channel_user_id) = conversations::last_channel(&infra.db, lead.id).await?;
    let webchat = provider == "webchat";
    let status = if webchat { "sent" } else { "pending" };
    let message = chat_messages::ActiveModel {
        lead_id: Set(lead.id),
        broker_id: Set(lead.broker_id),
        provider: Set(provider.clone()),
        channel_user_id: Set(channel_user_id),
        message_text: Set(text.to_string()),
        direction: Set("out".into()),
        status: Set(status.into()),
        sender_type: Set("system".into()),
        ai_response_used: Set(false),
        provider_metadata: Set(Some(json!({
            "kind": "campaign", "campaign_id": origin.campaign_id, "step_id": origin.step_id,
            "step_number": origin.step_number, "campaign_channel": origin.channel,
            "delivery": if webchat { "widget" } else { "pending_channel_sender" },
        }))),
        ..Default::default()
    }
    .insert(&infra.db)
    .await?;
    let mut am = lead.clone().into_active_model();
    am.last_contacted = Set(Some(Utc::now()));
    am.update(&infra.db).await?;
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        lead.broker_id,
        "new_message",
        json!({"lead_id": lead.id, "message_id": message.id, "message": text.chars().take(300).collect::<String>(),
               "direction": "out", "provider": provider, "campaign_id": origin.campaign_id}),
    )
    .await;
    Ok(json!({"status": "sent", "channel": provider, "message_id": message.id, "message": text,
              "delivery_status": status}))
}

/// Places the step's call. Voice calls are not part of this build: the step fails with
/// `voice_not_configured` and no call is placed (the voice service replaces this body).
pub async fn place_call(_infra: &Infra, lead: &leads::Model, origin: Origin<'_>) -> Result<Value> {
    tracing::info!(
        lead_id = lead.id,
        campaign_id = origin.campaign_id,
        "campaign call not placed: voice not configured"
    );
    Ok(json!({"status": "failed", "error": "voice_not_configured",
              "detail": "Voice calls are not configured (VAPI); no call was placed"}))
}
