//! `/api/v1/templates`: message templates per broker (reference §3.6, SPEC §10). ADMIN manages its
//! broker's, AGENT reads and renders them, SUPERADMIN names a `broker_id`.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use shared::templates::{self, ListQuery, NewTemplate, Template, TemplatePatch};

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

pub struct TemplatesApi;

#[derive(Object)]
pub struct TemplateOut {
    pub id: i64,
    pub broker_id: i64,
    pub name: String,
    /// `telegram`, `whatsapp`, `email`, `call` or `webchat`
    pub channel: String,
    /// `perfilador`, `calificador_financiero`, `agendador`, `seguimiento`, or null (generic)
    pub agent_type: Option<String>,
    pub content: String,
    /// The `{{placeholders}}` the content uses.
    pub variables: Vec<String>,
    /// WhatsApp: the approved template sent outside the 24-hour window.
    pub whatsapp_template_name: Option<String>,
    pub whatsapp_language: Option<String>,
    /// The variables that fill the approved template's body parameters, in order.
    pub whatsapp_parameters: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Template> for TemplateOut {
    fn from(t: Template) -> Self {
        TemplateOut {
            id: t.id,
            broker_id: t.broker_id,
            name: t.name,
            channel: t.channel,
            agent_type: t.agent_type,
            content: t.content,
            variables: t.variables,
            whatsapp_template_name: t.whatsapp_template_name,
            whatsapp_language: t.whatsapp_language,
            whatsapp_parameters: t.whatsapp_parameters,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Object)]
pub struct TemplateIn {
    /// At most 200 characters; unique per broker and channel.
    pub name: String,
    pub channel: String,
    /// At most 10 000 characters, with `{{variables}}`.
    pub content: String,
    pub agent_type: Option<String>,
    /// Omitted, null or empty: taken from the content.
    pub variables: Option<Vec<String>>,
    pub whatsapp_template_name: Option<String>,
    pub whatsapp_language: Option<String>,
    pub whatsapp_parameters: Option<Vec<String>>,
    /// SUPERADMIN: the broker the template belongs to.
    pub broker_id: Option<i64>,
}

#[derive(Object)]
pub struct TemplateUpdate {
    pub name: Option<String>,
    pub content: Option<String>,
    pub channel: Option<String>,
    pub agent_type: MaybeUndefined<String>,
    /// Null: taken from the content again (also when only the content changes).
    pub variables: MaybeUndefined<Vec<String>>,
    pub whatsapp_template_name: MaybeUndefined<String>,
    pub whatsapp_language: MaybeUndefined<String>,
    pub whatsapp_parameters: Option<Vec<String>>,
}

#[derive(Object)]
pub struct TemplateList {
    pub data: Vec<TemplateOut>,
}

#[derive(Object)]
pub struct RenderIn {
    pub lead_id: i64,
}

#[derive(Object)]
pub struct RenderOut {
    pub template_id: i64,
    pub lead_id: i64,
    pub channel: String,
    pub rendered: String,
    pub variables_used: Vec<String>,
    /// Placeholders with no value for this lead (rendered empty).
    pub missing: Vec<String>,
    /// `{name, language, parameters}` when the template names an approved WhatsApp template.
    pub whatsapp_template: Option<Value>,
}

#[derive(ApiResponse)]
pub enum TemplateCreated {
    #[oai(status = 201)]
    Created(Json<TemplateOut>),
}

#[derive(ApiResponse)]
pub enum TemplateDeleted {
    #[oai(status = 204)]
    Ok,
}

#[OpenApi(tag = "ApiTags::Templates")]
impl TemplatesApi {
    /// Create a template (ADMIN)
    #[oai(path = "/api/v1/templates", method = "post", operation_id = "templates_create")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<TemplateIn>,
    ) -> ApiResult<TemplateCreated> {
        let b = body.0;
        let t = templates::create(
            &state.infra,
            &auth,
            NewTemplate {
                name: b.name,
                channel: b.channel,
                content: b.content,
                agent_type: b.agent_type,
                variables: b.variables,
                whatsapp_template_name: b.whatsapp_template_name,
                whatsapp_language: b.whatsapp_language,
                whatsapp_parameters: b.whatsapp_parameters,
                broker_id: b.broker_id,
            },
        )
        .await?;
        Ok(TemplateCreated::Created(Json(t.into())))
    }

    /// The broker's templates, newest first
    #[oai(path = "/api/v1/templates", method = "get", operation_id = "templates_list")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        channel: Query<Option<String>>,
        agent_type: Query<Option<String>>,
        /// SUPERADMIN: one broker (all when omitted)
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<TemplateList>> {
        let q = ListQuery { channel: channel.0, agent_type: agent_type.0, broker_id: broker_id.0 };
        let data = templates::list(&state.infra, &auth, &q).await?;
        Ok(Json(TemplateList { data: data.into_iter().map(Into::into).collect() }))
    }

    /// The templates of one agent type
    #[oai(path = "/api/v1/templates/agent-type/:agent_type", method = "get", operation_id = "templates_by_agent_type")]
    async fn by_agent_type(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        agent_type: Path<String>,
        channel: Query<Option<String>>,
    ) -> ApiResult<Json<TemplateList>> {
        let q = ListQuery { channel: channel.0, agent_type: Some(agent_type.0), broker_id: None };
        let data = templates::list(&state.infra, &auth, &q).await?;
        Ok(Json(TemplateList { data: data.into_iter().map(Into::into).collect() }))
    }

    /// One template
    #[oai(path = "/api/v1/templates/:template_id", method = "get", operation_id = "templates_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, template_id: Path<i64>) -> ApiResult<Json<TemplateOut>> {
        Ok(Json(templates::get(&state.infra, &auth, template_id.0).await?.into()))
    }

    /// Change a template (ADMIN)
    ///
    /// When the content changes and `variables` is not sent, the variables are taken from the new content.
    #[oai(path = "/api/v1/templates/:template_id", method = "put", operation_id = "templates_update")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        template_id: Path<i64>,
        body: JsonBody<TemplateUpdate>,
    ) -> ApiResult<Json<TemplateOut>> {
        let b = body.0;
        let patch = TemplatePatch {
            name: b.name,
            content: b.content,
            channel: b.channel,
            agent_type: maybe(b.agent_type),
            variables: maybe(b.variables),
            whatsapp_template_name: maybe(b.whatsapp_template_name),
            whatsapp_language: maybe(b.whatsapp_language),
            whatsapp_parameters: b.whatsapp_parameters,
        };
        Ok(Json(templates::update(&state.infra, &auth, template_id.0, patch).await?.into()))
    }

    /// Delete a template (ADMIN)
    #[oai(path = "/api/v1/templates/:template_id", method = "delete", operation_id = "templates_delete")]
    async fn delete(&self, state: Data<&AppState>, auth: Auth, template_id: Path<i64>) -> ApiResult<TemplateDeleted> {
        templates::delete(&state.infra, &auth, template_id.0).await?;
        Ok(TemplateDeleted::Ok)
    }

    /// Preview a template for one lead
    ///
    /// Fills the lead's name, phone, email, location, budget, score and stage, the broker's and agent's
    /// names, today's date, the next appointment's date and time, and every metadata key; unknown
    /// placeholders are left empty.
    #[oai(path = "/api/v1/templates/:template_id/render", method = "post", operation_id = "templates_render")]
    async fn render(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        template_id: Path<i64>,
        body: JsonBody<RenderIn>,
    ) -> ApiResult<Json<RenderOut>> {
        let r = templates::render_for_lead(&state.infra, &auth, template_id.0, body.0.lead_id).await?;
        Ok(Json(RenderOut {
            template_id: r.template_id,
            lead_id: r.lead_id,
            channel: r.channel,
            rendered: r.rendered,
            variables_used: r.variables_used,
            missing: r.missing,
            whatsapp_template: r.whatsapp_template,
        }))
    }
}
