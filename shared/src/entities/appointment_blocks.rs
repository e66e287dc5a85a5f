use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "appointment_blocks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub agent_id: Option<i64>,
    pub start_time: ChronoDateTimeUtc,
    pub end_time: ChronoDateTimeUtc,
    pub reason: String,
    pub notes: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
