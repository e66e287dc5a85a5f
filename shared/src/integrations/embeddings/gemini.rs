//! Gemini embeddings: `POST {GEMINI_BASE_URL}/v1beta/models/{model}:batchEmbedContents` with the key
//! in `x-goog-api-key`, one request per text with `taskType` (`RETRIEVAL_DOCUMENT` for entries,
//! `RETRIEVAL_QUERY` for searches) and `outputDimensionality: 768`; the answer is
//! `{"embeddings": [{"values": [...]}, ...]}` in request order.

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Batch, Embedder, Purpose, SERVICE, numbers};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::infra::Infra;
use crate::integrations::{breaker, http, send_json};

/// Gemini accepts at most 100 requests per batch.
const BATCH: usize = 100;

pub struct Gemini {
    key: SecretString,
    /// Without the `models/` prefix (`text-embedding-004`).
    model: String,
    base_url: String,
    timeout: std::time::Duration,
}

impl Gemini {
    /// From `GEMINI_API_KEY`, `GEMINI_EMBEDDING_MODEL` and `GEMINI_BASE_URL`.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let p = &settings.providers;
        let key = p
            .gemini_api_key
            .clone()
            .ok_or_else(|| super::not_configured("EMBEDDING_PROVIDER is gemini but GEMINI_API_KEY is not set"))?;
        Ok(Self {
            key,
            model: p.gemini_embedding_model.trim().trim_start_matches("models/").to_string(),
            base_url: p.gemini_base_url.clone(),
            timeout: p.timeout,
        })
    }
}

/// The `batchEmbedContents` body for `texts`.
pub fn request_body(model: &str, texts: &[String], purpose: Purpose) -> Value {
    let task = match purpose {
        Purpose::Document => "RETRIEVAL_DOCUMENT",
        Purpose::Query => "RETRIEVAL_QUERY",
    };
    let requests: Vec<Value> = texts
        .iter()
        .map(|t| {
            json!({
                "model": format!("models/{model}"),
                "content": {"parts": [{"text": t}]},
                "taskType": task,
                "outputDimensionality": super::DIMENSIONS,
            })
        })
        .collect();
    json!({ "requests": requests })
}

/// The vectors of a `batchEmbedContents` answer.
pub fn parse_response(body: &Value) -> Result<Vec<Vec<f32>>> {
    let malformed =
        || Error::upstream_permanent(SERVICE, "embedding_invalid", None, "Gemini answered without embeddings[].values");
    body.get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(malformed)?
        .iter()
        .map(|e| e.get("values").and_then(numbers).ok_or_else(malformed))
        .collect()
}

impl Embedder for Gemini {
    fn provider(&self) -> &'static str {
        "gemini"
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

    fn embed_batch<'a>(
        &'a self,
        infra: &'a Infra,
        texts: &'a [String],
        purpose: Purpose,
    ) -> BoxFuture<'a, Result<Batch>> {
        Box::pin(async move {
            let url = format!("{}/v1beta/models/{}:batchEmbedContents", self.base_url, self.model);
            let req = http()
                .post(url)
                .timeout(self.timeout)
                .header("x-goog-api-key", self.key.expose_secret())
                .json(&request_body(&self.model, texts, purpose));
            let body = breaker::EMBEDDINGS.call(infra, || send_json(SERVICE, req)).await?;
            // batchEmbedContents reports no usage: the ledger estimates the tokens.
            Ok(Batch { vectors: parse_response(&body)?, input_tokens: None })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_task_type_and_768_dimensions() {
        let body = request_body("text-embedding-004", &["hola".into(), "chao".into()], Purpose::Query);
        let reqs = body["requests"].as_array().unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0]["model"], "models/text-embedding-004");
        assert_eq!(reqs[0]["content"]["parts"][0]["text"], "hola");
        assert_eq!(reqs[1]["taskType"], "RETRIEVAL_QUERY");
        assert_eq!(reqs[1]["outputDimensionality"], 768);
        let doc = request_body("m", &["x".into()], Purpose::Document);
        assert_eq!(doc["requests"][0]["taskType"], "RETRIEVAL_DOCUMENT");
    }

    #[test]
    fn answers_are_read_in_order_and_malformed_ones_are_permanent() {
        let v = parse_response(&json!({"embeddings": [{"values": [0.5, 1]}, {"values": [2.0]}]})).unwrap();
        assert_eq!(v, vec![vec![0.5, 1.0], vec![2.0]]);
        for bad in [json!({}), json!({"embeddings": [{"value": [1]}]}), json!({"embeddings": [{"values": ["x"]}]})] {
            assert_eq!(parse_response(&bad).unwrap_err().code(), "embedding_invalid");
        }
    }
}
