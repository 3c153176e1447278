//! Every lineage name certbot takes and certherd can carry works end to end (issue 19, item 7):
//! `--cert-name site_test` and an upper-case `--cert-name Upper.Test`, issued by the real
//! certbot through certherd's hooks, reach every peer through `sync` and the deploy hook and
//! show in `status`. A name certherd cannot carry is named where it enters (sync warns, status
//! is UNKNOWN), never skipped in silence: before, `sync`, `watch` and `status` skipped every
//! name that was not domain-shaped and status stayed OK.
//!
//! Proves guarantee 3 of docs/GUARANTEES.md (every node gets every lineage; `sync` catches up)
//! and guarantee 9 (monitoring never says OK about what it could not see) for such names.

mod common;
use common::*;

const NAMES: [(&str, &str, usize); 2] = [
    ("site_test", "site.test", 2),
    ("Upper.Test", "upper.test", 3),
];

#[test]
fn lineage_names_that_are_not_domains_reach_every_node_and_show_in_status() {
    let bed = bed(3, true);
    for (lineage, domain, node) in NAMES {
        bed.dns(domain, &[node]).unwrap();
        let mut args = bed.certonly_args(None);
        args.extend([
            "--cert-name".into(),
            lineage.into(),
            "-d".into(),
            domain.into(),
        ]);
        bed.node(1).certbot(args).run();
    }

    // Every node answers TLS with a default certificate until it has the lineages' files.
    default_tls_everywhere(&bed);
    bed.node(1).certherd(["sync"]).run();
    for (lineage, _, _) in NAMES {
        let serial = installed_serial(&bed, 1, lineage);
        for n in 2..=3 {
            assert_eq!(
                installed_serial(&bed, n, lineage),
                serial,
                "{lineage} on node {n}"
            );
        }
    }

    // Every node serves both, each under its own name.
    for n in 1..=3 {
        for (lineage, domain, _) in NAMES {
            bed.add_tls_vhost(n, domain, lineage).unwrap();
        }
        reload_nginx(&bed, n);
    }
    // certbot's deploy hook for site_test, as certbot calls it.
    bed.node(1)
        .certherd(["deploy"])
        .env(
            "RENEWED_LINEAGE",
            bed.letsencrypt_dir(1).join("live/site_test"),
        )
        .env("RENEWED_DOMAINS", "site.test")
        .run();

    let ran = bed.node(1).certherd(["status", "--format", "json"]).run();
    let report: StatusReport = ran.json();
    for (lineage, domain, _) in NAMES {
        for n in 1..=3 {
            let row = report.row(&format!("node{n}"), lineage);
            ran.ensure(
                row.served.as_deref() == Some("new"),
                format!("{lineage} on node{n} served new: {row:?}"),
            );
            ran.ensure(
                row.served_name.as_deref() == Some(domain),
                format!("{lineage} on node{n} checked as {domain}: {row:?}"),
            );
        }
    }

    // A lineage whose name certherd cannot carry: named by sync, UNKNOWN in status.
    let bad = bed.letsencrypt_dir(1).join("live/bad name");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        bed.letsencrypt_dir(1).join("live/site_test/cert.pem"),
        bad.join("cert.pem"),
    )
    .unwrap();
    bed.node(1)
        .certherd(["sync"])
        .any_status()
        .stderr_has(["live/bad name\": not carried to any node"])
        .run();
    let ran = bed
        .node(1)
        .certherd(["status", "--format", "json"])
        .expect_status(3)
        .run();
    let report: StatusReport = ran.json();
    ran.ensure(
        report
            .unknown
            .iter()
            .any(|u| u.reason.contains("live/bad name\": not carried")),
        "an unknown reason names live/bad name as not carried",
    );
}
