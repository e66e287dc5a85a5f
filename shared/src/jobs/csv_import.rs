//! `csv_import`: run a stored CSV upload (`csv_imports` row) into leads.

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvImport {
    pub import_id: i64,
    pub broker_id: i64,
}

impl Job for CsvImport {
    const QUEUE: &'static str = "csv_import";

    fn broker_id(&self) -> Option<i64> {
        Some(self.broker_id)
    }
}
