//! Text embeddings for the knowledge base: one small trait, [`Embedder`], and three providers chosen
//! by `EMBEDDING_PROVIDER` ([`configured`]):
//!
//! - [`local`] (default): deterministic feature hashing, offline, no key (SPEC §2);
//! - [`gemini`]: `batchEmbedContents` with `outputDimensionality: 768` and retrieval task types;
//! - [`openai`]: `/embeddings` with `dimensions: 768` (any OpenAI-compatible server).
//!
//! Every vector has [`DIMENSIONS`] components and unit length, whatever the provider returned, so
//! the stored vectors of one provider and model are comparable by cosine distance. Remote calls go
//! through [`send_json`](super::send_json) inside the shared `embeddings` circuit breaker; their
//! errors are classed permanent or transient as SPEC §15 says. Every remote call, answered or
//! failed, is a row of the cost ledger (`llm_calls`, call type `embedding`) for the broker it was
//! made for; the local embedder costs nothing and writes none.

pub mod gemini;
pub mod local;
pub mod openai;

use futures_util::future::BoxFuture;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::infra::Infra;
use crate::integrations::llm::{CallRecord, CallType, Usage, price};

/// Components of every stored vector (`vector(768)` in `knowledge_chunks`).
pub const DIMENSIONS: usize = 768;

/// The `service` of embedding errors, and the name of their circuit breaker.
pub const SERVICE: &str = "embeddings";

/// What a text is embedded for. Gemini embeds documents and queries differently
/// (`RETRIEVAL_DOCUMENT` / `RETRIEVAL_QUERY`); the other providers ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Document,
    Query,
}

/// One call's answer: a vector per text, and the input tokens the provider counted (`None` when
/// it does not say: the ledger then estimates them from the characters sent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub vectors: Vec<Vec<f32>>,
    pub input_tokens: Option<u32>,
}

/// A provider of text embeddings.
pub trait Embedder: Send + Sync {
    /// Stored with each vector: `local`, `gemini` or `openai`.
    fn provider(&self) -> &'static str;

    /// Stored with each vector; vectors of different models are never compared.
    fn model(&self) -> &str;

    /// Most texts one call may carry.
    fn batch_size(&self) -> usize;

    /// The search threshold when the client sends none (SPEC §9: 0.3 local, 0.6 remote).
    fn default_min_similarity(&self) -> f64;

    /// One vector per text, in order. At most [`Embedder::batch_size`] texts; use [`embed_all`],
    /// which batches and checks the answer.
    fn embed_batch<'a>(
        &'a self,
        infra: &'a Infra,
        texts: &'a [String],
        purpose: Purpose,
    ) -> BoxFuture<'a, Result<Batch>>;
}

/// The provider `EMBEDDING_PROVIDER` names. A remote provider without its API key, or an unknown
/// name, is a permanent error (`embedding_provider_not_configured`), never a silent fallback: vectors
/// of another provider would be stored under a name that does not describe them.
pub fn configured(settings: &Settings) -> Result<Box<dyn Embedder>> {
    match settings.embedding_provider.trim().to_ascii_lowercase().as_str() {
        "local" => Ok(Box::new(Local)),
        "gemini" => Ok(Box::new(gemini::Gemini::from_settings(settings)?)),
        "openai" => Ok(Box::new(openai::OpenAi::from_settings(settings)?)),
        other => Err(not_configured(format!("EMBEDDING_PROVIDER {other:?} is not one of local, gemini, openai"))),
    }
}

/// The error of a provider that cannot be used as configured.
pub fn not_configured(detail: impl Into<String>) -> Error {
    Error::upstream_permanent(SERVICE, "embedding_provider_not_configured", None, detail)
}

/// Embeds `texts` in batches of the provider's size; every vector checked and unit length. Each
/// remote call is written to the cost ledger for `broker_id` ([`record_call`]).
pub async fn embed_all(
    infra: &Infra,
    embedder: &dyn Embedder,
    texts: &[String],
    purpose: Purpose,
    broker_id: Option<i64>,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(embedder.batch_size().max(1)) {
        let started = std::time::Instant::now();
        let answer = embedder.embed_batch(infra, batch, purpose).await;
        if embedder.provider() != "local" {
            record_call(infra, embedder, batch, answer.as_ref().map(|b| b.input_tokens), started.elapsed(), broker_id)
                .await;
        }
        out.extend(checked(answer?.vectors, batch.len())?);
    }
    Ok(out)
}

/// Writes the ledger row of one remote call: its tokens (the provider's count, else characters / 4),
/// the model's price and the latency; a failed call is recorded with its error and no cost. A
/// ledger that cannot be written is logged, not raised: the vectors were paid for either way, and a
/// retry would pay again.
async fn record_call(
    infra: &Infra,
    embedder: &dyn Embedder,
    batch: &[String],
    answer: std::result::Result<Option<u32>, &Error>,
    latency: std::time::Duration,
    broker_id: Option<i64>,
) {
    let chars: usize = batch.iter().map(|t| t.chars().count()).sum();
    let estimate = Usage::estimate(chars, 0);
    let (usage, error) = match answer {
        Ok(Some(tokens)) => (Usage { input_tokens: tokens, output_tokens: 0, estimated: false, ..estimate }, None),
        Ok(None) => (estimate, None),
        Err(e) => (estimate, Some(format!("{}: {}", e.code(), e.detail()).chars().take(500).collect::<String>())),
    };
    let call = CallRecord {
        provider: embedder.provider(),
        model: embedder.model().to_string(),
        call_type: CallType::Embedding,
        input_tokens: usage.input_tokens,
        output_tokens: 0,
        cost_usd: if error.is_some() { Some(0.0) } else { price(embedder.model(), &usage) },
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        error,
        used_fallback: false,
        estimated: usage.estimated,
    };
    if let Err(e) = crate::chat::ledger::record(&infra.db, broker_id, None, &call, None).await {
        tracing::warn!(error = %e, "could not write the embedding call to the cost ledger");
    }
}

/// Checks a provider's answer (one finite, non-zero vector of [`DIMENSIONS`] per text) and scales
/// each vector to unit length. A wrong answer is permanent: the same request gets the same answer
/// (a model that ignores the requested dimensions, say).
pub fn checked(vectors: Vec<Vec<f32>>, expected: usize) -> Result<Vec<Vec<f32>>> {
    let invalid = |detail: String| Error::upstream_permanent(SERVICE, "embedding_invalid", None, detail);
    if vectors.len() != expected {
        return Err(invalid(format!("the provider returned {} vectors for {expected} texts", vectors.len())));
    }
    vectors
        .into_iter()
        .map(|v| {
            if v.len() != DIMENSIONS {
                return Err(invalid(format!("the provider returned {} dimensions, not {DIMENSIONS}", v.len())));
            }
            let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            if !norm.is_finite() || norm == 0.0 {
                return Err(invalid("the provider returned a zero or non-finite vector".into()));
            }
            Ok(v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
        })
        .collect()
}

/// Reads a JSON array of numbers as a vector (`None` if it is not one).
fn numbers(v: &serde_json::Value) -> Option<Vec<f32>> {
    v.as_array()?.iter().map(|x| x.as_f64().map(|f| f as f32)).collect()
}

/// The offline provider ([`local`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Embedder for Local {
    fn provider(&self) -> &'static str {
        "local"
    }

    fn model(&self) -> &str {
        local::MODEL
    }

    fn batch_size(&self) -> usize {
        256
    }

    fn default_min_similarity(&self) -> f64 {
        0.3
    }

    fn embed_batch<'a>(&'a self, _: &'a Infra, texts: &'a [String], _: Purpose) -> BoxFuture<'a, Result<Batch>> {
        let vectors = texts.iter().map(|t| local::embed(t)).collect();
        Box::pin(std::future::ready(Ok(Batch { vectors, input_tokens: None })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(move |k| map.get(k).cloned()).unwrap()
    }

    #[test]
    fn the_provider_follows_embedding_provider() {
        let local = configured(&settings(&[])).unwrap();
        assert_eq!((local.provider(), local.model()), ("local", local::MODEL));
        let gemini = configured(&settings(&[("EMBEDDING_PROVIDER", "gemini"), ("GEMINI_API_KEY", "k")])).unwrap();
        assert_eq!((gemini.provider(), gemini.model()), ("gemini", "text-embedding-004"));
        assert_eq!(gemini.default_min_similarity(), 0.6);
        let openai = configured(&settings(&[("EMBEDDING_PROVIDER", "OpenAI"), ("OPENAI_API_KEY", "k")])).unwrap();
        assert_eq!((openai.provider(), openai.model()), ("openai", "text-embedding-3-small"));
    }

    #[test]
    fn a_remote_provider_without_its_key_is_a_permanent_error() {
        for name in ["gemini", "openai", "cohere"] {
            let err = configured(&settings(&[("EMBEDDING_PROVIDER", name)])).err().unwrap();
            assert_eq!(err.code(), "embedding_provider_not_configured", "{name}");
            assert!(crate::jobs::is_permanent(&err));
        }
    }

    #[test]
    fn answers_are_checked_and_scaled_to_unit_length() {
        let v = checked(vec![vec![3.0; DIMENSIONS]], 1).unwrap();
        assert!((v[0][0] - 1.0 / (DIMENSIONS as f32).sqrt()).abs() < 1e-6);
        for (bad, n) in [(vec![vec![1.0; 1536]], 1), (vec![vec![0.0; DIMENSIONS]], 1), (vec![vec![1.0; DIMENSIONS]], 2)]
        {
            let err = checked(bad, n).unwrap_err();
            assert_eq!(err.code(), "embedding_invalid");
            assert!(crate::jobs::is_permanent(&err));
        }
    }
}
