//! Idempotent side effects: one row per idempotency key, claimed before an outbound effect (message,
//! call, calendar event) is performed and completed with its result after, so a retry, a redelivery
//! after a crash or a dead-job retry never performs the effect twice.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000003_performed_effects"
    }
}

const UP: &str = r#"
CREATE TABLE performed_effects (
    idempotency_key varchar(255) PRIMARY KEY,
    kind            varchar(64) NOT NULL,
    broker_id       bigint REFERENCES brokers(id) ON DELETE CASCADE,
    lead_id         bigint REFERENCES leads(id) ON DELETE SET NULL,
    status          varchar(16) NOT NULL DEFAULT 'claimed' CHECK (status IN ('claimed', 'done')),
    claimed_by      varchar(128) NOT NULL,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    result          jsonb,
    completed_at    timestamptz
);
CREATE INDEX performed_effects_broker_idx ON performed_effects (broker_id, claimed_at);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS performed_effects").await?;
        Ok(())
    }
}
