//! `certherd deploy` (certbot's deploy hook) and `certherd sync`: bring a lineage's current
//! version to every node — agents install it atomically, test, reload or roll back — then check
//! over TLS that every node serves it (see [`crate::served`]), print a table, alert on failure.

use std::time::{Duration, Instant};

use crate::alert::{self, DeployAlert, NodeAlert};
use crate::cli::DeployFlags;
use crate::config::Config;
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::fleet;
use crate::lineage::{Layout, LineageFiles};
use crate::names::LineageName;
use crate::pem;
use crate::protocol::{Request, Response};
use crate::served::{self, Check, Served, Versions};

/// How long a node that does not answer at all gets to come back after its reload (an answer
/// with the wrong certificate is judged after [`served::SETTLE`]).
const SERVE_DEADLINE: Duration = Duration::from_secs(10);

/// One node's row of the result table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Node name.
    pub node: String,
    /// Failures of optional nodes only warn.
    pub optional: bool,
    /// Version before.
    pub before: Option<u32>,
    /// Version after.
    pub after: Option<u32>,
    /// Install/test/reload step result.
    pub install: std::result::Result<bool, String>,
    /// What it serves now, and for which name it was asked.
    pub served: Check,
    /// Time on this node.
    pub elapsed: Duration,
}

impl Row {
    fn ok(&self) -> bool {
        self.install.is_ok() && !self.served.served.failed()
    }
}

/// `certherd deploy`.
pub async fn run(config: &Config, flags: &DeployFlags) -> Result<i32> {
    let lineage = lineage_from(config, flags)?;
    push(config, "deploy", &lineage, true).await
}

/// `certherd sync [LINEAGE…]`: every lineage (or the named ones) to every peer that lacks it.
pub async fn sync(config: &Config, names: &[String]) -> Result<i32> {
    let layout = Layout::new(&config.letsencrypt_dir);
    let lineages = if names.is_empty() {
        layout.lineages()?
    } else {
        names
            .iter()
            .map(|n| LineageName::parse(n))
            .collect::<std::result::Result<Vec<_>, _>>()?
    };
    let mut code = EXIT_OK;
    for lineage in &lineages {
        if push(config, "sync", lineage, false).await? != EXIT_OK {
            code = EXIT_FAILED;
        }
    }
    if lineages.is_empty() {
        crate::info!(
            "no lineages under {}",
            config.letsencrypt_dir.join("live").display()
        );
    }
    Ok(code)
}

/// The lineage to deploy: `--lineage`, else certbot's `$RENEWED_LINEAGE`, which must be exactly
/// `<letsencrypt_dir>/live/<name>` — a real directory, not a symlink, no `..` — so that a
/// hostile value (`../../etc`, a path elsewhere, a planted link) is refused as input (exit 2)
/// before anything is read or sent.
fn lineage_from(config: &Config, flags: &DeployFlags) -> Result<LineageName> {
    if let Some(name) = &flags.lineage {
        return Ok(LineageName::parse(name)?);
    }
    let dir = std::env::var("RENEWED_LINEAGE").map_err(|_| {
        Error::Input(
            "missing lineage: expected $RENEWED_LINEAGE (set by certbot) or --lineage NAME".into(),
        )
    })?;
    let live = config.letsencrypt_dir.join("live");
    let refuse = |why: &str| {
        Error::Input(format!(
            "RENEWED_LINEAGE {} {why}: expected {}/NAME, a lineage directory",
            crate::names::printable(&dir),
            live.display()
        ))
    };
    let name = std::path::Path::new(&dir)
        .strip_prefix(&live)
        .ok()
        .and_then(|rest| {
            let mut parts = rest.components();
            match (parts.next(), parts.next()) {
                (Some(std::path::Component::Normal(n)), None) => n.to_str(),
                _ => None,
            }
        })
        .ok_or_else(|| refuse("is not a directory directly under live/"))?;
    let lineage = LineageName::parse(name)?;
    match std::fs::symlink_metadata(live.join(name)) {
        Ok(m) if m.is_dir() => Ok(lineage),
        Ok(_) => Err(refuse("is a symlink or a file")),
        Err(_) => Err(refuse("does not exist")),
    }
}

/// Installs the lineage's current version everywhere, checks what each node serves, reports.
pub(crate) async fn push(
    config: &Config,
    event: &'static str,
    lineage: &LineageName,
    run_local: bool,
) -> Result<i32> {
    let layout = Layout::new(&config.letsencrypt_dir);
    let version = layout.current_version(lineage)?;
    let files: LineageFiles = layout.read_version(lineage, version)?;
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

    let peers: Vec<_> = config.managed_peers().cloned().collect();
    let request = Request::Install {
        lineage: lineage.clone(),
        version,
        files,
    };
    let remote = fleet::run(&config.ssh, &peers, std::slice::from_ref(&request));
    let commands = config.commands();
    let local_addr = config.https.clone();
    let local = async {
        let start = Instant::now();
        // sync leaves this node alone when it already serves the version: certbot's files here
        // are the source. It reloads when it does not (say, a deploy killed before its reload).
        if !run_local
            && served::check(&local_addr, sni.as_deref(), &versions, Duration::ZERO)
                .await
                .served
                == Served::New
        {
            return (Ok(false), start.elapsed());
        }
        let result = tokio::task::spawn_blocking(move || {
            crate::crashpoint!("primary-before-test");
            commands
                .test()
                .and_then(|()| {
                    crate::crashpoint!("primary-before-reload");
                    commands.reload()
                })
                .map(|()| true)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        (result, start.elapsed())
    };
    let (remote, (local, local_elapsed)) = tokio::join!(remote, local);
    crate::crashpoint!("primary-after-installs");
    let standby_errors = copy_renewal_to_standbys(config, lineage, &peers).await;

    let mut rows = vec![Row {
        node: config.node_name(),
        optional: false,
        before: Some(version),
        after: Some(version),
        install: local,
        served: unchecked(),
        elapsed: local_elapsed,
    }];
    let mut addrs = vec![config.https.clone()];
    for (outcome, peer) in remote.into_iter().zip(&peers) {
        let (before, after, install) = match outcome.result {
            Ok(responses) => match responses.last() {
                Some(Response::Installed {
                    before,
                    after,
                    changed,
                }) => (*before, Some(*after), Ok(*changed)),
                other => (None, None, Err(format!("unexpected answer {other:?}"))),
            },
            Err(e) => (None, None, Err(e.to_string())),
        };
        let install = match (install, standby_errors.get(&peer.name)) {
            (Ok(_), Some(why)) => Err(why.clone()),
            (install, _) => install,
        };
        rows.push(Row {
            node: peer.name.clone(),
            optional: peer.optional,
            before,
            after,
            install,
            served: unchecked(),
            elapsed: outcome.elapsed,
        });
        addrs.push(peer.https_addr());
    }

    // Every node, even one whose install failed, is asked what it serves: the table then shows
    // honestly whether it still runs on its previous certificate.
    let checks = rows.iter().zip(&addrs).map(|(row, addr)| {
        let wait = if row.install.is_ok() {
            SERVE_DEADLINE
        } else {
            Duration::ZERO
        };
        let (addr, sni, versions) = (addr.clone(), sni.clone(), versions.clone());
        async move {
            let began = Instant::now();
            let check = served::check(&addr, sni.as_deref(), &versions, wait).await;
            (check, began.elapsed())
        }
    });
    let served_results = join_all(checks.collect()).await;
    // A node's time: its install (connection included) plus until it was seen serving.
    for (row, (s, took)) in rows.iter_mut().zip(served_results) {
        row.served = s;
        row.elapsed += took;
    }

    print_table(lineage, version, &rows);
    let alert = DeployAlert::new(
        event,
        config.node_name(),
        lineage.to_string(),
        version,
        Some(info.not_after),
        rows.iter()
            .map(|r| NodeAlert {
                node: r.node.clone(),
                ok: r.ok(),
                required: !r.optional,
                before: r.before,
                version: r.after,
                duration_ms: r.elapsed.as_millis() as u64,
                error: failure(r),
            })
            .collect(),
    );
    for r in &rows {
        if let (Ok(_), Served::Unused { .. }) = (&r.install, &r.served.served) {
            crate::warn!(
                "{}: {lineage} is not in use for {}: the node serves another certificate \
                 (no server block uses live/{lineage}/ yet?); not a failure",
                r.node,
                r.served.name.as_deref().unwrap_or("-")
            );
        }
        if let Some(why) = failure(r) {
            if r.optional {
                crate::warn!(
                    "{}: {event} of {lineage} failed (optional node): {why}",
                    r.node
                );
            } else {
                crate::error!("{}: {event} of {lineage} failed: {why}", r.node);
            }
        }
    }
    alert::send(&config.alert, &alert).await;
    Ok(if alert.ok { EXIT_OK } else { EXIT_FAILED })
}

/// Standby peers also get certbot's renewal config and account (see [`crate::standby`]).
/// Returns, per standby that did not get them, why.
async fn copy_renewal_to_standbys(
    config: &Config,
    lineage: &LineageName,
    peers: &[crate::config::Peer],
) -> std::collections::HashMap<String, String> {
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
                errors.insert(
                    p.name.clone(),
                    format!("standby: renewal config not copied: {e}"),
                );
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
    }
}

/// Why a standby did not take the renewal config, if it did not. A peer marked standby here
/// whose own config does not say so is a mismatch the operator must resolve on one side; a
/// standby that dropped `server` or `account` could not renew with this account.
fn standby_failure(
    peer: &str,
    result: &std::result::Result<Vec<Response>, crate::ssh::PeerError>,
) -> Option<String> {
    use crate::protocol::ErrorKind;
    use crate::ssh::PeerError;
    match result {
        Err(PeerError::Refused {
            kind: ErrorKind::NotStandby,
            ..
        }) => Some(format!(
            "standby mismatch: [[peers]] {peer} has `standby = true` here, but {peer}'s own config \
             does not (it refused the renewal config); set `standby = true` in {peer}'s config or \
             remove it from this [[peers]] entry"
        )),
        Err(e) => Some(format!("standby: renewal config not copied: {e}")),
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
            let fatal: Vec<&&String> = dropped
                .iter()
                .filter(|k| matches!(k.as_str(), "server" | "account"))
                .collect();
            (!fatal.is_empty()).then(|| {
                format!(
                    "standby: {peer} dropped {} from the renewal config (not in its acme_servers?): it could not renew this lineage",
                    fatal.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
                )
            })
        }
    }
}

fn failure(r: &Row) -> Option<String> {
    let name = r.served.name.as_deref().unwrap_or("-");
    match (&r.install, &r.served.served) {
        (Err(e), _) => Some(e.clone()),
        (Ok(_), Served::None { error }) => Some(format!("not serving {name}: {error}")),
        (Ok(_), Served::Old { version }) => Some(format!(
            "still serves another certificate for {name}, version {version}: the reload did not take"
        )),
        _ => None,
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

fn print_table(lineage: &LineageName, version: u32, rows: &[Row]) {
    let v = |x: Option<u32>| x.map_or("-".to_owned(), |v| v.to_string());
    println!("{lineage} version {version}");
    println!(
        "{:<16} {:>6} {:>6}  {:<10} {:<8} {:>7}  CHECKED",
        "NODE", "BEFORE", "AFTER", "INSTALL", "SERVED", "TIME"
    );
    for r in rows {
        let install = match &r.install {
            Ok(true) => "ok",
            Ok(false) => "unchanged",
            Err(e) if e.contains("config test failed") => "TEST-FAIL",
            Err(e) if e.contains("reload failed") => "RELOAD-FAIL",
            Err(_) => "FAILED",
        };
        println!(
            "{:<16} {:>6} {:>6}  {:<10} {:<8} {:>6.1}s  {}",
            r.node,
            v(r.before),
            v(r.after),
            install,
            r.served.served.word(),
            r.elapsed.as_secs_f64(),
            r.served.name.as_deref().unwrap_or("-")
        );
    }
}
