use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "knowledge_chunks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub entry_id: i64,
    pub broker_id: i64,
    pub chunk_index: i32,
    pub content: String,
    #[sea_orm(column_type = "Vector(Some(768))")]
    pub embedding: PgVector,
    pub provider: String,
    pub model: String,
    /// The entry's `source_type`: each kind has its own HNSW graph (migration `000014`).
    pub source_type: String,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
