//! Route proofs: what lets `auth` through the holder skip the TCP connect and the wait for its
//! own token in the self-check (issue 25).
//!
//! The self-check's job is to catch a node that does not serve the challenge directory for a
//! domain (a misrouted vhost, a wrong webroot, a 403) before the CA tries. That is a property of
//! the node's web server and the domain, not of one token. So the holder, when it starts, puts
//! a random **probe** token through each held agent session (and into this node's own
//! webroot), keeps one HTTP/1.1 connection open to each such node, and removes the probe when
//! it exits. A hook then asks for the probe with `Host:` the domain over that connection, at
//! the same time as the real token is written: a node that serves the probe for the domain and
//! acknowledged the real token's write (the agent answers after the file is in place) serves
//! the real token too, from the same directory. One round trip instead of three.
//!
//! A node without a probe (its write failed, a check-only peer, stateless mode) or whose probe
//! answer is anything but the probe's content gets the full self-check of the real token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::{HeldPeer, HeldResult, RouteProof};
use crate::check::{self, CheckFailure, Expectation, Target};
use crate::config::{Config, Mode, Peer};
use crate::names::{Domain, KeyAuthorization, Token};
use crate::tokens::TokenStore;
use crate::wire::{Request, Response};

/// At most this many domains are proven per request (certbot's auth hook sends one).
pub const MAX_DOMAINS: usize = 100;

/// The probe token and its content: random, like an ACME token (43 characters of the token
/// alphabet), so that whatever location serves ACME tokens serves it too.
#[derive(Debug, Clone)]
pub struct Probe {
    token: Token,
    key_authorization: KeyAuthorization,
}

impl Probe {
    /// A fresh random probe.
    pub fn new() -> crate::error::Result<Probe> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let token = hex(&crate::fsx::random_bytes::<22>()?)[..43].to_owned();
        let thumb = hex(&crate::fsx::random_bytes::<22>()?)[..43].to_owned();
        let token = Token::parse(&token).map_err(|e| crate::Error::Input(e.to_string()))?;
        let key_authorization = KeyAuthorization::for_token(&token, &format!("{token}.{thumb}"))
            .map_err(|e| crate::Error::Input(e.to_string()))?;
        Ok(Probe {
            token,
            key_authorization,
        })
    }

    fn put(&self) -> Request {
        Request::PutToken {
            token: self.token.clone(),
            key_authorization: self.key_authorization.clone(),
        }
    }

    fn remove(&self) -> Request {
        Request::RemoveToken {
            token: self.token.clone(),
        }
    }
}

/// A node the probe was put on at start, and the client that keeps a connection to it.
struct Routed {
    target: Target,
    client: reqwest::Client,
    /// Whether the probe is there now: a cleanup takes it away (so that a finished run leaves
    /// no file behind), the next publish puts it back.
    placed: AtomicBool,
    /// This node itself (its probe is in its own webroot, not behind an agent).
    local: bool,
}

/// The probe and the nodes it is on.
pub struct Routes {
    probe: Option<Probe>,
    nodes: Vec<Routed>,
    /// The probe went into this node's own webroot.
    local: bool,
    /// This node's webroot.
    webroot: std::path::PathBuf,
}

impl Routes {
    /// Puts the probe on this node and through every held session, and opens a kept HTTP
    /// connection to each node that acknowledged it. Nothing in stateless mode (nothing is
    /// written there: `auth` checks every node itself). Failures only mean fewer proofs.
    pub async fn prepare(config: &Config, held: &[super::session::Held]) -> Routes {
        let mut routes = Routes {
            probe: None,
            nodes: Vec::new(),
            local: false,
            webroot: config.webroot.clone(),
        };
        if config.mode == Mode::Stateless {
            return routes;
        }
        let probe = match Probe::new() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("no route probe: {e}");
                return routes;
            }
        };
        let mut targets = Vec::new();
        match TokenStore::new(&config.webroot).put(&probe.token, &probe.key_authorization) {
            Ok(_) => {
                routes.local = true;
                targets.push(Target {
                    node: config.node_name(),
                    http: config.http.clone(),
                    https: config.https.clone(),
                    optional: false,
                });
            }
            Err(e) => eprintln!("this node: no route probe: {e}"),
        }
        let acked = super::session::forward(held, Arc::new(vec![probe.put()])).await;
        for (h, answer) in held.iter().zip(acked) {
            match answer.result {
                HeldResult::Answered(r)
                    if !r.iter().any(|r| matches!(r, Response::Error { .. })) =>
                {
                    targets.push(target_of(&h.0))
                }
                other => eprintln!("{}: no route probe: {other:?}", h.0.name),
            }
        }
        // The TCP connects are paid here, concurrently, while certbot talks to the CA.
        let mut tasks = JoinSet::new();
        let local = routes.local;
        for (index, target) in targets.into_iter().enumerate() {
            let token = probe.token.clone();
            tasks.spawn(async move {
                let client = check::kept_client().ok()?;
                let opened =
                    tokio::time::timeout(OPEN_TIMEOUT, check::open_kept(&client, &target, &token));
                match opened.await {
                    Ok(Ok(())) => {}
                    // Not fatal: the first proof opens the connection itself.
                    Ok(Err(e)) => eprintln!("{}: no kept HTTP connection yet: {e}", target.node),
                    Err(_) => eprintln!("{}: no kept HTTP connection yet: timed out", target.node),
                }
                let local = index == 0 && local;
                let placed = AtomicBool::new(true);
                Some((
                    index,
                    Routed {
                        target,
                        client,
                        placed,
                        local,
                    },
                ))
            });
        }
        let mut nodes = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Some(n)) = joined {
                nodes.push(n);
            }
        }
        nodes.sort_by_key(|(i, _)| *i);
        routes.nodes = nodes.into_iter().map(|(_, n)| n).collect();
        routes.probe = Some(probe);
        routes
    }

    /// Nodes the probe is on (for the `ready` line).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node has the probe.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A hook's token writes through `held`, and at the same time the route proofs for
    /// `domains` on every node whose probe is in place. Where a cleanup took the probe away,
    /// it goes out again in the same burst as the writes and is asked for once acknowledged.
    pub async fn publish(
        &self,
        held: &[super::session::Held],
        requests: Vec<Request>,
        domains: &[Domain],
    ) -> (Vec<HeldPeer>, Vec<RouteProof>) {
        let Some(probe) = &self.probe else {
            let peers = super::session::forward(held, Arc::new(requests)).await;
            return (peers, Vec::new());
        };
        let placed: Vec<&Routed> = self.placed(true);
        let missing: Vec<&Routed> = self.placed(false);
        if missing.is_empty() {
            let (peers, proofs) = tokio::join!(
                super::session::forward(held, Arc::new(requests)),
                self.prove(&placed, domains)
            );
            return (peers, proofs);
        }
        if missing.iter().any(|n| n.local) {
            let put = TokenStore::new(&self.webroot).put(&probe.token, &probe.key_authorization);
            self.mark(|n| n.local, put.is_ok());
        }
        let mut with_probe = vec![probe.put()];
        with_probe.extend(requests);
        let (mut peers, proofs) = tokio::join!(
            super::session::forward(held, Arc::new(with_probe)),
            self.prove(&placed, domains)
        );
        for p in &mut peers {
            if let HeldResult::Answered(responses) = &mut p.result {
                let first = (!responses.is_empty()).then(|| responses.remove(0));
                let acked = first.is_some_and(|r| !matches!(r, Response::Error { .. }));
                self.mark(|n| !n.local && n.target.node == p.peer, acked);
            }
        }
        let again: Vec<&Routed> = missing
            .into_iter()
            .filter(|n| n.placed.load(Ordering::SeqCst))
            .collect();
        let mut proofs = proofs;
        proofs.extend(self.prove(&again, domains).await);
        (peers, proofs)
    }

    /// A hook's forwarded requests through `held`. With removals (the cleanup hook) the probe
    /// goes too, in the same burst: the run's challenges are being cleaned up, and a certbot
    /// run that ends here leaves no file behind; a later publish puts it back.
    pub async fn forward(
        &self,
        held: &[super::session::Held],
        requests: Vec<Request>,
    ) -> Vec<HeldPeer> {
        let Some(probe) = &self.probe else {
            return super::session::forward(held, Arc::new(requests)).await;
        };
        let is_removal = requests
            .iter()
            .all(|r| matches!(r, Request::RemoveToken { .. }));
        if !is_removal || self.placed(true).is_empty() {
            return super::session::forward(held, Arc::new(requests)).await;
        }
        if self.placed(true).iter().any(|n| n.local) {
            let _ = TokenStore::new(&self.webroot).remove(&probe.token);
        }
        self.mark(|_| true, false);
        let mut with_probe = requests;
        with_probe.push(probe.remove());
        let mut peers = super::session::forward(held, Arc::new(with_probe)).await;
        for p in &mut peers {
            if let HeldResult::Answered(responses) = &mut p.result {
                responses.pop();
            }
        }
        peers
    }

    fn placed(&self, placed: bool) -> Vec<&Routed> {
        self.nodes
            .iter()
            .filter(|n| n.placed.load(Ordering::SeqCst) == placed)
            .collect()
    }

    fn mark(&self, which: impl Fn(&Routed) -> bool, placed: bool) {
        for n in self.nodes.iter().filter(|n| which(n)) {
            n.placed.store(placed, Ordering::SeqCst);
        }
    }

    /// Asks each of `nodes` for the probe with each of `domains` as the host, concurrently,
    /// over the kept connections. One proof per (node, domain) pair, in no particular order.
    async fn prove(&self, nodes: &[&Routed], domains: &[Domain]) -> Vec<RouteProof> {
        let Some(probe) = &self.probe else {
            return Vec::new();
        };
        let mut tasks = JoinSet::new();
        for node in nodes {
            for domain in domains {
                let exp = Expectation {
                    domain: domain.clone(),
                    token: probe.token.clone(),
                    key_authorization: probe.key_authorization.clone(),
                };
                let (target, client) = (node.target.clone(), node.client.clone());
                tasks.spawn(async move {
                    let start = Instant::now();
                    let result = fetch_probe(&target, &exp, &client).await;
                    RouteProof {
                        node: target.node,
                        domain: exp.domain,
                        result: result.map_err(|e| e.to_string()),
                        elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    }
                });
            }
        }
        let mut proofs = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(p) = joined {
                proofs.push(p);
            }
        }
        proofs
    }

    /// Removes the probe everywhere (bounded: each held exchange by the agents' own timeout).
    /// A probe left by a holder killed with SIGKILL is a file with random content in the
    /// challenge directory, like a token left by a killed hook.
    pub async fn remove(&self, held: &[super::session::Held]) {
        let Some(probe) = &self.probe else {
            return;
        };
        if self.local {
            let _ = TokenStore::new(&self.webroot).remove(&probe.token);
        }
        // Every session, not only those that took the probe at start: a later publish sends it
        // to all of them, and a removal of a file that is not there is a no-op.
        let _ = super::session::forward(held, Arc::new(vec![probe.remove()])).await;
    }
}

/// One attempt over the kept connection; when that connection turns out closed at once (the
/// web server's keep-alive timeout ran out between two hooks) one more, on a fresh one. All of
/// it within [`PROOF_TIMEOUT`]: a proof is a shortcut, and a node slow to give it gets the full
/// check instead of holding the hook longer.
async fn fetch_probe(
    target: &Target,
    exp: &Expectation,
    client: &reqwest::Client,
) -> Result<(), CheckFailure> {
    let attempts = async {
        let start = Instant::now();
        match check::fetch_over(target, exp, Some(client)).await {
            Err(CheckFailure::Unreachable { .. }) if start.elapsed() < STALE_CLOSE => {
                check::fetch_over(target, exp, Some(client)).await
            }
            other => other,
        }
    };
    tokio::time::timeout(PROOF_TIMEOUT, attempts)
        .await
        .unwrap_or_else(|_| {
            Err(CheckFailure::Unreachable {
                cause: check::NoAnswer::Other,
                message: format!("no route proof within {PROOF_TIMEOUT:?}"),
            })
        })
}

/// How long a route proof may take before the node gets the full check instead.
const PROOF_TIMEOUT: Duration = Duration::from_secs(5);
/// A kept connection the server had closed fails faster than this; a slower failure is the
/// node's own and is not tried again.
const STALE_CLOSE: Duration = Duration::from_secs(1);
/// How long opening a kept connection at start may take (it is only a head start: the first
/// proof opens it otherwise).
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

fn target_of(peer: &Peer) -> Target {
    Target {
        node: peer.name.clone(),
        http: peer.http_addr(),
        https: peer.https_addr(),
        optional: peer.optional,
    }
}
