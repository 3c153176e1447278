//! Issue 19, on the real bed: two pushes of one lineage reach a peer at once (two primaries
//! deploying the same renewal), and the first one's config test fails there. The failed install
//! cleans up what it created under the per-lineage lock; the second, which waited for that lock,
//! then installs whole: node 2 reports `TEST-FAIL` for one push and `ok` for the other, and ends
//! consistent on the new version, served, with no temp file. Before, the clean-up ran after the
//! lock was let go and deleted the lock file and the version's files under the waiting install.
//!
//! Proves Guarantees 2 and 6 of docs/GUARANTEES.md (the list there names the test).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::{Cluster, Deployment, Install};
use common::*;

/// The lineage both pushes deploy.
const LINEAGE: &str = "site.test";

#[test]
fn two_pushes_at_once_with_a_test_that_fails_once_both_end_correctly() {
    let cluster = Cluster::new(3).issued(LINEAGE);
    // Node 2's config test: its first run waits 2 s (long enough for the second push to queue
    // on the lineage lock), then fails; every later run is the real `nginx -t` through sudo.
    let flags = cluster.root().join("flaky-test");
    std::fs::create_dir_all(&flags).unwrap();
    cluster.chown_to_agent(&flags).unwrap();
    let flag = flags.join("failed-once");
    let test = format!(
        "if [ -e {f} ]; then exec sudo -n /usr/sbin/nginx -t -q -c {conf}; fi; \
         touch {f}; sleep 2; exit 1",
        f = flag.display(),
        conf = cluster.nginx_conf(2).display()
    );
    cluster
        .config(2)
        .set("reload.test", vec!["sh", "-c", &test])
        .unwrap();
    // A second primary (own name, own SSH connections), as in faults.rs.
    let second = cluster.root().join("primary-b.toml");
    std::fs::copy(cluster.config_path(1), &second).unwrap();
    certherd_testbed::ConfigFile::at(&second)
        .set("name", "node1b")
        .unwrap()
        .set(
            "ssh.control_dir",
            cluster.root().join("ssh/cm-b").to_str().unwrap(),
        )
        .unwrap()
        .set("ssh.persist", "1s")
        .unwrap();
    let v = cluster.renew();

    // `deploy --lineage L --format json` with a primary's config file. Neither exit status is
    // checked before the installs are: which push fails node 2's test is the claim below.
    let bed = cluster.bed();
    let deploy = |config: &Path| {
        let mut cmd = Command::new(bed.certherd_bin());
        cmd.arg("--config")
            .arg(config)
            .args(["deploy", "--lineage", LINEAGE, "--format", "json"]);
        bed.node(1).command(cmd).any_status()
    };
    let first = bed.config_path(1);
    // The first push runs in a thread; the second starts once node 2's test is under way.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| deploy(&first).run());
        assert!(
            wait_until(Duration::from_secs(20), || flag.exists()),
            "the first push never ran node 2's config test"
        );
        let b = deploy(&second).run();
        (a.join().expect("the first push's thread"), b)
    });
    let (da, db): (Deployment, Deployment) = (a.json(), b.json());

    let mut installs = [da.row("node2").install, db.row("node2").install];
    installs.sort();
    a.ensure(
        installs == [Install::Ok, Install::TestFailed],
        format!("node2: one push fails its test, the other installs (this is A; B:)\n{b}"),
    );
    b.ensure(b.code() == Some(0), "the second push succeeds");
    cluster.assert_versions(&[v, v, v], "after two pushes at once");
    for n in 1..=3 {
        cluster
            .assert_node(n)
            .serves_version(v)
            .has_no_temp_files()
            .has_no_pending_install();
    }
}
