use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "availability_slots")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub agent_id: Option<i64>,
    pub day_of_week: i16,
    pub start_time: ChronoTime,
    pub end_time: ChronoTime,
    pub valid_from: ChronoDate,
    pub valid_until: Option<ChronoDate>,
    pub appointment_type: Option<String>,
    pub slot_duration_minutes: i32,
    pub max_appointments_per_slot: i32,
    pub is_active: bool,
    pub notes: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
