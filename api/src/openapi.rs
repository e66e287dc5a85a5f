//! The OpenAPI service: every feature's routes composed under one spec, and the spec as served
//! (`/openapi.json`, `/docs`, `/redoc`) with its optional properties marked `nullable`.

use poem::endpoint::make_sync;
use poem::web::Html;
use poem::{Endpoint, Response, Route};
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

mod nullable;

/// The spec as pretty JSON, as served at `/openapi.json` and committed as `openapi.json`: poem-openapi's
/// with every optional property `nullable` (see [`nullable`]).
pub fn spec_json() -> String {
    let raw = service().spec();
    let mut doc: nullable::Json = match serde_json::from_str(&raw) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::error!(error = %e, "the generated spec is not JSON; serving it unprocessed");
            return raw;
        }
    };
    nullable::mark_optional_properties(&mut doc);
    match serde_json::to_string_pretty(&doc) {
        Ok(spec) => spec,
        Err(e) => {
            tracing::error!(error = %e, "the processed spec does not serialise; serving it unprocessed");
            raw
        }
    }
}

/// `GET /openapi.json`.
pub fn spec_endpoint() -> impl Endpoint<Output = Response> {
    let spec = spec_json();
    make_sync(move |_| Response::builder().content_type("application/json").body(spec.clone()))
}

/// poem-openapi's page `html_of` showing [`spec_json`]. Its pages embed the spec they were built from,
/// so the page of an empty service is taken and that empty spec swapped for ours.
fn page(html_of: fn(&OpenApiService<(), ()>) -> String) -> String {
    let empty = OpenApiService::new((), "", "");
    html_of(&empty).replacen(&empty.spec(), &spec_json(), 1)
}

/// `GET /docs`: Swagger UI. (poem-openapi's also serves an OAuth2 redirect page; the API's only
/// security scheme is a bearer token, so there is none here.)
pub fn swagger_ui() -> impl Endpoint<Output = Response> {
    let html = page(OpenApiService::swagger_ui_html);
    Route::new().at("/", make_sync(move |_| Html(html.clone())))
}

/// `GET /redoc`.
pub fn redoc() -> impl Endpoint<Output = Response> {
    let html = page(OpenApiService::redoc_html);
    Route::new().at("/", make_sync(move |_| Html(html.clone())))
}
