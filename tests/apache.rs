//! An Apache httpd node in a fleet of nginx nodes (issue 23): node 2 runs Debian's apache2 with
//! the shipped ACME snippet (`a2enconf`), TLS vhost, sudoers lines and docs/APACHE.md's
//! `[reload]` (`apache2ctl configtest` / `graceful` through sudo, as the agent's account).
//!
//! The CA validates through node 2 only (DNS names only node 2), a renewal through the deploy
//! hook reaches every node (the serial each serves over TLS), and a broken Apache config keeps
//! node 2's old pair while the deploy fails naming node 2.

mod common;
use common::*;

const NAME: &str = "apache.test";

/// Requests for the ACME path that node 2's Apache answered 200 (its access log, common format).
fn apache_token_hits(bed: &Bed) -> usize {
    std::fs::read_to_string(bed.apache_dir(2).join("access.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("GET /.well-known/acme-challenge/") && l.contains("\" 200 "))
        .count()
}

/// certbot renew (the lineage's stored deploy hook deploys), forced.
fn renew(bed: &Bed) -> std::process::Output {
    bed.certbot(&["renew", "--force-renewal", "--no-random-sleep-on-renew"])
}

#[test]
fn an_apache_node_validates_takes_the_renewal_and_keeps_its_pair_when_its_config_breaks() {
    let bed = bed(3, true);
    bed.use_apache(2).unwrap();
    let config = std::fs::read_to_string(bed.config_path(2)).unwrap();
    assert!(
        config.contains("apache2ctl\", \"configtest\"]") && !config.contains("nginx"),
        "node 2's [reload] is not docs/APACHE.md's:\n{config}"
    );
    bed.dns(NAME, &[2]).unwrap();
    // nodes 1 and 3 (nginx): a TLS server for the lineage, reloaded by the deploy
    enable_tls(&bed, NAME);

    // Issuance: the CA asks node 2 only, whose Apache serves the token the primary's auth hook
    // put there (and self-checked through Apache).
    let out = certbot_with_deploy(&bed, &[NAME]);
    assert!(out.status.success(), "certbot certonly:\n{}", text(&out));
    assert!(
        apache_token_hits(&bed) >= 1,
        "node 2's Apache answered no token with 200; its access log:\n{}",
        std::fs::read_to_string(bed.apache_dir(2).join("access.log")).unwrap_or_default()
    );
    let v1 = current_serial(&bed, NAME);
    assert_eq!(
        installed_serial(&bed, 2, NAME),
        v1,
        "node 2 did not get the pair"
    );
    bed.apache_tls(2, NAME).unwrap();
    for n in 1..=3 {
        assert_eq!(
            settled_serial(&bed, n, NAME, &v1),
            v1,
            "node {n} after issuance"
        );
    }

    // A renewal: the deploy hook installs it everywhere and node 2's `apache2ctl graceful`
    // (through sudo, as the account) makes Apache serve it.
    let out = renew(&bed);
    assert!(out.status.success(), "certbot renew:\n{}", text(&out));
    let v2 = current_serial(&bed, NAME);
    assert_ne!(v2, v1, "the renewal issued no new certificate");
    for n in 1..=3 {
        assert_eq!(
            settled_serial(&bed, n, NAME, &v2),
            v2,
            "node {n} after the renewal"
        );
    }

    // A broken Apache config on node 2: its configtest fails, so certherd puts the previous
    // links back and Apache (never reloaded) keeps serving the old pair; the deploy fails
    // naming node 2, the others take the new version.
    let broken = bed.apache_dir(2).join("conf-enabled/broken.conf");
    std::fs::write(&broken, "ThisIsNoApacheDirective on\n").unwrap();
    let out = renew(&bed);
    let v3 = current_serial(&bed, NAME);
    assert_ne!(v3, v2, "the second renewal issued no new certificate");
    let deploy = bed
        .certherd(1, &["deploy", "--lineage", NAME])
        .output()
        .unwrap();
    assert_ne!(
        deploy.status.code(),
        Some(0),
        "deploy with node 2's config broken succeeded:\n{}",
        text(&deploy)
    );
    let report = text(&deploy);
    let node2: Vec<&str> = report.lines().filter(|l| l.contains("node2")).collect();
    assert!(
        !node2.is_empty()
            && node2
                .iter()
                .any(|l| l.contains("FAIL") || l.contains("fail")),
        "the deploy does not name node 2 as failed:\n{report}\n(certbot renew:\n{})",
        text(&out)
    );
    assert!(
        stderr(&deploy).contains("node2") && stderr(&deploy).contains("apache2ctl configtest"),
        "the deploy's error does not name node 2's failed configtest:\n{report}"
    );
    assert_eq!(
        installed_serial(&bed, 2, NAME),
        v2,
        "node 2's live/ is not the old pair"
    );
    assert_eq!(
        settled_serial(&bed, 2, NAME, &v2),
        v2,
        "node 2 does not serve the old pair"
    );
    for n in [1, 3] {
        assert_eq!(
            settled_serial(&bed, n, NAME, &v3),
            v3,
            "node {n} after the broken deploy"
        );
    }
}
