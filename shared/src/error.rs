//! The one error vocabulary. Every variant documents its HTTP status; every variant has a stable
//! snake_case `code`; `api` converts it to a response in exactly one place.

use serde_json::Value;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One failed check of a request, in FastAPI's shape (`loc`, `msg`, `type`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn body(field: &str, msg: impl Into<String>, kind: &str) -> Self {
        Self { loc: vec!["body".into(), field.into()], msg: msg.into(), kind: kind.into() }
    }
    pub fn query(field: &str, msg: impl Into<String>, kind: &str) -> Self {
        Self { loc: vec!["query".into(), field.into()], msg: msg.into(), kind: kind.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: the request is well-formed but breaks a rule; `code` says which.
    #[error("validation failed")]
    Validation { code: &'static str, errors: Vec<FieldError> },
    /// 400: a request that cannot be served as sent (`code` says why).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// 401: missing, malformed, expired or revoked credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 401: wrong email or password.
    #[error("Invalid credentials")]
    InvalidCredentials,
    /// 403: authenticated, but the role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 403: the account is deactivated.
    #[error("This account is inactive")]
    UserInactive,
    /// 404: missing, or belonging to another tenant (never revealed).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: a lead with the same phone or email exists in the broker.
    #[error("A lead with this phone or email already exists")]
    LeadExists { lead_id: i64 },
    /// 400: the email is registered already.
    #[error("Email already registered")]
    EmailTaken,
    /// 409: other conflicts with the current state.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 413: the upload is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: too many requests; retry after the given seconds.
    #[error("Too many requests, retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// 503: a dependency (database, Redis) is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// 502: an external provider (LLM, Telegram, WhatsApp, VAPI, Google) refused or failed a call.
    /// `permanent` when retrying cannot help (its 4xx other than 408/429); `status` and `detail`
    /// carry the provider's answer (never our credentials).
    #[error("{service} failed: {detail}")]
    Upstream { service: &'static str, code: &'static str, status: Option<u16>, detail: String, permanent: bool },
    /// 500 at start-up: the configuration is unusable.
    #[error("configuration error: {0}")]
    Config(String),
    /// 500: anything unexpected; the cause is logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// HTTP status of the variant.
    pub fn status(&self) -> u16 {
        match self {
            Error::Validation { .. } => 422,
            Error::BadRequest { .. } | Error::EmailTaken => 400,
            Error::Unauthorized(_) | Error::InvalidCredentials => 401,
            Error::Forbidden(_) | Error::UserInactive => 403,
            Error::NotFound(_) => 404,
            Error::LeadExists { .. } | Error::Conflict { .. } => 409,
            Error::PayloadTooLarge(_) => 413,
            Error::RateLimited { .. } => 429,
            Error::Unavailable(_) => 503,
            Error::Upstream { .. } => 502,
            Error::Config(_) | Error::Internal(_) => 500,
        }
    }

    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation { code, .. }
            | Error::BadRequest { code, .. }
            | Error::Conflict { code, .. }
            | Error::Upstream { code, .. } => code,
            Error::Unauthorized(_) => "not_authenticated",
            Error::InvalidCredentials => "invalid_credentials",
            Error::Forbidden(_) => "forbidden",
            Error::UserInactive => "user_inactive",
            Error::NotFound(_) => "not_found",
            Error::LeadExists { .. } => "lead_exists",
            Error::EmailTaken => "email_taken",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) => "service_unavailable",
            Error::Config(_) | Error::Internal(_) => "internal_error",
        }
    }

    /// The `detail` a client sees: a list for validation errors, a sentence otherwise.
    /// Internal errors never reveal their cause.
    pub fn detail(&self) -> Value {
        match self {
            Error::Validation { errors, .. } => serde_json::to_value(errors).unwrap_or(Value::Null),
            Error::Config(_) | Error::Internal(_) => Value::String("An internal error occurred".into()),
            other => Value::String(other.to_string()),
        }
    }

    /// Extra top-level keys of the error body (e.g. `lead_id` of a duplicate).
    pub fn extra(&self) -> Option<(&'static str, Value)> {
        match self {
            Error::LeadExists { lead_id } => Some(("lead_id", Value::from(*lead_id))),
            _ => None,
        }
    }

    /// One 422 with a single offending field.
    pub fn invalid(code: &'static str, loc: FieldError) -> Self {
        Error::Validation { code, errors: vec![loc] }
    }

    /// 422 on one body field with the generic `validation_error` code.
    pub fn invalid_body(field: &str, msg: impl Into<String>) -> Self {
        Self::invalid("validation_error", FieldError::body(field, msg, "value_error"))
    }

    /// 422 on one query parameter.
    pub fn invalid_query(field: &str, msg: impl Into<String>) -> Self {
        Self::invalid("validation_error", FieldError::query(field, msg, "value_error"))
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Error::BadRequest { code, detail: detail.into() }
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Error::Forbidden(detail.into())
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Error::Conflict { code, detail: detail.into() }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Error::Internal(err.into())
    }

    /// A provider failure worth retrying (5xx, 408, 429, time-out, connection error).
    pub fn upstream_transient(service: &'static str, status: Option<u16>, detail: impl Into<String>) -> Self {
        Error::Upstream { service, code: "upstream_error", status, detail: detail.into(), permanent: false }
    }

    /// A provider refusal that no retry can fix (its 4xx other than 408/429), or a rule of ours about
    /// the send (`code`, e.g. `outside_24h_window`).
    pub fn upstream_permanent(
        service: &'static str,
        code: &'static str,
        status: Option<u16>,
        detail: impl Into<String>,
    ) -> Self {
        Error::Upstream { service, code, status, detail: detail.into(), permanent: true }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::is_connection_error(&err) {
            tracing::error!(error = %err, "database unavailable");
            return Error::Unavailable("The database is unavailable, try again shortly".into());
        }
        Error::Internal(anyhow::Error::new(err))
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(err: sea_orm::TransactionError<Error>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() || err.is_timeout() {
            tracing::error!(error = %err, "redis unavailable");
            return Error::Unavailable("Redis is unavailable, try again shortly".into());
        }
        Error::Internal(anyhow::Error::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_reveal_their_cause() {
        let e = Error::internal(anyhow::anyhow!("password=hunter2 at db"));
        assert_eq!(e.status(), 500);
        assert!(!e.detail().to_string().contains("hunter2"));
    }

    #[test]
    fn validation_detail_is_the_fastapi_list() {
        let e = Error::invalid("weak_password", FieldError::body("password", "too short", "value_error"));
        assert_eq!(e.status(), 422);
        assert_eq!(e.code(), "weak_password");
        assert_eq!(e.detail()[0]["loc"], serde_json::json!(["body", "password"]));
        assert_eq!(e.detail()[0]["type"], "value_error");
    }

    #[test]
    fn duplicate_lead_carries_its_id() {
        let e = Error::LeadExists { lead_id: 7 };
        assert_eq!((e.status(), e.code()), (409, "lead_exists"));
        assert_eq!(e.extra(), Some(("lead_id", Value::from(7))));
    }
}
