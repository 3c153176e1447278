//! The peer side: `certherd agent`, started by sshd as the forced command. It reads one JSON
//! request per line on stdin and answers one JSON line on stdout. Every path and command comes
//! from this node's own config; a request only ever names a token (or, later, a lineage).

use std::cell::RefCell;
use std::io::{BufReader, Write};

use crate::config::Config;
use crate::exec::Commands;
use crate::lineage::batch::Staged;
use crate::lineage::{InstallError, Layout, OnSplitBrain};
use crate::tokens::TokenStore;
use crate::wire::{
    parse_request, read_line_limited, CommitOutcome, Committed, ErrorKind, Installed, LineError,
    Request, Response, MAX_REQUEST_LINE, MAX_RESPONSE_LINE, OPS, PROTOCOL_VERSION,
};

/// Longest message per lineage in a `committed` answer of a few lineages; a larger commit
/// shortens each so that all of them take at most an eighth of the primary's response line
/// limit (1,024 lineages: 128 characters each), beside the lineages' names and versions.
const MAX_COMMIT_MESSAGE: usize = 1500;

/// The message length each of `count` lineages of one `committed` answer gets (see
/// [`MAX_COMMIT_MESSAGE`]).
fn commit_message_budget(count: usize) -> usize {
    (MAX_RESPONSE_LINE / 8 / count.max(1)).clamp(100, MAX_COMMIT_MESSAGE)
}

/// `sync` resolves a split brain, keeping the node's version aside; the others refuse it.
fn split_brain_rule(resolve: bool) -> OnSplitBrain {
    if resolve {
        OnSplitBrain::KeepAside
    } else {
        OnSplitBrain::Refuse
    }
}

/// The agent's state: what it may touch, from its own config.
pub struct Agent {
    node: String,
    standby: crate::standby::Policy,
    tokens: TokenStore,
    layout: Layout,
    commands: Commands,
    /// This node's own `[[deploy]]` actions.
    actions: Vec<crate::config::DeployAction>,
    /// The certbot `certherd renew` runs here (its own `[renew] certbot`), for `certbot_version`.
    certbot: Vec<String>,
    /// Lineages staged in this session, waiting for `commit` (each holds its lineage lock).
    staged: RefCell<Vec<Staged>>,
    /// Most lineages staged at once: what this process's file limit allows, announced in
    /// `hello` so that the primary never sends more.
    max_staged: usize,
}

impl Agent {
    /// An agent for this node's config.
    pub fn new(config: &Config) -> Self {
        Agent {
            node: config.node_name(),
            standby: crate::standby::Policy {
                standby: config.standby,
                root: config.letsencrypt_dir.clone(),
                // Absolute, so the hooks certbot runs later find it whatever its working dir.
                own_config: std::path::absolute(&config.path).unwrap_or(config.path.clone()),
                // The binary sshd's forced command started: the hooks run this very certherd.
                exe: std::env::current_exe().unwrap_or_else(|_| "/usr/bin/certherd".into()),
                servers: config.acme_servers.clone(),
            },
            tokens: TokenStore::new(&config.webroot),
            layout: Layout::new(&config.letsencrypt_dir),
            commands: config.commands(),
            actions: config.deploy.clone(),
            certbot: config.renew.certbot_argv(),
            staged: RefCell::new(Vec::new()),
            max_staged: crate::lineage::batch::staging_limit(),
        }
    }

    /// Answers one request line. Never panics on hostile input.
    pub fn handle_line(&self, line: &[u8]) -> Response {
        match parse_request(line) {
            Ok(request) => self.handle(request),
            Err(refusal) => refusal,
        }
    }

    /// Carries out one validated request.
    pub fn handle(&self, request: Request) -> Response {
        let done = |r: crate::Result<bool>| match r {
            Ok(changed) => Response::Done {
                changed,
                dropped: Vec::new(),
            },
            Err(e) => Response::error(ErrorKind::Io, e.to_string()),
        };
        match request {
            Request::Hello { .. } => Response::Hello {
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: PROTOCOL_VERSION,
                node: self.node.clone(),
                ops: OPS.iter().map(|s| s.to_string()).collect(),
                standby: Some(self.standby.standby),
                max_staged: Some(self.max_staged as u32),
                commit_progress: true,
            },
            Request::PutToken {
                token,
                key_authorization,
            } => done(self.tokens.put(&token, &key_authorization)),
            Request::RemoveToken { token } => done(self.tokens.remove(&token)),
            Request::PutRenewal { lineage, bundle } => {
                use crate::standby::StandbyError;
                match crate::standby::install(&self.standby, &lineage, &bundle) {
                    Ok(w) => Response::Done {
                        changed: w.changed,
                        dropped: w.dropped,
                    },
                    Err(e @ StandbyError::NotStandby(_)) => {
                        Response::error(ErrorKind::NotStandby, e.to_string())
                    }
                    Err(e @ StandbyError::Invalid(_)) => {
                        Response::error(ErrorKind::Invalid, e.to_string())
                    }
                    Err(e @ StandbyError::Io(_)) => Response::error(ErrorKind::Io, e.to_string()),
                }
            }
            Request::CertbotVersion {} => {
                if !self.standby.standby {
                    return Response::error(
                        ErrorKind::NotStandby,
                        "not a standby (`standby = true` is not in this node's config): it runs no certbot for the fleet",
                    );
                }
                match crate::certbot_version::CertbotVersion::query(&self.certbot) {
                    Ok(v) => Response::CertbotVersion { version: v.text },
                    Err(e) => Response::error(ErrorKind::Io, e),
                }
            }
            Request::Status {} => match self.layout.status_all() {
                Ok(lineages) => Response::Status {
                    lineages,
                    exposed: self.exposed(),
                },
                Err(e) => Response::error(ErrorKind::Io, e.to_string()),
            },
            Request::Install {
                lineage,
                version,
                files,
                resolve_split_brain,
            } => {
                let installed = match self.layout.install_with(
                    &lineage,
                    version,
                    &files,
                    &self.commands,
                    split_brain_rule(resolve_split_brain),
                ) {
                    Ok(installed) => installed,
                    Err(e) => return Response::error(e.kind(), e.to_string()),
                };
                match self.run_actions(&lineage, &files, installed) {
                    Ok(installed) => Response::Installed(installed),
                    Err(e) => Response::error(e.kind(), e.to_string()),
                }
            }
            Request::Stage {
                lineage,
                version,
                files,
                resolve_split_brain,
            } => self.stage(&lineage, version, &files, resolve_split_brain),
            Request::Commit { lineages, progress } => {
                // Stopped (joined) when the commit returns: the answer follows the last line.
                let _working = progress.then(Heartbeat::start);
                self.commit(&lineages)
            }
            Request::Discard { lineages } => self.discard(Some(&lineages)),
        }
    }

    /// `discard`: the named lineages staged in this session (all of them: None) dropped, as
    /// if never staged (see [`crate::lineage::batch::discard`]).
    fn discard(&self, names: Option<&[crate::names::LineageName]>) -> Response {
        let dropped: Vec<Staged> = {
            let mut staged = self.staged.borrow_mut();
            let (out, keep) = staged
                .drain(..)
                .partition(|s| names.map_or(true, |n| n.contains(s.lineage())));
            *staged = keep;
            out
        };
        let changed = !dropped.is_empty();
        let mut errors = Vec::new();
        for s in dropped {
            let name = s.lineage().clone();
            if let Err(e) = crate::lineage::batch::discard(&self.layout, s) {
                errors.push(format!("{name}: {e}"));
            }
        }
        if errors.is_empty() {
            Response::Done {
                changed,
                dropped: Vec::new(),
            }
        } else {
            Response::error(ErrorKind::Io, errors.join("; "))
        }
    }

    /// `stage`: one lineage of a batch written and pending, its lock kept for the `commit`.
    fn stage(
        &self,
        lineage: &crate::names::LineageName,
        version: u32,
        files: &crate::wire::LineageFiles,
        resolve_split_brain: bool,
    ) -> Response {
        let mut staged = self.staged.borrow_mut();
        // Its lock is already ours: taking it again would wait on ourselves.
        if staged.iter().any(|s| s.lineage() == lineage) {
            return Response::error(
                ErrorKind::Invalid,
                format!("{lineage} is already staged in this session (expected each lineage once per commit)"),
            );
        }
        if staged.len() >= self.max_staged {
            return Response::error(
                ErrorKind::Invalid,
                format!(
                    "{} lineages already staged (expected at most {} per commit, as hello said)",
                    staged.len(),
                    self.max_staged
                ),
            );
        }
        match self.layout.stage(
            lineage,
            version,
            files,
            split_brain_rule(resolve_split_brain),
        ) {
            Ok(s) => {
                let current = s.current();
                staged.push(s);
                Response::Staged {
                    lineage: lineage.clone(),
                    current,
                }
            }
            Err(e) => Response::error(e.kind(), e.to_string()),
        }
    }

    /// `commit`: the named lineages staged in this session switched under one config test and
    /// one reload, then each one's `[[deploy]]` actions; one outcome per name.
    fn commit(&self, names: &[crate::names::LineageName]) -> Response {
        let mut pending = Vec::new();
        let mut outcomes: Vec<(crate::names::LineageName, Result<Installed, InstallError>)> =
            Vec::new();
        {
            let mut staged = self.staged.borrow_mut();
            for name in names {
                match staged.iter().position(|s| s.lineage() == name) {
                    Some(i) => pending.push(staged.swap_remove(i)),
                    None if pending.iter().any(|s: &Staged| s.lineage() == name) => {}
                    None => outcomes.push((
                        name.clone(),
                        Err(InstallError::Refused(format!(
                            "{name} was not staged in this session (expected stage before commit)"
                        ))),
                    )),
                }
            }
        }
        outcomes.extend(crate::lineage::batch::commit(
            &self.layout,
            pending,
            &self.commands,
        ));
        let budget = commit_message_budget(outcomes.len());
        let lineages = outcomes
            .into_iter()
            .map(|(lineage, result)| {
                let result = result.map_err(|e| (e.kind(), e.to_string())).and_then(|i| {
                    // No [[deploy]] action for it here: no need to read its files back.
                    if !crate::actions::needed(
                        &self.actions,
                        &lineage,
                        &self.layout.live_dir(&lineage),
                    ) {
                        return Ok(i);
                    }
                    let files = self
                        .layout
                        .read_version(&lineage, i.after)
                        .map_err(|e| (ErrorKind::Io, e.to_string()))?;
                    self.run_actions(&lineage, &files, i)
                        .map_err(|e| (e.kind(), e.to_string()))
                });
                let outcome = match result {
                    Ok(installed) => CommitOutcome::Installed(installed),
                    Err((kind, message)) => CommitOutcome::Error {
                        kind,
                        message: crate::text::one_line(&message, budget),
                    },
                };
                Committed { lineage, outcome }
            })
            .collect();
        Response::Committed { lineages }
    }

    /// After a lineage is in: this node's own actions for it (paths and commands from its
    /// config; the request only chose the lineage and its files).
    fn run_actions(
        &self,
        lineage: &crate::names::LineageName,
        files: &crate::wire::LineageFiles,
        installed: Installed,
    ) -> Result<Installed, crate::actions::ActionError> {
        let acted = crate::actions::run(
            &self.actions,
            &crate::actions::Deployed {
                lineage,
                fullchain: &files.fullchain,
                privkey: &files.privkey,
                installed: installed.changed,
                live_dir: &self.layout.live_dir(lineage),
                timeout: self.commands.timeout,
            },
        )?;
        Ok(Installed {
            changed: installed.changed || acted,
            ..installed
        })
    }

    /// This node's own web server config files that root reads and a non-root account may
    /// change (from its own `[reload]`, never from the request), for the primary's `status`.
    fn exposed(&self) -> Vec<crate::wire::ConfigExposure> {
        crate::webconf::exposed_here(&[&self.commands.test, &self.commands.reload])
            .into_iter()
            .take(crate::wire::ConfigExposure::MAX)
            .map(|(server, e)| crate::wire::ConfigExposure {
                server: server.name().to_owned(),
                file: e.file.display().to_string(),
                reason: crate::text::one_line(&e.describe(server), 600),
            })
            .collect()
    }

    /// Serves requests from stdin until it closes. Returns the process exit code. When the
    /// session is over, however it ends, nothing stays staged without a commit: a primary that
    /// hung up decided nothing, and the lineages it staged here go.
    pub fn serve(&self) -> i32 {
        let code = self.serve_lines();
        self.discard(None);
        code
    }

    fn serve_lines(&self) -> i32 {
        let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
        loop {
            let (response, last) = match read_line_limited(&mut input, MAX_REQUEST_LINE) {
                Ok(None) => return 0,
                Ok(Some(line)) => (self.handle_line(&line), false),
                // The rest of an oversized line cannot be trusted to be a request boundary:
                // answer once and hang up.
                Err(LineError::TooLong(limit)) => (
                    Response::error(
                        ErrorKind::TooLarge,
                        format!("request line longer than {limit} bytes refused"),
                    ),
                    true,
                ),
                Err(LineError::Io(e)) => {
                    crate::error!("agent: reading request: {e}");
                    return 1;
                }
            };
            let mut text = serde_json::to_string(&response).unwrap_or_else(|e| {
                format!(
                    r#"{{"result":"error","kind":"io","message":"cannot encode response: {e}"}}"#
                )
            });
            text.push('\n');
            if write_line(text.as_bytes()).is_err() {
                return 1;
            }
            if last {
                return 2;
            }
        }
    }
}

/// Writes one whole line to stdout and flushes it, under stdout's lock: the answers and a
/// commit's [`Heartbeat`] never interleave within a line.
fn write_line(line: &[u8]) -> std::io::Result<()> {
    let mut output = std::io::stdout().lock();
    output.write_all(line)?;
    output.flush()
}

/// How often a commit that asked for `progress` says `working`.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// While it lives, a thread writes a `working` line every [`HEARTBEAT`]: a commit whose config
/// tests, halving search or `[[deploy]]` actions outlast the primary's request timeout does not
/// look like a hung agent. Dropping it stops the thread and waits for it, so no `working` line
/// follows the commit's answer.
struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start() -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut line = serde_json::to_vec(&Response::Working).unwrap_or_default();
            line.push(b'\n');
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(HEARTBEAT)
            {
                if write_line(&line).is_err() {
                    return;
                }
            }
        });
        Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
