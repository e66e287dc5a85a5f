-- The statement GET /api/v1/leads?limit=50 sends for a broker ADMIN (shared/src/leads/repo.rs::list, as
-- SeaORM/sqlx send it): one page of the shown columns ordered by score, with the broker's exact total
-- (lead_counts plus the pending lead_count_deltas, migration m20261127_000002) and the number of pending
-- deltas in the same round trip.
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
       "leads"."metadata", "leads"."human_mode", "leads"."notes", "leads"."last_contacted", "leads"."created_at",
       "leads"."updated_at",
       (COALESCE((SELECT total FROM lead_counts WHERE broker_id = :broker_id), 0)
        + COALESCE((SELECT sum(delta) FROM lead_count_deltas WHERE broker_id = :broker_id), 0))::bigint AS "__total",
       (SELECT count(*) FROM lead_count_deltas WHERE broker_id = :broker_id) AS "__pending"
  FROM "leads" WHERE "leads"."broker_id" = :broker_id
 ORDER BY "leads"."lead_score" DESC, "leads"."id" DESC LIMIT :lim OFFSET :off;
