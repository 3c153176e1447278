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
/// PID in `pids` (an empty line when there is none); with `kill`, it then kills the holder (SIGKILL, by that PID) once.
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
    // The hooks' log is not a node's: a failure shows it beside the transcript.
    let ran = bed.node(1).certbot(args).any_status().run();
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    ran.ensure(
        ran.code() == Some(0),
        format!("certbot succeeds; hooks:\n{log_text}"),
    );
    ran.ensure(
        cert_text(bed, domains[0]).is_some(),
        format!("issued {domains:?}"),
    );
}

fn holder_pids(pids: &Path) -> Vec<i32> {
    std::fs::read_to_string(pids)
        .unwrap()
        .lines()
        // A hook that ran while no holder was there recorded an empty line.
        .filter(|l| !l.trim().is_empty())
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

/// The first auth hook kills the holder (SIGKILL: it leaves its socket): the second auth warns
/// and uses plain connections, so do the cleanups, and the certificate is issued all the same.
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
    // The first hook after the death warns and clears the dead holder's socket away; the
    // hooks after it go plain without a word, as without a holder.
    assert_eq!(
        log_text.matches("using plain connections").count(),
        1,
        "the second auth warned, once:\n{log_text}"
    );
    let pids = holder_pids(&pids);
    assert!(!alive(pids[0]), "the holder was killed");
}

/// The holder's directory under the bed's control dir (one per config).
fn holder_dir(bed: &Bed) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(bed.root().join("ssh/cm"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("holder-")
        })
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn holder_pid(bed: &Bed) -> i32 {
    let pid = std::fs::read_to_string(holder_dir(bed).join("pid")).unwrap();
    pid.trim().parse().unwrap()
}

/// Sends one line to the holder's socket as the agent's account (the holder's own uid) and
/// returns the reply.
fn ask_as_agent(bed: &Bed, sock: &Path, line: &str) -> String {
    const CLIENT: &str = "import socket,sys\n\
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b'\\n')\n\
print(s.makefile().readline(), end='')";
    let mut client = bed.agent_command_on(1, "/usr/bin/python3");
    client.args(["-c", CLIENT]).arg(sock).arg(line);
    bed.node(1).command(client).run().stdout()
}

/// The holder's socket is 0600 in a 0700 directory of the agent's account; a client of another
/// uid (root here, who can open it anyway) gets no answer and changes nothing; a request other
/// than a token write or removal is refused; and a newer `warm` replaces the holder.
#[test]
fn the_holder_answers_its_own_uid_and_token_ops_only() {
    use std::io::{BufRead, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let bed = bed(3, false);
    bed.node(1).certherd(["warm"]).stderr_is("").run();
    let dir = holder_dir(&bed);
    let sock = dir.join("sock");
    let (uid, _) = bed.agent_uid_gid();
    for (path, mode) in [(&dir, 0o700), (&sock, 0o600)] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            mode,
            "{}",
            path.display()
        );
        assert_eq!(meta.uid(), uid, "{}", path.display());
    }

    let put = r#"{"forward":{"requests":[{"op":"put_token","token":"tokr","key_authorization":"tokr.x"}]}}"#;
    let mut root = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    // The holder may close a foreign uid's connection before the write lands: a broken pipe
    // or a reset is the same refusal as an empty answer.
    match root.write_all(format!("{put}\n").as_bytes()) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => panic!("writing to the holder as root: {e}"),
    }
    let mut reply = String::new();
    let _ = std::io::BufReader::new(root).read_line(&mut reply);
    assert_eq!(reply, "", "no answer to another uid");
    for node in [2, 3] {
        let token = bed.webroot(node).join(".well-known/acme-challenge/tokr");
        assert!(
            !token.exists(),
            "nothing was written for root: {}",
            token.display()
        );
    }

    let status = r#"{"forward":{"requests":[{"op":"status"}]}}"#;
    let reply = ask_as_agent(&bed, &sock, status);
    assert!(
        reply.contains("refused") && reply.contains("put_token"),
        "{reply}"
    );
    let reply = ask_as_agent(&bed, &sock, put);
    assert!(reply.contains("answered"), "{reply}");
    for node in [2, 3] {
        let token = bed.webroot(node).join(".well-known/acme-challenge/tokr");
        assert_eq!(std::fs::read_to_string(&token).unwrap().trim(), "tokr.x");
    }

    let old = holder_pid(&bed);
    bed.node(1).certherd(["warm"]).stderr_is("").run();
    let new = holder_pid(&bed);
    assert_ne!(new, old, "a newer warm starts its own holder");
    assert!(
        gone_within(old, Duration::from_secs(2)),
        "the old holder {old} stopped"
    );
}
