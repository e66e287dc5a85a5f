use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "broker_prompt_configs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub agent_name: String,
    pub agent_role: String,
    pub identity_prompt: Option<String>,
    pub business_context: Option<String>,
    pub agent_objective: Option<String>,
    pub data_collection_prompt: Option<String>,
    pub behavior_rules: Option<String>,
    pub restrictions: Option<String>,
    pub output_format: Option<String>,
    pub full_custom_prompt: Option<String>,
    pub tools_instructions: Option<String>,
    pub situation_handlers: Option<Json>,
    pub enable_appointment_booking: bool,
    pub benefits_info: Option<Json>,
    pub qualification_requirements: Option<Json>,
    pub follow_up_messages: Option<Json>,
    pub additional_fields: Option<Json>,
    pub meeting_config: Option<Json>,
    pub message_templates: Option<Json>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
