//! A broker's Google Calendar connection: the OAuth consent URL with a signed `state`, the callback
//! that stores the (encrypted) refresh token, status, disconnect, access tokens for the worker and
//! the free/busy read that `available-slots` subtracts.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::availability::{Busy, subtract};
use super::repo;
use crate::ctx::{Ctx, Role};
use crate::entities::broker_calendar_connections as connections;
use crate::error::{Error, Result};
use crate::integrations::google::{self, calendar as gcal, oauth};
use crate::{Infra, audit};

/// The `aud` of a consent `state`, so it can never pass as an access token (which has none) nor
/// an access token as a state.
const STATE_AUDIENCE: &str = "corredor:google-calendar-oauth";
/// The longest a slots request waits for Google's free/busy (a token refresh may come first).
const FREE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long the user has to finish the consent screen.
const STATE_TTL: Duration = Duration::minutes(10);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StateClaims {
    aud: String,
    broker_id: i64,
    user_id: Option<i64>,
    iat: i64,
    exp: i64,
}

/// Signs the `state` of a consent URL: HS256 with `SECRET_KEY`, the broker and the user, 10 minutes.
fn sign_state(settings: &crate::Settings, broker_id: i64, user_id: Option<i64>, now: DateTime<Utc>) -> Result<String> {
    let claims = StateClaims {
        aud: STATE_AUDIENCE.into(),
        broker_id,
        user_id,
        iat: now.timestamp(),
        exp: (now + STATE_TTL).timestamp(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(settings.jwt_secret()))
        .map_err(Error::internal)
}

fn verify_state(settings: &crate::Settings, state: &str) -> Result<StateClaims> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.set_audience(&[STATE_AUDIENCE]);
    v.set_required_spec_claims(&["exp", "aud"]);
    jsonwebtoken::decode::<StateClaims>(state, &DecodingKey::from_secret(settings.jwt_secret()), &v)
        .map(|d| d.claims)
        .map_err(|_| Error::bad_request("invalid_state", "The calendar authorization link is invalid or has expired"))
}

/// The broker's connection, if any.
pub async fn connection(db: &impl ConnectionTrait, broker_id: i64) -> Result<Option<connections::Model>> {
    Ok(connections::Entity::find().filter(connections::Column::BrokerId.eq(broker_id)).one(db).await?)
}

/// `GET /api/broker/calendar/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub connected: bool,
    pub email: Option<String>,
    pub calendar_id: Option<String>,
    pub connected_at: Option<DateTime<Utc>>,
    /// Whether this server has Google OAuth credentials at all.
    pub configured: bool,
}

/// Any user of the broker may see whether its calendar is connected (SUPERADMIN names the broker).
pub async fn status(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Status> {
    let broker_id = ctx.target_broker(broker_id)?;
    let configured = google::oauth_client(&infra.settings).is_ok();
    Ok(match connection(&infra.db, broker_id).await? {
        Some(c) => Status {
            connected: true,
            email: c.account_email,
            calendar_id: Some(c.calendar_id),
            connected_at: Some(c.connected_at),
            configured,
        },
        None => Status { connected: false, email: None, calendar_id: None, connected_at: None, configured },
    })
}

/// The Google consent URL for the caller's broker (ADMIN; SUPERADMIN names the broker).
pub fn auth_url(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<String> {
    ctx.require_admin()?;
    let broker_id = ctx.target_broker(broker_id)?;
    let client = google::oauth_client(&infra.settings)?;
    oauth::auth_url(client, &sign_state(&infra.settings, broker_id, ctx.user_id, Utc::now())?)
}

/// How the consent ended, for the redirect back to the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    Connected { broker_id: i64 },
    Failed { broker_id: i64, reason: &'static str },
}

/// Completes the consent redirect: checks `state` (a bad or expired one is 400 `invalid_state` and
/// nothing is stored), exchanges the code, reads the account's email and stores the connection
/// with its refresh token encrypted. Google's refusals end as [`Callback::Failed`].
pub async fn complete(infra: &Infra, code: Option<&str>, state: &str, error: Option<&str>) -> Result<Callback> {
    let claims = verify_state(&infra.settings, state)?;
    let broker_id = claims.broker_id;
    let client = google::oauth_client(&infra.settings)?;
    let failed = |reason| Ok(Callback::Failed { broker_id, reason });
    if error.is_some() {
        tracing::info!(broker_id, error, "Google consent was not given");
        return failed("consent_denied");
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else { return failed("missing_code") };
    let tokens = match oauth::exchange_code(infra, client, code).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(broker_id, error = %e, "Google code exchange failed");
            return failed("token_exchange_failed");
        }
    };
    let existing = connection(&infra.db, broker_id).await?;
    let refresh_token = match (&tokens.refresh_token, &existing) {
        (Some(t), _) => infra.cipher.encrypt(t.expose_secret()),
        // Google omits it when the account granted access before; keep the one we hold.
        (None, Some(c)) => c.refresh_token.clone(),
        (None, None) => {
            tracing::warn!(broker_id, "Google returned no refresh token");
            return failed("no_refresh_token");
        }
    };
    let email = match oauth::account_email(infra, &tokens.access_token).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(broker_id, error = %e, "could not read the Google account's email");
            None
        }
    };
    let expires_at = Utc::now() + Duration::seconds(tokens.expires_in.clamp(0, 86_400));
    let stored = infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO broker_calendar_connections \
               (broker_id, provider, account_email, refresh_token, access_token, access_token_expires_at, connected_by) \
             SELECT $1, 'google', $2, $3, $4, $5, (SELECT id FROM users WHERE id = $6) \
             WHERE EXISTS (SELECT 1 FROM brokers WHERE id = $1) \
             ON CONFLICT (broker_id) DO UPDATE SET account_email = COALESCE(EXCLUDED.account_email, \
               broker_calendar_connections.account_email), refresh_token = EXCLUDED.refresh_token, \
               access_token = EXCLUDED.access_token, access_token_expires_at = EXCLUDED.access_token_expires_at, \
               connected_by = EXCLUDED.connected_by, connected_at = now(), updated_at = now()",
            [
                broker_id.into(),
                email.clone().into(),
                refresh_token.into(),
                infra.cipher.encrypt(tokens.access_token.expose_secret()).into(),
                expires_at.into(),
                claims.user_id.into(),
            ],
        ))
        .await?;
    if stored.rows_affected() == 0 {
        return failed("broker_not_found");
    }
    let ctx = Ctx { user_id: claims.user_id, broker_id: Some(broker_id), role: Role::Admin, origin: None };
    let entry = audit::Entry {
        action: "calendar_connect",
        resource_type: "broker_calendar_connection",
        resource_id: None,
        broker_id: Some(broker_id),
        changes: json!({"provider": "google", "email": email}),
    };
    audit::record(&infra.db, &ctx, entry).await?;
    Ok(Callback::Connected { broker_id })
}

/// Forgets the broker's connection (ADMIN). Events already created stay in the calendar. Returns
/// whether there was one.
pub async fn disconnect(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<bool> {
    ctx.require_admin()?;
    let broker_id = ctx.target_broker(broker_id)?;
    let deleted = connections::Entity::delete_many()
        .filter(connections::Column::BrokerId.eq(broker_id))
        .exec(&infra.db)
        .await?
        .rows_affected
        > 0;
    if deleted {
        let entry = audit::Entry {
            action: "calendar_disconnect",
            resource_type: "broker_calendar_connection",
            resource_id: None,
            broker_id: Some(broker_id),
            changes: json!({"provider": "google"}),
        };
        audit::record(&infra.db, ctx, entry).await?;
    }
    Ok(deleted)
}

/// A usable access token: the cached one while it has a minute left (unless `force`), else a
/// refreshed one (cached, encrypted).
pub async fn access_token(infra: &Infra, conn: &connections::Model, force: bool) -> Result<SecretString> {
    let cached = conn
        .access_token
        .as_deref()
        .filter(|_| !force && conn.access_token_expires_at.is_some_and(|t| t > Utc::now() + Duration::minutes(1)))
        .and_then(|t| infra.cipher.decrypt(t));
    if let Some(token) = cached {
        return Ok(SecretString::from(token));
    }
    let client = google::oauth_client(&infra.settings)?;
    let refresh = infra
        .cipher
        .decrypt(&conn.refresh_token)
        .map(SecretString::from)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("the stored Google refresh token cannot be decrypted")))?;
    let tokens = oauth::refresh(infra, client, &refresh).await?;
    let expires_at = Utc::now() + Duration::seconds(tokens.expires_in.clamp(0, 86_400));
    let rotated = tokens.refresh_token.as_ref().map(|t| infra.cipher.encrypt(t.expose_secret()));
    infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE broker_calendar_connections SET access_token = $2, access_token_expires_at = $3, \
               refresh_token = COALESCE($4, refresh_token), updated_at = now() WHERE id = $1",
            [
                conn.id.into(),
                infra.cipher.encrypt(tokens.access_token.expose_secret()).into(),
                expires_at.into(),
                rotated.into(),
            ],
        ))
        .await?;
    Ok(tokens.access_token)
}

/// Whether `err` is Google refusing our access token (expired early or revoked): worth one refresh.
pub fn is_unauthorized(err: &Error) -> bool {
    matches!(err, Error::Upstream { status: Some(401), .. })
}

/// The busy time of the broker's Google Calendar in `[from, to)`, minus the events of our own
/// appointments (those block only their agent, and are already counted). `None` when the broker is
/// not connected; on any failure (Google down, circuit open) a warning and `None`: slots then come
/// from our database alone.
pub async fn google_busy(infra: &Infra, broker_id: i64, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Vec<Busy>> {
    let conn = match connection(&infra.db, broker_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(broker_id, error = %e, "could not read the calendar connection");
            return None;
        }
    };
    let wait = infra.settings.providers.timeout.min(FREE_BUSY_TIMEOUT);
    let read = async {
        let token = access_token(infra, &conn, false).await?;
        let busy = match gcal::free_busy(infra, &token, &conn.calendar_id, (from, to), wait).await {
            Err(e) if is_unauthorized(&e) => {
                let token = access_token(infra, &conn, true).await?;
                gcal::free_busy(infra, &token, &conn.calendar_id, (from, to), wait).await?
            }
            other => other?,
        };
        let ours = repo::synced_intervals(&infra.db, broker_id, from, to).await?;
        Ok::<_, Error>(subtract(&busy, &ours))
    };
    let failed = |e: &dyn std::fmt::Display| {
        tracing::warn!(broker_id, error = %e, "Google free/busy unavailable; offering slots from our data only");
        None
    };
    match tokio::time::timeout(wait * 2, read).await {
        Ok(Ok(busy)) => Some(busy.into_iter().map(|(start, end)| Busy { start, end, agent_id: None }).collect()),
        Ok(Err(e)) => failed(&e),
        Err(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> crate::Settings {
        crate::Settings::from_lookup(|_| None).unwrap()
    }

    #[test]
    fn a_state_carries_its_broker_for_ten_minutes() {
        let s = settings();
        let now = Utc::now();
        let state = sign_state(&s, 7, Some(3), now).unwrap();
        let claims = verify_state(&s, &state).unwrap();
        assert_eq!((claims.broker_id, claims.user_id), (7, Some(3)));
        assert_eq!(claims.exp - claims.iat, 600);
        let expired = sign_state(&s, 7, Some(3), now - Duration::minutes(11)).unwrap();
        assert_eq!(verify_state(&s, &expired).unwrap_err().code(), "invalid_state");
        let mut tampered = state.clone();
        tampered.pop();
        assert!(verify_state(&s, &tampered).is_err());
    }

    #[test]
    fn states_and_access_tokens_never_pass_for_each_other() {
        let s = settings();
        let access = crate::auth::jwt::issue(&s, 1, "a@b.cl", "ADMIN", Some(7)).unwrap();
        assert!(verify_state(&s, &access).is_err());
        let state = sign_state(&s, 7, Some(1), Utc::now()).unwrap();
        assert!(crate::auth::jwt::verify(&s, &state).is_err());
    }
}
