//! Flow 1 end to end: certbot on node 1, pebble validating against whichever nodes DNS names.
//!
//! Proves Guarantee 1 of docs/GUARANTEES.md (the list there names each test).

mod common;
use common::*;

/// Guarantee 1: issuance works when DNS points only at nodes other than the one running certbot.
#[test]
fn certificate_issued_when_dns_points_only_at_peers() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();

    let ran = bed
        .node(1)
        .certbot_certonly(&["site.test"])
        .expect_status(0)
        .run();

    let cert = cert_text(&bed, "site.test")
        .unwrap_or_else(|| ran.fail("no certificate written under live/site.test"));
    ran.ensure(
        cert.contains("DNS:site.test"),
        format!("the certificate names DNS:site.test:\n{cert}"),
    );
    ran.ensure(
        challenge_hits(&bed, 2) > 0,
        "pebble validated through node 2",
    );
    ran.ensure(
        challenge_hits(&bed, 1) == self_check_hits(&bed, 1),
        format!(
            "only certherd's self-check asked node 1, never the CA: {} challenge requests, {} of them the self-check's",
            challenge_hits(&bed, 1),
            self_check_hits(&bed, 1)
        ),
    );
    ran.ensure(
        token_files(&bed).is_empty(),
        format!("tokens left behind: {:?}", token_files(&bed)),
    );
    // The certbot that ran is the one asked for (Debian's, or PyPI's under
    // $CERTHERD_BED_CERTBOT): it writes its own version into the renewal config.
    let program = certherd_testbed::certbot_program();
    let mut asked = std::process::Command::new(&program);
    asked.arg("--version");
    let version = exec(asked).any_status().run().stdout();
    let version = version.trim().replace("certbot ", "");
    let conf =
        std::fs::read_to_string(bed.letsencrypt_dir(1).join("renewal/site.test.conf")).unwrap();
    ran.ensure(
        conf.lines().any(|l| l == format!("version = {version}")),
        format!(
            "{} is certbot {version}, the renewal config says:\n{conf}",
            program.display()
        ),
    );
}

/// certherd's own self-check also fetches through node 1; only those requests may hit it.
fn self_check_hits(bed: &Bed, n: usize) -> usize {
    std::fs::read_to_string(bed.access_log(n))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/.well-known/acme-challenge/") && l.contains("certherd/"))
        .count()
}

/// One certificate for two names, each resolving to a different node; issued via `certherd issue`.
#[test]
fn two_names_on_two_different_nodes_via_certherd_issue() {
    let bed = bed(3, true);
    bed.dns("a.test", &[2]).unwrap();
    bed.dns("b.test", &[3]).unwrap();

    let ran = bed
        .node(1)
        .certherd_issue(&["a.test", "b.test"])
        .expect_status(0)
        .run();

    let cert = cert_text(&bed, "a.test")
        .unwrap_or_else(|| ran.fail("no certificate written under live/a.test"));
    ran.ensure(
        cert.contains("DNS:a.test") && cert.contains("DNS:b.test"),
        format!("the certificate names DNS:a.test and DNS:b.test:\n{cert}"),
    );
    ran.ensure(
        challenge_hits(&bed, 2) > 0 && challenge_hits(&bed, 3) > 0,
        "pebble validated through node 2 and node 3",
    );
    ran.ensure(
        token_files(&bed).is_empty(),
        format!("tokens left behind: {:?}", token_files(&bed)),
    );
}

/// The negative control: node 1 knows nodes 2 and 3 only as check-only peers, so no token
/// reaches them. `auth` must fail naming both, certbot must get no certificate, and
/// `certherd issue` must refuse to call certbot at all.
#[test]
fn without_fan_out_auth_fails_naming_the_nodes_and_no_certificate_is_issued() {
    let bed = bed(3, true);
    let check_only = |n| PeerSpec {
        node: n,
        optional: false,
        check_only: true,
    };
    bed.write_config(1, &[check_only(2), check_only(3)], "")
        .unwrap();
    let short = std::fs::read_to_string(bed.config_path(1))
        .unwrap()
        .replace("timeout = \"10s\"", "timeout = \"2s\"");
    std::fs::write(bed.config_path(1), short).unwrap();
    bed.dns("site.test", &[2, 3]).unwrap();

    bed.node(1)
        .auth("site.test", "tok123", "tok123.thumb")
        .expect_status(1)
        .stderr_has(["node2", "node3", "HTTP 404"])
        // node 1 has the token
        .stderr_lacks(["node1: self-check"])
        .run();
    bed.node(1)
        .cleanup("site.test", "tok123")
        .expect_status(0)
        .run();

    // certbot must fail.
    let ran = bed
        .node(1)
        .certbot_certonly(&["site.test"])
        .expect_failure()
        .run();
    ran.ensure(
        cert_text(&bed, "site.test").is_none(),
        "no certificate under live/site.test",
    );

    let certbot_runs =
        || std::fs::read_dir(bed.root().join("certbot/logs")).map_or(0, |d| d.count());
    let runs_before = certbot_runs();
    let ran = bed
        .node(1)
        .certherd_issue(&["site.test"])
        .expect_status(1)
        .stderr_has(["pre-flight failed"])
        .run();
    ran.ensure(
        certbot_runs() == runs_before,
        "certbot must not have run (no new log file)",
    );
    ran.ensure(
        token_files(&bed).is_empty(),
        format!("tokens left behind: {:?}", token_files(&bed)),
    );
}
