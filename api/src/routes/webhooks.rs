//! `/webhooks/…` (SPEC §10): what Telegram and Meta call. Authentication, dedupe, storage and the
//! reply job are `shared::channels::webhooks`; these routes hand over the raw body (WhatsApp's
//! signature is over the exact bytes) and the provider's headers.
//!
//! Telegram: 401 on a wrong or missing secret token; WhatsApp: 403 on a wrong signature or
//! verify token; an unknown broker (or one without the channel) is 404; 200 only after every
//! message is stored and its job enqueued, else 5xx so the provider delivers again.

use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::Value;
use shared::channels::webhooks;

use super::ApiTags;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub struct WebhooksApi;

/// Webhook bodies above this size are refused (real ones are a few kilobytes).
const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

#[derive(ApiResponse)]
pub enum Challenge {
    /// The `hub.challenge`, echoed
    #[oai(status = 200)]
    Ok(PlainText<String>),
}

fn limit(body: &[u8]) -> ApiResult<()> {
    if body.len() > MAX_WEBHOOK_BYTES {
        return Err(ApiError(shared::Error::PayloadTooLarge("The webhook body is too large".into())));
    }
    Ok(())
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhooksApi {
    /// Telegram updates for the platform bot (`TELEGRAM_BOT_TOKEN`, serving `TELEGRAM_BROKER_ID`)
    #[oai(path = "/webhooks/telegram", method = "post", operation_id = "webhooks_telegram")]
    async fn telegram(
        &self,
        state: Data<&AppState>,
        /// The secret registered with `setWebhook`
        #[oai(name = "X-Telegram-Bot-Api-Secret-Token")]
        secret: Header<Option<String>>,
        body: Vec<u8>,
    ) -> ApiResult<Json<Value>> {
        limit(&body)?;
        Ok(Json(webhooks::telegram(&state.infra, None, secret.0.as_deref(), &body).await?))
    }

    /// Telegram updates for a broker's own bot
    #[oai(path = "/webhooks/chat/:broker_id/telegram", method = "post", operation_id = "webhooks_broker_telegram")]
    async fn broker_telegram(
        &self,
        state: Data<&AppState>,
        broker_id: Path<i64>,
        #[oai(name = "X-Telegram-Bot-Api-Secret-Token")] secret: Header<Option<String>>,
        body: Vec<u8>,
    ) -> ApiResult<Json<Value>> {
        limit(&body)?;
        Ok(Json(webhooks::telegram(&state.infra, Some(broker_id.0), secret.0.as_deref(), &body).await?))
    }

    /// WhatsApp subscription handshake for the platform number (`WHATSAPP_VERIFY_TOKEN`)
    #[oai(path = "/webhooks/whatsapp", method = "get", operation_id = "webhooks_whatsapp_verify")]
    async fn whatsapp_verify(
        &self,
        state: Data<&AppState>,
        #[oai(name = "hub.mode")] mode: Query<Option<String>>,
        #[oai(name = "hub.verify_token")] token: Query<Option<String>>,
        #[oai(name = "hub.challenge")] challenge: Query<Option<String>>,
    ) -> ApiResult<Challenge> {
        let c = webhooks::whatsapp_verify(
            &state.infra,
            None,
            mode.0.as_deref(),
            token.0.as_deref(),
            challenge.0.as_deref(),
        )
        .await?;
        Ok(Challenge::Ok(PlainText(c)))
    }

    /// WhatsApp messages and status callbacks; the broker is found by `phone_number_id`
    #[oai(path = "/webhooks/whatsapp", method = "post", operation_id = "webhooks_whatsapp")]
    async fn whatsapp(
        &self,
        state: Data<&AppState>,
        /// `sha256=<hex HMAC-SHA256 of the raw body with the app secret>`
        #[oai(name = "X-Hub-Signature-256")]
        signature: Header<Option<String>>,
        body: Vec<u8>,
    ) -> ApiResult<Json<Value>> {
        limit(&body)?;
        Ok(Json(webhooks::whatsapp(&state.infra, None, signature.0.as_deref(), &body).await?))
    }

    /// WhatsApp subscription handshake for a broker's own number
    #[oai(
        path = "/webhooks/chat/:broker_id/whatsapp",
        method = "get",
        operation_id = "webhooks_broker_whatsapp_verify"
    )]
    async fn broker_whatsapp_verify(
        &self,
        state: Data<&AppState>,
        broker_id: Path<i64>,
        #[oai(name = "hub.mode")] mode: Query<Option<String>>,
        #[oai(name = "hub.verify_token")] token: Query<Option<String>>,
        #[oai(name = "hub.challenge")] challenge: Query<Option<String>>,
    ) -> ApiResult<Challenge> {
        let c = webhooks::whatsapp_verify(
            &state.infra,
            Some(broker_id.0),
            mode.0.as_deref(),
            token.0.as_deref(),
            challenge.0.as_deref(),
        )
        .await?;
        Ok(Challenge::Ok(PlainText(c)))
    }

    /// WhatsApp messages and status callbacks for a broker's own number
    #[oai(path = "/webhooks/chat/:broker_id/whatsapp", method = "post", operation_id = "webhooks_broker_whatsapp")]
    async fn broker_whatsapp(
        &self,
        state: Data<&AppState>,
        broker_id: Path<i64>,
        #[oai(name = "X-Hub-Signature-256")] signature: Header<Option<String>>,
        body: Vec<u8>,
    ) -> ApiResult<Json<Value>> {
        limit(&body)?;
        Ok(Json(webhooks::whatsapp(&state.infra, Some(broker_id.0), signature.0.as_deref(), &body).await?))
    }
}
