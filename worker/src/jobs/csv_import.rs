//! `csv_import`: streams a stored upload into leads.

use shared::Infra;
use shared::jobs::csv_import::CsvImport;

use crate::queue::JobCtx;

pub async fn run(infra: Infra, job: CsvImport, _ctx: JobCtx) -> shared::Result<()> {
    shared::leads::async_import::run(&infra, &job).await
}
