//! `status` judges expiry by each certificate's own lifetime, and by what each node serves
//! (issue 21): certificates made by the test with chosen notBefore/notAfter, installed on every
//! node through `certherd sync`, served by every node's nginx.
//!
//! Proves guarantee 9 of docs/GUARANTEES.md (monitoring never says OK about what it could not
//! see; expiry against each certificate's own lifetime; a node serving nothing or an expired
//! certificate is CRITICAL).

mod common;
use common::cluster::{make_version_valid, self_signed};
use common::*;

use std::time::{SystemTime, UNIX_EPOCH};

const LINEAGE: &str = "life.test";
const HOUR: i64 = 3600;
const DAY: i64 = 86400;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Reloads node 3's nginx and waits (bounded) until it serves the certificate with `serial`
/// for the lineage ("" for nothing): `nginx -s reload` returns before the new workers answer.
fn reload_node3_until_it_serves(bed: &Bed, serial: &str) {
    reload_nginx(bed, 3);
    // Asked again once nginx's reload overlap is over: the old workers may still hand out the
    // previous certificate for ~100 ms after the first answer with the new one.
    let served = settled_serial(bed, 3, LINEAGE, serial);
    assert_eq!(
        served, serial,
        "node 3 does not serve {serial:?} after its reload"
    );
}

/// `status --format FORMAT [extra]` on node 1 (the caller says which exit status it expects).
fn status<'a>(bed: &'a Bed, format: &str, extra: &[&str]) -> Exec<'a> {
    bed.node(1)
        .certherd([&["status", "--format", format][..], extra].concat())
}

/// Version `v` valid from `lived` ago for `lifetime` in all, pushed to every node by `sync`.
fn install(bed: &Bed, v: u32, lifetime: i64, lived: i64) {
    let t = now();
    make_version_valid(bed, LINEAGE, v, Some((t - lived, t - lived + lifetime)));
    bed.node(1).certherd(["sync"]).run();
}

/// `status --format json [extra]`, which must exit `code`: the run and every row's state, after
/// checking the JSON carries each row's lifetime and share left.
fn judged(bed: &Bed, extra: &[&str], lifetime: i64, code: i32) -> (Ran, Vec<String>) {
    let ran = status(bed, "json", extra).expect_status(code).run();
    let report: serde_json::Value = ran.json();
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    ran.ensure(rows.len() == 3, "3 rows expected");
    for r in &rows {
        ran.ensure(
            r["lifetime"].as_i64() == Some(lifetime),
            format!("{r}: lifetime {lifetime}"),
        );
        ran.ensure(
            r["left_share"].as_f64().is_some(),
            format!("{r}: a left_share"),
        );
    }
    let states = rows
        .iter()
        .map(|r| r["state"].as_str().unwrap_or("<none>").to_owned())
        .collect();
    (ran, states)
}

#[test]
fn expiry_is_judged_by_each_certificates_own_lifetime() {
    let bed = bed(3, false);
    make_version_valid(&bed, LINEAGE, 1, Some((now() - HOUR, now() + 159 * HOUR)));
    enable_tls(&bed, LINEAGE);
    bed.node(1).certherd(["sync"]).run();

    // A fresh 160-hour certificate is OK (a fixed 21d/7d called it CRITICAL from birth).
    let short = 160 * HOUR;
    let (ran, states) = judged(&bed, &[], short, 0);
    ran.ensure(states == ["ok"; 3], "fresh 160 h: every row ok");
    // 30 hours left: below 25 % (40 h), above 8 % (12.8 h): WARNING.
    install(&bed, 2, short, 130 * HOUR);
    let (ran, states) = judged(&bed, &[], short, 1);
    ran.ensure(
        states == ["warning"; 3],
        "160 h with 30 h left: every row warning",
    );
    // 9.5 hours left: CRITICAL, and the plugin line says hours, not "0d".
    install(&bed, 3, short, 150 * HOUR + HOUR / 2);
    let (ran, states) = judged(&bed, &[], short, 2);
    ran.ensure(
        states == ["critical"; 3],
        "160 h with 9.5 h left: every row critical",
    );
    status(&bed, "nagios", &[])
        .any_status()
        .stdout_has([
            "CRITICAL: node1/life.test: expires in 9h",
            "'node1/life.test_left'=5.9",
        ])
        .run();

    // A 90-day certificate keeps today's behaviour: 20 days left WARNING, 6 days CRITICAL.
    let classic = 90 * DAY;
    install(&bed, 4, classic, 70 * DAY);
    let (ran, states) = judged(&bed, &[], classic, 1);
    ran.ensure(
        states == ["warning"; 3],
        "90 d with 20 d left: every row warning",
    );
    install(&bed, 5, classic, 84 * DAY);
    let (ran, states) = judged(&bed, &[], classic, 2);
    ran.ensure(
        states == ["critical"; 3],
        "90 d with 6 d left: every row critical",
    );
    // Absolute thresholds still work: with --warn 5d --crit 2d, 6 days left is OK.
    let (ran, states) = judged(&bed, &["--warn", "5d", "--crit", "2d"], classic, 0);
    ran.ensure(states == ["ok"; 3], "--warn 5d --crit 2d: every row ok");
    // And the share form of the flags: --warn 10% --crit 5% (9 and 4.5 days): WARNING.
    let (ran, states) = judged(&bed, &["--warn", "10%", "--crit", "5%"], classic, 1);
    ran.ensure(
        states == ["warning"; 3],
        "--warn 10% --crit 5%: every row warning",
    );
    // The Influx and Prometheus outputs carry the lifetime and the share left too.
    status(&bed, "influx", &[])
        .any_status()
        .stdout_has([
            format!("lifetime={classic}i"),
            "left_share=0.06".to_string(),
        ])
        .run();
    status(&bed, "prometheus", &[])
        .any_status()
        .stdout_has([
            format!(
                "certherd_certificate_lifetime_seconds{{node=\"node3\",lineage=\"{LINEAGE}\"}} {classic}"
            ),
            "certherd_certificate_left_ratio{".to_string(),
        ])
        .run();
}

#[test]
fn a_node_serving_nothing_or_an_expired_certificate_is_critical() {
    let bed = bed(3, false);
    make_version_valid(&bed, LINEAGE, 1, Some((now() - DAY, now() + 89 * DAY)));
    enable_tls(&bed, LINEAGE);
    bed.node(1).certherd(["sync"]).run();
    // All fresh.
    status(&bed, "json", &[]).expect_status(0).run();

    // Node 3 serves an expired certificate for the name (its vhost points at other files).
    let dir = bed.root().join("expired");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    self_signed(LINEAGE, now() - 100 * DAY, now() - 10 * DAY, &cert, &key);
    let conf = bed.nginx_tls_conf(3);
    let live = bed.letsencrypt_dir(3).join("live").join(LINEAGE);
    let good = std::fs::read_to_string(&conf).unwrap();
    let expired = good
        .replace(
            &live.join("fullchain.pem").display().to_string(),
            &cert.display().to_string(),
        )
        .replace(
            &live.join("privkey.pem").display().to_string(),
            &key.display().to_string(),
        );
    assert_ne!(good, expired, "node 3's TLS config names live/{LINEAGE}/");
    std::fs::write(&conf, &expired).unwrap();
    reload_node3_until_it_serves(&bed, &file_serial(&cert));
    expect_node3_critical(&bed, "serves an expired certificate");

    // Node 3 with no TLS listener at all, its agent still answering.
    std::fs::write(&conf, "").unwrap();
    reload_node3_until_it_serves(&bed, "");
    expect_node3_critical(&bed, "serves no certificate for life.test");

    // Healed: OK again.
    std::fs::write(&conf, &good).unwrap();
    reload_node3_until_it_serves(&bed, &installed_serial(&bed, 3, LINEAGE));
    // Healed.
    status(&bed, "json", &[]).expect_status(0).run();
}

/// `status` exits 2 naming node 3 and `why`, in table, JSON and Nagios; nodes 1 and 2 stay OK.
fn expect_node3_critical(bed: &Bed, why: &str) {
    let ran = status(bed, "json", &[]).expect_status(2).run();
    let report: serde_json::Value = ran.json();
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    ran.ensure(!rows.is_empty(), "status rows expected");
    for r in &rows {
        let node = r["node"].as_str().unwrap_or("<none>");
        let (state, problem) = (
            r["state"].as_str().unwrap_or("<none>"),
            &r["serving_problem"],
        );
        if node == "node3" {
            ran.ensure(state == "critical", format!("{r}: critical"));
            ran.ensure(
                problem.as_str().unwrap_or("").contains(why),
                format!("{r}: serving_problem names {why:?}"),
            );
        } else {
            ran.ensure(state == "ok", format!("{r}: ok"));
            ran.ensure(problem.is_null(), format!("{r}: no serving_problem"));
        }
    }
    status(bed, "table", &[])
        .expect_status(2)
        .stdout_has([format!("node3: critical: {why}")])
        .run();
    let nagios = status(bed, "nagios", &[]).expect_status(2).run();
    nagios.ensure(
        nagios
            .stdout()
            .starts_with(&format!("CERTHERD CRITICAL - node3/{LINEAGE} {why}")),
        format!("stdout starts with CERTHERD CRITICAL - node3/{LINEAGE} {why}"),
    );
}
