//! Asynchronous CSV import: the upload is stored in PostgreSQL (1 MiB chunks) before the API
//! answers 202; the `csv_import` job streams it back chunk by chunk through the CSV parser and
//! inserts batches, reporting progress on the `csv_imports` row and as WS `import_progress`.
//! The inserts run in one transaction, so a job interrupted by a crash leaves nothing behind and
//! its re-run counts exactly.

use std::io::Read;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, TransactionTrait};
use serde_json::{Value, json};

use super::import::{self, Columns, ImportRow, RowError};
use crate::ctx::{Ctx, Role};
use crate::error::{Error, Result};
use crate::jobs::{self, csv_import::CsvImport};
use crate::{Infra, audit, events};

const CHUNK: usize = 1024 * 1024;
const BATCH: usize = 5_000;

/// The state of an import, as `GET /api/v1/leads/bulk-import/{job_id}` shows it.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct ImportStatus {
    pub id: i64,
    pub broker_id: i64,
    pub user_id: Option<i64>,
    pub filename: String,
    pub size_bytes: i64,
    pub status: String,
    pub rows_processed: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub invalid: i64,
    pub errors: Value,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
    pub started_at: Option<chrono::DateTime<Utc>>,
    pub finished_at: Option<chrono::DateTime<Utc>>,
}

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Stores the upload and enqueues the job; returns the import (= job) id.
pub async fn start(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>, filename: &str, bytes: Vec<u8>) -> Result<i64> {
    let broker_id = ctx.target_broker(broker_id)?;
    let assigned_to = if ctx.role == Role::Agent { ctx.user_id } else { None };
    let txn = infra.db.begin().await?;
    let row = txn
        .query_one_raw(stmt(
            "INSERT INTO csv_imports (broker_id, user_id, assigned_to, filename, size_bytes) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            vec![
                broker_id.into(),
                ctx.user_id.into(),
                assigned_to.into(),
                filename.chars().take(255).collect::<String>().into(),
                (bytes.len() as i64).into(),
            ],
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("import insert returned nothing")))?;
    let id: i64 = row.try_get("", "id")?;
    for (seq, chunk) in bytes.chunks(CHUNK).enumerate() {
        txn.execute_raw(stmt(
            "INSERT INTO csv_import_chunks (import_id, seq, data) VALUES ($1, $2, $3)",
            vec![id.into(), (seq as i32).into(), chunk.to_vec().into()],
        ))
        .await?;
    }
    txn.commit().await?;
    jobs::enqueue(infra, CsvImport { import_id: id, broker_id }).await?;
    Ok(id)
}

/// An import the caller may see: its broker's (an AGENT only its own), else 404.
pub async fn status(infra: &Infra, ctx: &Ctx, id: i64) -> Result<ImportStatus> {
    let found = ImportStatus::find_by_statement(stmt(
        "SELECT id, broker_id, user_id, filename, size_bytes, status, rows_processed, imported, duplicates, invalid, \
                errors, error, created_at, started_at, finished_at FROM csv_imports WHERE id = $1",
        vec![id.into()],
    ))
    .one(&infra.db)
    .await?
    .filter(|s| match ctx.role {
        Role::Superadmin => true,
        Role::Admin => ctx.broker_id == Some(s.broker_id),
        Role::Agent => ctx.broker_id == Some(s.broker_id) && s.user_id == ctx.user_id,
    });
    found.ok_or(Error::NotFound("Import"))
}

/// Feeds the stored chunks, fetched one at a time, to the blocking CSV parser.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(next) => self.current = std::io::Cursor::new(next),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// What the parser thread sends: a batch of valid rows, with the invalid ones seen meanwhile.
struct Parsed {
    rows: Vec<ImportRow>,
    invalid: Vec<RowError>,
    last_row: u64,
}

/// Runs the import job: idempotent per import (a finished import is left as it is).
pub async fn run(infra: &Infra, job: &CsvImport) -> Result<()> {
    let meta = infra
        .db
        .query_one_raw(stmt(
            "UPDATE csv_imports SET status = 'running', started_at = now(), rows_processed = 0, imported = 0, \
                    duplicates = 0, invalid = 0, errors = '[]', error = NULL \
             WHERE id = $1 AND status IN ('queued', 'running') RETURNING broker_id, assigned_to, user_id",
            vec![job.import_id.into()],
        ))
        .await?;
    let Some(meta) = meta else {
        tracing::info!(import_id = job.import_id, "import already finished or gone; nothing to do");
        return Ok(());
    };
    let broker_id: i64 = meta.try_get("", "broker_id")?;
    let assigned_to: Option<i64> = meta.try_get("", "assigned_to")?;
    let user_id: Option<i64> = meta.try_get("", "user_id")?;
    match execute(infra, job.import_id, broker_id, assigned_to).await {
        Ok((imported, duplicates, invalid)) => {
            let ctx = Ctx { user_id, broker_id: Some(broker_id), role: Role::Admin, origin: None };
            audit::record(
                &infra.db,
                &ctx,
                audit::Entry {
                    action: "lead_import",
                    resource_type: "csv_import",
                    resource_id: Some(job.import_id),
                    broker_id: Some(broker_id),
                    changes: json!({"imported": imported, "duplicates": duplicates, "invalid": invalid}),
                },
            )
            .await?;
            Ok(())
        }
        Err(e) if jobs::is_permanent(&e) => {
            fail(infra, job.import_id, broker_id, &e.detail().to_string()).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

async fn fail(infra: &Infra, id: i64, broker_id: i64, reason: &str) -> Result<()> {
    infra
        .db
        .execute_raw(stmt(
            "UPDATE csv_imports SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
            vec![id.into(), reason.into()],
        ))
        .await?;
    let data = json!({"job_id": id, "status": "failed", "error": reason});
    events::publish_to_broker(&infra.redis, infra.prefix(), broker_id, "import_progress", data).await;
    Ok(())
}

async fn execute(infra: &Infra, id: i64, broker_id: i64, assigned_to: Option<i64>) -> Result<(u64, u64, u64)> {
    let chunks: i64 = infra
        .db
        .query_one_raw(stmt("SELECT count(*) AS n FROM csv_import_chunks WHERE import_id = $1", vec![id.into()]))
        .await?
        .map(|r| r.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    // Chunks flow to the parser thread two at a time; parsed batches flow back the same way.
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Result<Parsed>>(2);
    let parser = tokio::task::spawn_blocking(move || {
        parse_stream(ChunkReader { rx: chunk_rx, current: Default::default() }, batch_tx)
    });
    let db = infra.db.clone();
    let feeder = tokio::spawn(async move {
        for seq in 0..chunks {
            let row = db
                .query_one_raw(stmt(
                    "SELECT data FROM csv_import_chunks WHERE import_id = $1 AND seq = $2",
                    vec![id.into(), (seq as i32).into()],
                ))
                .await?;
            let data: Vec<u8> = match row {
                Some(r) => r.try_get("", "data")?,
                None => break,
            };
            if chunk_tx.send(data).is_err() {
                break;
            }
        }
        Ok::<(), Error>(())
    });

    let pool = infra.db.get_postgres_connection_pool();
    let mut tx = pool.begin().await.map_err(import::db_err)?;
    let (mut imported, mut duplicates, mut invalid, mut processed) = (0u64, 0u64, 0u64, 0u64);
    let mut errors: Vec<RowError> = Vec::new();
    while let Some(batch) = batch_rx.recv().await {
        let batch = batch?;
        invalid += batch.invalid.len() as u64;
        processed = batch.last_row.saturating_sub(1);
        errors.extend(batch.invalid);
        let (ins, dup) =
            import::insert_rows(&mut tx, &infra.cipher, broker_id, assigned_to, &batch.rows, &mut errors).await?;
        imported += ins;
        duplicates += dup;
        errors.sort_by_key(|e| e.row);
        errors.truncate(import::MAX_ERRORS);
        infra
            .db
            .execute_raw(stmt(
                "UPDATE csv_imports SET rows_processed = $2, imported = $3, duplicates = $4, invalid = $5 WHERE id = $1",
                vec![id.into(), (processed as i64).into(), (imported as i64).into(), (duplicates as i64).into(), (invalid as i64).into()],
            ))
            .await?;
        let data = json!({"job_id": id, "status": "running", "rows_processed": processed, "imported": imported,
                          "duplicates": duplicates, "invalid": invalid});
        events::publish_to_broker(&infra.redis, infra.prefix(), broker_id, "import_progress", data).await;
    }
    feeder.await.map_err(Error::internal)??;
    parser.await.map_err(Error::internal)?;
    tx.commit().await.map_err(import::db_err)?;
    let errors_json = serde_json::to_value(&errors).unwrap_or(Value::Array(vec![]));
    infra
        .db
        .execute_raw(stmt(
            "UPDATE csv_imports SET status = 'done', finished_at = now(), rows_processed = $2, imported = $3, \
                    duplicates = $4, invalid = $5, errors = $6 WHERE id = $1",
            vec![
                id.into(),
                (processed as i64).into(),
                (imported as i64).into(),
                (duplicates as i64).into(),
                (invalid as i64).into(),
                errors_json.clone().into(),
            ],
        ))
        .await?;
    // The upload is no longer needed once the import is done.
    infra.db.execute_raw(stmt("DELETE FROM csv_import_chunks WHERE import_id = $1", vec![id.into()])).await?;
    let data = json!({"job_id": id, "status": "done", "rows_processed": processed, "imported": imported,
                      "duplicates": duplicates, "invalid": invalid});
    events::publish_to_broker(&infra.redis, infra.prefix(), broker_id, "import_progress", data).await;
    Ok((imported, duplicates, invalid))
}

/// The parser thread: header, then batches of valid rows; a bad header ends the import as failed.
fn parse_stream(input: ChunkReader, out: tokio::sync::mpsc::Sender<Result<Parsed>>) {
    let mut reader = import::csv_reader(input);
    let columns = match reader.headers() {
        Ok(h) => Columns::from_header(h),
        Err(_) => Err(Error::bad_request("csv_invalid", "The CSV header could not be read")),
    };
    let columns = match columns {
        Ok(c) => c,
        Err(e) => {
            let _ = out.blocking_send(Err(e));
            return;
        }
    };
    let mut record = csv::StringRecord::new();
    let mut row: u64 = 1;
    let mut batch = Parsed { rows: Vec::with_capacity(BATCH), invalid: Vec::new(), last_row: 1 };
    loop {
        let read = reader.read_record(&mut record);
        row += 1;
        match read {
            Ok(false) => break,
            Ok(true) => match columns.read(&record, row) {
                None => {}
                Some(Ok(lead)) => batch.rows.push(lead),
                Some(Err(reason)) => batch.invalid.push(RowError { row, reason }),
            },
            Err(_) => batch.invalid.push(RowError { row, reason: "unreadable row: malformed CSV".into() }),
        }
        if batch.rows.len() >= BATCH {
            batch.last_row = row;
            let full = std::mem::replace(
                &mut batch,
                Parsed { rows: Vec::with_capacity(BATCH), invalid: Vec::new(), last_row: row },
            );
            if out.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    // `row` went one past the last line when the reader reported the end.
    batch.last_row = row - 1;
    let _ = out.blocking_send(Ok(batch));
}
