//! The conversation states of SPEC §6 step 7 (reference §5.2, with its stuck machine fixed: the
//! state is derived every turn from what is known, see [`super::turn`]).
//!
//! `greeting` → `interest_check` → `data_collection` → `financial_qualification` → `scheduling` →
//! `completed`; `lost` from any state when the lead is disqualified or opts out.

use serde::{Deserialize, Serialize};

/// Where the conversation with one lead stands (`lead_metadata.conversation_state`, lower case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    /// No reply sent yet.
    Greeting,
    /// Sofía greeted and is learning who the lead is and what they look for.
    InterestCheck,
    /// The contact block: phone, email, comuna.
    DataCollection,
    /// Renta líquida and DICOM.
    FinancialQualification,
    /// Free slots offered; waiting for the lead to pick one.
    Scheduling,
    /// An appointment is booked.
    Completed,
    /// Disqualified (income, DICOM debt) or opted out.
    Lost,
}

impl ConversationState {
    pub const ALL: [ConversationState; 7] = [
        ConversationState::Greeting,
        ConversationState::InterestCheck,
        ConversationState::DataCollection,
        ConversationState::FinancialQualification,
        ConversationState::Scheduling,
        ConversationState::Completed,
        ConversationState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConversationState::Greeting => "greeting",
            ConversationState::InterestCheck => "interest_check",
            ConversationState::DataCollection => "data_collection",
            ConversationState::FinancialQualification => "financial_qualification",
            ConversationState::Scheduling => "scheduling",
            ConversationState::Completed => "completed",
            ConversationState::Lost => "lost",
        }
    }

    /// Reads a stored state in any letter case (the reference handed it to agents upper-cased).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for ConversationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_name_in_any_case() {
        for state in ConversationState::ALL {
            assert_eq!(ConversationState::parse(state.as_str()), Some(state));
            assert_eq!(ConversationState::parse(&state.as_str().to_uppercase()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(state.as_str()));
        }
        assert_eq!(ConversationState::parse(" Interest_Check "), Some(ConversationState::InterestCheck));
        assert_eq!(ConversationState::parse("reopen"), None);
        assert_eq!(ConversationState::parse(""), None);
    }
}
