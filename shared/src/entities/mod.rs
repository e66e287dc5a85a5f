//! sea-orm entities, one file per table, in the shape `sea-orm-cli generate entity` produces.
//! Behaviour lives in the feature modules, not here.

pub mod activity_log;
pub mod agent_calendar_connections;
pub mod appointment_blocks;
pub mod appointments;
pub mod audit_logs;
pub mod availability_slots;
pub mod broker_calendar_connections;
pub mod broker_chat_configs;
pub mod broker_lead_configs;
pub mod broker_prompt_configs;
pub mod brokers;
pub mod chat_conversations;
pub mod chat_messages;
pub mod dead_jobs;
pub mod knowledge_base;
pub mod knowledge_chunks;
pub mod leads;
pub mod llm_calls;
pub mod prompt_versions;
pub mod users;
pub mod voice_calls;
pub mod voice_configs;
pub mod voice_transcripts;
