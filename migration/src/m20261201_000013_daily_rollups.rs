//! Daily roll-ups of the `llm_calls` ledger beside the hourly ones, so a month's cost summary adds
//! about 30 rows per provider and call type instead of about 720. The fold writes both from the same
//! calls; queries take whole days the fold has finished from the daily table and the hours around
//! them from the hourly one (`shared::costs`). Filled here from the hourly roll-ups folded so far.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000013_daily_rollups"
    }
}

const UP: &str = r#"
-- A fold in flight holds this row: wait for it, so the copy below misses none of its calls.
SELECT folded_until FROM llm_rollup_state WHERE id = 1 FOR UPDATE;
CREATE TABLE llm_call_rollups_daily (
    -- 0: calls that name no broker.
    broker_id      bigint NOT NULL,
    -- The UTC day (its 00:00) the calls were made in.
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
        INCLUDE (calls, errors, fallbacks, cost_usd, latency_ms_sum, input_tokens, output_tokens)
);
CREATE INDEX llm_call_rollups_daily_bucket_idx ON llm_call_rollups_daily (bucket);
INSERT INTO llm_call_rollups_daily
SELECT broker_id, date_trunc('day', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', provider, call_type,
       sum(calls), sum(errors), sum(fallbacks), sum(cost_usd), sum(latency_ms_sum), sum(input_tokens),
       sum(output_tokens)
FROM llm_call_rollups GROUP BY 1, 2, 3, 4;
"#;

const DOWN: &str = "DROP TABLE IF EXISTS llm_call_rollups_daily;";

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
