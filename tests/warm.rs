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

fn warm(bed: &Bed) -> std::process::Output {
    bed.certherd(1, &["warm"]).output().unwrap()
}

/// After `warm` every peer has a live master, and the following hook calls use those very
/// masters (same socket inode, same master PID) instead of opening new ones.
#[test]
fn warm_opens_every_master_and_auth_reuses_them() {
    let bed = bed(3, false);
    // Inside a certbot run that `issue`/`renew` already warm up, the pre-hook does nothing.
    let out = bed
        .certherd(1, &["warm"])
        .env("CERTHERD_WARMING", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        sockets(&bed).is_empty(),
        "warm under CERTHERD_WARMING=1 is a no-op"
    );
    let out = warm(&bed);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).is_empty(),
        "warm is silent when all is well: {}",
        text(&out)
    );
    let before = masters(&bed);
    assert_eq!(before.len(), 2, "one master per peer: {before:?}");

    let out = auth(&bed, 1, "site.test", "tokw", "tokw.x");
    assert!(out.status.success(), "{}", text(&out));
    let out = cleanup(&bed, 1, "site.test", "tokw");
    assert!(out.status.success(), "{}", text(&out));
    // A second warm (say, a pre-hook and issue's own warm-up) reuses them too.
    let out = warm(&bed);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(masters(&bed), before, "no new master was opened");
}

/// A down peer is one warning naming it; warm still exits 0 and warms the others.
#[test]
fn warm_with_a_down_peer_warns_and_exits_0() {
    let bed = bed(3, false);
    bed.stop_sshd(3);
    let out = warm(&bed);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("warning: node3: warm-up failed"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line per failed peer: {err}");
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
    let out = warm(&bed);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("ssh.kex_algorithms") && err.contains("curve25519 sha256"),
        "{err}"
    );
    assert!(sockets(&bed).is_empty(), "nothing was started");

    edit_config(&bed, 1, "curve25519 sha256", "no-such-kex@example.com");
    let out = warm(&bed);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("warning: node2: warm-up failed"),
        "ssh got the name and refused it: {}",
        text(&out)
    );
    assert!(sockets(&bed).is_empty());

    edit_config(&bed, 1, "no-such-kex@example.com", "curve25519-sha256");
    let out = warm(&bed);
    assert!(
        out.status.success() && stderr(&out).is_empty(),
        "{}",
        text(&out)
    );
    let out = auth(&bed, 1, "site.test", "tokk", "tokk.x");
    assert!(out.status.success(), "{}", text(&out));
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
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = bed.certbot(&args);
        assert!(out.status.success(), "certbot failed:\n{}", text(&out));
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
    let mut cmd = bed.certherd(
        1,
        &[
            "issue",
            "--certbot",
            &certbot_program_arg(),
            "--skip-preflight",
            "-d",
            "site.test",
            "--",
        ],
    );
    cmd.args(bed.certbot_common_args())
        .args(["--manual-auth-hook", &probing_auth_hook(&bed, &probe)])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "certherd issue failed:\n{}",
        text(&out)
    );
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
    let out = bed
        .certherd(1, &["renew", "--jitter", "0s", "--", "--force-renewal"])
        .args(["--manual-auth-hook", &probing_auth_hook(&bed, &probe)])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(current_serial(&bed, "site.test"), old, "renewed");
    assert_eq!(
        probed(&probe),
        vec![2],
        "live masters when the auth hook started"
    );
}
