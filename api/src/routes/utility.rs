//! `/` and `/health` (documented), `/metrics` (Prometheus, plain handler).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use poem::web::Data;
use poem::{IntoResponse, Response, handler};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::ConnectionTrait;

use super::ApiTags;
use crate::state::AppState;

pub struct UtilityApi;

#[derive(Object)]
pub struct RootInfo {
    pub message: String,
    pub version: String,
    pub docs: String,
}

#[derive(Object)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
}

#[derive(Object)]
pub struct QueueStats {
    pub pending: u64,
    pub running: u64,
    pub dead: u64,
}

#[derive(Object)]
pub struct WebsocketStats {
    pub connections: u64,
}

#[derive(Object)]
pub struct Health {
    /// `healthy` (database and Redis answer), `degraded` (Redis does not) or `unhealthy` (the database does not).
    pub status: String,
    /// `ok` or `error: …`
    pub database: String,
    /// `ok` or `error: …`
    pub redis: String,
    /// `closed`, `open` or `half-open` per integration.
    pub circuit_breakers: BTreeMap<String, String>,
    /// The authenticated-user cache.
    pub cache: CacheStats,
    pub queues: BTreeMap<String, QueueStats>,
    /// Names of the worker processes whose heartbeat is current.
    pub workers: Vec<String>,
    pub websocket: WebsocketStats,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The database answers (Redis may be degraded)
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The database is unreachable
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

impl UtilityApi {
    async fn database(state: &AppState) -> String {
        let ping = state.infra.db.execute_unprepared("SELECT 1");
        match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => "ok".into(),
            Ok(Err(e)) => format!("error: {}", first_line(&e.to_string())),
            Err(_) => "error: timed out".into(),
        }
    }

    async fn redis(state: &AppState) -> String {
        let mut conn = state.infra.redis.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => "ok".into(),
            Ok(Err(e)) => format!("error: {}", first_line(&e.to_string())),
            Err(_) => "error: timed out".into(),
        }
    }
}

/// Pending / running / dead jobs of every queue (dead = filed dead in Redis by the worker).
async fn queue_stats(state: &AppState) -> BTreeMap<String, QueueStats> {
    let mut out = BTreeMap::new();
    for queue in shared::jobs::QUEUES {
        let stats = tokio::time::timeout(Duration::from_secs(2), shared::jobs::stats(&state.infra, queue)).await;
        if let Ok(Ok(s)) = stats {
            out.insert(queue.to_string(), QueueStats { pending: s.pending, running: s.running, dead: s.dead });
        }
    }
    out
}

/// Live workers: members of `{prefix}:workers` whose heartbeat is younger than 15 s.
async fn live_workers(state: &AppState) -> Vec<String> {
    let key = format!("{}:workers", state.infra.prefix());
    let since = chrono::Utc::now().timestamp() - 15;
    let mut conn = state.infra.redis.clone();
    let cmd = redis::cmd("ZRANGEBYSCORE");
    let read = async {
        let mut c = cmd;
        c.arg(&key).arg(since).arg("+inf").query_async::<Vec<String>>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(mut names)) => {
            names.sort();
            names
        }
        _ => Vec::new(),
    }
}

/// Every provider's circuit breaker (read from Redis, so shared by all processes), plus one per
/// configured LLM provider (`llm:gemini`, `llm:openai`).
async fn breaker_states(state: &AppState) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for b in shared::integrations::breaker::ALL {
        let s = tokio::time::timeout(Duration::from_secs(2), b.state(&state.infra)).await;
        let s = s.unwrap_or(shared::integrations::breaker::State::Closed);
        out.insert(b.name.to_string(), s.as_str().to_string());
    }
    // Each LLM provider has its own breaker; `llm` is the worst of them.
    if let Ok((llm, each)) =
        tokio::time::timeout(Duration::from_secs(2), shared::integrations::llm::breaker_states(&state.infra)).await
    {
        out.insert("llm".to_string(), llm.as_str().to_string());
        out.extend(each.into_iter().map(|(name, s)| (name.to_string(), s.as_str().to_string())));
    }
    out
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().chars().take(200).collect()
}

#[OpenApi(tag = "ApiTags::Utility")]
impl UtilityApi {
    /// Service information
    #[oai(path = "/", method = "get", operation_id = "root")]
    async fn root(&self) -> Json<RootInfo> {
        Json(RootInfo {
            message: "Corredor API".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            docs: "/docs".into(),
        })
    }

    /// Health of the service and its dependencies
    ///
    /// 503 when the database is unreachable, else 200.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&AppState>) -> HealthResponse {
        let (database, redis, workers, queues, circuit_breakers) = tokio::join!(
            Self::database(&state),
            Self::redis(&state),
            live_workers(&state),
            queue_stats(&state),
            breaker_states(&state)
        );
        let (hits, misses) = state.infra.users.stats();
        let total = hits + misses;
        let status = match (database == "ok", redis == "ok") {
            (true, true) => "healthy",
            (true, false) => "degraded",
            (false, _) => "unhealthy",
        };
        let db_ok = database == "ok";
        let body = Health {
            status: status.into(),
            database,
            redis,
            circuit_breakers,
            cache: CacheStats { hits, misses, hit_rate: if total == 0 { 0.0 } else { hits as f64 / total as f64 } },
            queues,
            workers,
            websocket: WebsocketStats { connections: state.ws_connections.load(Ordering::Relaxed) },
        };
        if db_ok { HealthResponse::Ok(Json(body)) } else { HealthResponse::Unavailable(Json(body)) }
    }
}

/// `GET /metrics`: Prometheus text exposition.
#[handler]
pub async fn metrics(Data(state): Data<&AppState>) -> Response {
    let (hits, misses) = state.infra.users.stats();
    let extra = format!(
        "# HELP corredor_auth_cache_hits_total Authenticated-user cache hits\n# TYPE corredor_auth_cache_hits_total counter\ncorredor_auth_cache_hits_total {hits}\n\
         # HELP corredor_auth_cache_misses_total Authenticated-user cache misses\n# TYPE corredor_auth_cache_misses_total counter\ncorredor_auth_cache_misses_total {misses}\n\
         # HELP corredor_websocket_connections Open WebSocket connections\n# TYPE corredor_websocket_connections gauge\ncorredor_websocket_connections {}\n",
        state.ws_connections.load(Ordering::Relaxed)
    );
    state.metrics.render(&extra).with_content_type("text/plain; version=0.0.4").into_response()
}
