//! hooks/certherd-deploy (certbot's renewal-hooks/deploy/ directory hook) with a real
//! `certbot renew`: every renewal deploys exactly once, whether the deploy comes from the
//! lineage's stored `--deploy-hook` (what `certherd issue` sets) or from the directory hook.
//!
//! Proves no numbered guarantee of docs/GUARANTEES.md (listed there under "Not a guarantee, but
//! tested"); the "exactly once" rule is the README's ("One deploy per renewal").

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A `certherd` on PATH that logs `RENEWED_LINEAGE` and its arguments, one line per call, to
/// `log`, then runs the bed's binary (the account runs it, so it must be the bed's path, which
/// the account can reach): the count of `deploy` lines is the count of deploys.
fn counting_wrapper(bed: &Bed, dir: &Path, log: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let wrapper = dir.join("certherd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"${{RENEWED_LINEAGE##*/}} $*\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            bed.certherd_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

fn deploys(log: &Path, lineage: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{lineage} ")) && l.ends_with(" deploy"))
        .count()
}

fn certonly(bed: &Bed, domain: &str, deploy_hook: Option<&str>) {
    let mut args = bed.certonly_args(deploy_hook);
    args.extend(["-d".into(), domain.into()]);
    bed.node(1).certbot(args).run();
}

#[test]
fn a_renewal_deploys_exactly_once_from_either_hook() {
    let bed = bed(3, true);
    default_tls_everywhere(&bed);
    for name in ["stored.test", "dironly.test"] {
        bed.dns(name, &[2, 3]).unwrap();
    }
    let bin = bed.root().join("wrapper-bin");
    let log = bed.root().join("deploy-calls.log");
    let wrapper = counting_wrapper(&bed, &bin, &log);

    // stored.test: issued the way `certherd issue` does it, `<certherd> --config <cfg> deploy`
    // as its deploy hook (certbot stores it as renew_hook). dironly.test: no deploy hook.
    let stored_hook = format!(
        "{} --config {} deploy",
        wrapper.display(),
        bed.config_path(1).display()
    );
    certonly(&bed, "stored.test", Some(&stored_hook));
    certonly(&bed, "dironly.test", None);
    // stored.test reached every node through its deploy hook; a vhost serves it there.
    // dironly.test is on the primary only, and no vhost uses it (its deploy says `unused`).
    for n in 1..=3 {
        bed.add_tls_vhost(n, "stored.test", "stored.test").unwrap();
        reload_nginx(&bed, n);
    }
    let renewal = bed.letsencrypt_dir(1).join("renewal");
    let conf = std::fs::read_to_string(renewal.join("stored.test.conf")).unwrap();
    assert!(
        conf.contains(&format!("renew_hook = {stored_hook}")),
        "certbot did not store the deploy hook:\n{conf}"
    );

    let hooks = bed.letsencrypt_dir(1).join("renewal-hooks/deploy");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("certherd-deploy");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/certherd-deploy"),
        &hook,
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&log, "").unwrap();
    bed.chown_to_agent(&log).unwrap();

    // The real `certbot renew`, as `certherd renew` runs it (as the agent's account, never root
    // over the account's files): the directory hook finds `certherd` on PATH and the config in
    // CERTHERD_CONFIG.
    let mut cmd = Command::new(certherd_testbed::certbot_program());
    bed.as_agent(&mut cmd);
    cmd.args(["renew", "--force-renewal", "--no-random-sleep-on-renew"])
        .args(bed.certbot_common_args())
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
        )
        .env("CERTHERD_CONFIG", bed.config_path(1))
        .current_dir(bed.root());
    let ran = bed
        .node(1)
        .command(cmd)
        .any_status()
        .run_within(Duration::from_secs(180));
    // The wrapper's log is no node's: every failure below shows it beside the transcript.
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    ran.ensure(
        ran.code() == Some(0),
        format!("certbot renew succeeds\n--- calls\n{calls}"),
    );
    ran.ensure(
        deploys(&log, "stored.test") == 1,
        format!("stored.test deploys once\n--- calls\n{calls}"),
    );
    ran.ensure(
        deploys(&log, "dironly.test") == 1,
        format!("dironly.test deploys once\n--- calls\n{calls}"),
    );
    for lineage in ["stored.test", "dironly.test"] {
        let renewed = current_serial(&bed, lineage);
        for n in 1..=3 {
            assert_eq!(
                installed_serial(&bed, n, lineage),
                renewed,
                "node {n} {lineage}"
            );
        }
    }
    let renewed = current_serial(&bed, "stored.test");
    for n in 1..=3 {
        assert_eq!(
            served_serial(&bed, n, "stored.test"),
            renewed,
            "node {n} serves it"
        );
    }
}
