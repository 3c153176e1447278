//! A push works per node and carries every lineage the node needs (issue 19, item 1): `sync` of
//! many lineages opens one agent session per peer, stages them all, and each node runs its
//! config test ONCE and reloads ONCE. Counted on the real bed: the test through a wrapper of the
//! node's own `[reload] test` (nginx -t logs nowhere), the reloads from each nginx's own error
//! log at `notice` level (the master's "signal 1 (SIGHUP) received" line).
//!
//! Then the two ways a batch fails on a node: its nginx config broken (that node keeps serving
//! the old certificate of every lineage, the others take all of them, the failure names the
//! node, one sync after the fix completes), and one lineage whose new pair the node's config
//! rejects (found and named; every other lineage of the batch is served there).
//!
//! Proves guarantee 3 of docs/GUARANTEES.md (every node gets every lineage; `sync` catches up)
//! and guarantee 5 (a failing config test leaves the node on what it served) for batches.

mod common;
use common::cluster::pin_current_key;
use common::sync_report::{row, sync};
use common::*;

use certherd_testbed::Bed;
use common::reloads::{count_tests_and_reloads, counts};

/// Lineages in the batch: enough that one reload per lineage would show at once.
const LINEAGES: usize = 30;
const NODES: usize = 4;

fn names() -> Vec<String> {
    (0..LINEAGES).map(|i| format!("b{i:02}.test")).collect()
}

/// A new version of every lineage on node 1, as certbot renews: returns the serials.
fn renew_all(bed: &Bed, v: u32) -> Vec<String> {
    cluster::renew_all(bed, &names(), v)
}

/// Every lineage on node `n` serves the serial given (settled past nginx's reload overlap).
fn assert_serves(bed: &Bed, n: usize, serials: &[String], context: &str) {
    // sync returned after its own served checks: past nginx's reload overlap once, then each
    // name is asked (and asked again, settled, only when it differs).
    std::thread::sleep(RELOAD_OVERLAP);
    for (l, want) in names().iter().zip(serials) {
        let served = served_serial(bed, n, l);
        let served = if &served == want {
            served
        } else {
            settled_serial(bed, n, l, want)
        };
        assert_eq!(
            &served, want,
            "{context}: node {n} serves another certificate for {l}"
        );
    }
}

#[test]
fn sync_tests_and_reloads_each_node_once_and_a_failing_node_or_lineage_is_named() {
    // Fresh peers get the files first (nothing of theirs names them yet), then a vhost per
    // lineage everywhere, so the next push is served.
    let (bed, v1) = cluster::serving_bed(NODES, &names());
    assert_serves(&bed, 2, &v1, "after the first sync");
    count_tests_and_reloads(&bed, NODES);

    // (a) A renewal of every lineage: one sync, every node serves every lineage's new version,
    // and each node tested its config once and reloaded once.
    let before: Vec<_> = (1..=NODES).map(|n| counts(&bed, n)).collect();
    let v2 = renew_all(&bed, 2);
    let started = std::time::Instant::now();
    let (code, json, err) = sync(&bed, &[]);
    let took = started.elapsed();
    assert_eq!(
        code,
        Some(0),
        "sync of {LINEAGES} lineages: {err}\n{json:#}"
    );
    for n in 1..=NODES {
        assert_serves(&bed, n, &v2, "after the batch");
        let (t, r) = counts(&bed, n);
        assert_eq!(
            (t - before[n - 1].0, r - before[n - 1].1),
            (1, 1),
            "node {n}: (config tests, reloads) for one sync of {LINEAGES} lineages; error log:\n{}",
            std::fs::read_to_string(bed.nginx_conf(n).with_file_name("error.log"))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "sync of {LINEAGES} lineages to {} peers: {took:?}",
        NODES - 1
    );

    // (b) node 3's nginx config broken: it keeps serving v2 for every lineage, the others get
    // v3, the failure names node 3; after the fix one sync completes.
    let tls = bed.nginx_tls_conf(3);
    let good_conf = std::fs::read_to_string(&tls).unwrap();
    std::fs::write(&tls, format!("{good_conf}certherd_broken_directive on;\n")).unwrap();
    let v3 = renew_all(&bed, 3);
    let (code, json, err) = sync(&bed, &[]);
    assert_ne!(code, Some(0), "a broken node must fail the sync: {json:#}");
    assert!(err.contains("node3"), "the failure names node3: {err}");
    for l in names() {
        let r = row(&json, &l, "node3");
        assert_eq!(r["install"], "test_failed", "{l} on node3: {r:#}");
        assert!(
            r["error"]
                .as_str()
                .unwrap_or("")
                .contains("node's config is broken"),
            "{l} on node3: {r:#}"
        );
    }
    assert_serves(&bed, 3, &v2, "broken node");
    for n in [1, 2, 4] {
        assert_serves(&bed, n, &v3, "next to a broken node");
    }
    std::fs::write(&tls, &good_conf).unwrap();
    let (code, json, err) = sync(&bed, &[]);
    assert_eq!(code, Some(0), "sync after the fix: {err}\n{json:#}");
    assert_serves(&bed, 3, &v3, "after the fix");

    // (c) On node 2 a vhost pins b07.test's certificate to its current key (a copy): b07's new
    // pair makes node 2's config test fail. It is found and named; every other lineage of the
    // batch is served there, and every other node takes b07 too.
    let bad = "b07.test";
    pin_current_key(&bed, 2, bad);
    let reloads = counts(&bed, 2).1;
    reload_nginx(&bed, 2);
    // The master logs the signal after `nginx -s reload` returned: count from after it.
    assert!(wait_until(std::time::Duration::from_secs(5), || counts(
        &bed, 2
    )
    .1
        > reloads));
    let before = counts(&bed, 2);
    let v4 = renew_all(&bed, 4);
    let (code, json, err) = sync(&bed, &[]);
    assert_ne!(
        code,
        Some(0),
        "a lineage failing on node 2 fails the sync: {json:#}"
    );
    let r = row(&json, bad, "node2");
    assert_eq!(r["install"], "test_failed", "{r:#}");
    assert!(
        err.contains(bad) && err.contains("node2"),
        "the failure names {bad} and node2: {err}"
    );
    let mut expected = v4.clone();
    let i = names().iter().position(|l| l == bad).unwrap();
    expected[i] = v3[i].clone();
    assert_serves(&bed, 2, &expected, "one lineage rejected");
    for l in names().iter().filter(|l| *l != bad) {
        assert_eq!(row(&json, l, "node2")["install"], "ok", "{l} on node2");
    }
    for n in [1, 3, 4] {
        assert_serves(&bed, n, &v4, "next to a node rejecting one lineage");
    }
    let (t, r) = counts(&bed, 2);
    assert_eq!(
        r - before.1,
        1,
        "node 2 reloads once for the lineages that passed"
    );
    assert!(
        t - before.0 <= 2 + 2 * 5 + 1,
        "node 2 ran {} config tests to find one lineage among {LINEAGES}",
        t - before.0
    );
}
