-- The two statements GET /api/v1/leads?limit=50 runs for a broker ADMIN (shared/src/leads/repo.rs::list):
-- one page ordered by score and the total. pgbench passes the broker with -D broker_id=N.
-- The API additionally verifies the JWT, resolves the user (cached) and serialises JSON; this is the floor.
SELECT "leads"."id", "leads"."broker_id", "leads"."phone", "leads"."name", "leads"."email", "leads"."status",
       "leads"."lead_score", "leads"."lead_score_components", "leads"."pipeline_stage", "leads"."stage_entered_at",
       "leads"."calificacion", "leads"."conversation_state", "leads"."assigned_to", "leads"."tags",
       "leads"."metadata", "leads"."campaign_history", "leads"."human_mode", "leads"."human_assigned_to",
       "leads"."human_taken_at", "leads"."human_released_at", "leads"."close_reason", "leads"."close_reason_detail",
       "leads"."closed_at", "leads"."notes", "leads"."last_contacted", "leads"."search_text", "leads"."created_at",
       "leads"."updated_at"
  FROM "leads" WHERE "leads"."broker_id" = :broker_id
 ORDER BY "leads"."lead_score" DESC, "leads"."id" DESC LIMIT 50 OFFSET 0;
SELECT count(*) FROM "leads" WHERE "leads"."broker_id" = :broker_id;
