//! `certherd issue --config relative.toml` stores an ABSOLUTE config path in the hooks certbot
//! keeps in the renewal config: certbot's timer runs them from `/`, where a relative path names
//! another file or none (issue 11, "Why": "`issue` writes a relative config path").
//!
//! Proves Guarantee 1 of docs/GUARANTEES.md (issuance, and the renewal it sets up, works) for a
//! config named relative to the directory `issue` ran in.

mod common;
use common::*;

/// Run from the config's own directory with `--config certherd.toml`: every hook in
/// `renewal/site.test.conf` names the config by its absolute path, and a `certbot renew` run
/// from `/` renews through those stored hooks.
#[test]
fn issue_with_a_relative_config_stores_absolute_hook_paths() {
    let bed = bed(2, true);
    bed.dns("site.test", &[2]).unwrap();
    let config = bed.config_path(1);
    let dir = config.parent().unwrap();
    let file = config.file_name().unwrap().to_str().unwrap();

    // Bounded: `timeout` ends a hung certbot (pebble answers in seconds).
    let out = std::process::Command::new("timeout")
        .arg("180")
        .arg(bed.certherd_bin())
        .args([
            "--config",
            file,
            "issue",
            "--certbot",
            &certbot_program_arg(),
            "-d",
            "site.test",
            "--",
        ])
        .args(bed.certbot_common_args())
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "issue failed:\n{}", text(&out));

    let conf_path = bed.letsencrypt_dir(1).join("renewal/site.test.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let absolute = format!("--config {} ", config.display());
    for key in ["manual_auth_hook", "manual_cleanup_hook"] {
        let line = conf
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {}:\n{conf}", conf_path.display()));
        assert!(
            line.contains(&absolute),
            "{key} must name the config by its absolute path {}:\n{line}",
            config.display()
        );
    }

    // The stored hooks work from `/`, as certbot's timer runs them.
    let before = current_serial(&bed, "site.test");
    let mut args: Vec<String> = vec![
        "180".into(),
        certherd_testbed::certbot_program().display().to_string(),
        "renew".into(),
        "--force-renewal".into(),
        // Without a terminal certbot sleeps up to 8 minutes first (as certherd renew, skip it).
        "--no-random-sleep-on-renew".into(),
    ];
    args.extend(bed.certbot_common_args());
    let out = std::process::Command::new("timeout")
        .args(&args)
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .current_dir("/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certbot renew from /:\n{}",
        text(&out)
    );
    let after = current_serial(&bed, "site.test");
    assert!(
        !after.is_empty() && after != before,
        "the renewal from / did not replace the certificate ({before} -> {after})"
    );
}

/// The newest certbot from PyPI (scripts/setup-debian.sh installs it beside Debian's).
const PYPI_CERTBOT: &str = "/opt/certherd-certbot5/bin/certbot";

/// `certherd issue --preferred-profile NAME` (issue 21): a name that is no profile name is
/// refused naming it; a certbot older than 4.0 (Debian 12's 2.1) is refused up front naming its
/// version, before the pre-flight sends anything; certbot 5.x from PyPI is handed the flag and
/// keeps the profile in the renewal config (which a standby keeps too: standby.rs's unit test).
#[test]
fn issue_with_a_profile_needs_a_certbot_that_knows_profiles() {
    let bed = bed(2, true);
    bed.dns("site.test", &[2]).unwrap();
    let issue = |certbot: &str, profile: &str| {
        std::process::Command::new("timeout")
            .arg("180")
            .arg(bed.certherd_bin())
            .arg("--config")
            .arg(bed.config_path(1))
            .args([
                "issue",
                "--certbot",
                certbot,
                "--preferred-profile",
                profile,
            ])
            .args(["-d", "site.test", "--"])
            .args(bed.certbot_common_args())
            .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
            .output()
            .unwrap()
    };
    let error_line = |out: &std::process::Output| {
        stderr(out)
            .lines()
            .find(|l| l.contains("error:"))
            .unwrap_or_default()
            .to_owned()
    };

    let out = issue(PYPI_CERTBOT, "short lived;id");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        error_line(&out)
            .contains("--preferred-profile \"short lived;id\": expected an ACME profile name"),
        "{}",
        text(&out)
    );

    let debian = std::process::Command::new("/usr/bin/certbot")
        .arg("--version")
        .output()
        .unwrap();
    let debian = String::from_utf8_lossy(&debian.stdout)
        .trim()
        .replace("certbot ", "");
    let major: u32 = debian.split('.').next().unwrap().parse().unwrap();
    if major < 4 {
        let out = issue("/usr/bin/certbot", "shortlived");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            error_line(&out).contains(&format!(
                "certbot {debian} (/usr/bin/certbot) cannot ask for an ACME profile"
            )),
            "{}",
            text(&out)
        );
        assert_eq!(
            challenge_hits(&bed, 2),
            0,
            "the pre-flight ran although the certbot was refused"
        );
    }

    let out = issue(PYPI_CERTBOT, "shortlived");
    assert!(
        out.status.success(),
        "issue with certbot 5:\n{}",
        text(&out)
    );
    let conf =
        std::fs::read_to_string(bed.letsencrypt_dir(1).join("renewal/site.test.conf")).unwrap();
    assert!(
        conf.lines().any(|l| l == "preferred_profile = shortlived"),
        "{conf}"
    );

    // Node 2 becomes a standby: `doctor` asks which certbot its `certherd renew` runs. Debian's
    // (2.1 on 12, 4.0 on 13) would renew site.test with the CA's default profile after a
    // failover: a FAIL naming the node, its version and the lineage. certbot 5 keeps it: ok.
    bed.write_config(1, &[PeerSpec::new(2)], "").unwrap();
    edit_config(
        &bed,
        1,
        "name = \"node2\"\n",
        "name = \"node2\"\nstandby = true\n",
    );
    let standby_with = |certbot: &str| {
        bed.write_config(
            2,
            &[PeerSpec::new(1)],
            &format!("[renew]\nprimary = \"node1\"\ncertbot = [{certbot:?}]\n"),
        )
        .unwrap();
        edit_config(
            &bed,
            2,
            "name = \"node2\"\n",
            "name = \"node2\"\nstandby = true\n",
        );
        bed.certherd(1, &["doctor"]).output().unwrap()
    };
    let out = standby_with("/usr/bin/certbot");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "FAIL  node2: standby certbot {debian}: 1 lineage(s) ask for an ACME profile (e.g. site.test: shortlived)"
        )),
        "{}",
        text(&out)
    );
    let out = standby_with(PYPI_CERTBOT);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok    node2: standby certbot 5."),
        "{}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("FAIL  node2: standby"),
        "{}",
        text(&out)
    );
}
