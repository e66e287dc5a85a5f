//! Tenant-scoped lead queries. Every function takes the caller's scope; there is no unscoped read.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select, Set, Statement,
};
use serde_json::Value;

use super::model::{Calificacion, LeadRow, Stage, Status};
use crate::ctx::{Ctx, LeadScope};
use crate::entities::{activity_log, leads};
use crate::error::{Error, Result};

/// Validated list filters.
#[derive(Clone, Debug, Default)]
pub struct LeadFilter {
    pub statuses: Vec<Status>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    pub search: Option<String>,
    pub stage: Option<Stage>,
    pub assigned_to: Option<i64>,
    pub created_from: Option<chrono::DateTime<chrono::Utc>>,
    pub created_to: Option<chrono::DateTime<chrono::Utc>>,
    pub calificacion: Option<Calificacion>,
    pub tags: Vec<String>,
    pub broker_id: Option<i64>,
    pub skip: u64,
    pub limit: u64,
}

impl LeadFilter {
    /// True when only the tenant scope restricts the list (no filter parameter given).
    pub fn is_unfiltered(&self) -> bool {
        self.statuses.is_empty()
            && self.min_score.is_none()
            && self.max_score.is_none()
            && self.search.is_none()
            && self.stage.is_none()
            && self.assigned_to.is_none()
            && self.created_from.is_none()
            && self.created_to.is_none()
            && self.calificacion.is_none()
            && self.tags.is_empty()
    }
}

/// Deltas pending for a broker before the list path folds them into its total.
const FOLD_AFTER: i64 = 64;

/// A broker's exact lead total: the folded total plus the pending deltas (`$1` = broker id).
const TOTAL_SQL: &str = "(COALESCE((SELECT total FROM lead_counts WHERE broker_id = $1), 0) \
    + COALESCE((SELECT sum(delta) FROM lead_count_deltas WHERE broker_id = $1), 0))::bigint";

/// The exact number of a broker's leads: the folded total plus the pending deltas the insert and
/// delete triggers wrote (see migration `m20261127_000002_lead_counts`). Folds when many are pending.
pub async fn broker_total(db: &impl ConnectionTrait, broker_id: i64) -> Result<u64> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT COALESCE((SELECT total FROM lead_counts WHERE broker_id = $1), 0)::bigint                     + COALESCE(d.sum, 0)::bigint AS total, d.n AS pending              FROM (SELECT sum(delta) AS sum, count(*) AS n FROM lead_count_deltas WHERE broker_id = $1) d",
            [broker_id.into()],
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("lead total query returned no row")))?;
    let total: i64 = row.try_get("", "total")?;
    let pending: i64 = row.try_get("", "pending")?;
    if pending > FOLD_AFTER {
        fold_deltas(db, broker_id).await?;
    }
    Ok(u64::try_from(total).unwrap_or_default())
}

/// Moves a broker's pending deltas into its total in one statement (exact under concurrency: a
/// delta is deleted by exactly one fold, and readers see either side of the commit).
pub async fn fold_deltas(db: &impl ConnectionTrait, broker_id: i64) -> Result<()> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "WITH d AS (DELETE FROM lead_count_deltas WHERE broker_id = $1 RETURNING delta)          INSERT INTO lead_counts (broker_id, total) SELECT $1, COALESCE(sum(delta), 0) FROM d          ON CONFLICT (broker_id) DO UPDATE SET total = lead_counts.total + EXCLUDED.total",
        [broker_id.into()],
    ))
    .await?;
    Ok(())
}

/// `leads` restricted to what `scope` may see.
pub fn scoped(scope: LeadScope) -> Select<leads::Entity> {
    let q = leads::Entity::find();
    match scope {
        LeadScope::All { broker_id: None } => q,
        LeadScope::All { broker_id: Some(b) } | LeadScope::Broker(b) => q.filter(leads::Column::BrokerId.eq(b)),
        LeadScope::Assigned { broker_id, user_id } => {
            q.filter(leads::Column::BrokerId.eq(broker_id)).filter(leads::Column::AssignedTo.eq(user_id))
        }
    }
}

/// The lead `id` if the caller may see it; otherwise 404 (never revealing that it exists).
pub async fn find_visible(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<leads::Model> {
    scoped(ctx.lead_scope(None)?).filter(leads::Column::Id.eq(id)).one(db).await?.ok_or(Error::NotFound("Lead"))
}

/// Same as [`find_visible`], locking the row for the rest of the transaction.
pub async fn lock_visible(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<leads::Model> {
    scoped(ctx.lead_scope(None)?)
        .filter(leads::Column::Id.eq(id))
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or(Error::NotFound("Lead"))
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// One page of leads, best score first, and the total matching the filters. For a whole broker
/// (no filter) the page and the total come back in one round trip.
pub async fn list(db: &impl ConnectionTrait, ctx: &Ctx, f: &LeadFilter) -> Result<(Vec<LeadRow>, u64)> {
    let scope = ctx.lead_scope(f.broker_id)?;
    let whole_broker = match scope {
        LeadScope::Broker(b) | LeadScope::All { broker_id: Some(b) } if f.is_unfiltered() => Some(b),
        _ => None,
    };
    let mut cond = Condition::all();
    match f.statuses.as_slice() {
        [] => {}
        [one] => cond = cond.add(leads::Column::Status.eq(one.as_str())),
        many => cond = cond.add(leads::Column::Status.is_in(many.iter().map(|s| s.as_str()))),
    }
    if let Some(min) = f.min_score {
        cond = cond.add(leads::Column::LeadScore.gte(min));
    }
    if let Some(max) = f.max_score {
        cond = cond.add(leads::Column::LeadScore.lte(max));
    }
    if let Some(needle) = &f.search {
        cond = cond.add(Expr::col(leads::Column::SearchText).like(format!("%{}%", like_escape(needle))));
    }
    if let Some(stage) = f.stage {
        cond = cond.add(leads::Column::PipelineStage.eq(stage.as_str()));
    }
    if let Some(a) = f.assigned_to {
        cond = cond.add(leads::Column::AssignedTo.eq(a));
    }
    if let Some(from) = f.created_from {
        cond = cond.add(leads::Column::CreatedAt.gte(from));
    }
    if let Some(to) = f.created_to {
        cond = cond.add(leads::Column::CreatedAt.lte(to));
    }
    if let Some(c) = f.calificacion {
        cond = cond.add(leads::Column::Calificacion.eq(c.as_str()));
    }
    if !f.tags.is_empty() {
        cond = cond.add(Expr::cust_with_values("tags @> $1::jsonb", [Value::from(f.tags.clone())]));
    }
    let filtered = scoped(scope).filter(cond);
    let mut page = filtered
        .clone()
        .select_only()
        .columns(LeadRow::COLUMNS)
        .order_by_desc(leads::Column::LeadScore)
        .order_by_desc(leads::Column::Id)
        .offset(crate::db::offset(f.skip))
        .limit(f.limit);
    if let Some(b) = whole_broker {
        page = page.expr_as(Expr::cust_with_values(TOTAL_SQL, [b]), "__total").expr_as(
            Expr::cust_with_values("(SELECT count(*) FROM lead_count_deltas WHERE broker_id = $1)", [b]),
            "__pending",
        );
    }
    let page = page.build(DbBackend::Postgres);
    let (rows, counted) = match whole_broker {
        Some(_) => (db.query_all_raw(page).await?, None),
        None => {
            let (rows, total) = tokio::try_join!(db.query_all_raw(page), filtered.count(db))?;
            (rows, Some(total))
        }
    };
    let total = match (counted, whole_broker, rows.first()) {
        (Some(total), _, _) => total,
        (None, Some(b), Some(first)) => {
            let total: i64 = first.try_get_by_index(LeadRow::COLUMNS.len())?;
            let pending: i64 = first.try_get_by_index(LeadRow::COLUMNS.len() + 1)?;
            if pending > FOLD_AFTER {
                fold_deltas(db, b).await?;
            }
            u64::try_from(total).unwrap_or_default()
        }
        // An empty page (or past the end): ask for the total on its own.
        (None, Some(b), None) => broker_total(db, b).await?,
        (None, None, _) => 0,
    };
    let rows = rows.iter().map(LeadRow::decode).collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((rows, total))
}

/// Maps a unique violation on insert/update to 409 `lead_exists` with the existing lead's id.
pub async fn duplicate_error(
    db: &impl ConnectionTrait,
    err: sea_orm::DbErr,
    broker_id: i64,
    phone: Option<&str>,
    email: Option<&str>,
) -> Error {
    let existing = match crate::db::unique_constraint(&err).as_deref() {
        Some("leads_broker_phone_key") => find_by_contact(db, broker_id, phone, None).await,
        Some("leads_broker_email_key") => find_by_contact(db, broker_id, None, email).await,
        _ => return err.into(),
    };
    match existing {
        Ok(Some(id)) => Error::LeadExists { lead_id: id },
        Ok(None) => Error::conflict("lead_exists", "A lead with this phone or email already exists"),
        Err(e) => e,
    }
}

/// The id of a broker's lead with this phone or email.
pub async fn find_by_contact(
    db: &impl ConnectionTrait,
    broker_id: i64,
    phone: Option<&str>,
    email: Option<&str>,
) -> Result<Option<i64>> {
    let mut any = Condition::any();
    if let Some(p) = phone {
        any = any.add(leads::Column::Phone.eq(p));
    }
    if let Some(e) = email {
        any = any.add(leads::Column::Email.eq(e));
    }
    if phone.is_none() && email.is_none() {
        return Ok(None);
    }
    Ok(leads::Entity::find()
        .select_only()
        .column(leads::Column::Id)
        .filter(leads::Column::BrokerId.eq(broker_id))
        .filter(any)
        .order_by_asc(leads::Column::Id)
        .into_tuple::<i64>()
        .one(db)
        .await?)
}

/// An activity row of `lead` by `user_id` (`None`: the system), for one insert or a batch.
pub fn activity_row(
    lead: &leads::Model,
    user_id: Option<i64>,
    action_type: &str,
    details: Value,
) -> activity_log::ActiveModel {
    activity_log::ActiveModel {
        lead_id: Set(lead.id),
        broker_id: Set(lead.broker_id),
        user_id: Set(user_id),
        action_type: Set(action_type.to_string()),
        details: Set(details),
        ..Default::default()
    }
}

/// Appends an activity row for a lead.
pub async fn add_activity(
    db: &impl ConnectionTrait,
    ctx: &Ctx,
    lead: &leads::Model,
    action_type: &str,
    details: Value,
) -> Result<()> {
    activity_row(lead, ctx.user_id, action_type, details).insert(db).await?;
    Ok(())
}

/// The newest `n` activities of a lead (all of them with `None`).
pub async fn activities(db: &impl ConnectionTrait, lead_id: i64, n: Option<u64>) -> Result<Vec<activity_log::Model>> {
    let q = activity_log::Entity::find()
        .filter(activity_log::Column::LeadId.eq(lead_id))
        .order_by_desc(activity_log::Column::CreatedAt)
        .order_by_desc(activity_log::Column::Id);
    Ok(match n {
        Some(n) => q.limit(n).all(db).await?,
        None => q.all(db).await?,
    })
}
