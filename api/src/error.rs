//! The one conversion from `shared::Error` to an HTTP response, and the catch-all that gives errors
//! raised before a handler runs (bad JSON, bad parameters, auth, unknown routes) the same shape.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use serde_json::{Value, json};
use shared::error::FieldError;

/// An error response. Handlers return `ApiResult<T>`; the variant decides status, code and detail.
#[derive(Debug)]
pub struct ApiError(pub shared::Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<shared::Error> for ApiError {
    fn from(e: shared::Error) -> Self {
        ApiError(e)
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError(e.into())
    }
}

/// The error body every endpoint uses.
#[derive(Object)]
#[oai(rename = "ErrorBody")]
pub struct ErrorBody {
    /// A sentence for a person, or for 422 the FastAPI list `[{loc, msg, type}]`.
    pub detail: Value,
    /// Stable snake_case code (`validation_error`, `not_found`, `lead_exists`, …).
    pub code: String,
    /// For `lead_exists`: the id of the lead that already has this phone or email.
    pub lead_id: Option<i64>,
}

fn error_response(err: &shared::Error) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        match err {
            shared::Error::Unavailable(_) => tracing::warn!(error = %err, "dependency unavailable"),
            _ => tracing::error!(error = ?err, "internal error"),
        }
    }
    let mut body = json!({"detail": err.detail(), "code": err.code()});
    if let Some((k, v)) = err.extra() {
        body[k] = v;
    }
    let mut resp = poem::web::Json(body).with_status(status).into_response();
    match err {
        shared::Error::Unauthorized(_) | shared::Error::InvalidCredentials => {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        shared::Error::RateLimited { retry_after } => {
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        shared::Error::Unavailable(_) => {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        _ => {}
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

impl From<ApiError> for poem::Error {
    fn from(e: ApiError) -> Self {
        poem::Error::from_response(e.into_response())
    }
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let doc: [(u16, &'static str); 10] = [
            (400, "Bad request (`email_taken`, `csv_required`, `csv_invalid`, `slug_taken`, …)"),
            (401, "Missing, invalid or expired token (`not_authenticated`), or wrong credentials"),
            (403, "The role may not do this (`forbidden`), or the account is inactive (`user_inactive`)"),
            (404, "Not found, or belonging to another broker (`not_found`)"),
            (409, "Conflict with existing data (`lead_exists` carries `lead_id`)"),
            (413, "Upload too large (`payload_too_large`)"),
            (422, "Validation failed: `detail` is a list of `{loc, msg, type}`"),
            (429, "Rate limited (`rate_limited`); see `Retry-After`"),
            (500, "Unexpected error (`internal_error`); details are logged, never returned"),
            (503, "A dependency is unavailable (`service_unavailable`); see `Retry-After`"),
        ];
        MetaResponses {
            responses: doc
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: ErrorBody::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

fn validation(loc: Vec<String>, msg: String, kind: &str) -> shared::Error {
    shared::Error::invalid("validation_error", FieldError { loc, msg, kind: kind.into() })
}

/// Extracts the field name from poem-openapi's "field `x` verification failed" messages.
fn field_in(reason: &str) -> Option<String> {
    let start = reason.find("field `")? + 7;
    let end = reason[start..].find('`')?;
    Some(reason[start..start + end].to_string())
}

/// The name of the path parameter that failed to parse in `path`: the first non-integer segment
/// after a plural collection name (`/api/v1/leads/abc` → `lead_id`). poem-openapi only reports its
/// internal `paramN` names.
fn path_param_name(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segs.windows(2)
        .find(|w| w[1].parse::<i64>().is_err() && w[0].ends_with('s'))
        .map(|w| format!("{}_id", w[0].trim_end_matches('s').replace('-', "_")))
        .unwrap_or_else(|| "id".into())
}

/// Turns any `poem::Error` into the JSON error shape.
pub fn catch_all(err: poem::Error, path: &str) -> Response {
    use poem_openapi::error::{
        AuthorizationError, ContentTypeError, ParseMultipartError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    };
    if err.is_from_response() {
        return err.into_response();
    }
    let mapped = if let Some(e) = err.downcast_ref::<ParseParamError>() {
        let kind = if e.reason.contains("verification failed") { "value_error" } else { "type_error" };
        validation(vec!["query".into(), e.name.to_string()], e.reason.clone(), kind)
    } else if let Some(e) = err.downcast_ref::<ParsePathError>() {
        let _ = e;
        validation(vec!["path".into(), path_param_name(path)], "Input should be a valid integer".into(), "int_parsing")
    } else if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        let loc = match field_in(&e.reason) {
            Some(f) => vec!["body".into(), f],
            None => vec!["body".into()],
        };
        validation(loc, e.reason.clone(), "value_error")
    } else if let Some(e) = err.downcast_ref::<ParseMultipartError>() {
        validation(vec!["body".into()], e.reason.clone(), "value_error")
    } else if err.is::<ContentTypeError>() {
        validation(vec!["body".into()], err.to_string(), "content_type")
    } else if err.is::<AuthorizationError>() {
        shared::Error::Unauthorized("Not authenticated".into())
    } else {
        let status = err.status();
        match status {
            StatusCode::NOT_FOUND => shared::Error::NotFound("Route"),
            StatusCode::METHOD_NOT_ALLOWED => {
                shared::Error::BadRequest { code: "method_not_allowed", detail: "Method not allowed".into() }
            }
            StatusCode::PAYLOAD_TOO_LARGE => shared::Error::PayloadTooLarge("The request body is too large".into()),
            StatusCode::UNAUTHORIZED => shared::Error::Unauthorized("Not authenticated".into()),
            s if s.is_client_error() => validation(vec!["body".into()], err.to_string(), "value_error"),
            _ => shared::Error::internal(anyhow::anyhow!("{err}")),
        }
    };
    let mut resp = error_response(&mapped);
    if err.status() == StatusCode::METHOD_NOT_ALLOWED {
        resp.set_status(StatusCode::METHOD_NOT_ALLOWED);
    }
    resp
}

/// The answer when a handler panics: a 500 `internal_error` in the usual `{detail, code}` shape
/// (logged) instead of a dropped connection.
pub fn panicked(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    poem::Error::from(ApiError(shared::Error::internal(anyhow::anyhow!("request handler panicked")))).into_response()
}

#[cfg(test)]
mod tests {
    use super::path_param_name;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_json_500() {
        use poem::EndpointExt;
        let ep = poem::endpoint::make(|_| async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            "unreachable"
        })
        .with(poem::middleware::CatchPanic::new().with_handler(super::panicked));
        let resp = poem::test::TestClient::new(ep).get("/").send().await;
        resp.assert_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = serde_json::from_str(&resp.0.into_body().into_string().await.unwrap()).unwrap();
        assert_eq!(body["code"], "internal_error");
        assert!(body["detail"].is_string());
    }

    #[test]
    fn names_the_failing_path_parameter() {
        assert_eq!(path_param_name("/api/v1/leads/abc/assign"), "lead_id");
        assert_eq!(path_param_name("/api/brokers/x"), "broker_id");
        assert_eq!(path_param_name("/api/broker/users/1.5"), "user_id");
    }
}
