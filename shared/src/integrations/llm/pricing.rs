//! What an LLM call cost, for the `llm_calls` ledger (SPEC §12): USD per 1 000 tokens by model,
//! where the **most specific** model name wins.
//!
//! A key matches a model name when it occurs in the lower-cased name as a whole segment (what comes
//! before and after it is not a letter or digit), so provider prefixes and dated suffixes still
//! match (`google/gemini-2.5-flash-lite`, `gpt-4o-mini-2024-07-18`, `models/gemini-2.0-flash-001`).
//! Of the matching keys the longest wins: `gpt-4o-mini` is priced as gpt-4o-mini, not gpt-4o, and
//! `gemini-2.5-flash-lite` as flash-lite (the reference service took the first substring in table
//! order, 🐞 reference §9.2). Claude names with dots (OpenRouter's `anthropic/claude-sonnet-4.5`)
//! are read with dashes, as Anthropic writes them. An unknown model has no price (`None`, NULL in
//! the ledger), never a guess. A cost the provider reported itself (OpenRouter's `usage.cost`) wins
//! over the table.
//!
//! Prices are the providers' standard (non-batch, ≤ 200 k context) list prices as of early 2026;
//! the reference's table was older (gpt-4o at 5/15 USD per million, gemini-2.0-flash at 1.5-flash's
//! price), and a ledger that under-reports is worse than none.

use super::Usage;

/// `(key, USD per 1 000 input tokens, USD per 1 000 output tokens)`.
#[rustfmt::skip]
const TABLE: &[(&str, f64, f64)] = &[
    // Google Gemini
    ("gemini-3.1-pro",         0.002_000, 0.012_000),
    ("gemini-3.1-flash-lite",  0.000_250, 0.001_500),
    ("gemini-3-pro",           0.002_000, 0.012_000),
    ("gemini-3-flash",         0.000_500, 0.003_000),
    ("gemini-2.5-pro",         0.001_250, 0.010_000),
    ("gemini-2.5-flash",       0.000_300, 0.002_500),
    ("gemini-2.5-flash-lite",  0.000_100, 0.000_400),
    ("gemini-2.0-flash",       0.000_100, 0.000_400),
    ("gemini-2.0-flash-lite",  0.000_075, 0.000_300),
    ("gemini-1.5-pro",         0.001_250, 0.005_000),
    ("gemini-1.5-flash",       0.000_075, 0.000_300),
    ("gemini-1.5-flash-8b",    0.000_037_5, 0.000_150),
    // OpenAI
    ("gpt-4o",                 0.002_500, 0.010_000),
    ("gpt-4o-mini",            0.000_150, 0.000_600),
    ("gpt-4.1",                0.002_000, 0.008_000),
    ("gpt-4.1-mini",           0.000_400, 0.001_600),
    ("gpt-4.1-nano",           0.000_100, 0.000_400),
    ("gpt-5",                  0.001_250, 0.010_000),
    ("gpt-5-mini",             0.000_250, 0.002_000),
    ("gpt-5-nano",             0.000_050, 0.000_400),
    ("o1",                     0.015_000, 0.060_000),
    ("o1-mini",                0.001_100, 0.004_400),
    ("o3",                     0.002_000, 0.008_000),
    ("o3-mini",                0.001_100, 0.004_400),
    ("o3-pro",                 0.020_000, 0.080_000),
    ("o4-mini",                0.001_100, 0.004_400),
    // Anthropic Claude (opus-4 and opus-4-1 share a price; opus-4-5 and later are cheaper)
    ("claude-opus-4",          0.015_000, 0.075_000),
    ("claude-opus-4-5",        0.005_000, 0.025_000),
    ("claude-opus-4-6",        0.005_000, 0.025_000),
    ("claude-sonnet-4",        0.003_000, 0.015_000),
    ("claude-haiku-4-5",       0.001_000, 0.005_000),
    ("claude-3-7-sonnet",      0.003_000, 0.015_000),
    ("claude-3-5-sonnet",      0.003_000, 0.015_000),
    ("claude-3-5-haiku",       0.000_800, 0.004_000),
    ("claude-3-opus",          0.015_000, 0.075_000),
    ("claude-3-haiku",         0.000_250, 0.001_250),
    // Embeddings (input only)
    ("text-embedding-3-small", 0.000_020, 0.0),
    ("text-embedding-3-large", 0.000_130, 0.0),
    ("text-embedding-ada-002", 0.000_100, 0.0),
    ("gemini-embedding-001",   0.000_150, 0.0),
];

/// The table key that prices `model` (the longest whole-segment match), if any.
pub fn key_for(model: &str) -> Option<&'static str> {
    let mut name = model.trim().to_ascii_lowercase();
    if name.contains("claude") {
        name = name.replace('.', "-");
    }
    TABLE.iter().map(|(key, _, _)| *key).filter(|key| occurs_as_segment(&name, key)).max_by_key(|key| key.len())
}

/// USD per 1 000 `(input, output)` tokens of `model`.
pub fn rates(model: &str) -> Option<(f64, f64)> {
    let key = key_for(model)?;
    TABLE.iter().find(|(k, _, _)| *k == key).map(|(_, i, o)| (*i, *o))
}

/// What a call with `usage` cost: the provider's own figure when it sent one, else the table's
/// (rounded to 8 decimals); `None` for a model the table does not know.
pub fn price(model: &str, usage: &Usage) -> Option<f64> {
    if let Some(cost) = usage.cost_usd.filter(|c| c.is_finite() && *c >= 0.0) {
        return Some(cost);
    }
    let (input, output) = rates(model)?;
    let cost = f64::from(usage.input_tokens) / 1000.0 * input + f64::from(usage.output_tokens) / 1000.0 * output;
    Some((cost * 1e8).round() / 1e8)
}

fn occurs_as_segment(name: &str, key: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
    name.match_indices(key)
        .any(|(i, _)| boundary(name[..i].chars().next_back()) && boundary(name[i + key.len()..].chars().next()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u32, output: u32) -> Usage {
        Usage { input_tokens: input, output_tokens: output, ..Usage::default() }
    }

    #[test]
    fn the_most_specific_model_name_wins() {
        assert_eq!(key_for("gpt-4o-mini"), Some("gpt-4o-mini"));
        assert_eq!(key_for("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(key_for("gpt-4o"), Some("gpt-4o"));
        assert_eq!(key_for("openai/gpt-4o-2024-11-20"), Some("gpt-4o"));
        assert_eq!(key_for("gpt-4.1-nano"), Some("gpt-4.1-nano"));
        assert_eq!(key_for("gpt-4.1"), Some("gpt-4.1"));
        assert_eq!(key_for("google/gemini-2.5-flash-lite"), Some("gemini-2.5-flash-lite"));
        assert_eq!(key_for("gemini-2.5-flash-preview-05-20"), Some("gemini-2.5-flash"));
        assert_eq!(key_for("models/gemini-2.0-flash-001"), Some("gemini-2.0-flash"));
        assert_eq!(key_for("gemini-2.0-flash-lite"), Some("gemini-2.0-flash-lite"));
        assert_eq!(key_for("gemini-3-flash-preview"), Some("gemini-3-flash"));
        assert_eq!(key_for("gemini-3.1-pro-preview"), Some("gemini-3.1-pro"));
        assert_eq!(key_for("o3-mini"), Some("o3-mini"));
        assert_eq!(key_for("o4-mini-2025-04-16"), Some("o4-mini"));
        assert_eq!(key_for("claude-sonnet-4-20250514"), Some("claude-sonnet-4"));
        assert_eq!(key_for("anthropic/claude-opus-4.6"), Some("claude-opus-4-6"));
        assert_eq!(key_for("claude-opus-4-1-20250805"), Some("claude-opus-4"));
        assert_eq!(key_for("claude-haiku-4-5-20251001"), Some("claude-haiku-4-5"));
        assert_eq!(key_for("GPT-4o-Mini"), Some("gpt-4o-mini"));
    }

    #[test]
    fn keys_match_whole_segments_only() {
        // "o1" and "o3" are inside other names; they must not price them.
        assert_eq!(key_for("gpt-4o1-experimental"), None);
        assert_eq!(key_for("pro3-mini"), None);
        assert_eq!(key_for("chatgpt-4o-latest"), None);
    }

    #[test]
    fn unknown_models_have_no_price() {
        assert_eq!(price("llama3.1:8b", &usage(1000, 1000)), None);
        assert_eq!(price("", &usage(1, 1)), None);
        assert_eq!(key_for("mistral-large-latest"), None);
    }

    #[test]
    fn cost_is_tokens_times_the_rate_per_thousand() {
        // gpt-4o-mini: 0.00015 in, 0.0006 out.
        assert_eq!(price("gpt-4o-mini", &usage(2000, 500)), Some(0.0006));
        // gpt-4o would have been 0.01: the specific key matters.
        assert_eq!(price("gpt-4o", &usage(2000, 500)), Some(0.01));
        assert_eq!(price("gemini-2.0-flash", &usage(1234, 567)), Some(0.0003502));
        assert_eq!(price("gemini-2.0-flash", &usage(0, 0)), Some(0.0));
        assert_eq!(price("text-embedding-3-small", &usage(1000, 0)), Some(0.00002));
    }

    #[test]
    fn a_cost_reported_by_the_provider_wins() {
        let reported = Usage { cost_usd: Some(0.0123), ..usage(1000, 1000) };
        assert_eq!(price("gpt-4o", &reported), Some(0.0123));
        // Even for a model the table does not know (OpenRouter routes to many).
        assert_eq!(price("meta-llama/llama-3.3-70b-instruct", &reported), Some(0.0123));
        // A nonsensical report is ignored.
        let bogus = Usage { cost_usd: Some(f64::NAN), ..usage(1000, 0) };
        assert_eq!(price("gpt-4o-mini", &bogus), Some(0.00015));
    }

    #[test]
    fn every_key_is_lower_case_and_listed_once() {
        let mut keys: Vec<&str> = TABLE.iter().map(|(k, _, _)| *k).collect();
        assert!(keys.iter().all(|k| *k == k.to_ascii_lowercase()));
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), TABLE.len());
        // Each key prices itself.
        for (k, _, _) in TABLE {
            assert_eq!(key_for(k), Some(*k));
        }
    }
}
