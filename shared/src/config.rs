//! Settings: every environment variable of SPEC §1, read once into a typed struct.

use std::env;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

const DEV_SECRET_KEY: &str = "corredor-development-secret-key-change-me-0123456789";

/// The whole configuration of a Corredor process. Secrets are `SecretString` so they never reach logs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub host: String,
    pub port: u16,
    pub app_env: String,
    pub secret_key: SecretString,
    pub encryption_key: [u8; 32],
    pub jwt_expire_minutes: i64,
    pub allowed_origins: Vec<String>,
    pub superadmin_email: Option<String>,
    pub superadmin_password: Option<SecretString>,
    pub llm_provider: String,
    pub llm_fallback_provider: Option<String>,
    /// Reply length and sampling sent to remote LLMs when a request does not say (`LLM_MAX_TOKENS`,
    /// `LLM_TEMPERATURE`).
    pub llm_max_tokens: u32,
    pub llm_temperature: f32,
    /// Time-out of one LLM attempt (`LLM_TIMEOUT_MS`); when streaming, the longest wait for the
    /// answer to start and between two chunks of it.
    pub llm_timeout: std::time::Duration,
    /// Retries of the primary provider on transient errors (`LLM_RETRIES`; 2 = three attempts),
    /// waiting `llm_retry_backoff` (`LLM_RETRY_BACKOFF_MS`) before the first, doubling up to 8×.
    pub llm_retries: u32,
    pub llm_retry_backoff: std::time::Duration,
    pub embedding_provider: String,
    pub worker_concurrency: usize,
    /// First retry delay of a failed job; doubles per attempt up to `job_backoff_max`.
    pub job_backoff_base: std::time::Duration,
    pub job_backoff_max: std::time::Duration,
    pub log_format: String,
    pub trust_forwarded_for: bool,
    pub rate_limits: RateLimits,
    pub db_max_connections: u32,
    /// `hnsw.ef_search` of knowledge-base searches (`KB_EF_SEARCH`): candidates the HNSW scan keeps;
    /// higher finds more of the exact nearest entries, at more time per search.
    pub kb_ef_search: u32,
    /// External providers: base URLs (tests point them at local fakes) and platform credentials.
    pub providers: Providers,
    /// The dashboard's address, where OAuth callbacks send the browser back (`FRONTEND_URL`).
    pub frontend_url: String,
    /// Pause between the words of a replayed `chat/stream` answer (`CHAT_STREAM_DELAY_MS`, 15).
    pub chat_stream_delay: std::time::Duration,
    /// Reminder, admin alert and auto-release of a lead left in human mode
    /// (`HUMAN_MODE_REMINDER_MINUTES`, `HUMAN_MODE_ADMIN_ALERT_MINUTES`, `HUMAN_MODE_AUTO_RELEASE_MINUTES`).
    pub human_mode: crate::conversations::Timeouts,
    /// Today's LLM spend (USD) at which cost summaries raise `daily_alert` (`DAILY_COST_ALERT_USD`).
    pub daily_cost_alert_usd: f64,
    /// Business-time hours in which campaign messages and calls wait (`CAMPAIGN_QUIET_HOURS`, default
    /// `21-8`; `off`: none).
    pub campaign_quiet_hours: Option<crate::campaigns::model::QuietHours>,
}

/// Every external service's address and the platform-wide credentials (SPEC §1). A broker's own
/// channel credentials live in its chat config, not here.
#[derive(Clone, Debug)]
pub struct Providers {
    /// Public address of this deployment (`https://api.example.cl`), for webhook URLs handed to
    /// Telegram and VAPI. `PUBLIC_BASE_URL`; unset in development.
    pub public_base_url: Option<String>,
    pub gemini_api_key: Option<SecretString>,
    pub gemini_model: String,
    pub gemini_embedding_model: String,
    pub gemini_base_url: String,
    pub openai_api_key: Option<SecretString>,
    pub openai_model: String,
    pub openai_embedding_model: String,
    pub openai_base_url: String,
    pub telegram_api_base: String,
    pub telegram_bot_token: Option<SecretString>,
    pub telegram_webhook_secret: Option<SecretString>,
    pub telegram_broker_id: Option<i64>,
    pub whatsapp_api_base: String,
    pub whatsapp_verify_token: Option<SecretString>,
    pub whatsapp_app_secret: Option<SecretString>,
    pub whatsapp_access_token: Option<SecretString>,
    pub whatsapp_phone_number_id: Option<String>,
    pub whatsapp_broker_id: Option<i64>,
    pub vapi_base_url: String,
    pub vapi_api_key: Option<SecretString>,
    pub vapi_phone_number_id: Option<String>,
    pub vapi_assistant_id: Option<String>,
    pub vapi_webhook_secret: Option<SecretString>,
    pub google_api_base: String,
    pub google_oauth_base: String,
    pub google_client_id: Option<String>,
    pub google_client_secret: Option<SecretString>,
    pub google_redirect_uri: Option<String>,
    /// Time-out of one outbound HTTP call (`PROVIDER_TIMEOUT_MS`, default 15 s).
    pub timeout: std::time::Duration,
}

/// Request budgets enforced in Redis (SPEC §3). `enabled = false` when `RATE_LIMITS=off`.
#[derive(Clone, Debug)]
pub struct RateLimits {
    pub enabled: bool,
    pub login_per_minute: u32,
    pub register_per_hour: u32,
    pub api_per_minute: u32,
    pub webhook_per_10s: u32,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| env::var(k).ok())
    }

    /// Reads settings through `get`, so tests can build settings without touching the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let app_env = var("APP_ENV").unwrap_or_else(|| "development".into());
        let production = app_env == "production";

        let secret_key = match var("SECRET_KEY") {
            Some(k) if k.len() >= 32 => k,
            Some(_) if production => {
                return Err(config_error("SECRET_KEY must be at least 32 characters"));
            }
            Some(k) => k,
            None if production => return Err(config_error("SECRET_KEY is required in production")),
            None => DEV_SECRET_KEY.to_string(),
        };
        let encryption_key = match var("ENCRYPTION_KEY") {
            Some(hex_key) => parse_key(&hex_key)?,
            None if production => {
                return Err(config_error("ENCRYPTION_KEY is required in production"));
            }
            None => crate::crypto::derive_key(&secret_key),
        };
        let parse_num = |k: &str, default: u64| -> Result<u64> {
            match var(k) {
                Some(v) => v.parse().map_err(|_| config_error(&format!("{k} must be a whole number"))),
                None => Ok(default),
            }
        };
        let port = u16::try_from(parse_num("PORT", 8000)?).map_err(|_| config_error("PORT is out of range"))?;
        let truthy =
            |k: &str| var(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        let secret = |k: &str| var(k).map(SecretString::from);
        let base_url =
            |k: &str, default: &str| var(k).unwrap_or_else(|| default.into()).trim_end_matches('/').to_string();
        let id = |k: &str| -> Result<Option<i64>> {
            var(k).map(|v| v.parse().map_err(|_| config_error(&format!("{k} must be a whole number")))).transpose()
        };

        Ok(Self {
            database_url: var("DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/corredor".into()),
            redis_url: var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            redis_prefix: var("REDIS_PREFIX").unwrap_or_else(|| "corredor".into()),
            host: var("HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port,
            app_env,
            secret_key: SecretString::from(secret_key),
            encryption_key,
            jwt_expire_minutes: parse_num("JWT_EXPIRE_MINUTES", 60)?.clamp(1, 60 * 24 * 30) as i64,
            allowed_origins: var("ALLOWED_ORIGINS")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_else(|| {
                    ["http://localhost:5173", "http://localhost:3000", "http://127.0.0.1:5173", "http://127.0.0.1:3000"]
                        .map(String::from)
                        .to_vec()
                }),
            superadmin_email: var("SUPERADMIN_EMAIL"),
            superadmin_password: var("SUPERADMIN_PASSWORD").map(SecretString::from),
            llm_provider: var("LLM_PROVIDER").unwrap_or_else(|| "local".into()),
            llm_fallback_provider: var("LLM_FALLBACK_PROVIDER"),
            llm_max_tokens: parse_num("LLM_MAX_TOKENS", 1024)?.clamp(1, 65_536) as u32,
            llm_temperature: match var("LLM_TEMPERATURE") {
                Some(v) => v
                    .parse::<f32>()
                    .ok()
                    .filter(|t| (0.0..=2.0).contains(t))
                    .ok_or_else(|| config_error("LLM_TEMPERATURE must be a number from 0 to 2"))?,
                None => 0.7,
            },
            llm_timeout: std::time::Duration::from_millis(parse_num("LLM_TIMEOUT_MS", 20_000)?.clamp(100, 600_000)),
            llm_retries: parse_num("LLM_RETRIES", 2)?.min(10) as u32,
            llm_retry_backoff: std::time::Duration::from_millis(parse_num("LLM_RETRY_BACKOFF_MS", 500)?.min(60_000)),
            embedding_provider: var("EMBEDDING_PROVIDER").unwrap_or_else(|| "local".into()),
            worker_concurrency: parse_num("WORKER_CONCURRENCY", 8)?.clamp(1, 256) as usize,
            job_backoff_base: std::time::Duration::from_millis(parse_num("JOB_BACKOFF_BASE_MS", 60_000)?.max(10)),
            job_backoff_max: std::time::Duration::from_millis(parse_num("JOB_BACKOFF_MAX_MS", 480_000)?.max(10)),
            log_format: var("LOG_FORMAT").unwrap_or_else(|| "pretty".into()),
            trust_forwarded_for: truthy("TRUST_FORWARDED_FOR"),
            rate_limits: RateLimits {
                enabled: !var("RATE_LIMITS").is_some_and(|v| v.eq_ignore_ascii_case("off")),
                login_per_minute: parse_num("RATE_LIMIT_LOGIN_PER_MINUTE", 5)? as u32,
                register_per_hour: parse_num("RATE_LIMIT_REGISTER_PER_HOUR", 3)? as u32,
                api_per_minute: parse_num("RATE_LIMIT_API_PER_MINUTE", 600)? as u32,
                webhook_per_10s: parse_num("RATE_LIMIT_WEBHOOK_PER_10S", 20)? as u32,
            },
            db_max_connections: parse_num("DB_MAX_CONNECTIONS", 20)?.clamp(1, 500) as u32,
            kb_ef_search: parse_num("KB_EF_SEARCH", u64::from(crate::knowledge::repo::EF_SEARCH))?.clamp(10, 1000)
                as u32,
            providers: Providers {
                public_base_url: var("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_string()),
                gemini_api_key: secret("GEMINI_API_KEY"),
                gemini_model: var("GEMINI_MODEL").unwrap_or_else(|| "gemini-2.0-flash".into()),
                gemini_embedding_model: var("GEMINI_EMBEDDING_MODEL").unwrap_or_else(|| "text-embedding-004".into()),
                gemini_base_url: base_url("GEMINI_BASE_URL", "https://generativelanguage.googleapis.com"),
                openai_api_key: secret("OPENAI_API_KEY"),
                openai_model: var("OPENAI_MODEL").unwrap_or_else(|| "gpt-4o-mini".into()),
                openai_embedding_model: var("OPENAI_EMBEDDING_MODEL")
                    .unwrap_or_else(|| "text-embedding-3-small".into()),
                openai_base_url: base_url("OPENAI_BASE_URL", "https://api.openai.com/v1"),
                telegram_api_base: base_url("TELEGRAM_API_BASE", "https://api.telegram.org"),
                telegram_bot_token: secret("TELEGRAM_BOT_TOKEN"),
                telegram_webhook_secret: secret("TELEGRAM_WEBHOOK_SECRET"),
                telegram_broker_id: id("TELEGRAM_BROKER_ID")?,
                whatsapp_api_base: base_url("WHATSAPP_API_BASE", "https://graph.facebook.com/v21.0"),
                whatsapp_verify_token: secret("WHATSAPP_VERIFY_TOKEN"),
                whatsapp_app_secret: secret("WHATSAPP_APP_SECRET"),
                whatsapp_access_token: secret("WHATSAPP_ACCESS_TOKEN"),
                whatsapp_phone_number_id: var("WHATSAPP_PHONE_NUMBER_ID"),
                whatsapp_broker_id: id("WHATSAPP_BROKER_ID")?,
                vapi_base_url: base_url("VAPI_BASE_URL", "https://api.vapi.ai"),
                vapi_api_key: secret("VAPI_API_KEY"),
                vapi_phone_number_id: var("VAPI_PHONE_NUMBER_ID"),
                vapi_assistant_id: var("VAPI_ASSISTANT_ID"),
                vapi_webhook_secret: secret("VAPI_WEBHOOK_SECRET"),
                google_api_base: base_url("GOOGLE_API_BASE", "https://www.googleapis.com"),
                google_oauth_base: base_url("GOOGLE_OAUTH_BASE", "https://oauth2.googleapis.com"),
                google_client_id: var("GOOGLE_CLIENT_ID"),
                google_client_secret: secret("GOOGLE_CLIENT_SECRET"),
                google_redirect_uri: var("GOOGLE_REDIRECT_URI"),
                timeout: std::time::Duration::from_millis(
                    parse_num("PROVIDER_TIMEOUT_MS", 15_000)?.clamp(100, 300_000),
                ),
            },
            frontend_url: base_url("FRONTEND_URL", "http://localhost:5173"),
            chat_stream_delay: std::time::Duration::from_millis(parse_num("CHAT_STREAM_DELAY_MS", 15)?.min(1000)),
            human_mode: crate::conversations::timeouts_from(
                parse_num("HUMAN_MODE_REMINDER_MINUTES", 15)?,
                parse_num("HUMAN_MODE_ADMIN_ALERT_MINUTES", 30)?,
                parse_num("HUMAN_MODE_AUTO_RELEASE_MINUTES", 60)?,
            ),
            daily_cost_alert_usd: match var("DAILY_COST_ALERT_USD") {
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| config_error("DAILY_COST_ALERT_USD must be a non-negative number"))?,
                None => 10.0,
            },
            campaign_quiet_hours: match var("CAMPAIGN_QUIET_HOURS") {
                None => Some(crate::campaigns::model::QuietHours::default()),
                Some(v) => crate::campaigns::model::QuietHours::parse(&v)
                    .ok_or_else(|| config_error("CAMPAIGN_QUIET_HOURS must be `off` or hours like 21-8"))?,
            },
        })
    }

    pub fn jwt_secret(&self) -> &[u8] {
        self.secret_key.expose_secret().as_bytes()
    }
}

fn parse_key(hex_key: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_key).map_err(|_| config_error("ENCRYPTION_KEY must be 64 hex characters"))?;
    bytes.try_into().map_err(|_| config_error("ENCRYPTION_KEY must be 64 hex characters (32 bytes)"))
}

fn config_error(msg: &str) -> Error {
    Error::Config(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn development_defaults_need_no_variables() {
        let s = Settings::from_lookup(lookup(&[])).unwrap();
        assert_eq!(s.port, 8000);
        assert_eq!(s.redis_prefix, "corredor");
        assert_eq!(s.jwt_expire_minutes, 60);
        assert!(s.rate_limits.enabled);
    }

    #[test]
    fn production_refuses_to_start_without_secrets() {
        assert!(Settings::from_lookup(lookup(&[("APP_ENV", "production")])).is_err());
        let ok = Settings::from_lookup(lookup(&[
            ("APP_ENV", "production"),
            ("SECRET_KEY", "a-very-long-production-secret-key-of-40-chars"),
            ("ENCRYPTION_KEY", &"ab".repeat(32)),
        ]));
        assert!(ok.is_ok());
    }

    #[test]
    fn malformed_numbers_and_keys_are_rejected() {
        assert!(Settings::from_lookup(lookup(&[("PORT", "eighty")])).is_err());
        assert!(Settings::from_lookup(lookup(&[("ENCRYPTION_KEY", "abc")])).is_err());
    }

    #[test]
    fn provider_addresses_default_to_the_providers_and_lose_trailing_slashes() {
        let s = Settings::from_lookup(lookup(&[("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1/")])).unwrap();
        assert_eq!(s.providers.openai_base_url, "http://127.0.0.1:9999/v1");
        assert_eq!(s.providers.telegram_api_base, "https://api.telegram.org");
        assert!(s.providers.telegram_bot_token.is_none());
        assert!(Settings::from_lookup(lookup(&[("TELEGRAM_BROKER_ID", "one")])).is_err());
    }

    #[test]
    fn llm_settings_have_defaults_and_are_checked() {
        let s = Settings::from_lookup(lookup(&[])).unwrap();
        assert_eq!((s.llm_max_tokens, s.llm_temperature, s.llm_retries), (1024, 0.7, 2));
        assert_eq!(s.llm_timeout, std::time::Duration::from_secs(20));
        assert_eq!(s.llm_retry_backoff, std::time::Duration::from_millis(500));
        let s = Settings::from_lookup(lookup(&[("LLM_TEMPERATURE", "0.2"), ("LLM_RETRIES", "0")])).unwrap();
        assert_eq!((s.llm_temperature, s.llm_retries), (0.2, 0));
        for bad in ["hot", "2.5", "-1"] {
            assert!(Settings::from_lookup(lookup(&[("LLM_TEMPERATURE", bad)])).is_err(), "{bad}");
        }
        assert!(Settings::from_lookup(lookup(&[("LLM_TIMEOUT_MS", "soon")])).is_err());
    }

    #[test]
    fn rate_limits_can_be_switched_off() {
        let s = Settings::from_lookup(lookup(&[("RATE_LIMITS", "off")])).unwrap();
        assert!(!s.rate_limits.enabled);
    }
}
