//! `JsonOut<T>`: a JSON response documented by `T`'s schema but written straight from `T` with serde,
//! without building an intermediate `serde_json::Value` tree. Used on the hot lead endpoints, where
//! that tree (a map allocation per field of every lead) was most of the CPU per request.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::Serialize;

pub struct JsonOut<T>(pub T);

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

impl<T: Type + Send> Payload for JsonOut<T> {
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for JsonOut<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(16 * 1024);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => Response::builder().content_type(CONTENT_TYPE).body(body),
            Err(e) => {
                tracing::error!(error = %e, "response serialisation failed");
                crate::error::ApiError(shared::Error::internal(e)).into_response()
            }
        }
    }
}

impl<T: Type + Serialize + Send> ApiResponse for JsonOut<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType { content_type: CONTENT_TYPE, schema: T::schema_ref() }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// Serialises timestamps exactly as poem-openapi does (`to_rfc3339`: `2026-01-31T12:00:00.123456+00:00`),
/// so every endpoint writes times the same way, but straight into the output without a `String` each.
pub mod rfc3339 {
    use chrono::{DateTime, TimeZone, Utc};
    use serde::Serializer;

    /// The format `DateTime::to_rfc3339` uses.
    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.f%:z";

    pub fn serialize<S: Serializer, Tz: TimeZone>(t: &DateTime<Tz>, s: S) -> Result<S::Ok, S::Error>
    where
        Tz::Offset: std::fmt::Display,
    {
        s.collect_str(&t.format(FORMAT))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.collect_str(&t.format(FORMAT)),
                None => s.serialize_none(),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use chrono::TimeZone;

        #[test]
        fn matches_to_rfc3339() {
            for t in [
                chrono::Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap(),
                chrono::Utc.timestamp_opt(1_790_000_000, 123_456_000).unwrap(),
                chrono::Utc.timestamp_opt(1_790_000_000, 1).unwrap(),
            ] {
                let mut out = Vec::new();
                super::serialize(&t, &mut serde_json::Serializer::new(&mut out)).unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", t.to_rfc3339()));
                let santiago = t.with_timezone(&chrono::FixedOffset::west_opt(3 * 3600).unwrap());
                let mut out = Vec::new();
                super::serialize(&santiago, &mut serde_json::Serializer::new(&mut out)).unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", santiago.to_rfc3339()));
            }
        }
    }
}

/// Status 201 with a `JsonOut` body.
pub struct CreatedJson<T>(pub T);

impl<T: Serialize + Send> IntoResponse for CreatedJson<T> {
    fn into_response(self) -> Response {
        let mut resp = JsonOut(self.0).into_response();
        if resp.status() == StatusCode::OK {
            resp.set_status(StatusCode::CREATED);
        }
        resp
    }
}

impl<T: Type + Serialize + Send> ApiResponse for CreatedJson<T> {
    fn meta() -> MetaResponses {
        let mut meta = JsonOut::<T>::meta();
        for r in &mut meta.responses {
            r.status = Some(201);
            r.description = "Created";
        }
        meta
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}
