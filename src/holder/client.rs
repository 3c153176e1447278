//! The hook side: sends token requests through the holder when there is one.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{HeldPeer, HeldReply, HeldRequest, RouteProof};
use crate::config::{Peer, SshConfig};
use crate::names::Domain;
use crate::wire::{read_line_limited_async, Request, MAX_RESPONSE_LINE};

/// What asking the holder gave.
#[derive(Debug)]
pub enum Asked {
    /// No holder runs for these peers (no `warm` in this run, or it ended normally).
    NoHolder,
    /// A holder socket is there but the holder did not answer: use plain connections (warn).
    Failed(String),
    /// The holder's answer, one entry per peer it holds, and the route proofs it made.
    Replied(Vec<HeldPeer>, Vec<RouteProof>),
}

/// Sends `requests` through the holder for `peers`, if one runs; with `domains` (token writes
/// only), also asks for the route proofs of those names ([`super::route`]).
pub async fn ask(
    ssh: &SshConfig,
    peers: &[Peer],
    requests: &[Request],
    domains: &[Domain],
) -> Asked {
    if !super::forwardable(requests) {
        return Asked::NoHolder;
    }
    let Ok(dir) = super::dir(ssh, peers) else {
        return Asked::NoHolder;
    };
    let sock = dir.join("sock");
    if std::fs::symlink_metadata(&sock).is_err() {
        return Asked::NoHolder;
    }
    // The holder answers after every peer did: the agents' own timeout, and a margin.
    let limit = ssh.request_timeout * 2 + Duration::from_secs(5);
    let request = if domains.is_empty() || !super::publishable(requests) {
        HeldRequest::Forward {
            requests: requests.to_vec(),
        }
    } else {
        HeldRequest::Publish {
            requests: requests.to_vec(),
            domains: domains.to_vec(),
        }
    };
    match tokio::time::timeout(limit, exchange(&sock, &request)).await {
        Ok(Ok(HeldReply::Done(peers))) => Asked::Replied(peers, Vec::new()),
        Ok(Ok(HeldReply::Published { peers, routes })) => Asked::Replied(peers, routes),
        Ok(Ok(HeldReply::Refused(why))) => Asked::Failed(format!("the holder refused: {why}")),
        Ok(Err(e)) => {
            forget_if_dead(&dir);
            Asked::Failed(format!("the holder at {} failed: {e}", sock.display()))
        }
        Err(_) => Asked::Failed(format!(
            "the holder at {} did not answer within {limit:?}",
            sock.display()
        )),
    }
}

/// A holder that died without cleaning up (killed) leaves its socket: once nobody holds its
/// lock, the socket is removed, so only the first hook after its death warns.
fn forget_if_dead(dir: &Path) {
    if let Ok(Some(_lock)) = crate::lockfile::try_lock(&dir.join("lock")) {
        let _ = std::fs::remove_file(dir.join("sock"));
        let _ = std::fs::remove_file(dir.join("pid"));
    }
}

/// Asks the holder on `sock` (if any) to exit; bounded, and quiet: the caller waits for its
/// lock, which says when it is gone.
pub async fn stop(sock: &Path) {
    let _ = tokio::time::timeout(Duration::from_secs(2), exchange(sock, &HeldRequest::Stop)).await;
}

async fn exchange(sock: &Path, request: &HeldRequest) -> std::io::Result<HeldReply> {
    let stream = UnixStream::connect(sock).await?;
    // Our own 0700 directory; still, only a holder of our own uid is believed.
    let uid = nix::unistd::getuid().as_raw();
    if stream.peer_cred()?.uid() != uid {
        return Err(std::io::Error::other("the socket's owner is another uid"));
    }
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut reader = BufReader::new(read);
    // Every peer's response fits in MAX_RESPONSE_LINE; a reply carries one per peer.
    let limit = MAX_RESPONSE_LINE.saturating_mul(4);
    match read_line_limited_async(&mut reader, limit).await {
        Ok(Some(line)) => serde_json::from_slice(&line).map_err(std::io::Error::other),
        Ok(None) => Err(std::io::Error::other("closed without answering")),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}
