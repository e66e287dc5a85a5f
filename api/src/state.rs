//! Process-wide state handed to every handler.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use shared::Infra;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub infra: Infra,
    pub metrics: Arc<Metrics>,
    pub ws_connections: Arc<AtomicU64>,
}

impl AppState {
    pub fn new(infra: Infra) -> Self {
        Self { infra, metrics: Arc::new(Metrics::new()), ws_connections: Arc::new(AtomicU64::new(0)) }
    }
}
