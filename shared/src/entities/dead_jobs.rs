use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub queue: String,
    pub task_id: String,
    pub payload: Json,
    pub broker_id: Option<i64>,
    pub lead_id: Option<i64>,
    pub attempts: i32,
    pub errors: Json,
    pub last_error: String,
    pub status: String,
    pub failed_at: ChronoDateTimeUtc,
    pub requeued_at: Option<ChronoDateTimeUtc>,
    pub requeued_task_id: Option<String>,
    pub discarded_at: Option<ChronoDateTimeUtc>,
    pub discard_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
