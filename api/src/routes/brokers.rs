//! `/api/brokers` (brokers, SUPERADMIN writes) and `/api/broker/users` (users of a broker).

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use shared::brokers::service::{self as brokers, BrokerPatch};
use shared::brokers::users::{self, NewUser, UserPatch};
use shared::entities;

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;
use poem::web::Data;

pub struct BrokersApi;

#[derive(Object)]
pub struct BrokerOut {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub business_hours: Option<String>,
    pub service_zones: Option<Value>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<entities::brokers::Model> for BrokerOut {
    fn from(b: entities::brokers::Model) -> Self {
        BrokerOut {
            id: b.id,
            name: b.name,
            slug: b.slug,
            contact_phone: b.contact_phone,
            contact_email: b.contact_email,
            business_hours: b.business_hours,
            service_zones: b.service_zones,
            is_active: b.is_active,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

#[derive(Object)]
pub struct BrokerCreate {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// Derived from the name when omitted; must be free when given.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub slug: Option<String>,
    #[oai(validator(max_length = 50))]
    pub contact_phone: Option<String>,
    #[oai(validator(max_length = 254))]
    pub contact_email: Option<String>,
    #[oai(validator(max_length = 100))]
    pub business_hours: Option<String>,
    pub service_zones: Option<Value>,
}

/// Partial update; `null` clears an optional field.
#[derive(Object)]
pub struct BrokerUpdate {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    #[oai(validator(min_length = 1, max_length = 100))]
    pub slug: Option<String>,
    #[oai(validator(max_length = 50))]
    pub contact_phone: MaybeUndefined<String>,
    #[oai(validator(max_length = 254))]
    pub contact_email: MaybeUndefined<String>,
    #[oai(validator(max_length = 100))]
    pub business_hours: MaybeUndefined<String>,
    pub service_zones: MaybeUndefined<Value>,
    pub is_active: Option<bool>,
}

#[derive(Object)]
pub struct UserOut {
    pub id: i64,
    pub email: String,
    pub name: String,
    /// `SUPERADMIN`, `ADMIN` or `AGENT`.
    pub role: String,
    pub broker_id: Option<i64>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

impl From<entities::users::Model> for UserOut {
    fn from(u: entities::users::Model) -> Self {
        UserOut {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            broker_id: u.broker_id,
            is_active: u.is_active,
            created_at: u.created_at,
        }
    }
}

#[derive(Object)]
pub struct UserList {
    pub users: Vec<UserOut>,
}

#[derive(Object)]
pub struct UserCreate {
    #[oai(validator(max_length = 254))]
    pub email: String,
    /// At least 8 characters, one digit and one special character.
    #[oai(validator(max_length = 256))]
    pub password: String,
    #[oai(validator(max_length = 200))]
    pub name: String,
    /// `admin` or `agent` (default).
    pub role: Option<String>,
    /// Required for SUPERADMIN; an ADMIN always creates in its own broker.
    pub broker_id: Option<i64>,
}

#[derive(Object)]
pub struct UserUpdate {
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
    /// `admin` or `agent`.
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

#[derive(Object)]
pub struct UserResult {
    pub message: String,
    pub user: UserOut,
}

#[derive(Object)]
pub struct Message {
    pub message: String,
}

#[derive(ApiResponse)]
pub enum BrokerCreated {
    /// Created with its default configurations
    #[oai(status = 201)]
    Ok(Json<BrokerOut>),
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done
    #[oai(status = 204)]
    Ok,
}

fn check_email(e: Option<&str>) -> shared::Result<()> {
    match e {
        Some(e) if shared::text::Email::parse(e).is_err() => {
            Err(shared::Error::invalid_body("contact_email", "value is not a valid email address"))
        }
        _ => Ok(()),
    }
}

impl BrokersApi {
    async fn create_broker(state: &AppState, auth: &Auth, b: BrokerCreate) -> ApiResult<BrokerCreated> {
        check_email(b.contact_email.as_deref())?;
        let patch = BrokerPatch {
            name: Some(shared::text::clean_text(&b.name)).filter(|n| !n.is_empty()),
            slug: b.slug,
            contact_phone: Some(b.contact_phone),
            contact_email: Some(b.contact_email),
            business_hours: Some(b.business_hours),
            service_zones: Some(b.service_zones),
            is_active: None,
        };
        Ok(BrokerCreated::Ok(Json(brokers::create(&state.infra.db, auth, patch).await?.into())))
    }

    async fn list_brokers(
        state: &AppState,
        auth: &Auth,
        skip: u64,
        limit: u64,
        include_inactive: bool,
    ) -> ApiResult<Json<Vec<BrokerOut>>> {
        let rows = brokers::list(&state.infra.db, auth, skip, limit, include_inactive).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }
}

#[OpenApi]
impl BrokersApi {
    /// Create a broker (SUPERADMIN)
    #[oai(path = "/api/brokers", method = "post", operation_id = "brokers_create", tag = "ApiTags::Brokers")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<BrokerCreate>,
    ) -> ApiResult<BrokerCreated> {
        Self::create_broker(&state, &auth, body.0).await
    }

    /// List brokers
    ///
    /// SUPERADMIN: every active broker (all with `include_inactive`), newest first. Others: their own.
    #[oai(path = "/api/brokers", method = "get", operation_id = "brokers_list", tag = "ApiTags::Brokers")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(default, validator(minimum(value = "0")))] skip: Query<u64>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
        #[oai(default)] include_inactive: Query<bool>,
    ) -> ApiResult<Json<Vec<BrokerOut>>> {
        Self::list_brokers(&state, &auth, skip.0, limit.0, include_inactive.0).await
    }

    /// Get a broker (SUPERADMIN any; others their own, else 404)
    #[oai(path = "/api/brokers/:broker_id", method = "get", operation_id = "brokers_get", tag = "ApiTags::Brokers")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, broker_id: Path<i64>) -> ApiResult<Json<BrokerOut>> {
        Ok(Json(brokers::get(&state.infra.db, &auth, broker_id.0).await?.into()))
    }

    /// Update a broker (SUPERADMIN)
    #[oai(path = "/api/brokers/:broker_id", method = "put", operation_id = "brokers_update", tag = "ApiTags::Brokers")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Path<i64>,
        body: JsonBody<BrokerUpdate>,
    ) -> ApiResult<Json<BrokerOut>> {
        let b = body.0;
        if let MaybeUndefined::Value(e) = &b.contact_email {
            check_email(Some(e))?;
        }
        let patch = BrokerPatch {
            name: b.name.map(|n| shared::text::clean_text(&n)).filter(|n| !n.is_empty()),
            slug: b.slug,
            contact_phone: maybe(b.contact_phone),
            contact_email: maybe(b.contact_email),
            business_hours: maybe(b.business_hours),
            service_zones: maybe(b.service_zones),
            is_active: b.is_active,
        };
        let broker = brokers::update(&state.infra.db, &auth, broker_id.0, patch).await?;
        state.infra.users.clear();
        Ok(Json(broker.into()))
    }

    /// Deactivate a broker (SUPERADMIN)
    ///
    /// Soft delete: its users lose access at once; data is kept.
    #[oai(
        path = "/api/brokers/:broker_id",
        method = "delete",
        operation_id = "brokers_deactivate",
        tag = "ApiTags::Brokers"
    )]
    async fn delete(&self, state: Data<&AppState>, auth: Auth, broker_id: Path<i64>) -> ApiResult<NoContent> {
        brokers::deactivate(&state.infra.db, &auth, broker_id.0).await?;
        state.infra.users.clear();
        Ok(NoContent::Ok)
    }

    /// List users of a broker (ADMIN: own broker; SUPERADMIN: all or `broker_id`)
    #[oai(path = "/api/broker/users", method = "get", operation_id = "broker_users_list", tag = "ApiTags::BrokerUsers")]
    async fn users(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<UserList>> {
        let rows = users::list(&state.infra.db, &auth, broker_id.0).await?;
        Ok(Json(UserList { users: rows.into_iter().map(Into::into).collect() }))
    }

    /// Create a user in a broker (ADMIN/SUPERADMIN)
    #[oai(
        path = "/api/broker/users",
        method = "post",
        operation_id = "broker_users_create",
        tag = "ApiTags::BrokerUsers"
    )]
    async fn create_user(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<UserCreate>,
    ) -> ApiResult<Json<UserResult>> {
        let b = body.0;
        let user = users::create(
            &state.infra.db,
            &auth,
            NewUser { email: b.email, password: b.password, name: b.name, role: b.role, broker_id: b.broker_id },
        )
        .await?;
        Ok(Json(UserResult { message: "User created".into(), user: user.into() }))
    }

    /// Update a user (name, role, active)
    #[oai(
        path = "/api/broker/users/:user_id",
        method = "put",
        operation_id = "broker_users_update",
        tag = "ApiTags::BrokerUsers"
    )]
    async fn update_user(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        user_id: Path<i64>,
        body: JsonBody<UserUpdate>,
    ) -> ApiResult<Json<UserResult>> {
        let b = body.0;
        let user = users::update(
            &state.infra.db,
            &auth,
            user_id.0,
            UserPatch { name: b.name, role: b.role, is_active: b.is_active },
        )
        .await?;
        state.infra.users.invalidate(user.id);
        Ok(Json(UserResult { message: "User updated".into(), user: user.into() }))
    }

    /// Deactivate a user
    ///
    /// The user loses access at once. Nobody can deactivate themselves; only a SUPERADMIN can
    /// deactivate a SUPERADMIN.
    #[oai(
        path = "/api/broker/users/:user_id",
        method = "delete",
        operation_id = "broker_users_deactivate",
        tag = "ApiTags::BrokerUsers"
    )]
    async fn deactivate_user(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        user_id: Path<i64>,
    ) -> ApiResult<Json<Message>> {
        let user = users::deactivate(&state.infra.db, &auth, user_id.0).await?;
        state.infra.users.invalidate(user.id);
        Ok(Json(Message { message: "User deactivated".into() }))
    }
}

fn default_limit() -> u64 {
    100
}
