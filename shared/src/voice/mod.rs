//! Outbound AI voice calls through VAPI (SPEC §11, reference §3.12).
//!
//! - [`model`]: the call, its statuses and purposes, and how VAPI's words map onto them (pure);
//! - [`config`]: the broker's voice configuration (assistants, phone number, first message,
//!   encrypted credentials) and what a call is placed with;
//! - [`vapi`]: the VAPI client (`POST /call`);
//! - [`service`]: placing a call ([`place_call`], also used by campaign steps), dialling it from the
//!   `voice_call` job, listing, detail and metrics;
//! - [`webhook`]: VAPI's server messages (authentication, status, transcript, tool calls,
//!   end-of-call report, assistant request, hang);
//! - [`report`]: the `voice_report` job: transcript lines, summary, extraction onto the lead and the
//!   lead rules.

pub mod config;
pub mod model;
pub mod report;
pub mod service;
pub mod vapi;
pub mod webhook;

pub use model::{Call, TranscriptLine};
pub use service::place_call;
