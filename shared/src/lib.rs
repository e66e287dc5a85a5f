//! Everything both binaries share: settings, the error vocabulary, the tenant context, database
//! entities, pure domain rules and the services that apply them.
//!
//! - [`config`]: `Settings`, read once from the environment.
//! - [`error`]: the one error type, each variant with its HTTP status and stable `code`.
//! - [`ctx`]: `Ctx`, the caller's identity, passed first to every repository and service call.
//! - [`db`]: pool set-up, database creation and constraint mapping.
//! - [`entities`]: sea-orm entities of every table.
//! - [`auth`], [`leads`], [`brokers`], [`audit`], [`knowledge`]: one module per feature (model, repo,
//!   service); [`pipeline`]: stage rules, board, funnel metrics, auto-advance and the nightly refresh.
//! - [`campaigns`]: drip campaigns — triggers, steps, enrolment in bulk, the step runner.
//! - [`appointments`]: bookings, availability, the broker's and agents' Google Calendars and reminders.
//! - [`jobs`]: the queue contract (one module per queue); [`effects`]: idempotent side effects;
//!   [`tasks`]: dead jobs.
//! - [`integrations`]: clients of external providers, with circuit breakers.
//! - [`chat`]: Sofía's conversation engine (pure: extraction, profile merge, policy, state machine, replies).
//! - [`text`], [`crypto`], [`ratelimit`], [`events`], [`redis_conn`]: small shared tools.

pub mod appointments;
pub mod audit;
pub mod auth;
pub mod brokers;
pub mod campaigns;
pub mod channels;
pub mod chat;
pub mod config;
pub mod conversations;
pub mod costs;
pub mod crypto;
pub mod ctx;
pub mod db;
pub mod demo;
pub mod effects;
pub mod entities;
pub mod error;
pub mod events;
pub mod infra;
pub mod integrations;
pub mod jobs;
pub mod knowledge;
pub mod leads;
pub mod pipeline;
pub mod ratelimit;
pub mod redis_conn;
pub mod tasks;
pub mod telemetry;
pub mod templates;
pub mod text;
pub mod voice;

pub use config::Settings;
pub use ctx::{Ctx, Role};
pub use error::{Error, Result};
pub use infra::Infra;

/// Installs ring as the process-wide rustls crypto provider (sqlx and reqwest share it).
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
