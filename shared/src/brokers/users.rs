//! Users of a broker (`/api/broker/users`): ADMIN manages its own broker's; SUPERADMIN any broker's.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde_json::json;

use super::repo;
use crate::audit;
use crate::auth::{password, service::insert_user};
use crate::ctx::{Ctx, Role};
use crate::entities::users;
use crate::error::{Error, FieldError, Result};
use crate::text::{Email, clean_text};

pub struct NewUser {
    pub email: String,
    pub password: String,
    pub name: String,
    pub role: Option<String>,
    pub broker_id: Option<i64>,
}

#[derive(Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

/// `admin` / `agent` in any case; SUPERADMIN can never be created or granted here.
fn parse_role(raw: &str) -> Result<Role> {
    match Role::parse(raw) {
        Some(r @ (Role::Admin | Role::Agent)) => Ok(r),
        _ => Err(Error::invalid(
            "invalid_role",
            FieldError::body("role", "role must be 'admin' or 'agent'", "value_error"),
        )),
    }
}

fn clean_name(raw: &str) -> Result<String> {
    let name = clean_text(raw);
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid_body("name", "name must have 1 to 200 characters"));
    }
    Ok(name)
}

pub async fn list(db: &DatabaseConnection, ctx: &Ctx, broker_filter: Option<i64>) -> Result<Vec<users::Model>> {
    ctx.require_admin()?;
    let mut q = users::Entity::find();
    if ctx.is_superadmin() {
        if let Some(b) = broker_filter {
            q = q.filter(users::Column::BrokerId.eq(b));
        }
    } else {
        if broker_filter.is_some_and(|b| Some(b) != ctx.broker_id) {
            return Err(Error::NotFound("Broker"));
        }
        q = q.filter(users::Column::BrokerId.eq(ctx.own_broker()?));
    }
    Ok(q.order_by_asc(users::Column::Id).all(db).await?)
}

/// A user the caller may manage: same broker for ADMIN (else 404), any for SUPERADMIN.
async fn find_manageable(db: &DatabaseConnection, ctx: &Ctx, id: i64) -> Result<users::Model> {
    ctx.require_admin()?;
    let user = users::Entity::find_by_id(id).one(db).await?.ok_or(Error::NotFound("User"))?;
    if !ctx.is_superadmin() && (user.broker_id.is_none() || user.broker_id != ctx.broker_id) {
        return Err(Error::NotFound("User"));
    }
    Ok(user)
}

pub async fn create(db: &DatabaseConnection, ctx: &Ctx, req: NewUser) -> Result<users::Model> {
    ctx.require_admin()?;
    let broker_id = if ctx.is_superadmin() {
        req.broker_id.ok_or_else(|| Error::invalid_body("broker_id", "broker_id is required for platform users"))?
    } else {
        ctx.target_broker(req.broker_id)?
    };
    let email = Email::parse(&req.email)
        .map_err(|m| Error::invalid("validation_error", FieldError::body("email", m, "value_error")))?;
    password::check_strength(&req.password)?;
    let name = clean_name(&req.name)?;
    let role = parse_role(req.role.as_deref().unwrap_or("agent"))?;
    let broker = repo::find(db, broker_id).await?.filter(|b| b.is_active).ok_or(Error::NotFound("Broker"))?;
    let hashed = password::hash(&req.password).await?;
    let ctx = ctx.clone();
    Ok(db
        .transaction::<_, users::Model, Error>(|txn| {
            Box::pin(async move {
                let user = insert_user(txn, &email, &hashed, &name, role, Some(broker.id)).await?;
                audit::record(
                    txn,
                    &ctx,
                    audit::Entry {
                        action: "user_create",
                        resource_type: "user",
                        resource_id: Some(user.id),
                        broker_id: Some(broker.id),
                        changes: json!({"email": user.email, "role": user.role}),
                    },
                )
                .await?;
                Ok(user)
            })
        })
        .await?)
}

pub async fn update(db: &DatabaseConnection, ctx: &Ctx, id: i64, patch: UserPatch) -> Result<users::Model> {
    let user = find_manageable(db, ctx, id).await?;
    if user.role == Role::Superadmin.as_str() && !ctx.is_superadmin() {
        return Err(Error::forbidden("Only a superadmin may change a superadmin"));
    }
    let is_self = ctx.user_id == Some(user.id);
    let mut changes = serde_json::Map::new();
    let broker_id = user.broker_id;
    let mut am: users::ActiveModel = user.into();
    if let Some(name) = patch.name {
        let name = clean_name(&name)?;
        changes.insert("name".into(), json!(name));
        am.name = Set(name);
    }
    if let Some(role) = patch.role {
        let role = parse_role(&role)?;
        if broker_id.is_none() {
            return Err(Error::invalid(
                "invalid_role",
                FieldError::body(
                    "role",
                    "A platform superadmin has no broker and cannot become a broker user",
                    "value_error",
                ),
            ));
        }
        if is_self && role != ctx.role {
            return Err(Error::bad_request("cannot_modify_self", "You cannot change your own role"));
        }
        changes.insert("role".into(), json!(role.as_str()));
        am.role = Set(role.as_str().to_string());
    }
    if let Some(active) = patch.is_active {
        if is_self && !active {
            return Err(Error::bad_request("cannot_modify_self", "You cannot deactivate your own account"));
        }
        changes.insert("is_active".into(), json!(active));
        am.is_active = Set(active);
    }
    am.updated_at = Set(chrono::Utc::now());
    let ctx = ctx.clone();
    Ok(db
        .transaction::<_, users::Model, Error>(|txn| {
            Box::pin(async move {
                let user = am.update(txn).await?;
                audit::record(
                    txn,
                    &ctx,
                    audit::Entry {
                        action: "user_update",
                        resource_type: "user",
                        resource_id: Some(user.id),
                        broker_id,
                        changes: serde_json::Value::Object(changes),
                    },
                )
                .await?;
                Ok(user)
            })
        })
        .await?)
}

/// Soft delete (`is_active = false`).
pub async fn deactivate(db: &DatabaseConnection, ctx: &Ctx, id: i64) -> Result<users::Model> {
    update(db, ctx, id, UserPatch { is_active: Some(false), ..Default::default() }).await
}
