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

    let out = certbot_certonly(&bed, &["site.test"]);

    assert!(out.status.success(), "certbot failed:\n{}", text(&out));
    let cert = cert_text(&bed, "site.test").expect("certificate written under live/site.test");
    assert!(cert.contains("DNS:site.test"), "{cert}");
    assert!(
        challenge_hits(&bed, 2) > 0,
        "pebble validated through node 2"
    );
    assert_eq!(
        challenge_hits(&bed, 1),
        self_check_hits(&bed, 1),
        "only certherd's self-check asked node 1, never the CA"
    );
    assert!(
        token_files(&bed).is_empty(),
        "tokens left behind: {:?}",
        token_files(&bed)
    );
    // The certbot that ran is the one asked for (Debian's, or PyPI's under
    // $CERTHERD_BED_CERTBOT): it writes its own version into the renewal config.
    let program = certherd_testbed::certbot_program();
    let version = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout)
        .trim()
        .replace("certbot ", "");
    let conf =
        std::fs::read_to_string(bed.letsencrypt_dir(1).join("renewal/site.test.conf")).unwrap();
    assert!(
        conf.lines().any(|l| l == format!("version = {version}")),
        "{} is certbot {version}, the renewal config says:\n{conf}",
        program.display()
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

    let mut cmd = bed.certherd(
        1,
        &[
            "issue",
            "--certbot",
            &certbot_program_arg(),
            "-d",
            "a.test",
            "-d",
            "b.test",
            "--",
        ],
    );
    cmd.args(bed.certbot_common_args())
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle());
    let out = cmd.output().unwrap();

    assert!(
        out.status.success(),
        "certherd issue failed:\n{}",
        text(&out)
    );
    let cert = cert_text(&bed, "a.test").expect("certificate written under live/a.test");
    assert!(
        cert.contains("DNS:a.test") && cert.contains("DNS:b.test"),
        "{cert}"
    );
    assert!(challenge_hits(&bed, 2) > 0 && challenge_hits(&bed, 3) > 0);
    assert!(
        token_files(&bed).is_empty(),
        "tokens left behind: {:?}",
        token_files(&bed)
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

    let out = auth(&bed, 1, "site.test", "tok123", "tok123.thumb");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("node2") && err.contains("node3") && err.contains("HTTP 404"),
        "{err}"
    );
    assert!(
        !err.contains("node1: self-check"),
        "node 1 has the token: {err}"
    );
    assert!(cleanup(&bed, 1, "site.test", "tok123").status.success());

    let out = certbot_certonly(&bed, &["site.test"]);
    assert!(!out.status.success(), "certbot must fail:\n{}", text(&out));
    assert!(cert_text(&bed, "site.test").is_none());

    let certbot_runs =
        || std::fs::read_dir(bed.root().join("certbot/logs")).map_or(0, |d| d.count());
    let runs_before = certbot_runs();
    let mut cmd = bed.certherd(
        1,
        &[
            "issue",
            "--certbot",
            &certbot_program_arg(),
            "-d",
            "site.test",
            "--",
        ],
    );
    cmd.args(bed.certbot_common_args())
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        certbot_runs(),
        runs_before,
        "certbot must not have run (no new log file)"
    );
    assert!(stderr(&out).contains("pre-flight failed"), "{}", text(&out));
    assert!(
        token_files(&bed).is_empty(),
        "tokens left behind: {:?}",
        token_files(&bed)
    );
}
