-- GET /api/v1/leads?limit=50 before per-broker totals (commit 4ad8429), and still the shape of every
-- filtered list: one page ordered by score and a count(*) of the matching rows, as SeaORM renders them
-- (PaginatorTrait::count wraps the filtered select; PostgreSQL flattens it to
-- SELECT count(*) FROM leads WHERE broker_id = $1, an index-only scan of the broker's index entries).
-- bench/run runs it after leads_list.sql and reports raw_sql_count_star_tps, for reference; it is the
-- floor itself when the database has no lead_counts table.
-- Run with `pgbench -M prepared -D broker_id=N`.
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
SELECT COUNT(*) AS num_items FROM (
  SELECT "leads"."id", "leads"."broker_id", "leads"."phone", "leads"."name", "leads"."email", "leads"."status",
         "leads"."lead_score", "leads"."lead_score_components", "leads"."pipeline_stage", "leads"."stage_entered_at",
         "leads"."calificacion", "leads"."conversation_state", "leads"."assigned_to", "leads"."tags",
         "leads"."metadata", "leads"."campaign_history", "leads"."human_mode", "leads"."human_assigned_to",
         "leads"."human_taken_at", "leads"."human_released_at", "leads"."close_reason", "leads"."close_reason_detail",
         "leads"."closed_at", "leads"."notes", "leads"."last_contacted", "leads"."search_text", "leads"."created_at",
         "leads"."updated_at"
    FROM "leads" WHERE "leads"."broker_id" = :broker_id) AS "sub_query";
