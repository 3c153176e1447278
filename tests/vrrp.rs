//! Real VRRP failover: every node is its own network namespace (the bed's `netns` option),
//! keepalived (the Debian package) runs in node 1's and node 2's namespaces with the VIP
//! 198.18.B.100 on their `eth0`, and `contrib/keepalived/notify-certherd.sh` — exactly as
//! shipped — is keepalived's notify script (the bed's stand-in `systemctl` runs
//! `certherd renew --jitter 0s` and starts/stops `certherd watch`). Both nodes have
//! `[renew] vip`, each is the other's standby (README, Failover). Pulling node 1's cable moves the
//! VIP; `certherd renew` on node 2 continues the same lineage with the same ACME account (real
//! certbot, pebble) and the surviving nodes serve it; node 1 comes back without the VIP and does
//! not renew; `sync` from node 2 catches it up; fail-back the same way round; every node
//! consistent at the end. The agent is the bed's non-root account throughout, and at the end
//! every file under `archive/` and `live/` on every node is its account's.
//!
//! Proves Guarantees 3 (a down peer is caught up by `sync`) and 8 (roles change both ways with
//! the agent non-root, here with a real VIP moving between namespaces) of docs/GUARANTEES.md.

mod common;
use common::*;

use certherd_testbed::Vrrp;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

const LINEAGE: &str = "site.test";
/// VRRP moves in about 3 advert intervals (1 s); bounded well above that.
const VIP_MOVES: Duration = Duration::from_secs(20);
/// A certbot run (through the stand-in systemctl) is bounded like the bed's own certbot runs.
const CERTBOT_RUN: Duration = Duration::from_secs(120);

fn netns_bed() -> Bed {
    Bed::start(BedOptions {
        nodes: 3,
        ca: true,
        certherd: certherd_bin().into(),
        netns: true,
    })
    .unwrap_or_else(|e| panic!("namespaced test bed did not start: {e}"))
}

/// `[renew]` with the VIP and certbot on this node's own directories.
fn renew_section(bed: &Bed, n: usize, vip: Ipv4Addr) -> String {
    format!(
        "[renew]\nvip = \"{vip}\"\ncertbot = {:?}\n",
        bed.renew_certbot_argv(n)
    )
}

/// Nodes 1 and 2: each lists the other (a standby, optional: it may be the one that is down)
/// and node 3; each is a standby by its own config, accepting the bed's pebble.
fn configure(bed: &Bed, vip: Ipv4Addr) {
    for (me, other) in [(1, 2), (2, 1)] {
        let mut partner = PeerSpec::new(other);
        partner.optional = true;
        bed.write_config(
            me,
            &[partner, PeerSpec::new(3)],
            &renew_section(bed, me, vip),
        )
        .unwrap();
        let entry = format!("name = \"node{other}\"\n");
        edit_config(bed, me, &entry, &format!("{entry}standby = true\n"));
        // write_config puts this node's own `name` first, before any [[peers]] name.
        let own = format!("name = \"node{me}\"\n");
        edit_config(
            bed,
            me,
            &own,
            &format!(
                "{own}standby = true\nacme_servers = [\"{}\"]\n",
                bed.pebble_url()
            ),
        );
    }
}

fn holds(bed: &Bed, n: usize, vip: Ipv4Addr) -> bool {
    bed.node_addrs(n)
        .unwrap_or_else(|e| panic!("{e}"))
        .contains(&vip)
}

/// Waits until exactly `holder` of nodes 1 and 2 has the VIP (`ip -n NS addr`).
fn wait_vip(bed: &Bed, holder: usize, vip: Ipv4Addr, context: &str) {
    let other = 3 - holder;
    let moved = wait_until(VIP_MOVES, || {
        holds(bed, holder, vip) && !holds(bed, other, vip)
    });
    assert!(
        moved,
        "{context}: the VIP is not on node {holder} alone: node 1 {:?}, node 2 {:?}\n{}",
        bed.node_addrs(1),
        bed.node_addrs(2),
        keepalived_logs(bed)
    );
}

fn keepalived_logs(bed: &Bed) -> String {
    (1..=2)
        .map(|n| {
            format!(
                "--- node {n} keepalived\n{}\n--- node {n} systemctl\n{}",
                std::fs::read_to_string(bed.keepalived_log(n)).unwrap_or_default(),
                std::fs::read_to_string(bed.systemctl_log(n)).unwrap_or_default()
            )
        })
        .collect()
}

fn systemctl_calls(bed: &Bed, n: usize, line: &str) -> usize {
    std::fs::read_to_string(bed.systemctl_log(n))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(line))
        .count()
}

/// Waits until the notify script's `certherd renew` on node `n` finished for the `count`th time
/// (its certbot holds the renew lock meanwhile) and asserts it exited 0.
fn wait_notify_renew(bed: &Bed, n: usize, count: usize, context: &str) {
    let done = wait_until(CERTBOT_RUN, || {
        systemctl_calls(bed, n, "renew exit") >= count
    });
    let renew_log = bed.systemctl_log(n).with_file_name("renew.log");
    assert!(
        done && systemctl_calls(bed, n, "renew exit 0") >= count,
        "{context}: notify → systemctl start certherd-renew.service on node {n}:\n{}\n--- renew.log\n{}",
        keepalived_logs(bed),
        std::fs::read_to_string(renew_log).unwrap_or_default()
    );
    assert!(
        wait_until(VIP_MOVES, || systemctl_calls(bed, n, "watch start")
            >= count),
        "{context}: no watcher started on node {n}:\n{}",
        keepalived_logs(bed)
    );
}

/// Waits until node `n`'s keepalived entered BACKUP for the `count`th time.
fn wait_backup(bed: &Bed, n: usize, count: usize, context: &str) {
    let backup = wait_until(VIP_MOVES, || {
        std::fs::read_to_string(bed.keepalived_log(n))
            .unwrap_or_default()
            .matches("Entering BACKUP STATE")
            .count()
            >= count
    });
    assert!(
        backup,
        "{context}: node {n} not BACKUP:\n{}",
        keepalived_logs(bed)
    );
}

/// `certherd renew` on node `n` (forced or not), not run yet.
fn renew(bed: &Bed, n: usize, force: bool) -> Exec<'_> {
    let args: &[&str] = if force {
        &["renew", "--jitter", "0s", "--", "--force-renewal"]
    } else {
        &["renew", "--jitter", "0s"]
    };
    bed.node(n)
        .certherd(args)
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
}

/// `certherd sync` from node `from`, not run yet.
fn sync(bed: &Bed, from: usize) -> Exec<'_> {
    bed.node(from).certherd(["sync"])
}

/// The ACME account certbot's renewal config on node `n` names (`account = <id>`).
fn renewal_account(bed: &Bed, n: usize) -> String {
    let path = bed
        .letsencrypt_dir(n)
        .join("renewal")
        .join(format!("{LINEAGE}.conf"));
    let conf = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("node {n}: {}: {e}", path.display()));
    conf.lines()
        .find_map(|l| l.strip_prefix("account = "))
        .unwrap_or_else(|| panic!("node {n}: no account in {}:\n{conf}", path.display()))
        .trim()
        .to_owned()
}

/// The account ids under node `n`'s `accounts/` (the directories holding private_key.json).
fn account_dirs(bed: &Bed, n: usize) -> Vec<String> {
    certherd::commands::stateless::account_keys(&bed.letsencrypt_dir(n))
        .iter()
        .filter_map(|k| Some(k.parent()?.file_name()?.to_string_lossy().into_owned()))
        .collect()
}

fn version(bed: &Bed, n: usize) -> String {
    live_links(bed, n, LINEAGE)[0].clone()
}

fn cert(v: u32) -> String {
    format!("../../archive/{LINEAGE}/cert{v}.pem")
}

/// What certbot logged on node `n` so far (certbot appends to letsencrypt.log on every run).
fn certbot_log(bed: &Bed, n: usize) -> Option<Vec<u8>> {
    std::fs::read(
        bed.root()
            .join(format!("certbot/logs{n}"))
            .join("letsencrypt.log"),
    )
    .ok()
}

#[test]
fn keepalived_vip_moves_the_primary_both_ways() {
    let bed = netns_bed();
    let vip = bed.vip(100).unwrap();
    // pebble validates the first address: node 3, which never goes down.
    bed.dns(LINEAGE, &[3, 2, 1]).unwrap();
    enable_tls(&bed, LINEAGE);
    configure(&bed, vip);
    bed.node(1)
        .certbot_certonly_with_deploy(&[LINEAGE])
        .expect_status(0)
        .run();
    let account = renewal_account(&bed, 1);
    assert_eq!(
        account_dirs(&bed, 2),
        vec![account.clone()],
        "standby's account"
    );
    assert_every_node_consistent(&bed, LINEAGE, &[1, 1, 1], "issued");

    // keepalived: node 1 first (priority 150), so it wins the first election; nopreempt.
    bed.start_keepalived(
        1,
        &[2],
        &Vrrp {
            vip,
            priority: 150,
            preempt: false,
        },
    )
    .unwrap();
    wait_vip(&bed, 1, vip, "start");
    bed.start_keepalived(
        2,
        &[1],
        &Vrrp {
            vip,
            priority: 100,
            preempt: false,
        },
    )
    .unwrap();
    wait_backup(&bed, 2, 1, "start");
    // MASTER → the shipped notify script → `certherd renew` (nothing due) and the watcher.
    wait_notify_renew(&bed, 1, 1, "node 1 became MASTER");
    assert_eq!(version(&bed, 1), cert(1));

    // Pull node 1's cable: the VIP moves to node 2.
    bed.link_down(1).unwrap();
    wait_vip(&bed, 2, vip, "node 1's link down");
    wait_notify_renew(&bed, 2, 1, "node 2 became MASTER");
    renew(&bed, 2, true).expect_status(0).run();
    assert_eq!(version(&bed, 2), cert(2), "node 2 renewed the same lineage");
    assert_eq!(renewal_account(&bed, 2), account, "the same ACME account");
    assert_eq!(
        account_dirs(&bed, 2),
        vec![account.clone()],
        "no new account"
    );
    let v2 = installed_serial(&bed, 2, LINEAGE);
    for n in [2, 3] {
        assert_eq!(version(&bed, n), cert(2), "node {n}");
        // Settled: the renewal's reload may have just happened (nginx's reload overlap).
        assert_eq!(
            settled_serial(&bed, n, LINEAGE, &v2),
            v2,
            "node {n} serves v2"
        );
    }
    assert_eq!(version(&bed, 1), cert(1), "node 1 was unreachable");

    // Node 1 comes back: BACKUP (nopreempt), the VIP stays on node 2, renew does nothing.
    bed.link_up(1).unwrap();
    wait_backup(&bed, 1, 2, "node 1's link up");
    wait_vip(&bed, 2, vip, "node 1 back");
    let before = certbot_log(&bed, 1);
    // renew on node 1 without the VIP
    renew(&bed, 1, true)
        .expect_status(0)
        .stderr_has(["not the primary"])
        .run();
    assert_eq!(certbot_log(&bed, 1), before, "certbot ran on node 1");
    assert_eq!(version(&bed, 1), cert(1));
    // `sync` from the VIP holder catches node 1 up.
    sync(&bed, 2).expect_status(0).run();
    assert_every_node_consistent(&bed, LINEAGE, &[2, 2, 2], "after sync from node 2");
    assert_eq!(
        settled_serial(&bed, 1, LINEAGE, &v2),
        v2,
        "node 1 serves v2"
    );

    // Fail back: node 2's cable this time; node 1 takes the VIP and renews.
    bed.link_down(2).unwrap();
    wait_vip(&bed, 1, vip, "node 2's link down");
    wait_notify_renew(&bed, 1, 2, "node 1 MASTER again");
    renew(&bed, 1, true).expect_status(0).run();
    assert_eq!(renewal_account(&bed, 1), account, "the same ACME account");
    let v3 = installed_serial(&bed, 1, LINEAGE);
    assert_ne!(v3, v2);
    for n in [1, 3] {
        assert_eq!(version(&bed, n), cert(3), "node {n}");
        assert_eq!(
            settled_serial(&bed, n, LINEAGE, &v3),
            v3,
            "node {n} serves v3"
        );
    }
    bed.link_up(2).unwrap();
    wait_backup(&bed, 2, 2, "node 2's link up");
    wait_vip(&bed, 1, vip, "node 2 back");
    // renew on node 2 without the VIP
    renew(&bed, 2, false)
        .expect_status(0)
        .stderr_has(["not the primary"])
        .run();
    sync(&bed, 1).expect_status(0).run();
    // `sync` both ways: from either side there is nothing left to do.
    for from in [1, 2] {
        sync(&bed, from)
            .expect_status(0)
            .stdout_lacks([" ok ", "FAILED"])
            .run();
    }
    assert_every_node_consistent(&bed, LINEAGE, &[3, 3, 3], "after fail-back");
    for n in 1..=3 {
        assert_eq!(
            settled_serial(&bed, n, LINEAGE, &v3),
            v3,
            "node {n} serves v3"
        );
    }
    assert_eq!(account_dirs(&bed, 1), vec![account.clone()]);
    assert_eq!(account_dirs(&bed, 2), vec![account]);
    // The roles changed both ways with the agent non-root: whichever node's certbot wrote them,
    // every entry under archive/ and live/ on every node is the agent's account's.
    let (uid, _) = bed.agent_uid_gid();
    assert_ne!(uid, 0);
    for n in 1..=3 {
        for dir in ["archive", "live"] {
            let foreign = not_owned_by(&bed.letsencrypt_dir(n).join(dir), uid);
            assert!(foreign.is_empty(), "node {n}: not the agent's: {foreign:?}");
        }
    }
}

/// Every path under `dir` (itself included, links not followed) whose owner is not `uid`.
fn not_owned_by(dir: &std::path::Path, uid: u32) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if meta.uid() != uid {
            out.push(p.clone());
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        }
    }
    out
}
