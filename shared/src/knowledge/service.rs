//! Knowledge-base use cases: CRUD, re-embedding, search, the conversation engine's
//! [`answer_context`], and the `embedding` job's work ([`embed_entry`], [`mark_failed`]).
//!
//! Writes store the text and enqueue an `embedding` job after commit; the entry answers
//! `embedding_status: "pending"` until the worker has chunked and embedded it. Each change of title
//! or content bumps the entry's `version`, and a job embeds only the version it was enqueued for, so
//! however jobs interleave, the stored chunks end up describing the latest text.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement, TransactionTrait,
};
use serde_json::Value;

use super::chunk;
use super::model::{
    EmbeddingStatus, Hit, MAX_QUERY, ParamsIn, SearchHit, SearchRequest, SourceType, check_metadata, clean_content,
    clean_title, parse_search,
};
use super::repo::{self, ListFilter};
use crate::Infra;
use crate::ctx::{Ctx, Role};
use crate::entities::{brokers, knowledge_base};
use crate::error::{Error, FieldError, Result};
use crate::integrations::embeddings::{self, Purpose};
use crate::jobs::{self, embedding::Embedding};

/// Raw list parameters as the client sent them.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub source_type: Option<String>,
    pub search: Option<String>,
    pub broker_id: Option<i64>,
    pub skip: u64,
    pub limit: u64,
}

/// A page of entries (newest first) and the number matching. SUPERADMIN without `broker_id` sees
/// every broker's.
pub async fn list(infra: &Infra, ctx: &Ctx, q: &ListQuery) -> Result<(Vec<knowledge_base::Model>, u64)> {
    let source_type = q
        .source_type
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| SourceType::parse_field(s, FieldError::query("source_type", "", "value_error")))
        .transpose()?;
    if q.search.as_deref().is_some_and(|s| s.chars().count() > 200) {
        return Err(Error::invalid_query("search", "search must have at most 200 characters"));
    }
    let search = q.search.as_deref().map(|s| crate::text::fold(s.trim())).filter(|s| !s.is_empty());
    let filter = ListFilter { broker_id: q.broker_id, source_type, search, skip: q.skip, limit: q.limit };
    repo::list(&infra.db, ctx, &filter).await
}

/// The entry `id`, if the caller may see it and it belongs to `broker_filter` when one is given
/// (the reference clients send their `broker_id` along); else 404.
pub async fn get(infra: &Infra, ctx: &Ctx, id: i64, broker_filter: Option<i64>) -> Result<knowledge_base::Model> {
    let entry = repo::find_visible(&infra.db, ctx, id).await?;
    in_broker(ctx, entry, broker_filter)
}

fn in_broker(ctx: &Ctx, entry: knowledge_base::Model, broker_filter: Option<i64>) -> Result<knowledge_base::Model> {
    repo::visible_broker(ctx, broker_filter)?;
    match broker_filter {
        Some(b) if b != entry.broker_id => Err(Error::NotFound("Knowledge base entry")),
        _ => Ok(entry),
    }
}

/// A new entry as the client sent it.
#[derive(Clone, Debug, Default)]
pub struct NewEntry {
    pub title: String,
    pub content: String,
    /// Default `custom`.
    pub source_type: Option<String>,
    pub metadata: Option<Value>,
    /// SUPERADMIN: the broker the entry belongs to (required for it).
    pub broker_id: Option<i64>,
    /// The lead the entry was written from (a resolved conversation): erased with the lead.
    pub lead_id: Option<i64>,
}

/// The broker a write acts on: the caller's own, or for SUPERADMIN the existing one it names.
async fn write_broker(db: &impl ConnectionTrait, ctx: &Ctx, requested: Option<i64>) -> Result<i64> {
    let broker_id = ctx.target_broker(requested)?;
    if ctx.is_superadmin() && brokers::Entity::find_by_id(broker_id).one(db).await?.is_none() {
        return Err(Error::NotFound("Broker"));
    }
    Ok(broker_id)
}

pub async fn create(infra: &Infra, ctx: &Ctx, input: NewEntry) -> Result<knowledge_base::Model> {
    let title = clean_title(&input.title)?;
    let content = clean_content(&input.content)?;
    let source_type = match input.source_type.as_deref() {
        Some(s) => SourceType::parse_field(s, FieldError::body("source_type", "", "value_error"))?,
        None => SourceType::Custom,
    };
    let metadata = check_metadata(input.metadata.unwrap_or(Value::Null))?;
    let broker_id = write_broker(&infra.db, ctx, input.broker_id).await?;
    if let Some(lead_id) = input.lead_id {
        let lead = crate::leads::repo::find_visible(&infra.db, ctx, lead_id).await?;
        if lead.broker_id != broker_id {
            return Err(Error::NotFound("Lead"));
        }
    }
    let entry = knowledge_base::ActiveModel {
        broker_id: Set(broker_id),
        lead_id: Set(input.lead_id),
        created_by: Set(ctx.user_id),
        search_text: Set(crate::text::fold(&title)),
        title: Set(title),
        content: Set(content),
        source_type: Set(source_type.as_str().to_string()),
        metadata: Set(Value::Object(metadata)),
        ..Default::default()
    }
    .insert(&infra.db)
    .await?;
    enqueue_or_log(infra, &entry).await;
    Ok(entry)
}

/// A partial update: `None` leaves a field alone; `metadata: Some(None)` (JSON `null`) empties it.
#[derive(Clone, Debug, Default)]
pub struct EntryPatch {
    pub title: Option<String>,
    pub content: Option<String>,
    pub source_type: Option<String>,
    /// Replaces the whole object.
    pub metadata: Option<Option<Value>>,
}

/// Updates an entry. A new title or content bumps the version, drops the old chunks (they no longer
/// describe the entry) and enqueues a re-embed; other changes keep the vectors.
pub async fn update(
    infra: &Infra,
    ctx: &Ctx,
    id: i64,
    broker_filter: Option<i64>,
    patch: EntryPatch,
) -> Result<knowledge_base::Model> {
    let title = patch.title.as_deref().map(clean_title).transpose()?;
    let content = patch.content.as_deref().map(clean_content).transpose()?;
    let source_type = patch
        .source_type
        .as_deref()
        .map(|s| SourceType::parse_field(s, FieldError::body("source_type", "", "value_error")))
        .transpose()?;
    let metadata = patch.metadata.map(|m| check_metadata(m.unwrap_or(Value::Null))).transpose()?;

    let txn = infra.db.begin().await?;
    let current = in_broker(ctx, repo::lock_visible(&txn, ctx, id).await?, broker_filter)?;
    let text_changed =
        title.as_ref().is_some_and(|t| *t != current.title) || content.as_ref().is_some_and(|c| *c != current.content);
    let mut am = current.clone().into_active_model();
    if let Some(t) = title {
        am.search_text = Set(crate::text::fold(&t));
        am.title = Set(t);
    }
    if let Some(c) = content {
        am.content = Set(c);
    }
    if let Some(s) = source_type {
        am.source_type = Set(s.as_str().to_string());
    }
    if let Some(m) = metadata {
        am.metadata = Set(Value::Object(m));
    }
    let now = Utc::now();
    if text_changed {
        repo::delete_chunks(&txn, ctx, &current).await?;
        am.version = Set(current.version + 1);
        am.embedding_status = Set(EmbeddingStatus::Pending.as_str().into());
        am.embedding_error = Set(None);
        am.embedding_provider = Set(None);
        am.embedding_model = Set(None);
        am.chunk_count = Set(0);
        am.embedded_at = Set(None);
        am.embedding_requested_at = Set(now);
    }
    am.updated_at = Set(now);
    let entry = am.update(&txn).await?;
    if !text_changed && entry.source_type != current.source_type {
        repo::set_chunks_kind(&txn, ctx, &entry).await?;
    }
    txn.commit().await?;
    if text_changed {
        enqueue_or_log(infra, &entry).await;
    }
    Ok(entry)
}

/// Deletes an entry and its chunks.
pub async fn delete(infra: &Infra, ctx: &Ctx, id: i64, broker_filter: Option<i64>) -> Result<()> {
    let entry = get(infra, ctx, id, broker_filter).await?;
    knowledge_base::Entity::delete_many()
        .filter(knowledge_base::Column::Id.eq(entry.id))
        .filter(knowledge_base::Column::BrokerId.eq(entry.broker_id))
        .exec(&infra.db)
        .await?;
    Ok(())
}

/// ADMIN (SUPERADMIN naming the broker): marks every entry of the broker `pending`, bumps its version
/// and enqueues one job per entry, e.g. after `EMBEDDING_PROVIDER` changed. Returns how many.
///
/// Unlike a create, a failed enqueue fails the call: the entries stay `pending` (the sweeper,
/// [`requeue_stale`], picks them up) and calling again is harmless.
pub async fn reembed(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>) -> Result<u64> {
    ctx.require_admin()?;
    let broker_id = match (ctx.role, broker_id) {
        (Role::Superadmin, None) => {
            return Err(Error::invalid_query("broker_id", "broker_id is required for platform users"));
        }
        _ => write_broker(&infra.db, ctx, broker_id).await?,
    };
    #[derive(FromQueryResult)]
    struct Bumped {
        id: i64,
        version: i64,
    }
    let bumped = Bumped::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE knowledge_base SET version = version + 1, embedding_status = 'pending', embedding_error = NULL, \
             embedding_requested_at = now() \
         WHERE broker_id = $1 RETURNING id, version",
        [broker_id.into()],
    ))
    .all(&infra.db)
    .await?;
    for b in &bumped {
        jobs::enqueue(infra, Embedding { broker_id, entry_id: b.id, version: b.version }).await?;
    }
    tracing::info!(broker_id, queued = bumped.len(), "knowledge base re-embed queued");
    Ok(bumped.len() as u64)
}

/// Enqueues the entry's embedding job. The entry is committed already, so a failed enqueue (Redis
/// down) must not fail the request, or the client's retry would create the entry twice: it is
/// logged, the entry stays `pending`, and [`requeue_stale`] enqueues it later.
async fn enqueue_or_log(infra: &Infra, entry: &knowledge_base::Model) {
    let job = Embedding { broker_id: entry.broker_id, entry_id: entry.id, version: entry.version };
    if let Err(e) = jobs::enqueue(infra, job).await {
        tracing::error!(error = %e, broker_id = entry.broker_id, entry_id = entry.id, "could not enqueue an embedding job");
    }
}

/// Search results and the broker searched.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOutcome {
    pub broker_id: i64,
    pub query: String,
    pub hits: Vec<SearchHit>,
}

/// Semantic search over the caller's broker (SUPERADMIN: the one it names). The query is embedded
/// here, with the configured provider: it is what the request is for.
#[tracing::instrument(skip_all, fields(broker_id))]
pub async fn search(infra: &Infra, ctx: &Ctx, r: &SearchRequest) -> Result<SearchOutcome> {
    let s = parse_search(r)?;
    let broker_id = repo::visible_broker(ctx, r.broker_id)?
        .ok_or_else(|| r.params_in.invalid("broker_id", "broker_id is required for platform users"))?;
    tracing::Span::current().record("broker_id", broker_id);
    let embedder = embeddings::configured(&infra.settings)?;
    let min_similarity = s.min_similarity.unwrap_or_else(|| embedder.default_min_similarity());
    let vector = embeddings::embed_all(
        infra,
        embedder.as_ref(),
        std::slice::from_ref(&s.query),
        Purpose::Query,
        Some(broker_id),
    )
    .await?
    .pop()
    .ok_or_else(|| Error::internal(anyhow::anyhow!("the embedder returned no vector")))?;
    let query = repo::QueryVector { vector, provider: embedder.provider(), model: embedder.model() };
    let hits = repo::search(&infra.db, ctx, broker_id, query, &s, min_similarity).await?;
    Ok(SearchOutcome { broker_id, query: s.query, hits })
}

/// Hits the conversation engine uses for a lead's question: the top 3 entries of the caller's broker
/// above the provider's default threshold, best first. An empty question has none; a long one is
/// cut to 2 000 characters. Errors are the embedding provider's (the engine may answer without
/// context).
pub async fn answer_context(infra: &Infra, ctx: &Ctx, question: &str) -> Result<Vec<Hit>> {
    let question: String = question.trim().chars().take(MAX_QUERY).collect();
    if question.is_empty() {
        return Ok(Vec::new());
    }
    let r = SearchRequest {
        query: question,
        top_k: Some(3),
        source_type: None,
        min_similarity: None,
        broker_id: ctx.broker_id,
        params_in: ParamsIn::Body,
    };
    let outcome = search(infra, ctx, &r).await?;
    Ok(outcome
        .hits
        .into_iter()
        .map(|h| Hit {
            entry_id: h.id,
            title: h.title,
            snippet: h.snippet,
            similarity: h.similarity,
            source_type: h.source_type.parse().unwrap_or(SourceType::Custom),
        })
        .collect())
}

/// The broker itself acting (the worker's jobs): reaches that broker's entries only.
fn broker_ctx(broker_id: i64) -> Ctx {
    Ctx { user_id: None, broker_id: Some(broker_id), role: Role::Admin, origin: None }
}

/// What an embedding job did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Embedded {
    /// The entry is `ready` with this many chunks.
    Ready { chunks: usize },
    /// Nothing to do: the entry was deleted, or edited since (a newer job embeds it).
    Skipped(&'static str),
}

/// The text each chunk is embedded as: the title gives every chunk its topic.
fn embedding_text(title: &str, chunk: &str) -> String {
    format!("{title}\n\n{chunk}")
}

/// The `embedding` job: chunks the entry's content, embeds the chunks (title prepended) with the
/// configured provider in batches, then, if the entry is still at the job's version, replaces its
/// chunks and marks it `ready` in one statement ([`repo::store_chunks`]). Provider errors are returned for the queue
/// runner to retry or dead-letter; see [`mark_failed`].
#[tracing::instrument(skip_all, fields(broker_id = job.broker_id, entry_id = job.entry_id, version = job.version))]
pub async fn embed_entry(infra: &Infra, job: &Embedding) -> Result<Embedded> {
    let ctx = broker_ctx(job.broker_id);
    let entry = match repo::find_visible(&infra.db, &ctx, job.entry_id).await {
        Ok(e) => e,
        Err(Error::NotFound(_)) => return Ok(Embedded::Skipped("the entry was deleted")),
        Err(e) => return Err(e),
    };
    if entry.version != job.version {
        return Ok(Embedded::Skipped("the entry changed since the job was enqueued"));
    }
    let embedder = embeddings::configured(&infra.settings)?;
    let pieces = chunk::split(&entry.content);
    let texts: Vec<String> = pieces.iter().map(|p| embedding_text(&entry.title, p)).collect();
    let vectors =
        embeddings::embed_all(infra, embedder.as_ref(), &texts, Purpose::Document, Some(job.broker_id)).await?;

    let chunks = pieces.len();
    let stored = repo::store_chunks(
        &infra.db,
        &ctx,
        entry.broker_id,
        repo::EmbeddedChunks {
            entry_id: entry.id,
            version: job.version,
            chunks: pieces.into_iter().zip(vectors).collect(),
            provider: embedder.provider(),
            model: embedder.model(),
        },
    )
    .await?;
    if !stored {
        return Ok(Embedded::Skipped("the entry changed while it was being embedded"));
    }
    tracing::info!(chunks, provider = embedder.provider(), "knowledge base entry embedded");
    Ok(Embedded::Ready { chunks })
}

/// Longest `embedding_error` kept.
const MAX_ERROR: usize = 1_000;

/// Marks the job's entry `failed` with `err` (its code and the client-safe message), unless the
/// entry has moved on to a newer version. The job handler calls it when the job will not be
/// retried: a permanent error, or the last attempt. Returns whether the entry was marked.
pub async fn mark_failed(infra: &Infra, job: &Embedding, err: &Error) -> Result<bool> {
    let ctx = broker_ctx(job.broker_id);
    let broker_id = repo::visible_broker(&ctx, Some(job.broker_id))?;
    let detail = match err.detail() {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let message: String = format!("{}: {detail}", err.code()).chars().take(MAX_ERROR).collect();
    let res = knowledge_base::Entity::update_many()
        .col_expr(knowledge_base::Column::EmbeddingStatus, Expr::value(EmbeddingStatus::Failed.as_str()))
        .col_expr(knowledge_base::Column::EmbeddingError, Expr::value(message))
        .filter(knowledge_base::Column::Id.eq(job.entry_id))
        .filter(knowledge_base::Column::BrokerId.eq(broker_id))
        .filter(knowledge_base::Column::Version.eq(job.version))
        .exec(&infra.db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Most entries one sweep re-enqueues.
const SWEEP_BATCH: u64 = 500;

/// The sweeper for lost jobs: re-enqueues entries that have been `pending` for longer than
/// `older_than` since their job was enqueued (the enqueue failed, or the job was lost), oldest
/// first. A job that is merely slow runs twice, harmlessly: the second replaces the chunks with
/// the same ones. Returns how many were enqueued.
pub async fn requeue_stale(infra: &Infra, older_than: Duration) -> Result<u64> {
    let cutoff = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
    let stale: Vec<(i64, i64, i64)> = knowledge_base::Entity::find()
        .select_only()
        .columns([knowledge_base::Column::Id, knowledge_base::Column::BrokerId, knowledge_base::Column::Version])
        .filter(knowledge_base::Column::EmbeddingStatus.eq(EmbeddingStatus::Pending.as_str()))
        .filter(knowledge_base::Column::EmbeddingRequestedAt.lt(cutoff))
        .order_by_asc(knowledge_base::Column::EmbeddingRequestedAt)
        .limit(SWEEP_BATCH)
        .into_tuple()
        .all(&infra.db)
        .await?;
    for (entry_id, broker_id, version) in &stale {
        jobs::enqueue(infra, Embedding { broker_id: *broker_id, entry_id: *entry_id, version: *version }).await?;
        knowledge_base::Entity::update_many()
            .col_expr(knowledge_base::Column::EmbeddingRequestedAt, Expr::value(Utc::now()))
            .filter(knowledge_base::Column::Id.eq(*entry_id))
            .filter(knowledge_base::Column::Version.eq(*version))
            .exec(&infra.db)
            .await?;
    }
    Ok(stale.len() as u64)
}
