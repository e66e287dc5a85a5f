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

/// Serialises timestamps exactly as poem-openapi does (`to_rfc3339`, `+00:00`), so every endpoint
/// writes times the same way.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339())
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&t.to_rfc3339()),
                None => s.serialize_none(),
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
