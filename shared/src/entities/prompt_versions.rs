use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "prompt_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub version: i32,
    pub version_tag: String,
    pub prompt_type: String,
    pub content: String,
    pub sections_json: Option<Json>,
    pub notes: Option<String>,
    pub is_active: bool,
    pub is_auto: bool,
    pub created_by: Option<i64>,
    pub created_at: ChronoDateTimeUtc,
    pub activated_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
