//! The holder process (`certherd hold`, started by `warm`): opens one agent session per peer,
//! says `ready` on stdout, then answers hooks on its socket until the watched process is gone,
//! it has idled for [`IDLE`] or lived for [`LIFETIME`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::route::{Routes, MAX_DOMAINS};
use super::session::Held;
use super::start::Watched;
use super::{forwardable, publishable, HeldReply, HeldRequest, IDLE, LIFETIME};
use crate::config::{Config, Peer};
use crate::ssh::{AgentChannel, Connection, PeerError};
use crate::wire::read_line_limited_async;

/// Runs the holder; exit code 0 whatever happens to the peers (the hooks fall back).
pub async fn run(config: &Config, watched: Watched) -> crate::error::Result<i32> {
    let peers: Vec<Peer> = config.managed_peers().cloned().collect();
    let dir = match super::dir(&config.ssh, &peers) {
        Ok(dir) => dir,
        Err(e) => {
            say(&format!("failed: {e}"));
            return Ok(crate::error::EXIT_OK);
        }
    };
    // One holder per directory, the newest: the one of an earlier run (or with sessions over
    // connections closed since) is asked to go first.
    let sock = dir.join("sock");
    let mut lock = crate::lockfile::try_lock(&dir.join("lock")).ok().flatten();
    if lock.is_none() {
        super::client::stop(&sock).await;
        lock = wait_for_lock(&dir.join("lock")).await;
    }
    let Some(_lock) = lock else {
        say("failed: another holder holds these peers and did not stop");
        return Ok(crate::error::EXIT_OK);
    };
    let held = open_all(config, &peers).await;
    let open = count_open(&held).await;
    let routes = Routes::prepare(config, &held).await;
    let listener = match bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            say(&format!("failed: cannot listen on {}: {e}", sock.display()));
            return Ok(crate::error::EXIT_OK);
        }
    };
    // For operators and tests: which process holds the sessions (kill it and the hooks go plain).
    let pid_file = dir.join("pid");
    let _ = std::fs::write(&pid_file, format!("{}\n", std::process::id()));
    say(&format!(
        "ready: {open} of {} peers held, {} nodes probed",
        peers.len(),
        routes.len()
    ));
    serve(&listener, &held, &routes, &watched).await;
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&pid_file);
    routes.remove(&held).await;
    for h in held.iter() {
        if let Some(channel) = h.1.lock().await.take() {
            channel.close().await;
        }
    }
    Ok(crate::error::EXIT_OK)
}

/// Tells `warm` (reading our stdout) how start-up went: a `down: ["peer", "why"]` line per
/// peer it could not open, then `ready: …` or `failed: …`. `warm` may have gone, so errors are
/// ignored (Rust ignores SIGPIPE: a closed pipe is an error here, not a death).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn wait_for_lock(path: &Path) -> Option<crate::lockfile::Lock> {
    // Bounded: the holder asked to stop closes its sessions first.
    for _ in 0..30 {
        if let Ok(Some(lock)) = crate::lockfile::try_lock(path) {
            return Some(lock);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Opens a session to every peer concurrently (connection, agent, `hello`): whatever the first
/// use of a connection costs is paid here, while certbot talks to the CA.
async fn open_all(config: &Config, peers: &[Peer]) -> Vec<Held> {
    let mut tasks = JoinSet::new();
    for (index, peer) in peers.iter().cloned().enumerate() {
        let ssh = config.ssh.clone();
        tasks.spawn(async move {
            let channel = match open(&ssh, &peer).await {
                Ok(c) => Some(c),
                Err(e) => {
                    // `warm` prints it as its warning for this peer, as without the holder.
                    let down = serde_json::to_string(&(&peer.name, e.to_string()));
                    say(&format!("down: {}", down.unwrap_or_default()));
                    None
                }
            };
            (index, Arc::new((peer, Mutex::new(channel))))
        });
    }
    let mut held: Vec<Option<Held>> = peers.iter().map(|_| None).collect();
    while let Some(Ok((index, h))) = tasks.join_next().await {
        held[index] = Some(h);
    }
    held.into_iter()
        .zip(peers)
        .map(|(h, p)| h.unwrap_or_else(|| Arc::new((p.clone(), Mutex::new(None)))))
        .collect()
}

async fn open(ssh: &crate::config::SshConfig, peer: &Peer) -> Result<AgentChannel, PeerError> {
    let conn = Connection::open(ssh, peer).await?;
    let mut channel = conn.agent().await?;
    channel.hello().await?;
    Ok(channel)
}

async fn count_open(held: &[Held]) -> usize {
    let mut n = 0;
    for h in held {
        if h.1.lock().await.is_some() {
            n += 1;
        }
    }
    n
}

/// Binds the socket 0600 (the directory is 0700 already; both, so neither alone is trusted).
fn bind(sock: &Path) -> std::io::Result<UnixListener> {
    // The lock is ours: a socket left here is a dead holder's.
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock)?;
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers one client at a time (certbot runs its hooks one after the other) until the end:
/// the watched process is gone, [`IDLE`] or [`LIFETIME`] passed, a `stop` or a SIGTERM came.
async fn serve(listener: &UnixListener, held: &[Held], routes: &Routes, watched: &Watched) {
    let born = Instant::now();
    let mut last = Instant::now();
    let uid = nix::unistd::getuid().as_raw();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        if !watched.alive() || last.elapsed() > IDLE || born.elapsed() > LIFETIME {
            return;
        }
        let terminated = async {
            match term.as_mut() {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        };
        let stream = tokio::select! {
            _ = terminated => return,
            accepted = tokio::time::timeout(Duration::from_millis(500), listener.accept()) => {
                match accepted {
                    Ok(Ok((stream, _))) => stream,
                    _ => continue,
                }
            }
        };
        // The socket is private already; a client of another uid is refused all the same.
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid => {}
            _ => continue,
        }
        // Bounded: a client that stalls must not hold the next hook.
        let answered =
            tokio::time::timeout(Duration::from_secs(120), answer(stream, held, routes)).await;
        if answered == Ok(Answered::Stop) {
            return;
        }
        last = Instant::now();
    }
}

/// What an answered client asked for.
#[derive(Debug, PartialEq, Eq)]
enum Answered {
    /// Anything but `stop` (a bad request included): keep serving.
    Served,
    /// `stop`: a newer holder takes over.
    Stop,
}

/// Reads one request line, forwards it to every held peer concurrently, writes the reply.
async fn answer(stream: UnixStream, held: &[Held], routes: &Routes) -> Answered {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut answered = Answered::Served;
    let reply = match read_line_limited_async(&mut reader, super::MAX_REQUEST_LINE).await {
        Ok(Some(line)) => match serde_json::from_slice::<HeldRequest>(&line) {
            Ok(HeldRequest::Forward { requests }) if forwardable(&requests) => {
                HeldReply::Done(routes.forward(held, requests).await)
            }
            Ok(HeldRequest::Forward { .. }) => {
                HeldReply::Refused("only put_token and remove_token are forwarded".into())
            }
            Ok(HeldRequest::Publish { requests, domains })
                if publishable(&requests) && domains.len() <= MAX_DOMAINS =>
            {
                let (peers, routes) = routes.publish(held, requests, &domains).await;
                HeldReply::Published { peers, routes }
            }
            Ok(HeldRequest::Publish { .. }) => HeldReply::Refused(format!(
                "publish takes put_token requests and at most {MAX_DOMAINS} domains"
            )),
            Ok(HeldRequest::Stop) => {
                answered = Answered::Stop;
                HeldReply::Done(Vec::new())
            }
            Err(e) => HeldReply::Refused(format!("bad request: {e}")),
        },
        _ => return answered,
    };
    if let Ok(mut line) = serde_json::to_vec(&reply) {
        line.push(b'\n');
        let _ = write.write_all(&line).await;
        let _ = write.shutdown().await;
    }
    answered
}
