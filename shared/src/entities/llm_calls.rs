use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "llm_calls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub broker_id: Option<i64>,
    pub lead_id: Option<i64>,
    pub provider: String,
    pub model: String,
    pub call_type: String,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub estimated_cost_usd: Option<f64>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub fallback_used: bool,
    pub tokens_estimated: bool,
    pub prompt_version_id: Option<i64>,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
