//! Channel credentials: the platform-wide bot and number (env, SPEC §1) and each broker's own
//! (`broker_chat_configs`). Secrets (`bot_token`, `webhook_secret`, `access_token`, `app_secret`,
//! `verify_token`) are stored encrypted with [`crate::crypto`] and read back as `"***"`; a `"***"`
//! sent back keeps the stored value, `null` or `""` clears it.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::ctx::Ctx;
use crate::error::{Error, FieldError, Result};
use crate::{Infra, audit};

/// What a secret reads as.
pub const MASK: &str = "***";

/// The providers a broker may enable.
pub const PROVIDERS: [&str; 3] = ["webchat", "telegram", "whatsapp"];

/// A Telegram bot.
#[derive(Clone)]
pub struct TelegramCreds {
    pub bot_token: String,
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for TelegramCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TelegramCreds(***)")
    }
}

/// A WhatsApp Cloud API number.
#[derive(Clone)]
pub struct WhatsAppCreds {
    pub phone_number_id: String,
    pub access_token: String,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
}

impl std::fmt::Debug for WhatsAppCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WhatsAppCreds({}, ***)", self.phone_number_id)
    }
}

/// One broker's stored configuration, secrets decrypted.
#[derive(Clone, Debug, Default)]
struct Stored {
    enabled: Vec<String>,
    default_provider: String,
    telegram: Map<String, Value>,
    whatsapp: Map<String, Value>,
    webhook_configs: Option<Value>,
    updated_at: Option<DateTime<Utc>>,
}

const SECRETS: [&str; 5] = ["bot_token", "webhook_secret", "access_token", "app_secret", "verify_token"];

fn open(infra: &Infra, section: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(Value::Object(m)) = section else { return out };
    for (k, v) in m {
        let Some(s) = v.as_str() else { continue };
        if SECRETS.contains(&k.as_str()) {
            match infra.cipher.decrypt(s) {
                Some(plain) => {
                    out.insert(k.clone(), Value::String(plain));
                }
                None => tracing::warn!(field = %k, "a stored channel secret does not decrypt; treated as unset"),
            }
        } else {
            out.insert(k.clone(), Value::String(s.to_string()));
        }
    }
    out
}

fn seal(infra: &Infra, section: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (k, v) in section {
        if let Some(s) = v.as_str() {
            let stored = if SECRETS.contains(&k.as_str()) { infra.cipher.encrypt(s) } else { s.to_string() };
            out.insert(k.clone(), Value::String(stored));
        }
    }
    Value::Object(out)
}

fn text(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

async fn load(infra: &Infra, db: &impl ConnectionTrait, broker_id: i64) -> Result<Option<Stored>> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT enabled_providers, default_provider, provider_configs, webhook_configs, updated_at \
             FROM broker_chat_configs WHERE broker_id = $1",
            [broker_id.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let enabled: Value = row.try_get("", "enabled_providers")?;
    let configs: Value = row.try_get("", "provider_configs")?;
    Ok(Some(Stored {
        enabled: enabled
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        default_provider: row.try_get("", "default_provider")?,
        telegram: open(infra, configs.get("telegram")),
        whatsapp: open(infra, configs.get("whatsapp")),
        webhook_configs: row.try_get("", "webhook_configs")?,
        updated_at: Some(row.try_get("", "updated_at")?),
    }))
}

fn secret_of(s: &Option<secrecy::SecretString>) -> Option<String> {
    s.as_ref().map(|v| v.expose_secret().to_string()).filter(|v| !v.is_empty())
}

/// The platform-wide bot (`TELEGRAM_BOT_TOKEN`) and the broker it serves (`TELEGRAM_BROKER_ID`).
pub fn platform_telegram(infra: &Infra) -> Option<(Option<i64>, TelegramCreds)> {
    let p = &infra.settings.providers;
    let bot_token = secret_of(&p.telegram_bot_token)?;
    Some((p.telegram_broker_id, TelegramCreds { bot_token, webhook_secret: secret_of(&p.telegram_webhook_secret) }))
}

/// The platform-wide number (`WHATSAPP_*`) and the broker it serves.
pub fn platform_whatsapp(infra: &Infra) -> Option<(Option<i64>, WhatsAppCreds)> {
    let p = &infra.settings.providers;
    let phone_number_id = p.whatsapp_phone_number_id.clone().filter(|s| !s.is_empty())?;
    Some((
        p.whatsapp_broker_id,
        WhatsAppCreds {
            phone_number_id,
            access_token: secret_of(&p.whatsapp_access_token).unwrap_or_default(),
            app_secret: secret_of(&p.whatsapp_app_secret),
            verify_token: secret_of(&p.whatsapp_verify_token),
        },
    ))
}

fn telegram_of(s: &Stored) -> Option<TelegramCreds> {
    if !s.enabled.iter().any(|p| p == "telegram") {
        return None;
    }
    Some(TelegramCreds {
        bot_token: text(&s.telegram, "bot_token")?,
        webhook_secret: text(&s.telegram, "webhook_secret"),
    })
}

fn whatsapp_of(s: &Stored) -> Option<WhatsAppCreds> {
    if !s.enabled.iter().any(|p| p == "whatsapp") {
        return None;
    }
    Some(WhatsAppCreds {
        phone_number_id: text(&s.whatsapp, "phone_number_id")?,
        access_token: text(&s.whatsapp, "access_token")?,
        app_secret: text(&s.whatsapp, "app_secret"),
        verify_token: text(&s.whatsapp, "verify_token"),
    })
}

/// The broker's own enabled bot (for `/webhooks/chat/{broker_id}/telegram`).
pub async fn broker_telegram(infra: &Infra, broker_id: i64) -> Result<Option<TelegramCreds>> {
    Ok(load(infra, &infra.db, broker_id).await?.as_ref().and_then(telegram_of))
}

/// The broker's own enabled WhatsApp number.
pub async fn broker_whatsapp(infra: &Infra, broker_id: i64) -> Result<Option<WhatsAppCreds>> {
    Ok(load(infra, &infra.db, broker_id).await?.as_ref().and_then(whatsapp_of))
}

/// The bot that sends to the broker's Telegram leads: its own, else the platform's when it
/// serves this broker.
pub async fn telegram_sender(infra: &Infra, broker_id: i64) -> Result<Option<TelegramCreds>> {
    if let Some(c) = broker_telegram(infra, broker_id).await? {
        return Ok(Some(c));
    }
    Ok(platform_telegram(infra).filter(|(b, _)| *b == Some(broker_id)).map(|(_, c)| c))
}

/// The number that sends to the broker's WhatsApp leads: its own, else the platform's.
pub async fn whatsapp_sender(infra: &Infra, broker_id: i64) -> Result<Option<WhatsAppCreds>> {
    if let Some(c) = broker_whatsapp(infra, broker_id).await? {
        return Ok(Some(c));
    }
    Ok(platform_whatsapp(infra).filter(|(b, c)| *b == Some(broker_id) && !c.access_token.is_empty()).map(|(_, c)| c))
}

/// The broker a WhatsApp `phone_number_id` belongs to, with its credentials: a broker's own
/// number first, else the platform's number and its broker.
pub async fn whatsapp_by_phone(infra: &Infra, phone_number_id: &str) -> Result<Option<(i64, WhatsAppCreds)>> {
    let rows = infra
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT broker_id FROM broker_chat_configs \
             WHERE provider_configs->'whatsapp'->>'phone_number_id' = $1 ORDER BY broker_id LIMIT 2",
            [phone_number_id.into()],
        ))
        .await?;
    for row in rows {
        let broker_id: i64 = row.try_get("", "broker_id")?;
        if let Some(c) = broker_whatsapp(infra, broker_id).await? {
            return Ok(Some((broker_id, c)));
        }
    }
    Ok(platform_whatsapp(infra)
        .filter(|(_, c)| c.phone_number_id == phone_number_id)
        .and_then(|(b, c)| b.map(|b| (b, c))))
}

// ---------------------------------------------------------------------------------------------
// The chat-config API.

/// A secret field of an update: absent = keep, `Some(None)` / `""` = clear, `"***"` = keep.
pub type Field = Option<Option<String>>;

#[derive(Clone, Debug, Default)]
pub struct TelegramInput {
    pub bot_token: Field,
    pub webhook_secret: Field,
}

#[derive(Clone, Debug, Default)]
pub struct WhatsAppInput {
    pub phone_number_id: Field,
    pub access_token: Field,
    pub app_secret: Field,
    pub verify_token: Field,
}

#[derive(Clone, Debug, Default)]
pub struct ChatConfigInput {
    pub enabled_providers: Option<Vec<String>>,
    pub default_provider: Option<String>,
    pub telegram: Option<TelegramInput>,
    pub whatsapp: Option<WhatsAppInput>,
}

/// What the API shows: secrets as `"***"` (null when unset), and the webhook URLs to give the
/// providers.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatConfigView {
    pub broker_id: i64,
    pub enabled_providers: Vec<String>,
    pub default_provider: String,
    pub provider_configs: Value,
    pub webhook_configs: Option<Value>,
    pub webhook_urls: Value,
    pub updated_at: Option<DateTime<Utc>>,
}

fn masked(m: &Map<String, Value>, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for f in fields {
        let v = match text(m, f) {
            Some(_) if SECRETS.contains(f) => json!(MASK),
            Some(v) => json!(v),
            None => Value::Null,
        };
        out.insert((*f).to_string(), v);
    }
    Value::Object(out)
}

fn view(infra: &Infra, broker_id: i64, s: Stored) -> ChatConfigView {
    let base = infra.settings.providers.public_base_url.clone().unwrap_or_default();
    let base = base.trim_end_matches('/');
    ChatConfigView {
        broker_id,
        enabled_providers: s.enabled.clone(),
        default_provider: if s.default_provider.is_empty() { "webchat".into() } else { s.default_provider.clone() },
        provider_configs: json!({
            "telegram": masked(&s.telegram, &["bot_token", "webhook_secret"]),
            "whatsapp": masked(&s.whatsapp, &["phone_number_id", "access_token", "app_secret", "verify_token"]),
        }),
        webhook_configs: s.webhook_configs.clone(),
        webhook_urls: json!({
            "telegram": format!("{base}/webhooks/chat/{broker_id}/telegram"),
            "whatsapp": format!("{base}/webhooks/chat/{broker_id}/whatsapp"),
        }),
        updated_at: s.updated_at,
    }
}

async fn broker_exists(infra: &Infra, broker_id: i64) -> Result<()> {
    let row = infra
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 AS one FROM brokers WHERE id = $1",
            [broker_id.into()],
        ))
        .await?;
    row.map(|_| ()).ok_or(Error::NotFound("Broker"))
}

/// The broker whose config `ctx` may manage: ADMIN its own (`requested` must be it or absent),
/// SUPERADMIN the one named.
pub fn target(ctx: &Ctx, requested: Option<i64>) -> Result<i64> {
    ctx.require_admin()?;
    match requested {
        Some(id) if ctx.is_superadmin() => Ok(id),
        Some(_) => Err(Error::forbidden("This action requires the SUPERADMIN role")),
        None => ctx.own_broker(),
    }
}

/// `GET …/chat-config`.
pub async fn get(infra: &Infra, ctx: &Ctx, broker_id: i64) -> Result<ChatConfigView> {
    ctx.require_admin()?;
    if !ctx.is_superadmin() && ctx.broker_id != Some(broker_id) {
        return Err(Error::NotFound("Broker"));
    }
    broker_exists(infra, broker_id).await?;
    let stored = load(infra, &infra.db, broker_id).await?.unwrap_or_else(|| Stored {
        enabled: vec!["webchat".into()],
        default_provider: "webchat".into(),
        ..Stored::default()
    });
    Ok(view(infra, broker_id, stored))
}

fn invalid(field: &str, msg: impl Into<String>) -> Error {
    Error::invalid("validation_error", FieldError::body(field, msg, "value_error"))
}

/// Applies one field of an update to a section.
fn apply(section: &mut Map<String, Value>, key: &str, field: &Field, check: impl Fn(&str) -> Result<()>) -> Result<()> {
    match field {
        None => Ok(()),
        Some(Some(v)) if v == MASK => Ok(()),
        Some(None) => {
            section.remove(key);
            Ok(())
        }
        Some(Some(v)) if v.trim().is_empty() => {
            section.remove(key);
            Ok(())
        }
        Some(Some(v)) => {
            let v = v.trim();
            check(v)?;
            section.insert(key.to_string(), json!(v));
            Ok(())
        }
    }
}

fn check_bot_token(v: &str) -> Result<()> {
    let ok = v.split_once(':').is_some_and(|(id, rest)| {
        !id.is_empty()
            && id.chars().all(|c| c.is_ascii_digit())
            && rest.len() >= 20
            && rest.len() <= 200
            && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if ok {
        Ok(())
    } else {
        Err(invalid("provider_configs.telegram.bot_token", "a Telegram bot token such as 123456:ABC-…"))
    }
}

/// Telegram's rule for `secret_token`: 1–256 characters of `A-Z a-z 0-9 _ -`.
fn check_webhook_secret(v: &str) -> Result<()> {
    if !v.is_empty() && v.len() <= 256 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err(invalid("provider_configs.telegram.webhook_secret", "1 to 256 characters of A-Z, a-z, 0-9, _ and -"))
    }
}

fn check_phone_number_id(v: &str) -> Result<()> {
    if !v.is_empty() && v.len() <= 32 && v.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid("provider_configs.whatsapp.phone_number_id", "the numeric id of the WhatsApp Business number"))
    }
}

fn check_opaque(field: &'static str) -> impl Fn(&str) -> Result<()> {
    move |v: &str| {
        if v.len() <= 1024 && !v.chars().any(char::is_control) {
            Ok(())
        } else {
            Err(invalid(field, "at most 1024 characters without control characters"))
        }
    }
}

/// `PUT …/chat-config`: validates, keeps `"***"` secrets, encrypts, and answers like `GET`.
pub async fn put(infra: &Infra, ctx: &Ctx, broker_id: i64, input: ChatConfigInput) -> Result<ChatConfigView> {
    ctx.require_admin()?;
    if !ctx.is_superadmin() && ctx.broker_id != Some(broker_id) {
        return Err(Error::NotFound("Broker"));
    }
    broker_exists(infra, broker_id).await?;
    let mut s = load(infra, &infra.db, broker_id).await?.unwrap_or_else(|| Stored {
        enabled: vec!["webchat".into()],
        default_provider: "webchat".into(),
        ..Stored::default()
    });
    if let Some(list) = &input.enabled_providers {
        let mut enabled: Vec<String> = Vec::new();
        for p in list {
            let p = p.trim().to_ascii_lowercase();
            if !PROVIDERS.contains(&p.as_str()) {
                return Err(invalid("enabled_providers", format!("providers are: {}", PROVIDERS.join(", "))));
            }
            if !enabled.contains(&p) {
                enabled.push(p);
            }
        }
        s.enabled = enabled;
    }
    if let Some(d) = &input.default_provider {
        let d = d.trim().to_ascii_lowercase();
        if !PROVIDERS.contains(&d.as_str()) {
            return Err(invalid("default_provider", format!("providers are: {}", PROVIDERS.join(", "))));
        }
        s.default_provider = d;
    }
    if let Some(t) = &input.telegram {
        apply(&mut s.telegram, "bot_token", &t.bot_token, check_bot_token)?;
        apply(&mut s.telegram, "webhook_secret", &t.webhook_secret, check_webhook_secret)?;
    }
    if let Some(w) = &input.whatsapp {
        apply(&mut s.whatsapp, "phone_number_id", &w.phone_number_id, check_phone_number_id)?;
        apply(
            &mut s.whatsapp,
            "access_token",
            &w.access_token,
            check_opaque("provider_configs.whatsapp.access_token"),
        )?;
        apply(&mut s.whatsapp, "app_secret", &w.app_secret, check_opaque("provider_configs.whatsapp.app_secret"))?;
        apply(
            &mut s.whatsapp,
            "verify_token",
            &w.verify_token,
            check_opaque("provider_configs.whatsapp.verify_token"),
        )?;
    }
    if s.enabled.iter().any(|p| p == "telegram") && text(&s.telegram, "bot_token").is_none() {
        return Err(invalid("provider_configs.telegram.bot_token", "enabling telegram needs the bot token"));
    }
    if s.enabled.iter().any(|p| p == "whatsapp")
        && (text(&s.whatsapp, "phone_number_id").is_none() || text(&s.whatsapp, "access_token").is_none())
    {
        return Err(invalid(
            "provider_configs.whatsapp",
            "enabling whatsapp needs phone_number_id and access_token (app_secret to accept webhooks)",
        ));
    }
    if s.default_provider != "webchat" && !s.enabled.contains(&s.default_provider) {
        return Err(invalid("default_provider", "the default provider must be enabled"));
    }
    if let Some(phone) = text(&s.whatsapp, "phone_number_id") {
        let taken = infra
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT broker_id FROM broker_chat_configs \
                 WHERE provider_configs->'whatsapp'->>'phone_number_id' = $1 AND broker_id <> $2 LIMIT 1",
                [phone.clone().into(), broker_id.into()],
            ))
            .await?;
        if taken.is_some() {
            return Err(Error::conflict("phone_number_id_taken", "This WhatsApp number belongs to another broker"));
        }
    }
    let configs = json!({"telegram": seal(infra, &s.telegram), "whatsapp": seal(infra, &s.whatsapp)});
    infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO broker_chat_configs (broker_id, enabled_providers, default_provider, provider_configs) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (broker_id) DO UPDATE SET enabled_providers = EXCLUDED.enabled_providers, \
               default_provider = EXCLUDED.default_provider, provider_configs = EXCLUDED.provider_configs, \
               updated_at = now()",
            [broker_id.into(), json!(s.enabled).into(), s.default_provider.clone().into(), configs.into()],
        ))
        .await?;
    audit::record(
        &infra.db,
        ctx,
        audit::Entry {
            action: "chat_config_updated",
            resource_type: "broker_chat_config",
            resource_id: Some(broker_id),
            broker_id: Some(broker_id),
            changes: json!({"enabled_providers": s.enabled, "default_provider": s.default_provider}),
        },
    )
    .await?;
    get(infra, ctx, broker_id).await
}

/// Registers the broker's bot webhook with Telegram (`setWebhook`): the URL (default: this
/// deployment's `/webhooks/chat/{broker_id}/telegram`) and the secret token Telegram will send
/// back in `X-Telegram-Bot-Api-Secret-Token` (generated and stored when the broker has none).
pub async fn register_telegram_webhook(infra: &Infra, ctx: &Ctx, broker_id: i64, url: Option<String>) -> Result<Value> {
    let current = get(infra, ctx, broker_id).await?;
    let url = match url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
        Some(u) => u,
        None => match &infra.settings.providers.public_base_url {
            Some(_) => current.webhook_urls["telegram"].as_str().unwrap_or_default().to_string(),
            None => return Err(invalid("webhook_url", "webhook_url is required when PUBLIC_BASE_URL is not set")),
        },
    };
    if !url.starts_with("https://") || url.len() > 2048 {
        return Err(invalid("webhook_url", "Telegram needs an https:// URL"));
    }
    let creds = broker_telegram(infra, broker_id)
        .await?
        .ok_or_else(|| Error::conflict("channel_not_configured", "Enable telegram with a bot token first"))?;
    let secret = match creds.webhook_secret.clone() {
        Some(s) => s,
        None => {
            let mut bytes = [0u8; 24];
            rand::rng().fill_bytes(&mut bytes);
            let s = hex::encode(bytes);
            let input = ChatConfigInput {
                telegram: Some(TelegramInput { webhook_secret: Some(Some(s.clone())), ..TelegramInput::default() }),
                ..ChatConfigInput::default()
            };
            put(infra, ctx, broker_id, input).await?;
            s
        }
    };
    let result = super::telegram::set_webhook(infra, &creds.bot_token, &url, &secret).await?;
    infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE broker_chat_configs SET webhook_configs = COALESCE(webhook_configs, '{}'::jsonb) || $2, \
             updated_at = now() WHERE broker_id = $1",
            [broker_id.into(), json!({"telegram": {"url": url, "registered_at": Utc::now()}}).into()],
        ))
        .await?;
    Ok(json!({"status": "ok", "message": "Webhook registered", "url": url, "result": result}))
}
