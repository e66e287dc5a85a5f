//! The `llm_calls` cost ledger (reference §1.19, SPEC §6 step 8 and §12): one row per model call or
//! generated reply, written on the caller's connection so a turn's row commits with the turn.

use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};

use crate::entities::llm_calls;
use crate::error::Result;
use crate::integrations::llm::{CallRecord, CallType, Usage};

/// The local engine's model name in the ledger.
pub const LOCAL_MODEL: &str = "sofia-rules-v1";

/// The ledger record of a reply the local engine wrote: provider `local`, cost 0, tokens estimated
/// from the characters read (the inbound message and what the engine knew) and written.
pub fn local_reply(input_chars: usize, output_chars: usize, latency_ms: u64) -> CallRecord {
    let usage = Usage::estimate(input_chars, output_chars);
    CallRecord {
        provider: "local",
        model: LOCAL_MODEL.to_string(),
        call_type: CallType::Reply,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cost_usd: Some(0.0),
        latency_ms,
        error: None,
        used_fallback: false,
        estimated: usage.estimated,
    }
}

/// Writes one ledger row.
pub async fn record(
    db: &impl ConnectionTrait,
    broker_id: Option<i64>,
    lead_id: Option<i64>,
    call: &CallRecord,
    prompt_version_id: Option<i64>,
) -> Result<llm_calls::Model> {
    let clamp = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
    Ok(llm_calls::ActiveModel {
        broker_id: Set(broker_id),
        lead_id: Set(lead_id),
        provider: Set(call.provider.to_string()),
        model: Set(call.model.chars().take(100).collect()),
        call_type: Set(call.call_type.as_str().to_string()),
        input_tokens: Set(clamp(u64::from(call.input_tokens))),
        output_tokens: Set(clamp(u64::from(call.output_tokens))),
        estimated_cost_usd: Set(call.cost_usd),
        latency_ms: Set(clamp(call.latency_ms)),
        error: Set(call.error.clone()),
        fallback_used: Set(call.used_fallback),
        tokens_estimated: Set(call.estimated),
        prompt_version_id: Set(prompt_version_id),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_reply_costs_nothing_and_counts_tokens() {
        let r = local_reply(40, 81, 3);
        assert_eq!((r.provider, r.cost_usd, r.input_tokens, r.output_tokens), ("local", Some(0.0), 10, 21));
        assert_eq!(r.call_type.as_str(), "chat_response");
        assert!(r.estimated && r.error.is_none());
    }
}
