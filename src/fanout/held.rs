//! Token requests to every peer through the warm holder ([`crate::holder`]) when one runs,
//! else (or for the peers it could not serve) through plain connections ([`crate::fleet`]).
//! A holder that is gone or fails is one warning line; nothing is lost, the plain path runs.

use std::time::Instant;

use crate::config::{Peer, SshConfig};
use crate::fleet::{self, PeerOutcome, SshDetail};
use crate::holder::client::{ask, Asked};
use crate::holder::{HeldPeer, HeldResult, RouteProof};
use crate::names::Domain;
use crate::ssh::PeerError;
use crate::wire::{Request, Response};

/// Longest agent message passed on (as in [`crate::ssh`]).
const MAX_MESSAGE: usize = 2000;

/// Like [`fleet::run`], through the holder when it can. Results come back in `peers` order.
pub async fn run(ssh: &SshConfig, peers: &[Peer], requests: &[Request]) -> Vec<PeerOutcome> {
    run_proving(ssh, peers, requests, &[]).await.0
}

/// [`run`], and with a holder, its route proofs for `domains` ([`crate::holder::route`]),
/// made while the requests travel; none without a holder.
pub async fn run_proving(
    ssh: &SshConfig,
    peers: &[Peer],
    requests: &[Request],
    domains: &[Domain],
) -> (Vec<PeerOutcome>, Vec<RouteProof>) {
    let start = Instant::now();
    let (held, routes) = match ask(ssh, peers, requests, domains).await {
        Asked::NoHolder => return (fleet::run(ssh, peers, requests).await, Vec::new()),
        Asked::Failed(why) => {
            crate::warn!("{why}: using plain connections");
            return (fleet::run(ssh, peers, requests).await, Vec::new());
        }
        Asked::Replied(held, routes) => (held, routes),
    };
    (
        held_outcomes(ssh, peers, requests, held, start).await,
        routes,
    )
}

/// The holder's answers in `peers` order; a peer it could not serve goes plain (one warning).
async fn held_outcomes(
    ssh: &SshConfig,
    peers: &[Peer],
    requests: &[Request],
    mut held: Vec<HeldPeer>,
    start: Instant,
) -> Vec<PeerOutcome> {
    let elapsed = start.elapsed();
    crate::verbose!(
        "through the warm holder: {} peers answered in {elapsed:.0?}",
        held.len()
    );
    let mut outcomes: Vec<Option<PeerOutcome>> = Vec::with_capacity(peers.len());
    let mut plain = Vec::new();
    for peer in peers {
        let found = held.iter().position(|h| h.peer == peer.name);
        match found.map(|i| held.swap_remove(i).result) {
            Some(HeldResult::Answered(responses)) if responses.len() == requests.len() => {
                outcomes.push(Some(PeerOutcome {
                    peer: peer.clone(),
                    result: refusal_first(responses),
                    elapsed,
                    ssh: SshDetail {
                        destination: crate::ssh::destination(ssh, peer),
                        reused: Some(true),
                        connect_ms: Some(0),
                        exchange_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
                    },
                }));
            }
            other => {
                let why = match other {
                    Some(HeldResult::Unavailable(why)) => why,
                    Some(HeldResult::Answered(_)) => "wrong number of answers".into(),
                    None => "not held".into(),
                };
                crate::warn!(
                    "{}: the holder could not reach it ({}): using a plain connection",
                    peer.name,
                    crate::text::one_line(&why, MAX_MESSAGE)
                );
                outcomes.push(None);
                plain.push(peer.clone());
            }
        }
    }
    let mut plain_outcomes = fleet::run(ssh, &plain, requests).await.into_iter();
    outcomes
        .into_iter()
        .map(|o| o.or_else(|| plain_outcomes.next()))
        .map(|o| o.expect("one plain outcome per peer left to the plain path"))
        .collect()
}

/// The responses, or the first refusal among them as the plain path reports it.
fn refusal_first(responses: Vec<Response>) -> Result<Vec<Response>, PeerError> {
    for r in &responses {
        if let Response::Error { kind, message } = r {
            return Err(PeerError::Refused {
                kind: *kind,
                message: crate::text::one_line(message, MAX_MESSAGE),
            });
        }
    }
    Ok(responses)
}
