//! Hourly roll-ups of the `llm_calls` ledger, so cost summaries over months of calls read a few
//! hundred rows instead of millions. A periodic fold (`shared::costs::fold`) adds the calls created
//! before its watermark (two minutes behind the clock, so no transaction still writing a row older
//! than it is missed); queries read the roll-ups below the watermark and the raw ledger above it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000007_cost_rollups"
    }
}

const UP: &str = r#"
CREATE TABLE llm_call_rollups (
    -- 0: calls that name no broker.
    broker_id      bigint NOT NULL,
    -- The UTC hour the calls were made in.
    bucket         timestamptz NOT NULL,
    provider       varchar(20) NOT NULL,
    call_type      varchar(30) NOT NULL,
    calls          bigint NOT NULL DEFAULT 0,
    errors         bigint NOT NULL DEFAULT 0,
    fallbacks      bigint NOT NULL DEFAULT 0,
    cost_usd       double precision NOT NULL DEFAULT 0,
    latency_ms_sum bigint NOT NULL DEFAULT 0,
    input_tokens   bigint NOT NULL DEFAULT 0,
    output_tokens  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (broker_id, bucket, provider, call_type)
);
CREATE INDEX llm_call_rollups_bucket_idx ON llm_call_rollups (bucket);

-- Everything created before `folded_until` is in the roll-ups.
CREATE TABLE llm_rollup_state (
    id           smallint PRIMARY KEY CHECK (id = 1),
    folded_until timestamptz NOT NULL
);
INSERT INTO llm_rollup_state (id, folded_until) VALUES (1, '1970-01-01T00:00:00Z');

-- The fold reads the ledger by time; "qualified leads with a call in the window" probes by lead.
CREATE INDEX llm_calls_created_idx ON llm_calls (created_at);
CREATE INDEX llm_calls_lead_created_idx ON llm_calls (lead_id, created_at) WHERE lead_id IS NOT NULL;
"#;

const DOWN: &str = r#"
DROP INDEX IF EXISTS llm_calls_lead_created_idx;
DROP INDEX IF EXISTS llm_calls_created_idx;
DROP TABLE IF EXISTS llm_rollup_state, llm_call_rollups;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
