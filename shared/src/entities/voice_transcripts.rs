use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "call_transcripts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub voice_call_id: i64,
    pub speaker: String,
    #[sea_orm(column_type = "Text")]
    pub text: String,
    pub timestamp: f64,
    pub confidence: Option<f64>,
    pub source_key: String,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
