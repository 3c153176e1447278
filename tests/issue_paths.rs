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
    let mut issue = std::process::Command::new("timeout");
    issue
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
        .current_dir(dir);
    bed.node(1).command(issue).run();

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
    let mut renew = std::process::Command::new("timeout");
    renew
        .args(&args)
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .current_dir("/");
    bed.node(1).command(renew).run();
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
        let mut cmd = std::process::Command::new("timeout");
        cmd.arg("180")
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
            .env("REQUESTS_CA_BUNDLE", bed.ca_bundle());
        bed.node(1).command(cmd)
    };
    let error_line = |ran: &Ran| {
        ran.stderr()
            .lines()
            .find(|l| l.contains("error:"))
            .unwrap_or_default()
            .to_owned()
    };

    let ran = issue(PYPI_CERTBOT, "short lived;id").expect_status(2).run();
    ran.ensure(
        error_line(&ran)
            .contains("--preferred-profile \"short lived;id\": expected an ACME profile name"),
        "the error line names the profile and what was expected",
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
        let ran = issue("/usr/bin/certbot", "shortlived")
            .expect_status(2)
            .run();
        ran.ensure(
            error_line(&ran).contains(&format!(
                "certbot {debian} (/usr/bin/certbot) cannot ask for an ACME profile"
            )),
            "the error line names certbot's version",
        );
        assert_eq!(
            challenge_hits(&bed, 2),
            0,
            "the pre-flight ran although the certbot was refused"
        );
    }

    // issue with certbot 5.
    issue(PYPI_CERTBOT, "shortlived").run();
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
        bed.node(1).certherd(["doctor"])
    };
    standby_with("/usr/bin/certbot")
        .expect_failure()
        .stdout_has([format!(
            "FAIL  node2: standby certbot {debian}: 1 lineage(s) ask for an ACME profile (e.g. site.test: shortlived)"
        )])
        .run();
    standby_with(PYPI_CERTBOT)
        .any_status()
        .stdout_has(["ok    node2: standby certbot 5."])
        .stdout_lacks(["FAIL  node2: standby"])
        .run();
}
