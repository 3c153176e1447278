//! `certherd status`: every node × every lineage it should hold (a peer: those its
//! `[[peers]] lineages` list admits) — installed version, expiry, fingerprint, what the node
//! actually serves over TLS, and drift from this node — with monitoring-plugin exit codes. The
//! formats are in [`crate::report::status`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::StatusFlags;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fanout::this_then_peers;
use crate::fleet;
use crate::lineage::Layout;
use crate::names::LineageName;
use crate::report::expiry::left;
use crate::report::status::{render, Exposed, Format, Report, Row, State, Unknown};
use crate::served::{self, Served, Versions};
use crate::ssh::PeerError;
use crate::wire::{ConfigExposure, LineageStatus, Request, Response};

/// Why a node's lineages are unknown.
#[derive(Debug, thiserror::Error)]
enum Unasked {
    /// The peer failed, typed as the fleet reported it.
    #[error("{0}")]
    Peer(#[from] PeerError),
    /// It answered `status` with something else.
    #[error("unexpected answer {0}")]
    UnexpectedAnswer(String),
    /// This node's own files could not be read, or hold nothing to monitor.
    #[error("{0}")]
    Local(#[from] Local),
}

/// Why this node's own lineages are unknown. Every case is UNKNOWN, never an empty OK: a
/// monitoring check that cannot see the certificates must not say they are fine.
#[derive(Debug, thiserror::Error)]
enum Local {
    /// `letsencrypt_dir` is not there.
    #[error("letsencrypt_dir {} does not exist: fix `letsencrypt_dir` in the config (or issue a certificate first)", .0.display())]
    Missing(PathBuf),
    /// The running account may not read it (certbot's `live/` and `archive/` are 0700).
    #[error("{0}: run status as root or the letsencrypt dir's owner; a monitoring account (telegraf) runs `sudo -n certherd status …` with the line of contrib/sudoers/certherd-status")]
    Denied(Error),
    /// Any other read error.
    #[error("{0}")]
    Unreadable(Error),
    /// It holds no lineage.
    #[error("no certificate lineage under {}: nothing to monitor (issue one, or fix `letsencrypt_dir`)", .0.display())]
    Empty(PathBuf),
}

/// This node's lineages, or why they cannot be seen.
fn local_lineages(layout: &Layout) -> std::result::Result<Vec<LineageStatus>, Local> {
    let root = layout.root();
    let typed = |e: Error| match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Local::Denied(e)
        }
        _ => Local::Unreadable(e),
    };
    match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Local::Missing(root.to_owned()))
        }
        Err(e) => return Err(typed(Error::io("cannot read", root, e))),
        Ok(_) => {}
    }
    let live = root.join("live");
    // read_dir first: lineages() reads a missing live/ as "none", and a live/ it may not list
    // must say so rather than look empty.
    if let Err(e) = std::fs::read_dir(&live) {
        return Err(if e.kind() == std::io::ErrorKind::NotFound {
            Local::Empty(live)
        } else {
            typed(Error::io("cannot read", &live, e))
        });
    }
    let lineages = layout.status_all().map_err(typed)?;
    if lineages.is_empty() {
        return Err(Local::Empty(live));
    }
    Ok(lineages)
}

/// Any error of `status` as UNKNOWN (exit 3), with its report for stdout in `format`: a
/// monitoring plugin that could not check says so, and why, where the monitor reads.
pub fn unknown(e: Error, format: Format) -> Error {
    match e {
        Error::StatusUsage { .. } | Error::StatusFailed { .. } => e,
        e => Error::StatusFailed {
            report: crate::report::status::render_failed(&e.to_string(), format),
            source: Box::new(e),
        },
    }
}

/// Runs `status`; returns the monitoring exit code.
pub async fn run(config: &Config, options: &StatusFlags) -> Result<i32> {
    let report = collect(config, options).await?;
    print!("{}", render(&report, options.format));
    Ok(report.state as i32)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// Asks every node and checks what each serves.
pub async fn collect(config: &Config, options: &StatusFlags) -> Result<Report> {
    let layout = Layout::new(&config.letsencrypt_dir);
    let local_result = local_lineages(&layout).map_err(Unasked::from);
    let local = local_result.as_ref().cloned().unwrap_or_default();
    let peers: Vec<_> = config.managed_peers().cloned().collect();
    let outcomes = fleet::run(&config.ssh, &peers, &[Request::Status {}]).await;
    let mut peer_exposed = Vec::new();
    for o in &outcomes {
        if let Ok(r) = &o.result {
            if let Some(Response::Status { exposed, .. }) = r.last() {
                peer_exposed.extend(peer_exposures(&o.peer.name, exposed));
            }
        }
    }

    let nodes = this_then_peers(
        config,
        local_result,
        Duration::ZERO,
        outcomes,
        |_, result| match result {
            Ok(r) => match r.last() {
                Some(Response::Status { lineages, .. }) => Ok(lineages.clone()),
                other => Err(Unasked::UnexpectedAnswer(format!("{other:?}"))),
            },
            Err(e) => Err(Unasked::from(e)),
        },
    );

    let primary: BTreeMap<&str, &LineageStatus> =
        local.iter().map(|l| (l.lineage.as_str(), l)).collect();
    // Per lineage: the name to check and the fingerprints of its versions, from this node's
    // files (the reference every other node is compared with).
    let checks: BTreeMap<&str, Arc<(Option<String>, Versions)>> = primary
        .iter()
        .map(|(name, l)| (*name, Arc::new(check_plan(&layout, l))))
        .collect();
    let now = now();
    let mut rows = Vec::new();
    // (row, node index, lineage index) of every served check, to ask them interleaved.
    let mut probes = Vec::new();
    for (node_index, n) in nodes.iter().enumerate() {
        let (node, addr, result) = (&n.node, &n.https, &n.result);
        // One index per node: 1,000 lineages × 11 nodes looked up by a scan was 11 million
        // comparisons.
        let held: BTreeMap<&str, &LineageStatus> = match result {
            Ok(lineages) => lineages.iter().map(|l| (l.lineage.as_str(), l)).collect(),
            Err(_) => BTreeMap::new(),
        };
        for (lineage_index, (lineage, reference)) in primary.iter().enumerate() {
            if !expected_on(config, node, lineage) {
                continue;
            }
            let mut row = Row {
                node: node.clone(),
                lineage: lineage.to_string(),
                up: result.is_ok(),
                error: result.as_ref().err().map(|e| e.to_string()),
                version: None,
                fingerprint: None,
                serial: None,
                not_after: None,
                expires_in: None,
                lifetime: None,
                left_share: None,
                warn_below: None,
                crit_below: None,
                served_name: None,
                served: None,
                served_fingerprint: None,
                served_error: None,
                served_not_after: None,
                serving_problem: None,
                pending: false,
                drift: false,
                state: State::Ok,
            };
            if result.is_ok() {
                if let Some(l) = held.get(lineage) {
                    row.version = l.version;
                    row.fingerprint = l.fingerprint.clone();
                    row.serial = l.serial.clone();
                    row.not_after = l.not_after;
                    row.pending = l.pending;
                    row.expires_in = l.not_after.map(|t| t - now);
                    // An agent from before notBefore was reported: the primary's lifetime for
                    // the same certificate, else unknown.
                    let same = l.fingerprint == reference.fingerprint;
                    row.lifetime = lifetime(l).or_else(|| same.then(|| lifetime(reference))?);
                }
                row.served_name = checks[lineage].0.clone();
                probes.push((rows.len(), node_index, lineage_index, addr.clone()));
            }
            rows.push(row);
        }
    }
    // Lineage by lineage across the nodes, a bounded number at once: every node shares the
    // handshakes evenly, none gets a thousand connections at one moment (a live web server's
    // accept queue), and a fleet of any size holds a bounded number of TLS states here.
    probes.sort_by_key(|&(_, node, lineage, _)| (lineage, node));
    let jobs: Vec<_> = probes
        .iter()
        .map(|(row, _, _, addr)| (addr.clone(), checks[rows[*row].lineage.as_str()].clone()))
        .collect();
    let at_once = crate::fanout::plan::checks_at_once(nodes.len());
    let served = crate::fanout::plan::bounded(jobs, at_once, |(addr, plan)| async move {
        let (sni, versions) = &*plan;
        served::check(&addr, sni.as_deref(), versions, Duration::ZERO).await
    })
    .await;
    for ((index, ..), check) in probes.iter().zip(served) {
        let Some(check) = check else { continue };
        let row = &mut rows[*index];
        row.served = Some(check.served.word().to_ascii_lowercase());
        row.served_fingerprint = check.fingerprint;
        row.served_not_after = check.not_after;
        if let Served::None { error } = check.served {
            row.served_error = Some(error);
        }
    }

    let mut overall = State::Ok;
    for row in &mut rows {
        let reference = primary[row.lineage.as_str()];
        row.drift = row.up
            && (row.pending
                || row.version != reference.version
                || row.fingerprint != reference.fingerprint
                // a node with `https = ""` serves nothing to compare (a certbot box)
                || (row.served.as_deref() != Some(Served::NoHttps.word())
                    && row.served_fingerprint != reference.fingerprint));
        judge(row, options, now);
        overall = overall.worst(row.state);
    }
    // A node that cannot be seen counts even when it has no row (this node holds no lineage,
    // or could not read its own), and always with its reason.
    let mut unknown = Vec::new();
    for n in &nodes {
        if let Err(e) = &n.result {
            overall = overall.worst(State::Unknown);
            unknown.push(Unknown {
                node: n.node.clone(),
                reason: e.to_string(),
            });
        }
    }
    // A lineage here whose name certherd cannot carry reaches no node: unseen, so UNKNOWN.
    if let Ok((_, refused)) = layout.lineages_and_refused() {
        for reason in refused {
            overall = overall.worst(State::Unknown);
            unknown.push(Unknown {
                node: config.node_name(),
                reason,
            });
        }
    }
    // This node's web server configs: a file root reads that an account may change is
    // root-equivalent (issue 20), CRITICAL until `certherd doctor`'s fix is applied.
    let mut exposed: Vec<Exposed> =
        crate::webconf::exposed_here(&[&config.reload.test, &config.reload.reload])
            .into_iter()
            .map(|(server, e)| Exposed {
                node: config.node_name(),
                server: server.name().to_owned(),
                file: e.file.display().to_string(),
                reason: e.describe(server),
            })
            .collect();
    exposed.extend(peer_exposed);
    if !exposed.is_empty() {
        overall = overall.worst(State::Critical);
    }
    Ok(Report {
        from: config.node_name(),
        checked_at: now,
        state: overall,
        rows,
        unknown,
        exposed,
    })
}

/// notAfter − notBefore of an installed certificate, when both are known.
fn lifetime(l: &LineageStatus) -> Option<i64> {
    Some(l.not_after? - l.not_before?).filter(|s| *s > 0)
}

/// A row's thresholds for its certificate's lifetime, and its state: UNKNOWN when the node could
/// not be asked; CRITICAL when the installed certificate is past `--crit` or missing, or when
/// what the node serves for a lineage it holds is nothing, expired, or past `--crit`; WARNING
/// past `--warn` or on drift. A share of an unknown lifetime (an old agent, an unreadable
/// certificate) is judged with the 90-day lifetime of the classic profile, never not at all.
fn judge(row: &mut Row, options: &StatusFlags, now: i64) {
    const CLASSIC: i64 = 90 * 86400;
    let lifetime = row.lifetime.unwrap_or(CLASSIC);
    row.warn_below = options.warn.seconds(Some(lifetime));
    row.crit_below = options.crit.seconds(Some(lifetime));
    row.left_share = row
        .expires_in
        .zip(row.lifetime)
        .map(|(left, life)| left as f64 / life as f64);
    if !row.up {
        row.state = State::Unknown;
        return;
    }
    let crit = row.crit_below.unwrap_or(0);
    let warn = row.warn_below.unwrap_or(0);
    let holds = row.version.is_some();
    // The installed certificate's own expiry is judged below; what is served is judged here
    // only when it is another certificate: expired, whatever it is (an old version, another
    // vhost's, another file); past the critical threshold, an old version of this lineage (a
    // certificate of no version has a lifetime of its own, which this row cannot judge).
    let other = row.served_fingerprint.is_some() && row.served_fingerprint != row.fingerprint;
    row.serving_problem = match (row.served.as_deref(), row.served_not_after) {
        (Some("none"), _) if holds => Some(format!(
            "serves no certificate for {}{}",
            row.served_name.as_deref().unwrap_or(&row.lineage),
            row.served_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )),
        (_, Some(t)) if other && t <= now => Some(format!(
            "serves an expired certificate (expired {} ago)",
            left(now - t)
        )),
        (Some("old"), Some(t)) if other && t - now < crit => Some(format!(
            "serves a certificate that expires in {} (critical below {})",
            left(t - now),
            left(crit)
        )),
        _ => None,
    };
    let remaining = row.expires_in.unwrap_or(i64::MIN);
    row.state = if remaining < crit || row.serving_problem.is_some() {
        State::Critical
    } else if remaining < warn || row.drift {
        State::Warning
    } else {
        State::Ok
    };
}

/// What a peer's agent says about its own web server config: outside text, so at most
/// [`ConfigExposure::MAX`] entries, each field on one escaped, bounded line, and a server name
/// only from the known ones.
fn peer_exposures(node: &str, exposed: &[ConfigExposure]) -> Vec<Exposed> {
    exposed
        .iter()
        .take(ConfigExposure::MAX)
        .map(|x| Exposed {
            node: node.to_owned(),
            server: match x.server.as_str() {
                "nginx" | "apache" => x.server.clone(),
                _ => "web server".to_owned(),
            },
            file: crate::text::one_line(&x.file, 400),
            reason: crate::text::one_line(&x.reason, 600),
        })
        .collect()
}

/// Whether `node` should hold `lineage`: this node holds every lineage (its files are the
/// reference); a peer only those its `[[peers]] lineages` list admits, so a lineage it is never
/// sent is neither drift nor UNKNOWN there.
fn expected_on(config: &Config, node: &str, lineage: &str) -> bool {
    match config.managed_peers().find(|p| p.name == node) {
        Some(peer) => peer.receives(lineage),
        None => true,
    }
}

/// The name to check a lineage with and its versions' fingerprints, from this node's files.
fn check_plan(layout: &Layout, status: &LineageStatus) -> (Option<String>, Versions) {
    let Ok(lineage) = LineageName::parse(&status.lineage) else {
        return (None, Versions::default());
    };
    let name = std::fs::read_to_string(layout.live_dir(&lineage).join("cert.pem"))
        .ok()
        .and_then(|pem| crate::pem::first_cert_der(&pem))
        .and_then(|der| served::check_name_for(&der));
    let versions = Versions::read(
        layout,
        &lineage,
        status.version.unwrap_or(0),
        status.fingerprint.as_deref().unwrap_or(""),
    );
    (name, versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's answer is hostile input: bounded in count, one escaped line per field, a server
    /// name only from the known ones.
    #[test]
    fn peer_exposures_are_bounded_and_escaped() {
        let hostile = ConfigExposure {
            server: "nginx\nCERTHERD OK".into(),
            file: format!("/etc/x\nOK: all fine\u{1b}[2J{}", "y".repeat(10_000)),
            reason: "r\r\nforged".into(),
        };
        let got = peer_exposures("web2", &vec![hostile; 1000]);
        assert_eq!(got.len(), ConfigExposure::MAX);
        let x = &got[0];
        assert_eq!((x.node.as_str(), x.server.as_str()), ("web2", "web server"));
        assert!(x.file.len() <= 450 && !x.file.contains('\n') && !x.file.contains('\u{1b}'));
        assert!(!x.reason.contains('\n') && !x.reason.contains('\r'));
    }
}
