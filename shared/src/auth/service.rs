//! Registration, login, the superadmin bootstrap and the per-request resolution of a token's user.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, Set, Statement, TransactionTrait,
};
use serde_json::json;

use super::{jwt, password};
use crate::brokers::repo as broker_repo;
use crate::config::Settings;
use crate::ctx::{Ctx, Origin, Role};
use crate::entities::users;
use crate::error::{Error, FieldError, Result};
use crate::text::{Email, clean_text};
use crate::{audit, db};

/// The user behind a valid token, as the database says now.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct AuthUser {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: String,
    pub broker_id: Option<i64>,
    pub is_active: bool,
    pub broker_active: Option<bool>,
}

impl AuthUser {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Agent)
    }

    pub fn ctx(&self) -> Ctx {
        Ctx::user(self.id, self.broker_id, self.role())
    }
}

/// A short-lived in-process cache of resolved users, so a hot path does not re-read the user row on
/// every request. Entries live a few seconds and are dropped at once when this process changes a user.
#[derive(Debug)]
pub struct UserCache {
    ttl: Duration,
    entries: Mutex<HashMap<i64, (AuthUser, Instant)>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for UserCache {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl UserCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    fn get(&self, id: i64) -> Option<AuthUser> {
        let entries = self.entries.lock().ok()?;
        let hit = entries.get(&id).filter(|(_, at)| at.elapsed() < self.ttl).map(|(u, _)| u.clone());
        let counter = if hit.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    fn put(&self, user: AuthUser) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            }
            entries.insert(user.id, (user, Instant::now()));
        }
    }

    /// Forgets a user (after a role change or deactivation).
    pub fn invalidate(&self, id: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
    }

    /// Forgets everybody (after a broker is deactivated).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// (hits, misses)
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

/// Resolves the user behind verified claims: unknown → 401, inactive user or broker → 403.
pub async fn resolve(db: &DatabaseConnection, cache: &UserCache, claims: &jwt::Claims) -> Result<AuthUser> {
    let id = claims.user_id()?;
    let user = match cache.get(id) {
        Some(u) => u,
        None => {
            let u = AuthUser::find_by_statement(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT u.id, u.email, u.name, u.role, u.broker_id, u.is_active, b.is_active AS broker_active \
                 FROM users u LEFT JOIN brokers b ON b.id = u.broker_id WHERE u.id = $1",
                [id.into()],
            ))
            .one(db)
            .await?
            .ok_or_else(|| Error::Unauthorized("User not found".into()))?;
            cache.put(u.clone());
            u
        }
    };
    if !user.is_active {
        return Err(Error::UserInactive);
    }
    if user.broker_active == Some(false) {
        return Err(Error::forbidden("This broker account is inactive"));
    }
    Ok(user)
}

/// A validated registration request.
pub struct Registration {
    pub email: String,
    pub password: String,
    pub broker_name: String,
    /// Where the request came from, for the audit row.
    pub origin: Origin,
}

/// Creates the ADMIN user, its broker (unique slug) and the broker's default configs in one
/// transaction, and returns an access token.
pub async fn register(db: &DatabaseConnection, settings: &Settings, req: Registration) -> Result<String> {
    let email = Email::parse(&req.email)
        .map_err(|m| Error::invalid("validation_error", FieldError::body("email", m, "value_error")))?;
    password::check_strength(&req.password)?;
    let broker_name = clean_text(&req.broker_name);
    if broker_name.is_empty() || broker_name.chars().count() > 200 {
        return Err(Error::invalid_body("broker_name", "broker_name must have 1 to 200 characters"));
    }
    if users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(db).await?.is_some() {
        return Err(Error::EmailTaken);
    }
    let hashed = password::hash(&req.password).await?;

    let user = db
        .transaction::<_, users::Model, Error>(|txn| {
            let email = email.clone();
            let origin = req.origin.clone();
            Box::pin(async move {
                let broker = broker_repo::create_with_defaults(txn, &broker_name, None, Default::default()).await?;
                let user = insert_user(txn, &email, &hashed, &broker_name, Role::Admin, Some(broker.id)).await?;
                let ctx = Ctx::user(user.id, Some(broker.id), Role::Admin).with_origin(origin);
                audit::record(
                    txn,
                    &ctx,
                    audit::Entry {
                        action: "broker_register",
                        resource_type: "broker",
                        resource_id: Some(broker.id),
                        broker_id: Some(broker.id),
                        changes: json!({"name": broker.name, "slug": broker.slug, "admin_email": user.email}),
                    },
                )
                .await?;
                Ok(user)
            })
        })
        .await?;
    jwt::issue(settings, user.id, &user.email, &user.role, user.broker_id)
}

/// Inserts a user; a taken email becomes 400 `email_taken`.
pub async fn insert_user(
    db: &impl ConnectionTrait,
    email: &Email,
    hashed_password: &str,
    name: &str,
    role: Role,
    broker_id: Option<i64>,
) -> Result<users::Model> {
    users::ActiveModel {
        email: Set(email.as_str().to_string()),
        hashed_password: Set(hashed_password.to_string()),
        name: Set(name.to_string()),
        role: Set(role.as_str().to_string()),
        broker_id: Set(broker_id),
        is_active: Set(true),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|e| match db::unique_constraint(&e) {
        Some(c) if c == "users_email_key" => Error::EmailTaken,
        _ => e.into(),
    })
}

/// Email + password → token. Unknown email and wrong password are indistinguishable (401, same
/// timing); an inactive account is 403.
pub async fn login(db: &DatabaseConnection, settings: &Settings, email: &str, pw: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let user = users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(db).await?;
    let ok = password::verify(pw, user.as_ref().map(|u| u.hashed_password.as_str())).await?;
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(Error::InvalidCredentials),
    };
    if !user.is_active {
        return Err(Error::UserInactive);
    }
    if let Some(broker_id) = user.broker_id
        && !broker_repo::find(db, broker_id).await?.is_some_and(|b| b.is_active)
    {
        return Err(Error::forbidden("This broker account is inactive"));
    }
    jwt::issue(settings, user.id, &user.email, &user.role, user.broker_id)
}

/// Creates the platform SUPERADMIN, or resets its password when it exists already.
/// Returns `true` when a new user was created.
pub async fn upsert_superadmin(db: &DatabaseConnection, email: &str, pw: &str, reset_password: bool) -> Result<bool> {
    let email = Email::parse(email)
        .map_err(|m| Error::invalid("validation_error", FieldError::body("email", m, "value_error")))?;
    password::check_strength(pw)?;
    match users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(db).await? {
        Some(existing) if existing.role != Role::Superadmin.as_str() => Err(Error::conflict(
            "email_taken",
            "This email belongs to a broker user; choose another email for the superadmin",
        )),
        Some(existing) => {
            if reset_password {
                let mut active: users::ActiveModel = existing.into();
                active.hashed_password = Set(password::hash(pw).await?);
                active.is_active = Set(true);
                active.updated_at = Set(chrono::Utc::now());
                active.update(db).await?;
            }
            Ok(false)
        }
        None => {
            let hashed = password::hash(pw).await?;
            insert_user(db, &email, &hashed, "Superadmin", Role::Superadmin, None).await?;
            Ok(true)
        }
    }
}
