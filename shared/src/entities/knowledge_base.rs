use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "knowledge_base")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub lead_id: Option<i64>,
    pub created_by: Option<i64>,
    pub title: String,
    pub content: String,
    pub source_type: String,
    pub metadata: Json,
    pub search_text: String,
    pub version: i64,
    pub embedding_status: String,
    pub embedding_error: Option<String>,
    pub embedding_provider: Option<String>,
    pub embedding_model: Option<String>,
    pub chunk_count: i32,
    pub embedded_at: Option<ChronoDateTimeUtc>,
    pub embedding_requested_at: ChronoDateTimeUtc,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
