//! `deploy` and `sync` as JSON: one object with a typed row per node, read with serde, so tests
//! and scripts need not parse the table.
//!
//! Proves Guarantees 2 and 3 of docs/GUARANTEES.md through the typed rows: a failed config test
//! is named as `test_failed` on that node only (its agent's `error_kind`), the node stays on its
//! previous certificate, the others take the new one; `sync` catches the node up and a second
//! `sync` reports every node `unchanged`.

mod common;
use common::*;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deployment {
    lineage: String,
    version: u32,
    not_after: i64,
    ok: bool,
    nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Node {
    node: String,
    optional: bool,
    ok: bool,
    before: Option<u32>,
    after: Option<u32>,
    install: String,
    error_kind: Option<String>,
    served: String,
    checked: Option<String>,
    served_fingerprint: Option<String>,
    /// A split brain `sync` resolved on the node (tests/split_brain.rs checks it).
    split_brain: Option<serde_json::Value>,
    error: Option<String>,
    elapsed_ms: u64,
    /// How a peer was reached (tests/output_formats.rs checks it); null for this node.
    ssh: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sync {
    ok: bool,
    lineages: Vec<Deployment>,
}

fn json<T: serde::de::DeserializeOwned>(out: &std::process::Output) -> T {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}):\n{}", text(out)))
}

fn node<'a>(d: &'a Deployment, name: &str) -> &'a Node {
    d.nodes
        .iter()
        .find(|n| n.node == name)
        .unwrap_or_else(|| panic!("no row for {name} in {d:?}"))
}

#[test]
fn deploy_and_sync_report_typed_rows_as_json() {
    let bed = issued_bed();

    // A re-run: this node reloads, every peer is already current.
    let out = bed
        .certherd(1, &["deploy", "--lineage", "site.test", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let d: Deployment = json(&out);
    assert!(d.ok, "{d:?}");
    assert_eq!((d.lineage.as_str(), d.version), ("site.test", 1));
    assert!(d.not_after > 0);
    let names: Vec<&str> = d.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3"], "this node first");
    assert_eq!(node(&d, "node1").install, "ok");
    assert!(node(&d, "node1").ssh.is_none(), "this node needs no ssh");
    assert!(node(&d, "node2").ssh.is_some() && node(&d, "node3").ssh.is_some());
    for n in &d.nodes {
        assert!(n.ok && !n.optional && n.error.is_none(), "{n:?}");
        assert_eq!((n.served.as_str(), n.after), ("new", Some(1)), "{n:?}");
        assert_eq!(n.checked.as_deref(), Some("site.test"), "{n:?}");
        assert!(n.served_fingerprint.is_some(), "{n:?}");
        assert!(n.split_brain.is_none(), "no split brain here: {n:?}");
        assert!(n.elapsed_ms < 60_000, "{n:?}");
    }
    for peer in ["node2", "node3"] {
        let n = node(&d, peer);
        assert_eq!(
            (n.install.as_str(), n.before),
            ("unchanged", Some(1)),
            "{n:?}"
        );
    }

    // node3's config test fails: typed as test_failed there, the others take version 2.
    let acme = bed.node_dir(3).join("nginx/acme.conf");
    let good = std::fs::read_to_string(&acme).unwrap();
    std::fs::write(&acme, format!("{good}\nthis_is_not_a_directive on;\n")).unwrap();
    // certbot's own deploy hook fails on node3 too; the run below reads the same outcome.
    let renewed = bed.certbot(&["renew", "--force-renewal", "--no-random-sleep-on-renew"]);
    assert!(renewed.status.success(), "{}", text(&renewed));
    let out = bed
        .certherd(1, &["deploy", "--lineage", "site.test", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d: Deployment = json(&out);
    assert!(!d.ok, "{d:?}");
    assert_eq!(d.version, 2);
    let broken = node(&d, "node3");
    assert!(!broken.ok, "{broken:?}");
    assert_eq!(broken.install, "test_failed", "{broken:?}");
    assert_eq!(
        broken.error_kind.as_deref(),
        Some("test_failed"),
        "{broken:?}"
    );
    assert_eq!(broken.served, "old", "still on its previous certificate");
    assert!(
        broken
            .error
            .as_deref()
            .is_some_and(|e| e.contains("this_is_not_a_directive")),
        "{broken:?}"
    );
    for peer in ["node1", "node2"] {
        let n = node(&d, peer);
        assert!(n.ok, "{n:?}");
        assert_eq!((n.served.as_str(), n.after), ("new", Some(2)), "{n:?}");
    }

    // Fixed, `sync` catches node3 up; a second `sync` has nothing to do anywhere.
    std::fs::write(&acme, &good).unwrap();
    let out = bed
        .certherd(1, &["sync", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s: Sync = json(&out);
    assert!(s.ok && s.lineages.len() == 1, "{s:?}");
    let n = node(&s.lineages[0], "node3");
    assert_eq!((n.install.as_str(), n.after), ("ok", Some(2)), "{n:?}");
    assert_eq!(n.served, "new", "{n:?}");

    let out = bed
        .certherd(1, &["sync", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s: Sync = json(&out);
    assert!(s.ok, "{s:?}");
    for n in &s.lineages[0].nodes {
        assert_eq!(n.install, "unchanged", "{n:?}");
    }

    // Every push left one receipt per node where something happened in node 1's deploy log:
    // the failed test on node 3, the sync that caught it up; the last sync, which changed
    // nothing anywhere, left none (an hourly sync must not rotate the history away).
    let log = bed.letsencrypt_dir(1).join(".certherd/receipts.jsonl");
    let receipts: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("no deploy log {}: {e}", log.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let v2 = s.lineages[0].nodes[0].served_fingerprint.clone().unwrap();
    let find = |event: &str, install: &str| {
        receipts.iter().find(|r| {
            r["event"] == event
                && r["node"] == "node3"
                && r["install"] == install
                && r["version"] == 2
        })
    };
    let failed = find("deploy", "test_failed").unwrap_or_else(|| panic!("{receipts:#?}"));
    assert_eq!(failed["served"], "old", "{failed}");
    let caught_up = find("sync", "ok").unwrap_or_else(|| panic!("{receipts:#?}"));
    assert_eq!(
        (&caught_up["before"], &caught_up["after"]),
        (&1.into(), &2.into())
    );
    let last = receipts.last().unwrap();
    assert_eq!(last, caught_up, "the no-op sync wrote receipts");
    assert!(
        receipts.iter().all(|r| r["install"] != "unchanged"),
        "{receipts:#?}"
    );
    for r in [failed, caught_up] {
        assert_eq!(r["from"], "node1", "{r}");
        assert_eq!(r["lineage"], "site.test", "{r}");
        assert_eq!(r["fingerprint"].as_str(), Some(v2.as_str()), "{r}");
        assert!(r["at"].as_i64().is_some_and(|t| t > 1_700_000_000), "{r}");
    }
}
