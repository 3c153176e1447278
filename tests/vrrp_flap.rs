//! keepalived's notify script (`contrib/keepalived/notify-certherd.sh`, as shipped) when the
//! node flaps MASTER → BACKUP while the renewal its MASTER notify started still runs (issue 23
//! item 5): no `certherd watch` may be left running on the BACKUP node.
//!
//! Real keepalived in the nodes' namespaces (testbed/src/keepalived.rs, its stand-in `systemctl`
//! runs a oneshot `start` synchronously, a `--no-block` one as a queued job). Node 1 becomes
//! MASTER alone; its renewal's certbot is slowed down (a wrapper that sleeps first); meanwhile
//! node 2 starts with a higher priority and preempts it. With a blocking `systemctl start` of the
//! renewal, the MASTER script was still inside it when the BACKUP notify stopped the (not yet
//! started) watcher, and then started it: the negative control, seen by reverting the script.

mod common;
use common::*;

use certherd_testbed::Vrrp;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const LINEAGE: &str = "flap.test";
/// How long node 1's certbot waits before it runs: the window for the flap.
const SLOW: u64 = 15;

fn log(bed: &Bed, n: usize) -> String {
    std::fs::read_to_string(bed.systemctl_log(n)).unwrap_or_default()
}

fn keepalived(bed: &Bed, n: usize) -> String {
    std::fs::read_to_string(bed.keepalived_log(n)).unwrap_or_default()
}

/// The `certherd watch` the stand-in systemctl recorded for node `n`, if it still runs.
fn running_watcher(bed: &Bed, n: usize) -> Option<i32> {
    let pid_file = bed.systemctl_log(n).with_file_name("watch.pid");
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(&*bed.config_path(n).to_string_lossy())
        .then_some(pid)
}

#[test]
fn a_flap_during_the_renewal_leaves_no_watcher_on_the_backup() {
    let bed = Bed::start(BedOptions {
        nodes: 3,
        ca: true,
        certherd: certherd_bin().into(),
        netns: true,
    })
    .unwrap_or_else(|e| panic!("namespaced test bed did not start: {e}"));
    let vip = bed.vip(100).unwrap();
    bed.dns(LINEAGE, &[3]).unwrap();
    bed.node(1).certbot_certonly_with_deploy(&[LINEAGE]).run();

    // Node 1's renewal: certbot after a sleep (the account runs it: a root-owned 0755 script).
    let slow = bed.root().join("slow-certbot");
    std::fs::write(&slow, format!("#!/bin/sh\nsleep {SLOW}\nexec \"$@\"\n")).unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut argv = vec![slow.to_string_lossy().into_owned()];
    argv.extend(bed.renew_certbot_argv(1));
    let renew = |argv: &[String]| format!("[renew]\nvip = \"{vip}\"\ncertbot = {argv:?}\n");
    bed.write_config(1, &[PeerSpec::new(2), PeerSpec::new(3)], &renew(&argv))
        .unwrap();
    bed.write_config(2, &[PeerSpec::new(3)], &renew(&bed.renew_certbot_argv(2)))
        .unwrap();

    // Node 1 alone: MASTER, and its notify starts the (slow) renewal.
    bed.start_keepalived(
        1,
        &[2],
        &Vrrp {
            vip,
            priority: 100,
            preempt: true,
        },
    )
    .unwrap();
    let started = wait_until(Duration::from_secs(20), || {
        log(&bed, 1).lines().any(|l| l.starts_with("renew "))
    });
    assert!(
        started,
        "node 1's notify started no renewal:\n{}",
        keepalived(&bed, 1)
    );
    assert!(
        !log(&bed, 1).contains("renew exit"),
        "the renewal was not slow enough"
    );

    // The flap: node 2 (higher priority, preempting) takes the VIP during the renewal.
    bed.start_keepalived(
        2,
        &[1],
        &Vrrp {
            vip,
            priority: 150,
            preempt: true,
        },
    )
    .unwrap();
    let backup = wait_until(Duration::from_secs(20), || {
        keepalived(&bed, 1).contains("Entering BACKUP STATE")
            && keepalived(&bed, 1).contains("Entering MASTER STATE")
            && bed.node_addrs(2).unwrap_or_default().contains(&vip)
    });
    assert!(
        backup,
        "node 1 did not flap to BACKUP:\n{}",
        keepalived(&bed, 1)
    );
    assert!(
        !log(&bed, 1).contains("renew exit"),
        "the flap came after the renewal:\n{}",
        log(&bed, 1)
    );

    // The renewal ends; whatever the MASTER script still had to do is done a moment later.
    let ended = wait_until(Duration::from_secs(SLOW + 120), || {
        log(&bed, 1).contains("renew exit")
    });
    assert!(ended, "node 1's renewal never ended:\n{}", log(&bed, 1));
    std::thread::sleep(Duration::from_secs(2));
    let calls = log(&bed, 1);
    assert_eq!(
        running_watcher(&bed, 1),
        None,
        "certherd watch runs on node 1, a BACKUP:\n{calls}"
    );
    let last_watch = calls.lines().rfind(|l| l.starts_with("watch "));
    assert!(
        last_watch.is_some_and(|l| l.starts_with("watch stop")),
        "node 1's last watcher call is not a stop:\n{calls}"
    );
}
