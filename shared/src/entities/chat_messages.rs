use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub lead_id: i64,
    pub broker_id: i64,
    pub provider: String,
    pub channel_user_id: Option<String>,
    pub channel_username: Option<String>,
    pub channel_message_id: Option<String>,
    pub message_text: String,
    pub direction: String,
    pub status: String,
    pub sender_type: String,
    pub provider_metadata: Option<Json>,
    pub attachments: Option<Json>,
    pub ai_response_used: bool,
    pub prompt_version_id: Option<i64>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
