use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub lead_id: i64,
    pub broker_id: i64,
    pub memory: Json,
    pub inbound_count: i32,
    pub outbound_count: i32,
    pub last_inbound_at: Option<ChronoDateTimeUtc>,
    pub last_outbound_at: Option<ChronoDateTimeUtc>,
    pub last_provider: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
