//! Flow 3: status, renew, watch and stateless answers, on the real bed, each through a real
//! certbot (so scripts/test.sh runs this file again with certbot 5); `renew`'s rules with a
//! stand-in certbot and `doctor` are in tests/operate_without_certbot.rs.
//!
//! Proves Guarantees 1, 8 and 9 of docs/GUARANTEES.md (the list there names each test; each test
//! below names its own, or says it proves a flow of the README). Configs are edited through typed
//! keys (`bed.config(n).set("renew.vip", …)`), faults are guards (tests/common/fault.rs).

mod common;
use common::fault::{self, Fault};
use common::influx::Influx;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// `certherd status ARGS…` on node 1.
fn status<'a>(bed: &'a Bed, args: &[&str]) -> Exec<'a> {
    bed.node(1).certherd(["status"].iter().chain(args))
}

/// Guarantee 9. status: JSON parsed by serde, influx lines accepted by a real influxd,
/// Prometheus text accepted by promtool; --warn/--crit give 0/1/2; a down peer gives UNKNOWN
/// (exit 3) without hanging, naming why.
#[test]
fn status_formats_are_accepted_by_real_consumers_and_exit_codes_follow_thresholds() {
    let bed = issued_bed();

    let ran = status(&bed, &["--format", "json"]).run();
    let report: StatusReport = ran.json();
    ran.ensure(report.rows.len() == 3, "3 rows expected");
    for row in &report.rows {
        ran.ensure(row.version == Some(1), format!("{row:?}: version 1"));
        ran.ensure(!row.drift, format!("{row:?}: no drift"));
        ran.ensure(
            row.served_fingerprint == row.fingerprint,
            format!("{row:?}: serves what it holds"),
        );
    }

    let influx_lines = status(&bed, &["--format", "influx"]).run();
    let influx = Influx::start(
        &bed.root().join("influx"),
        &format!("127.0.{}.250", bed.index()),
        "mon",
    );
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        "@-",
    ])
    .arg(influx.write_url("mon"));
    let posted = bed
        .node(1)
        .command(curl)
        .stdin(influx_lines.output.stdout.clone())
        .run();
    posted.ensure(
        posted.stdout() == "204",
        format!("influxd refused the lines:\n{influx_lines}"),
    );
    let back = influx.query("mon", "SELECT count(up) FROM certherd_status");
    assert_eq!(back["results"][0]["series"][0]["values"][0][1], 3, "{back}");

    let metrics = status(&bed, &["--format", "prometheus"])
        .stdout_has([
            "certherd_certificate_not_after_seconds{node=\"node2\",lineage=\"site.test\"}",
        ])
        .run();
    let file = bed.root().join("metrics.prom");
    std::fs::write(&file, &metrics.output.stdout).unwrap();
    let mut promtool = Command::new("sh");
    promtool
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()));
    let checked = bed.node(1).command(promtool).any_status().run();
    checked.ensure(
        checked.code() == Some(0),
        format!("promtool refused the metrics:\n{metrics}"),
    );

    status(&bed, &["--warn", "3650d", "--crit", "1d"])
        .expect_status(1)
        .run();
    status(&bed, &["--warn", "3650d", "--crit", "3000d"])
        .expect_status(2)
        .run();

    let _down = fault::on(&bed, Fault::StopSshd(3));
    let start = Instant::now();
    let ran = status(&bed, &["--format", "json"]).expect_status(3).run();
    ran.ensure(
        start.elapsed() < Duration::from_secs(30),
        format!("status hung for {:?}", start.elapsed()),
    );
    let report: StatusReport = ran.json();
    let node3 = report.row("node3", "site.test");
    ran.ensure(!node3.up, "node3 is down");
    ran.ensure(
        node3
            .error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "node3's error says refused",
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
    bed.node(1)
        .certherd(["renew", "--", "--force-renewal"])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .run();
    let new = current_serial(&bed, "site.test");
    assert_ne!(old, new);
    for n in 1..=3 {
        assert_eq!(served_serial(&bed, n, "site.test"), new, "node {n}");
        // The tests' waits poll with the probe and trust openssl: a probe that read serials
        // otherwise would only make every wait run to its limit, so it must agree here.
        assert_eq!(
            probe::probe_serial(&bed, n, "site.test").as_deref(),
            Some(new.as_str()),
            "node {n}: the probe and openssl read different serials"
        );
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
    bed.node(1).certbot_certonly(&["site.test"]).run();
    reload_nginx(&bed, 1);
    bed.node(1).certherd(["sync"]).run();

    // It sets up its inotify watches before the first change. A settle window of 300 ms (as in
    // tests/coalesce.rs), not 1 s: each of the 20 rounds waits for it once. A shorter window
    // only makes watch scan sooner, mid-write or not; a scan that sees certbot's links disagree
    // deploys nothing until the next quiet moment, so every version is still deployed once.
    let (mut watch, log, _) = start_watch(&bed, "300ms");

    let rounds = 20;
    for round in 1..=rounds {
        bed.node(1)
            .certbot_renew(["--cert-name", "site.test"])
            .run();
        let want = current_serial(&bed, "site.test");
        let all = wait_served(&bed, 1..=3, "site.test", &want, Duration::from_secs(20));
        assert!(
            all,
            "renewal {round} did not reach every node; watch said:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }

    bed.node(1).certbot_certonly(&["other.test"]).run();
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

/// Guarantee 1. Stateless answers: the nodes answer every token from the account thumbprint; issuance works
/// through nodes that never received a token.
#[test]
fn stateless_issuance_without_any_token_file() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    bed.node(1).certbot(["register"]).run();
    let printed = bed
        .node(1)
        .certherd(["stateless"])
        .stdout_has(["# thumbprint: "])
        .run()
        .stdout();
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

    bed.node(1).certbot_certonly(&["site.test"]).run();

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
