//! Leads: the people a broker sells to. `model` holds the parsed input types and pure rules,
//! `repo` the tenant-scoped queries, `service` the use cases, `import` the CSV bulk import, and the
//! pure rules `scoring` (score and status) and `qualification` (calificación); `rules_service`
//! applies them (and the pipeline moves) to one lead row.

pub mod async_import;
pub mod import;
pub mod model;
pub mod qualification;
pub mod repo;
pub mod rules_service;
pub mod scoring;
pub mod service;

pub use model::{LeadView, Stage, Status};
pub use rules_service::RulesOutcome;
