//! The schema, one timestamped migration per change. A migration is never edited after it lands.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_foundation;
mod m20261127_000002_lead_counts;
mod m20261127_000003_performed_effects;
mod m20261127_000004_dead_jobs;
mod m20261127_000005_csv_imports;
mod m20261201_000001_knowledge_base;
mod m20261201_000002_appointments;
mod m20261201_000003_chat;
mod m20261201_000005_agent_calendars;
mod m20261201_000006_prompt_versions;
mod m20261201_000007_cost_rollups;
mod m20261201_000008_templates;
mod m20261201_000009_channels;
mod m20261201_000010_campaigns;
mod m20261201_000011_voice;
mod m20261201_000012_rollup_covering_key;
mod m20261201_000013_daily_rollups;
mod m20261201_000014_kb_graph_per_kind;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_foundation::Migration),
            Box::new(m20261127_000002_lead_counts::Migration),
            Box::new(m20261127_000003_performed_effects::Migration),
            Box::new(m20261127_000004_dead_jobs::Migration),
            Box::new(m20261127_000005_csv_imports::Migration),
            Box::new(m20261201_000001_knowledge_base::Migration),
            Box::new(m20261201_000002_appointments::Migration),
            Box::new(m20261201_000003_chat::Migration),
            Box::new(m20261201_000005_agent_calendars::Migration),
            Box::new(m20261201_000006_prompt_versions::Migration),
            Box::new(m20261201_000007_cost_rollups::Migration),
            Box::new(m20261201_000008_templates::Migration),
            Box::new(m20261201_000009_channels::Migration),
            Box::new(m20261201_000010_campaigns::Migration),
            Box::new(m20261201_000011_voice::Migration),
            Box::new(m20261201_000012_rollup_covering_key::Migration),
            Box::new(m20261201_000013_daily_rollups::Migration),
            Box::new(m20261201_000014_kb_graph_per_kind::Migration),
        ]
    }
}
