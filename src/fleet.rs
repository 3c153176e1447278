//! Fan-out: the same list of requests to every managed peer, concurrently (bounded by
//! `[ssh] concurrency`), one SSH channel per peer. A peer that fails never stops the others;
//! every peer gets a result that names it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Peer, SshConfig};
use crate::protocol::{Request, Response};
use crate::ssh::{Connection, PeerError};

/// What happened on one peer.
#[derive(Debug)]
pub struct PeerOutcome {
    /// The peer as configured.
    pub peer: Peer,
    /// The responses in request order, or why the peer failed.
    pub result: Result<Vec<Response>, PeerError>,
    /// Wall time for this peer, connection included.
    pub elapsed: Duration,
}

impl PeerOutcome {
    /// Whether a failure here should fail the command (required peers) or only warn.
    pub fn is_required_failure(&self) -> bool {
        self.result.is_err() && !self.peer.optional
    }
}

/// Runs `hello` and then `requests` on every peer in `peers`. Results come back in `peers` order.
pub async fn run(ssh: &SshConfig, peers: &[Peer], requests: &[Request]) -> Vec<PeerOutcome> {
    let ssh = Arc::new(ssh.clone());
    let requests = Arc::new(requests.to_vec());
    let limit = Arc::new(Semaphore::new(ssh.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (index, peer) in peers.iter().cloned().enumerate() {
        let (ssh, requests, limit) = (ssh.clone(), requests.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let start = Instant::now();
            let result = on_peer(&ssh, &peer, &requests).await;
            (
                index,
                PeerOutcome {
                    peer,
                    result,
                    elapsed: start.elapsed(),
                },
            )
        });
    }
    let mut outcomes: Vec<Option<PeerOutcome>> = peers.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, outcome)) = joined {
            outcomes[index] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .zip(peers)
        .map(|(o, peer)| {
            o.unwrap_or_else(|| PeerOutcome {
                peer: peer.clone(),
                result: Err(PeerError::Agent("internal error: task panicked".into())),
                elapsed: Duration::ZERO,
            })
        })
        .collect()
}

async fn on_peer(
    ssh: &SshConfig,
    peer: &Peer,
    requests: &[Request],
) -> Result<Vec<Response>, PeerError> {
    let conn = Connection::open(ssh, peer).await?;
    let mut agent = conn.agent().await?;
    let result = async {
        agent.hello().await?;
        let mut responses = Vec::with_capacity(requests.len());
        for request in requests {
            responses.push(agent.request(request).await?);
        }
        Ok(responses)
    }
    .await;
    // Every answer is in: let the channel wind down in the background instead of paying one
    // more round trip for the agent's exit before the command moves on (the self-check, say).
    tokio::spawn(agent.close());
    result
}
