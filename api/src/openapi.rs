//! The OpenAPI service: every feature's routes composed under one spec.

use poem_openapi::OpenApiService;

use crate::routes::{
    admin::AdminApi, appointments::AppointmentsApi, auth::AuthApi, broker_config::BrokerConfigApi, brokers::BrokersApi,
    calendar::CalendarApi, calls::CallsApi, campaigns::CampaignsApi, chat::ChatApi, chat_config::ChatConfigApi,
    conversations::ConversationsApi, costs::CostsApi, kb::KbApi, leads::LeadsApi, pipeline::LeadRulesApi,
    pipeline::PipelineApi, tasks::TasksApi, templates::TemplatesApi, utility::UtilityApi, voice_config::VoiceConfigApi,
    webhooks::WebhooksApi,
};

/// Platform, accounts and administration.
pub type CoreApis = (UtilityApi, AuthApi, BrokersApi, BrokerConfigApi, AdminApi, TasksApi, CostsApi);
/// Leads and what Sofía does with them.
pub type LeadApis =
    (LeadsApi, LeadRulesApi, PipelineApi, ChatApi, ConversationsApi, KbApi, AppointmentsApi, CalendarApi);
/// Every feature's routes, grouped (poem-openapi composes tuples of at most 16).
/// Channels, campaigns and voice.
pub type ChannelApis = (TemplatesApi, CampaignsApi, ChatConfigApi, WebhooksApi, CallsApi, VoiceConfigApi);
pub type Apis = (CoreApis, LeadApis, ChannelApis);

pub fn apis() -> Apis {
    (
        (UtilityApi, AuthApi, BrokersApi, BrokerConfigApi, AdminApi, TasksApi, CostsApi),
        (LeadsApi, LeadRulesApi, PipelineApi, ChatApi, ConversationsApi, KbApi, AppointmentsApi, CalendarApi),
        (TemplatesApi, CampaignsApi, ChatConfigApi, WebhooksApi, CallsApi, VoiceConfigApi),
    )
}

pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(apis(), "Corredor API", env!("CARGO_PKG_VERSION")).description(
        "Backend of an AI lead-qualification CRM for real-estate brokerages. Errors are JSON \
             `{detail, code}`; validation errors are 422 with `detail` as a list of `{loc, msg, type}`.",
    )
}

/// The spec as pretty JSON, as served at `/openapi.json` and committed as `openapi.json`.
pub fn spec_json() -> String {
    service().spec()
}
