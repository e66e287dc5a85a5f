//! Process-wide state handed to every handler.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use shared::Infra;

use crate::metrics::Metrics;
use crate::ws::Hub;

#[derive(Clone)]
pub struct AppState {
    pub infra: Infra,
    pub metrics: Arc<Metrics>,
    pub ws_connections: Arc<AtomicU64>,
    pub hub: Hub,
}

impl AppState {
    /// Must be called inside the Tokio runtime: it starts this process's WebSocket hub.
    pub fn new(infra: Infra) -> Self {
        let hub = Hub::start(&infra);
        Self { infra, metrics: Arc::new(Metrics::new()), ws_connections: Arc::new(AtomicU64::new(0)), hub }
    }
}
