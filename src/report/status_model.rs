//! The data of `certherd status`, apart from how it is rendered: the output formats, the
//! monitoring states and the report (node × lineage rows, nodes that could not be seen, exposed
//! config files). Its own module so that every renderer — status.rs's table, JSON, InfluxDB and
//! Prometheus, nagios.rs's plugin output — imports it from below, and none imports another.

use std::time::UNIX_EPOCH;

use serde::Serialize;

/// Output formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human table.
    #[default]
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
