//! `certherd doctor` checks this node first, each FAIL with its fix, and each FAIL goes away
//! when the fix is applied: the identity (missing, readable by others, unreadable by the account
//! running doctor), a known_hosts entry under exactly each peer's configured `host`, the webroot
//! and letsencrypt dir (present, the agent's account's, 0755), `[reload]` allowed by sudo to the
//! agent's account without a password, and Debian's own certbot schedule on a node that holds
//! renewal configs (issue 11, "Why": doctor checks neither the identity nor known_hosts nor the
//! local directories). On the real bed: real ssh-keygen, sudo, runuser, the bed's agent account.
//!
//! Proves Guarantee 9 of docs/GUARANTEES.md (it does not say fine about what it could not see)
//! and the set-up half of Guarantee 7 (the agent's account may run exactly `[reload]`).

mod common;
use common::exec::Nodes;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn doctor(bed: &Bed) -> (Option<i32>, String) {
    let ran = bed.node(1).certherd(["doctor"]).any_status().run();
    (ran.code(), ran.stdout())
}

/// The `FAIL` line containing `what` and its fix line, if doctor printed one.
fn failure<'a>(report: &'a str, what: &str) -> Option<(&'a str, &'a str)> {
    let lines: Vec<&str> = report.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("FAIL  ") && l.contains(what))?;
    let fix = lines.get(i + 1)?.trim_start().strip_prefix("fix: ")?;
    Some((lines[i], fix))
}

/// Asserts a FAIL about `what` whose fix contains `fix`; returns the FAIL line.
fn assert_fails(bed: &Bed, what: &str, fix: &str) -> String {
    let (code, report) = doctor(bed);
    assert_eq!(code, Some(1), "{report}");
    let (line, got) =
        failure(&report, what).unwrap_or_else(|| panic!("no FAIL for {what}:\n{report}"));
    assert!(
        got.contains(fix),
        "fix for {what} should contain {fix:?}:\n{report}"
    );
    line.to_owned()
}

/// Asserts doctor prints no FAIL about `what` and an `ok` line for it.
fn assert_fixed(bed: &Bed, what: &str) {
    let (_, report) = doctor(bed);
    assert!(failure(&report, what).is_none(), "still failing:\n{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok    ") && l.contains(what)),
        "no ok line for {what}:\n{report}"
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Debian's certbot schedule as it is on this machine: the timer's symlink (the certbot package
/// creates it even where systemd does not run), or its cron entry when systemd does not run.
fn certbot_schedule_active() -> bool {
    let timer = Path::new("/etc/systemd/system/timers.target.wants/certbot.timer");
    let systemd = Path::new("/run/systemd/system").is_dir();
    timer.symlink_metadata().is_ok() || (!systemd && Path::new("/etc/cron.d/certbot").exists())
}

#[test]
fn each_local_failure_is_reported_with_its_fix_and_clears_when_fixed() {
    let bed = bed(2, false);
    let user = bed.agent_user().to_owned();
    let ip2 = bed.ip(2).to_string();
    // Node 1 renews (no `[renew] primary` names another node), so certbot runs here as the
    // agent's account: its work and log dirs are the bed's, the account's, as README step 1
    // makes /var/lib/letsencrypt and /var/log/letsencrypt.
    let (work, logs) = (
        bed.root().join("certbot/work"),
        bed.root().join("certbot/logs"),
    );
    for dir in [&work, &logs] {
        std::fs::create_dir_all(dir).unwrap();
        bed.chown_to_agent(dir).unwrap();
    }
    let certbot: Vec<String> = vec![
        "/usr/bin/certbot".into(),
        "--work-dir".into(),
        work.display().to_string(),
        format!("--logs-dir={}", logs.display()),
    ];
    bed.config(1).set("renew.certbot", certbot).unwrap();

    // A bed set up as the README says: no FAIL at all.
    let (code, report) = doctor(&bed);
    assert!(!report.contains("FAIL"), "{report}");
    assert_eq!(code, Some(0), "{report}");
    for what in [
        "[ssh] identity",
        "known_hosts entry",
        "webroot",
        "letsencrypt_dir",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok    ") && l.contains(what)),
            "{what}:\n{report}"
        );
    }
    // The local checks come before any peer is asked.
    let first_peer = report.find("node2: ssh and agent").unwrap();
    assert!(
        report.find("[ssh] identity").unwrap() < first_peer,
        "{report}"
    );

    // Identity readable by others (ssh refuses it), then fixed.
    let identity = bed.ssh_identity();
    chmod(&identity, 0o644);
    assert_fails(
        &bed,
        "[ssh] identity",
        &format!("chmod 600 {}", identity.display()),
    );
    chmod(&identity, 0o600);
    assert_fixed(&bed, "[ssh] identity");

    // Identity not readable by the account that runs doctor (the agent's account here): since
    // certbot runs as that account the identity is its own, so give it to root for this step.
    std::os::unix::fs::chown(&identity, Some(0), Some(0)).unwrap();
    let mut as_user = Command::new("timeout");
    as_user
        .args(["60", "/usr/sbin/runuser", "-u", &user, "--"])
        .arg(bed.certherd_bin())
        .arg("--config")
        .arg(bed.config_path(1))
        .arg("doctor");
    let ran = bed.node(1).command(as_user).any_status().run();
    let report = ran.stdout();
    let (line, fix) = failure(&report, "[ssh] identity")
        .unwrap_or_else(|| ran.fail("doctor names the unreadable [ssh] identity"));
    assert!(line.contains("not readable by this account"), "{line}");
    assert!(
        fix.contains("run certherd as the account that owns it"),
        "{fix}"
    );
    bed.chown_to_agent(&identity).unwrap();

    // A missing identity.
    let moved = identity.with_extension("moved");
    std::fs::rename(&identity, &moved).unwrap();
    assert_fails(&bed, "[ssh] identity", "ssh-keygen -q -t ed25519");
    std::fs::rename(&moved, &identity).unwrap();
    assert_fixed(&bed, "[ssh] identity");

    // No known_hosts entry under the configured host of node 2.
    let known_hosts = bed.known_hosts();
    let all = std::fs::read_to_string(&known_hosts).unwrap();
    let without: String = all
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(ip2.as_str()))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, all);
    std::fs::write(&known_hosts, &without).unwrap();
    let line = assert_fails(
        &bed,
        &format!("node2: known_hosts entry {ip2}"),
        &format!("ssh-keyscan -t ed25519 {ip2} >> {}", known_hosts.display()),
    );
    assert!(line.contains("configured `host`"), "{line}");
    std::fs::write(&known_hosts, &all).unwrap();
    assert_fixed(&bed, &format!("node2: known_hosts entry {ip2}"));

    // The webroot not the agent's, the letsencrypt dir not 0755, then a missing one.
    let webroot = bed.webroot(1);
    std::os::unix::fs::chown(&webroot, Some(0), Some(0)).unwrap();
    assert_fails(
        &bed,
        "webroot",
        &format!("chown {user}:{user} {}", webroot.display()),
    );
    bed.chown_to_agent(&webroot).unwrap();
    assert_fixed(&bed, "webroot");
    let le = bed.letsencrypt_dir(1);
    chmod(&le, 0o700);
    assert_fails(
        &bed,
        "letsencrypt_dir",
        &format!("chmod 0755 {}", le.display()),
    );
    chmod(&le, 0o755);
    assert_fixed(&bed, "letsencrypt_dir");
    let missing = le.with_file_name("no-such-letsencrypt");
    let le_line = format!("letsencrypt_dir = \"{}\"", le.display());
    let missing_line = format!("letsencrypt_dir = \"{}\"", missing.display());
    edit_config(&bed, 1, &le_line, &missing_line);
    assert_fails(
        &bed,
        "letsencrypt_dir",
        &format!(
            "install -d -o {user} -g {user} -m 0755 {}",
            missing.display()
        ),
    );
    edit_config(&bed, 1, &missing_line, &le_line);
    assert_fixed(&bed, "letsencrypt_dir");

    // [reload] test with an argument the sudoers line does not allow.
    edit_config(&bed, 1, "\"-t\", \"-q\"", "\"-t\", \"-q\", \"-T\"");
    assert_fails(&bed, "reload.test as", "contrib/sudoers/certherd");
    edit_config(&bed, 1, "\"-t\", \"-q\", \"-T\"", "\"-t\", \"-q\"");
    assert_fixed(&bed, "reload.test as");

    // certbot's log dir left to root: certbot, running as the account, could not write there.
    std::os::unix::fs::chown(&logs, Some(0), Some(0)).unwrap();
    assert_fails(
        &bed,
        "certbot --logs-dir",
        &format!("install -d -o {user} -g {user} -m 0755 {}", logs.display()),
    );
    bed.chown_to_agent(&logs).unwrap();
    assert_fixed(&bed, "certbot --logs-dir");
    // A work dir that does not exist.
    std::fs::remove_dir(&work).unwrap();
    assert_fails(&bed, "certbot --work-dir", "install -d -o");
    std::fs::create_dir(&work).unwrap();
    bed.chown_to_agent(&work).unwrap();
    assert_fixed(&bed, "certbot --work-dir");

    // Debian's certbot schedule: harmless (WARN) without renewal configs, a FAIL with one.
    let renewal = le.join("renewal");
    std::fs::create_dir_all(&renewal).unwrap();
    std::fs::write(renewal.join("site.test.conf"), "# test\n").unwrap();
    let (_, report) = doctor(&bed);
    if certbot_schedule_active() {
        let (line, fix) = failure(&report, "certbot").unwrap_or_else(|| panic!("{report}"));
        assert!(line.contains("renewal config"), "{line}");
        assert!(
            fix.starts_with("systemctl disable --now certbot.timer")
                || fix.starts_with("rm /etc/cron.d/certbot"),
            "{fix}"
        );
    } else {
        assert!(
            report.contains("ok    certbot's own schedulers"),
            "{report}"
        );
    }
    std::fs::remove_file(renewal.join("site.test.conf")).unwrap();
    let (_, report) = doctor(&bed);
    assert!(failure(&report, "certbot").is_none(), "{report}");
    if certbot_schedule_active() {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("WARN  ") && l.contains("certbot")),
            "{report}"
        );
    }
}

/// `certherd doctor` with `/etc/systemd/system` and `/var/spool` replaced, for it alone, by
/// directories the test made (bind mounts in a private mount namespace: the machine's own are
/// untouched, other tests see nothing).
fn doctor_with_system(bed: &Bed, units: &Path, spool: &Path) -> (Option<i32>, String) {
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            "mount --bind \"$1\" /etc/systemd/system && mount --bind \"$2\" /var/spool && shift 2 && exec \"$@\"",
        )
        .arg("sh")
        .arg(units)
        .arg(spool)
        .arg(bed.certherd_bin())
        .arg("--config")
        .arg(bed.config_path(1))
        .arg("doctor");
    let ran = bed.node(1).command(unshare).any_status().run();
    (ran.code(), ran.both())
}

/// Guarantee 11. certbot's schedulers other than Debian's timer, each running `certbot renew`
/// as root over the agent's files: the snap's `snap.certbot.renew.timer` (its unit file and the
/// `timers.target.wants/` link that enables it, where systemd has them) and a certbot line in
/// root's crontab. On a node holding a renewal config, doctor FAILs naming each, with its fix.
#[test]
fn snap_timer_and_root_crontab_line_each_fail_by_name() {
    let bed = bed(2, false);
    let renewal = bed.letsencrypt_dir(1).join("renewal");
    std::fs::create_dir_all(&renewal).unwrap();
    bed.chown_to_agent(&renewal).unwrap();
    std::fs::write(renewal.join("site.test.conf"), "# test\n").unwrap();
    bed.chown_to_agent(&renewal.join("site.test.conf")).unwrap();

    let units = bed.root().join("fake-systemd-system");
    std::fs::create_dir_all(units.join("timers.target.wants")).unwrap();
    std::fs::write(
        units.join("snap.certbot.renew.timer"),
        "[Unit]\nDescription=Timer renew for snap application certbot.renew\n[Timer]\nOnCalendar=*-*-* 01:13\n[Install]\nWantedBy=timers.target\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/snap.certbot.renew.timer",
        units.join("timers.target.wants/snap.certbot.renew.timer"),
    )
    .unwrap();
    let spool = bed.root().join("fake-spool");
    std::fs::create_dir_all(spool.join("cron/crontabs")).unwrap();
    std::fs::write(
        spool.join("cron/crontabs/root"),
        "# m h dom mon dow command\n0 4 * * * /usr/bin/certbot renew -q\n",
    )
    .unwrap();

    let (code, report) = doctor_with_system(&bed, &units, &spool);
    assert_eq!(code, Some(1), "{report}");
    let (line, fix) = failure(&report, "snap.certbot.renew.timer is enabled")
        .unwrap_or_else(|| panic!("no FAIL for the snap's timer:\n{report}"));
    assert!(
        line.contains("timers.target.wants/snap.certbot.renew.timer"),
        "{line}"
    );
    assert!(fix.contains("snap stop --disable certbot.renew"), "{fix}");
    let (line, fix) = failure(&report, "/var/spool/cron/crontabs/root runs certbot")
        .unwrap_or_else(|| panic!("no FAIL for root's crontab:\n{report}"));
    assert!(line.contains("/usr/bin/certbot renew -q"), "{line}");
    assert!(fix.contains("crontab -e -u root"), "{fix}");
}
