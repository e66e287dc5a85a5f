//! The knowledge base's vector search gets one HNSW graph per kind of entry, over half-precision
//! copies of the vectors.
//!
//! - **One graph per `source_type`** (partial indexes; chunks carry their entry's `source_type`).
//!   In one graph, a small kind of entry next to a large one becomes an island: with 50 000 listings
//!   and a few hundred FAQ answers, the FAQ answers use other words than the listings, the graph
//!   has few edges into them, and a greedy search that starts among the listings never reaches them
//!   (`kb_search`: a question such as "¿aceptan mascotas?" found none of its exact top 5, at any
//!   `ef_search`). The search asks each kind's graph for its nearest chunks and ranks them together.
//! - **Half precision** (`embedding::halfvec(768)`): half the index (50 000 chunks took 195 MB,
//!   more than a default 128 MB `shared_buffers`) and half the memory traffic per distance; the
//!   search ranks its candidates by the stored full-precision vectors. The column stays
//!   `vector(768)`.
//!
//! The graphs keep pgvector's default shape (`m = 16`, `ef_construction = 64`): a wider one
//! (`m = 32`, `ef_construction = 200`) took four times as long to build and makes every insert
//! dearer (the embedding queue's throughput); bench `kb_search` measures the default shape.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000014_kb_graph_per_kind"
    }
}

/// The kinds of entry (`SourceType::ALL`), one graph each.
const SOURCE_TYPES: [&str; 5] = ["property", "faq", "policy", "subsidy", "custom"];

fn up_sql() -> String {
    let mut sql = String::from(
        "SET LOCAL maintenance_work_mem = '512MB';
         ALTER TABLE knowledge_chunks ADD COLUMN source_type varchar(20) NOT NULL DEFAULT 'custom'
             CONSTRAINT knowledge_chunks_source_type_check
             CHECK (source_type IN ('property', 'faq', 'policy', 'subsidy', 'custom'));
         UPDATE knowledge_chunks c SET source_type = e.source_type
             FROM knowledge_base e
             WHERE e.id = c.entry_id AND e.source_type IN ('property', 'faq', 'policy', 'subsidy');
         DROP INDEX knowledge_chunks_embedding_hnsw;",
    );
    for t in SOURCE_TYPES {
        sql.push_str(&format!(
            "CREATE INDEX knowledge_chunks_embedding_hnsw_{t} ON knowledge_chunks \
                 USING hnsw ((embedding::halfvec(768)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64) \
                 WHERE source_type = '{t}';"
        ));
    }
    sql
}

fn down_sql() -> String {
    let mut sql = String::new();
    for t in SOURCE_TYPES {
        sql.push_str(&format!("DROP INDEX knowledge_chunks_embedding_hnsw_{t};"));
    }
    sql.push_str(
        "ALTER TABLE knowledge_chunks DROP COLUMN source_type;
         CREATE INDEX knowledge_chunks_embedding_hnsw ON knowledge_chunks
             USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);",
    );
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(&up_sql()).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(&down_sql()).await?;
        Ok(())
    }
}
