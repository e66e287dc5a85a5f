//! The OpenAPI service: every feature's routes composed under one spec.

use poem_openapi::OpenApiService;

use crate::routes::{
    admin::AdminApi, appointments::AppointmentsApi, auth::AuthApi, broker_config::BrokerConfigApi, brokers::BrokersApi,
    calendar::CalendarApi, chat::ChatApi, conversations::ConversationsApi, costs::CostsApi, kb::KbApi, leads::LeadsApi,
    tasks::TasksApi, utility::UtilityApi,
};

pub type Apis = (
    UtilityApi,
    AuthApi,
    LeadsApi,
    BrokersApi,
    BrokerConfigApi,
    AdminApi,
    TasksApi,
    KbApi,
    AppointmentsApi,
    CalendarApi,
    ConversationsApi,
    CostsApi,
    ChatApi,
);

pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            UtilityApi,
            AuthApi,
            LeadsApi,
            BrokersApi,
            BrokerConfigApi,
            AdminApi,
            TasksApi,
            KbApi,
            AppointmentsApi,
            CalendarApi,
            ConversationsApi,
            CostsApi,
            ChatApi,
        ),
        "Corredor API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Backend of an AI lead-qualification CRM for real-estate brokerages. Errors are JSON \
             `{detail, code}`; validation errors are 422 with `detail` as a list of `{loc, msg, type}`.",
    )
}

/// The spec as pretty JSON, as served at `/openapi.json` and committed as `openapi.json`.
pub fn spec_json() -> String {
    service().spec()
}
