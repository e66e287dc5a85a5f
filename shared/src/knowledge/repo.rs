//! Tenant-scoped knowledge-base queries. Every function takes the caller's `Ctx`; a SUPERADMIN
//! reaches every broker only through an explicit `None` broker scope.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, Statement,
};

use super::model::{Search, SearchHit, SourceType};
use crate::ctx::{Ctx, Role};
use crate::entities::{knowledge_base, knowledge_chunks};
use crate::error::{Error, Result};
use crate::integrations::embeddings::DIMENSIONS;

const NOT_FOUND: Error = Error::NotFound("Knowledge base entry");

/// The broker whose entries the caller reaches: for SUPERADMIN the one it names, or every broker
/// (`None`); for everybody else its own (naming another broker is 404).
pub fn visible_broker(ctx: &Ctx, requested: Option<i64>) -> Result<Option<i64>> {
    match (ctx.role, ctx.broker_id) {
        (Role::Superadmin, _) => Ok(requested),
        (_, Some(own)) if requested.is_none_or(|r| r == own) => Ok(Some(own)),
        (_, Some(_)) => Err(Error::NotFound("Broker")),
        (_, None) => Err(Error::forbidden("No broker is associated with this account")),
    }
}

/// `knowledge_base` restricted to one broker, or to none for `None`.
fn scoped(broker: Option<i64>) -> Select<knowledge_base::Entity> {
    let q = knowledge_base::Entity::find();
    match broker {
        Some(b) => q.filter(knowledge_base::Column::BrokerId.eq(b)),
        None => q,
    }
}

/// The entry `id` if the caller may see it, else 404.
pub async fn find_visible(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<knowledge_base::Model> {
    scoped(visible_broker(ctx, None)?).filter(knowledge_base::Column::Id.eq(id)).one(db).await?.ok_or(NOT_FOUND)
}

/// Same as [`find_visible`], locking the row for the rest of the transaction.
pub async fn lock_visible(db: &impl ConnectionTrait, ctx: &Ctx, id: i64) -> Result<knowledge_base::Model> {
    scoped(visible_broker(ctx, None)?)
        .filter(knowledge_base::Column::Id.eq(id))
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or(NOT_FOUND)
}

/// Validated list filters.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub broker_id: Option<i64>,
    pub source_type: Option<SourceType>,
    /// Folded (lower-case, accent-free) text the title must contain.
    pub search: Option<String>,
    pub skip: u64,
    pub limit: u64,
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// One page of entries, newest first, and how many match.
pub async fn list(db: &impl ConnectionTrait, ctx: &Ctx, f: &ListFilter) -> Result<(Vec<knowledge_base::Model>, u64)> {
    let mut q = scoped(visible_broker(ctx, f.broker_id)?);
    if let Some(t) = f.source_type {
        q = q.filter(knowledge_base::Column::SourceType.eq(t.as_str()));
    }
    if let Some(needle) = &f.search {
        q = q.filter(Expr::col(knowledge_base::Column::SearchText).like(format!("%{}%", like_escape(needle))));
    }
    let page = q.clone().order_by_desc(knowledge_base::Column::Id).offset(crate::db::offset(f.skip)).limit(f.limit);
    let (rows, total) = tokio::try_join!(page.all(db), q.count(db))?;
    Ok((rows, total))
}

/// Removes an entry's chunks (its text changed: the old vectors no longer describe it).
pub async fn delete_chunks(db: &impl ConnectionTrait, ctx: &Ctx, entry: &knowledge_base::Model) -> Result<()> {
    visible_broker(ctx, Some(entry.broker_id))?;
    knowledge_chunks::Entity::delete_many()
        .filter(knowledge_chunks::Column::EntryId.eq(entry.id))
        .filter(knowledge_chunks::Column::BrokerId.eq(entry.broker_id))
        .exec(db)
        .await?;
    Ok(())
}

/// An embedding job's result: the chunks (text and vector, in order) of version `version` of entry
/// `entry_id`, made by `provider` / `model`.
pub struct EmbeddedChunks<'a> {
    pub entry_id: i64,
    pub version: i64,
    pub chunks: Vec<(String, Vec<f32>)>,
    pub provider: &'a str,
    pub model: &'a str,
}

/// The statement of [`store_chunks`] for `n` chunks. Parameters: `$1` entry, `$2` broker, `$3`
/// version, `$4` provider, `$5` model, `$6` chunk count, then text and vector of each chunk.
///
/// Its parts run on one snapshot in an unspecified order, so none may depend on another's writes:
/// the new chunks overwrite the old ones of the same index (`ON CONFLICT` on the entry's unique
/// `(entry_id, chunk_index)`), and the old ones past the new count are deleted. Every part joins
/// `cur`, the entry locked at the job's version, so an edited or deleted entry changes nothing.
/// The commit need not wait for its WAL flush (about 4 ms of fsync per job here, which capped the
/// queue at a few hundred entries per second): the chunks can always be made again, and a commit
/// lost in a database crash leaves the entry `pending`, which the stale-pending sweeper enqueues
/// again. `set_config(…, true)` lasts until the end of the statement's own transaction, and the
/// commit reads it.
fn store_chunks_sql(n: usize) -> String {
    let rows = (0..n)
        .map(|i| format!("({i}, ${}::text, ${}::vector({DIMENSIONS}))", 7 + 2 * i, 8 + 2 * i))
        .collect::<Vec<_>>()
        .join(", ");
    let put = if n == 0 {
        String::new()
    } else {
        format!(
            "put AS ( \
                 INSERT INTO knowledge_chunks (entry_id, broker_id, chunk_index, content, embedding, provider, model, source_type) \
                 SELECT cur.id, cur.broker_id, n.chunk_index, n.content, n.embedding, $4, $5, cur.source_type \
                 FROM cur, (VALUES {rows}) AS n(chunk_index, content, embedding) \
                 ON CONFLICT (entry_id, chunk_index) DO UPDATE SET content = EXCLUDED.content, \
                     embedding = EXCLUDED.embedding, provider = EXCLUDED.provider, model = EXCLUDED.model, \
                     source_type = EXCLUDED.source_type, created_at = now() \
             ), "
        )
    };
    format!(
        "WITH settings AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS sync), \
         cur AS MATERIALIZED ( \
             SELECT e.id, e.broker_id, e.source_type FROM knowledge_base e, settings \
             WHERE e.id = $1 AND e.broker_id = $2 AND e.version = $3 AND settings.sync = 'off' \
             FOR UPDATE OF e \
         ), \
         {put}\
         gone AS ( \
             DELETE FROM knowledge_chunks c USING cur \
             WHERE c.entry_id = cur.id AND c.broker_id = cur.broker_id AND c.chunk_index >= $6 \
         ) \
         UPDATE knowledge_base e SET embedding_status = 'ready', embedding_error = NULL, embedding_provider = $4, \
             embedding_model = $5, chunk_count = $6, embedded_at = now() \
         FROM cur WHERE e.id = cur.id \
         RETURNING e.id"
    )
}

/// Stores an embedding job's chunks and marks the entry `ready`, in one statement (one round
/// trip), if the entry is still at the job's version. Returns whether it was (`false`: the entry
/// was deleted or edited since; a newer job embeds it).
pub async fn store_chunks(
    db: &impl ConnectionTrait,
    ctx: &Ctx,
    broker_id: i64,
    job: EmbeddedChunks<'_>,
) -> Result<bool> {
    visible_broker(ctx, Some(broker_id))?;
    let count = i32::try_from(job.chunks.len()).map_err(|_| Error::internal(anyhow::anyhow!("too many chunks")))?;
    let mut values: Vec<sea_orm::Value> = vec![
        job.entry_id.into(),
        broker_id.into(),
        job.version.into(),
        job.provider.into(),
        job.model.into(),
        count.into(),
    ];
    for (content, vector) in job.chunks {
        values.push(content.into());
        values.push(sea_orm::prelude::PgVector::from(vector).into());
    }
    let sql = store_chunks_sql(count as usize);
    let stored = db.query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
    Ok(stored.is_some())
}

/// Moves an entry's chunks to the entry's (new) `source_type`, and so to that kind's graph.
pub async fn set_chunks_kind(db: &impl ConnectionTrait, ctx: &Ctx, entry: &knowledge_base::Model) -> Result<()> {
    visible_broker(ctx, Some(entry.broker_id))?;
    knowledge_chunks::Entity::update_many()
        .col_expr(knowledge_chunks::Column::SourceType, Expr::value(entry.source_type.clone()))
        .filter(knowledge_chunks::Column::EntryId.eq(entry.id))
        .filter(knowledge_chunks::Column::BrokerId.eq(entry.broker_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The search statement. The nearest chunks come in the order of the HNSW index's half-precision
/// copies (`embedding::halfvec`, migration `000014`), and are ranked by their full-precision
/// distance. Parameters: `$1` query vector, `$2` broker, `$3` provider, `$4` model,
/// `$5` candidate chunks, `$6` lowest similarity, `$7` results. Each kind of entry has its own graph
/// (a partial index per `source_type`): the statement asks every kind's graph, or only `kind`'s,
/// with the kind written as a literal so the planner can match the branch with its index (a
/// parameter could not be matched by a generic plan). Public so a test can check that its plan can
/// use the HNSW indexes.
pub fn search_sql(kind: Option<SourceType>) -> String {
    let nearest = |kind: &str| {
        format!(
            "(SELECT c.entry_id, c.chunk_index, c.content, c.embedding <=> $1 AS distance \
              FROM knowledge_chunks c \
              WHERE c.broker_id = $2 AND c.provider = $3 AND c.model = $4 AND c.source_type = {kind} \
              ORDER BY c.embedding::halfvec({DIMENSIONS}) <=> $1::halfvec({DIMENSIONS}) \
              LIMIT $5)"
        )
    };
    let kinds = match kind {
        Some(k) => vec![k],
        None => SourceType::ALL.to_vec(),
    };
    let nearest = kinds.iter().map(|k| nearest(&format!("'{}'", k.as_str()))).collect::<Vec<_>>().join(" UNION ALL ");
    format!(
        "WITH nearest AS MATERIALIZED ({nearest}), \
         best AS ( \
             SELECT DISTINCT ON (entry_id) entry_id, content, distance \
             FROM nearest ORDER BY entry_id, distance, chunk_index \
         ) \
         SELECT e.id, e.title, e.content, e.source_type, e.metadata, b.content AS snippet, \
                (1 - b.distance)::float8 AS similarity \
         FROM best b JOIN knowledge_base e ON e.id = b.entry_id AND e.broker_id = $2 \
         WHERE 1 - b.distance >= $6 \
         ORDER BY b.distance, e.id \
         LIMIT $7"
    )
}

/// The default `hnsw.ef_search` (`KB_EF_SEARCH`). With one graph per kind of entry, 40 finds 96 %
/// of the exact top 5 in 50 000 entries (bench `kb_search`) at a third of the pages that 100 read.
pub const EF_SEARCH: u32 = 40;

/// The HNSW scan settings of a search, set for every pooled connection at connect time
/// ([`crate::db::connect`] sends them as startup options, so a search is one statement and one round
/// trip): a wider `ef_search` (`KB_EF_SEARCH`), and on pgvector ≥ 0.8 the iterative scan (older
/// versions drop the unknown name with a warning when the extension loads; `ef_search` still
/// applies). They only change HNSW index scans, which only the knowledge base runs.
pub fn session_settings(ef_search: u32) -> [(&'static str, String); 2] {
    [("hnsw.ef_search", ef_search.to_string()), ("hnsw.iterative_scan", "relaxed_order".to_string())]
}

/// The same settings as one statement, for a connection that was not opened by [`crate::db::connect`]
/// (local to the current transaction).
pub fn scan_settings(ef_search: u32) -> String {
    format!(
        "DO $$ BEGIN \
             PERFORM set_config('hnsw.ef_search', '{ef_search}', true); \
             PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true); \
         EXCEPTION WHEN OTHERS THEN \
             PERFORM set_config('hnsw.ef_search', '{ef_search}', true); \
         END $$"
    )
}

/// Chunks each kind's graph is asked for before the best one per entry is kept: four per result
/// wanted (an entry may have several close chunks), within what one `ef_search` walk gathers, so
/// the iterative scan rarely has to walk on.
fn candidates(top_k: u64) -> i64 {
    i64::try_from(top_k.saturating_mul(4)).unwrap_or(i64::MAX).clamp(20, 40)
}

/// A query's vector and the provider and model that made it (only their chunks are compared).
pub struct QueryVector<'a> {
    pub vector: Vec<f32>,
    pub provider: &'a str,
    pub model: &'a str,
}

/// The entries of `broker_id` whose best chunk is closest to `vector`, among chunks of the query's
/// provider and model only: at most `search.top_k`, each with similarity ≥ `min_similarity`, best first.
///
/// The nearest chunks are `ORDER BY embedding::halfvec <=> $1 LIMIT n` under the broker filter. The planner
/// chooses: for a broker with few chunks, an exact scan of its rows (`(broker_id, provider, model)`
/// btree, then a sort); for a large one, the HNSW index. A filtered approximate scan can run out of
/// candidates before `n` rows pass the broker filter, so the search asks pgvector ≥ 0.8 for an
/// iterative scan (which keeps walking the graph until enough rows pass) and re-sorts the
/// candidates itself, since that scan may return them slightly out of order ([`session_settings`]).
pub async fn search(
    db: &DatabaseConnection,
    ctx: &Ctx,
    broker_id: i64,
    query: QueryVector<'_>,
    search: &Search,
    min_similarity: f64,
) -> Result<Vec<SearchHit>> {
    let broker_id = visible_broker(ctx, Some(broker_id))?.ok_or(Error::NotFound("Broker"))?;
    let values: Vec<sea_orm::Value> = vec![
        sea_orm::prelude::PgVector::from(query.vector).into(),
        broker_id.into(),
        query.provider.into(),
        query.model.into(),
        candidates(search.top_k).into(),
        min_similarity.into(),
        (search.top_k as i64).into(),
    ];
    let sql = search_sql(search.source_type);
    let mut hits =
        SearchHit::find_by_statement(Statement::from_sql_and_values(DbBackend::Postgres, &sql, values)).all(db).await?;
    for h in &mut hits {
        h.similarity = (h.similarity * 10_000.0).round() / 10_000.0;
    }
    Ok(hits)
}
