//! The report of a certificate push ([`crate::fanout::certs`]): the table (default), one JSON
//! object with typed per-node rows (`--format json`), the log lines for failed or unused nodes,
//! and the alert.

use serde::Serialize;

use crate::alert::{DeployAlert, NodeAlert};
use crate::config::Config;
use crate::fanout::certs::{Deployment, Row};
use crate::served::Served;
use crate::wire::{ErrorKind, SplitBrainKept};

pub use super::nodes::Format;
use super::nodes::NodeJson;

/// The install step of one node, as a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallState {
    /// A new version was installed (or this node reloaded).
    Ok,
    /// Already current: nothing ran.
    Unchanged,
    /// The node's config test failed; its previous certificate was restored.
    TestFailed,
    /// The reload failed after a passing test.
    ReloadFailed,
    /// A `[[deploy]]` action's own test failed (the lineage is installed); that action's
    /// previous combined PEM was put back.
    ActionTestFailed,
    /// A `[[deploy]]` action's reload failed after its test passed.
    ActionReloadFailed,
    /// The node holds another version under the same number (both sides renewed during a split
    /// brain); nothing was overwritten. `sync` resolves it.
    SplitBrain,
    /// Anything else (connection, refusal, verification, standby).
    Failed,
}

impl InstallState {
    fn of(row: &Row) -> Self {
        match &row.result.install {
            Ok(true) => InstallState::Ok,
            Ok(false) => InstallState::Unchanged,
            Err(e) => match e.kind() {
                Some(ErrorKind::TestFailed) => InstallState::TestFailed,
                Some(ErrorKind::ReloadFailed) => InstallState::ReloadFailed,
                Some(ErrorKind::ActionTestFailed) => InstallState::ActionTestFailed,
                Some(ErrorKind::ActionReloadFailed) => InstallState::ActionReloadFailed,
                Some(ErrorKind::SplitBrain) => InstallState::SplitBrain,
                _ => InstallState::Failed,
            },
        }
    }

    fn word(self) -> &'static str {
        match self {
            InstallState::Ok => "ok",
            InstallState::Unchanged => "unchanged",
            InstallState::TestFailed => "TEST-FAIL",
            InstallState::ReloadFailed => "RELOAD-FAIL",
            InstallState::ActionTestFailed => "ACTION-TEST-FAIL",
            InstallState::ActionReloadFailed => "ACTION-RELOAD-FAIL",
            InstallState::SplitBrain => "SPLIT-BRAIN",
            InstallState::Failed => "FAILED",
        }
    }
}

/// A `deploy`/`sync` node's own fields in the JSON report (the common ones are
/// [`NodeJson`]'s).
#[derive(Debug, Clone, Serialize)]
pub struct InstallJson {
    /// Version before (null: unknown).
    pub before: Option<u32>,
    /// Version after (null: unknown).
    pub after: Option<u32>,
    /// The install step.
    pub install: InstallState,
    /// The agent's error class when its agent refused or failed the install.
    pub error_kind: Option<ErrorKind>,
    /// What the node serves: `new`, `old`, `unused` or `none`.
    pub served: String,
    /// The name it was asked for (SNI).
    pub checked: Option<String>,
    /// SHA-256 of the certificate it serves.
    pub served_fingerprint: Option<String>,
    /// A split brain this push resolved on the node (`sync`): its own version, both leaf
    /// fingerprints and where it was kept. Null otherwise (a refused one is `install:
    /// "split_brain"`, its message naming both fingerprints).
    pub split_brain: Option<SplitBrainKept>,
}

/// One lineage's push in the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentJson {
    /// The lineage.
    pub lineage: String,
    /// The version pushed.
    pub version: u32,
    /// The certificate's expiry (Unix seconds).
    pub not_after: i64,
    /// Every required node installed and serves the version.
    pub ok: bool,
    /// This node, then every managed peer.
    pub nodes: Vec<NodeJson<InstallJson>>,
}

impl DeploymentJson {
    /// The typed rows of one push.
    pub fn of(d: &Deployment) -> Self {
        let nodes: Vec<NodeJson<InstallJson>> = d
            .rows
            .iter()
            .map(|r| {
                let step = InstallJson {
                    before: r.result.before,
                    after: r.result.after,
                    install: InstallState::of(r),
                    error_kind: r.result.install.as_ref().err().and_then(|e| e.kind()),
                    served: r.result.served.served.word().to_ascii_lowercase(),
                    checked: r.result.served.name.clone(),
                    served_fingerprint: r.result.served.fingerprint.clone(),
                    split_brain: r.result.split_brain.clone(),
                };
                NodeJson::of(r, r.ok(), step, r.failure())
            })
            .collect();
        DeploymentJson {
            lineage: d.lineage.to_string(),
            version: d.version,
            not_after: d.not_after,
            ok: d.everywhere(),
            nodes,
        }
    }
}

/// The table of one push.
pub fn table(d: &Deployment) -> String {
    let v = |x: Option<u32>| x.map_or("-".to_owned(), |v| v.to_string());
    let mut out = format!("{} version {}\n", d.lineage, d.version);
    out.push_str(&format!(
        "{:<16} {:>6} {:>6}  {:<10} {:<8} {:>7}  CHECKED\n",
        "NODE", "BEFORE", "AFTER", "INSTALL", "SERVED", "TIME"
    ));
    for r in &d.rows {
        out.push_str(&format!(
            "{:<16} {:>6} {:>6}  {:<10} {:<8} {:>6.1}s  {}\n",
            r.node,
            v(r.result.before),
            v(r.result.after),
            InstallState::of(r).word(),
            r.result.served.served.word(),
            r.elapsed.as_secs_f64(),
            r.result.served.name.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// Logs, per node, a lineage no server block uses yet (a warning) and every failure (an error,
/// or a warning on an optional node).
pub fn log_nodes(d: &Deployment, event: &str) {
    let lineage = &d.lineage;
    for r in &d.rows {
        if let (Ok(_), Served::Unused { .. }) = (&r.result.install, &r.result.served.served) {
            crate::warn!(
                "{}: {lineage} is not in use for {}: the node serves another certificate \
                 (no server block uses live/{lineage}/ yet?); not a failure",
                r.node,
                r.result.served.name.as_deref().unwrap_or("-")
            );
        }
        if let Some(k) = &r.result.split_brain {
            crate::warn!(
                "{}: split brain on {lineage} version {} resolved: the node's own version {} \
                 (leaf sha256 {}) kept in {}, the primary's (leaf sha256 {}) installed",
                r.node,
                k.version,
                k.version,
                k.ours.as_deref().unwrap_or("unknown"),
                k.kept,
                k.theirs
            );
        }
        if let Some(why) = r.failure() {
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
}

/// The alert for one push.
pub fn alert(d: &Deployment, event: &'static str, from: String) -> DeployAlert {
    DeployAlert::new(
        event,
        from,
        d.lineage.to_string(),
        d.version,
        Some(d.not_after),
        d.rows
            .iter()
            .map(|r| NodeAlert {
                node: r.node.clone(),
                ok: r.ok(),
                required: !r.optional,
                before: r.result.before,
                version: r.result.after,
                duration_ms: r.elapsed.as_millis() as u64,
                error: r.failure(),
            })
            .collect(),
    )
}

/// The ONE alert of a run that pushed many lineages (`sync`): per node, ok when it installed
/// and serves every lineage it receives, else the failing lineages and why. The lineage field
/// names the one lineage, or how many; the version is the one lineage's (0 for several).
pub fn batch_alert(ds: &[Deployment], event: &'static str, from: String) -> DeployAlert {
    let mut nodes: Vec<NodeAlert> = Vec::new();
    for d in ds {
        for r in &d.rows {
            let i = match nodes.iter().position(|n| n.node == r.node) {
                Some(i) => i,
                None => {
                    nodes.push(NodeAlert {
                        node: r.node.clone(),
                        ok: true,
                        required: !r.optional,
                        before: r.result.before,
                        version: r.result.after,
                        duration_ms: 0,
                        error: None,
                    });
                    nodes.len() - 1
                }
            };
            let n = &mut nodes[i];
            n.duration_ms = n.duration_ms.max(r.elapsed.as_millis() as u64);
            if let Some(why) = r.failure() {
                n.ok = false;
                let line = format!("{}: {why}", d.lineage);
                n.error = Some(match n.error.take() {
                    // Bounded: a node failing 1,000 lineages is one readable alert.
                    Some(e) if e.len() > 1500 => e,
                    Some(e) => format!("{e}; {line}"),
                    None => line,
                });
            }
        }
    }
    let (lineage, version, not_after) = match ds {
        [d] => (d.lineage.to_string(), d.version, Some(d.not_after)),
        _ => (format!("{} lineages", ds.len()), 0, None),
    };
    DeployAlert::new(event, from, lineage, version, not_after, nodes)
}

/// Logs each push node by node and sends ONE alert for all of them (failed, or always with
/// `on_success`); returns whether every required node installed and serves every lineage.
pub async fn publish_batch(config: &Config, ds: &[Deployment], event: &'static str) -> bool {
    for d in ds {
        record(config, d, event);
    }
    let alert = batch_alert(ds, event, config.node_name());
    crate::alert::send(&config.alert, &alert).await;
    alert.ok
}

/// Logs the push node by node and sends its alert (failed, or always with `on_success`);
/// returns whether every required node installed and serves the version.
pub async fn publish(config: &Config, d: &Deployment, event: &'static str) -> bool {
    record(config, d, event);
    let alert = alert(d, event, config.node_name());
    crate::alert::send(&config.alert, &alert).await;
    alert.ok
}

/// What every push leaves behind, alert aside: the log lines of its nodes and timings, and its
/// receipts in the deploy log.
fn record(config: &Config, d: &Deployment, event: &str) {
    log_nodes(d, event);
    super::nodes::log_timings(&d.rows, event);
    let json = DeploymentJson::of(d);
    let push = super::receipts::Push {
        lineage: &d.lineage,
        version: d.version,
        not_after: d.not_after,
        nodes: json
            .nodes
            .iter()
            .filter(|n| !n.ok || n.step.install != InstallState::Unchanged)
            .collect(),
    };
    super::receipts::append(config, &push, event);
}
