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
fn renew(bed: &Bed) -> Exec<'_> {
    bed.node(1)
        .certbot(["renew", "--force-renewal", "--no-random-sleep-on-renew"])
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
    bed.node(1)
        .certbot_certonly_with_deploy(&[NAME])
        .expect_status(0)
        .run();
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
    // doctor on the primary asks every node, node 2's Apache included, for a throwaway token;
    // on node 2 it checks Apache's [reload] is allowed through sudo. (Its exit code also judges
    // the machine's own certbot timer and cron file, which the bed does not own: the lines.)
    let ran = bed
        .node(1)
        .certherd(["doctor", "-d", NAME])
        .any_status()
        .run();
    ran.ensure(
        ran.both()
            .contains("ok    node2: serves tokens for apache.test"),
        "doctor on the primary: node2 serves tokens",
    );
    let ran = bed.node(2).certherd(["doctor"]).any_status().run();
    for what in ["reload.test", "reload.reload"] {
        ran.ensure(
            ran.both().lines().any(|l| {
                l.starts_with(&format!("ok    {what} as ")) && l.contains("/usr/sbin/apache2ctl")
            }),
            format!("doctor on node 2 passes Apache's {what}"),
        );
    }
    for n in 1..=3 {
        assert_eq!(
            settled_serial(&bed, n, NAME, &v1),
            v1,
            "node {n} after issuance"
        );
    }

    // A renewal: the deploy hook installs it everywhere and node 2's `apache2ctl graceful`
    // (through sudo, as the account) makes Apache serve it.
    renew(&bed).expect_status(0).run();
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
    // Its deploy hook fails on node 2: the deploy below says how.
    let renewed = renew(&bed).any_status().run();
    let v3 = current_serial(&bed, NAME);
    assert_ne!(v3, v2, "the second renewal issued no new certificate");
    // With node 2's config broken the deploy fails, its error naming node 2's configtest.
    let ran = bed
        .node(1)
        .certherd(["deploy", "--lineage", NAME])
        .expect_failure()
        .stderr_has(["node2", "apache2ctl configtest"])
        .run();
    let report = ran.both();
    let node2: Vec<&str> = report.lines().filter(|l| l.contains("node2")).collect();
    ran.ensure(
        !node2.is_empty()
            && node2
                .iter()
                .any(|l| l.contains("FAIL") || l.contains("fail")),
        format!("the deploy names node 2 as failed\n(the certbot renew before it:\n{renewed})"),
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

/// Requests for the ACME path that node `n`'s Apache answered with `status`.
fn apache_answers(bed: &Bed, n: usize, status: u16) -> usize {
    std::fs::read_to_string(bed.apache_dir(n).join("access.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("GET /.well-known/acme-challenge/") && l.contains(&format!("\" {status} "))
        })
        .count()
}

/// contrib/apache/certherd-acme-fallback.conf on an Apache node whose agent is down (an
/// optional peer): the CA, sent there by DNS, follows Apache's redirect to the primary. With the
/// plain certherd-acme.conf the same issuance fails (the negative control). A namespaced bed,
/// so the redirect names the primary as in production and pebble resolves it through its DNS.
#[test]
fn an_apache_node_without_the_token_redirects_the_ca_to_the_primary() {
    let bed = Bed::start(BedOptions {
        nodes: 3,
        ca: true,
        certherd: certherd_bin().into(),
        netns: true,
    })
    .unwrap_or_else(|e| panic!("namespaced test bed did not start: {e}"));
    let mut three = PeerSpec::new(3);
    three.optional = true;
    bed.write_config(1, &[PeerSpec::new(2), three], "").unwrap();
    bed.use_apache(3).unwrap();
    bed.dns("primary.test", &[1]).unwrap();
    bed.stop_sshd(3);

    bed.dns("plain-apache.test", &[3]).unwrap();
    // Not issued through node 3, which never had the token.
    bed.node(1)
        .certbot_certonly(&["plain-apache.test"])
        .expect_failure()
        .run();
    assert!(
        apache_answers(&bed, 3, 404) >= 1,
        "node 3's Apache answered the CA no 404"
    );

    bed.apache_acme_fallback(3, "primary.test").unwrap();
    bed.dns("fallback-apache.test", &[3]).unwrap();
    let before = challenge_hits(&bed, 1);
    // Issuance through Apache's fallback.
    bed.node(1)
        .certbot_certonly(&["fallback-apache.test"])
        .expect_status(0)
        .run();
    assert!(
        apache_answers(&bed, 3, 302) >= 1,
        "node 3's Apache redirected nothing"
    );
    assert!(
        challenge_hits(&bed, 1) > before,
        "the primary was not asked after the redirect"
    );

    // A token node 3 has is answered there, not redirected.
    let token = bed.webroot(3).join(".well-known/acme-challenge/present");
    std::fs::write(&token, "present.thumbprint\n").unwrap();
    let mut curl = bed.command_on(1, "/usr/bin/curl");
    curl.args(["-sS", "-o", "-", "-w", " %{http_code}"])
        .arg(format!(
            "http://{}/.well-known/acme-challenge/present",
            bed.ip(3)
        ));
    let ran = bed.node(1).command(curl).any_status().run();
    ran.ensure(
        ran.stdout().trim() == "present.thumbprint\n 200".trim(),
        "node 3 answers its own token through the fallback, 200",
    );
}
