//! The held agent sessions, one per peer, and sending requests over all of them at once:
//! shared by the holder's serving loop and its route probes.

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::{HeldPeer, HeldResult};
use crate::config::Peer;
use crate::ssh::{AgentChannel, PeerError};
use crate::wire::{Request, Response};

/// One peer's held session; None once it broke (the hooks then use plain connections).
pub type Held = Arc<(Peer, Mutex<Option<AgentChannel>>)>;

/// Sends `requests` over every held session concurrently; one answer per session, in `held`
/// order. A session that breaks is closed and not used again.
pub async fn forward(held: &[Held], requests: Arc<Vec<Request>>) -> Vec<HeldPeer> {
    let mut tasks = JoinSet::new();
    for (index, h) in held.iter().cloned().enumerate() {
        let requests = requests.clone();
        tasks.spawn(async move {
            let mut slot = h.1.lock().await;
            let result = match slot.as_mut() {
                None => HeldResult::Unavailable("no held session".into()),
                Some(channel) => exchange(channel, &requests).await,
            };
            if matches!(result, HeldResult::Unavailable(_)) {
                // A broken session is not used again: the hooks go plain for this peer.
                if let Some(channel) = slot.take() {
                    tokio::spawn(channel.close());
                }
            }
            (
                index,
                HeldPeer {
                    peer: h.0.name.clone(),
                    result,
                },
            )
        });
    }
    let mut out: Vec<Option<HeldPeer>> = held.iter().map(|_| None).collect();
    while let Some(Ok((index, p))) = tasks.join_next().await {
        out[index] = Some(p);
    }
    out.into_iter()
        .zip(held)
        .map(|(p, h)| {
            p.unwrap_or_else(|| HeldPeer {
                peer: h.0.name.clone(),
                result: HeldResult::Unavailable("internal error: task panicked".into()),
            })
        })
        .collect()
}

/// All requests out in one write burst, then every answer: one round trip for the lot.
async fn exchange(channel: &mut AgentChannel, requests: &[Request]) -> HeldResult {
    for r in requests {
        if let Err(e) = channel.send(r).await {
            return HeldResult::Unavailable(e.to_string());
        }
    }
    let mut responses = Vec::with_capacity(requests.len());
    for _ in requests {
        match channel.receive().await {
            Ok(r) => responses.push(r),
            // A refusal is the agent's answer; the session is still good.
            Err(PeerError::Refused { kind, message }) => {
                responses.push(Response::Error { kind, message })
            }
            Err(e) => return HeldResult::Unavailable(e.to_string()),
        }
    }
    HeldResult::Answered(responses)
}
