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
    // doctor on the primary asks every node, node 2's Apache included, for a throwaway token;
    // on node 2 it checks Apache's [reload] is allowed through sudo. (Its exit code also judges
    // the machine's own certbot timer and cron file, which the bed does not own: the lines.)
    let doctor = text(&bed.certherd(1, &["doctor", "-d", NAME]).output().unwrap());
    assert!(
        doctor.contains("ok    node2: serves tokens for apache.test"),
        "doctor on the primary:\n{doctor}"
    );
    let doctor = text(&bed.certherd(2, &["doctor"]).output().unwrap());
    for what in ["reload.test", "reload.reload"] {
        assert!(
            doctor
                .lines()
                .any(|l| l.starts_with(&format!("ok    {what} as "))
                    && l.contains("/usr/sbin/apache2ctl")),
            "doctor on node 2 does not pass Apache's {what}:\n{doctor}"
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
    let out = certbot_certonly(&bed, &["plain-apache.test"]);
    assert!(
        !out.status.success(),
        "issued through node 3 although it never had the token:\n{}",
        text(&out)
    );
    assert!(
        apache_answers(&bed, 3, 404) >= 1,
        "node 3's Apache answered the CA no 404"
    );

    bed.apache_acme_fallback(3, "primary.test").unwrap();
    bed.dns("fallback-apache.test", &[3]).unwrap();
    let before = challenge_hits(&bed, 1);
    let out = certbot_certonly(&bed, &["fallback-apache.test"]);
    assert!(
        out.status.success(),
        "issuance through Apache's fallback:\n{}",
        text(&out)
    );
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
    let out = bed
        .command_on(1, "/usr/bin/curl")
        .args(["-sS", "-o", "-", "-w", " %{http_code}"])
        .arg(format!(
            "http://{}/.well-known/acme-challenge/present",
            bed.ip(3)
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "present.thumbprint\n 200".trim(),
        "node 3's own token through the fallback: {}",
        text(&out)
    );
}
