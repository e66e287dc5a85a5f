//! Sofía's conversation: the pure engine that reads lead messages and decides what comes next, and
//! the one pipeline around it that every channel uses.
//!
//! - [`engine`]: pure rules (extraction, profile merge, policy, state machine, replies);
//! - [`sanitize`]: the inbound message sanitiser; [`store`]: the profile ↔ lead mapping;
//! - [`service`]: the message pipeline (SPEC §6 steps 1–8); [`history`]: messages and the debug view;
//! - [`ledger`]: `llm_calls` rows. After a turn's data lands, `leads::rules_service` recomputes score,
//!   status, calificación and stage.

pub mod engine;
pub mod history;
pub mod ledger;
pub mod llm_turn;
pub mod sanitize;
pub mod service;
pub mod store;
