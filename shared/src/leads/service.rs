//! Lead use cases: list, read, create, partial update, delete (GDPR erase), export, assignment and
//! manual pipeline moves. Input arrives raw from the API and is parsed here, once.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde_json::{Map, Value, json};

use super::model::{
    self, Calificacion, LeadDetail, LeadView, Stage, Status, check_metadata, clean_name, clean_tags, parse_instant,
    seal_metadata, search_needle,
};
use super::repo::{self, LeadFilter};
use crate::ctx::{Ctx, Role};
use crate::entities::{broker_lead_configs, chat_messages, leads, users};
use crate::error::{Error, FieldError, Result};
use crate::text::{Email, Phone};
use crate::{Infra, audit, events};

/// Raw list parameters as the client sent them.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub status: Option<String>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    pub search: Option<String>,
    pub pipeline_stage: Option<String>,
    pub assigned_to: Option<i64>,
    pub created_from: Option<String>,
    pub created_to: Option<String>,
    pub calificacion: Option<String>,
    pub tags: Option<String>,
    pub broker_id: Option<i64>,
    pub skip: u64,
    pub limit: u64,
}

/// Parses list parameters into a filter; every bad value is a 422 naming its parameter.
pub fn parse_filter(q: &ListQuery) -> Result<LeadFilter> {
    let statuses = q
        .status
        .as_deref()
        .map(|s| {
            s.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| Status::parse_field(p, FieldError::query("status", "", "value_error")))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    for (name, v) in [("min_score", q.min_score), ("max_score", q.max_score)] {
        if v.is_some_and(|v| !(0.0..=100.0).contains(&v)) {
            return Err(Error::invalid_query(name, "must be between 0 and 100"));
        }
    }
    if let (Some(min), Some(max)) = (q.min_score, q.max_score)
        && min > max
    {
        return Err(Error::invalid_query("min_score", "min_score must not exceed max_score"));
    }
    if q.search.as_deref().is_some_and(|s| s.chars().count() > 200) {
        return Err(Error::invalid_query("search", "search must have at most 200 characters"));
    }
    let tags = q
        .tags
        .as_deref()
        .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let created_from = q.created_from.as_deref().map(|v| parse_instant(v, "created_from", false)).transpose()?;
    let created_to = q.created_to.as_deref().map(|v| parse_instant(v, "created_to", true)).transpose()?;
    Ok(LeadFilter {
        statuses,
        min_score: q.min_score.filter(|v| *v > 0.0),
        max_score: q.max_score.filter(|v| *v < 100.0),
        search: q.search.as_deref().and_then(search_needle),
        stage: q
            .pipeline_stage
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Stage::parse_field(s, FieldError::query("pipeline_stage", "", "value_error")))
            .transpose()?,
        assigned_to: q.assigned_to,
        created_from,
        created_to,
        calificacion: q
            .calificacion
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Calificacion::parse_field(s, FieldError::query("calificacion", "", "value_error")))
            .transpose()?,
        tags,
        broker_id: q.broker_id,
        skip: q.skip,
        limit: q.limit,
    })
}

/// A page of leads and the number matching.
pub async fn list(infra: &Infra, ctx: &Ctx, q: &ListQuery) -> Result<(Vec<LeadView>, u64)> {
    let filter = parse_filter(q)?;
    let (rows, total) = repo::list(&infra.db, ctx, &filter).await?;
    Ok((rows.into_iter().map(|r| LeadView::new(&infra.cipher, r)).collect(), total))
}

pub async fn get(infra: &Infra, ctx: &Ctx, id: i64) -> Result<LeadDetail> {
    let row = repo::find_visible(&infra.db, ctx, id).await?;
    let recent_activities = repo::activities(&infra.db, row.id, Some(10)).await?;
    Ok(LeadDetail { lead: LeadView::new(&infra.cipher, row), recent_activities })
}

/// A manual lead.
#[derive(Clone, Debug, Default)]
pub struct NewLead {
    pub phone: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
    pub notes: Option<String>,
    pub broker_id: Option<i64>,
    pub assigned_to: Option<i64>,
}

fn parse_phone(raw: &str) -> Result<Phone> {
    Phone::parse(raw).map_err(|m| Error::invalid("invalid_phone", FieldError::body("phone", m, "value_error")))
}

fn parse_email(raw: &str) -> Result<Option<Email>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    Email::parse(raw)
        .map(Some)
        .map_err(|m| Error::invalid("invalid_email", FieldError::body("email", m, "value_error")))
}

/// An active ADMIN/AGENT of `broker_id`, else 404 `Agent`.
async fn find_agent(db: &impl ConnectionTrait, broker_id: i64, agent_id: i64) -> Result<users::Model> {
    users::Entity::find_by_id(agent_id)
        .filter(users::Column::BrokerId.eq(broker_id))
        .filter(users::Column::IsActive.eq(true))
        .one(db)
        .await?
        .ok_or(Error::NotFound("Agent"))
}

pub async fn create(infra: &Infra, ctx: &Ctx, input: NewLead) -> Result<LeadView> {
    let broker_id = ctx.target_broker(input.broker_id)?;
    let phone = match input.phone.as_deref() {
        Some(p) => parse_phone(p)?,
        None => {
            return Err(Error::invalid("validation_error", FieldError::body("phone", "Field required", "missing")));
        }
    };
    let email = input.email.as_deref().map(parse_email).transpose()?.flatten();
    let name = input.name.as_deref().map(|n| clean_name(n, "name")).transpose()?.flatten();
    let tags = clean_tags(&input.tags.unwrap_or_default())?;
    let metadata = input.metadata.unwrap_or_default();
    check_metadata(&metadata, "lead_metadata")?;
    let assigned_to = match (ctx.role, input.assigned_to) {
        (Role::Agent, Some(a)) if Some(a) != ctx.user_id => {
            return Err(Error::forbidden("Agents can only create leads assigned to themselves"));
        }
        (Role::Agent, _) => ctx.user_id,
        (_, Some(a)) => Some(find_agent(&infra.db, broker_id, a).await?.id),
        (_, None) => None,
    };
    let row = leads::ActiveModel {
        broker_id: Set(broker_id),
        search_text: Set(model::search_text(name.as_deref(), Some(phone.as_str()), email.as_ref().map(Email::as_str))),
        phone: Set(Some(phone.as_str().to_string())),
        name: Set(name),
        email: Set(email.as_ref().map(|e| e.as_str().to_string())),
        tags: Set(json!(tags)),
        metadata: Set(seal_metadata(&infra.cipher, metadata)),
        notes: Set(input.notes.map(|n| crate::text::clean_text(&n)).filter(|n| !n.is_empty())),
        assigned_to: Set(assigned_to),
        ..Default::default()
    };
    let lead = match row.insert(&infra.db).await {
        Ok(lead) => lead,
        Err(e) => {
            return Err(repo::duplicate_error(
                &infra.db,
                e,
                broker_id,
                Some(phone.as_str()),
                email.as_ref().map(Email::as_str),
            )
            .await);
        }
    };
    repo::add_activity(&infra.db, ctx, &lead, "lead_created", json!({"source": "manual"})).await?;
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        lead.broker_id,
        "lead_created",
        json!({"lead_id": lead.id, "name": lead.name, "assigned_to": lead.assigned_to, "source": "manual"}),
    )
    .await;
    Ok(LeadView::new(&infra.cipher, lead))
}

/// A partial update: `None` leaves a field alone, `Some(None)` clears a nullable one.
#[derive(Clone, Debug, Default)]
pub struct LeadPatch {
    pub phone: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub status: Option<String>,
    pub tags: Option<Option<Vec<String>>>,
    /// Merged key by key; a key set to `null` is removed; `Some(None)` clears all metadata.
    pub metadata: Option<Option<Map<String, Value>>>,
    pub notes: Option<Option<String>>,
}

pub async fn update(infra: &Infra, ctx: &Ctx, id: i64, patch: LeadPatch) -> Result<LeadView> {
    let phone = match &patch.phone {
        Some(Some(p)) => Some(Some(parse_phone(p)?.into_string())),
        Some(None) => Some(None),
        None => None,
    };
    let email = match &patch.email {
        Some(Some(e)) => Some(parse_email(e)?.map(Email::into_string)),
        Some(None) => Some(None),
        None => None,
    };
    let name = match &patch.name {
        Some(Some(n)) => Some(clean_name(n, "name")?),
        Some(None) => Some(None),
        None => None,
    };
    let status = patch
        .status
        .as_deref()
        .map(|s| Status::parse_field(s, FieldError::body("status", "", "value_error")))
        .transpose()?;
    let tags = match &patch.tags {
        Some(t) => Some(clean_tags(t.as_deref().unwrap_or_default())?),
        None => None,
    };
    if let Some(Some(m)) = &patch.metadata {
        check_metadata(m, "lead_metadata")?;
    }

    let txn = infra.db.begin().await?;
    let current = repo::lock_visible(&txn, ctx, id).await?;
    let broker_id = current.broker_id;
    let mut changed: Vec<&str> = Vec::new();
    let mut merged = model::open_metadata(&infra.cipher, current.metadata.clone());
    match &patch.metadata {
        Some(Some(m)) => {
            for (k, v) in m {
                if v.is_null() {
                    merged.remove(k)
                } else {
                    merged.insert(k.clone(), v.clone())
                };
            }
            changed.push("lead_metadata");
        }
        Some(None) => {
            merged.clear();
            changed.push("lead_metadata");
        }
        None => {}
    }
    let new_name = name.clone().unwrap_or_else(|| current.name.clone());
    let new_phone = phone.clone().unwrap_or_else(|| current.phone.clone());
    let new_email = email.clone().unwrap_or_else(|| current.email.clone());
    let mut am = current.into_active_model();
    if let Some(v) = name {
        am.name = Set(v);
        changed.push("name");
    }
    if let Some(v) = phone {
        am.phone = Set(v);
        changed.push("phone");
    }
    if let Some(v) = email {
        am.email = Set(v);
        changed.push("email");
    }
    if let Some(s) = status {
        am.status = Set(s.as_str().to_string());
        changed.push("status");
    }
    if let Some(t) = tags {
        am.tags = Set(json!(t));
        changed.push("tags");
    }
    if let Some(n) = &patch.notes {
        am.notes = Set(n.as_deref().map(crate::text::clean_text).filter(|n| !n.is_empty()));
        changed.push("notes");
    }
    am.metadata = Set(seal_metadata(&infra.cipher, merged));
    am.search_text = Set(model::search_text(new_name.as_deref(), new_phone.as_deref(), new_email.as_deref()));
    am.updated_at = Set(Utc::now());
    let lead = match am.update(&txn).await {
        Ok(l) => l,
        Err(e) => {
            drop(txn);
            return Err(
                repo::duplicate_error(&infra.db, e, broker_id, new_phone.as_deref(), new_email.as_deref()).await
            );
        }
    };
    if !changed.is_empty() {
        repo::add_activity(&txn, ctx, &lead, "lead_updated", json!({"fields": changed})).await?;
    }
    txn.commit().await?;
    if !changed.is_empty() {
        let data = json!({"lead_id": lead.id, "fields": changed});
        events::publish_to_broker(&infra.redis, infra.prefix(), lead.broker_id, "lead_updated", data).await;
    }
    Ok(LeadView::new(&infra.cipher, lead))
}

/// Deletes the lead and, through foreign keys, everything about it (GDPR erase). Audited without PII.
pub async fn delete(infra: &Infra, ctx: &Ctx, id: i64) -> Result<()> {
    let txn = infra.db.begin().await?;
    let lead = repo::lock_visible(&txn, ctx, id).await?;
    leads::Entity::delete_by_id(lead.id).exec(&txn).await?;
    audit::record(
        &txn,
        ctx,
        audit::Entry {
            action: "lead_delete",
            resource_type: "lead",
            resource_id: Some(lead.id),
            broker_id: Some(lead.broker_id),
            changes: json!({"erased": true}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Everything stored about a lead, as one JSON document (GDPR access).
/// Returns the lead (with its latest 10 activities), every activity (newest first) and every message.
pub async fn export(
    infra: &Infra,
    ctx: &Ctx,
    id: i64,
) -> Result<(LeadDetail, Vec<crate::entities::activity_log::Model>, Vec<Value>)> {
    let row = repo::find_visible(&infra.db, ctx, id).await?;
    let activities = repo::activities(&infra.db, row.id, None).await?;
    let messages = chat_messages::Entity::find()
        .filter(chat_messages::Column::LeadId.eq(row.id))
        .order_by_asc(chat_messages::Column::CreatedAt)
        .order_by_asc(chat_messages::Column::Id)
        .all(&infra.db)
        .await?
        .into_iter()
        .map(|m| {
            json!({"id": m.id, "provider": m.provider, "direction": m.direction, "sender_type": m.sender_type,
                   "message_text": m.message_text, "status": m.status, "channel_user_id": m.channel_user_id,
                   "channel_message_id": m.channel_message_id, "attachments": m.attachments, "created_at": m.created_at})
        })
        .collect();
    let recent_activities = activities.iter().take(10).cloned().collect();
    Ok((LeadDetail { lead: LeadView::new(&infra.cipher, row), recent_activities }, activities, messages))
}

/// ADMIN assigns a lead to an active user of the same broker.
pub async fn assign(infra: &Infra, ctx: &Ctx, id: i64, agent_id: i64) -> Result<LeadView> {
    ctx.require_admin()?;
    let txn = infra.db.begin().await?;
    let lead = repo::lock_visible(&txn, ctx, id).await?;
    let agent = find_agent(&txn, lead.broker_id, agent_id).await?;
    let previous = lead.assigned_to;
    let mut am = lead.into_active_model();
    am.assigned_to = Set(Some(agent.id));
    am.updated_at = Set(Utc::now());
    let lead = am.update(&txn).await?;
    repo::add_activity(
        &txn,
        ctx,
        &lead,
        "assignment",
        json!({"assigned_to": agent.id, "previous": previous, "assigned_by": ctx.user_id}),
    )
    .await?;
    txn.commit().await?;
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        lead.broker_id,
        "lead_assigned",
        json!({"lead_id": lead.id, "agent_id": agent.id, "agent_name": agent.name, "assigned_by": ctx.user_id}),
    )
    .await;
    Ok(LeadView::new(&infra.cipher, lead))
}

/// A manual stage move: any valid stage, backwards included. `ganado` / `perdido` close the lead as
/// converted / lost; leaving them reopens it with the temperature its score gives.
pub async fn move_stage(infra: &Infra, ctx: &Ctx, id: i64, raw_stage: &str) -> Result<(Stage, LeadView)> {
    move_stage_with(infra, ctx, id, raw_stage, "stage", ManualMove::default()).await
}

/// What a person may say about a manual move (the reference's `move-stage` body).
#[derive(Clone, Debug, Default)]
pub struct ManualMove {
    /// Recorded in the activity and the event (default `manual`).
    pub reason: Option<String>,
    /// Why the lead was won or lost (`precio`, `competencia`, …); only for `ganado` / `perdido`.
    pub close_reason: Option<String>,
    pub close_reason_detail: Option<String>,
}

/// [`move_stage`] with a reason and, when closing, a close reason; `stage_field` names the body
/// field the stage came in (for the 422's `loc`).
pub async fn move_stage_with(
    infra: &Infra,
    ctx: &Ctx,
    id: i64,
    raw_stage: &str,
    stage_field: &str,
    m: ManualMove,
) -> Result<(Stage, LeadView)> {
    let stage = Stage::parse_field(raw_stage, FieldError::body(stage_field, "", "value_error"))?;
    let clean = |v: Option<String>, field: &str, max: usize| -> Result<Option<String>> {
        let v = v.map(|v| crate::text::clean_text(&v)).filter(|v| !v.is_empty());
        if v.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(Error::invalid_body(field, format!("{field} must have at most {max} characters")));
        }
        Ok(v)
    };
    let reason = clean(m.reason, "reason", 200)?.unwrap_or_else(|| "manual".into());
    let close_reason = clean(m.close_reason, "close_reason", 100)?;
    let close_reason_detail = clean(m.close_reason_detail, "close_reason_detail", 5000)?;
    let closing = matches!(stage, Stage::Ganado | Stage::Perdido);
    if !closing && (close_reason.is_some() || close_reason_detail.is_some()) {
        return Err(Error::invalid_body("close_reason", "close_reason applies only to moves into ganado or perdido"));
    }
    let txn = infra.db.begin().await?;
    let lead = repo::lock_visible(&txn, ctx, id).await?;
    let old: Stage = lead.pipeline_stage.parse().unwrap_or(Stage::Entrada);
    if old == stage {
        txn.commit().await?;
        return Ok((old, LeadView::new(&infra.cipher, lead)));
    }
    let now = Utc::now();
    let status = match stage {
        Stage::Ganado => Status::Converted,
        Stage::Perdido => Status::Lost,
        _ => {
            let cfg = broker_lead_configs::Entity::find()
                .filter(broker_lead_configs::Column::BrokerId.eq(lead.broker_id))
                .one(&txn)
                .await?;
            let (cold, warm) = cfg.map(|c| (c.cold_max_score, c.warm_max_score)).unwrap_or((20, 50));
            Status::from_score(lead.lead_score, cold, warm)
        }
    };
    let closed = matches!(stage, Stage::Ganado | Stage::Perdido);
    let mut am = lead.clone().into_active_model();
    am.pipeline_stage = Set(stage.as_str().to_string());
    am.stage_entered_at = Set(now);
    am.status = Set(status.as_str().to_string());
    am.closed_at = Set(closed.then_some(now));
    if closed {
        am.close_reason = Set(close_reason.or_else(|| lead.close_reason.clone()).or_else(|| Some("manual".into())));
        am.close_reason_detail = Set(close_reason_detail.or_else(|| lead.close_reason_detail.clone()));
    } else {
        am.close_reason = Set(None);
        am.close_reason_detail = Set(None);
    }
    am.updated_at = Set(now);
    let updated = am.update(&txn).await?;
    repo::add_activity(
        &txn,
        ctx,
        &updated,
        "stage_change",
        json!({"old_stage": old.as_str(), "new_stage": stage.as_str(), "reason": reason, "triggered_by_campaign": null,
               "stage_entered_at": now}),
    )
    .await?;
    txn.commit().await?;
    events::publish_to_broker(
        &infra.redis,
        infra.prefix(),
        updated.broker_id,
        "stage_changed",
        json!({"lead_id": updated.id, "old_stage": old.as_str(), "new_stage": stage.as_str(), "reason": reason}),
    )
    .await;
    crate::campaigns::on_stage_change(infra, updated.broker_id, updated.id, stage.as_str()).await;
    Ok((old, LeadView::new(&infra.cipher, updated)))
}
