//! `certherd sync --format json` as the batch tests read it: the report and one node's row of
//! one lineage (`tests/batch.rs`, `tests/canary.rs`).

use certherd_testbed::Bed;

use super::exec::Nodes;

/// `certherd sync --format json ARGS…` on node 1: its exit code, report and stderr.
pub fn sync(bed: &Bed, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut argv = vec!["sync", "--format", "json"];
    argv.extend_from_slice(args);
    let ran = bed.node(1).certherd(argv).any_status().run();
    let json = ran.json();
    (ran.code(), json, ran.stderr())
}

/// The row of `node` for `lineage` in a sync report.
pub fn row<'a>(json: &'a serde_json::Value, lineage: &str, node: &str) -> &'a serde_json::Value {
    json["lineages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["lineage"] == lineage)
        .unwrap_or_else(|| panic!("no {lineage} in {json:#}"))["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == node)
        .unwrap_or_else(|| panic!("no {node} row for {lineage}"))
}
