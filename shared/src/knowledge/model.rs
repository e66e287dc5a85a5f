//! Knowledge-base types parsed at the edge: source types, embedding states, the limits of an entry
//! and of a search, and what a search returns.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::error::{Error, FieldError, Result};

/// Longest title, in characters.
pub const MAX_TITLE: usize = 255;
/// Longest content, in characters.
pub const MAX_CONTENT: usize = 50_000;
/// Longest search query, in characters.
pub const MAX_QUERY: usize = 2_000;
/// Search results when the client asks for no number.
pub const DEFAULT_TOP_K: u64 = 3;
/// Most search results.
pub const MAX_TOP_K: u64 = 10;
/// Largest metadata object, serialised.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// What kind of knowledge an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceType {
    Property,
    Faq,
    Policy,
    Subsidy,
    Custom,
}

impl SourceType {
    pub const ALL: [SourceType; 5] =
        [SourceType::Property, SourceType::Faq, SourceType::Policy, SourceType::Subsidy, SourceType::Custom];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Property => "property",
            SourceType::Faq => "faq",
            SourceType::Policy => "policy",
            SourceType::Subsidy => "subsidy",
            SourceType::Custom => "custom",
        }
    }

    /// Parses the value, or a 422 naming `loc` and listing the valid values.
    pub fn parse_field(raw: &str, loc: FieldError) -> Result<Self> {
        raw.trim().parse().map_err(|_| {
            let valid: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
            Error::invalid(
                "invalid_source_type",
                FieldError { msg: format!("source_type must be one of: {}", valid.join(", ")), ..loc },
            )
        })
    }
}

impl FromStr for SourceType {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        Self::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s)).ok_or(())
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an entry's vectors stand (SPEC §15: `pending` | `ready` | `failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingStatus {
    /// Stored; the `embedding` job has not finished yet.
    Pending,
    /// Every chunk embedded with `embedding_provider` / `embedding_model`.
    Ready,
    /// The job gave up; `embedding_error` says why.
    Failed,
}

impl EmbeddingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddingStatus::Pending => "pending",
            EmbeddingStatus::Ready => "ready",
            EmbeddingStatus::Failed => "failed",
        }
    }
}

/// A title: trimmed, HTML and control characters removed, 1–255 characters.
pub fn clean_title(raw: &str) -> Result<String> {
    let title = crate::text::clean_text(raw);
    match title.chars().count() {
        0 => Err(Error::invalid_body("title", "title must not be empty")),
        n if n > MAX_TITLE => {
            Err(Error::invalid_body("title", format!("title must have at most {MAX_TITLE} characters")))
        }
        _ => Ok(title),
    }
}

/// Content: trimmed, line breaks kept (`\r\n` → `\n`), other control characters removed,
/// 1–50 000 characters.
pub fn clean_content(raw: &str) -> Result<String> {
    let content: String = raw
        .replace("\r\n", "\n")
        .chars()
        .map(|c| if c == '\r' { '\n' } else { c })
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    let content = content.trim();
    match content.chars().count() {
        0 => Err(Error::invalid_body("content", "content must not be empty")),
        n if n > MAX_CONTENT => {
            Err(Error::invalid_body("content", format!("content must have at most {MAX_CONTENT} characters")))
        }
        _ => Ok(content.to_string()),
    }
}

/// Metadata: an object of at most 64 KiB and nesting depth 8.
pub fn check_metadata(value: Value) -> Result<Map<String, Value>> {
    fn depth(v: &Value) -> usize {
        match v {
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let map = match value {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        _ => return Err(Error::invalid_body("metadata", "metadata must be an object")),
    };
    if map.values().map(depth).max().unwrap_or(0) > 8 {
        return Err(Error::invalid_body("metadata", "metadata is nested too deeply (max 8 levels)"));
    }
    if serde_json::to_vec(&map).map(|v| v.len()).unwrap_or(usize::MAX) > MAX_METADATA_BYTES {
        return Err(Error::invalid_body("metadata", "metadata must be at most 64 KiB"));
    }
    Ok(map)
}

/// Where the parameters of a search came from, for the `loc` of its 422s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamsIn {
    /// `POST /search` JSON body (`query`, `top_k`, …).
    Body,
    /// `GET /search` query string (`q`, `top_k`, …).
    Query,
}

impl ParamsIn {
    pub fn loc(self, field: &str) -> FieldError {
        match self {
            ParamsIn::Body => FieldError::body(field, "", "value_error"),
            ParamsIn::Query => FieldError::query(if field == "query" { "q" } else { field }, "", "value_error"),
        }
    }

    pub fn invalid(self, field: &str, msg: impl Into<String>) -> Error {
        Error::invalid("validation_error", FieldError { msg: msg.into(), ..self.loc(field) })
    }
}

/// A search as the client sent it.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    pub query: String,
    pub top_k: Option<i64>,
    pub source_type: Option<String>,
    pub min_similarity: Option<f64>,
    /// SUPERADMIN: the broker searched (required for it).
    pub broker_id: Option<i64>,
    pub params_in: ParamsIn,
}

/// A validated search.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    pub query: String,
    pub top_k: u64,
    pub source_type: Option<SourceType>,
    /// `None`: the provider's default (0.3 local, 0.6 remote).
    pub min_similarity: Option<f64>,
}

/// Checks a search: a query of 1–2 000 characters, `top_k` 1–10, `min_similarity` within 0–1,
/// a known `source_type`.
pub fn parse_search(r: &SearchRequest) -> Result<Search> {
    let at = r.params_in;
    let query = r.query.trim();
    if query.is_empty() {
        return Err(at.invalid("query", "query must not be empty"));
    }
    if query.chars().count() > MAX_QUERY {
        return Err(at.invalid("query", format!("query must have at most {MAX_QUERY} characters")));
    }
    let top_k = match r.top_k {
        None => DEFAULT_TOP_K,
        Some(k) if (1..=MAX_TOP_K as i64).contains(&k) => k as u64,
        Some(_) => return Err(at.invalid("top_k", format!("top_k must be between 1 and {MAX_TOP_K}"))),
    };
    if r.min_similarity.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
        return Err(at.invalid("min_similarity", "min_similarity must be between 0 and 1"));
    }
    let source_type = r
        .source_type
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| SourceType::parse_field(s, at.loc("source_type")))
        .transpose()?;
    Ok(Search { query: query.to_string(), top_k, source_type, min_similarity: r.min_similarity })
}

/// One search result: an entry and its best chunk.
#[derive(Clone, Debug, PartialEq, sea_orm::FromQueryResult)]
pub struct SearchHit {
    pub id: i64,
    pub title: String,
    pub content: String,
    pub source_type: String,
    pub metadata: Value,
    /// The entry's chunk closest to the query.
    pub snippet: String,
    /// Cosine similarity of that chunk, `1 - cosine distance`, rounded to 4 decimals.
    pub similarity: f64,
}

/// What the conversation engine gets for a question ([`super::answer_context`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub entry_id: i64,
    pub title: String,
    /// The entry's chunk that answers best.
    pub snippet: String,
    pub similarity: f64,
    pub source_type: SourceType,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(query: &str, top_k: Option<i64>) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            top_k,
            source_type: None,
            min_similarity: None,
            broker_id: None,
            params_in: ParamsIn::Body,
        }
    }

    #[test]
    fn titles_and_contents_have_limits() {
        assert_eq!(clean_title("  <b>Horario</b>  de visitas ").unwrap(), "Horario de visitas");
        assert!(clean_title("   ").is_err());
        assert!(clean_title(&"t".repeat(255)).is_ok());
        let err = clean_title(&"t".repeat(256)).unwrap_err();
        assert_eq!(err.detail()[0]["loc"], json!(["body", "title"]));
        assert_eq!(clean_content(" línea 1\r\nlínea 2\u{7} ").unwrap(), "línea 1\nlínea 2");
        assert!(clean_content(&"c".repeat(50_000)).is_ok());
        assert!(clean_content(&"c".repeat(50_001)).is_err());
        assert!(clean_content("\n\t ").is_err());
    }

    #[test]
    fn source_types_are_an_enum() {
        assert_eq!("FAQ".parse::<SourceType>(), Ok(SourceType::Faq));
        let err = SourceType::parse_field("blog", FieldError::body("source_type", "", "value_error")).unwrap_err();
        assert_eq!((err.status(), err.code()), (422, "invalid_source_type"));
        assert_eq!(err.detail()[0]["loc"], json!(["body", "source_type"]));
    }

    #[test]
    fn metadata_must_be_a_small_object() {
        assert_eq!(check_metadata(Value::Null).unwrap(), Map::new());
        assert!(check_metadata(json!({"proyecto": "Torre A"})).is_ok());
        assert!(check_metadata(json!([1])).is_err());
        assert!(check_metadata(json!({"x": "y".repeat(70_000)})).is_err());
    }

    #[test]
    fn searches_are_checked() {
        let s = parse_search(&request("  ¿mascotas? ", None)).unwrap();
        assert_eq!((s.query.as_str(), s.top_k), ("¿mascotas?", 3));
        for k in [0, 11, -1] {
            let err = parse_search(&request("x", Some(k))).unwrap_err();
            assert_eq!(err.detail()[0]["loc"], json!(["body", "top_k"]));
        }
        assert!(parse_search(&request(" ", None)).is_err());
        assert!(parse_search(&request(&"q".repeat(2001), None)).is_err());
        let get = SearchRequest { params_in: ParamsIn::Query, ..request("", None) };
        assert_eq!(parse_search(&get).unwrap_err().detail()[0]["loc"], json!(["query", "q"]));
        let bad = SearchRequest { min_similarity: Some(1.5), ..request("x", None) };
        assert!(parse_search(&bad).is_err());
    }
}
