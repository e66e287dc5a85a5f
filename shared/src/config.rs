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
    pub embedding_provider: String,
    pub worker_concurrency: usize,
    /// First retry delay of a failed job; doubles per attempt up to `job_backoff_max`.
    pub job_backoff_base: std::time::Duration,
    pub job_backoff_max: std::time::Duration,
    pub log_format: String,
    pub trust_forwarded_for: bool,
    pub rate_limits: RateLimits,
    pub db_max_connections: u32,
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
    fn rate_limits_can_be_switched_off() {
        let s = Settings::from_lookup(lookup(&[("RATE_LIMITS", "off")])).unwrap();
        assert!(!s.rate_limits.enabled);
    }
}
