//! The peer side: `certherd agent`, started by sshd as the forced command. It reads one JSON
//! request per line on stdin and answers one JSON line on stdout. Every path and command comes
//! from this node's own config; a request only ever names a token (or, later, a lineage).

use std::io::{BufReader, Write};

use crate::config::Config;
use crate::exec::Commands;
use crate::lineage::Layout;
use crate::tokens::TokenStore;
use crate::wire::{
    parse_request, read_line_limited, ErrorKind, LineError, Request, Response, MAX_REQUEST_LINE,
    OPS, PROTOCOL_VERSION,
};

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
                let on_split_brain = if resolve_split_brain {
                    crate::lineage::OnSplitBrain::KeepAside
                } else {
                    crate::lineage::OnSplitBrain::Refuse
                };
                let installed = match self.layout.install_with(
                    &lineage,
                    version,
                    &files,
                    &self.commands,
                    on_split_brain,
                ) {
                    Ok(installed) => installed,
                    Err(e) => return Response::error(e.kind(), e.to_string()),
                };
                // After the lineage: this node's own actions for it (paths and commands from
                // its config; the request only chose the lineage and its files).
                match crate::actions::run(
                    &self.actions,
                    &crate::actions::Deployed {
                        lineage: &lineage,
                        fullchain: &files.fullchain,
                        privkey: &files.privkey,
                        installed: installed.changed,
                        live_dir: &self.layout.live_dir(&lineage),
                        timeout: self.commands.timeout,
                    },
                ) {
                    Ok(acted) => Response::Installed(crate::wire::Installed {
                        changed: installed.changed || acted,
                        ..installed
                    }),
                    Err(e) => Response::error(e.kind(), e.to_string()),
                }
            }
        }
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

    /// Serves requests from stdin until it closes. Returns the process exit code.
    pub fn serve(&self) -> i32 {
        let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
        let mut output = std::io::stdout().lock();
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
            if output
                .write_all(text.as_bytes())
                .and_then(|()| output.flush())
                .is_err()
            {
                return 1;
            }
            if last {
                return 2;
            }
        }
    }
}
