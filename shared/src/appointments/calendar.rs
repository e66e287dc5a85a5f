//! Google Calendar connections: the broker's shared calendar and, when an agent connected one, the
//! agent's own. The OAuth consent URL with a signed `state` (naming the broker, and for an agent's
//! calendar the agent), the one callback that stores the (encrypted) refresh token, status,
//! disconnect, access tokens for the worker, and the free/busy read that `available-slots`
//! subtracts: the broker's calendar blocks everybody, an agent's own calendar blocks that agent.
//!
//! Appointments are written to their agent's calendar when the agent connected one, else to the
//! broker's ([`calendar_for`]; see `sync`).

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, Statement};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::availability::{Busy, subtract};
use super::repo;
use crate::ctx::{Ctx, Role};
use crate::entities::{
    agent_calendar_connections as agent_connections, appointments, broker_calendar_connections as connections, users,
};
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
    /// Set when the consent connects a user's own calendar: that user (the one who asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent_id: Option<i64>,
    iat: i64,
    exp: i64,
}

/// Signs the `state` of a consent URL: HS256 with `SECRET_KEY`, the broker, the user and (for an
/// agent's own calendar) the agent, 10 minutes.
fn sign_state(
    settings: &crate::Settings,
    broker_id: i64,
    user_id: Option<i64>,
    agent_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<String> {
    let claims = StateClaims {
        aud: STATE_AUDIENCE.into(),
        broker_id,
        user_id,
        agent_id,
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

/// Whose calendar a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The broker's shared calendar.
    Broker,
    /// One user's own calendar (an AGENT, or an ADMIN who takes appointments).
    Agent(i64),
}

impl Owner {
    /// As stored in `appointments.google_event_user_id` (NULL: the broker's calendar).
    pub fn user_id(self) -> Option<i64> {
        match self {
            Owner::Broker => None,
            Owner::Agent(u) => Some(u),
        }
    }

    pub fn from_user_id(user_id: Option<i64>) -> Self {
        user_id.map_or(Owner::Broker, Owner::Agent)
    }

    fn table(self) -> &'static str {
        match self {
            Owner::Broker => "broker_calendar_connections",
            Owner::Agent(_) => "agent_calendar_connections",
        }
    }

    fn resource_type(self) -> &'static str {
        match self {
            Owner::Broker => "broker_calendar_connection",
            Owner::Agent(_) => "agent_calendar_connection",
        }
    }
}

/// A stored Google connection, the broker's or an agent's.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    pub id: i64,
    pub owner: Owner,
    pub broker_id: i64,
    pub account_email: Option<String>,
    pub calendar_id: String,
    /// Sealed (`enc:v1:`).
    pub refresh_token: String,
    /// Sealed, when cached.
    pub access_token: Option<String>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    pub connected_at: DateTime<Utc>,
}

impl From<connections::Model> for Connection {
    fn from(m: connections::Model) -> Self {
        Connection {
            id: m.id,
            owner: Owner::Broker,
            broker_id: m.broker_id,
            account_email: m.account_email,
            calendar_id: m.calendar_id,
            refresh_token: m.refresh_token,
            access_token: m.access_token,
            access_token_expires_at: m.access_token_expires_at,
            connected_at: m.connected_at,
        }
    }
}

impl From<agent_connections::Model> for Connection {
    fn from(m: agent_connections::Model) -> Self {
        Connection {
            id: m.id,
            owner: Owner::Agent(m.user_id),
            broker_id: m.broker_id,
            account_email: m.account_email,
            calendar_id: m.calendar_id,
            refresh_token: m.refresh_token,
            access_token: m.access_token,
            access_token_expires_at: m.access_token_expires_at,
            connected_at: m.connected_at,
        }
    }
}

/// The broker's connection, if any.
pub async fn connection(db: &impl ConnectionTrait, broker_id: i64) -> Result<Option<Connection>> {
    Ok(connections::Entity::find().filter(connections::Column::BrokerId.eq(broker_id)).one(db).await?.map(Into::into))
}

/// The own calendar of `user_id`, a user of `broker_id`, if connected.
pub async fn agent_connection(db: &impl ConnectionTrait, broker_id: i64, user_id: i64) -> Result<Option<Connection>> {
    Ok(agent_connections::Entity::find()
        .filter(agent_connections::Column::BrokerId.eq(broker_id))
        .filter(agent_connections::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .map(Into::into))
}

/// The own calendars of those of `user_ids` who connected one.
pub async fn agent_connections(db: &impl ConnectionTrait, broker_id: i64, user_ids: &[i64]) -> Result<Vec<Connection>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(agent_connections::Entity::find()
        .filter(agent_connections::Column::BrokerId.eq(broker_id))
        .filter(agent_connections::Column::UserId.is_in(user_ids.to_vec()))
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// The connection of `owner`'s calendar, if connected.
pub async fn connection_of(db: &impl ConnectionTrait, broker_id: i64, owner: Owner) -> Result<Option<Connection>> {
    match owner {
        Owner::Broker => connection(db, broker_id).await,
        Owner::Agent(user) => agent_connection(db, broker_id, user).await,
    }
}

/// The calendar an appointment of `agent_id` belongs in: the agent's own when connected, else the
/// broker's; `None` when neither is.
pub async fn calendar_for(
    db: &impl ConnectionTrait,
    broker_id: i64,
    agent_id: Option<i64>,
) -> Result<Option<Connection>> {
    if let Some(agent) = agent_id
        && let Some(own) = agent_connection(db, broker_id, agent).await?
    {
        return Ok(Some(own));
    }
    connection(db, broker_id).await
}

/// Whether a change of `appointment` needs a `calendar_sync` job: its event exists in some
/// calendar, or a calendar it belongs in is connected.
pub async fn sync_wanted(db: &impl ConnectionTrait, appointment: &appointments::Model) -> Result<bool> {
    if appointment.google_event_id.is_some() {
        return Ok(true);
    }
    Ok(calendar_for(db, appointment.broker_id, appointment.agent_id).await?.is_some())
}

/// `GET /api/broker/calendar/status` and `GET /api/v1/agents/me/calendar/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub connected: bool,
    pub email: Option<String>,
    pub calendar_id: Option<String>,
    pub connected_at: Option<DateTime<Utc>>,
    /// Whether this server has Google OAuth credentials at all.
    pub configured: bool,
}

fn status_of(conn: Option<Connection>, configured: bool) -> Status {
    match conn {
        Some(c) => Status {
            connected: true,
            email: c.account_email,
            calendar_id: Some(c.calendar_id),
            connected_at: Some(c.connected_at),
            configured,
        },
        None => Status { connected: false, email: None, calendar_id: None, connected_at: None, configured },
    }
}

/// Any user of the broker may see whether its calendar is connected (SUPERADMIN names the broker).
pub async fn status(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Status> {
    let broker_id = ctx.target_broker(broker_id)?;
    let configured = google::oauth_client(&infra.settings).is_ok();
    Ok(status_of(connection(&infra.db, broker_id).await?, configured))
}

/// The caller's broker and user id, for their own calendar: only users of a broker have one.
fn me(ctx: &Ctx) -> Result<(i64, i64)> {
    match (ctx.broker_id, ctx.user_id) {
        (Some(broker), Some(user)) => Ok((broker, user)),
        _ => Err(Error::forbidden("Only users of a broker can connect a calendar of their own")),
    }
}

/// The broker and user whose own calendar a request is about: the caller's (`None`, or its own
/// id), or, for an ADMIN, a user of its broker (SUPERADMIN: of any broker); else 404 `Agent`.
async fn agent_target(infra: &Infra, ctx: &Ctx, user_id: Option<i64>) -> Result<(i64, i64)> {
    match user_id {
        None => me(ctx),
        Some(u) if Some(u) == ctx.user_id => me(ctx),
        Some(u) => {
            ctx.require_admin()?;
            let user = users::Entity::find_by_id(u).one(&infra.db).await?.ok_or(Error::NotFound("Agent"))?;
            let broker = user.broker_id.ok_or(Error::NotFound("Agent"))?;
            if !ctx.is_superadmin() && ctx.broker_id != Some(broker) {
                return Err(Error::NotFound("Agent"));
            }
            Ok((broker, u))
        }
    }
}

/// Whether a user's own calendar is connected: the caller's (`None`), or any of its broker's for an
/// ADMIN.
pub async fn agent_status(infra: &Infra, ctx: &Ctx, user_id: Option<i64>) -> Result<Status> {
    let (broker_id, user) = agent_target(infra, ctx, user_id).await?;
    let configured = google::oauth_client(&infra.settings).is_ok();
    Ok(status_of(agent_connection(&infra.db, broker_id, user).await?, configured))
}

/// One user of the broker who can take appointments, and their own calendar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCalendar {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    pub role: String,
    pub calendar: Status,
}

/// `GET /api/broker/calendar/agents` (ADMIN): every active ADMIN and AGENT of the broker with the
/// state of their own calendar, by name.
pub async fn agent_calendars(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<Vec<AgentCalendar>> {
    ctx.require_admin()?;
    let broker_id = ctx.target_broker(broker_id)?;
    let configured = google::oauth_client(&infra.settings).is_ok();
    let people = users::Entity::find()
        .filter(users::Column::BrokerId.eq(broker_id))
        .filter(users::Column::IsActive.eq(true))
        .filter(users::Column::Role.is_in([Role::Admin.as_str(), Role::Agent.as_str()]))
        .order_by_asc(users::Column::Name)
        .order_by_asc(users::Column::Id)
        .all(&infra.db)
        .await?;
    let ids: Vec<i64> = people.iter().map(|u| u.id).collect();
    let mut conns = agent_connections(&infra.db, broker_id, &ids).await?;
    Ok(people
        .into_iter()
        .map(|u| {
            let own = conns.iter().position(|c| c.owner == Owner::Agent(u.id)).map(|i| conns.swap_remove(i));
            AgentCalendar {
                user_id: u.id,
                name: u.name,
                email: u.email,
                role: u.role,
                calendar: status_of(own, configured),
            }
        })
        .collect())
}

/// The Google consent URL for the caller's broker (ADMIN; SUPERADMIN names the broker).
pub fn auth_url(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<String> {
    ctx.require_admin()?;
    let broker_id = ctx.target_broker(broker_id)?;
    let client = google::oauth_client(&infra.settings)?;
    oauth::auth_url(client, &sign_state(&infra.settings, broker_id, ctx.user_id, None, Utc::now())?)
}

/// The Google consent URL for the caller's own calendar (an active AGENT or ADMIN of a broker).
/// The consent ends at the same callback as the broker's.
pub async fn agent_auth_url(infra: &Infra, ctx: &Ctx) -> Result<String> {
    let (broker_id, user) = me(ctx)?;
    let client = google::oauth_client(&infra.settings)?;
    repo::active_agent(&infra.db, broker_id, user).await?;
    oauth::auth_url(client, &sign_state(&infra.settings, broker_id, Some(user), Some(user), Utc::now())?)
}

/// How the consent ended, for the redirect back to the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    Connected { broker_id: i64, owner: Owner },
    Failed { broker_id: i64, owner: Owner, reason: &'static str },
}

/// The upsert of a broker's connection. `$1` broker, `$2` email, `$3` refresh token, `$4` access
/// token, `$5` its expiry, `$6` the user who connected.
const STORE_BROKER: &str = "INSERT INTO broker_calendar_connections \
       (broker_id, provider, account_email, refresh_token, access_token, access_token_expires_at, connected_by) \
     SELECT $1, 'google', $2, $3, $4, $5, (SELECT id FROM users WHERE id = $6) \
     WHERE EXISTS (SELECT 1 FROM brokers WHERE id = $1) \
     ON CONFLICT (broker_id) DO UPDATE SET account_email = COALESCE(EXCLUDED.account_email, \
       broker_calendar_connections.account_email), refresh_token = EXCLUDED.refresh_token, \
       access_token = EXCLUDED.access_token, access_token_expires_at = EXCLUDED.access_token_expires_at, \
       connected_by = EXCLUDED.connected_by, connected_at = now(), updated_at = now()";

/// The upsert of a user's own connection, same parameters with `$6` the user (who must still be an
/// active user of the broker).
const STORE_AGENT: &str = "INSERT INTO agent_calendar_connections \
       (broker_id, user_id, provider, account_email, refresh_token, access_token, access_token_expires_at) \
     SELECT $1, $6, 'google', $2, $3, $4, $5 \
     WHERE EXISTS (SELECT 1 FROM users WHERE id = $6 AND broker_id = $1 AND is_active) \
     ON CONFLICT (user_id) DO UPDATE SET broker_id = EXCLUDED.broker_id, account_email = \
       COALESCE(EXCLUDED.account_email, agent_calendar_connections.account_email), \
       refresh_token = EXCLUDED.refresh_token, access_token = EXCLUDED.access_token, \
       access_token_expires_at = EXCLUDED.access_token_expires_at, connected_at = now(), updated_at = now()";

/// Completes the consent redirect: checks `state` (a bad or expired one is 400 `invalid_state` and
/// nothing is stored), exchanges the code, reads the account's email and stores the connection —
/// the broker's, or the agent's the state names — with its refresh token encrypted. Google's
/// refusals end as [`Callback::Failed`].
pub async fn complete(infra: &Infra, code: Option<&str>, state: &str, error: Option<&str>) -> Result<Callback> {
    let claims = verify_state(&infra.settings, state)?;
    let broker_id = claims.broker_id;
    let owner = Owner::from_user_id(claims.agent_id);
    let client = google::oauth_client(&infra.settings)?;
    let failed = |reason| Ok(Callback::Failed { broker_id, owner, reason });
    if error.is_some() {
        tracing::info!(broker_id, ?owner, error, "Google consent was not given");
        return failed("consent_denied");
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else { return failed("missing_code") };
    let tokens = match oauth::exchange_code(infra, client, code).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(broker_id, ?owner, error = %e, "Google code exchange failed");
            return failed("token_exchange_failed");
        }
    };
    let existing = connection_of(&infra.db, broker_id, owner).await?;
    let refresh_token = match (&tokens.refresh_token, &existing) {
        (Some(t), _) => infra.cipher.encrypt(t.expose_secret()),
        // Google omits it when the account granted access before; keep the one we hold.
        (None, Some(c)) => c.refresh_token.clone(),
        (None, None) => {
            tracing::warn!(broker_id, ?owner, "Google returned no refresh token");
            return failed("no_refresh_token");
        }
    };
    let email = match oauth::account_email(infra, &tokens.access_token).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(broker_id, ?owner, error = %e, "could not read the Google account's email");
            None
        }
    };
    let expires_at = Utc::now() + Duration::seconds(tokens.expires_in.clamp(0, 86_400));
    let (sql, who) = match owner {
        Owner::Broker => (STORE_BROKER, claims.user_id),
        Owner::Agent(user) => (STORE_AGENT, Some(user)),
    };
    let stored = infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [
                broker_id.into(),
                email.clone().into(),
                refresh_token.into(),
                infra.cipher.encrypt(tokens.access_token.expose_secret()).into(),
                expires_at.into(),
                who.into(),
            ],
        ))
        .await?;
    if stored.rows_affected() == 0 {
        return failed(match owner {
            Owner::Broker => "broker_not_found",
            Owner::Agent(_) => "agent_not_found",
        });
    }
    let role = match owner {
        Owner::Broker => Role::Admin,
        Owner::Agent(_) => Role::Agent,
    };
    let ctx = Ctx { user_id: claims.user_id, broker_id: Some(broker_id), role, origin: None };
    let entry = audit::Entry {
        action: "calendar_connect",
        resource_type: owner.resource_type(),
        resource_id: owner.user_id(),
        broker_id: Some(broker_id),
        changes: json!({"provider": "google", "email": email, "agent_id": owner.user_id()}),
    };
    audit::record(&infra.db, &ctx, entry).await?;
    Ok(Callback::Connected { broker_id, owner })
}

async fn audit_disconnect(infra: &Infra, ctx: &Ctx, broker_id: i64, owner: Owner) -> Result<()> {
    let entry = audit::Entry {
        action: "calendar_disconnect",
        resource_type: owner.resource_type(),
        resource_id: owner.user_id(),
        broker_id: Some(broker_id),
        changes: json!({"provider": "google", "agent_id": owner.user_id()}),
    };
    audit::record(&infra.db, ctx, entry).await
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
        audit_disconnect(infra, ctx, broker_id, Owner::Broker).await?;
    }
    Ok(deleted)
}

/// Forgets a user's own connection: the caller's (`None`), or, for an ADMIN, one of its broker's
/// users. Their next appointments go to the broker's calendar. Returns whether there was one.
pub async fn agent_disconnect(infra: &Infra, ctx: &Ctx, user_id: Option<i64>) -> Result<bool> {
    let (broker_id, user) = agent_target(infra, ctx, user_id).await?;
    let deleted = agent_connections::Entity::delete_many()
        .filter(agent_connections::Column::BrokerId.eq(broker_id))
        .filter(agent_connections::Column::UserId.eq(user))
        .exec(&infra.db)
        .await?
        .rows_affected
        > 0;
    if deleted {
        audit_disconnect(infra, ctx, broker_id, Owner::Agent(user)).await?;
    }
    Ok(deleted)
}

/// A usable access token: the cached one while it has a minute left (unless `force`), else a
/// refreshed one (cached, encrypted).
pub async fn access_token(infra: &Infra, conn: &Connection, force: bool) -> Result<SecretString> {
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
    let sql = format!(
        "UPDATE {} SET access_token = $2, access_token_expires_at = $3, \
           refresh_token = COALESCE($4, refresh_token), updated_at = now() WHERE id = $1",
        conn.owner.table()
    );
    infra
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            &sql,
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

/// One calendar's busy intervals in `[from, to)`, refreshing the access token once on a 401; each
/// Google call waits at most `wait`.
async fn read_busy(
    infra: &Infra,
    conn: &Connection,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    wait: std::time::Duration,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let token = access_token(infra, conn, false).await?;
    match gcal::free_busy(infra, &token, &conn.calendar_id, (from, to), wait).await {
        Err(e) if is_unauthorized(&e) => {
            let token = access_token(infra, conn, true).await?;
            gcal::free_busy(infra, &token, &conn.calendar_id, (from, to), wait).await
        }
        other => other,
    }
}

/// `f`, or a transient error after `limit`.
async fn bounded<T>(limit: std::time::Duration, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| Error::upstream_transient(google::SERVICE, None, "Google free/busy timed out"))?
}

/// Google's busy time for a slots request in `[from, to)`:
///
/// - the broker's calendar, when connected, blocks everybody — minus the events of our own
///   appointments it holds (those block only their agent, and are already counted);
/// - the own calendar of each of `agents` who connected one blocks that agent (our appointments in
///   it are that agent's, already counted too).
///
/// A calendar that cannot be read (Google down, circuit open, token revoked) is left out with a
/// warning: its slots then come from our data alone. All calendars are read concurrently.
pub async fn google_busy(
    infra: &Infra,
    broker_id: i64,
    agents: &[i64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Busy> {
    if from >= to {
        return Vec::new();
    }
    let (broker, own) =
        match tokio::try_join!(connection(&infra.db, broker_id), agent_connections(&infra.db, broker_id, agents)) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(broker_id, error = %e, "could not read the calendar connections");
                return Vec::new();
            }
        };
    let wait = infra.settings.providers.timeout.min(FREE_BUSY_TIMEOUT);
    let unavailable = |owner: Owner, e: &Error| {
        tracing::warn!(broker_id, ?owner, error = %e, "Google free/busy unavailable; offering slots from our data only");
    };
    let shared_calendar = async {
        let Some(conn) = broker else { return Vec::new() };
        let read = async {
            let busy = read_busy(infra, &conn, (from, to), wait).await?;
            let ours = repo::synced_intervals(&infra.db, broker_id, from, to).await?;
            Ok::<_, Error>(subtract(&busy, &ours))
        };
        match bounded(wait * 2, read).await {
            Ok(busy) => busy.into_iter().map(|(start, end)| Busy { start, end, agent_id: None }).collect(),
            Err(e) => {
                unavailable(Owner::Broker, &e);
                Vec::new()
            }
        }
    };
    let own_calendars = futures_util::future::join_all(own.iter().map(|conn| async move {
        match bounded(wait * 2, read_busy(infra, conn, (from, to), wait)).await {
            Ok(busy) => {
                busy.into_iter().map(|(start, end)| Busy { start, end, agent_id: conn.owner.user_id() }).collect()
            }
            Err(e) => {
                unavailable(conn.owner, &e);
                Vec::new()
            }
        }
    }));
    let (mut busy, per_agent) = tokio::join!(shared_calendar, own_calendars);
    busy.extend(per_agent.into_iter().flatten());
    busy
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
        let state = sign_state(&s, 7, Some(3), None, now).unwrap();
        let claims = verify_state(&s, &state).unwrap();
        assert_eq!((claims.broker_id, claims.user_id, claims.agent_id), (7, Some(3), None));
        assert_eq!(claims.exp - claims.iat, 600);
        let expired = sign_state(&s, 7, Some(3), None, now - Duration::minutes(11)).unwrap();
        assert_eq!(verify_state(&s, &expired).unwrap_err().code(), "invalid_state");
        let mut tampered = state.clone();
        tampered.pop();
        assert!(verify_state(&s, &tampered).is_err());
        let own = sign_state(&s, 7, Some(3), Some(3), now).unwrap();
        assert_eq!(verify_state(&s, &own).unwrap().agent_id, Some(3), "an agent's own calendar");
    }

    #[test]
    fn owners_map_to_the_stored_user_id() {
        assert_eq!(Owner::from_user_id(None), Owner::Broker);
        assert_eq!(Owner::from_user_id(Some(4)), Owner::Agent(4));
        assert_eq!((Owner::Agent(4).user_id(), Owner::Broker.user_id()), (Some(4), None));
    }

    #[test]
    fn states_and_access_tokens_never_pass_for_each_other() {
        let s = settings();
        let access = crate::auth::jwt::issue(&s, 1, "a@b.cl", "ADMIN", Some(7)).unwrap();
        assert!(verify_state(&s, &access).is_err());
        let state = sign_state(&s, 7, Some(1), None, Utc::now()).unwrap();
        assert!(crate::auth::jwt::verify(&s, &state).is_err());
    }
}
