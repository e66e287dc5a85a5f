//! The conversation engine's pure rules (SPEC §6): no I/O, plain values in, decisions out.
//!
//! - [`extract`]: the rule-based extractor that reads one inbound lead message.

pub mod extract;
