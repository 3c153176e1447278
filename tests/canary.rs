//! Two phases across the fleet, and canaries (issue 19, item 4), on the real bed: 4 nodes (the
//! primary and 3 peers, each an nginx with a vhost per lineage on :443, agents as the bed's
//! non-root account).
//!
//! - A required peer that cannot stage a lineage (its archive directory not writable for the
//!   agent's account): that lineage is switched on no peer — the others discard what they
//!   staged and keep serving the old certificate — while every other lineage goes everywhere;
//!   the rows name the node that could not stage it. After the fix one `sync` completes.
//! - `sync --canary 1` with the canary's (node2's) nginx config broken: its commit fails, the
//!   rollout stops, the other peers and the primary keep serving the old certificate (checked
//!   over TLS) with nothing of the new version left on their disks, exit 1, the failure names
//!   node2. Fixed, `sync --canary 1` brings every node to the new version.
//! - `sync --canary 1` with the canary serving another lineage's certificate for one lineage (a
//!   config `nginx -t` accepts): the check over TLS stops the rollout the same way.
//!
//! Proves guarantee 3 of docs/GUARANTEES.md (every node gets every lineage; `sync` catches up)
//! and guarantee 5 (a failing node leaves the fleet on what it served) for the fleet-wide gate.

mod common;
use common::sync_report::{row, sync};
use common::*;

use certherd_testbed::Bed;

const NODES: usize = 4;
const LINEAGES: [&str; 3] = ["c0.test", "c1.test", "c2.test"];

/// A bed whose nodes serve every lineage of [`LINEAGES`] on its own vhost, all on version 1.
fn serving_bed() -> (Bed, Vec<String>) {
    let (bed, v1) = cluster::serving_bed(NODES, &LINEAGES);
    for n in 1..=NODES {
        assert_serves(&bed, n, &v1, "set-up");
    }
    (bed, v1)
}

/// A new version of every lineage on node 1, as certbot renews: the serials, in order.
fn renew_all(bed: &Bed, v: u32) -> Vec<String> {
    cluster::renew_all(bed, &LINEAGES, v)
}

fn error_of(row: &serde_json::Value) -> &str {
    row["error"].as_str().unwrap_or("")
}

/// Node `n` serves `want[i]` for every lineage i, waiting (bounded) for a reload to settle.
fn assert_serves(bed: &Bed, n: usize, want: &[String], context: &str) {
    for (l, want) in LINEAGES.iter().zip(want) {
        assert_eq!(
            &settled_serial(bed, n, l, want),
            want,
            "{context}: node {n} serves another certificate for {l}"
        );
    }
}

/// Node `n` still serves `old` for `lineage` and did not reload onto anything else: asked once
/// nginx's reload overlap is over (a node that wrongly reloaded during the sync shows the new
/// serial by then, and keeps showing it).
fn assert_still_serves(bed: &Bed, n: usize, lineage: &str, old: &str, context: &str) {
    std::thread::sleep(RELOAD_OVERLAP);
    assert_eq!(
        served_serial(bed, n, lineage),
        old,
        "{context}: node {n} serves another certificate for {lineage}"
    );
}

/// Nothing of version `v` of `lineage` stays on peer `n`: its links name version `v - 1`, no
/// archive file of `v`, no pending marker (a discarded stage leaves nothing behind).
fn assert_untouched(bed: &Bed, n: usize, lineage: &str, v: u32, context: &str) {
    let links = live_links(bed, n, lineage);
    assert!(
        links.iter().all(|l| l.ends_with(&format!("{}.pem", v - 1))),
        "{context}: node {n} {lineage} links {links:?}"
    );
    let archive = bed.letsencrypt_dir(n).join("archive").join(lineage);
    for kind in ["cert", "chain", "fullchain", "privkey"] {
        let file = archive.join(format!("{kind}{v}.pem"));
        assert!(
            !file.exists(),
            "{context}: node {n} kept {} of a lineage it did not switch",
            file.display()
        );
    }
    let markers = pending_markers(&bed.letsencrypt_dir(n));
    assert!(
        markers.is_empty(),
        "{context}: node {n} markers {markers:?}"
    );
}

/// Canary node2 stopped the rollout (`sync` exited 1, `json` and `err` its report): the failure
/// names it; nodes 3 and 4 kept nothing of version 2 and, with the primary, still serve the old
/// pair (`v1`); their rows say the rollout stopped at node2.
fn assert_stopped_by_canary_node2(
    bed: &Bed,
    (json, err): (&serde_json::Value, &str),
    v1: &[String],
    context: &str,
) {
    assert!(
        err.contains("canary node2"),
        "{context}: the failure names the canary: {err}"
    );
    for (i, l) in LINEAGES.iter().enumerate() {
        for n in [3, 4] {
            assert_untouched(bed, n, l, 2, context);
        }
        for n in [1, 3, 4] {
            assert_still_serves(bed, n, l, &v1[i], context);
        }
        for node in ["node1", "node3", "node4"] {
            let r = row(json, l, node);
            assert!(
                error_of(r).contains("rollout stopped: canary node2"),
                "{context}: {l} on {node}: {r:#}"
            );
        }
    }
}

/// (a) node3 cannot stage c1.test: no node switches it, every other lineage goes everywhere.
#[test]
fn a_required_peer_that_cannot_stage_keeps_the_lineage_off_every_node() {
    let (bed, v1) = serving_bed();
    let blocked = "c1.test";
    let archive = bed.letsencrypt_dir(3).join("archive").join(blocked);
    // The agent's account owns the directory; without its write bit it cannot add a version.
    let set_mode = |mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(0o555);
    let v2 = renew_all(&bed, 2);
    let (code, json, err) = sync(&bed, &[]);
    set_mode(0o755);

    assert_eq!(code, Some(1), "{err}\n{json:#}");
    for n in [2, 4] {
        assert_untouched(&bed, n, blocked, 2, "a lineage node3 could not stage");
        assert_still_serves(&bed, n, blocked, &v1[1], "a lineage node3 could not stage");
    }
    let own = row(&json, blocked, "node3");
    assert!(
        error_of(own).contains("Permission denied"),
        "node3's own row says why it could not stage: {own:#}"
    );
    for node in ["node1", "node2", "node4"] {
        let r = row(&json, blocked, node);
        assert!(
            error_of(r).contains("not switched: node3 could not stage it"),
            "{blocked} on {node}: {r:#}"
        );
    }
    // The other lineages: on every node, served.
    for l in LINEAGES.iter().filter(|l| **l != blocked) {
        for node in ["node2", "node3", "node4"] {
            assert_eq!(row(&json, l, node)["install"], "ok", "{l} on {node}");
        }
    }
    for n in 2..=NODES {
        let mut want = v2.clone();
        want[1] = v1[1].clone();
        assert_serves(&bed, n, &want, "next to a lineage node3 could not stage");
    }

    // Fixed: one sync completes, every node on version 2.
    let (code, json, err) = sync(&bed, &[]);
    assert_eq!(code, Some(0), "sync after the fix: {err}\n{json:#}");
    for n in 1..=NODES {
        assert_serves(&bed, n, &v2, "after the fix");
    }
}

/// (b) the canary's commit fails: the rollout stops, the others untouched. (c) the canary is
/// healthy: every node serves the new version.
#[test]
fn a_failing_canary_stops_the_rollout_and_a_healthy_one_lets_it_through() {
    let (bed, v1) = serving_bed();
    // node2 is the first peer in config order: the canary.
    let tls = bed.nginx_tls_conf(2);
    let good = std::fs::read_to_string(&tls).unwrap();
    std::fs::write(&tls, format!("{good}certherd_broken_directive on;\n")).unwrap();
    let v2 = renew_all(&bed, 2);
    let (code, json, err) = sync(&bed, &["--canary", "1"]);
    std::fs::write(&tls, &good).unwrap();

    assert_eq!(
        code,
        Some(1),
        "a failing canary fails the sync: {err}\n{json:#}"
    );
    // The others: untouched, still on the old pair over TLS; the primary did not reload. The
    // canary's commit failed: it too still serves the old pair.
    assert_stopped_by_canary_node2(&bed, (&json, &err), &v1, "after a failing canary");
    for (i, l) in LINEAGES.iter().enumerate() {
        assert_still_serves(&bed, 2, l, &v1[i], "after a failing canary");
    }
    assert_eq!(json["ok"], false, "{json:#}");
    for l in LINEAGES {
        let canary = row(&json, l, "node2");
        assert_eq!(canary["install"], "test_failed", "{l} on node2: {canary:#}");
    }

    // (c) fixed: the canary switches, serves the new version, then the others follow.
    let (code, json, err) = sync(&bed, &["--canary", "1"]);
    assert_eq!(code, Some(0), "a healthy canary: {err}\n{json:#}");
    for l in LINEAGES {
        for node in ["node2", "node3", "node4"] {
            assert_eq!(row(&json, l, node)["served"], "new", "{l} on {node}");
        }
    }
    for n in 1..=NODES {
        assert_serves(&bed, n, &v2, "after a healthy canary");
    }
}

/// (d) the canary commits and reloads fine but serves another certificate for a lineage (its
/// vhost names another lineage's files: `nginx -t` cannot see that): the check over TLS stops
/// the rollout, the other peers and the primary keep the old pair; fixed, one sync completes.
#[test]
fn a_canary_serving_the_wrong_certificate_stops_the_rollout() {
    let (bed, v1) = serving_bed();
    let tls = bed.nginx_tls_conf(2);
    let good = std::fs::read_to_string(&tls).unwrap();
    let wrong = good.replace("/live/c0.test/", "/live/c1.test/");
    assert_ne!(wrong, good, "node2's vhost for c0.test names live/c0.test/");
    std::fs::write(&tls, &wrong).unwrap();
    reload_nginx(&bed, 2);
    let v2 = renew_all(&bed, 2);
    let (code, json, err) = sync(&bed, &["--canary", "1"]);

    assert_eq!(
        code,
        Some(1),
        "a canary serving the wrong certificate: {err}\n{json:#}"
    );
    assert_stopped_by_canary_node2(
        &bed,
        (&json, &err),
        &v1,
        "after a canary served the wrong certificate",
    );

    std::fs::write(&tls, &good).unwrap();
    reload_nginx(&bed, 2);
    let (code, json, err) = sync(&bed, &["--canary", "1"]);
    assert_eq!(code, Some(0), "sync after the fix: {err}\n{json:#}");
    for n in 1..=NODES {
        assert_serves(&bed, n, &v2, "after the fix");
    }
}
