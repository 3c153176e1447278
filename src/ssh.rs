//! SSH to peers through the system `ssh` (via the `openssh` crate), with one shared connection
//! (a ControlMaster) per peer that outlives the process for `[ssh] persist`, so the second and
//! later hook calls of one certbot run skip the TCP, key-exchange and authentication round trips.
//!
//! Host keys are checked strictly against the configured known_hosts only; ssh never prompts
//! (BatchMode) and never reads the user's ~/.ssh/config. On top of a connection we start the
//! peer's forced command (`certherd agent`) and speak [`crate::wire`] over its stdin/stdout.

use std::hash::{Hash, Hasher};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use openssh::{Child, ChildStderr, ChildStdin, ChildStdout, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use crate::config::{Peer, SshConfig};

mod control_dir;
use crate::wire::{
    read_line_limited_async, LineError, Request, Response, MAX_RESPONSE_LINE, PROTOCOL_VERSION,
};
pub use control_dir::control_dir;

/// Why talking to one peer failed. Each is a one-line explanation naming the cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No SSH connection could be made (network, host key, authentication).
    #[error("ssh connection failed: {0}")]
    Connect(String),
    /// Connected, but the agent could not be started or talked to.
    #[error("agent: {0}")]
    Agent(String),
    /// No answer within the deadline.
    #[error("timed out after {0:?} {1}")]
    Timeout(Duration, &'static str),
    /// The agent answered with something that is not a valid response.
    #[error("bad response from agent: {0}")]
    Protocol(String),
    /// The agent refused or failed the request.
    #[error("agent refused: {message} ({kind:?})")]
    Refused {
        /// The agent's error class.
        kind: crate::wire::ErrorKind,
        /// The agent's message.
        message: String,
    },
}

/// Why ssh could not connect, from its own output (the only place it says so): the one place
/// that reads ssh's text, so that callers decide by this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCause {
    /// Host key unknown or changed.
    HostKey,
    /// Our key was refused.
    Denied,
    /// Nothing listens on the port.
    Refused,
    /// No answer within `ConnectTimeout`.
    TimedOut,
    /// The address is unreachable (`No route to host`, `Network is unreachable`).
    NoRoute,
    /// The host name does not resolve.
    Unresolved,
    /// Anything else.
    Other,
}

impl ConnectCause {
    /// Classifies ssh's output (a [`PeerError::Connect`] message).
    pub fn of(output: &str) -> Self {
        let text = output.to_lowercase();
        if text.contains("host key") {
            ConnectCause::HostKey
        } else if text.contains("permission denied") {
            ConnectCause::Denied
        } else if text.contains("connection refused") {
            ConnectCause::Refused
        } else if text.contains("timed out") || text.contains("timeout") {
            ConnectCause::TimedOut
        } else if text.contains("no route to host") || text.contains("network is unreachable") {
            ConnectCause::NoRoute
        } else if text.contains("could not resolve hostname") {
            ConnectCause::Unresolved
        } else {
            ConnectCause::Other
        }
    }
}

/// The common `ssh` options: strict host keys, our key only, no prompts, no user config.
fn ssh_options(config: &SshConfig, peer: &Peer) -> Vec<String> {
    let secs = config.connect_timeout.as_secs().max(1);
    let mut args: Vec<String> = vec!["-F".into(), "/dev/null".into()];
    for opt in [
        "BatchMode=yes".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        format!("UserKnownHostsFile={}", config.known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
        format!("IdentityFile={}", config.identity.display()),
        format!("ConnectTimeout={secs}"),
        "ServerAliveInterval=10".to_owned(),
        "ServerAliveCountMax=3".to_owned(),
        "ForwardAgent=no".to_owned(),
        "ForwardX11=no".to_owned(),
        "ClearAllForwardings=yes".to_owned(),
        "LogLevel=ERROR".to_owned(),
    ] {
        args.push("-o".into());
        args.push(opt);
    }
    if let Some(kex) = &config.kex_algorithms {
        // Names were checked at config load (no `,`, spaces or list modifiers in them).
        args.push("-o".into());
        args.push(format!("KexAlgorithms={}", kex.join(",")));
    }
    args.extend([
        "-p".into(),
        peer.port.to_string(),
        "-l".into(),
        config.user.clone(),
        "--".into(),
        peer.host.clone(),
    ]);
    args
}

/// A stable, short socket name per (peer, credentials): the same peer reached the same way
/// reuses the master; a changed key, known_hosts file or key exchange list gets a fresh one.
fn socket_path(dir: &Path, config: &SshConfig, peer: &Peer) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &config.user,
        &config.identity,
        &config.known_hosts,
        &peer.host,
        peer.port,
    )
        .hash(&mut h);
    // Hashed only when set, so that existing masters keep their names for the default.
    if let Some(kex) = &config.kex_algorithms {
        kex.hash(&mut h);
    }
    dir.join(format!("{:016x}", h.finish()))
}

/// What [`warm`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmed {
    /// A live master was there (asking it restarted its idle timer).
    Reused,
    /// A new master was started.
    Opened,
}

/// Makes sure the peer's shared connection is up: reuses a live master or starts one. Asking a
/// live master over its socket counts as a use, so it restarts ControlPersist's idle timer.
///
/// It also runs one agent session (`hello`) on it: the first session on a fresh master costs
/// about 30 ms more than later ones (issue 25), and `warm` runs where nobody waits.
pub async fn warm(config: &SshConfig, peer: &Peer) -> Result<Warmed, PeerError> {
    let conn = Connection::open(config, peer).await?;
    let mut agent = conn.agent().await?;
    let hello = agent.hello().await;
    agent.close().await;
    hello?;
    Ok(conn.warmed())
}

/// Reuses the live master on `sock` or starts one; says which.
async fn ensure_master(config: &SshConfig, peer: &Peer, sock: &Path) -> Result<Warmed, PeerError> {
    if master_alive(sock).await {
        return Ok(Warmed::Reused);
    }
    // Serialise start-up per socket across processes: two `ssh -M` on one path would leave the
    // loser running as an unshared background connection. A hook that arrives while `warm` is
    // mid-handshake waits here and then uses that master instead of paying a second handshake.
    let lock = lock_file(&sock.with_extension("lock")).await?;
    let warmed = if master_alive(sock).await {
        Warmed::Reused
    } else {
        let _ = std::fs::remove_file(sock);
        start_master(config, peer, sock, &sock.with_extension("log")).await?;
        Warmed::Opened
    };
    drop(lock);
    Ok(warmed)
}

/// A shared connection to one peer.
pub struct Connection {
    session: Arc<Session>,
    peer: String,
    request_timeout: Duration,
    warmed: Warmed,
}

/// The SSH destination of a peer as `-v` shows it: `user@host:port`.
pub fn destination(config: &SshConfig, peer: &Peer) -> String {
    format!("{}@{}:{}", config.user, peer.host, peer.port)
}

impl Connection {
    /// Reuses the peer's live master connection or starts one.
    pub async fn open(config: &SshConfig, peer: &Peer) -> Result<Connection, PeerError> {
        let dir = control_dir(config)?;
        let sock = socket_path(&dir, config, peer);
        let log = sock.with_extension("log");
        let warmed = ensure_master(config, peer, &sock).await?;
        Ok(Connection {
            warmed,
            // Sessions start over the mux protocol spoken directly (no `ssh -S` client process).
            session: Arc::new(Session::resume_mux(
                sock.into_boxed_path(),
                Some(log.into_boxed_path()),
            )),
            peer: peer.name.clone(),
            request_timeout: config.request_timeout,
        })
    }

    /// Whether the shared connection was already up (no key exchange) or had to be started.
    pub fn warmed(&self) -> Warmed {
        self.warmed
    }

    /// Starts the agent on the peer. The command we send is ignored by a forced command, but
    /// names the agent for installations without one.
    pub async fn agent(&self) -> Result<AgentChannel, PeerError> {
        let mut child = self
            .session
            .clone()
            .arc_command("certherd")
            .arg("agent")
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .map_err(|e| PeerError::Agent(format!("cannot start: {e}")))?;
        let stdin = child
            .stdin()
            .take()
            .ok_or_else(|| PeerError::Agent("no stdin".into()))?;
        let stdout = child
            .stdout()
            .take()
            .ok_or_else(|| PeerError::Agent("no stdout".into()))?;
        let stderr = child.stderr().take();
        Ok(AgentChannel {
            peer: self.peer.clone(),
            child,
            stdin,
            stdout: BufReader::with_capacity(64 * 1024, stdout),
            stderr,
            timeout: self.request_timeout,
        })
    }
}

/// Longest agent error message passed on (nginx -t output fits; a flood does not).
const MAX_MESSAGE: usize = 2000;

/// Asks the master over its control socket whether it is alive — the mux protocol spoken
/// directly (openssh's native-mux), so a warm call spawns no `ssh -O check` process per peer.
async fn master_alive(sock: &Path) -> bool {
    if !sock.exists() {
        return false;
    }
    let session = Session::resume_mux(sock.to_path_buf().into_boxed_path(), None);
    // A resumed session does not own the master: dropping it leaves the master running.
    matches!(
        tokio::time::timeout(Duration::from_secs(5), session.check()).await,
        Ok(Ok(()))
    )
}

async fn lock_file(path: &Path) -> Result<crate::lockfile::Lock, PeerError> {
    // Bounded wait: another process may be mid-handshake with the same peer.
    for _ in 0..300 {
        match crate::lockfile::try_lock(path) {
            Ok(Some(lock)) => return Ok(lock),
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(PeerError::Connect(e.to_string())),
        }
    }
    Err(PeerError::Timeout(
        Duration::from_secs(15),
        "waiting for another certherd to connect",
    ))
}

async fn start_master(
    config: &SshConfig,
    peer: &Peer,
    sock: &Path,
    log: &Path,
) -> Result<(), PeerError> {
    let _ = std::fs::remove_file(log);
    let persist = config.persist.as_secs().max(1);
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(["-M", "-f", "-N", "-E"])
        .arg(log)
        .arg("-S")
        .arg(sock)
        .args(["-o", &format!("ControlPersist={persist}")])
        .args(ssh_options(config, peer))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let limit = config.connect_timeout + Duration::from_secs(5);
    let status = match tokio::time::timeout(limit, cmd.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(PeerError::Connect(format!("cannot run ssh: {e}"))),
        Err(_) => return Err(PeerError::Timeout(limit, "connecting")),
    };
    if status.success() && sock.exists() {
        return Ok(());
    }
    let why = std::fs::read_to_string(log).unwrap_or_default();
    let why = why
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("ssh exited without a message")
        .trim();
    Err(PeerError::Connect(format!(
        "{}@{}:{}: {why}",
        config.user, peer.host, peer.port
    )))
}

/// A running agent on one peer.
pub struct AgentChannel {
    peer: String,
    child: Child<Arc<Session>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Option<ChildStderr>,
    timeout: Duration,
}

impl AgentChannel {
    /// The peer's name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends one request and reads its response, within the request timeout.
    pub async fn request(&mut self, request: &Request) -> Result<Response, PeerError> {
        self.send(request).await?;
        self.receive().await
    }

    /// Writes one request line without waiting for an answer (for pipelining: the agent
    /// answers requests in order, one line each).
    pub async fn send(&mut self, request: &Request) -> Result<(), PeerError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| PeerError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let write = async {
            self.stdin.write_all(&line).await?;
            self.stdin.flush().await
        };
        let result = match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            // The agent (or its session) was gone before our line arrived: the same failure as
            // reading nothing back, and worded so, whichever of the two happens first.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(PeerError::Agent(
                "closed the connection without answering".into(),
            )),
            Ok(Err(e)) => Err(PeerError::Agent(format!("sending request: {e}"))),
            Err(_) => Err(PeerError::Timeout(self.timeout, "sending to the agent")),
        };
        match result {
            Err(PeerError::Agent(msg)) => Err(PeerError::Agent(self.explain(msg).await)),
            other => other,
        }
    }

    /// Reads the next response line, within the request timeout.
    pub async fn receive(&mut self) -> Result<Response, PeerError> {
        let read = async {
            match read_line_limited_async(&mut self.stdout, MAX_RESPONSE_LINE).await {
                Ok(Some(line)) => serde_json::from_slice::<Response>(&line).map_err(|e| {
                    PeerError::Protocol(format!(
                        "{e} in {}",
                        crate::text::printable(&String::from_utf8_lossy(&line))
                    ))
                }),
                Ok(None) => Err(PeerError::Agent(
                    "closed the connection without answering".into(),
                )),
                Err(LineError::TooLong(n)) => Err(PeerError::Protocol(format!(
                    "response line longer than {n} bytes"
                ))),
                Err(LineError::Io(e)) => Err(PeerError::Agent(format!("reading response: {e}"))),
            }
        };
        let result = match tokio::time::timeout(self.timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(PeerError::Timeout(self.timeout, "waiting for the agent")),
        };
        match result {
            // The message is the peer's text: it reaches our stderr, certbot's log and alerts,
            // so it may neither break lines, carry terminal escapes nor flood.
            Ok(Response::Error { kind, message }) => Err(PeerError::Refused {
                kind,
                message: crate::text::one_line(&message, MAX_MESSAGE),
            }),
            Ok(r) => Ok(r),
            Err(PeerError::Agent(msg)) => Err(PeerError::Agent(self.explain(msg).await)),
            Err(e) => Err(e),
        }
    }

    /// How long one answer may take (`[ssh] request_timeout`).
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// The answer to a request the agent works on at length (a `commit` with `progress`):
    /// `working` lines in between each start the request timeout again, for at most `bound` in
    /// all and at most four lines a second of it (a flood is a protocol error).
    pub async fn receive_working(&mut self, bound: Duration) -> Result<Response, PeerError> {
        let start = tokio::time::Instant::now();
        let most = bound.as_secs().saturating_mul(4).saturating_add(16);
        let mut lines = 0u64;
        loop {
            match self.receive().await? {
                Response::Working if start.elapsed() > bound => {
                    return Err(PeerError::Timeout(bound, "waiting for the agent's commit"))
                }
                Response::Working if lines >= most => {
                    return Err(PeerError::Protocol(format!(
                        "more than {most} working lines within {bound:?}"
                    )))
                }
                Response::Working => lines += 1,
                answer => return Ok(answer),
            }
        }
    }

    /// Opens the conversation and checks the agent speaks our protocol.
    pub async fn hello(&mut self) -> Result<Response, PeerError> {
        self.send_hello().await?;
        self.receive_hello().await
    }

    /// Writes `hello` without waiting for its answer.
    pub async fn send_hello(&mut self) -> Result<(), PeerError> {
        self.send(&Request::Hello {
            protocol: PROTOCOL_VERSION,
        })
        .await
    }

    /// Reads the answer to `hello` and checks the agent speaks our protocol.
    pub async fn receive_hello(&mut self) -> Result<Response, PeerError> {
        let r = self.receive().await?;
        match &r {
            Response::Hello { protocol, .. } if *protocol == PROTOCOL_VERSION => Ok(r),
            Response::Hello { protocol, agent_version, .. } => Err(PeerError::Protocol(format!(
                "agent {} speaks protocol {protocol}, expected {PROTOCOL_VERSION}: install the same certherd version on every node",
                crate::text::printable(agent_version)
            ))),
            other => Err(PeerError::Protocol(format!(
                "expected hello, got {}",
                crate::text::one_line(&format!("{other:?}"), 200)
            ))),
        }
    }

    /// Adds what the remote side printed on stderr (e.g. `certherd: not found`) to a message.
    async fn explain(&mut self, msg: String) -> String {
        let Some(mut err) = self.stderr.take() else {
            return msg;
        };
        let mut buf = vec![0u8; 4096];
        let n = match tokio::time::timeout(Duration::from_millis(500), err.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            msg
        } else {
            format!("{msg}; remote said: {}", crate::text::printable(&text))
        }
    }

    /// Ends the conversation: closes stdin so the agent exits, and reaps the channel.
    pub async fn close(self) {
        let AgentChannel { child, stdin, .. } = self;
        drop(stdin);
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
}
