//! `noop`: a job that does nothing useful, for tests and benchmarks of the queue machinery. Its
//! handler (in the worker) can perform an idempotent effect, take time and fail on purpose.

use serde::{Deserialize, Serialize};

use super::Job;

/// A no-op job. Every field but `id` is optional and defaults to "off".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noop {
    pub id: u64,
    #[serde(default)]
    pub broker_id: Option<i64>,
    /// When set, the handler performs an effect of kind `noop` under this idempotency key.
    #[serde(default)]
    pub effect_key: Option<String>,
    /// Fail on purpose: `"transient"` (503), `"permanent"` (404) or `"panic"`.
    #[serde(default)]
    pub fail: Option<String>,
    /// How many attempts fail when `fail` is set; `None` means all of them.
    #[serde(default)]
    pub fail_attempts: Option<u32>,
    /// Time each attempt takes, in milliseconds.
    #[serde(default)]
    pub sleep_ms: Option<u64>,
    /// Count each attempt in the Redis hash `{prefix}:noop:runs` (field `id`), so tests can see
    /// duplicate deliveries that the effect's idempotency key would hide.
    #[serde(default)]
    pub count_runs: bool,
    /// Count each performance of the effect in the Redis hash `{prefix}:noop:effects` (field `id`):
    /// an external, non-idempotent side effect, so a test sees any effect performed twice.
    #[serde(default)]
    pub count_effects: bool,
    /// Lease of the effect's claim in milliseconds (default 60 s): how long a claim left by a killed
    /// worker blocks a re-run.
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

impl Noop {
    pub fn new(id: u64) -> Self {
        Self { id, ..Self::default() }
    }
}

impl Job for Noop {
    const QUEUE: &'static str = "noop";

    fn broker_id(&self) -> Option<i64> {
        self.broker_id
    }
}
