//! `/auth`: register, login, me.

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use shared::auth::{Registration, service};
use shared::ratelimit::{self, Limit};

use super::ApiTags;
use crate::body::JsonBody;
use crate::error::ApiResult;
use crate::security::{Auth, client_ip, origin};
use crate::state::AppState;
use poem::web::Data;

pub struct AuthApi;

#[derive(Object)]
pub struct RegisterBody {
    /// Becomes the login; validated and lower-cased.
    #[oai(validator(max_length = 254))]
    pub email: String,
    /// At least 8 characters, one digit and one special character.
    #[oai(validator(max_length = 256))]
    pub password: String,
    /// The brokerage's name; its slug is derived from it.
    #[oai(validator(max_length = 200))]
    pub broker_name: String,
}

#[derive(Object)]
pub struct LoginBody {
    #[oai(validator(max_length = 254))]
    pub email: String,
    #[oai(validator(max_length = 256))]
    pub password: String,
}

#[derive(Object)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
}

#[derive(Object)]
pub struct MeResponse {
    pub id: i64,
    pub email: String,
    pub name: String,
    /// `SUPERADMIN`, `ADMIN` or `AGENT`.
    pub role: String,
    pub broker_id: Option<i64>,
    pub is_active: bool,
}

fn token(access_token: String) -> Json<TokenResponse> {
    Json(TokenResponse { access_token, token_type: "bearer".into() })
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Register a brokerage
    ///
    /// Creates the broker (with a unique slug), its ADMIN user and default prompt, lead-scoring and
    /// channel configurations in one transaction, and returns a token for the new user.
    #[oai(path = "/auth/register", method = "post", operation_id = "auth_register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: JsonBody<RegisterBody>,
    ) -> ApiResult<Json<TokenResponse>> {
        let infra = &state.infra;
        let limits = &infra.settings.rate_limits;
        if limits.enabled {
            let ip = client_ip(req, infra.settings.trust_forwarded_for);
            let limit = Limit { name: "register", limit: limits.register_per_hour, window_secs: 3600 };
            ratelimit::hit(&infra.redis, infra.prefix(), limit, &ip).await?;
        }
        let b = body.0;
        let t = service::register(
            &infra.db,
            &infra.settings,
            Registration {
                email: b.email,
                password: b.password,
                broker_name: b.broker_name,
                origin: origin(req, infra.settings.trust_forwarded_for),
            },
        )
        .await?;
        Ok(token(t))
    }

    /// Log in
    ///
    /// Unknown email and wrong password both answer 401 `invalid_credentials`; a deactivated account
    /// answers 403 `user_inactive`. Limited to 5 attempts a minute per address and email.
    #[oai(path = "/auth/login", method = "post", operation_id = "auth_login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: JsonBody<LoginBody>,
    ) -> ApiResult<Json<TokenResponse>> {
        let infra = &state.infra;
        let limits = &infra.settings.rate_limits;
        if limits.enabled {
            let ip = client_ip(req, infra.settings.trust_forwarded_for);
            let subject = format!("{ip}:{}", body.0.email.trim().to_lowercase());
            let limit = Limit { name: "login", limit: limits.login_per_minute, window_secs: 60 };
            ratelimit::hit(&infra.redis, infra.prefix(), limit, &subject).await?;
        }
        Ok(token(service::login(&infra.db, &infra.settings, &body.0.email, &body.0.password).await?))
    }

    /// The current user
    #[oai(path = "/auth/me", method = "get", operation_id = "auth_me")]
    async fn me(&self, auth: Auth) -> ApiResult<Json<MeResponse>> {
        let u = &auth.0.user;
        Ok(Json(MeResponse {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.clone(),
            broker_id: u.broker_id,
            is_active: u.is_active,
        }))
    }
}
