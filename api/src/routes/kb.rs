//! `/api/v1/kb`: the knowledge base Sofía answers from — CRUD, semantic search (`POST /search`, and
//! `GET /search?q=` as the reference service served it) and re-embedding. ADMIN and AGENT reach their
//! own broker's entries (reference §2.3); SUPERADMIN any broker's, naming it with `broker_id` where
//! an endpoint needs one broker (create, search, re-embed).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use shared::entities::knowledge_base;
use shared::knowledge::model::{ParamsIn, SearchRequest};
use shared::knowledge::service::{self, EntryPatch, ListQuery, NewEntry, SearchOutcome};

use super::ApiTags;
use crate::body::{JsonBody, maybe};
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;

pub struct KbApi;

/// A knowledge-base entry.
#[derive(Object)]
pub struct KbEntryOut {
    pub id: i64,
    pub broker_id: i64,
    pub title: String,
    pub content: String,
    /// `property` · `faq` · `policy` · `subsidy` · `custom`
    pub source_type: String,
    pub metadata: Value,
    /// `pending` (stored, being embedded) · `ready` (searchable) · `failed` (see `embedding_error`)
    pub embedding_status: String,
    /// Why embedding failed (`code: message`), when `failed`.
    pub embedding_error: Option<String>,
    /// Whether the entry's current text is embedded (`embedding_status == "ready"`).
    pub has_embedding: bool,
    /// Provider and model of the stored vectors (`local` · `gemini` · `openai`), when ready.
    pub embedding_provider: Option<String>,
    pub embedding_model: Option<String>,
    /// Chunks the content was split into (about 800 characters each).
    pub chunk_count: i32,
    /// Bumped on each change of title or content.
    pub version: i64,
    /// The lead the entry was written from; deleting the lead deletes the entry.
    pub lead_id: Option<i64>,
    pub created_by: Option<i64>,
    pub embedded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<knowledge_base::Model> for KbEntryOut {
    fn from(e: knowledge_base::Model) -> Self {
        KbEntryOut {
            has_embedding: e.embedding_status == "ready",
            id: e.id,
            broker_id: e.broker_id,
            title: e.title,
            content: e.content,
            source_type: e.source_type,
            metadata: e.metadata,
            embedding_status: e.embedding_status,
            embedding_error: e.embedding_error,
            embedding_provider: e.embedding_provider,
            embedding_model: e.embedding_model,
            chunk_count: e.chunk_count,
            version: e.version,
            lead_id: e.lead_id,
            created_by: e.created_by,
            embedded_at: e.embedded_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Object)]
pub struct KbPage {
    pub data: Vec<KbEntryOut>,
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Object)]
pub struct KbEntryCreate {
    /// 1–255 characters (HTML is removed).
    pub title: String,
    /// 1–50 000 characters; long content is split into chunks for search.
    pub content: String,
    /// `property` · `faq` · `policy` · `subsidy` · `custom` (default)
    pub source_type: Option<String>,
    /// Free-form object (at most 64 KiB).
    pub metadata: Option<Value>,
    /// SUPERADMIN only, and required for it: the broker the entry belongs to.
    pub broker_id: Option<i64>,
    /// The lead the entry was written from (e.g. a resolved conversation); it is erased with the lead.
    pub lead_id: Option<i64>,
}

/// Partial update: omitted fields stay. A new title or content is re-embedded.
#[derive(Object)]
pub struct KbEntryUpdate {
    pub title: Option<String>,
    pub content: Option<String>,
    pub source_type: Option<String>,
    /// Replaces the whole object; `null` empties it.
    pub metadata: MaybeUndefined<Value>,
}

#[derive(Object)]
pub struct KbSearchBody {
    /// 1–2 000 characters.
    pub query: String,
    /// Results wanted, 1–10 (default 3).
    pub top_k: Option<i64>,
    /// Only entries of this type.
    pub source_type: Option<String>,
    /// Lowest cosine similarity returned, 0–1 (default 0.3 with the local embedder, 0.6 with Gemini or OpenAI).
    pub min_similarity: Option<f64>,
    /// SUPERADMIN only, and required for it: the broker searched.
    pub broker_id: Option<i64>,
}

#[derive(Object)]
pub struct KbSearchResult {
    pub id: i64,
    pub title: String,
    pub content: String,
    /// The entry's chunk closest to the query.
    pub snippet: String,
    pub source_type: String,
    pub metadata: Value,
    /// Cosine similarity of the best chunk (4 decimals).
    pub similarity: f64,
}

#[derive(Object)]
pub struct KbSearchOut {
    pub broker_id: i64,
    pub query: String,
    /// Best first.
    pub results: Vec<KbSearchResult>,
}

impl From<SearchOutcome> for KbSearchOut {
    fn from(o: SearchOutcome) -> Self {
        KbSearchOut {
            broker_id: o.broker_id,
            query: o.query,
            results: o
                .hits
                .into_iter()
                .map(|h| KbSearchResult {
                    id: h.id,
                    title: h.title,
                    content: h.content,
                    snippet: h.snippet,
                    source_type: h.source_type,
                    metadata: h.metadata,
                    similarity: h.similarity,
                })
                .collect(),
        }
    }
}

#[derive(Object)]
pub struct KbReembedOut {
    /// Entries marked `pending` and queued for embedding.
    pub queued: u64,
}

#[derive(ApiResponse)]
pub enum KbCreated {
    /// Stored; `embedding_status` is `pending` until the worker has embedded it
    #[oai(status = 201)]
    Created(Json<KbEntryOut>),
}

#[derive(ApiResponse)]
pub enum KbReembedQueued {
    /// Every entry of the broker is queued for embedding
    #[oai(status = 202)]
    Accepted(Json<KbReembedOut>),
}

#[derive(ApiResponse)]
pub enum KbDeleted {
    /// Deleted with its chunks
    #[oai(status = 204)]
    Ok,
}

#[OpenApi(tag = "ApiTags::KnowledgeBase")]
impl KbApi {
    /// List knowledge-base entries
    ///
    /// Newest first. `search` matches the title ignoring case and accents. SUPERADMIN sees every
    /// broker's entries, or one broker's with `broker_id`.
    #[oai(path = "/api/v1/kb", method = "get", operation_id = "kb_list")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// `property` · `faq` · `policy` · `subsidy` · `custom`
        source_type: Query<Option<String>>,
        search: Query<Option<String>>,
        /// SUPERADMIN only
        broker_id: Query<Option<i64>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "10000000")))] skip: Query<Option<u64>>,
        /// Alias of `skip` (the reference service's name).
        #[oai(validator(minimum(value = "0"), maximum(value = "10000000")))]
        offset: Query<Option<u64>>,
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<Json<KbPage>> {
        let q = ListQuery {
            source_type: source_type.0,
            search: search.0,
            broker_id: broker_id.0,
            skip: skip.0.or(offset.0).unwrap_or(0),
            limit: limit.0,
        };
        let (rows, total) = service::list(&state.infra, &auth, &q).await?;
        Ok(Json(KbPage { data: rows.into_iter().map(Into::into).collect(), total, skip: q.skip, limit: q.limit }))
    }

    /// Create an entry
    ///
    /// Answers at once with `embedding_status: "pending"`; the worker splits the content into
    /// chunks and embeds them, after which the entry is `ready` and searchable.
    #[oai(path = "/api/v1/kb", method = "post", operation_id = "kb_create")]
    async fn create(&self, state: Data<&AppState>, auth: Auth, body: JsonBody<KbEntryCreate>) -> ApiResult<KbCreated> {
        let b = body.0;
        let input = NewEntry {
            title: b.title,
            content: b.content,
            source_type: b.source_type,
            metadata: b.metadata,
            broker_id: b.broker_id,
            lead_id: b.lead_id,
        };
        Ok(KbCreated::Created(Json(service::create(&state.infra, &auth, input).await?.into())))
    }

    /// Semantic search
    ///
    /// Embeds the query and ranks the broker's entries by the cosine similarity of their best chunk
    /// (pgvector HNSW index). Only vectors of the configured embedding provider are compared.
    #[oai(path = "/api/v1/kb/search", method = "post", operation_id = "kb_search")]
    async fn search(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<KbSearchBody>,
        /// SUPERADMIN only (also accepted in the body)
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<KbSearchOut>> {
        let b = body.0;
        let r = SearchRequest {
            query: b.query,
            top_k: b.top_k,
            source_type: b.source_type,
            min_similarity: b.min_similarity,
            broker_id: b.broker_id.or(broker_id.0),
            params_in: ParamsIn::Body,
        };
        Ok(Json(service::search(&state.infra, &auth, &r).await?.into()))
    }

    /// Semantic search (query-string form)
    ///
    /// Same as `POST /api/v1/kb/search`, with `q` for the query (the reference service's path).
    #[oai(path = "/api/v1/kb/search", method = "get", operation_id = "kb_search_get")]
    #[allow(clippy::too_many_arguments)]
    async fn search_get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// The question, 1–2 000 characters
        q: Query<Option<String>>,
        /// 1–10 (default 3)
        top_k: Query<Option<i64>>,
        source_type: Query<Option<String>>,
        /// 0–1 (default 0.3 local, 0.6 remote)
        min_similarity: Query<Option<f64>>,
        /// SUPERADMIN only, and required for it
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<KbSearchOut>> {
        let r = SearchRequest {
            query: q.0.unwrap_or_default(),
            top_k: top_k.0,
            source_type: source_type.0,
            min_similarity: min_similarity.0,
            broker_id: broker_id.0,
            params_in: ParamsIn::Query,
        };
        Ok(Json(service::search(&state.infra, &auth, &r).await?.into()))
    }

    /// Re-embed every entry of the broker (ADMIN)
    ///
    /// Marks every entry `pending` and queues one embedding job per entry, e.g. after the embedding
    /// provider changed. SUPERADMIN names the broker with `broker_id`.
    #[oai(path = "/api/v1/kb/reembed", method = "post", operation_id = "kb_reembed")]
    async fn reembed(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// SUPERADMIN only, and required for it
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<KbReembedQueued> {
        let queued = service::reembed(&state.infra, &auth, broker_id.0).await?;
        Ok(KbReembedQueued::Accepted(Json(KbReembedOut { queued })))
    }

    /// Get an entry
    #[oai(path = "/api/v1/kb/:id", method = "get", operation_id = "kb_get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<i64>,
        /// Optional; the entry must belong to it
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<KbEntryOut>> {
        Ok(Json(service::get(&state.infra, &auth, id.0, broker_id.0).await?.into()))
    }

    /// Update an entry (partial)
    ///
    /// A new title or content answers `embedding_status: "pending"` and is re-embedded; other
    /// changes keep the current vectors.
    #[oai(path = "/api/v1/kb/:id", method = "put", operation_id = "kb_update")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<i64>,
        body: JsonBody<KbEntryUpdate>,
        /// Optional; the entry must belong to it
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<Json<KbEntryOut>> {
        let b = body.0;
        let patch =
            EntryPatch { title: b.title, content: b.content, source_type: b.source_type, metadata: maybe(b.metadata) };
        Ok(Json(service::update(&state.infra, &auth, id.0, broker_id.0, patch).await?.into()))
    }

    /// Delete an entry
    #[oai(path = "/api/v1/kb/:id", method = "delete", operation_id = "kb_delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<i64>,
        /// Optional; the entry must belong to it
        broker_id: Query<Option<i64>>,
    ) -> ApiResult<KbDeleted> {
        service::delete(&state.infra, &auth, id.0, broker_id.0).await?;
        Ok(KbDeleted::Ok)
    }
}

fn default_limit() -> u64 {
    50
}
