//! A lead's conversation as the dashboard reads it: `GET /api/v1/chat/{lead_id}/messages` (oldest
//! first, paged) and the debug view `GET /api/v1/chat/verify/{lead_id}`.

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{Map, Value};

use super::service::parse_provider;
use crate::ctx::Ctx;
use crate::entities::{activity_log, chat_conversations, chat_messages};
use crate::error::{Error, Result};
use crate::leads::model::LeadView;
use crate::leads::repo as lead_repo;
use crate::{Infra, chat::engine::profile};

/// The largest page of messages.
pub const MAX_LIMIT: u64 = 500;

/// One page of a lead's messages, oldest first, and how many there are.
pub async fn messages(
    infra: &Infra,
    ctx: &Ctx,
    lead_id: i64,
    provider: Option<&str>,
    skip: u64,
    limit: u64,
) -> Result<(Vec<chat_messages::Model>, u64)> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::invalid_query("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let provider =
        provider.filter(|p| !p.trim().is_empty()).map(|p| parse_provider(Some(p))).transpose().map_err(|_| {
            Error::invalid_query(
                "provider",
                format!("provider must be one of: {}", super::service::PROVIDERS.join(", ")),
            )
        })?;
    let lead = lead_repo::find_visible(&infra.db, ctx, lead_id).await?;
    let mut q = chat_messages::Entity::find().filter(chat_messages::Column::LeadId.eq(lead.id));
    if let Some(p) = provider {
        q = q.filter(chat_messages::Column::Provider.eq(p));
    }
    let page = q
        .clone()
        .order_by_asc(chat_messages::Column::CreatedAt)
        .order_by_asc(chat_messages::Column::Id)
        .offset(crate::db::offset(skip))
        .limit(limit)
        .all(&infra.db);
    let (rows, total) = tokio::try_join!(page, q.count(&infra.db))?;
    Ok((rows, total))
}

/// Everything about a lead's conversation, for debugging.
#[derive(Clone, Debug)]
pub struct Verification {
    pub lead: LeadView,
    /// Newest first.
    pub messages: Vec<chat_messages::Model>,
    /// The 20 newest.
    pub activities: Vec<activity_log::Model>,
    /// The engine's memory.
    pub memory: Value,
    pub summary: Summary,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub total_messages: u64,
    pub inbound_messages: u64,
    pub outbound_messages: u64,
    pub total_activities: u64,
    pub has_name: bool,
    pub has_phone: bool,
    pub has_email: bool,
    pub has_location: bool,
    pub has_budget: bool,
    pub has_income: bool,
    pub has_dicom: bool,
}

fn known(meta: &Map<String, Value>, key: &str) -> bool {
    meta.get(key).is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
}

pub async fn verify(infra: &Infra, ctx: &Ctx, lead_id: i64) -> Result<Verification> {
    let lead = lead_repo::find_visible(&infra.db, ctx, lead_id).await?;
    let messages = chat_messages::Entity::find()
        .filter(chat_messages::Column::LeadId.eq(lead.id))
        .order_by_desc(chat_messages::Column::CreatedAt)
        .order_by_desc(chat_messages::Column::Id)
        .all(&infra.db)
        .await?;
    let activities = lead_repo::activities(&infra.db, lead.id, Some(20)).await?;
    let total_activities =
        activity_log::Entity::find().filter(activity_log::Column::LeadId.eq(lead.id)).count(&infra.db).await?;
    let conv = chat_conversations::Entity::find_by_id(lead.id).one(&infra.db).await?;
    let view = LeadView::new(&infra.cipher, lead);
    let inbound = messages.iter().filter(|m| m.direction == "in").count() as u64;
    let summary = Summary {
        total_messages: messages.len() as u64,
        inbound_messages: inbound,
        outbound_messages: messages.len() as u64 - inbound,
        total_activities,
        has_name: view.row.name.as_deref().is_some_and(profile::is_real_name),
        has_phone: view.row.phone.as_deref().is_some_and(profile::is_real_phone),
        has_email: view.row.email.as_deref().is_some_and(profile::is_real_email),
        has_location: known(&view.metadata, "location"),
        has_budget: known(&view.metadata, "budget"),
        has_income: known(&view.metadata, "monthly_income"),
        has_dicom: known(&view.metadata, "dicom_status"),
    };
    Ok(Verification { lead: view, messages, activities, memory: conv.map_or(Value::Null, |c| c.memory), summary })
}
