//! `Infra`: the handles every service needs (database, Redis, settings, cipher, user cache),
//! built once per process and cloned cheaply.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;

use crate::auth::service::UserCache;
use crate::config::Settings;
use crate::crypto::Cipher;
use crate::error::Result;
use crate::integrations::llm::Router;
use crate::{db, redis_conn};

#[derive(Clone)]
pub struct Infra {
    pub db: DatabaseConnection,
    pub redis: ConnectionManager,
    pub settings: Arc<Settings>,
    pub cipher: Cipher,
    pub users: Arc<UserCache>,
    /// The configured LLM chain (`LLM_PROVIDER`); `None` for the local engine.
    pub llm: Option<Arc<Router>>,
}

impl Infra {
    /// Opens the pool and a lazily connecting Redis handle.
    pub async fn connect(settings: Settings) -> Result<Self> {
        // A provider without its key refuses to start rather than answering every lead locally.
        Router::from_settings(&settings)?;
        let db = db::connect(&settings).await?;
        let redis = redis_conn::connect(&settings.redis_url)?;
        Ok(Self::new(db, redis, settings))
    }

    pub fn new(db: DatabaseConnection, redis: ConnectionManager, settings: Settings) -> Self {
        let cipher = Cipher::new(&settings.encryption_key);
        let llm = Router::from_settings(&settings)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "the LLM configuration is invalid; Sofía answers with the local engine");
                None
            })
            .map(Arc::new);
        Self { db, redis, settings: Arc::new(settings), cipher, users: Arc::new(UserCache::default()), llm }
    }

    pub fn prefix(&self) -> &str {
        &self.settings.redis_prefix
    }
}
