//! Lead types parsed at the edge, and the lead as the API shows it (sensitive metadata decrypted).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::crypto::Cipher;
use crate::entities::{activity_log, leads};
use crate::error::{Error, FieldError, Result};
use crate::text::{clean_text, fold};

/// Metadata keys encrypted at rest (SPEC §4).
pub const SENSITIVE_KEYS: [&str; 4] = ["monthly_income", "dicom_status", "morosidad_amount", "salary"];

/// Business time zone.
pub const TZ: chrono_tz::Tz = chrono_tz::America::Santiago;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, $code:literal { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// Parses the value, or a 422 naming `field` in `loc` and listing the valid values.
            pub fn parse_field(raw: &str, loc: FieldError) -> Result<Self> {
                raw.trim().parse().map_err(|_| {
                    let valid: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    Error::invalid($code, FieldError {
                        msg: format!("{} must be one of: {}", $what, valid.join(", ")),
                        ..loc
                    })
                })
            }
        }

        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> std::result::Result<Self, ()> {
                match s.to_ascii_lowercase().as_str() { $($s => Ok($name::$variant),)+ _ => Err(()) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// The 8 pipeline stages of API.md, in order.
    Stage, "stage", "invalid_stage" {
        Entrada => "entrada",
        Perfilamiento => "perfilamiento",
        CalificacionFinanciera => "calificacion_financiera",
        Agendado => "agendado",
        Seguimiento => "seguimiento",
        Referidos => "referidos",
        Ganado => "ganado",
        Perdido => "perdido",
    }
);

string_enum!(
    /// Lead temperature, plus the two closed states that follow the stages `ganado` / `perdido`.
    Status, "status", "invalid_status" {
        Cold => "cold",
        Warm => "warm",
        Hot => "hot",
        Converted => "converted",
        Lost => "lost",
    }
);

string_enum!(
    Calificacion, "calificacion", "invalid_calificacion" {
        Calificado => "calificado",
        Potencial => "potencial",
        NoCalificado => "no_calificado",
    }
);

impl Status {
    /// The temperature a score gives under the broker's thresholds (`cold ≤ cold_max < warm ≤ warm_max < hot`).
    pub fn from_score(score: f64, cold_max: i32, warm_max: i32) -> Self {
        if score <= f64::from(cold_max) {
            Status::Cold
        } else if score <= f64::from(warm_max) {
            Status::Warm
        } else {
            Status::Hot
        }
    }
}

/// Parses `2026-01-31` (start of that day in America/Santiago) or an RFC 3339 date-time.
/// With `end_of_day`, a bare date means the end of that day, so `created_to=2026-01-31` includes the 31st.
pub fn parse_instant(raw: &str, field: &str, end_of_day: bool) -> Result<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(raw) {
        return Ok(dt.with_timezone(&Utc));
    }
    if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S") {
        return Ok(naive.and_utc());
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| Error::invalid_query(field, "expected a date (YYYY-MM-DD) or an RFC 3339 date-time"))?;
    let date = if end_of_day { date.succ_opt().unwrap_or(date) } else { date };
    let local = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    let at =
        TZ.from_local_datetime(&local).earliest().map(|d| d.with_timezone(&Utc)).unwrap_or_else(|| local.and_utc());
    Ok(if end_of_day { at - chrono::Duration::microseconds(1) } else { at })
}

/// A clean person name: HTML and control characters removed, 1–100 characters, or `None` when empty.
pub fn clean_name(raw: &str, field: &str) -> Result<Option<String>> {
    let name = clean_text(raw);
    if name.chars().count() > 100 {
        return Err(Error::invalid_body(field, "name must have at most 100 characters"));
    }
    Ok(if name.is_empty() { None } else { Some(name) })
}

/// Tags: trimmed, HTML-free, unique, at most 20 of at most 50 characters each.
pub fn clean_tags(raw: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in raw {
        let t = clean_text(t);
        if t.is_empty() || out.contains(&t) {
            continue;
        }
        if t.chars().count() > 50 {
            return Err(Error::invalid_body("tags", "each tag must have at most 50 characters"));
        }
        out.push(t);
    }
    if out.len() > 20 {
        return Err(Error::invalid_body("tags", "a lead may have at most 20 tags"));
    }
    Ok(out)
}

/// Checks free-form metadata: an object of at most 64 KiB and nesting depth 8.
pub fn check_metadata(map: &Map<String, Value>, field: &str) -> Result<()> {
    fn depth(v: &Value) -> usize {
        match v {
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    if map.values().map(depth).max().unwrap_or(0) > 8 {
        return Err(Error::invalid_body(field, "lead_metadata is nested too deeply (max 8 levels)"));
    }
    if serde_json::to_vec(map).map(|v| v.len()).unwrap_or(usize::MAX) > 64 * 1024 {
        return Err(Error::invalid_body(field, "lead_metadata must be at most 64 KiB"));
    }
    Ok(())
}

/// The accent- and case-free text the `search` filter matches: name, phone digits and email.
pub fn search_text(name: Option<&str>, phone: Option<&str>, email: Option<&str>) -> String {
    let digits: String = phone.unwrap_or_default().chars().filter(char::is_ascii_digit).collect();
    format!("{} {} {}", fold(name.unwrap_or_default()), digits, email.unwrap_or_default())
}

/// What the user typed in `search`, in the form `search_text` is stored in.
pub fn search_needle(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let phone_like = raw.chars().any(|c| c.is_ascii_digit())
        && raw.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    Some(if phone_like { raw.chars().filter(char::is_ascii_digit).collect() } else { fold(raw) })
}

/// Encrypts the sensitive keys of metadata for storage.
pub fn seal_metadata(cipher: &Cipher, mut map: Map<String, Value>) -> Value {
    for key in SENSITIVE_KEYS {
        if let Some(v) = map.get_mut(key) {
            if v.is_null() || v.as_str().is_some_and(Cipher::is_encrypted) {
                continue;
            }
            *v = Value::String(cipher.encrypt(&v.to_string()));
        }
    }
    Value::Object(map)
}

/// Decrypts the sensitive keys of stored metadata; a value that cannot be decrypted is dropped.
pub fn open_metadata(cipher: &Cipher, stored: Value) -> Map<String, Value> {
    let mut map = match stored {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for key in SENSITIVE_KEYS {
        let Some(Value::String(s)) = map.get(key) else {
            continue;
        };
        if !Cipher::is_encrypted(s) {
            continue;
        }
        match cipher.decrypt(s).and_then(|pt| serde_json::from_str::<Value>(&pt).ok()) {
            Some(v) => {
                map.insert(key.to_string(), v);
            }
            None => {
                tracing::warn!(key, "could not decrypt a lead metadata value");
                map.remove(key);
            }
        }
    }
    map
}

/// The columns of a lead the API shows (not the search index, campaign history or hand-over bookkeeping).
#[derive(Clone, Debug, PartialEq)]
pub struct LeadRow {
    pub id: i64,
    pub broker_id: i64,
    pub phone: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub status: String,
    pub lead_score: f64,
    pub lead_score_components: Value,
    pub pipeline_stage: String,
    pub stage_entered_at: DateTime<Utc>,
    pub calificacion: Option<String>,
    pub conversation_state: Option<String>,
    pub assigned_to: Option<i64>,
    pub tags: Value,
    pub metadata: Value,
    pub human_mode: bool,
    pub notes: Option<String>,
    pub last_contacted: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl LeadRow {
    /// The selected columns, in the order [`LeadRow::decode`] reads them.
    pub const COLUMNS: [leads::Column; 20] = [
        leads::Column::Id,
        leads::Column::BrokerId,
        leads::Column::Phone,
        leads::Column::Name,
        leads::Column::Email,
        leads::Column::Status,
        leads::Column::LeadScore,
        leads::Column::LeadScoreComponents,
        leads::Column::PipelineStage,
        leads::Column::StageEnteredAt,
        leads::Column::Calificacion,
        leads::Column::ConversationState,
        leads::Column::AssignedTo,
        leads::Column::Tags,
        leads::Column::Metadata,
        leads::Column::HumanMode,
        leads::Column::Notes,
        leads::Column::LastContacted,
        leads::Column::CreatedAt,
        leads::Column::UpdatedAt,
    ];

    /// Reads a row selected with [`LeadRow::COLUMNS`] by position (no per-column name lookups).
    pub fn decode(r: &sea_orm::QueryResult) -> std::result::Result<Self, sea_orm::DbErr> {
        Ok(Self {
            id: r.try_get_by_index(0)?,
            broker_id: r.try_get_by_index(1)?,
            phone: r.try_get_by_index(2)?,
            name: r.try_get_by_index(3)?,
            email: r.try_get_by_index(4)?,
            status: r.try_get_by_index(5)?,
            lead_score: r.try_get_by_index(6)?,
            lead_score_components: r.try_get_by_index(7)?,
            pipeline_stage: r.try_get_by_index(8)?,
            stage_entered_at: r.try_get_by_index(9)?,
            calificacion: r.try_get_by_index(10)?,
            conversation_state: r.try_get_by_index(11)?,
            assigned_to: r.try_get_by_index(12)?,
            tags: r.try_get_by_index(13)?,
            metadata: r.try_get_by_index(14)?,
            human_mode: r.try_get_by_index(15)?,
            notes: r.try_get_by_index(16)?,
            last_contacted: r.try_get_by_index(17)?,
            created_at: r.try_get_by_index(18)?,
            updated_at: r.try_get_by_index(19)?,
        })
    }
}

impl From<leads::Model> for LeadRow {
    fn from(m: leads::Model) -> Self {
        Self {
            id: m.id,
            broker_id: m.broker_id,
            phone: m.phone,
            name: m.name,
            email: m.email,
            status: m.status,
            lead_score: m.lead_score,
            lead_score_components: m.lead_score_components,
            pipeline_stage: m.pipeline_stage,
            stage_entered_at: m.stage_entered_at,
            calificacion: m.calificacion,
            conversation_state: m.conversation_state,
            assigned_to: m.assigned_to,
            tags: m.tags,
            metadata: m.metadata,
            human_mode: m.human_mode,
            notes: m.notes,
            last_contacted: m.last_contacted,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// The lead as the API returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadView {
    pub row: LeadRow,
    pub metadata: Map<String, Value>,
}

impl LeadView {
    /// Takes the row's stored metadata and decrypts it (`row.metadata` is left empty).
    pub fn new(cipher: &Cipher, row: impl Into<LeadRow>) -> Self {
        let mut row: LeadRow = row.into();
        let metadata = open_metadata(cipher, std::mem::take(&mut row.metadata));
        Self { row, metadata }
    }

    /// Takes the row's tags (`row.tags` is left empty).
    pub fn take_tags(&mut self) -> Vec<String> {
        match std::mem::take(&mut self.row.tags) {
            Value::Array(items) => {
                items.into_iter().filter_map(|v| if let Value::String(s) = v { Some(s) } else { None }).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A lead with its latest activity, for `GET /leads/{id}`.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadDetail {
    pub lead: LeadView,
    pub recent_activities: Vec<activity_log::Model>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stages_parse_and_reject_unknown_values() {
        assert_eq!("AGENDADO".parse::<Stage>(), Ok(Stage::Agendado));
        assert_eq!(Stage::ALL.len(), 8);
        let err = Stage::parse_field("potencial", FieldError::body("stage", "", "value_error")).unwrap_err();
        assert_eq!(err.code(), "invalid_stage");
        assert_eq!(err.detail()[0]["loc"], json!(["body", "stage"]));
    }

    #[test]
    fn status_follows_broker_thresholds() {
        assert_eq!(Status::from_score(20.0, 20, 50), Status::Cold);
        assert_eq!(Status::from_score(20.5, 20, 50), Status::Warm);
        assert_eq!(Status::from_score(50.0, 20, 50), Status::Warm);
        assert_eq!(Status::from_score(51.0, 20, 50), Status::Hot);
    }

    #[test]
    fn dates_are_santiago_days_and_inclusive_at_the_end() {
        let from = parse_instant("2026-01-31", "created_from", false).unwrap();
        let to = parse_instant("2026-01-31", "created_to", true).unwrap();
        assert_eq!(from.to_rfc3339(), "2026-01-31T03:00:00+00:00"); // UTC-3 in summer
        assert!(to > from && (to - from).num_hours() == 23);
        assert!(parse_instant("31/01/2026", "created_to", true).is_err());
        assert_eq!(
            parse_instant("2026-01-31T10:00:00Z", "x", false).unwrap().to_rfc3339(),
            "2026-01-31T10:00:00+00:00"
        );
    }

    #[test]
    fn search_matches_accentless_names_and_phone_digits() {
        let text = search_text(Some("María Núñez"), Some("+56912345678"), Some("maria@x.cl"));
        assert!(text.contains(&search_needle("NUÑEZ").unwrap()));
        assert!(text.contains(&search_needle("+56 9 1234").unwrap()));
        assert!(text.contains(&search_needle("maria@x").unwrap()));
        assert_eq!(search_needle("   "), None);
    }

    #[test]
    fn sensitive_metadata_is_sealed_and_opened() {
        let cipher = Cipher::new(&crate::crypto::derive_key("t"));
        let map = json!({"monthly_income": 1500000, "dicom_status": "clean", "location": "Ñuñoa"});
        let sealed = seal_metadata(&cipher, map.as_object().unwrap().clone());
        assert!(sealed["monthly_income"].as_str().unwrap().starts_with("enc:v1:"));
        assert_eq!(sealed["location"], "Ñuñoa");
        assert_eq!(Value::Object(open_metadata(&cipher, sealed)), map);
    }

    #[test]
    fn tags_and_names_are_cleaned() {
        assert_eq!(clean_tags(&["a".into(), " a ".into(), "<b>vip</b>".into(), "".into()]).unwrap(), vec!["a", "vip"]);
        assert!(clean_tags(&(0..21).map(|i| i.to_string()).collect::<Vec<_>>()).is_err());
        assert_eq!(clean_name("  <i>Ana</i> ", "name").unwrap().as_deref(), Some("Ana"));
        assert!(clean_name(&"x".repeat(101), "name").is_err());
    }

    #[test]
    fn metadata_limits() {
        let mut deep = json!(1);
        for _ in 0..10 {
            deep = json!({"a": deep});
        }
        assert!(check_metadata(deep.as_object().unwrap(), "lead_metadata").is_err());
        let big = json!({"x": "y".repeat(70_000)});
        assert!(check_metadata(big.as_object().unwrap(), "lead_metadata").is_err());
    }
}
