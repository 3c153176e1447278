//! The warm holder (issue 25): `certherd warm` as certbot's pre-hook starts a holder that
//! carries the hooks' token requests over open agent sessions; killing it mid-run makes the
//! next hook fall back to plain connections with a warning, nothing lost; and no holder
//! outlives certbot.

mod common;
use common::fault::alive;
use common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file the hooks (run as the agent's account) may write.
fn probe_file(bed: &Bed, name: &str) -> PathBuf {
    let dir = bed.root().join("probes");
    if !dir.exists() {
        std::fs::create_dir(&dir).unwrap();
        bed.chown_to_agent(&dir).unwrap();
    }
    dir.join(name)
}

/// An auth hook that runs `certherd -v auth` (its stderr into `log`) and records the holder's
/// PID in `pids`; with `kill`, it then kills the holder (SIGKILL, by that PID) once.
fn auth_hook(bed: &Bed, log: &Path, pids: &Path, kill: bool) -> String {
    let killing = if kill {
        format!(
            "if [ ! -e {pids}.killed ]; then kill -9 \"$pid\" && touch {pids}.killed; fi; ",
            pids = pids.display()
        )
    } else {
        String::new()
    };
    format!(
        "{bin} --config {cfg} -v auth 2>>{log}; rc=$?; pid=$(cat {cm}/holder-*/pid); \
         echo \"$pid\" >> {pids}; {killing}exit $rc",
        bin = bed.certherd_bin().display(),
        cfg = bed.config_path(1).display(),
        log = log.display(),
        cm = bed.root().join("ssh/cm").display(),
        pids = pids.display(),
    )
}

fn cleanup_hook(bed: &Bed, log: &Path) -> String {
    format!(
        "{} --config {} -v cleanup 2>>{}",
        bed.certherd_bin().display(),
        bed.config_path(1).display(),
        log.display()
    )
}

fn certbot_with_holder(bed: &Bed, domains: &[&str], log: &Path, pids: &Path, kill: bool) {
    let mut args = bed.certonly_args(None);
    args.extend(["--manual-auth-hook".into(), auth_hook(bed, log, pids, kill)]);
    args.extend(["--manual-cleanup-hook".into(), cleanup_hook(bed, log)]);
    args.extend(["--pre-hook".into(), bed.hook_command("warm")]);
    for d in domains {
        args.extend(["-d".into(), (*d).into()]);
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = bed.certbot(&args);
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        out.status.success(),
        "certbot failed:\n{}\nhooks:\n{log_text}",
        text(&out)
    );
    assert!(cert_text(bed, domains[0]).is_some(), "issued {domains:?}");
}

fn holder_pids(pids: &Path) -> Vec<i32> {
    std::fs::read_to_string(pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().expect("a holder PID"))
        .collect()
}

/// Bounded: the holder looks at certbot every half second.
fn gone_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !alive(pid)
}

/// Every hook goes through the holder (one holder, the same PID for both auths), and when
/// certbot has exited the holder is gone within its poll interval.
#[test]
fn certbot_issues_through_the_holder_and_no_holder_outlives_it() {
    let bed = bed(3, true);
    bed.dns("a.test", &[2, 3]).unwrap();
    bed.dns("b.test", &[2, 3]).unwrap();
    let (log, pids) = (probe_file(&bed, "log"), probe_file(&bed, "pids"));
    certbot_with_holder(&bed, &["a.test", "b.test"], &log, &pids, false);
    let log_text = std::fs::read_to_string(&log).unwrap();
    let pids = holder_pids(&pids);
    assert_eq!(pids.len(), 2, "two auth hooks: {pids:?}");
    assert_eq!(pids[0], pids[1], "one holder for the run");
    assert_eq!(
        log_text.matches("through the warm holder: 2 peers").count(),
        4,
        "both auths and both cleanups went through the holder:\n{log_text}"
    );
    assert!(!log_text.contains("warning"), "{log_text}");
    assert!(
        gone_within(pids[0], Duration::from_secs(2)),
        "holder {} still runs after certbot exited",
        pids[0]
    );
}

/// The first auth hook kills the holder: the second auth and both cleanups warn and use plain
/// connections, and the certificate is issued all the same.
#[test]
fn a_killed_holder_means_plain_connections_with_a_warning() {
    let bed = bed(3, true);
    bed.dns("a.test", &[2, 3]).unwrap();
    bed.dns("b.test", &[2, 3]).unwrap();
    let (log, pids) = (probe_file(&bed, "log"), probe_file(&bed, "pids"));
    certbot_with_holder(&bed, &["a.test", "b.test"], &log, &pids, true);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log_text.matches("through the warm holder").count(),
        1,
        "only the first auth went through the holder:\n{log_text}"
    );
    assert_eq!(
        log_text.matches("using plain connections").count(),
        3,
        "the second auth and both cleanups warned:\n{log_text}"
    );
    let pids = holder_pids(&pids);
    assert!(!alive(pids[0]), "the holder was killed");
}
