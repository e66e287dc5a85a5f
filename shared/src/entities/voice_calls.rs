use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "voice_calls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub lead_id: i64,
    pub campaign_id: Option<i64>,
    pub agent_user_id: Option<i64>,
    pub phone_number: String,
    #[sea_orm(unique)]
    pub external_call_id: Option<String>,
    pub status: String,
    pub duration: Option<i32>,
    pub recording_url: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub transcript: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub summary: Option<String>,
    pub ended_reason: Option<String>,
    pub stage_after_call: Option<String>,
    pub score_delta: f64,
    pub post_processed: bool,
    pub call_mode: String,
    pub call_purpose: Option<String>,
    pub call_output: Json,
    pub processed_tool_calls: Json,
    pub report: Option<Json>,
    pub started_at: Option<ChronoDateTimeUtc>,
    pub completed_at: Option<ChronoDateTimeUtc>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
