//! `certherd warm` and the warm-up inside `issue`/`renew`: the shared SSH connections are open
//! before certbot's first auth hook runs, a down peer only warns, and `[ssh] kex_algorithms`
//! reaches ssh (checked at load: a bad name is exit 2).

mod common;
use common::*;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The control sockets (live masters) under the bed's control directory.
fn sockets(bed: &Bed) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(cm_dir(bed))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn cm_dir(bed: &Bed) -> PathBuf {
    bed.root().join("ssh/cm")
}

/// Each master's identity: socket path, socket inode and the master's PID (from `ssh -O check`).
/// A new master would bring a new inode and a new PID even under the same socket name.
fn masters(bed: &Bed) -> Vec<(PathBuf, u64, String)> {
    sockets(bed)
        .into_iter()
        .map(|s| {
            let ino = std::fs::metadata(&s).unwrap().ino();
            (s.clone(), ino, master_pid(&s))
        })
        .collect()
}

fn master_pid(sock: &Path) -> String {
    let out = std::process::Command::new("/usr/bin/ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-S"])
        .arg(sock)
        .args(["-O", "check", "x"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "master on {} not alive: {text}",
        sock.display()
    );
    text.trim().to_owned()
}

/// `certherd warm` on node 1.
fn warm(bed: &Bed) -> Exec<'_> {
    bed.node(1).certherd(["warm"])
}

/// `certherd auth` on node 1 with certbot's environment.
fn auth<'a>(bed: &'a Bed, token: &str) -> Exec<'a> {
    bed.node(1)
        .certherd(["auth"])
        .env("CERTBOT_DOMAIN", "site.test")
        .env("CERTBOT_TOKEN", token)
        .env("CERTBOT_VALIDATION", format!("{token}.x"))
}

/// After `warm` every peer has a live master, and the following hook calls use those very
/// masters (same socket inode, same master PID) instead of opening new ones.
#[test]
fn warm_opens_every_master_and_auth_reuses_them() {
    let bed = bed(3, false);
    // Inside a certbot run that `issue`/`renew` already warm up, the pre-hook does nothing.
    warm(&bed).env("CERTHERD_WARMING", "1").run();
    assert!(
        sockets(&bed).is_empty(),
        "warm under CERTHERD_WARMING=1 is a no-op"
    );
    // Silent when all is well.
    warm(&bed).stderr_is("").run();
    let before = masters(&bed);
    assert_eq!(before.len(), 2, "one master per peer: {before:?}");

    auth(&bed, "tokw").run();
    bed.node(1)
        .certherd(["cleanup"])
        .env("CERTBOT_DOMAIN", "site.test")
        .env("CERTBOT_TOKEN", "tokw")
        .run();
    // A second warm (say, a pre-hook and issue's own warm-up) reuses them too.
    warm(&bed).run();
    assert_eq!(masters(&bed), before, "no new master was opened");
}

/// A down peer is one warning naming it; warm still exits 0 and warms the others.
#[test]
fn warm_with_a_down_peer_warns_and_exits_0() {
    let bed = bed(3, false);
    bed.stop_sshd(3);
    let ran = warm(&bed)
        .stderr_has(["warning: node3: warm-up failed"])
        .run();
    ran.ensure(
        ran.stderr().lines().count() == 1,
        "one line per failed peer",
    );
    assert_eq!(sockets(&bed).len(), 1, "node2 is warm");
}

/// `[ssh] kex_algorithms`: a malformed name is exit 2 naming the key and the value, with no
/// connection made; a well-formed name ssh does not know reaches ssh (its refusal is the
/// warning); a real one works.
#[test]
fn kex_algorithms_are_checked_and_passed_to_ssh() {
    let bed = bed(2, false);
    edit_config(
        &bed,
        1,
        "[ssh]\n",
        "[ssh]\nkex_algorithms = [\"curve25519 sha256\"]\n",
    );
    warm(&bed)
        .expect_status(2)
        .stderr_has(["ssh.kex_algorithms", "curve25519 sha256"])
        .run();
    assert!(sockets(&bed).is_empty(), "nothing was started");

    edit_config(&bed, 1, "curve25519 sha256", "no-such-kex@example.com");
    // ssh got the name and refused it.
    warm(&bed)
        .stderr_has(["warning: node2: warm-up failed"])
        .run();
    assert!(sockets(&bed).is_empty());

    edit_config(&bed, 1, "no-such-kex@example.com", "curve25519-sha256");
    warm(&bed).stderr_is("").run();
    auth(&bed, "tokk").run();
}

/// An auth hook that first records how many masters are live, then runs `certherd auth`.
fn probing_auth_hook(bed: &Bed, probe: &Path) -> String {
    format!(
        "find {} -maxdepth 1 -type s | wc -l >> {}; {} --config {} auth",
        cm_dir(bed).display(),
        probe.display(),
        bed.certherd_bin().display(),
        bed.config_path(1).display()
    )
}

/// Where a probing hook writes: certbot and its hooks run as the agent's account (certherd
/// leaves root before it starts certbot), so the directory is the account's.
fn probe_file(bed: &Bed, name: &str) -> PathBuf {
    let dir = bed.root().join("probes");
    if !dir.exists() {
        std::fs::create_dir(&dir).unwrap();
        bed.chown_to_agent(&dir).unwrap();
    }
    dir.join(name)
}

/// The live-master counts the probing hook recorded, one per auth call.
fn probed(probe: &Path) -> Vec<usize> {
    std::fs::read_to_string(probe)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// certbot with `--pre-hook "certherd warm"`: every master is up when the first auth hook runs.
/// The control run without the pre-hook shows the probe can see the difference.
#[test]
fn certbot_pre_hook_warm_opens_connections_before_the_first_auth() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    let warm_hook = bed.hook_command("warm");
    for (lineage, pre_hook) in [("cold.test", None), ("site.test", Some(&warm_hook))] {
        if lineage == "cold.test" {
            bed.dns("cold.test", &[2, 3]).unwrap();
        }
        bed.close_control_masters();
        assert!(sockets(&bed).is_empty());
        let probe = probe_file(&bed, &format!("probe-{lineage}"));
        let mut args = bed.certonly_args(None);
        args.extend(["--manual-auth-hook".into(), probing_auth_hook(&bed, &probe)]);
        if let Some(h) = pre_hook {
            args.extend(["--pre-hook".into(), h.clone()]);
        }
        args.extend(["-d".into(), lineage.into()]);
        bed.node(1).certbot(args).run();
        assert!(cert_text(&bed, lineage).is_some());
        let expected = if pre_hook.is_some() { 2 } else { 0 };
        assert_eq!(
            probed(&probe),
            vec![expected],
            "live masters when the auth hook for {lineage} started"
        );
    }
}

/// `certherd issue` (pre-flight skipped, so nothing else opens them) and `certherd renew` warm
/// up concurrently with certbot: the masters are up when certbot's first auth hook runs. The
/// `warm` pre-hook that issue stores in the renewal config runs under renew as a no-op.
#[test]
fn issue_and_renew_warm_up_while_certbot_talks_to_the_ca() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    bed.close_control_masters();
    let probe = probe_file(&bed, "probe-issue");
    bed.node(1)
        .certherd([
            "issue",
            "--certbot",
            &certbot_program_arg(),
            "--skip-preflight",
            "-d",
            "site.test",
            "--",
        ])
        .args(bed.certbot_common_args())
        .args(["--manual-auth-hook", &probing_auth_hook(&bed, &probe)])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .run();
    assert_eq!(
        probed(&probe),
        vec![2],
        "live masters when the auth hook started"
    );
    let renewal =
        std::fs::read_to_string(bed.letsencrypt_dir(1).join("renewal/site.test.conf")).unwrap();
    assert!(
        renewal.contains("pre_hook") && renewal.contains(" warm"),
        "{renewal}"
    );

    let mut certbot = vec![certherd_testbed::certbot_program().display().to_string()];
    certbot.extend(
        bed.certbot_common_args()
            .into_iter()
            .filter(|a| a != "--server" && !a.starts_with("https://")),
    );
    let list = certbot
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    bed.write_config(
        1,
        &[PeerSpec::new(2), PeerSpec::new(3)],
        &format!("[renew]\nprimary = \"node1\"\ncertbot = [{list}]\n"),
    )
    .unwrap();
    bed.close_control_masters();
    let probe = probe_file(&bed, "probe-renew");
    let old = current_serial(&bed, "site.test");
    bed.node(1)
        .certherd(["renew", "--jitter", "0s", "--", "--force-renewal"])
        .args(["--manual-auth-hook", &probing_auth_hook(&bed, &probe)])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .run();
    assert_ne!(current_serial(&bed, "site.test"), old, "renewed");
    assert_eq!(
        probed(&probe),
        vec![2],
        "live masters when the auth hook started"
    );
}
