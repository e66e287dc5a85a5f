use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "leads")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub phone: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub status: String,
    pub lead_score: f64,
    pub lead_score_components: Json,
    pub pipeline_stage: String,
    pub stage_entered_at: ChronoDateTimeUtc,
    pub calificacion: Option<String>,
    pub conversation_state: Option<String>,
    pub assigned_to: Option<i64>,
    pub tags: Json,
    pub metadata: Json,
    pub campaign_history: Json,
    pub human_mode: bool,
    pub human_assigned_to: Option<i64>,
    pub human_taken_at: Option<ChronoDateTimeUtc>,
    pub human_released_at: Option<ChronoDateTimeUtc>,
    pub close_reason: Option<String>,
    pub close_reason_detail: Option<String>,
    pub closed_at: Option<ChronoDateTimeUtc>,
    pub notes: Option<String>,
    pub last_contacted: Option<ChronoDateTimeUtc>,
    pub search_text: String,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
