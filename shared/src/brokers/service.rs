//! Broker administration (`/api/brokers`): SUPERADMIN writes; everybody reads their own broker.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::{Value, json};

use super::repo::{self, BrokerFields};
use crate::audit;
use crate::ctx::Ctx;
use crate::entities::brokers;
use crate::error::{Error, Result};

/// A validated broker create/update body. `None` leaves a field as it is on update; `Some(None)`
/// clears it.
#[derive(Clone, Debug, Default)]
pub struct BrokerPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub contact_phone: Option<Option<String>>,
    pub contact_email: Option<Option<String>>,
    pub business_hours: Option<Option<String>>,
    pub service_zones: Option<Option<Value>>,
    pub is_active: Option<bool>,
}

pub async fn create(db: &DatabaseConnection, ctx: &Ctx, p: BrokerPatch) -> Result<brokers::Model> {
    ctx.require_superadmin()?;
    let name = p.name.clone().ok_or_else(|| Error::invalid_body("name", "Field required"))?;
    let fields = BrokerFields {
        contact_phone: p.contact_phone.flatten(),
        contact_email: p.contact_email.flatten(),
        business_hours: p.business_hours.flatten(),
        service_zones: p.service_zones.flatten(),
    };
    let ctx = ctx.clone();
    Ok(db
        .transaction::<_, brokers::Model, Error>(|txn| {
            Box::pin(async move {
                let b = repo::create_with_defaults(txn, &name, p.slug.as_deref(), fields).await?;
                audit::record(
                    txn,
                    &ctx,
                    audit::Entry {
                        action: "broker_create",
                        resource_type: "broker",
                        resource_id: Some(b.id),
                        broker_id: Some(b.id),
                        changes: json!({"name": b.name, "slug": b.slug}),
                    },
                )
                .await?;
                Ok(b)
            })
        })
        .await?)
}

/// SUPERADMIN: brokers newest first (active only unless `include_inactive`); others: their own.
pub async fn list(
    db: &DatabaseConnection,
    ctx: &Ctx,
    skip: u64,
    limit: u64,
    include_inactive: bool,
) -> Result<Vec<brokers::Model>> {
    let mut q = brokers::Entity::find();
    if ctx.is_superadmin() {
        if !include_inactive {
            q = q.filter(brokers::Column::IsActive.eq(true));
        }
    } else {
        q = q.filter(brokers::Column::Id.eq(ctx.own_broker()?));
    }
    Ok(q.order_by_desc(brokers::Column::CreatedAt)
        .order_by_desc(brokers::Column::Id)
        .offset(crate::db::offset(skip))
        .limit(limit)
        .all(db)
        .await?)
}

/// A broker the caller may see: any for SUPERADMIN, else only its own (another is 404).
pub async fn get(db: &DatabaseConnection, ctx: &Ctx, id: i64) -> Result<brokers::Model> {
    if !ctx.is_superadmin() && ctx.broker_id != Some(id) {
        return Err(Error::NotFound("Broker"));
    }
    repo::find(db, id).await?.ok_or(Error::NotFound("Broker"))
}

pub async fn update(db: &DatabaseConnection, ctx: &Ctx, id: i64, p: BrokerPatch) -> Result<brokers::Model> {
    apply(db, ctx, id, p, "broker_update").await
}

async fn apply(
    db: &DatabaseConnection,
    ctx: &Ctx,
    id: i64,
    p: BrokerPatch,
    action: &'static str,
) -> Result<brokers::Model> {
    ctx.require_superadmin()?;
    let current = repo::find(db, id).await?.ok_or(Error::NotFound("Broker"))?;
    let mut am: brokers::ActiveModel = current.into();
    let mut changes = serde_json::Map::new();
    if let Some(v) = p.name {
        changes.insert("name".into(), json!(v));
        am.name = Set(v);
    }
    if let Some(v) = p.slug {
        let slug = crate::text::slugify(&v);
        changes.insert("slug".into(), json!(slug));
        am.slug = Set(slug);
    }
    if let Some(v) = p.contact_phone {
        changes.insert("contact_phone".into(), json!(v));
        am.contact_phone = Set(v);
    }
    if let Some(v) = p.contact_email {
        changes.insert("contact_email".into(), json!(v));
        am.contact_email = Set(v);
    }
    if let Some(v) = p.business_hours {
        changes.insert("business_hours".into(), json!(v));
        am.business_hours = Set(v);
    }
    if let Some(v) = p.service_zones {
        changes.insert("service_zones".into(), json!(v));
        am.service_zones = Set(v);
    }
    if let Some(v) = p.is_active {
        changes.insert("is_active".into(), json!(v));
        am.is_active = Set(v);
    }
    am.updated_at = Set(chrono::Utc::now());
    let ctx = ctx.clone();
    Ok(db
        .transaction::<_, brokers::Model, Error>(|txn| {
            Box::pin(async move {
                let b = am.update(txn).await.map_err(|e| match crate::db::unique_constraint(&e) {
                    Some(c) if c == "brokers_slug_key" => {
                        Error::bad_request("slug_taken", "A broker with this slug already exists")
                    }
                    _ => e.into(),
                })?;
                audit::record(
                    txn,
                    &ctx,
                    audit::Entry {
                        action,
                        resource_type: "broker",
                        resource_id: Some(b.id),
                        broker_id: Some(b.id),
                        changes: Value::Object(changes),
                    },
                )
                .await?;
                Ok(b)
            })
        })
        .await?)
}

/// Soft delete: the broker and its users lose access; data is kept.
pub async fn deactivate(db: &DatabaseConnection, ctx: &Ctx, id: i64) -> Result<()> {
    apply(db, ctx, id, BrokerPatch { is_active: Some(false), ..Default::default() }, "broker_deactivate").await?;
    Ok(())
}
