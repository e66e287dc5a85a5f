//! One file per feature area, each its own `#[OpenApi]` struct; `openapi.rs` composes them.

pub mod admin;
pub mod appointments;
pub mod auth;
pub mod broker_config;
pub mod brokers;
pub mod calendar;
pub mod calls;
pub mod campaigns;
pub mod chat;
pub mod chat_config;
pub mod conversations;
pub mod costs;
pub mod kb;
pub mod leads;
pub mod pipeline;
pub mod tasks;
pub mod templates;
pub mod utility;
pub mod voice_config;
pub mod webhooks;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Registration, login and the current user
    Auth,
    /// Leads: CRUD, assignment, pipeline moves, CSV import, GDPR export
    Leads,
    /// Brokers (tenants); writes are SUPERADMIN only
    Brokers,
    /// Users of a broker; ADMIN manages its own broker's
    BrokerUsers,
    /// The broker's AI configuration: identity, prompt sections, scoring, prompt versions
    BrokerConfig,
    /// Knowledge base: entries, semantic search, re-embedding
    KnowledgeBase,
    /// Platform administration: audit log
    Admin,
    /// Appointments: booking, rescheduling, cancelling, free slots
    Appointments,
    /// The broker's availability, blocked time and Google Calendar connection
    Calendar,
    /// Sofía: send messages as a lead (JSON or SSE), read conversations
    Chat,
    /// The conversations inbox and human handoff
    Conversations,
    /// What the LLM calls cost: summary, daily, outliers, export, calls
    Costs,
    /// Message templates with variables, and their preview for a lead
    Templates,
    /// Service information and health
    Utility,
    /// The sales pipeline: board, stage columns, funnel metrics, auto-advance
    Pipeline,
    /// Drip campaigns: steps, approval, applying to leads, logs and stats
    Campaigns,
    /// What Telegram and WhatsApp call: messages in, status callbacks, verification
    Webhooks,
    /// Outbound AI voice calls through VAPI: start, list, transcripts, metrics, VAPI's webhook
    Voice,
}
