//! `JsonBody<T>`: a JSON request body documented by `T`'s schema whose every failure (wrong content
//! type, malformed JSON, missing field, wrong type, failed validator, too large) is a 422 in
//! FastAPI's `[{loc, msg, type}]` shape, with `loc` naming the offending field.

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::Value;
use shared::error::FieldError;

use crate::error::ApiError;

/// JSON bodies above this size are refused with 413.
pub const MAX_JSON_BYTES: usize = 1024 * 1024;

pub struct JsonBody<T>(pub T);

/// A partial-update field as the services take it: `None` = absent, `Some(None)` = explicit `null`.
pub fn maybe<T>(m: poem_openapi::types::MaybeUndefined<T>) -> Option<Option<T>> {
    use poem_openapi::types::MaybeUndefined;
    match m {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

fn invalid(loc: Vec<String>, msg: impl Into<String>, kind: &str) -> poem::Error {
    ApiError(shared::Error::invalid("validation_error", FieldError { loc, msg: msg.into(), kind: kind.into() })).into()
}

fn body_loc(field: Option<&str>) -> Vec<String> {
    let mut loc = vec!["body".to_string()];
    loc.extend(field.map(str::to_string));
    loc
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn accepts(expected: &str, actual: &str) -> bool {
    expected.is_empty() || expected == actual || (expected == "number" && actual == "integer")
}

/// Finds the first missing required field or wrongly typed field of a top-level object, using the
/// schema poem-openapi builds for `T`.
fn structural_error<T: Type>(value: &Value) -> Option<poem::Error> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    let schema = match T::schema_ref() {
        MetaSchemaRef::Reference(name) => registry.schemas.get(&name)?.clone(),
        MetaSchemaRef::Inline(s) => *s,
    };
    let Value::Object(obj) = value else {
        return Some(invalid(body_loc(None), "Input should be a valid object", "dict_type"));
    };
    for name in &schema.required {
        if obj.get(*name).is_none_or(Value::is_null) {
            return Some(invalid(body_loc(Some(name)), "Field required", "missing"));
        }
    }
    for (name, prop) in &schema.properties {
        let Some(v) = obj.get(*name).filter(|v| !v.is_null()) else {
            continue;
        };
        let expected = match prop {
            MetaSchemaRef::Inline(s) => s.ty,
            MetaSchemaRef::Reference(r) => registry.schemas.get(r).map(|s| s.ty).unwrap_or(""),
        };
        if !accepts(expected, json_type(v)) {
            return Some(invalid(
                body_loc(Some(name)),
                format!("Input should be a valid {expected}"),
                &format!("{expected}_type"),
            ));
        }
    }
    None
}

/// PostgreSQL text cannot hold NUL characters: find the first string (or key) that has one.
fn nul_path(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) if s.contains('\0') => Some(vec![]),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            nul_path(item).map(|mut p| {
                p.insert(0, i.to_string());
                p
            })
        }),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            if k.contains('\0') {
                return Some(vec![k.replace('\0', "")]);
            }
            nul_path(item).map(|mut p| {
                p.insert(0, k.clone());
                p
            })
        }),
        _ => None,
    }
}

fn field_in(reason: &str) -> Option<&str> {
    let start = reason.find("field `")? + 7;
    let end = reason[start..].find('`')?;
    Some(&reason[start..start + end])
}

/// Reads and parses the body; `strict` also refuses values of the wrong JSON type that poem-openapi
/// would coerce (a number where a string is expected).
async fn read_json<T: ParseFromJSON + Type>(
    request: &Request,
    body: &mut RequestBody,
    strict: bool,
) -> poem::Result<T> {
    if let Some(ct) = request.content_type() {
        let is_json = ct.parse::<mime::Mime>().is_ok_and(|m| {
            m.type_() == "application" && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
        });
        if !is_json {
            return Err(invalid(
                body_loc(None),
                format!("Content-Type must be application/json, not {ct}"),
                "content_type",
            ));
        }
    }
    let too_large = || ApiError(shared::Error::PayloadTooLarge("JSON bodies are limited to 1 MiB".into()));
    let data = body.take()?.into_bytes_limit(MAX_JSON_BYTES).await.map_err(|e| match e {
        poem::error::ReadBodyError::PayloadTooLarge => poem::Error::from(too_large()),
        other => invalid(body_loc(None), format!("The body could not be read: {other}"), "value_error"),
    })?;
    if data.iter().all(u8::is_ascii_whitespace) {
        // An optional body (`JsonBody<Option<T>>`) may be left out.
        return T::parse_from_json(None).map_err(|_| invalid(body_loc(None), "Field required", "missing"));
    }
    let value: Value = serde_json::from_slice(&data)
        .map_err(|e| invalid(body_loc(None), format!("JSON decode error: {e}"), "json_invalid"))?;
    if let Some(path) = nul_path(&value) {
        let mut loc = body_loc(None);
        loc.extend(path);
        return Err(invalid(loc, "NUL characters are not allowed", "string_nul"));
    }
    if strict && let Some(err) = structural_error::<T>(&value) {
        return Err(err);
    }
    match T::parse_from_json(Some(value.clone())) {
        Ok(v) => Ok(v),
        Err(e) => {
            if let Some(err) = structural_error::<T>(&value) {
                return Err(err);
            }
            let reason = e.into_message();
            Err(invalid(body_loc(field_in(&reason)), reason.clone(), "value_error"))
        }
    }
}

impl<'a, T: ParseFromJSON + Type + Send> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: "application/json", schema: T::schema_ref() }],
            required: T::IS_REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        read_json(request, body, false).await.map(JsonBody)
    }
}

/// Like [`JsonBody`], but a value of the wrong JSON type is a 422 even where poem-openapi would
/// coerce it (`{"message": 5}` for a string field).
pub struct StrictJsonBody<T>(pub T);

impl<'a, T: ParseFromJSON + Type + Send> ApiExtractor<'a> for StrictJsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: "application/json", schema: T::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        read_json(request, body, true).await.map(StrictJsonBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem_openapi::Object;

    #[derive(Object)]
    struct Sample {
        name: String,
        age: Option<i64>,
    }

    #[test]
    fn finds_missing_and_mistyped_fields() {
        let missing = structural_error::<Sample>(&serde_json::json!({"age": 3})).unwrap();
        assert_eq!(missing.status(), 422);
        assert!(structural_error::<Sample>(&serde_json::json!({"name": 5})).is_some());
        assert!(structural_error::<Sample>(&serde_json::json!([1])).is_some());
        assert!(structural_error::<Sample>(&serde_json::json!({"name": "x", "age": 1})).is_none());
    }
}
