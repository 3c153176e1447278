//! Fan-out: the same list of requests (or only the connection, for `warm`) to every managed
//! peer, concurrently (bounded by `[ssh] concurrency`), one SSH channel per peer. A peer that fails never stops the others;
//! every peer gets a result that names it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Peer, SshConfig};
use crate::ssh::{AgentChannel, Connection, PeerError, Warmed};
use crate::wire::{Announced, Request, Response};

/// What happened on one peer: `T` is the responses of a request fan-out, or what `warm` found.
#[derive(Debug)]
pub struct PeerOutcome<T = Vec<Response>> {
    /// The peer as configured.
    pub peer: Peer,
    /// The responses in request order, or why the peer failed.
    pub result: Result<T, PeerError>,
    /// Wall time for this peer, connection included.
    pub elapsed: Duration,
    /// How the peer was reached and where the time went (for `-v` and the JSON reports).
    pub ssh: SshDetail,
}

/// How one peer was reached: the destination, whether the shared connection was reused, and
/// the time to get a connection and to exchange the requests. A step that never ran is None.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SshDetail {
    /// `user@host:port`.
    pub destination: String,
    /// The shared connection was already up (true) or was started (false).
    pub reused: Option<bool>,
    /// Milliseconds to get the connection (the key exchange when it was started).
    pub connect_ms: Option<u64>,
    /// Milliseconds from starting the agent to its last answer.
    pub exchange_ms: Option<u64>,
}

impl<T> PeerOutcome<T> {
    /// Whether a failure here should fail the command (required peers) or only warn.
    pub fn is_required_failure(&self) -> bool {
        self.result.is_err() && !self.peer.optional
    }
}

/// Runs `hello` and then `requests` on every peer in `peers`. Results come back in `peers` order.
pub async fn run(ssh: &SshConfig, peers: &[Peer], requests: &[Request]) -> Vec<PeerOutcome> {
    let requests = Arc::new(requests.to_vec());
    each_peer(ssh, peers, move |ssh, peer| {
        let requests = requests.clone();
        async move {
            let mut detail = SshDetail::default();
            let result = on_peer(&ssh, &peer, &requests, &mut detail).await;
            (result, detail)
        }
    })
    .await
}

/// Opens one agent session per peer in `peers` (concurrently, bounded by `[ssh] concurrency`),
/// says `hello`, and hands the session and what the agent announced to `work`, which owns it
/// from there (a batch of many requests, streamed one by one). Results come back in `peers`
/// order.
pub async fn sessions<T, F, Fut>(ssh: &SshConfig, peers: &[Peer], work: F) -> Vec<PeerOutcome<T>>
where
    T: Send + 'static,
    F: Fn(Peer, AgentChannel, Announced) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, PeerError>> + Send + 'static,
{
    sessions_telling(ssh, peers, work, |_, _| {}).await
}

/// [`sessions`], and `unreached` is told at once about a peer whose session never got to
/// `work` (no connection, no agent, no `hello`): a fleet-wide push waits for every peer's
/// word and must not wait for one that will never speak.
pub async fn sessions_telling<T, F, Fut, U>(
    ssh: &SshConfig,
    peers: &[Peer],
    work: F,
    unreached: U,
) -> Vec<PeerOutcome<T>>
where
    T: Send + 'static,
    F: Fn(Peer, AgentChannel, Announced) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, PeerError>> + Send + 'static,
    U: Fn(&Peer, &PeerError) + Clone + Send + Sync + 'static,
{
    each_peer(ssh, peers, move |ssh, peer| {
        let work = work.clone();
        let unreached = unreached.clone();
        async move {
            let mut detail = SshDetail::default();
            let start = Instant::now();
            let conn = match Connection::open(&ssh, &peer).await {
                Ok(conn) => conn,
                Err(e) => {
                    unreached(&peer, &e);
                    return (Err(e), detail);
                }
            };
            detail.connect_ms = Some(millis(start.elapsed()));
            detail.reused = Some(conn.warmed() == Warmed::Reused);
            let start = Instant::now();
            let result = async {
                let opened = async {
                    let mut agent = conn.agent().await?;
                    let announced = Announced::of(&agent.hello().await?);
                    Ok::<_, PeerError>((agent, announced))
                };
                let (agent, announced) = match opened.await {
                    Ok(opened) => opened,
                    Err(e) => {
                        unreached(&peer, &e);
                        return Err(e);
                    }
                };
                work(peer.clone(), agent, announced).await
            }
            .await;
            detail.exchange_ms = Some(millis(start.elapsed()));
            (result, detail)
        }
    })
    .await
}

/// Opens (or refreshes) the shared connection to every peer in `peers`; nothing else.
pub async fn warm(ssh: &SshConfig, peers: &[Peer]) -> Vec<PeerOutcome<Warmed>> {
    each_peer(ssh, peers, |ssh, peer| async move {
        let start = Instant::now();
        let result = crate::ssh::warm(&ssh, &peer).await;
        let detail = SshDetail {
            reused: result.as_ref().ok().map(|w| *w == Warmed::Reused),
            connect_ms: Some(millis(start.elapsed())),
            ..SshDetail::default()
        };
        (result, detail)
    })
    .await
}

/// Runs `work` on every peer concurrently, at most `[ssh] concurrency` at once; a failing or
/// panicking peer never stops the others. Results come back in `peers` order.
async fn each_peer<T, F, Fut>(ssh: &SshConfig, peers: &[Peer], work: F) -> Vec<PeerOutcome<T>>
where
    T: Send + 'static,
    F: Fn(Arc<SshConfig>, Peer) -> Fut,
    Fut: std::future::Future<Output = (Result<T, PeerError>, SshDetail)> + Send + 'static,
{
    let ssh = Arc::new(ssh.clone());
    let limit = Arc::new(Semaphore::new(ssh.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (index, peer) in peers.iter().cloned().enumerate() {
        let limit = limit.clone();
        let job = work(ssh.clone(), peer.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let start = Instant::now();
            let (result, ssh) = job.await;
            (
                index,
                PeerOutcome {
                    peer,
                    result,
                    elapsed: start.elapsed(),
                    ssh,
                },
            )
        });
    }
    let mut outcomes: Vec<Option<PeerOutcome<T>>> = peers.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, outcome)) = joined {
            outcomes[index] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .zip(peers)
        .map(|(o, peer)| {
            let mut o = o.unwrap_or_else(|| PeerOutcome {
                peer: peer.clone(),
                result: Err(PeerError::Agent("internal error: task panicked".into())),
                elapsed: Duration::ZERO,
                ssh: SshDetail::default(),
            });
            o.ssh.destination = crate::ssh::destination(&ssh, peer);
            o
        })
        .collect()
}

/// The requests on one peer; `detail` gets the connection and exchange times as they happen,
/// so a failure still reports how far it got.
async fn on_peer(
    ssh: &SshConfig,
    peer: &Peer,
    requests: &[Request],
    detail: &mut SshDetail,
) -> Result<Vec<Response>, PeerError> {
    let start = Instant::now();
    let conn = Connection::open(ssh, peer).await?;
    detail.connect_ms = Some(millis(start.elapsed()));
    detail.reused = Some(conn.warmed() == Warmed::Reused);
    let start = Instant::now();
    let mut agent = conn.agent().await?;
    let result = async {
        if pipelined(requests) {
            // One round trip instead of two: the agent answers in order, and a token op is
            // harmless on an agent of another version (it refuses what it cannot parse).
            agent.send_hello().await?;
            agent.send(&requests[0]).await?;
            agent.receive_hello().await?;
            let mut responses = vec![agent.receive().await?];
            for request in &requests[1..] {
                responses.push(agent.request(request).await?);
            }
            Ok(responses)
        } else {
            agent.hello().await?;
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses.push(agent.request(request).await?);
            }
            Ok(responses)
        }
    }
    .await;
    detail.exchange_ms = Some(millis(start.elapsed()));
    // Every answer is in: let the channel wind down in the background instead of paying one
    // more round trip for the agent's exit before the command moves on (the self-check, say).
    tokio::spawn(agent.close());
    result
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether the first request may go out together with `hello`, before the agent has said which
/// protocol it speaks: only token writes and removals, never an install.
fn pipelined(requests: &[Request]) -> bool {
    matches!(
        requests.first(),
        Some(Request::PutToken { .. } | Request::RemoveToken { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Token;

    #[test]
    fn only_token_ops_go_out_before_hello_answers() {
        let token = Token::parse("tok").unwrap();
        assert!(pipelined(&[Request::RemoveToken {
            token: token.clone()
        }]));
        assert!(!pipelined(&[]));
        assert!(!pipelined(&[Request::Status {}]));
    }
}
