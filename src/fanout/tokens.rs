//! The token engine, shared by `auth`, `cleanup`, `issue` and `doctor`: put or remove a token on this node
//! and every managed peer, and self-check that every node serves it.

use std::time::{Duration, Instant};

use crate::check::{self, CheckFailure, Expectation, NoAnswer, Target, Verdict};
use crate::config::{Config, Mode};
use crate::holder::RouteProof;
use crate::names::{Domain, KeyAuthorization, Token};
use crate::ssh::PeerError;
use crate::tokens::TokenStore;
use crate::wire::Request;

use super::{this_then_peers, NodeResult};

/// Why a token step failed on one node.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// This node's own token store.
    #[error("{0}")]
    Local(#[from] crate::Error),
    /// A peer, typed as the fleet reported it.
    #[error("{0}")]
    Peer(#[from] PeerError),
}

/// What happened on one node.
pub type NodeReport = NodeResult<Result<(), TokenError>>;

impl NodeReport {
    /// Prints a failure as an error (required node) or a warning (optional node).
    pub fn print_failure(&self, what: &str) {
        if let Err(why) = &self.result {
            if self.optional {
                crate::warn!("{}: {what} failed (optional node): {why}", self.node);
            } else {
                crate::error!("{}: {what} failed: {why}", self.node);
            }
        }
    }
}

/// Token request for every node.
pub enum TokenOp<'a> {
    /// Write the token with this content.
    Put(&'a Token, &'a KeyAuthorization),
    /// Remove the token.
    Remove(&'a Token),
}

/// Applies `op` on this node and, concurrently, on every managed peer. In stateless mode
/// nothing is written anywhere: the nodes compute the answer themselves.
pub async fn apply_everywhere(config: &Config, op: TokenOp<'_>) -> Vec<NodeReport> {
    apply_everywhere_proving(config, op, &[]).await.0
}

/// [`apply_everywhere`], and when a warm holder carries the write, its route proofs for
/// `domains` ([`crate::holder::route`]), made while the write travels.
async fn apply_everywhere_proving(
    config: &Config,
    op: TokenOp<'_>,
    domains: &[Domain],
) -> (Vec<NodeReport>, Vec<RouteProof>) {
    if config.mode == Mode::Stateless {
        return (Vec::new(), Vec::new());
    }
    let peers: Vec<_> = config.managed_peers().cloned().collect();
    let request = match &op {
        TokenOp::Put(token, ka) => Request::PutToken {
            token: (*token).clone(),
            key_authorization: (*ka).clone(),
        },
        TokenOp::Remove(token) => Request::RemoveToken {
            token: (*token).clone(),
        },
    };
    let remote =
        super::held::run_proving(&config.ssh, &peers, std::slice::from_ref(&request), domains);
    let start = Instant::now();
    let store = TokenStore::new(&config.webroot);
    let local = match op {
        TokenOp::Put(token, ka) => store.put(token, ka),
        TokenOp::Remove(token) => store.remove(token),
    };
    let local_elapsed = start.elapsed();
    let (remote, proofs) = remote.await;
    let reports = this_then_peers(
        config,
        local.map(|_| ()).map_err(TokenError::from),
        local_elapsed,
        remote,
        |_, result| result.map(|_| ()).map_err(TokenError::from),
    );
    (reports, proofs)
}

/// Every node the self-check visits: this one, then every peer (managed or check-only),
/// except those named in `skip` (they already failed and were reported).
pub fn targets(config: &Config, skip: &[String]) -> Vec<Target> {
    let mut targets = vec![Target {
        node: config.node_name(),
        http: config.http.clone(),
        https: config.https.clone(),
        optional: false,
    }];
    targets.extend(config.peers.iter().map(|p| Target {
        node: p.name.clone(),
        http: p.http_addr(),
        https: p.https_addr(),
        optional: p.optional,
    }));
    targets.retain(|t| !skip.contains(&t.node));
    targets
}

/// Self-checks every node for every expectation within `[check] timeout`; prints one line per
/// failure and returns whether every required node passed.
pub async fn self_check(config: &Config, expectations: &[Expectation], skip: &[String]) -> bool {
    self_check_verdicts(config, expectations, skip).await.0
}

/// [`self_check`], also returning every verdict (for a per-node report).
async fn self_check_verdicts(
    config: &Config,
    expectations: &[Expectation],
    skip: &[String],
) -> (bool, Vec<Verdict>) {
    let verdicts =
        check::check_all(&targets(config, skip), expectations, config.check.timeout).await;
    log_verdicts(verdicts)
}

/// [`self_check_verdicts`], except for the (node, expectation) pairs in `proven`: their route
/// was proven by the holder's probe and their token write acknowledged, so their verdict is
/// that proof (see [`crate::holder::route`] for why that is enough).
async fn self_check_unproven(
    config: &Config,
    expectations: &[Expectation],
    skip: &[String],
    proven: &[Proven],
) -> (bool, Vec<Verdict>) {
    let mut slots = Vec::new();
    let mut unproven = Vec::new();
    for target in targets(config, skip) {
        for exp in expectations {
            let proof = proven
                .iter()
                .find(|p| p.node == target.node && p.domain == exp.domain && p.token == exp.token);
            match proof {
                Some(p) => {
                    crate::verbose!(
                        "{}: route for {} proven by the holder's probe in {} ms, token {} written",
                        target.node,
                        exp.domain,
                        p.elapsed_ms,
                        exp.token
                    );
                    slots.push(Some(Verdict {
                        target: target.clone(),
                        domain: exp.domain.clone(),
                        result: Ok(()),
                        elapsed: Duration::from_millis(p.elapsed_ms),
                        attempts: 1,
                    }));
                }
                None => {
                    slots.push(None);
                    unproven.push((target.clone(), exp.clone()));
                }
            }
        }
    }
    let keys: Vec<(Target, Domain)> = unproven
        .iter()
        .map(|(t, e)| (t.clone(), e.domain.clone()))
        .collect();
    let mut checked: Vec<Option<Verdict>> = check::check_pairs(unproven, config.check.timeout)
        .await
        .into_iter()
        .map(Some)
        .collect();
    // Matched by node and name, not by position: a check task that died leaves a gap, which
    // must not shift the other verdicts onto the wrong nodes, and is a failure, not a pass.
    let mut keys = keys.into_iter();
    let verdicts = slots
        .into_iter()
        .filter_map(|slot| {
            slot.or_else(|| {
                let (target, domain) = keys.next()?;
                let found = checked
                    .iter_mut()
                    .find(|v| {
                        v.as_ref()
                            .is_some_and(|v| v.target.node == target.node && v.domain == domain)
                    })
                    .and_then(Option::take);
                Some(found.unwrap_or_else(|| Verdict {
                    target,
                    domain,
                    result: Err(CheckFailure::Unreachable {
                        cause: NoAnswer::Other,
                        message: "internal error: the self-check did not finish".into(),
                    }),
                    elapsed: Duration::ZERO,
                    attempts: 0,
                }))
            })
        })
        .collect();
    log_verdicts(verdicts)
}

/// A (node, domain, token) whose self-check the holder's route proof stands for.
struct Proven {
    node: String,
    domain: Domain,
    token: Token,
    elapsed_ms: u64,
}

/// One line per verdict (verbose for a pass, error or warning for a failure); whether every
/// required node passed.
fn log_verdicts(verdicts: Vec<Verdict>) -> (bool, Vec<Verdict>) {
    let mut ok = true;
    for v in &verdicts {
        match &v.result {
            Ok(()) => crate::verbose!(
                "{}: serves the token for {} (self-check {} ms, {} attempt{})",
                v.target.node,
                v.domain,
                v.elapsed.as_millis(),
                v.attempts,
                if v.attempts == 1 { "" } else { "s" }
            ),
            Err(why) if v.target.optional => {
                crate::warn!(
                    "{}: self-check for {} failed (optional node): {why}",
                    v.target.node,
                    v.domain
                )
            }
            Err(why) => {
                ok = false;
                crate::error!(
                    "{}: self-check for {} failed: {why}",
                    v.target.node,
                    v.domain
                );
            }
        }
    }
    (ok, verdicts)
}

/// Puts the token everywhere and self-checks it; returns (every required node ok, nodes that
/// hold the token).
pub async fn publish_and_check(
    config: &Config,
    expectations: &[Expectation],
) -> (bool, Vec<String>) {
    let published = publish_and_check_rows(config, expectations).await;
    (published.ok, published.holders)
}

/// Everything [`publish_and_check_rows`] saw, for a per-node report.
#[derive(Debug)]
pub struct Published {
    /// Every required node holds and serves every token.
    pub ok: bool,
    /// Nodes that hold the token.
    pub holders: Vec<String>,
    /// Every write: this node, then every managed peer, per token (none in stateless mode).
    pub writes: Vec<NodeReport>,
    /// Every self-check verdict (nodes whose write failed are not checked).
    pub verdicts: Vec<Verdict>,
}

/// [`publish_and_check`], keeping every node's write and check.
pub async fn publish_and_check_rows(config: &Config, expectations: &[Expectation]) -> Published {
    publish(config, expectations, false).await
}

/// [`publish_and_check_rows`] for `auth`: when a warm holder carries the write, a node whose
/// route the holder proves for the domain while the write travels ([`crate::holder::route`])
/// and whose write it acknowledged is not fetched again; every other node is, as without a
/// holder. `issue`'s pre-flight and `doctor` keep the full check of their own tokens.
pub async fn publish_and_check_routed(config: &Config, expectations: &[Expectation]) -> Published {
    publish(config, expectations, true).await
}

async fn publish(config: &Config, expectations: &[Expectation], routed: bool) -> Published {
    let mut ok = true;
    let mut skip = Vec::new();
    let mut holders = Vec::new();
    let mut writes = Vec::new();
    let mut proven = Vec::new();
    for exp in unique_tokens(expectations) {
        let domains: Vec<Domain> = match routed {
            true => expectations
                .iter()
                .filter(|e| e.token == exp.token)
                .map(|e| e.domain.clone())
                .collect(),
            false => Vec::new(),
        };
        let op = TokenOp::Put(&exp.token, &exp.key_authorization);
        let (reports, proofs) = apply_everywhere_proving(config, op, &domains).await;
        for proof in proofs {
            let written = reports
                .iter()
                .any(|r| r.node == proof.node && r.result.is_ok());
            match proof.result {
                Ok(()) if written => proven.push(Proven {
                    node: proof.node,
                    domain: proof.domain,
                    token: exp.token.clone(),
                    elapsed_ms: proof.elapsed_ms,
                }),
                Ok(()) => {}
                Err(why) => crate::verbose!(
                    "{}: no route proof for {} ({why}): checking the token itself",
                    proof.node,
                    proof.domain
                ),
            }
        }
        for report in reports {
            match &report.result {
                Ok(()) => {
                    crate::verbose!(
                        "{}: token {} written in {:.0?}",
                        report.node,
                        exp.token,
                        report.elapsed
                    );
                    if !holders.contains(&report.node) {
                        holders.push(report.node.clone());
                    }
                }
                Err(_) => {
                    report.print_failure("writing the token");
                    ok &= report.optional;
                    skip.push(report.node.clone());
                }
            }
            writes.push(report);
        }
    }
    let (checked, verdicts) = self_check_unproven(config, expectations, &skip, &proven).await;
    Published {
        ok: ok && checked,
        holders,
        writes,
        verdicts,
    }
}

fn unique_tokens(expectations: &[Expectation]) -> Vec<&Expectation> {
    let mut seen: Vec<&Expectation> = Vec::new();
    for e in expectations {
        if !seen.iter().any(|s| s.token == e.token) {
            seen.push(e);
        }
    }
    seen
}

/// Removes a token everywhere; failures are warnings (a leftover token is harmless).
pub async fn remove_everywhere(config: &Config, token: &Token) {
    for report in apply_everywhere(config, TokenOp::Remove(token)).await {
        if let Err(why) = &report.result {
            crate::warn!("{}: removing token {token} failed: {why}", report.node);
        }
    }
}
