//! `auth`/`cleanup` fan-out behaviour against real sshd + agent + nginx nodes.
//!
//! Proves Guarantees 1, 3 and 5 of docs/GUARANTEES.md (the list there names each test).

mod common;
use common::*;

/// auth puts the token on every node and every node serves it; cleanup removes it everywhere;
/// stdout is the JSON that certbot hands to cleanup as CERTBOT_AUTH_OUTPUT.
#[test]
fn auth_then_cleanup_on_every_node() {
    let bed = bed(3, false);
    let ran = bed
        .node(1)
        .auth("site.test", "tok1", "tok1.thumbprint")
        .run();
    for n in 1..=3 {
        assert!(
            has_token(&bed, n, "tok1", "tok1.thumbprint"),
            "node {n} lacks the token"
        );
    }
    let json: serde_json::Value = ran.json();
    ran.ensure(
        json["nodes"] == serde_json::json!(["node1", "node2", "node3"]),
        "stdout's nodes are node1, node2, node3",
    );
    assert!(
        challenge_hits(&bed, 3) > 0,
        "the self-check fetched through node 3"
    );

    // A second hook call reuses the shared connections made by the first: the very masters
    // (same PIDs), one per peer, not new ones under the same socket names.
    let masters = control_masters(&bed);
    assert_eq!(masters.len(), 2, "one master per peer: {masters:?}");
    bed.node(1).cleanup("site.test", "tok1").run();
    assert!(
        token_files(&bed).is_empty(),
        "left: {:?}",
        token_files(&bed)
    );
    assert_eq!(control_masters(&bed), masters, "cleanup opened new masters");
}

/// Guarantee 3: a required peer that is down fails auth naming it, without stopping the others;
/// the same peer marked optional only warns; cleanup never fails because of it.
#[test]
fn down_peer_fails_required_warns_optional() {
    let bed = bed(3, false);
    bed.stop_sshd(3);
    bed.node(1)
        .auth("site.test", "tokd", "tokd.x")
        .expect_status(1)
        .stderr_has(["node3"])
        .run();
    assert!(
        has_token(&bed, 2, "tokd", "tokd.x"),
        "node 2 must still get the token"
    );

    bed.write_config(
        1,
        &[
            PeerSpec::new(2),
            PeerSpec {
                node: 3,
                optional: true,
                check_only: false,
            },
        ],
        "",
    )
    .unwrap();
    bed.node(1)
        .auth("site.test", "toko", "toko.x")
        .stderr_has(["warning: node3"])
        .run();

    bed.node(1).cleanup("site.test", "toko").run();
    assert!(!has_token(&bed, 2, "toko", "toko.x"));
}

/// Bad config is exit 2 with a line naming the key and the file.
#[test]
fn config_errors_name_key_and_file() {
    let bed = bed(1, false);
    let path = bed.config_path(1);
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("webrot = \"/x\"\n{good}")).unwrap();
    bed.node(1)
        .auth("site.test", "t", "t.x")
        .expect_status(2)
        .stderr_has(["webrot".to_string(), path.display().to_string()])
        .run();
    assert!(token_files(&bed).is_empty());
}
