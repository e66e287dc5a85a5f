//! `campaign_step`: run one step of a campaign for one lead (send a message, place a call, move a
//! stage), then schedule the next step after its delay.

use serde::{Deserialize, Serialize};

use super::Job;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignStep {
    pub broker_id: i64,
    pub campaign_id: i64,
    pub lead_id: i64,
    /// The `campaign_steps` row to run.
    pub step_id: i64,
}

impl CampaignStep {
    /// A step is performed once per lead, whatever the number of deliveries.
    pub fn effect_key(&self) -> String {
        format!("campaign:{}:step:{}:lead:{}", self.campaign_id, self.step_id, self.lead_id)
    }
}

impl Job for CampaignStep {
    const QUEUE: &'static str = "campaign_step";

    fn broker_id(&self) -> Option<i64> {
        Some(self.broker_id)
    }

    fn lead_id(&self) -> Option<i64> {
        Some(self.lead_id)
    }
}
