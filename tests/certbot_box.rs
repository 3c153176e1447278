//! A dedicated certbot box as the primary (the README's "make the central box the primary",
//! issue 23 item 4): it renews and deploys but serves no HTTPS itself. With `https = ""` its
//! own row of the deploy says `no-https` and the deploy exits 0 when every peer serves the new
//! version; with an https address where nothing listens (what the box had before), the deploy
//! fails on its own row (the negative control).

mod common;
use common::*;

const NAME: &str = "box.test";

#[test]
fn a_primary_without_https_deploys_when_every_peer_serves_the_new_version() {
    let bed = bed(3, true);
    // DNS names the peers only; the box's nginx has no TLS server (only the bed's :80).
    bed.dns(NAME, &[2, 3]).unwrap();
    enable_tls(&bed, NAME);
    std::fs::write(bed.nginx_tls_conf(1), "# the certbot box serves no HTTPS\n").unwrap();
    reload_nginx(&bed, 1);
    // certbot exits 0 whatever its deploy hook did; the hook's error is in its output.
    let certbot = bed.node(1).certbot_certonly_with_deploy(&[NAME]).run();
    let serial = current_serial(&bed, NAME);
    for n in [2, 3] {
        assert_eq!(settled_serial(&bed, n, NAME, &serial), serial, "node {n}");
    }
    // Negative control: the box's https names its own :443, where nothing listens (certbot
    // exits 0 whatever its deploy hook did; the hook's error is in its output).
    certbot.ensure(
        certbot.both().contains("node1: deploy of box.test failed"),
        "the deploy hook's failure on the box's own row",
    );
    let deploy = bed
        .node(1)
        .certherd(["deploy", "--lineage", NAME])
        .expect_status(1)
        .run();
    deploy.ensure(
        deploy
            .both()
            .lines()
            .any(|l| l.starts_with("node1") && l.contains("NONE")),
        "the failing row is the box's",
    );

    // `https = ""`: this node serves no HTTPS.
    let own = format!("https = \"{}:443\"", bed.ip(1));
    edit_config(&bed, 1, &own, "https = \"\"");
    let deploy = bed.node(1).certherd(["deploy", "--lineage", NAME]).run();
    let report = deploy.both();
    deploy.ensure(
        report
            .lines()
            .any(|l| l.starts_with("node1") && l.contains("no-https")),
        "the box's row says no-https",
    );
    for n in [2, 3] {
        deploy.ensure(
            report
                .lines()
                .any(|l| l.starts_with(&format!("node{n}")) && l.contains(" new ")),
            format!("node {n} serves the new version"),
        );
    }

    // `status` on the box: its own row serves nothing to check, not a problem.
    let status = bed.node(1).certherd(["status"]).run();
    status.ensure(
        status
            .both()
            .lines()
            .any(|l| l.starts_with("node1") && l.contains(" no-https ")),
        "status says the box serves no HTTPS",
    );

    // The box still checks its peers: one that serves an old certificate fails the deploy.
    std::fs::write(bed.nginx_tls_conf(3), "# node 3 lost its TLS server\n").unwrap();
    reload_nginx(&bed, 3);
    bed.node(1)
        .certherd(["deploy", "--lineage", NAME])
        .expect_status(1)
        .run();
}
