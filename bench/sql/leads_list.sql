-- The statements GET /api/v1/leads?limit=50 sends for a broker ADMIN (shared/src/leads/repo.rs::list and
-- broker_total, as SeaORM/sqlx send them; checked with log_statement): one page ordered by score, and the
-- broker's total from lead_counts plus the pending lead_count_deltas (migration m20261127_000002).
-- Run with `pgbench -M prepared -D broker_id=N`, so like sqlx every value is a bound parameter of a
-- prepared statement. The API also verifies the JWT, resolves the user (cached), folds the deltas when
-- more than 64 are pending and builds the JSON; this is the floor it is compared with.
-- Keep it in step with repo::list: bench/run uses this file when the table lead_counts exists, else
-- leads_list_count.sql.
\set lim 50
\set off 0
SELECT "leads"."id", "leads"."broker_id", "leads"."phone", "leads"."name", "leads"."email", "leads"."status",
       "leads"."lead_score", "leads"."lead_score_components", "leads"."pipeline_stage", "leads"."stage_entered_at",
       "leads"."calificacion", "leads"."conversation_state", "leads"."assigned_to", "leads"."tags",
       "leads"."metadata", "leads"."campaign_history", "leads"."human_mode", "leads"."human_assigned_to",
       "leads"."human_taken_at", "leads"."human_released_at", "leads"."close_reason", "leads"."close_reason_detail",
       "leads"."closed_at", "leads"."notes", "leads"."last_contacted", "leads"."search_text", "leads"."created_at",
       "leads"."updated_at"
  FROM "leads" WHERE "leads"."broker_id" = :broker_id
 ORDER BY "leads"."lead_score" DESC, "leads"."id" DESC LIMIT :lim OFFSET :off;
SELECT COALESCE((SELECT total FROM lead_counts WHERE broker_id = :broker_id), 0)::bigint
       + COALESCE(d.sum, 0)::bigint AS total, d.n AS pending
  FROM (SELECT sum(delta) AS sum, count(*) AS n FROM lead_count_deltas WHERE broker_id = :broker_id) d;
