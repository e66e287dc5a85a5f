//! OpenAI embeddings (and any compatible server): `POST {OPENAI_BASE_URL}/embeddings` with
//! `Authorization: Bearer`, body `{model, input: [...], dimensions: 768, encoding_format: "float"}`;
//! the answer is `{"data": [{"index": i, "embedding": [...]}, ...], "usage": {...}}`.

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Batch, Embedder, Purpose, SERVICE, numbers};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::infra::Infra;
use crate::integrations::{breaker, http, send_json};

/// Inputs per call (OpenAI accepts 2 048; smaller requests fail and retry more cheaply).
const BATCH: usize = 100;

pub struct OpenAi {
    key: SecretString,
    model: String,
    base_url: String,
    timeout: std::time::Duration,
}

impl OpenAi {
    /// From `OPENAI_API_KEY`, `OPENAI_EMBEDDING_MODEL` and `OPENAI_BASE_URL`.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let p = &settings.providers;
        let key = p
            .openai_api_key
            .clone()
            .ok_or_else(|| super::not_configured("EMBEDDING_PROVIDER is openai but OPENAI_API_KEY is not set"))?;
        Ok(Self {
            key,
            model: p.openai_embedding_model.trim().to_string(),
            base_url: p.openai_base_url.clone(),
            timeout: p.timeout,
        })
    }
}

/// The `/embeddings` body for `texts`.
pub fn request_body(model: &str, texts: &[String]) -> Value {
    json!({"model": model, "input": texts, "dimensions": super::DIMENSIONS, "encoding_format": "float"})
}

/// The vectors of an `/embeddings` answer, put back in input order by their `index`.
pub fn parse_response(body: &Value) -> Result<Vec<Vec<f32>>> {
    let malformed =
        || Error::upstream_permanent(SERVICE, "embedding_invalid", None, "OpenAI answered without data[].embedding");
    let mut items: Vec<(u64, Vec<f32>)> = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(malformed)?
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let index = d.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
            d.get("embedding").and_then(numbers).map(|v| (index, v)).ok_or_else(malformed)
        })
        .collect::<Result<_>>()?;
    items.sort_by_key(|(i, _)| *i);
    Ok(items.into_iter().map(|(_, v)| v).collect())
}

/// The input tokens an `/embeddings` answer counted (`usage.prompt_tokens`).
pub fn prompt_tokens(body: &Value) -> Option<u32> {
    body.get("usage")?.get("prompt_tokens")?.as_u64().map(|t| u32::try_from(t).unwrap_or(u32::MAX))
}

impl Embedder for OpenAi {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn batch_size(&self) -> usize {
        BATCH
    }

    fn default_min_similarity(&self) -> f64 {
        0.6
    }

    fn embed_batch<'a>(&'a self, infra: &'a Infra, texts: &'a [String], _: Purpose) -> BoxFuture<'a, Result<Batch>> {
        Box::pin(async move {
            let req = http()
                .post(format!("{}/embeddings", self.base_url))
                .timeout(self.timeout)
                .bearer_auth(self.key.expose_secret())
                .json(&request_body(&self.model, texts));
            let body = breaker::EMBEDDINGS.call(infra, || send_json(SERVICE, req)).await?;
            Ok(Batch { vectors: parse_response(&body)?, input_tokens: prompt_tokens(&body) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_ask_for_768_dimensions() {
        let body = request_body("text-embedding-3-small", &["a".into(), "b".into()]);
        assert_eq!(
            body,
            json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 768, "encoding_format": "float"})
        );
    }

    #[test]
    fn answers_are_put_back_in_input_order() {
        let body = json!({"object": "list", "data": [
            {"object": "embedding", "index": 1, "embedding": [2.0]},
            {"object": "embedding", "index": 0, "embedding": [1.0]},
        ], "usage": {"prompt_tokens": 2, "total_tokens": 2}});
        assert_eq!(parse_response(&body).unwrap(), vec![vec![1.0], vec![2.0]]);
        assert_eq!(prompt_tokens(&body), Some(2));
        assert_eq!(prompt_tokens(&json!({"data": []})), None);
        assert_eq!(parse_response(&json!({"data": [{"index": 0}]})).unwrap_err().code(), "embedding_invalid");
    }
}
