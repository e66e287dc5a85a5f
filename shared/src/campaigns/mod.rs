//! Drip campaigns (reference §3.5 with its bugs fixed, SPEC §10 and §15): a broker's campaign has a
//! trigger (`manual`, `lead_score`, `stage_change`, `inactivity`) and numbered steps (`send_message`,
//! `make_call`, `update_stage`), each `delay_hours` after the previous one.
//!
//! - [`model`]: types, input checks, and the timing rules (quiet hours 21:00–08:00 Santiago).
//! - [`service`]: CRUD, the approval workflow, steps, logs, stats, the matching-leads preview.
//! - [`enrol`]: applying to leads (in bulk), the hourly trigger sweep, the stage-change and
//!   inbound-message hooks (stop on reply), and the scheduling of each lead's next step.
//! - [`compose`]: the text a message step sends (template, text or LLM-written, with the approved
//!   WhatsApp template of a template step) and the preview of a campaign's message.
//! - [`runner`]: one `campaign_step` job — the step for one lead, once (its effect key).
//! - [`deliver`]: the seams where a message and a call leave (channel sender, voice).
//!
//! A lead is enrolled at most once per campaign (`campaign_enrolments`, what `max_contacts`
//! counts); each step of an enrolment has one log row (`campaign_logs`, unique per campaign, lead
//! and step): `pending` while scheduled, then `sent`, `failed` or `skipped`.

pub mod compose;
pub mod deliver;
pub mod enrol;
pub mod model;
pub mod runner;
pub mod service;

pub use enrol::{on_inbound, on_stage_change};
