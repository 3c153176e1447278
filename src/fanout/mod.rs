//! The fan-out engines: what a command does on this node and every peer, returned as typed
//! per-node results for the report layer to print. [`tokens`] puts and removes challenge tokens
//! and self-checks them; [`certs`] installs a certificate version everywhere, copies the renewal
//! config to standbys and checks what every node serves.
//!
//! Every engine answers "this node, then every peer in config order, one row each"; that order
//! is built here, once.

use std::time::Duration;

use crate::config::Config;
use crate::fleet::PeerOutcome;
use crate::ssh::PeerError;

pub mod batch;
pub mod certs;
pub mod coalesce;
pub mod held;
pub mod plan;
pub mod rollout;
pub mod tokens;

/// One node's result in a fan-out.
#[derive(Debug)]
pub struct NodeResult<T> {
    /// Node name.
    pub node: String,
    /// Failures on optional nodes only warn.
    pub optional: bool,
    /// The node's HTTPS address (for the served-certificate check).
    pub https: String,
    /// What happened there.
    pub result: T,
    /// Time taken on this node, connection included.
    pub elapsed: Duration,
    /// How a peer was reached (None: this node, no SSH).
    pub ssh: Option<crate::fleet::SshDetail>,
}

/// This node's result first, then one per peer outcome (in the order `fleet` returned them,
/// which is config order), each peer's raw result turned into `T` by `map`.
pub fn this_then_peers<R, T>(
    config: &Config,
    local: T,
    local_elapsed: Duration,
    remote: Vec<PeerOutcome<R>>,
    mut map: impl FnMut(&crate::config::Peer, Result<R, PeerError>) -> T,
) -> Vec<NodeResult<T>> {
    let mut rows = vec![NodeResult {
        node: config.node_name(),
        optional: false,
        https: config.https.clone(),
        result: local,
        elapsed: local_elapsed,
        ssh: None,
    }];
    for outcome in remote {
        rows.push(NodeResult {
            node: outcome.peer.name.clone(),
            optional: outcome.peer.optional,
            https: outcome.peer.https_addr(),
            result: map(&outcome.peer, outcome.result),
            elapsed: outcome.elapsed,
            ssh: Some(outcome.ssh),
        });
    }
    rows
}
