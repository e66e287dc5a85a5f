//! Broker rows and their default configuration rows.

use sea_orm::sea_query::ExprTrait;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionSession, TransactionTrait,
};
use serde_json::Value;

use super::config::sections_from;
use super::prompt::{DEFAULT_CONTEXT, DEFAULT_IDENTITY, DEFAULT_OBJECTIVE, DEFAULT_RESTRICTIONS, DEFAULT_RULES};
use super::versions;
use crate::db;
use crate::entities::{broker_chat_configs, broker_lead_configs, broker_prompt_configs, brokers};
use crate::error::{Error, Result};
use crate::text::slugify;

/// Optional broker fields.
#[derive(Clone, Debug, Default)]
pub struct BrokerFields {
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub business_hours: Option<String>,
    pub service_zones: Option<Value>,
}

/// Inserts a broker with a unique slug and its prompt, lead and chat configs.
///
/// With `requested_slug` the slug must be free (400 `slug_taken`); otherwise the name's slug is used,
/// suffixed `-2`, `-3`, … when taken. A concurrent insert of the same slug is retried inside a
/// savepoint, so two registrations never share a broker.
pub async fn create_with_defaults<C: ConnectionTrait + TransactionTrait>(
    txn: &C,
    name: &str,
    requested_slug: Option<&str>,
    fields: BrokerFields,
) -> Result<brokers::Model> {
    let explicit = requested_slug.map(slugify);
    let base = explicit.clone().unwrap_or_else(|| slugify(name));
    let mut broker = None;
    for _ in 0..8 {
        let slug = match &explicit {
            Some(s) => s.clone(),
            None => next_free_slug(txn, &base).await?,
        };
        let savepoint = txn.begin().await?;
        let res = brokers::ActiveModel {
            name: Set(name.to_string()),
            slug: Set(slug),
            contact_phone: Set(fields.contact_phone.clone()),
            contact_email: Set(fields.contact_email.clone()),
            business_hours: Set(fields.business_hours.clone()),
            service_zones: Set(fields.service_zones.clone()),
            is_active: Set(true),
            ..Default::default()
        }
        .insert(&savepoint)
        .await;
        match res {
            Ok(b) => {
                savepoint.commit().await?;
                broker = Some(b);
                break;
            }
            Err(e) if db::unique_constraint(&e).as_deref() == Some("brokers_slug_key") => {
                savepoint.rollback().await?;
                if explicit.is_some() {
                    return Err(Error::bad_request("slug_taken", "A broker with this slug already exists"));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let broker = broker.ok_or_else(|| Error::conflict("slug_taken", "Could not find a free slug, try again"))?;
    insert_default_configs(txn, &broker).await?;
    Ok(broker)
}

async fn next_free_slug(db: &impl ConnectionTrait, base: &str) -> Result<String> {
    let taken: Vec<String> = brokers::Entity::find()
        .filter(brokers::Column::Slug.eq(base).or(brokers::Column::Slug.starts_with(format!("{base}-"))))
        .all(db)
        .await?
        .into_iter()
        .map(|b| b.slug)
        .collect();
    if !taken.iter().any(|s| s == base) {
        return Ok(base.to_string());
    }
    let n = (2..).find(|n| !taken.iter().any(|s| *s == format!("{base}-{n}"))).unwrap_or(2);
    Ok(format!("{base}-{n}"))
}

/// The configuration rows of a new broker, and its first prompt version (active), so the assistant
/// always answers with a recorded version. Section texts keep their `{agent_name}` / `{broker_name}`
/// placeholders: renaming the assistant or the broker needs no rewrite.
async fn insert_default_configs(db: &impl ConnectionTrait, broker: &brokers::Model) -> Result<()> {
    let prompt = broker_prompt_configs::ActiveModel {
        broker_id: Set(broker.id),
        agent_name: Set("Sofía".into()),
        agent_role: Set("asesora inmobiliaria".into()),
        identity_prompt: Set(Some(DEFAULT_IDENTITY.into())),
        business_context: Set(Some(DEFAULT_CONTEXT.into())),
        agent_objective: Set(Some(DEFAULT_OBJECTIVE.into())),
        behavior_rules: Set(Some(DEFAULT_RULES.into())),
        restrictions: Set(Some(DEFAULT_RESTRICTIONS.into())),
        enable_appointment_booking: Set(true),
        meeting_config: Set(Some(serde_json::json!({"timezone": "America/Santiago", "duration_minutes": 60}))),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let leads = broker_lead_configs::ActiveModel { broker_id: Set(broker.id), ..Default::default() }.insert(db).await?;
    broker_chat_configs::ActiveModel { broker_id: Set(broker.id), ..Default::default() }.insert(db).await?;
    let sections = sections_from(&broker.name, &prompt, &leads.field_priority);
    versions::snapshot(db, broker.id, None, &sections, "Configuración inicial").await?;
    Ok(())
}

/// A broker by id, active or not.
pub async fn find(db: &impl ConnectionTrait, id: i64) -> Result<Option<brokers::Model>> {
    Ok(brokers::Entity::find_by_id(id).one(db).await?)
}
