//! Integration tests: one binary, each test with its own PostgreSQL database (copied from a migrated
//! template) and its own Redis key prefix, so they run in parallel against real infrastructure.

mod common;
mod costs;

mod agent_calendar;
mod appointments;
mod auth;
mod breaker;
mod broker_config;
mod brokers;
mod calendar;
mod campaigns;
mod channels;
mod chaos;
mod chaos_harness;
mod chat;
mod conversations;
mod crash;
mod fake_channels;
mod handoff;
mod jobs;
mod kb;
mod leads;
mod llm;
mod malformed;
mod pipeline;
mod queue;
mod security;
mod tasks;
mod templates;
mod utility;
mod voice;
mod worker;
mod ws;
