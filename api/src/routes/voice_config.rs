//! `/api/broker/voice/config`: the broker's voice configuration (reference §1.7): VAPI assistants,
//! phone number, first message and the broker's own VAPI credentials (write-only, shown as `***`).
//! ADMIN for its own broker; SUPERADMIN names `broker_id`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use shared::voice::config::{self, VoiceConfig, VoiceConfigPatch};

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

pub struct VoiceConfigApi;

#[derive(Object)]
pub struct VoiceConfigOut {
    pub broker_id: i64,
    /// `vapi`
    pub provider: String,
    /// Each credential the broker set (`api_key`, `webhook_secret`), as `***`.
    pub provider_credentials: Value,
    pub phone_number_id: Option<String>,
    pub assistant_id_default: Option<String>,
    /// Call purpose → assistant id.
    pub assistant_id_by_type: Value,
    /// The assistant's first words; `{{name}}`, `{{first_name}}` are the lead's.
    pub first_message_template: Option<String>,
    pub recording_enabled: bool,
    /// Calls can be placed now (this configuration plus the deployment's `VAPI_*` settings).
    pub ready: bool,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<VoiceConfig> for VoiceConfigOut {
    fn from(c: VoiceConfig) -> Self {
        VoiceConfigOut {
            broker_id: c.broker_id,
            provider: c.provider,
            provider_credentials: Value::Object(c.provider_credentials),
            phone_number_id: c.phone_number_id,
            assistant_id_default: c.assistant_id_default,
            assistant_id_by_type: Value::Object(c.assistant_id_by_type),
            first_message_template: c.first_message_template,
            recording_enabled: c.recording_enabled,
            ready: c.ready,
            updated_at: c.updated_at,
        }
    }
}

/// The broker's own VAPI credentials; `***` (as read) keeps the stored value, null or "" removes it.
#[derive(Object)]
pub struct VoiceCredentialsIn {
    pub api_key: MaybeUndefined<String>,
    pub webhook_secret: MaybeUndefined<String>,
}

#[derive(Object)]
pub struct VoiceConfigIn {
    pub provider_credentials: Option<VoiceCredentialsIn>,
    pub phone_number_id: MaybeUndefined<String>,
    pub assistant_id_default: MaybeUndefined<String>,
    /// Call purpose → assistant id (replaces the whole map).
    pub assistant_id_by_type: Option<BTreeMap<String, String>>,
    pub first_message_template: MaybeUndefined<String>,
    pub recording_enabled: Option<bool>,
}

#[OpenApi(tag = "ApiTags::BrokerConfig")]
impl VoiceConfigApi {
    /// The broker's voice configuration (ADMIN)
    #[oai(path = "/api/broker/voice/config", method = "get", operation_id = "voice_config_get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<VoiceConfigOut>> {
        Ok(Json(config::get(&state.infra, &auth, broker_id.0).await?.into()))
    }

    /// Change the broker's voice configuration (ADMIN)
    ///
    /// Fields left out keep their value; credentials are stored encrypted and never shown.
    #[oai(path = "/api/broker/voice/config", method = "put", operation_id = "voice_config_update")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        body: JsonBody<VoiceConfigIn>,
    ) -> ApiResult<Json<VoiceConfigOut>> {
        let b = body.0;
        let (api_key, webhook_secret) = match b.provider_credentials {
            Some(c) => (maybe(c.api_key), maybe(c.webhook_secret)),
            None => (None, None),
        };
        let patch = VoiceConfigPatch {
            api_key,
            webhook_secret,
            phone_number_id: maybe(b.phone_number_id),
            assistant_id_default: maybe(b.assistant_id_default),
            assistant_id_by_type: b.assistant_id_by_type,
            first_message_template: maybe(b.first_message_template),
            recording_enabled: b.recording_enabled,
        };
        Ok(Json(config::update(&state.infra, &auth, broker_id.0, patch).await?.into()))
    }
}
