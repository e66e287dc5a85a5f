//! The knowledge base Sofía answers from (SPEC §9): a broker's entries, split into chunks and
//! embedded by the `embedding` job, searched by cosine similarity over pgvector's HNSW index.
//! `model` holds the parsed input types and limits, `chunk` the pure splitter, `repo` the
//! tenant-scoped queries, `service` the use cases (CRUD, re-embed, search, the job's work).

pub mod chunk;
pub mod model;
pub mod repo;
pub mod service;

pub use model::{Hit, SearchHit, SourceType};
pub use service::answer_context;
