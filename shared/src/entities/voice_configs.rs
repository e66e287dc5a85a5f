use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "broker_voice_configs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub broker_id: i64,
    pub provider: String,
    pub provider_credentials: Json,
    pub phone_number_id: Option<String>,
    pub assistant_id_default: Option<String>,
    pub assistant_id_by_type: Json,
    #[sea_orm(column_type = "Text", nullable)]
    pub first_message_template: Option<String>,
    pub recording_enabled: bool,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
