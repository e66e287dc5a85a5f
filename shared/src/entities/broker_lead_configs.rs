use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "broker_lead_configs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: i64,
    pub field_weights: Json,
    pub cold_max_score: i32,
    pub warm_max_score: i32,
    pub hot_min_score: i32,
    pub qualified_min_score: i32,
    pub field_priority: Json,
    pub qualification_criteria: Json,
    pub max_acceptable_debt: i64,
    pub scoring_config: Option<Json>,
    pub alert_on_hot_lead: bool,
    pub alert_score_threshold: i32,
    pub alert_on_qualified: bool,
    pub alert_email: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
