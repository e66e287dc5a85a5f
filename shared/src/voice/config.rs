//! The broker's voice configuration (reference §1.7): VAPI assistants (a default and one per call
//! purpose), the phone number calls are placed from, the first message, and credentials of its own
//! VAPI account (`api_key`, `webhook_secret`), encrypted at rest and shown as `***`. What is not set
//! falls back to the deployment's `VAPI_*` settings.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::model::PURPOSES;
use crate::ctx::Ctx;
use crate::entities::voice_configs;
use crate::error::{Error, Result};
use crate::{Infra, audit};

/// Credential keys a broker may set; their values are encrypted and never shown.
pub const CREDENTIALS: [&str; 2] = ["api_key", "webhook_secret"];
/// What a masked secret looks like on read (and, sent back unchanged, keeps the stored value).
pub const MASK: &str = "***";
const MAX_ID: usize = 255;
const MAX_SECRET: usize = 500;
const MAX_FIRST_MESSAGE: usize = 1000;

/// The configuration as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VoiceConfig {
    pub broker_id: i64,
    pub provider: String,
    /// Each credential the broker set, as `***`.
    pub provider_credentials: Map<String, Value>,
    pub phone_number_id: Option<String>,
    pub assistant_id_default: Option<String>,
    pub assistant_id_by_type: Map<String, Value>,
    pub first_message_template: Option<String>,
    pub recording_enabled: bool,
    /// Whether calls can be placed now (this configuration plus the deployment's settings).
    pub ready: bool,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct VoiceConfigPatch {
    pub api_key: Option<Option<String>>,
    pub webhook_secret: Option<Option<String>>,
    pub phone_number_id: Option<Option<String>>,
    pub assistant_id_default: Option<Option<String>>,
    /// Replaces the whole map (purpose → assistant id).
    pub assistant_id_by_type: Option<BTreeMap<String, String>>,
    pub first_message_template: Option<Option<String>>,
    pub recording_enabled: Option<bool>,
}

/// What a call is placed with, resolved from the broker's configuration and the settings.
#[derive(Clone, Debug)]
pub struct Dial {
    pub api_key: String,
    pub phone_number_id: String,
    pub assistant_id: String,
    pub first_message_template: Option<String>,
}

pub async fn row(db: &impl ConnectionTrait, broker_id: i64) -> Result<Option<voice_configs::Model>> {
    Ok(voice_configs::Entity::find().filter(voice_configs::Column::BrokerId.eq(broker_id)).one(db).await?)
}

fn object(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// A decrypted credential of the broker's configuration.
fn credential(infra: &Infra, cfg: Option<&voice_configs::Model>, key: &str) -> Option<String> {
    let stored = cfg?.provider_credentials.get(key)?.as_str()?;
    infra.cipher.decrypt(stored).filter(|s| !s.is_empty())
}

fn nonempty(s: Option<&String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The account, number and assistant a call of `purpose` is placed with; 400 `voice_not_configured`
/// naming what is missing.
pub fn resolve(infra: &Infra, cfg: Option<&voice_configs::Model>, purpose: Option<&str>) -> Result<Dial> {
    let p = &infra.settings.providers;
    let api_key = credential(infra, cfg, "api_key")
        .or_else(|| p.vapi_api_key.as_ref().map(|k| k.expose_secret().to_string()).filter(|k| !k.is_empty()));
    let phone_number_id =
        cfg.and_then(|c| nonempty(c.phone_number_id.as_ref())).or_else(|| nonempty(p.vapi_phone_number_id.as_ref()));
    let by_type = cfg.and_then(|c| {
        purpose.and_then(|pu| c.assistant_id_by_type.get(pu)).and_then(Value::as_str).map(str::to_string)
    });
    let assistant_id = nonempty(by_type.as_ref())
        .or_else(|| cfg.and_then(|c| nonempty(c.assistant_id_default.as_ref())))
        .or_else(|| nonempty(p.vapi_assistant_id.as_ref()));
    let mut missing = Vec::new();
    if api_key.is_none() {
        missing.push("an API key (VAPI_API_KEY)");
    }
    if phone_number_id.is_none() {
        missing.push("a phone number id (VAPI_PHONE_NUMBER_ID)");
    }
    if assistant_id.is_none() {
        missing.push("an assistant id (VAPI_ASSISTANT_ID)");
    }
    match (api_key, phone_number_id, assistant_id) {
        (Some(api_key), Some(phone_number_id), Some(assistant_id)) => Ok(Dial {
            api_key,
            phone_number_id,
            assistant_id,
            first_message_template: cfg.and_then(|c| c.first_message_template.clone()).filter(|t| !t.trim().is_empty()),
        }),
        _ => Err(Error::bad_request(
            "voice_not_configured",
            format!("Voice calls are not configured: set {}", missing.join(", ")),
        )),
    }
}

/// The webhook secrets a message about a call of `broker_id` may be signed with: the deployment's
/// and the broker's own.
pub async fn webhook_secrets(infra: &Infra, broker_id: Option<i64>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(s) = infra.settings.providers.vapi_webhook_secret.as_ref() {
        let s = s.expose_secret();
        if !s.is_empty() {
            out.push(s.to_string());
        }
    }
    if let Some(b) = broker_id
        && let Some(s) = credential(infra, row(&infra.db, b).await?.as_ref(), "webhook_secret")
    {
        out.push(s);
    }
    Ok(out)
}

fn view(infra: &Infra, broker_id: i64, cfg: Option<&voice_configs::Model>) -> VoiceConfig {
    let mut creds = Map::new();
    if let Some(c) = cfg {
        for key in CREDENTIALS {
            if c.provider_credentials.get(key).and_then(Value::as_str).is_some_and(|v| !v.is_empty()) {
                creds.insert(key.into(), json!(MASK));
            }
        }
    }
    VoiceConfig {
        broker_id,
        provider: cfg.map_or_else(|| "vapi".to_string(), |c| c.provider.clone()),
        provider_credentials: creds,
        phone_number_id: cfg.and_then(|c| c.phone_number_id.clone()),
        assistant_id_default: cfg.and_then(|c| c.assistant_id_default.clone()),
        assistant_id_by_type: cfg.map(|c| object(&c.assistant_id_by_type)).unwrap_or_default(),
        first_message_template: cfg.and_then(|c| c.first_message_template.clone()),
        recording_enabled: cfg.is_none_or(|c| c.recording_enabled),
        ready: resolve(infra, cfg, None).is_ok(),
        updated_at: cfg.map(|c| c.updated_at),
    }
}

/// The broker's voice configuration (ADMIN; SUPERADMIN names `broker_id`).
pub async fn get(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<VoiceConfig> {
    ctx.require_admin()?;
    let b = ctx.target_broker(broker_id)?;
    ensure_broker(&infra.db, b).await?;
    Ok(view(infra, b, row(&infra.db, b).await?.as_ref()))
}

async fn ensure_broker(db: &impl ConnectionTrait, broker_id: i64) -> Result<()> {
    let found = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 AS one FROM brokers WHERE id = $1",
            [broker_id.into()],
        ))
        .await?;
    found.map(|_| ()).ok_or(Error::NotFound("Broker"))
}

fn changed_fields(summary: &[(&'static str, bool)]) -> Vec<&'static str> {
    summary.iter().filter(|(_, set)| *set).map(|(f, _)| *f).collect()
}

fn check_id(field: &str, v: Option<String>) -> Result<Option<String>> {
    let v = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(s) = &v
        && (s.len() > MAX_ID || s.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(Error::invalid_body(field, format!("{field} must be an id of at most {MAX_ID} characters")));
    }
    Ok(v)
}

fn check_secret(field: &str, v: &str) -> Result<()> {
    if v.len() > MAX_SECRET || v.chars().any(|c| c.is_control()) {
        return Err(Error::invalid_body(field, format!("{field} must have at most {MAX_SECRET} characters")));
    }
    Ok(())
}

/// Changes the broker's voice configuration (ADMIN; SUPERADMIN names `broker_id`).
pub async fn update(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>, patch: VoiceConfigPatch) -> Result<VoiceConfig> {
    ctx.require_admin()?;
    let b = ctx.target_broker(broker_id)?;
    ensure_broker(&infra.db, b).await?;
    let patch_summary = [
        ("api_key", patch.api_key.is_some()),
        ("webhook_secret", patch.webhook_secret.is_some()),
        ("phone_number_id", patch.phone_number_id.is_some()),
        ("assistant_id_default", patch.assistant_id_default.is_some()),
        ("assistant_id_by_type", patch.assistant_id_by_type.is_some()),
        ("first_message_template", patch.first_message_template.is_some()),
        ("recording_enabled", patch.recording_enabled.is_some()),
    ];
    let current = row(&infra.db, b).await?;
    let mut creds = current.as_ref().map(|c| object(&c.provider_credentials)).unwrap_or_default();
    for (key, change) in [("api_key", &patch.api_key), ("webhook_secret", &patch.webhook_secret)] {
        match change {
            None => {}
            // The masked value sent back unchanged keeps the stored secret.
            Some(Some(v)) if v == MASK => {}
            Some(Some(v)) if !v.trim().is_empty() => {
                check_secret(key, v)?;
                creds.insert(key.into(), json!(infra.cipher.encrypt(v.trim())));
            }
            Some(_) => {
                creds.remove(key);
            }
        }
    }
    let keep = |c: Option<&voice_configs::Model>, f: fn(&voice_configs::Model) -> Option<String>| c.and_then(f);
    let phone_number_id = match patch.phone_number_id {
        Some(v) => check_id("phone_number_id", v)?,
        None => keep(current.as_ref(), |c| c.phone_number_id.clone()),
    };
    let assistant_id_default = match patch.assistant_id_default {
        Some(v) => check_id("assistant_id_default", v)?,
        None => keep(current.as_ref(), |c| c.assistant_id_default.clone()),
    };
    let by_type = match patch.assistant_id_by_type {
        Some(map) => {
            let mut out = Map::new();
            for (purpose, id) in map {
                let p = purpose.trim().to_ascii_lowercase();
                if !PURPOSES.contains(&p.as_str()) {
                    return Err(Error::invalid_body(
                        "assistant_id_by_type",
                        format!("`{purpose}` is not a call purpose ({})", PURPOSES.join(", ")),
                    ));
                }
                if let Some(id) = check_id("assistant_id_by_type", Some(id))? {
                    out.insert(p, json!(id));
                }
            }
            Value::Object(out)
        }
        None => current.as_ref().map_or_else(|| json!({}), |c| c.assistant_id_by_type.clone()),
    };
    let first_message = match patch.first_message_template {
        Some(v) => {
            let v = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
            if v.as_ref().is_some_and(|s| s.chars().count() > MAX_FIRST_MESSAGE) {
                return Err(Error::invalid_body(
                    "first_message_template",
                    format!("first_message_template must be at most {MAX_FIRST_MESSAGE} characters"),
                ));
            }
            v
        }
        None => keep(current.as_ref(), |c| c.first_message_template.clone()),
    };
    let recording = patch.recording_enabled.unwrap_or_else(|| current.as_ref().is_none_or(|c| c.recording_enabled));
    infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO broker_voice_configs (broker_id, provider_credentials, phone_number_id, assistant_id_default, \
               assistant_id_by_type, first_message_template, recording_enabled) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (broker_id) DO UPDATE SET provider_credentials = EXCLUDED.provider_credentials, \
               phone_number_id = EXCLUDED.phone_number_id, assistant_id_default = EXCLUDED.assistant_id_default, \
               assistant_id_by_type = EXCLUDED.assistant_id_by_type, \
               first_message_template = EXCLUDED.first_message_template, \
               recording_enabled = EXCLUDED.recording_enabled, updated_at = now()",
            [
                b.into(),
                Value::Object(creds).into(),
                phone_number_id.into(),
                assistant_id_default.into(),
                by_type.into(),
                first_message.into(),
                recording.into(),
            ],
        ))
        .await?;
    let changed: Vec<&str> = changed_fields(&patch_summary);
    audit::record(
        &infra.db,
        ctx,
        audit::Entry {
            action: "voice_config_update",
            resource_type: "broker_voice_config",
            resource_id: None,
            broker_id: Some(b),
            changes: json!({"fields": changed}),
        },
    )
    .await?;
    Ok(view(infra, b, row(&infra.db, b).await?.as_ref()))
}
