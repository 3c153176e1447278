//! `[rollout]`: how a batch push (`sync`, and the batch deploys built on it) switches the
//! fleet — the canary count (see [`crate::fanout::rollout`]).

use serde::Deserialize;

/// `[rollout]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Canaries: the first N receiving peers (config order) switch first, and the others and
    /// this node only once each canary serves the new version over TLS. 0 (default): none.
    /// More than the peers receiving a lineage: every one of them is a canary.
    #[serde(default)]
    pub canary: usize,
}
