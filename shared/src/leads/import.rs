//! CSV bulk import: a pure parser that validates rows and finds duplicates inside the file, and a
//! batched insert (`INSERT … SELECT FROM UNNEST … ON CONFLICT DO NOTHING`) that never does a round
//! trip per row.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::model::{clean_name, seal_metadata, search_text};
use crate::crypto::Cipher;
use crate::ctx::{Ctx, Role};
use crate::error::{Error, Result};
use crate::text::{Email, Phone, clean_text};
use crate::{Infra, audit};

/// At most this many row errors are reported.
pub const MAX_ERRORS: usize = 100;
const BATCH: usize = 5_000;

#[derive(Clone, Debug, PartialEq)]
pub struct ImportRow {
    pub row: u64,
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    pub row: u64,
    pub reason: String,
}

/// The outcome of parsing: valid unique rows, and what was rejected.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub rows: Vec<ImportRow>,
    pub invalid: u64,
    pub duplicates: u64,
    pub errors: Vec<RowError>,
}

/// The response of an import.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub imported: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub errors: Vec<RowError>,
}

fn csv_error(detail: impl Into<String>) -> Error {
    Error::bad_request("csv_invalid", detail)
}

/// Where each field is in the file, read from its header.
#[derive(Clone, Debug)]
pub struct Columns {
    phone: usize,
    name: Option<usize>,
    email: Option<usize>,
    tags: Option<usize>,
    /// Other named columns, kept in `lead_metadata`.
    extra: Vec<(usize, String)>,
}

impl Columns {
    /// The header must name at least `phone` (any order, any case).
    pub fn from_header(header: &csv::StringRecord) -> Result<Self> {
        let headers: Vec<String> =
            header.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase()).collect();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let phone = col("phone").ok_or_else(|| csv_error("The CSV header must include a 'phone' column"))?;
        let (name, email, tags) = (col("name"), col("email"), col("tags"));
        let extra = headers
            .iter()
            .enumerate()
            .filter(|(i, h)| ![Some(phone), name, email, tags].contains(&Some(*i)) && !h.is_empty())
            .map(|(i, h)| (i, clean_text(h)))
            .collect();
        Ok(Self { phone, name, email, tags, extra })
    }

    /// One data record: `None` for a blank line, else the lead or why the row is invalid.
    pub fn read(&self, record: &csv::StringRecord, row: u64) -> Option<std::result::Result<ImportRow, String>> {
        if record.iter().all(str::is_empty) {
            return None;
        }
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let phone = match field(Some(self.phone)).map(Phone::parse) {
            None => return Some(Err("phone is missing".into())),
            Some(Err(m)) => return Some(Err(format!("invalid phone: {m}"))),
            Some(Ok(p)) => p.into_string(),
        };
        let email = match field(self.email).map(Email::parse) {
            None => None,
            Some(Err(m)) => return Some(Err(format!("invalid email: {m}"))),
            Some(Ok(e)) => Some(e.into_string()),
        };
        let name = match field(self.name).map(|n| clean_name(n, "name")) {
            None => None,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Some(Err("name is longer than 100 characters".into())),
        };
        let tags = match field(self.tags)
            .map(|t| super::model::clean_tags(&t.split(',').map(str::to_string).collect::<Vec<_>>()))
        {
            None => Vec::new(),
            Some(Ok(t)) => t,
            Some(Err(_)) => return Some(Err("too many or too long tags (max 20 of 50 characters)".into())),
        };
        let metadata = self
            .extra
            .iter()
            .filter_map(|(i, h)| {
                record.get(*i).filter(|v| !v.is_empty()).map(|v| (h.clone(), Value::String(clean_text(v))))
            })
            .collect();
        Some(Ok(ImportRow { row, phone, name, email, tags, metadata }))
    }
}

/// A CSV reader with the settings every import uses.
pub fn csv_reader<R: std::io::Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input)
}

/// Parses a UTF-8 CSV with a header naming at least `phone` (any order, any case; `name`, `email`,
/// `tags` optional; other columns go to `lead_metadata`). Rows are numbered as a spreadsheet shows
/// them: the header is row 1.
pub fn parse(bytes: &[u8]) -> Result<Parsed> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv_reader(bytes);
    let header =
        reader.headers().map_err(|e| csv_error(format!("The CSV header could not be read: {}", csv_reason(&e))))?;
    let columns = Columns::from_header(header)?;

    let mut out = Parsed::default();
    let mut seen_phones: HashSet<String> = HashSet::new();
    let mut seen_emails: HashSet<String> = HashSet::new();
    let mut record = csv::StringRecord::new();
    let mut row: u64 = 1;
    loop {
        let read = reader.read_record(&mut record);
        row += 1;
        let lead = match read {
            Ok(false) => break,
            Ok(true) => match columns.read(&record, row) {
                None => continue,
                Some(lead) => lead,
            },
            Err(e) => Err(format!("unreadable row: {}", csv_reason(&e))),
        };
        let lead = match lead {
            Ok(lead) => lead,
            Err(reason) => {
                out.invalid += 1;
                out.errors.push(RowError { row, reason });
                continue;
            }
        };
        if seen_phones.contains(&lead.phone) || lead.email.as_ref().is_some_and(|e| seen_emails.contains(e)) {
            out.duplicates += 1;
            out.errors.push(RowError { row, reason: "duplicate of an earlier row in this file".into() });
            continue;
        }
        seen_phones.insert(lead.phone.clone());
        if let Some(e) = &lead.email {
            seen_emails.insert(e.clone());
        }
        out.rows.push(lead);
    }
    Ok(out)
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "the file is not valid UTF-8".into(),
        _ => "malformed CSV".into(),
    }
}

/// Imports parsed rows into the caller's broker (SUPERADMIN names one). Rows whose phone or email
/// already exists in the broker count as duplicates. Runs in one transaction.
/// The file is parsed on the blocking pool and dropped as soon as its rows are extracted.
pub async fn import(infra: &Infra, ctx: &Ctx, broker_id: Option<i64>, bytes: Vec<u8>) -> Result<Report> {
    let broker_id = ctx.target_broker(broker_id)?;
    let assigned_to = if ctx.role == Role::Agent { ctx.user_id } else { None };
    let mut parsed = tokio::task::spawn_blocking(move || parse(&bytes)).await.map_err(Error::internal)??;

    let pool = infra.db.get_postgres_connection_pool();
    let mut tx = pool.begin().await.map_err(db_err)?;
    let mut imported = 0u64;
    for chunk in parsed.rows.chunks(BATCH) {
        let (inserted, duplicates) =
            insert_rows(&mut tx, &infra.cipher, broker_id, assigned_to, chunk, &mut parsed.errors).await?;
        imported += inserted;
        parsed.duplicates += duplicates;
    }
    tx.commit().await.map_err(db_err)?;

    parsed.errors.sort_by_key(|e| e.row);
    parsed.errors.truncate(MAX_ERRORS);
    let report = Report { imported, duplicates: parsed.duplicates, invalid: parsed.invalid, errors: parsed.errors };
    audit::record(
        &infra.db,
        ctx,
        audit::Entry {
            action: "lead_import",
            resource_type: "lead",
            resource_id: None,
            broker_id: Some(broker_id),
            changes: json!({"imported": report.imported, "duplicates": report.duplicates, "invalid": report.invalid}),
        },
    )
    .await?;
    Ok(report)
}

/// Inserts one batch of parsed rows inside `tx`: rows whose phone or email the broker already has
/// (from earlier batches of the same import too) are duplicates, reported in `errors`.
/// Returns (imported, duplicates).
///
/// One statement per batch: the unique indexes decide (`ON CONFLICT DO NOTHING`) and the inserted
/// phones come back, so the rows that did not come back are the duplicates. (A separate lookup of
/// existing phones and emails first was a second round trip whose plan degraded as the import's own
/// rows piled up in the open transaction.)
pub async fn insert_rows(
    tx: &mut sea_orm::sqlx::Transaction<'_, sea_orm::sqlx::Postgres>,
    cipher: &Cipher,
    broker_id: i64,
    assigned_to: Option<i64>,
    rows: &[ImportRow],
    errors: &mut Vec<RowError>,
) -> Result<(u64, u64)> {
    if rows.is_empty() {
        return Ok((0, 0));
    }
    let mut inserted = insert_batch(tx, cipher, broker_id, assigned_to, rows).await?;
    let imported = inserted.len() as u64;
    let mut duplicates = 0u64;
    for r in rows {
        // A phone comes back once even when the batch holds it twice (the streaming import does not
        // hold the whole file to find such pairs): the first row inserted it, the rest are duplicates.
        if !inserted.remove(r.phone.as_str()) {
            duplicates += 1;
            errors.push(RowError { row: r.row, reason: "a lead with this phone or email already exists".into() });
        }
    }
    Ok((imported, duplicates))
}

/// Inserts the rows that conflict with no lead of the broker; returns the phones inserted.
async fn insert_batch(
    tx: &mut sea_orm::sqlx::Transaction<'_, sea_orm::sqlx::Postgres>,
    cipher: &Cipher,
    broker_id: i64,
    assigned_to: Option<i64>,
    rows: &[ImportRow],
) -> Result<HashSet<String>> {
    let mut phones = Vec::with_capacity(rows.len());
    let mut names = Vec::with_capacity(rows.len());
    let mut emails = Vec::with_capacity(rows.len());
    let mut tags = Vec::with_capacity(rows.len());
    let mut metas = Vec::with_capacity(rows.len());
    let mut search = Vec::with_capacity(rows.len());
    for r in rows {
        phones.push(r.phone.as_str());
        names.push(r.name.as_deref());
        emails.push(r.email.as_deref());
        tags.push(json!(r.tags).to_string());
        metas.push(if r.metadata.is_empty() {
            "{}".to_string()
        } else {
            seal_metadata(cipher, r.metadata.clone()).to_string()
        });
        search.push(search_text(r.name.as_deref(), Some(&r.phone), r.email.as_deref()));
    }
    let inserted: Vec<(String,)> = sea_orm::sqlx::query_as(
        "INSERT INTO leads (broker_id, assigned_to, phone, name, email, tags, metadata, search_text) \
         SELECT $1, $2, u.phone, u.name, u.email, u.tags::jsonb, u.metadata::jsonb, u.search_text \
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
              AS u(phone, name, email, tags, metadata, search_text) \
         ON CONFLICT DO NOTHING RETURNING phone",
    )
    .bind(broker_id)
    .bind(assigned_to)
    .bind(&phones)
    .bind(&names)
    .bind(&emails)
    .bind(&tags)
    .bind(&metas)
    .bind(&search)
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(inserted.into_iter().map(|(p,)| p).collect())
}

pub(crate) fn db_err(e: sea_orm::sqlx::Error) -> Error {
    sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into())).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_invalid_and_in_file_duplicates() {
        let csv = "Name,PHONE,email,tags,comuna\n\
                   Ana,+56 9 1111 1111,ana@x.cl,\"vip,norte\",Ñuñoa\n\
                   Beto,912345,beto@x.cl,,\n\
                   Caro,9 2222 2222,no-es-email,,\n\
                   Ana bis,56911111111,,,\n\
                   Dani,9 3333 3333,ANA@x.cl,,\n\
                   ,,,,\n\
                   Eva,,eva@x.cl,,\n\
                   Fede,9 4444 4444,,,Providencia\n";
        let p = parse(csv.as_bytes()).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.invalid, 3);
        assert_eq!(p.duplicates, 2);
        assert_eq!(p.rows[0].tags, vec!["vip", "norte"]);
        assert_eq!(p.rows[0].metadata["comuna"], "Ñuñoa");
        assert_eq!(p.rows[1].row, 9);
        let rows: Vec<u64> = p.errors.iter().map(|e| e.row).collect();
        assert_eq!(rows, vec![3, 4, 5, 6, 8]);
    }

    #[test]
    fn header_must_name_a_phone_column() {
        assert_eq!(parse(b"name,email\nAna,a@x.cl\n").unwrap_err().code(), "csv_invalid");
        assert_eq!(parse(b"").unwrap_err().code(), "csv_invalid");
    }

    #[test]
    fn bom_and_ragged_rows_are_tolerated() {
        let p = parse("\u{feff}phone\n912345678,extra\n\n922222222\n".as_bytes()).unwrap();
        assert_eq!(p.rows.len(), 2);
    }

    #[test]
    fn invalid_utf8_rows_are_counted_not_fatal() {
        let mut bytes = b"phone,name\n911111111,Ana\n922222222,".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
        let p = parse(&bytes).unwrap();
        assert_eq!((p.rows.len(), p.invalid), (1, 1));
    }
}
