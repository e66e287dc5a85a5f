//! Prompt versions (`/api/broker/brokers/{broker_id}/prompts…`): every prompt text a broker had or
//! prepared, numbered per broker. The **active** version is what the LLM uses ([`active_version`]);
//! activating an older one is the rollback. A configuration change that alters the prompt snapshots
//! a new version (`auto-NNN`) and activates it ([`snapshot`]).
//!
//! Writes of one broker are serialised by locking its `broker_prompt_configs` row, so version
//! numbers never collide and two concurrent activations both succeed, one after the other; the
//! partial unique index `prompt_versions_one_active_key` guarantees one active version regardless.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement, TransactionTrait,
};
use serde_json::{Value, json};

use super::config::{self, PromptPatch};
use super::prompt::{PromptSections, compose_base};
use crate::audit;
use crate::ctx::Ctx;
use crate::db;
use crate::entities::{broker_prompt_configs, prompt_versions};
use crate::error::{Error, FieldError, Result};

/// A stored prompt version.
pub type PromptVersion = prompt_versions::Model;

/// The broker's active prompt version, if it has one: the text the LLM uses. Record its `id` as
/// `prompt_version_id` on the reply and its `llm_calls` rows.
pub async fn active_version(db: &impl ConnectionTrait, broker_id: i64) -> Result<Option<PromptVersion>> {
    Ok(prompt_versions::Entity::find()
        .filter(prompt_versions::Column::BrokerId.eq(broker_id))
        .filter(prompt_versions::Column::IsActive.eq(true))
        .one(db)
        .await?)
}

/// Locks the broker's prompt configuration for the rest of the transaction (404 when the broker has
/// none, i.e. does not exist). Every prompt-version write goes through here first.
pub(crate) async fn lock_prompt_config(
    txn: &impl ConnectionTrait,
    broker_id: i64,
) -> Result<broker_prompt_configs::Model> {
    broker_prompt_configs::Entity::find()
        .filter(broker_prompt_configs::Column::BrokerId.eq(broker_id))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(Error::NotFound("Broker"))
}

/// A version to insert (the caller holds [`lock_prompt_config`]).
pub(crate) struct NewVersion {
    pub broker_id: i64,
    /// `None`: the next `auto-NNN`.
    pub tag: Option<String>,
    pub content: String,
    pub sections: Option<Value>,
    pub notes: Option<String>,
    pub created_by: Option<i64>,
    pub activate: bool,
}

async fn scalar_i32(txn: &impl ConnectionTrait, sql: &str, broker_id: i64) -> Result<i32> {
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [broker_id.into()]))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("aggregate returned no row")))?;
    Ok(row.try_get::<i32>("", "n")?)
}

pub(crate) async fn insert(txn: &impl ConnectionTrait, v: NewVersion) -> Result<PromptVersion> {
    let version = scalar_i32(
        txn,
        "SELECT COALESCE(MAX(version), 0) + 1 AS n FROM prompt_versions WHERE broker_id = $1",
        v.broker_id,
    )
    .await?;
    let (tag, is_auto) = match v.tag {
        Some(t) => (t, false),
        None => {
            let n = scalar_i32(
                txn,
                "SELECT COALESCE(MAX(substring(version_tag FROM '^auto-([0-9]{1,9})$')::int), 0) + 1 AS n \
                 FROM prompt_versions WHERE broker_id = $1",
                v.broker_id,
            )
            .await?;
            (format!("auto-{n:03}"), true)
        }
    };
    let now = Utc::now();
    if v.activate {
        deactivate_all(txn, v.broker_id).await?;
    }
    prompt_versions::ActiveModel {
        broker_id: Set(v.broker_id),
        version: Set(version),
        version_tag: Set(tag),
        prompt_type: Set("system".into()),
        content: Set(v.content),
        sections_json: Set(v.sections),
        notes: Set(v.notes),
        is_active: Set(v.activate),
        is_auto: Set(is_auto),
        created_by: Set(v.created_by),
        created_at: Set(now),
        activated_at: Set(v.activate.then_some(now)),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| match db::unique_constraint(&e).as_deref() {
        Some("prompt_versions_broker_tag_key") => {
            Error::conflict("version_tag_taken", "This broker already has a prompt version with this tag")
        }
        _ => e.into(),
    })
}

async fn deactivate_all(txn: &impl ConnectionTrait, broker_id: i64) -> Result<()> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE prompt_versions SET is_active = false WHERE broker_id = $1 AND is_active",
        [broker_id.into()],
    ))
    .await?;
    Ok(())
}

/// Auto snapshot of `sections` as the new active version (the caller holds the lock and audits the
/// change that caused it).
pub(crate) async fn snapshot(
    txn: &impl ConnectionTrait,
    broker_id: i64,
    created_by: Option<i64>,
    sections: &PromptSections,
    notes: &str,
) -> Result<PromptVersion> {
    insert(
        txn,
        NewVersion {
            broker_id,
            tag: None,
            content: compose_base(sections),
            sections: Some(serde_json::to_value(sections).map_err(Error::internal)?),
            notes: Some(notes.to_string()),
            created_by,
            activate: true,
        },
    )
    .await
}

/// How a version performed, from the replies that recorded it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionStats {
    /// Replies written with this version (`chat_messages.prompt_version_id`, outbound).
    pub total_uses: i64,
    /// Average input + output tokens of its successful LLM calls (`llm_calls.prompt_version_id`);
    /// `None` while it has none.
    pub avg_tokens_per_call: Option<f64>,
    /// Average latency of its successful LLM calls, same source.
    pub avg_latency_ms: Option<f64>,
    /// Distinct leads this version answered that are now `calificado`.
    pub leads_qualified: i64,
    /// Appointments booked whose lead's last assistant reply before the booking came from this version
    /// (each booking counts for exactly one version).
    pub appointments_booked: i64,
}

async fn stats(db: &impl ConnectionTrait, broker_id: i64, ids: &[i64]) -> Result<Vec<(i64, VersionStats)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Ids are integers from our own query: safe to inline as an array literal.
    let arr = format!("ARRAY[{}]::bigint[]", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
    let sql = format!(
        "WITH v AS (SELECT unnest({arr}) AS id), \
         uses AS ( \
           SELECT m.prompt_version_id AS id, count(*) AS n FROM chat_messages m \
           WHERE m.prompt_version_id = ANY({arr}) AND m.direction = 'out' GROUP BY 1), \
         qualified AS ( \
           SELECT m.prompt_version_id AS id, count(DISTINCT m.lead_id) AS n \
           FROM chat_messages m JOIN leads l ON l.id = m.lead_id \
           WHERE m.prompt_version_id = ANY({arr}) AND m.direction = 'out' AND l.calificacion = 'calificado' \
           GROUP BY 1), \
         calls AS ( \
           SELECT c.prompt_version_id AS id, avg(c.input_tokens + c.output_tokens)::float8 AS tokens, \
                  avg(c.latency_ms)::float8 AS latency \
           FROM llm_calls c WHERE c.prompt_version_id = ANY({arr}) AND c.error IS NULL GROUP BY 1), \
         booked AS ( \
           SELECT last.id, count(*) AS n FROM appointments a \
           CROSS JOIN LATERAL ( \
             SELECT m.prompt_version_id AS id FROM chat_messages m \
             WHERE m.lead_id = a.lead_id AND m.direction = 'out' AND m.prompt_version_id IS NOT NULL \
               AND m.created_at <= a.created_at \
             ORDER BY m.created_at DESC, m.id DESC LIMIT 1) last \
           WHERE a.broker_id = $1 \
             AND a.created_at >= (SELECT min(created_at) FROM prompt_versions WHERE id = ANY({arr})) \
             AND last.id = ANY({arr}) \
           GROUP BY 1) \
         SELECT v.id, COALESCE(u.n, 0)::bigint AS uses, COALESCE(q.n, 0)::bigint AS qualified, \
                COALESCE(b.n, 0)::bigint AS booked, c.tokens, c.latency \
         FROM v LEFT JOIN uses u ON u.id = v.id LEFT JOIN qualified q ON q.id = v.id LEFT JOIN booked b ON b.id = v.id \
         LEFT JOIN calls c ON c.id = v.id"
    );
    let rows = db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [broker_id.into()])).await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get::<i64>("", "id")?,
                VersionStats {
                    total_uses: r.try_get("", "uses")?,
                    avg_tokens_per_call: r.try_get("", "tokens")?,
                    avg_latency_ms: r.try_get("", "latency")?,
                    leads_qualified: r.try_get("", "qualified")?,
                    appointments_booked: r.try_get("", "booked")?,
                },
            ))
        })
        .collect()
}

/// The broker a versions request acts on: ADMIN its own (another → 404), SUPERADMIN any.
fn scope(ctx: &Ctx, broker_id: i64) -> Result<i64> {
    ctx.require_admin()?;
    ctx.target_broker(Some(broker_id))
}

/// A page of the broker's versions, newest first, each with its figures, and the total.
pub async fn list(
    db: &DatabaseConnection,
    ctx: &Ctx,
    broker_id: i64,
    skip: u64,
    limit: u64,
) -> Result<(Vec<(PromptVersion, VersionStats)>, u64)> {
    let broker_id = scope(ctx, broker_id)?;
    config::ensure_broker(db, broker_id).await?;
    let q = prompt_versions::Entity::find().filter(prompt_versions::Column::BrokerId.eq(broker_id));
    let total = q.clone().count(db).await?;
    let rows =
        q.order_by_desc(prompt_versions::Column::Version).offset(crate::db::offset(skip)).limit(limit).all(db).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut figures = stats(db, broker_id, &ids).await?;
    let out = rows
        .into_iter()
        .map(|r| {
            let s =
                figures.iter().position(|(id, _)| *id == r.id).map(|i| figures.swap_remove(i).1).unwrap_or_default();
            (r, s)
        })
        .collect();
    Ok((out, total))
}

/// One version of the broker (another broker's → 404).
pub async fn get(db: &DatabaseConnection, ctx: &Ctx, broker_id: i64, id: i64) -> Result<PromptVersion> {
    let broker_id = scope(ctx, broker_id)?;
    prompt_versions::Entity::find_by_id(id)
        .filter(prompt_versions::Column::BrokerId.eq(broker_id))
        .one(db)
        .await?
        .ok_or(Error::NotFound("Prompt version"))
}

/// A version written by hand.
#[derive(Clone, Debug, Default)]
pub struct VersionInput {
    pub version_tag: String,
    /// The full prompt text; composed from `sections_json` (over the current configuration) when absent.
    pub content: Option<String>,
    /// Free JSON object; the known prompt keys (`agent_name`, `identity_prompt`, …) must have their
    /// types, and are restored into the configuration when the version is activated.
    pub sections_json: Option<Value>,
    pub notes: Option<String>,
    pub activate: bool,
}

const MAX_CONTENT: usize = 50_000;

pub async fn create(db: &DatabaseConnection, ctx: &Ctx, broker_id: i64, input: VersionInput) -> Result<PromptVersion> {
    let broker_id = scope(ctx, broker_id)?;
    let tag = input.version_tag.trim().to_string();
    if tag.is_empty() || tag.chars().count() > 50 {
        return Err(Error::invalid_body("version_tag", "version_tag must have 1 to 50 characters"));
    }
    let content = input.content.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    if content.as_ref().is_some_and(|c| c.chars().count() > MAX_CONTENT) {
        return Err(Error::invalid_body("content", format!("content must have at most {MAX_CONTENT} characters")));
    }
    let patch = match &input.sections_json {
        Some(v) => Some(PromptPatch::from_sections_json(v, "sections_json")?),
        None => None,
    };
    if content.is_none() && patch.is_none() {
        return Err(Error::invalid("validation_error", FieldError::body("content", "Field required", "missing")));
    }
    let notes = input.notes.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let txn = db.begin().await?;
    let current = lock_prompt_config(&txn, broker_id).await?;
    let content = match content {
        Some(c) => c,
        None => {
            let mut sections = config::sections_of(&txn, &current).await?;
            if let Some(p) = &patch {
                p.apply_to_sections(&mut sections);
            }
            compose_base(&sections)
        }
    };
    let v = insert(
        &txn,
        NewVersion {
            broker_id,
            tag: Some(tag),
            content,
            sections: input.sections_json,
            notes,
            created_by: ctx.user_id,
            activate: input.activate,
        },
    )
    .await?;
    if input.activate
        && let Some(p) = &patch
    {
        config::restore_prompt(&txn, current, p).await?;
    }
    audit::record(
        &txn,
        ctx,
        audit::Entry {
            action: "prompt_version_create",
            resource_type: "prompt_version",
            resource_id: Some(v.id),
            broker_id: Some(broker_id),
            changes: json!({"version": v.version, "version_tag": v.version_tag, "activated": v.is_active}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(v)
}

/// Makes `id` the broker's only active version (the rollback when it is an older one) and restores
/// the prompt configuration its `sections_json` describes. Activating the active version is a no-op.
pub async fn activate(db: &DatabaseConnection, ctx: &Ctx, broker_id: i64, id: i64) -> Result<PromptVersion> {
    let broker_id = scope(ctx, broker_id)?;
    let txn = db.begin().await?;
    let current = lock_prompt_config(&txn, broker_id).await?;
    let target = prompt_versions::Entity::find_by_id(id)
        .filter(prompt_versions::Column::BrokerId.eq(broker_id))
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("Prompt version"))?;
    if target.is_active {
        txn.commit().await?;
        return Ok(target);
    }
    let previous = active_version(&txn, broker_id).await?;
    deactivate_all(&txn, broker_id).await?;
    let mut am: prompt_versions::ActiveModel = target.clone().into();
    am.is_active = Set(true);
    am.activated_at = Set(Some(Utc::now()));
    let activated = am.update(&txn).await?;
    // A stored snapshot that no longer parses (hand-written JSON) still activates: its text is what
    // the LLM uses; only the configuration is left as it is.
    let restored = match target.sections_json.as_ref().map(|s| PromptPatch::from_sections_json(s, "sections_json")) {
        Some(Ok(p)) => {
            config::restore_prompt(&txn, current, &p).await?;
            true
        }
        _ => false,
    };
    audit::record(
        &txn,
        ctx,
        audit::Entry {
            action: "prompt_version_activate",
            resource_type: "prompt_version",
            resource_id: Some(activated.id),
            broker_id: Some(broker_id),
            changes: json!({
                "version": activated.version,
                "version_tag": activated.version_tag,
                "previous_version_id": previous.map(|p| p.id),
                "configuration_restored": restored,
            }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(activated)
}
