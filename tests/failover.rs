//! Primary failover: a standby receives certbot's renewal config and account with every deploy,
//! so after the primary role moves, `certherd renew` there continues the same lineage.
//!
//! Every peer's agent runs as the bed's own non-root account, so the roles change both ways
//! without a root agent: the old primary (whose tree certbot wrote as root) takes the standby's
//! renewal as a peer, and after the fail-back the standby takes the primary's.
//!
//! Proves Guarantees 4 and 8 of docs/GUARANTEES.md (the list there names each test).

mod common;
use common::*;

fn renew_section(bed: &Bed, n: usize, primary: &str) -> String {
    format!(
        "[renew]\nprimary = \"{primary}\"\ncertbot = {:?}\n",
        bed.renew_certbot_argv(n)
    )
}

/// Makes node `n` a standby by its own decision (top-level `standby = true`), accepting the
/// bed's pebble as the ACME server of the renewal configs it receives.
fn own_standby(bed: &Bed, n: usize) {
    let name = format!("name = \"node{n}\"\n");
    edit_config(
        bed,
        n,
        &name,
        &format!(
            "{name}standby = true\nacme_servers = [\"{}\"]\n",
            bed.pebble_url()
        ),
    );
}

fn configure(bed: &Bed, primary: &str) {
    bed.write_config(
        1,
        &[PeerSpec::new(2), PeerSpec::new(3)],
        &renew_section(bed, 1, primary),
    )
    .unwrap();
    edit_config(
        bed,
        1,
        "name = \"node2\"\n",
        "name = \"node2\"\nstandby = true\n",
    );
    bed.write_config(
        2,
        &[PeerSpec::new(1), PeerSpec::new(3)],
        &renew_section(bed, 2, primary),
    )
    .unwrap();
    edit_config(
        bed,
        2,
        "name = \"node1\"\n",
        "name = \"node1\"\nstandby = true\n",
    );
    // write_config puts this node's own `name` first, before any [[peers]] name.
    own_standby(bed, 1);
    own_standby(bed, 2);
}

/// `certherd renew -- --force-renewal` on node `n`, not run yet.
fn renew(bed: &Bed, n: usize) -> Exec<'_> {
    bed.node(n)
        .certherd(["renew", "--", "--force-renewal"])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
}

#[test]
fn standby_renews_after_the_primary_role_moves() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    enable_tls(&bed, "site.test");
    configure(&bed, "node1");
    bed.node(1)
        .certbot_certonly_with_deploy(&["site.test"])
        .expect_status(0)
        .run();

    renew(&bed, 1).expect_status(0).run();
    let key = bed.letsencrypt_dir(2).join("renewal/site.test.conf");
    let conf = std::fs::read_to_string(&key).expect("standby has the renewal config");
    assert!(
        conf.contains(&bed.letsencrypt_dir(2).display().to_string()),
        "paths rewritten to node 2's:\n{conf}"
    );
    assert!(
        !conf.contains(&bed.letsencrypt_dir(1).display().to_string()),
        "node 1's paths left:\n{conf}"
    );
    assert!(
        conf.contains(&bed.config_path(2).display().to_string()),
        "hooks use node 2's config:\n{conf}"
    );
    // Rebuilt by the standby (issue 9): its own three certherd hooks and nothing else that runs,
    // every path below its own letsencrypt dir.
    let hooks: Vec<&str> = conf
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("hook"))
        .collect();
    assert_eq!(hooks.len(), 3, "{conf}");
    let own_hook = format!(
        "= {} --config {} ",
        std::fs::canonicalize(bed.certherd_bin()).unwrap().display(),
        bed.config_path(2).display()
    );
    assert!(hooks.iter().all(|h| h.contains(&own_hook)), "{conf}");
    for line in conf.lines().filter(|l| {
        !l.starts_with('#') && !l.contains("hook") && !l.starts_with("server") && l.contains('/')
    }) {
        assert!(
            line.contains(&format!("= {}/", bed.letsencrypt_dir(2).display())),
            "a path outside node 2's letsencrypt dir: {line}"
        );
    }
    let keys = certherd::commands::stateless::account_keys(&bed.letsencrypt_dir(2));
    assert_eq!(keys.len(), 1, "standby has the account: {keys:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&keys[0]).unwrap().permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o400, "account key mode");
    let primary_key = certherd::commands::stateless::account_keys(&bed.letsencrypt_dir(1));
    assert_eq!(
        std::fs::read(&keys[0]).unwrap(),
        std::fs::read(&primary_key[0]).unwrap()
    );
    for n in 1..=3 {
        assert_eq!(
            live_links(&bed, n, "site.test")[0],
            "../../archive/site.test/cert2.pem",
            "node {n}"
        );
    }
    assert_no_account_or_renewal(&bed, 3);

    // The primary role moves to node 2 (a VIP moving, as far as certherd can tell).
    configure(&bed, "node2");
    renew(&bed, 1)
        .expect_status(0)
        .stderr_has(["not the primary"])
        .run();
    // renew on the standby
    renew(&bed, 2).expect_status(0).run();

    let new = installed_serial(&bed, 2, "site.test");
    for n in 1..=3 {
        assert_eq!(
            live_links(&bed, n, "site.test")[0],
            "../../archive/site.test/cert3.pem",
            "node {n}"
        );
        assert_eq!(
            installed_serial(&bed, n, "site.test"),
            new,
            "node {n} installed"
        );
        // Settled: the renewal's reload may have just happened (nginx's reload overlap).
        assert_eq!(
            settled_serial(&bed, n, "site.test", &new),
            new,
            "node {n} serves"
        );
    }

    // Fail back: node 1 is the primary again. certbot wrote node 2's tree as root while it was
    // primary; node 2 takes node 1's renewal as a peer all the same (the agent is not root).
    configure(&bed, "node1");
    renew(&bed, 2)
        .expect_status(0)
        .stderr_has(["not the primary"])
        .run();
    // renew after fail-back
    renew(&bed, 1).expect_status(0).run();
    let back = installed_serial(&bed, 1, "site.test");
    assert_ne!(back, new, "a new version after fail-back");
    // `sync` both ways: from the primary and from the standby, nothing left to do.
    for from in [1, 2] {
        // sync from node `from` finds no work
        bed.node(from)
            .certherd(["sync"])
            .expect_status(0)
            .stdout_lacks([" ok ", "FAILED"])
            .run();
    }
    for n in 1..=3 {
        assert_eq!(
            live_links(&bed, n, "site.test")[0],
            "../../archive/site.test/cert4.pem",
            "node {n} after fail-back"
        );
        assert_eq!(installed_serial(&bed, n, "site.test"), back, "node {n}");
        assert_eq!(
            settled_serial(&bed, n, "site.test", &back),
            back,
            "node {n} serves"
        );
    }
    assert_no_account_or_renewal(&bed, 3);
}

/// Node `n` is not a standby: it never received the ACME account or a renewal config (nothing
/// under `accounts/` or `renewal/`, not even the directories).
fn assert_no_account_or_renewal(bed: &Bed, n: usize) {
    for dir in ["accounts", "renewal"] {
        let path = bed.letsencrypt_dir(n).join(dir);
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "non-standby node {n} has {}",
            path.display()
        );
    }
}
