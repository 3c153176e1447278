//! Per-lineage deploy actions (`[[deploy]]`) end to end with real HAProxy on every node.
//!
//! Proves Guarantee 10 of docs/GUARANTEES.md (deploy actions): each node's own `[[deploy]]`
//! action writes the combined PEM (fullchain + key, owner/group/mode from the node's config) for
//! the lineages its globs match — on the primary and on every peer — and its own check and
//! reload (through sudo, the shipped `contrib/sudoers/certherd-haproxy` lines) make HAProxy
//! serve the new certificate, checked over TLS with openssl; a lineage no glob matches writes
//! nothing; a failing action test puts the previous combined PEM back and the deploy row says
//! `action_test_failed`.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use certherd_testbed::Haproxies;

/// Node 1 lists 2 and 3 as peers; every node gets its own `[[deploy]]` for HAProxy.
fn configure(bed: &Bed, h: &Haproxies, globs: &[&str]) {
    for n in 1..=bed.nodes() {
        let peers: Vec<PeerSpec> = if n == 1 {
            (2..=bed.nodes()).map(PeerSpec::new).collect()
        } else {
            Vec::new()
        };
        bed.write_config(n, &peers, &h.deploy_section(bed, n, globs))
            .unwrap();
    }
}

/// What the combined PEM must hold on node `n`: node 1's current fullchain then privkey.
fn expected_pem(bed: &Bed, lineage: &str) -> Vec<u8> {
    let live = bed.letsencrypt_dir(1).join("live").join(lineage);
    let mut want = std::fs::read(live.join("fullchain.pem")).unwrap();
    want.extend(std::fs::read(live.join("privkey.pem")).unwrap());
    want
}

fn assert_haproxy_serves_current(bed: &Bed, context: &str) {
    let serial = current_serial(bed, "site.test");
    let want = expected_pem(bed, "site.test");
    let (uid, gid) = bed.agent_uid_gid();
    for n in 1..=bed.nodes() {
        let pem = bed.haproxy_certs(n).join("site.test.pem");
        let meta = std::fs::symlink_metadata(&pem)
            .unwrap_or_else(|e| panic!("{context}: node {n}: {}: {e}", pem.display()));
        assert_eq!(
            (meta.permissions().mode() & 0o7777, meta.uid(), meta.gid()),
            (0o640, uid, gid),
            "{context}: node {n} combined PEM mode and owner"
        );
        // Compared whole, printed by serial only: the file holds a private key.
        assert!(
            std::fs::read(&pem).unwrap() == want,
            "{context}: node {n} combined PEM is not fullchain + key (its serial {})",
            file_serial(&pem)
        );
        assert_eq!(
            bed.haproxy_serial(n, "site.test"),
            serial,
            "{context}: node {n}'s HAProxy over TLS"
        );
    }
}

fn renew(bed: &Bed) {
    bed.node(1)
        .certbot(["renew", "--force-renewal", "--no-random-sleep-on-renew"])
        .run();
}

#[test]
fn haproxy_serves_each_new_certificate_on_every_node_and_a_failing_check_rolls_back() {
    let bed = bed(3, true);
    let haproxies = bed.start_haproxy().unwrap();
    configure(&bed, &haproxies, &["site.test", "*.example.org"]);
    bed.dns("site.test", &[2, 3]).unwrap();
    enable_tls(&bed, "site.test");

    // Issuance: certbot's deploy hook pushes; every node's action writes and reloads HAProxy.
    bed.node(1)
        .certbot_certonly_with_deploy(&["site.test"])
        .run();
    assert_haproxy_serves_current(&bed, "after issuance");
    let first = current_serial(&bed, "site.test");

    // Renewal: the new version reaches every HAProxy.
    renew(&bed);
    assert_ne!(current_serial(&bed, "site.test"), first, "renewal");
    assert_haproxy_serves_current(&bed, "after renewal");

    // A lineage no glob matches: nothing is written in any certs directory.
    bed.dns("other.test", &[2, 3]).unwrap();
    bed.node(1)
        .certbot_certonly_with_deploy(&["other.test"])
        .run();
    for n in 1..=bed.nodes() {
        assert_eq!(
            installed_serial(&bed, n, "other.test"),
            current_serial(&bed, "other.test"),
            "node {n} did install other.test"
        );
        let names: Vec<String> = std::fs::read_dir(bed.haproxy_certs(n))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["site.test.pem"],
            "node {n}: only the matching lineage"
        );
    }

    // node3's HAProxy config is broken: its action's check fails, its previous combined PEM is
    // put back byte for byte, its HAProxy keeps serving the previous certificate, and the row
    // says so as a typed kind. The other nodes take the new version.
    let before = std::fs::read(bed.haproxy_certs(3).join("site.test.pem")).unwrap();
    let served_before = bed.haproxy_serial(3, "site.test");
    let conf = bed.haproxy_conf(3);
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{good}\nthis_is_not_a_keyword on\n")).unwrap();
    renew(&bed);
    let ran = bed
        .node(1)
        .certherd(["deploy", "--lineage", "site.test", "--format", "json"])
        .expect_status(1)
        .run();
    let report: serde_json::Value = ran.json();
    let row = |name: &str| {
        report["nodes"]
            .as_array()
            .unwrap_or_else(|| ran.fail("no nodes in the report"))
            .iter()
            .find(|n| n["node"] == name)
            .unwrap_or_else(|| ran.fail(&format!("no row {name} in the report")))
            .clone()
    };
    let node3 = row("node3");
    ran.ensure(
        node3["install"] == "action_test_failed",
        format!("{node3}: install action_test_failed"),
    );
    ran.ensure(
        node3["error_kind"] == "action_test_failed",
        format!("{node3}: error_kind action_test_failed"),
    );
    ran.ensure(node3["ok"] == false, format!("{node3}: not ok"));
    ran.ensure(
        node3["error"]
            .as_str()
            .is_some_and(|e| e.contains("previous combined PEM restored")),
        format!("{node3}: the error says the previous combined PEM was restored"),
    );
    let pem3 = bed.haproxy_certs(3).join("site.test.pem");
    assert!(
        std::fs::read(&pem3).unwrap() == before,
        "node3's previous combined PEM is not back: it holds serial {}, HAProxy served {served_before}",
        file_serial(&pem3)
    );
    assert_eq!(bed.haproxy_serial(3, "site.test"), served_before);
    assert_ne!(served_before, current_serial(&bed, "site.test"));
    for name in ["node1", "node2"] {
        ran.ensure(row(name)["ok"] == true, format!("{}: ok", row(name)));
    }
    let serial = current_serial(&bed, "site.test");
    for n in 1..=2 {
        assert_eq!(bed.haproxy_serial(n, "site.test"), serial, "node {n}");
    }

    // Fixed: the next deploy brings node3's HAProxy up to date too.
    std::fs::write(&conf, good).unwrap();
    bed.node(1)
        .certherd(["deploy", "--lineage", "site.test"])
        .run();
    assert_haproxy_serves_current(&bed, "after the fix");
    drop(haproxies);
}
