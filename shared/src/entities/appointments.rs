use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "appointments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub lead_id: i64,
    pub agent_id: Option<i64>,
    pub appointment_type: String,
    pub status: String,
    pub start_time: ChronoDateTimeUtc,
    pub end_time: ChronoDateTimeUtc,
    pub duration_minutes: i32,
    pub location: Option<String>,
    pub property_address: Option<String>,
    pub meet_url: Option<String>,
    pub google_event_id: Option<String>,
    pub google_event_user_id: Option<i64>,
    pub notes: Option<String>,
    pub lead_notes: Option<String>,
    pub reminder_sent_24h: bool,
    pub reminder_sent_1h: bool,
    pub cancelled_at: Option<ChronoDateTimeUtc>,
    pub cancellation_reason: Option<String>,
    pub created_by: Option<i64>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
