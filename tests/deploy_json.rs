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

/// The row of `name` in `d`, a report of `ran` (whose transcript a missing row prints).
fn node<'a>(ran: &Ran, d: &'a Deployment, name: &str) -> &'a Node {
    d.nodes
        .iter()
        .find(|n| n.node == name)
        .unwrap_or_else(|| ran.fail(&format!("no row for {name} in {d:?}")))
}

#[test]
fn deploy_and_sync_report_typed_rows_as_json() {
    let bed = issued_bed();

    // A re-run: this node reloads, every peer is already current.
    let ran = bed
        .node(1)
        .certherd(["deploy", "--lineage", "site.test", "--format", "json"])
        .run();
    let d: Deployment = ran.json();
    ran.ensure(d.ok, "ok: true");
    ran.ensure(
        (d.lineage.as_str(), d.version) == ("site.test", 1),
        "lineage site.test, version 1",
    );
    ran.ensure(d.not_after > 0, "a not_after");
    let names: Vec<&str> = d.nodes.iter().map(|n| n.node.as_str()).collect();
    ran.ensure(
        names == ["node1", "node2", "node3"],
        "rows node1, node2, node3: this node first",
    );
    ran.ensure(node(&ran, &d, "node1").install == "ok", "node1 install ok");
    ran.ensure(
        node(&ran, &d, "node1").ssh.is_none(),
        "this node needs no ssh",
    );
    ran.ensure(
        node(&ran, &d, "node2").ssh.is_some() && node(&ran, &d, "node3").ssh.is_some(),
        "node2 and node3 say how they were reached",
    );
    for n in &d.nodes {
        ran.ensure(
            n.ok && !n.optional && n.error.is_none(),
            format!("{n:?}: ok, required, no error"),
        );
        ran.ensure(
            (n.served.as_str(), n.after) == ("new", Some(1)),
            format!("{n:?}: serves the new version 1"),
        );
        ran.ensure(
            n.checked.as_deref() == Some("site.test"),
            format!("{n:?}: checked site.test"),
        );
        ran.ensure(
            n.served_fingerprint.is_some(),
            format!("{n:?}: a served fingerprint"),
        );
        ran.ensure(
            n.split_brain.is_none(),
            format!("no split brain here: {n:?}"),
        );
        ran.ensure(n.elapsed_ms < 60_000, format!("{n:?}: under 60 s"));
    }
    for peer in ["node2", "node3"] {
        let n = node(&ran, &d, peer);
        ran.ensure(
            (n.install.as_str(), n.before) == ("unchanged", Some(1)),
            format!("{n:?}: unchanged, on version 1 before"),
        );
    }

    // node3's config test fails: typed as test_failed there, the others take version 2.
    let acme = bed.node_dir(3).join("nginx/acme.conf");
    let good = std::fs::read_to_string(&acme).unwrap();
    std::fs::write(&acme, format!("{good}\nthis_is_not_a_directive on;\n")).unwrap();
    // certbot's own deploy hook fails on node3 too; the run below reads the same outcome.
    bed.node(1)
        .certbot(["renew", "--force-renewal", "--no-random-sleep-on-renew"])
        .run();
    let ran = bed
        .node(1)
        .certherd(["deploy", "--lineage", "site.test", "--format", "json"])
        .expect_status(1)
        .run();
    let d: Deployment = ran.json();
    ran.ensure(!d.ok, "ok: false");
    ran.ensure(d.version == 2, "version 2");
    let broken = node(&ran, &d, "node3");
    ran.ensure(!broken.ok, format!("{broken:?}: not ok"));
    ran.ensure(
        broken.install == "test_failed",
        format!("{broken:?}: install test_failed"),
    );
    ran.ensure(
        broken.error_kind.as_deref() == Some("test_failed"),
        format!("{broken:?}: error_kind test_failed"),
    );
    ran.ensure(
        broken.served == "old",
        "node3 still on its previous certificate",
    );
    ran.ensure(
        broken
            .error
            .as_deref()
            .is_some_and(|e| e.contains("this_is_not_a_directive")),
        format!("{broken:?}: the error names this_is_not_a_directive"),
    );
    for peer in ["node1", "node2"] {
        let n = node(&ran, &d, peer);
        ran.ensure(n.ok, format!("{n:?}: ok"));
        ran.ensure(
            (n.served.as_str(), n.after) == ("new", Some(2)),
            format!("{n:?}: serves the new version 2"),
        );
    }

    // Fixed, `sync` catches node3 up; a second `sync` has nothing to do anywhere.
    std::fs::write(&acme, &good).unwrap();
    let ran = bed.node(1).certherd(["sync", "--format", "json"]).run();
    let s: Sync = ran.json();
    ran.ensure(s.ok && s.lineages.len() == 1, "ok, one lineage");
    let n = node(&ran, &s.lineages[0], "node3");
    ran.ensure(
        (n.install.as_str(), n.after) == ("ok", Some(2)),
        format!("{n:?}: installed version 2"),
    );
    ran.ensure(n.served == "new", format!("{n:?}: serves the new one"));

    let ran = bed.node(1).certherd(["sync", "--format", "json"]).run();
    let s: Sync = ran.json();
    ran.ensure(s.ok, "ok: true");
    ran.ensure(!s.lineages.is_empty(), "a lineage");
    for n in &s.lineages[0].nodes {
        ran.ensure(n.install == "unchanged", format!("{n:?}: unchanged"));
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
