//! Bearer authentication: verify the JWT, re-check the user in the database (briefly cached), apply
//! the per-user rate limit and build the caller's `Ctx`.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use shared::auth::{AuthUser, jwt, service as auth_service};
use shared::ctx::Origin;
use shared::ratelimit::{self, Limit};
use shared::{Ctx, Error};

use crate::error::ApiError;
use crate::metrics::RequestId;
use crate::state::AppState;

/// The authenticated caller.
pub struct Caller {
    pub user: AuthUser,
    pub ctx: Ctx,
}

/// `Authorization: Bearer <JWT>` from `/auth/login` or `/auth/register`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check")]
pub struct Auth(pub Caller);

impl std::ops::Deref for Auth {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.0.ctx
    }
}

fn state(req: &Request) -> Result<&AppState, ApiError> {
    req.data::<AppState>().ok_or_else(|| ApiError(Error::internal(anyhow::anyhow!("AppState missing"))))
}

/// The client address: the socket peer, or the first `X-Forwarded-For` entry behind a trusted router.
pub fn client_ip(req: &Request, trust_forwarded_for: bool) -> String {
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if trust_forwarded_for && let Some(first) = forwarded {
        return first.chars().take(64).collect();
    }
    match req.remote_addr().as_socket_addr() {
        Some(addr) => addr.ip().to_string(),
        None => "unknown".into(),
    }
}

/// Where the request came from, for audit rows.
pub fn origin(req: &Request, trust_forwarded_for: bool) -> Origin {
    Origin {
        ip: Some(client_ip(req, trust_forwarded_for)),
        user_agent: req.headers().get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
    }
}

async fn check(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = state(req)?;
    let infra = &state.infra;
    let claims = jwt::verify(&infra.settings, &bearer.token).map_err(ApiError)?;
    let user = auth_service::resolve(&infra.db, &infra.users, &claims).await.map_err(ApiError)?;
    let limits = &infra.settings.rate_limits;
    if limits.enabled {
        let limit = Limit { name: "api", limit: limits.api_per_minute, window_secs: 60 };
        ratelimit::hit(&infra.redis, infra.prefix(), limit, &user.id.to_string()).await.map_err(ApiError)?;
    }
    let ctx = user.ctx().with_origin(origin(req, infra.settings.trust_forwarded_for));
    Ok(Caller { user, ctx })
}
