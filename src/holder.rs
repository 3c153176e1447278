//! The warm holder (issue 25): a small process that `warm` starts for one certbot run. It keeps
//! one agent session open per managed peer and forwards the hooks' token requests over them, so
//! a token reaches every peer in about one round trip: no mux client, no agent start, no
//! `hello` per hook call.
//!
//! Security as for the rest of the fan-out: it runs as the account that ran `warm` (never root
//! on its own: `warm` has dropped to the letsencrypt dir's owner before), its socket is 0600 in
//! a 0700 directory under the control dir ([`crate::ssh::control_dir`]), it answers only
//! clients of its own uid (`SO_PEERCRED`), and it forwards only typed token requests
//! (`put_token`, `remove_token`): nothing from a request is executed. It exits when the
//! process it watches (certbot, or the `renew`/`issue` that runs certbot) is gone, after
//! [`IDLE`] without a request, or after [`LIFETIME`] at most: never a standing daemon.
//!
//! Every hook falls back to its plain connections when the holder is missing or fails.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Peer, SshConfig};
use crate::names::Domain;
use crate::ssh::PeerError;
use crate::wire::{Request, Response};

pub mod client;
pub mod route;
pub mod serve;
pub mod session;
pub mod start;

/// The holder exits after this long without a request.
pub const IDLE: Duration = Duration::from_secs(120);
/// The holder exits after this long, whatever happens (a certbot run is minutes at most).
pub const LIFETIME: Duration = Duration::from_secs(600);
/// Longest request line the holder reads (token ops are a few hundred bytes).
const MAX_REQUEST_LINE: usize = 64 * 1024;

/// What a client sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HeldRequest {
    /// A hook's requests for every peer the holder holds; only `put_token` and `remove_token`
    /// are forwarded ([`forwardable`]).
    Forward {
        /// The requests, in order.
        requests: Vec<Request>,
    },
    /// `auth`'s token write to every peer held, and at the same time the route proofs of
    /// [`route`] for these domains on every node probed.
    Publish {
        /// `put_token` requests only ([`publishable`]).
        requests: Vec<Request>,
        /// The names the CA will validate (at most [`route::MAX_DOMAINS`]).
        domains: Vec<Domain>,
    },
    /// A newer `warm` (another certbot run, or connections closed since) takes over: exit.
    Stop,
}

/// The holder's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldReply {
    /// One entry per peer the holder holds.
    Done(Vec<HeldPeer>),
    /// The answer to [`HeldRequest::Publish`].
    Published {
        /// One entry per peer the holder holds.
        peers: Vec<HeldPeer>,
        /// One per (probed node, domain); a node not listed has no proof.
        routes: Vec<RouteProof>,
    },
    /// The request was not one the holder forwards.
    Refused(String),
}

/// Whether `node` served the holder's probe token for `domain` ([`route`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteProof {
    /// The node's configured name (this node's own name for this node).
    pub node: String,
    /// The `Host` the probe was asked for with.
    pub domain: Domain,
    /// Ok when it answered with the probe's content, else what it did instead.
    pub result: Result<(), String>,
    /// From the request to the verdict.
    pub elapsed_ms: u64,
}

/// One peer's answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct HeldPeer {
    /// The peer's configured name.
    pub peer: String,
    /// The agent's responses, or why the held session could not carry them.
    pub result: HeldResult,
}

/// What became of one peer's requests.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldResult {
    /// The agent's responses, in request order (a refusal is a `Response::Error` among them).
    Answered(Vec<Response>),
    /// The session is broken or was never opened: the hook uses a plain connection instead.
    Unavailable(String),
}

/// Whether the holder forwards these requests: token writes and removals only.
pub fn forwardable(requests: &[Request]) -> bool {
    !requests.is_empty()
        && requests
            .iter()
            .all(|r| matches!(r, Request::PutToken { .. } | Request::RemoveToken { .. }))
}

/// Whether these requests may go with a [`HeldRequest::Publish`]: token writes only.
pub fn publishable(requests: &[Request]) -> bool {
    !requests.is_empty()
        && requests
            .iter()
            .all(|r| matches!(r, Request::PutToken { .. }))
}

/// The holder's private directory for this fan-out (the same SSH credentials and peers), made
/// 0700 under the control dir: one holder per config, and a changed peer list gets a fresh one.
pub fn dir(ssh: &SshConfig, peers: &[Peer]) -> Result<PathBuf, PeerError> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &ssh.user,
        &ssh.identity,
        &ssh.known_hosts,
        &ssh.kex_algorithms,
    )
        .hash(&mut h);
    for p in peers {
        (&p.name, &p.host, p.port).hash(&mut h);
    }
    let dir = crate::ssh::control_dir(ssh)?.join(format!("holder-{:016x}", h.finish()));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
        Err(e) => Err(PeerError::Connect(format!(
            "cannot create {}: {e}",
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Token;

    #[test]
    fn forwards_token_ops_only() {
        let token = Token::parse("tok").unwrap();
        assert!(forwardable(&[Request::RemoveToken { token }]));
        assert!(!forwardable(&[]));
        assert!(!forwardable(&[Request::Status {}]));
        assert!(!forwardable(&[Request::Hello { protocol: 1 }]));
    }
}
