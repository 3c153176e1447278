//! The report of `certherd status`: rows of node × lineage as a table, JSON, InfluxDB lines or
//! Prometheus text, and the monitoring-plugin states.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::text::{influx_string, influx_tag, one_line, prometheus_label as label};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human table.
    Table,
    /// One JSON document.
    Json,
    /// InfluxDB line protocol (Telegraf inputs.exec).
    Influx,
    /// Prometheus text exposition (node_exporter textfile collector).
    Prometheus,
    /// Monitoring-plugin output (Nagios, Icinga): state line with perfdata, then one line per
    /// problem.
    Nagios,
}

/// Monitoring-plugin states; the numeric value is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// 0: everything current and far from expiry.
    Ok = 0,
    /// 1: expires within `--warn`, or a node drifted from this one.
    Warning = 1,
    /// 2: expires within `--crit`, or a node serves nothing or an expired certificate.
    Critical = 2,
    /// 3: a node could not be asked.
    Unknown = 3,
}

impl State {
    /// Severity for combining: critical > unknown > warning > ok.
    fn rank(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Unknown => 2,
            State::Critical => 3,
        }
    }

    /// The worse of two states.
    pub fn worst(self, other: State) -> State {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// One node × lineage.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Node name.
    pub node: String,
    /// Lineage name.
    pub lineage: String,
    /// The node's agent answered (always true for this node).
    pub up: bool,
    /// Why it is not up.
    pub error: Option<String>,
    /// Installed version (None: missing or links disagree).
    pub version: Option<u32>,
    /// Installed certificate's SHA-256.
    pub fingerprint: Option<String>,
    /// Installed certificate's serial.
    pub serial: Option<String>,
    /// Installed certificate's expiry, Unix seconds.
    pub not_after: Option<i64>,
    /// Seconds until expiry.
    pub expires_in: Option<i64>,
    /// The installed certificate's own lifetime (notAfter − notBefore), seconds.
    pub lifetime: Option<i64>,
    /// The share of that lifetime left (`expires_in / lifetime`, 0 to 1; negative once expired).
    pub left_share: Option<f64>,
    /// Seconds left below which this row is WARNING: `--warn` for this certificate's lifetime.
    pub warn_below: Option<i64>,
    /// Seconds left below which this row is CRITICAL: `--crit` for this certificate's lifetime.
    pub crit_below: Option<i64>,
    /// The name sent as SNI: from the primary's current certificate (see [`crate::served`]).
    pub served_name: Option<String>,
    /// What the node serves for it: `new` (the primary's current version), `old` (an older
    /// version of the lineage), `unused` (no version of it: no server block uses the lineage
    /// yet), `none` (nothing).
    pub served: Option<String>,
    /// SHA-256 of the certificate the node serves for `served_name`.
    pub served_fingerprint: Option<String>,
    /// Why nothing was served.
    pub served_error: Option<String>,
    /// notAfter of the certificate the node serves for `served_name` (Unix seconds).
    pub served_not_after: Option<i64>,
    /// Why what the node serves makes the row CRITICAL: nothing served for a lineage it holds,
    /// an expired certificate, or one past the critical threshold.
    pub serving_problem: Option<String>,
    /// An install on the node stopped between moving its links and its reload.
    pub pending: bool,
    /// Differs from this node (version, certificate or what is served), or has a pending install.
    pub drift: bool,
    /// This row's state.
    pub state: State,
}

/// A node whose certificates could not be seen, and why (UNKNOWN is never reported without it).
#[derive(Debug, Clone, Serialize)]
pub struct Unknown {
    /// Node name.
    pub node: String,
    /// What could not be seen, and why, on one line.
    pub reason: String,
}

/// A file root's web server reads as configuration (or loads) that a non-root account may
/// change on a node: root-equivalent, so CRITICAL whatever the certificates say (issue 20).
#[derive(Debug, Clone, Serialize)]
pub struct Exposed {
    /// Node name.
    pub node: String,
    /// `nginx` or `apache`.
    pub server: String,
    /// The file (or directory) as the server names it.
    pub file: String,
    /// What root reads, where it is named and who may change it, on one line.
    pub reason: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The node that ran the check.
    pub from: String,
    /// Unix seconds.
    pub checked_at: i64,
    /// Worst state over all rows.
    pub state: State,
    /// Node × lineage.
    pub rows: Vec<Row>,
    /// Every node that could not be seen, with the reason: printed in every format, so a
    /// monitoring UNKNOWN always says which node and why (also without `-v`).
    pub unknown: Vec<Unknown>,
    /// Web server config files root reads that a non-root account may change (this node's:
    /// `certherd doctor` gives the fix). Any of them makes the report CRITICAL.
    pub exposed: Vec<Exposed>,
}

impl Report {
    /// The report of a `status` that could not run at all (its config, say): UNKNOWN for this
    /// host, with the reason, and no rows.
    pub fn failed(reason: &str) -> Report {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        Report {
            from: host.clone(),
            checked_at: std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            state: State::Unknown,
            rows: Vec::new(),
            unknown: vec![Unknown {
                node: host,
                reason: reason.to_owned(),
            }],
            exposed: Vec::new(),
        }
    }
}

/// The plugin's one line when `status` could not check at all (see [`super::nagios::unknown`]).
pub fn nagios_unknown(message: &str) -> String {
    super::nagios::unknown(message)
}

/// The whole output of a `status` that could not check at all, in the format asked for:
/// UNKNOWN for this host with the reason (the plugin's one UNKNOWN line under nagios).
pub fn render_failed(reason: &str, format: Format) -> String {
    match format {
        Format::Nagios => nagios_unknown(reason) + "\n",
        other => render(&Report::failed(reason), other),
    }
}

/// Formats the report; each row carries the thresholds it was judged with.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Nagios => super::nagios::render(report),
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Table => table(report),
        Format::Influx => influx(report),
        Format::Prometheus => prometheus(report),
    }
}

fn short(fp: &Option<String>) -> String {
    fp.as_deref()
        .map_or("-".into(), |f| f[..f.len().min(12)].to_owned())
}

fn table(report: &Report) -> String {
    let mut out = format!(
        "{:<14} {:<24} {:>7} {:<20} {:>9} {:<12} {:<12} {:<16} CHECKED\n",
        "NODE", "LINEAGE", "VERSION", "NOT_AFTER", "EXPIRES", "INSTALLED", "SERVED", "STATE"
    );
    for r in &report.rows {
        let not_after = r.not_after.map_or("-".into(), |t| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.max(0) as u64))
                .to_string()
        });
        let expires = r.expires_in.map_or("-".into(), super::expiry::left);
        let served = match (r.up, r.served.as_deref()) {
            (false, _) => "DOWN".to_owned(),
            (true, Some("old")) => "OLD".to_owned(),
            (true, Some(word @ ("new" | "unused" | "no-https"))) => word.to_owned(),
            _ => "NONE".to_owned(),
        };
        let state = format!(
            "{:?}{}{}",
            r.state,
            if r.drift { " drift" } else { "" },
            if r.pending { " pending" } else { "" }
        )
        .to_uppercase();
        out.push_str(&format!(
            "{:<14} {:<24} {:>7} {:<20} {:>9} {:<12} {:<12} {:<16} {}\n",
            r.node,
            r.lineage,
            r.version.map_or("-".into(), |v| v.to_string()),
            not_after,
            expires,
            short(&r.fingerprint),
            served,
            state,
            r.served_name.as_deref().unwrap_or("-")
        ));
        if let Some(e) = &r.error {
            out.push_str(&format!("  {}: {e}\n", r.node));
        }
        if let Some(p) = &r.serving_problem {
            out.push_str(&format!("  {}: critical: {p}\n", r.node));
        }
        if r.up && r.served.as_deref() == Some("unused") {
            out.push_str(&format!(
                "  {}: warning: {} is not in use: the node serves another certificate ({}) for {}; no server block uses live/{}/ yet?\n",
                r.node,
                r.lineage,
                short(&r.served_fingerprint),
                r.served_name.as_deref().unwrap_or("-"),
                r.lineage
            ));
        }
    }
    for x in &report.exposed {
        out.push_str(&format!(
            "CRITICAL {}: {} (fix: certherd doctor)\n",
            x.node,
            one_line(&x.reason, 600)
        ));
    }
    for u in &report.unknown {
        out.push_str(&format!(
            "UNKNOWN {}: {}\n",
            u.node,
            one_line(&u.reason, 400)
        ));
    }
    out.push_str(
        &format!("certherd status {:?}\n", report.state)
            .to_uppercase()
            .replace("CERTHERD STATUS", "certherd status"),
    );
    out
}

fn influx(report: &Report) -> String {
    let ns = report.checked_at as i128 * 1_000_000_000;
    let mut out = String::new();
    for r in &report.rows {
        let mut fields = vec![
            format!("up={}", r.up),
            format!("drift={}", r.drift),
            format!("state={}i", r.state as i32),
            format!(
                "served_match={}",
                r.served_fingerprint.is_some() && r.served_fingerprint == r.fingerprint
            ),
        ];
        if let Some(v) = r.version {
            fields.push(format!("version={v}i"));
        }
        if let Some(t) = r.not_after {
            fields.push(format!("not_after={t}i"));
        }
        if let Some(s) = r.expires_in {
            fields.push(format!("expires_in={s}i"));
        }
        if let Some(l) = r.lifetime {
            fields.push(format!("lifetime={l}i"));
        }
        if let Some(f) = r.left_share {
            fields.push(format!("left_share={f}"));
        }
        out.push_str(&format!(
            "certherd_status,node={},lineage={},from={} {} {ns}\n",
            influx_tag(&r.node),
            influx_tag(&r.lineage),
            influx_tag(&report.from),
            fields.join(",")
        ));
    }
    for u in &report.unknown {
        out.push_str(&format!(
            "certherd_unknown,node={},from={} state=3i,reason=\"{}\" {ns}\n",
            influx_tag(&u.node),
            influx_tag(&report.from),
            influx_string(&one_line(&u.reason, 400))
        ));
    }
    for x in &report.exposed {
        out.push_str(&format!(
            "certherd_exposed,node={},server={},from={} state=2i,file=\"{}\",reason=\"{}\" {ns}\n",
            influx_tag(&x.node),
            influx_tag(&x.server),
            influx_tag(&report.from),
            influx_string(&one_line(&x.file, 400)),
            influx_string(&one_line(&x.reason, 600))
        ));
    }
    out
}

fn prometheus(report: &Report) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, values: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in values {
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
    };
    let labels = |r: &Row| {
        format!(
            "node=\"{}\",lineage=\"{}\"",
            label(&r.node),
            label(&r.lineage)
        )
    };
    let mut up: Vec<(String, f64)> = Vec::new();
    for r in &report.rows {
        let l = format!("node=\"{}\"", label(&r.node));
        if !up.iter().any(|(x, _)| *x == l) {
            up.push((l, if r.up { 1.0 } else { 0.0 }));
        }
    }
    metric(
        "certherd_node_up",
        "Whether the node's certherd agent answered.",
        up,
    );
    metric(
        "certherd_certificate_not_after_seconds",
        "Expiry of the installed certificate, Unix time.",
        report
            .rows
            .iter()
            .filter_map(|r| Some((labels(r), r.not_after? as f64)))
            .collect(),
    );
    metric(
        "certherd_certificate_lifetime_seconds",
        "The installed certificate's own lifetime, notAfter minus notBefore.",
        report
            .rows
            .iter()
            .filter_map(|r| Some((labels(r), r.lifetime? as f64)))
            .collect(),
    );
    metric(
        "certherd_certificate_left_ratio",
        "Share of the installed certificate's lifetime left (0 to 1).",
        report
            .rows
            .iter()
            .filter_map(|r| Some((labels(r), r.left_share?)))
            .collect(),
    );
    metric(
        "certherd_certificate_version",
        "Archive version the live symlinks name.",
        report
            .rows
            .iter()
            .filter_map(|r| Some((labels(r), r.version? as f64)))
            .collect(),
    );
    metric(
        "certherd_certificate_served_match",
        "1 when the node serves the certificate it has installed.",
        report
            .rows
            .iter()
            .filter(|r| r.up)
            .map(|r| {
                (
                    labels(r),
                    (r.served_fingerprint.is_some() && r.served_fingerprint == r.fingerprint) as u8
                        as f64,
                )
            })
            .collect(),
    );
    metric(
        "certherd_certificate_drift",
        "1 when the node differs from the node that ran the check.",
        report
            .rows
            .iter()
            .map(|r| (labels(r), r.drift as u8 as f64))
            .collect(),
    );
    metric(
        "certherd_node_unknown",
        "1 for a node whose certificates could not be seen; the reason is a label.",
        report
            .unknown
            .iter()
            .map(|u| {
                (
                    format!(
                        "node=\"{}\",reason=\"{}\"",
                        label(&u.node),
                        label(&one_line(&u.reason, 400))
                    ),
                    1.0,
                )
            })
            .collect(),
    );
    metric(
        "certherd_config_exposed",
        "1 for a file root's web server reads as configuration that a non-root account may change (root-equivalent; certherd doctor gives the fix).",
        report
            .exposed
            .iter()
            .map(|x| {
                (
                    format!(
                        "node=\"{}\",server=\"{}\",file=\"{}\"",
                        label(&x.node),
                        label(&x.server),
                        label(&one_line(&x.file, 400))
                    ),
                    1.0,
                )
            })
            .collect(),
    );
    metric(
        "certherd_status_state",
        "Overall monitoring state: 0 ok, 1 warning, 2 critical, 3 unknown.",
        vec![(
            format!("from=\"{}\"", label(&report.from)),
            report.state as i32 as f64,
        )],
    );
    out
}
