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

/// `status --format FORMAT [extra]` on node 1: exit code and stdout.
fn status(bed: &Bed, format: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = bed
        .certherd(1, &[&["status", "--format", format][..], extra].concat())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Version `v` valid from `lived` ago for `lifetime` in all, pushed to every node by `sync`.
fn install(bed: &Bed, v: u32, lifetime: i64, lived: i64) {
    let t = now();
    make_version_valid(bed, LINEAGE, v, Some((t - lived, t - lived + lifetime)));
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(out.status.success(), "sync of version {v}:\n{}", text(&out));
}

/// The exit code and every row's state, after checking the JSON carries each row's lifetime
/// and share left.
fn judged(bed: &Bed, extra: &[&str], lifetime: i64) -> (Option<i32>, Vec<String>) {
    let (code, json) = status(bed, "json", extra);
    let report: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("status JSON: {e}: {json}"));
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{json}");
    for r in rows {
        assert_eq!(r["lifetime"].as_i64(), Some(lifetime), "{r}");
        assert!(r["left_share"].as_f64().is_some(), "{r}");
    }
    let states = rows
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_owned())
        .collect();
    (code, states)
}

#[test]
fn expiry_is_judged_by_each_certificates_own_lifetime() {
    let bed = bed(3, false);
    make_version_valid(&bed, LINEAGE, 1, Some((now() - HOUR, now() + 159 * HOUR)));
    enable_tls(&bed, LINEAGE);
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(out.status.success(), "sync:\n{}", text(&out));

    // A fresh 160-hour certificate is OK (a fixed 21d/7d called it CRITICAL from birth).
    let short = 160 * HOUR;
    assert_eq!(
        judged(&bed, &[], short),
        (Some(0), vec!["ok".into(); 3]),
        "fresh 160 h"
    );
    // 30 hours left: below 25 % (40 h), above 8 % (12.8 h): WARNING.
    install(&bed, 2, short, 130 * HOUR);
    assert_eq!(
        judged(&bed, &[], short),
        (Some(1), vec!["warning".into(); 3]),
        "160 h with 30 h left"
    );
    // 9.5 hours left: CRITICAL, and the plugin line says hours, not "0d".
    install(&bed, 3, short, 150 * HOUR + HOUR / 2);
    assert_eq!(
        judged(&bed, &[], short),
        (Some(2), vec!["critical".into(); 3]),
        "160 h with 9.5 h left"
    );
    let (_, nagios) = status(&bed, "nagios", &[]);
    assert!(
        nagios.contains("CRITICAL: node1/life.test: expires in 9h"),
        "{nagios}"
    );
    assert!(nagios.contains("'node1/life.test_left'=5.9"), "{nagios}");

    // A 90-day certificate keeps today's behaviour: 20 days left WARNING, 6 days CRITICAL.
    let classic = 90 * DAY;
    install(&bed, 4, classic, 70 * DAY);
    assert_eq!(
        judged(&bed, &[], classic),
        (Some(1), vec!["warning".into(); 3]),
        "90 d with 20 d left"
    );
    install(&bed, 5, classic, 84 * DAY);
    assert_eq!(
        judged(&bed, &[], classic),
        (Some(2), vec!["critical".into(); 3]),
        "90 d with 6 d left"
    );
    // Absolute thresholds still work: with --warn 5d --crit 2d, 6 days left is OK.
    assert_eq!(
        judged(&bed, &["--warn", "5d", "--crit", "2d"], classic),
        (Some(0), vec!["ok".into(); 3]),
        "--warn 5d --crit 2d"
    );
    // And the share form of the flags: --warn 10% --crit 5% (9 and 4.5 days): WARNING.
    assert_eq!(
        judged(&bed, &["--warn", "10%", "--crit", "5%"], classic),
        (Some(1), vec!["warning".into(); 3]),
        "--warn 10% --crit 5%"
    );
    // The Influx and Prometheus outputs carry the lifetime and the share left too.
    let (_, influx) = status(&bed, "influx", &[]);
    assert!(influx.contains(&format!("lifetime={classic}i")), "{influx}");
    assert!(influx.contains("left_share=0.06"), "{influx}");
    let (_, prom) = status(&bed, "prometheus", &[]);
    assert!(
        prom.contains(&format!(
            "certherd_certificate_lifetime_seconds{{node=\"node3\",lineage=\"{LINEAGE}\"}} {classic}"
        )),
        "{prom}"
    );
    assert!(prom.contains("certherd_certificate_left_ratio{"), "{prom}");
}

#[test]
fn a_node_serving_nothing_or_an_expired_certificate_is_critical() {
    let bed = bed(3, false);
    make_version_valid(&bed, LINEAGE, 1, Some((now() - DAY, now() + 89 * DAY)));
    enable_tls(&bed, LINEAGE);
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(out.status.success(), "sync:\n{}", text(&out));
    assert_eq!(status(&bed, "json", &[]).0, Some(0), "all fresh");

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
    assert_eq!(status(&bed, "json", &[]).0, Some(0), "healed");
}

/// `status` exits 2 naming node 3 and `why`, in table, JSON and Nagios; nodes 1 and 2 stay OK.
fn expect_node3_critical(bed: &Bed, why: &str) {
    let (code, json) = status(bed, "json", &[]);
    assert_eq!(code, Some(2), "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    for r in report["rows"].as_array().unwrap() {
        let node = r["node"].as_str().unwrap();
        let (state, problem) = (r["state"].as_str().unwrap(), &r["serving_problem"]);
        if node == "node3" {
            assert_eq!(state, "critical", "{r}");
            assert!(problem.as_str().unwrap_or("").contains(why), "{r}");
        } else {
            assert_eq!(state, "ok", "{r}");
            assert!(problem.is_null(), "{r}");
        }
    }
    let (code, table) = status(bed, "table", &[]);
    assert_eq!(code, Some(2), "{table}");
    assert!(
        table.contains(&format!("node3: critical: {why}")),
        "{table}"
    );
    let (code, nagios) = status(bed, "nagios", &[]);
    assert_eq!(code, Some(2), "{nagios}");
    assert!(
        nagios.starts_with(&format!("CERTHERD CRITICAL - node3/{LINEAGE} {why}")),
        "{nagios}"
    );
}
