//! The audit log: who changed brokers, users, configs, dead jobs and lead deletions, and from where.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::entities::audit_logs;
use crate::error::Result;

/// One audited action.
pub struct Entry<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<i64>,
    pub broker_id: Option<i64>,
    pub changes: Value,
}

/// Writes an audit row inside the caller's transaction.
pub async fn record(db: &impl ConnectionTrait, ctx: &Ctx, entry: Entry<'_>) -> Result<()> {
    let origin = ctx.origin.as_deref();
    audit_logs::ActiveModel {
        user_id: Set(ctx.user_id),
        broker_id: Set(entry.broker_id),
        action: Set(entry.action.to_string()),
        resource_type: Set(entry.resource_type.to_string()),
        resource_id: Set(entry.resource_id),
        changes: Set(entry.changes),
        ip_address: Set(origin.and_then(|o| o.ip.clone())),
        user_agent: Set(origin.and_then(|o| o.user_agent.as_deref().map(|u| u.chars().take(255).collect()))),
        request_id: Set(origin.and_then(|o| o.request_id.clone())),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Filters of `GET /api/v1/admin/audit-log`.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub broker_id: Option<i64>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub page: u64,
    pub limit: u64,
}

/// SUPERADMIN sees every row (optionally one broker's); ADMIN its own broker's; AGENT nothing.
pub async fn list(db: &impl ConnectionTrait, ctx: &Ctx, f: &Filter) -> Result<(Vec<audit_logs::Model>, u64)> {
    ctx.require_admin()?;
    let broker = if ctx.is_superadmin() { f.broker_id } else { Some(ctx.own_broker()?) };
    if !ctx.is_superadmin() && f.broker_id.is_some_and(|b| Some(b) != ctx.broker_id) {
        return Err(crate::Error::NotFound("Broker"));
    }
    let mut q = audit_logs::Entity::find();
    if let Some(b) = broker {
        q = q.filter(audit_logs::Column::BrokerId.eq(b));
    }
    if let Some(a) = &f.action {
        q = q.filter(audit_logs::Column::Action.eq(a.as_str()));
    }
    if let Some(r) = &f.resource_type {
        q = q.filter(audit_logs::Column::ResourceType.eq(r.as_str()));
    }
    let total = q.clone().count(db).await?;
    let rows = q
        .order_by_desc(audit_logs::Column::CreatedAt)
        .order_by_desc(audit_logs::Column::Id)
        .offset(crate::db::offset((f.page.max(1) - 1).saturating_mul(f.limit)))
        .limit(f.limit)
        .all(db)
        .await?;
    Ok((rows, total))
}
