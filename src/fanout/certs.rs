//! The certificate engine behind `deploy`, `sync` and `watch`: bring a lineage's current
//! version to every node — agents install it atomically, test, reload or roll back — copy the
//! renewal config to standbys, then check over TLS what every node serves (see
//! [`crate::served`]). It returns typed rows; [`crate::report::deploy`] prints them.

use std::time::{Duration, Instant};

use crate::actions::ActionError;
use crate::config::{Config, Peer};
use crate::error::{Error, Result};
use crate::exec::ExecError;
use crate::fleet::{self, PeerOutcome};
use crate::lineage::Layout;
use crate::names::LineageName;
use crate::pem;
use crate::served::{self, Check, Served, Versions};
use crate::ssh::PeerError;
use crate::wire::{ErrorKind, LineageFiles, Request, Response, SplitBrainKept};

use super::{this_then_peers, NodeResult};

/// How long a node that does not answer at all gets to come back after its reload (an answer
/// with the wrong certificate is judged after [`served::SETTLE`]).
const SERVE_DEADLINE: Duration = Duration::from_secs(10);

/// Why a node did not take the version.
#[derive(Debug, thiserror::Error)]
pub enum InstallFailure {
    /// This node's own config test or reload.
    #[error("{0}")]
    Local(#[from] ExecError),
    /// This node's test-and-reload task died.
    #[error("{0}")]
    LocalTask(#[from] tokio::task::JoinError),
    /// A peer, typed as its agent (or the connection) reported it.
    #[error("{0}")]
    Peer(#[from] PeerError),
    /// This node's own files of the lineage could not be read to send.
    #[error("cannot read it here to send: {0}")]
    Source(String),
    /// A peer answered the install with something else.
    #[error("unexpected answer {0}")]
    UnexpectedAnswer(String),
    /// A standby installed the version but did not take the renewal config.
    #[error("{0}")]
    Standby(#[from] StandbyFailure),
    /// This node's own `[[deploy]]` action (the lineage itself is in place).
    #[error("{0}")]
    Action(#[from] ActionError),
}

impl InstallFailure {
    /// The agent's error class, when a peer's agent refused or failed the install.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            InstallFailure::Peer(PeerError::Refused { kind, .. }) => Some(*kind),
            InstallFailure::Action(e) => Some(e.kind()),
            _ => None,
        }
    }
}

/// Why a standby did not take the renewal config.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StandbyFailure {
    /// Marked standby here, but its own config does not say so: it refused.
    #[error(
        "standby mismatch: [[peers]] {peer} has `standby = true` here, but {peer}'s own config \
         does not (it refused the renewal config); set `standby = true` in {peer}'s config or \
         remove it from this [[peers]] entry"
    )]
    Mismatch {
        /// The peer.
        peer: String,
    },
    /// The renewal config could not be read here or sent there.
    #[error("standby: renewal config not copied: {0}")]
    NotCopied(String),
    /// It dropped `server` or `account`: it could not renew with this account.
    #[error(
        "standby: {peer} dropped {} from the renewal config (not in its acme_servers?): it could \
         not renew this lineage",
        .keys.join(", ")
    )]
    Dropped {
        /// The peer.
        peer: String,
        /// The fatal keys it dropped.
        keys: Vec<String>,
    },
}

/// One node's install and what it serves afterwards.
#[derive(Debug)]
pub struct Install {
    /// Version before.
    pub before: Option<u32>,
    /// Version after.
    pub after: Option<u32>,
    /// Install/test/reload step: whether anything changed, or why it failed.
    pub install: std::result::Result<bool, InstallFailure>,
    /// The node held another version under the same number and kept it aside (`sync`).
    pub split_brain: Option<SplitBrainKept>,
    /// What it serves now, and for which name it was asked.
    pub served: Check,
}

/// One node's row: this node first, then every managed peer that receives the lineage.
pub type Row = NodeResult<Install>;

impl Row {
    /// Installed (or already current) and serving the version.
    pub fn ok(&self) -> bool {
        self.result.install.is_ok() && !self.result.served.served.failed()
    }

    /// Why the row failed, one line (None: it did not).
    pub fn failure(&self) -> Option<String> {
        let r = &self.result;
        let name = r.served.name.as_deref().unwrap_or("-");
        match (&r.install, &r.served.served) {
            (Err(e), _) => Some(e.to_string()),
            (Ok(_), Served::None { error }) => Some(format!("not serving {name}: {error}")),
            (Ok(_), Served::Old { version }) => Some(format!(
                "still serves another certificate for {name}, version {version}: the reload did not take"
            )),
            _ => None,
        }
    }
}

/// A whole push: the version, its expiry, one row per node.
#[derive(Debug)]
pub struct Deployment {
    /// The lineage.
    pub lineage: LineageName,
    /// The version pushed.
    pub version: u32,
    /// The certificate's expiry (Unix seconds).
    pub not_after: i64,
    /// This node, then every managed peer that receives the lineage.
    pub rows: Vec<Row>,
}

impl Deployment {
    /// Whether every required node installed and serves the version (optional ones may fail).
    pub fn everywhere(&self) -> bool {
        self.rows.iter().all(|r| r.ok() || r.optional)
    }
}

/// [`push`] with `run_local`, once per version: under the lineage's deploy lock, and nothing at
/// all (`None`) when this exact version and certificate was already deployed to every required
/// node — by certbot's stored deploy hook, `hooks/certherd-deploy` or `watch`, whichever saw the
/// renewal first (see [`crate::lineage::deployed`]). A push that every required node took is
/// recorded; one that failed somewhere is not, so the next trigger (or `sync`) tries again.
pub async fn push_once(config: &Config, lineage: &LineageName) -> Result<Option<Deployment>> {
    use crate::lineage::deployed::{Deployed, LOCK_WAIT};
    let layout = Layout::new(&config.letsencrypt_dir);
    let deployed = Deployed::new(&config.letsencrypt_dir);
    let Some(_lock) = deployed.lock(lineage).await? else {
        return Err(Error::Failed(format!(
            "{lineage}: another deploy held its lock for {} (expected it to finish well within that)",
            humantime::format_duration(LOCK_WAIT)
        )));
    };
    let current = layout.status(lineage);
    if let (Some(version), Some(fp)) = (current.version, current.fingerprint.as_deref()) {
        if deployed.has(lineage, version, fp) {
            return Ok(None);
        }
    }
    let d = push(config, lineage, true).await?;
    let everywhere = d.everywhere();
    if let (true, Some(fp)) = (everywhere, current.fingerprint.as_deref()) {
        if d.version == current.version.unwrap_or(0) {
            if let Err(e) = deployed.record(lineage, d.version, fp) {
                crate::warn!(
                    "{lineage}: cannot record version {} as deployed: {e}",
                    d.version
                );
            }
        }
    }
    Ok(Some(d))
}

/// Installs the lineage's current version everywhere, checks what each node serves, reports.
/// With `run_local` this node tests and reloads too (deploy, watch); without, it does only
/// when it does not serve the version yet (sync: certbot's files here are the source).
pub async fn push(config: &Config, lineage: &LineageName, run_local: bool) -> Result<Deployment> {
    let layout = Layout::new(&config.letsencrypt_dir);
    let version = layout.current_version(lineage)?;
    let files: LineageFiles = layout.read_version(lineage, version)?;
    // This node's own `[[deploy]]` actions get the same files (see `crate::actions`).
    let (fullchain, privkey) = (files.fullchain.clone(), files.privkey.clone());
    let info = pem::info_pem(&files.cert).ok_or_else(|| {
        Error::Failed(format!(
            "{}: cert{version}.pem is not a readable certificate",
            lineage
        ))
    })?;
    // The name to ask each node for comes from the certificate, not from $RENEWED_DOMAINS or
    // the lineage's name (a wildcard is no SNI; a lineage may be named after a name no vhost
    // answers).
    let sni = pem::first_cert_der(&files.cert).and_then(|der| served::check_name_for(&der));
    let versions = Versions::read(&layout, lineage, version, &info.fingerprint);

    // Only the peers whose `lineages` list admits it: the others never hear its name, and the
    // standbys among them never get its renewal config.
    let peers: Vec<_> = config.peers_receiving(lineage.as_str()).cloned().collect();
    let request = Request::Install {
        lineage: lineage.clone(),
        version,
        files,
        resolve_split_brain: false,
    };
    let remote = fleet::run(&config.ssh, &peers, std::slice::from_ref(&request));
    let commands = config.commands();
    let actions = config.deploy.clone();
    let action_lineage = lineage.clone();
    let live_dir = layout.live_dir(lineage);
    let local_addr = config.https.clone();
    let local = async {
        let start = Instant::now();
        // sync leaves this node alone when it already serves the version: certbot's files here
        // are the source. It reloads when it does not (say, a deploy killed before its reload).
        let serving = !run_local
            && served::check(&local_addr, sni.as_deref(), &versions, Duration::ZERO)
                .await
                .served
                == Served::New;
        let result =
            tokio::task::spawn_blocking(move || -> std::result::Result<bool, InstallFailure> {
                let reloaded = if serving {
                    false
                } else {
                    crate::crashpoint!("primary-before-test");
                    commands.test()?;
                    crate::crashpoint!("primary-before-reload");
                    commands.reload()?;
                    true
                };
                // Then this node's own actions, as an agent runs them after its install; they do
                // nothing when their layout is current and nothing was reloaded.
                let acted = crate::actions::run(
                    &actions,
                    &crate::actions::Deployed {
                        lineage: &action_lineage,
                        fullchain: &fullchain,
                        privkey: &privkey,
                        installed: reloaded,
                        live_dir: &live_dir,
                        timeout: commands.timeout,
                    },
                )?;
                Ok(reloaded || acted)
            })
            .await
            .map_err(InstallFailure::from)
            .and_then(|r| r);
        (result, start.elapsed())
    };
    let (remote, (local, local_elapsed)) = tokio::join!(remote, local);
    // `deploy` and `watch` (run_local) report a split brain; `sync`, the operator's repair,
    // resolves it: each peer that refused as one is asked again, keeping its own version aside.
    let remote = if run_local {
        remote
    } else {
        resolve_split_brains(config, &request, remote).await
    };
    crate::crashpoint!("primary-after-installs");
    let standby_errors = copy_renewal_to_standbys(config, lineage, &peers).await;

    let mut rows = this_then_peers(
        config,
        Install {
            before: Some(version),
            after: Some(version),
            install: local,
            split_brain: None,
            served: unchecked(),
        },
        local_elapsed,
        remote,
        |peer, outcome| {
            let (before, after, install, split_brain) = match outcome {
                Ok(responses) => match responses.last() {
                    Some(Response::Installed(i)) => (
                        i.before,
                        Some(i.after),
                        Ok(i.changed),
                        i.split_brain.clone(),
                    ),
                    other => (
                        None,
                        None,
                        Err(InstallFailure::UnexpectedAnswer(format!("{other:?}"))),
                        None,
                    ),
                },
                Err(e) => (None, None, Err(InstallFailure::from(e)), None),
            };
            let install = match (install, standby_errors.get(&peer.name)) {
                (Ok(_), Some(why)) => Err(InstallFailure::from(why.clone())),
                (install, _) => install,
            };
            Install {
                before,
                after,
                install,
                split_brain,
                served: unchecked(),
            }
        },
    );

    // Every node, even one whose install failed, is asked what it serves: the table then shows
    // honestly whether it still runs on its previous certificate.
    let checks = rows.iter().map(|row| {
        let wait = if row.result.install.is_ok() {
            SERVE_DEADLINE
        } else {
            Duration::ZERO
        };
        let (addr, sni, versions) = (row.https.clone(), sni.clone(), versions.clone());
        async move {
            let began = Instant::now();
            let check = served::check(&addr, sni.as_deref(), &versions, wait).await;
            (check, began.elapsed())
        }
    });
    let served_results = join_all(checks.collect()).await;
    // A node's time: its install (connection included) plus until it was seen serving.
    for (row, (s, took)) in rows.iter_mut().zip(served_results) {
        row.result.served = s;
        row.elapsed += took;
    }

    Ok(Deployment {
        lineage: lineage.clone(),
        version,
        not_after: info.not_after,
        rows,
    })
}

/// Asks every peer whose agent refused `request` as a split brain to install it again, keeping
/// its own clashing version aside (see `crate::lineage::split_brain`); the other outcomes stay.
/// A second round only for those peers: an older agent, which knows no `resolve_split_brain`,
/// is never sent it.
async fn resolve_split_brains(
    config: &Config,
    request: &Request,
    remote: Vec<PeerOutcome>,
) -> Vec<PeerOutcome> {
    let split: Vec<Peer> = remote
        .iter()
        .filter(|o| {
            matches!(
                o.result,
                Err(PeerError::Refused {
                    kind: ErrorKind::SplitBrain,
                    ..
                })
            )
        })
        .map(|o| o.peer.clone())
        .collect();
    let Request::Install {
        lineage,
        version,
        files,
        ..
    } = request
    else {
        return remote;
    };
    if split.is_empty() {
        return remote;
    }
    let resolving = Request::Install {
        lineage: lineage.clone(),
        version: *version,
        files: files.clone(),
        resolve_split_brain: true,
    };
    let mut again = fleet::run(&config.ssh, &split, std::slice::from_ref(&resolving)).await;
    remote
        .into_iter()
        .map(
            |first| match again.iter().position(|a| a.peer.name == first.peer.name) {
                Some(i) => {
                    let mut second = again.swap_remove(i);
                    second.elapsed += first.elapsed;
                    second
                }
                None => first,
            },
        )
        .collect()
}

/// Standby peers also get certbot's renewal config and account (see [`crate::standby`]).
/// Returns, per standby that did not get them, why.
async fn copy_renewal_to_standbys(
    config: &Config,
    lineage: &LineageName,
    peers: &[Peer],
) -> std::collections::HashMap<String, StandbyFailure> {
    let standbys: Vec<_> = peers.iter().filter(|p| p.standby).cloned().collect();
    let mut errors = std::collections::HashMap::new();
    if standbys.is_empty() {
        return errors;
    }
    match crate::standby::read(&config.letsencrypt_dir, &config.path, lineage) {
        Ok(bundle) => {
            let request = Request::PutRenewal {
                lineage: lineage.clone(),
                bundle,
            };
            for o in fleet::run(&config.ssh, &standbys, std::slice::from_ref(&request)).await {
                if let Some(why) = standby_failure(&o.peer.name, &o.result) {
                    errors.insert(o.peer.name.clone(), why);
                }
            }
        }
        Err(e) => {
            for p in &standbys {
                errors.insert(p.name.clone(), StandbyFailure::NotCopied(e.to_string()));
            }
        }
    }
    errors
}

/// A row before its check ran.
fn unchecked() -> Check {
    Check {
        name: None,
        served: Served::None {
            error: "not checked".into(),
        },
        fingerprint: None,
        not_after: None,
    }
}

/// Why a standby did not take the renewal config, if it did not. A peer marked standby here
/// whose own config does not say so is a mismatch the operator must resolve on one side; a
/// standby that dropped `server` or `account` could not renew with this account.
pub(super) fn standby_failure(
    peer: &str,
    result: &std::result::Result<Vec<Response>, PeerError>,
) -> Option<StandbyFailure> {
    match result {
        Err(PeerError::Refused {
            kind: ErrorKind::NotStandby,
            ..
        }) => Some(StandbyFailure::Mismatch {
            peer: peer.to_owned(),
        }),
        Err(e) => Some(StandbyFailure::NotCopied(e.to_string())),
        Ok(responses) => {
            let dropped: Vec<&String> = responses
                .iter()
                .filter_map(|r| match r {
                    Response::Done { dropped, .. } => Some(dropped),
                    _ => None,
                })
                .flatten()
                .collect();
            if !dropped.is_empty() {
                crate::verbose!(
                    "{peer}: standby left out of its renewal config: {}",
                    dropped
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let keys: Vec<String> = dropped
                .iter()
                .filter(|k| matches!(k.as_str(), "server" | "account"))
                .map(|k| k.to_string())
                .collect();
            (!keys.is_empty()).then(|| StandbyFailure::Dropped {
                peer: peer.to_owned(),
                keys,
            })
        }
    }
}

async fn join_all<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => panic!("served-certificate check panicked: {e}"),
        }
    }
    out
}
