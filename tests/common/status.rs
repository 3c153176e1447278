//! `certherd status --format json` as typed rows (docs/REFERENCE.md, "status as JSON"): the
//! tests read fields, never scrape the table. Unknown fields are ignored, so a field added to the
//! report breaks no test; a field renamed or removed fails every test that reads the report.

use serde::Deserialize;

/// The whole report.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusReport {
    pub from: String,
    pub checked_at: i64,
    pub state: State,
    pub rows: Vec<StatusRow>,
    pub unknown: Vec<Unknown>,
    pub exposed: Vec<Exposed>,
}

/// Monitoring-plugin states (the exit code of `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

/// One node × lineage.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusRow {
    pub node: String,
    pub lineage: String,
    pub up: bool,
    pub error: Option<String>,
    pub version: Option<u32>,
    pub fingerprint: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<i64>,
    pub expires_in: Option<i64>,
    pub served_name: Option<String>,
    pub served: Option<String>,
    pub served_fingerprint: Option<String>,
    pub served_error: Option<String>,
    pub serving_problem: Option<String>,
    pub pending: bool,
    pub drift: bool,
    pub state: State,
}

/// A node that could not be asked, and why.
#[derive(Debug, Clone, Deserialize)]
pub struct Unknown {
    pub node: String,
    pub reason: String,
}

/// A web server config file a non-root account may change.
#[derive(Debug, Clone, Deserialize)]
pub struct Exposed {
    pub node: String,
    pub server: String,
    pub file: String,
    pub reason: String,
}

impl StatusReport {
    /// The row of `node` (e.g. "node2") for `lineage`; panics naming both and the report.
    pub fn row(&self, node: &str, lineage: &str) -> &StatusRow {
        self.rows
            .iter()
            .find(|r| r.node == node && r.lineage == lineage)
            .unwrap_or_else(|| panic!("no status row for {node} × {lineage} in {self:#?}"))
    }

    /// The rows of `node`, any lineage.
    pub fn rows_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a StatusRow> + 'a {
        self.rows.iter().filter(move |r| r.node == node)
    }
}

/// `certherd status --format json` on node 1 of `bed`, whatever its exit code (the state is in
/// the report): the run, for its transcript, and the typed report.
#[track_caller]
pub fn status_report(bed: &certherd_testbed::Bed) -> (super::exec::Ran, StatusReport) {
    use super::exec::Nodes;
    let ran = bed
        .node(1)
        .certherd(["status", "--format", "json"])
        .any_status()
        .run();
    let report = ran.json();
    (ran, report)
}
