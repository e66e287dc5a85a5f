//! `/ws/{broker_id}/{user_id}`: live events (SPEC §13).
//!
//! Each API process keeps one Redis pattern subscription to `{prefix}:ws:*` (the [`Hub`]) and hands
//! every message to its own sockets through a broadcast channel; a socket forwards the messages of
//! its broker's channel and its user's channel. Whoever causes an event (this process, another API
//! instance or a worker) only publishes to Redis.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocket, WebSocketConfig, WebSocketStream};
use poem::web::{Data, Path, Query};
use poem::{IntoResponse, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::auth::{jwt, service as auth_service};
use shared::{Infra, Role, events};
use tokio::sync::broadcast;

use crate::state::AppState;

/// Closing code for a refused token, broker or user.
pub const UNAUTHORIZED: u16 = 4001;
/// How long a socket may take to send its token frame.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(30);

/// A published event: the Redis channel it came on and its frame.
#[derive(Clone, Debug)]
pub struct Published {
    pub channel: Arc<str>,
    pub frame: Arc<str>,
}

/// This process's relay from Redis pub/sub to its sockets.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Published>,
}

impl Hub {
    /// Starts the subscription task; it reconnects by itself after a Redis outage.
    pub fn start(infra: &Infra) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let hub = Hub { tx: tx.clone() };
        let url = infra.settings.redis_url.clone();
        let pattern = format!("{}:ws:*", infra.prefix());
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match relay(&url, &pattern, &tx).await {
                    Ok(()) => backoff = Duration::from_millis(200),
                    Err(e) => tracing::warn!(error = %e, "websocket hub lost Redis; reconnecting"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        hub
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }
}

async fn relay(url: &str, pattern: &str, tx: &broadcast::Sender<Published>) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(pattern).await?;
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        let Ok(frame) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
        // No receivers is fine: nobody connected to this instance right now.
        let _ = tx.send(Published { channel: msg.get_channel_name().into(), frame: frame.into() });
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

#[derive(Deserialize)]
struct TokenFrame {
    token: String,
}

/// Who a socket belongs to, once its token was accepted.
struct Subscriber {
    broker_channel: String,
    user_channel: String,
}

/// Checks a token against the path: valid, active user, `sub` = `user_id`, same broker (SUPERADMIN any).
async fn authorize(infra: &Infra, token: &str, broker_id: i64, user_id: i64) -> Option<Subscriber> {
    let claims = jwt::verify(&infra.settings, token).ok()?;
    let user = auth_service::resolve(&infra.db, &infra.users, &claims).await.ok()?;
    let same_broker = user.role() == Role::Superadmin || user.broker_id == Some(broker_id);
    if user.id != user_id || !same_broker {
        return None;
    }
    Some(Subscriber {
        broker_channel: events::broker_channel(infra.prefix(), broker_id),
        user_channel: events::user_channel(infra.prefix(), broker_id, user_id),
    })
}

/// `GET /ws/{broker_id}/{user_id}` (WebSocket). The JWT comes as `?token=` or as a first frame
/// `{"token": "…"}`; a bad token, another broker or another user closes with 4001.
#[handler]
pub async fn connect(
    ws: WebSocket,
    Path((broker_id, user_id)): Path<(i64, i64)>,
    Query(query): Query<TokenQuery>,
    Data(state): Data<&AppState>,
) -> impl IntoResponse {
    let state = state.clone();
    ws.config(socket_config()).on_upgrade(move |socket| async move {
        state.ws_connections.fetch_add(1, Ordering::Relaxed);
        serve_socket(socket, &state, broker_id, user_id, query.token).await;
        state.ws_connections.fetch_sub(1, Ordering::Relaxed);
    })
}

/// Small per-socket buffers: clients only send a token or a ping, and events are a few hundred bytes.
/// tungstenite's defaults (128 KiB read buffer each) made 500 sockets cost ~85 MB.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

async fn serve_socket(socket: WebSocketStream, state: &AppState, broker_id: i64, user_id: i64, token: Option<String>) {
    let (mut sink, mut stream) = socket.split();
    // Subscribe before authorising, so nothing published meanwhile is missed.
    let mut events = state.hub.subscribe();
    let token = match token {
        Some(t) => Some(t),
        None => match tokio::time::timeout(TOKEN_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<TokenFrame>(&text).ok().map(|f| f.token),
            _ => None,
        },
    };
    let subscriber = match token {
        Some(t) => authorize(&state.infra, &t, broker_id, user_id).await,
        None => None,
    };
    let Some(sub) = subscriber else {
        let _ = sink.send(Message::close_with(CloseCode::from(UNAUTHORIZED), "unauthorized")).await;
        return;
    };
    let connected = events::frame("connected", json!({"broker_id": broker_id, "user_id": user_id}));
    if sink.send(Message::Text(connected.to_string())).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(p) if *p.channel == *sub.broker_channel || *p.channel == *sub.user_channel => {
                    if sink.send(Message::Text(p.frame.to_string())).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, broker_id, user_id, "websocket client too slow; events dropped");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if serde_json::from_str::<Value>(&text).is_ok_and(|v| v["event"] == "ping" || v["type"] == "ping") {
                        let pong = events::frame("pong", json!({}));
                        if sink.send(Message::Text(pong.to_string())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if sink.send(Message::Text(events::frame("ping", json!({})).to_string())).await.is_err() {
                    break;
                }
            }
        }
    }
}
