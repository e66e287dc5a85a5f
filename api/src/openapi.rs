//! The OpenAPI service: every feature's routes composed under one spec.

use poem_openapi::OpenApiService;

use crate::routes::{
    admin::AdminApi, appointments::AppointmentsApi, auth::AuthApi, brokers::BrokersApi, calendar::CalendarApi,
    chat::ChatApi, kb::KbApi, leads::LeadsApi, tasks::TasksApi, utility::UtilityApi,
};

pub type Apis =
    (UtilityApi, AuthApi, LeadsApi, BrokersApi, AdminApi, TasksApi, KbApi, AppointmentsApi, CalendarApi, ChatApi);

pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (UtilityApi, AuthApi, LeadsApi, BrokersApi, AdminApi, TasksApi, KbApi, AppointmentsApi, CalendarApi, ChatApi),
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
