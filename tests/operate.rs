//! Flow 3: status, renew, watch, doctor and stateless answers, on the real bed.
//!
//! Proves Guarantees 1, 8 and 9 of docs/GUARANTEES.md (the list there names each test; each test
//! below names its own, or says it proves a flow of the README). Configs are edited through typed
//! keys (`bed.config(n).set("renew.vip", …)`), faults are guards (tests/common/fault.rs).

mod common;
use common::fault::{self, Fault};
use common::influx::Influx;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn status(bed: &Bed, args: &[&str]) -> std::process::Output {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    bed.certherd(1, &all).output().unwrap()
}

/// Guarantee 9. status: JSON parsed by serde, influx lines accepted by a real influxd,
/// Prometheus text accepted by promtool; --warn/--crit give 0/1/2; a down peer gives UNKNOWN
/// (exit 3) without hanging, naming why.
#[test]
fn status_formats_are_accepted_by_real_consumers_and_exit_codes_follow_thresholds() {
    let bed = issued_bed();

    let out = status(&bed, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{report}");
    for row in rows {
        assert_eq!(row["version"], 1, "{row}");
        assert_eq!(row["drift"], false, "{row}");
        assert_eq!(row["served_fingerprint"], row["fingerprint"], "{row}");
    }

    let out = status(&bed, &["--format", "influx"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let influx = Influx::start(
        &bed.root().join("influx"),
        &format!("127.0.{}.250", bed.index()),
        "mon",
    );
    let posted = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            "@-",
        ])
        .arg(influx.write_url("mon"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), &out.stdout)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&posted.stdout),
        "204",
        "influxd refused: {}",
        text(&out)
    );
    let back = influx.query("mon", "SELECT count(up) FROM certherd_status");
    assert_eq!(back["results"][0]["series"][0]["values"][0][1], 3, "{back}");

    let out = status(&bed, &["--format", "prometheus"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = bed.root().join("metrics.prom");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}\n{}",
        text(&check),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("certherd_certificate_not_after_seconds{node=\"node2\",lineage=\"site.test\"}"));

    assert_eq!(
        status(&bed, &["--warn", "3650d", "--crit", "1d"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        status(&bed, &["--warn", "3650d", "--crit", "3000d"])
            .status
            .code(),
        Some(2)
    );

    let _down = fault::on(&bed, Fault::StopSshd(3));
    let start = Instant::now();
    let out = status(&bed, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "status hung for {:?}",
        start.elapsed()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node3 = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == "node3")
        .unwrap()
        .clone();
    assert_eq!(node3["up"], false, "{node3}");
    assert!(
        node3["error"].as_str().unwrap().contains("refused"),
        "{node3}"
    );
}

fn fake_certbot(bed: &Bed) -> (std::path::PathBuf, std::path::PathBuf) {
    // certherd runs certbot as the letsencrypt dir's owner (the agent's account): its log
    // goes where that account may write.
    let dir = bed.root().join("fake-certbot");
    std::fs::create_dir(&dir).unwrap();
    bed.chown_to_agent(&dir).unwrap();
    let log = dir.join("fake-certbot.log");
    let script = bed.root().join("fake-certbot.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"start $$ $*\" >> {log}\nsleep 1\necho \"end $$\" >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script, log)
}

/// Guarantee 8. renew runs certbot only on the primary, never twice at once, and follows the VIP.
#[test]
fn renew_runs_only_where_primary_and_never_twice_at_once() {
    let bed = bed(2, false);
    let (script, log) = fake_certbot(&bed);
    for n in 1..=2 {
        bed.config(n)
            .remove("peers")
            .unwrap()
            .set("renew.primary", "node1")
            .unwrap()
            .set("renew.certbot", vec![script.to_str().unwrap()])
            .unwrap();
    }
    let out = bed.certherd(2, &["renew"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("not the primary"), "{}", text(&out));
    assert!(!log.exists(), "node 2 ran certbot");

    let a = bed
        .certherd(1, &["renew"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = bed
        .certherd(1, &["renew"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        text(&a),
        text(&b)
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        lines.matches("start").count(),
        1,
        "certbot ran twice: {lines}"
    );
    assert!(
        lines.contains("renew --no-random-sleep-on-renew"),
        "{lines}"
    );
    assert!(format!("{}{}", stderr(&a), stderr(&b)).contains("another certherd renew is running"));

    // VIP: whoever holds the address renews.
    let vip = format!("127.0.{}.200", bed.index());
    std::fs::remove_file(&log).unwrap();
    bed.config(1)
        .remove("renew.primary")
        .unwrap()
        .set("renew.vip", vip.as_str())
        .unwrap();
    let out = bed.certherd(1, &["renew"]).output().unwrap();
    assert!(
        out.status.success() && stderr(&out).contains("not on a local interface"),
        "{}",
        text(&out)
    );
    assert!(!log.exists());
    let _vip = fault::on(&bed, Fault::LoopbackAddress(vip));
    let out = bed.certherd(1, &["renew"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("start")
            .count(),
        1
    );
}

/// A flow of the README (not a guarantee): `certherd renew` runs certbot renew on the primary and
/// the stored deploy hook brings the new certificate to every node.
#[test]
fn renew_with_real_certbot_reaches_every_node() {
    let bed = issued_bed();
    let mut certbot = vec![certherd_testbed::certbot_program().display().to_string()];
    certbot.extend(
        bed.certbot_common_args()
            .into_iter()
            .filter(|a| a != "--server" && !a.starts_with("https://")),
    );
    bed.config(1)
        .set("renew.primary", "node1")
        .unwrap()
        .set("renew.certbot", certbot)
        .unwrap();
    let old = current_serial(&bed, "site.test");
    let out = bed
        .certherd(1, &["renew", "--", "--force-renewal"])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let new = current_serial(&bed, "site.test");
    assert_ne!(old, new);
    for n in 1..=3 {
        assert_eq!(served_serial(&bed, n, "site.test"), new, "node {n}");
    }
}

/// A flow of the README (not a guarantee). watch: renewals made without the deploy hook reach every node; a lineage created while it runs
/// is picked up; 20 renewals in a row are each deployed exactly once; SIGTERM stops it cleanly.
#[test]
fn watch_deploys_every_change_exactly_once() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    bed.dns("other.test", &[2]).unwrap();
    enable_tls(&bed, "site.test");
    let out = certbot_certonly(&bed, &["site.test"]);
    assert!(out.status.success(), "{}", text(&out));
    reload_nginx(&bed, 1);
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let log = bed.root().join("watch.out");
    let mut watch = bed
        .certherd(1, &["watch", "--settle", "1s"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(bed.root().join("watch.err")).unwrap())
        .spawn()
        .unwrap();
    // Let it set up its inotify watches before the first change.
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(bed.root().join("watch.err"))
            .unwrap_or_default()
            .contains("watching")
    }));

    let rounds = 20;
    for round in 1..=rounds {
        let out = bed.certbot(&[
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--cert-name",
            "site.test",
        ]);
        assert!(out.status.success(), "renewal {round}: {}", text(&out));
        let want = current_serial(&bed, "site.test");
        let all = wait_until(Duration::from_secs(20), || {
            (1..=3).all(|n| served_serial(&bed, n, "site.test") == want)
        });
        assert!(
            all,
            "renewal {round} did not reach every node; watch said:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }

    let out = certbot_certonly(&bed, &["other.test"]);
    assert!(out.status.success(), "{}", text(&out));
    let want = std::fs::read(bed.letsencrypt_dir(1).join("live/other.test/cert.pem")).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read(
            bed.letsencrypt_dir(3).join("live/other.test/cert.pem")
        )
        .is_ok_and(|c| c == want)),
        "new lineage not deployed"
    );

    let stopped = stop_on_sigterm(&mut watch, Duration::from_secs(10));
    assert!(stopped, "watch did not stop on SIGTERM");
    assert!(watch.wait().unwrap().success());

    let err = std::fs::read_to_string(bed.root().join("watch.err")).unwrap();
    for v in 2..=rounds + 1 {
        let line = format!("site.test is now version {v}: deploying");
        assert_eq!(
            err.matches(&line).count(),
            1,
            "version {v} deployed {} times:\n{err}",
            err.matches(&line).count()
        );
    }
    assert_eq!(
        err.matches("site.test is now version").count(),
        rounds as usize,
        "{err}"
    );
    assert_eq!(
        err.matches("other.test is now version 1: deploying")
            .count(),
        1,
        "{err}"
    );
}

/// Guarantee 9. doctor names the node and the cause for a node without the acme location (404) and one
/// whose port 80 is closed.
#[test]
fn doctor_explains_404_and_closed_port() {
    let bed = bed(3, false);
    std::fs::write(
        bed.node_dir(2).join("nginx/acme.conf"),
        "location / { return 404; }\n",
    )
    .unwrap();
    reload_nginx(&bed, 2);
    bed.stop_nginx(3);

    let out = bed
        .certherd(1, &["doctor", "-d", "site.test"])
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("ok    node1: serves tokens for site.test"),
        "{report}"
    );
    let line = |node: &str| {
        report
            .lines()
            .skip_while(|l| !l.contains(&format!("FAIL  {node}: token")))
            .take(2)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        line("node2").contains("404") && line("node2").contains("acme location"),
        "{report}"
    );
    assert!(line("node3").contains("port closed"), "{report}");
    assert!(report.contains("ok    node2: ssh and agent"), "{report}");
    assert!(
        token_files(&bed).is_empty(),
        "doctor left tokens: {:?}",
        token_files(&bed)
    );
}

/// Guarantee 1. Stateless answers: the nodes answer every token from the account thumbprint; issuance works
/// through nodes that never received a token.
#[test]
fn stateless_issuance_without_any_token_file() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    let out = bed.certbot(&["register"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = bed.certherd(1, &["stateless"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains("# thumbprint: "), "{printed}");
    let snippet: String = printed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    for n in 1..=3 {
        std::fs::write(
            bed.node_dir(n).join("nginx/acme.conf"),
            format!("{snippet}location / {{ return 404; }}\n"),
        )
        .unwrap();
        reload_nginx(&bed, n);
    }
    bed.config(1).set("mode", "stateless").unwrap();

    let out = certbot_certonly(&bed, &["site.test"]);

    assert!(out.status.success(), "{}", text(&out));
    assert!(cert_text(&bed, "site.test").is_some());
    assert!(
        challenge_hits(&bed, 2) > 0,
        "the CA validated through node 2"
    );
    assert!(
        token_files(&bed).is_empty(),
        "a token file was written: {:?}",
        token_files(&bed)
    );
}
