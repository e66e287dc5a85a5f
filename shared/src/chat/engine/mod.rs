//! The conversation engine's pure rules (SPEC §6): no I/O, plain values in, decisions out.
//!
//! - [`extract`]: the rule-based extractor that reads one inbound lead message.
//! - [`profile`]: what is known about the lead, and how a turn's extraction merges into it.
//! - [`state`]: the conversation states.
//! - [`policy`]: what Sofía may never say (credit promises, pie and instalment figures).
//! - [`turn`]: one turn — `plan` (what to do) and `reply` (what to say once it is done).
//! - `reply`: the local reply composer and its phrase banks (used by [`turn::reply`]).

pub mod extract;
pub mod policy;
pub mod profile;
mod reply;
pub mod state;
pub mod turn;

pub use profile::{Change, Profile, is_real_name, merge};
pub use state::ConversationState;
pub use turn::{Action, Booking, Identity, KbHit, Memory, Outcome, Plan, Reply, SlotOffer, TurnInput, plan, reply};
