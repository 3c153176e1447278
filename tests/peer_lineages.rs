//! Per-peer lineage lists (issue 14, item 7): `[[peers]] lineages = [globs]` on the primary.
//! A lineage not on a peer's list never reaches that peer — not by deploy, sync, watch, or a
//! standby's renewal config; its letsencrypt dir is byte-for-byte untouched and no request its
//! agent reads names it — and `status` never expects it there. Tokens still go to every node (a node DNS
//! points at must answer HTTP-01), so issuance with DNS on the listing peer works.
//!
//! Proves Guarantee 7 (whoever holds the primary's key installs on a peer only what the
//! primary's list admits for it: "A peer receives only the lineages on its list") and
//! Guarantee 9 (`status` neither hides nor invents: no drift, no UNKNOWN for a lineage a peer is
//! not meant to hold). See docs/GUARANTEES.md.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// On every node; node 3 lists only this one.
const SHARED: &str = "shared.test";
/// On nodes 1 and 2 only.
const PRIVATE: &str = "private.test";

/// The entries of `tree` whose path or content names `needle`.
fn naming(tree: &BTreeMap<PathBuf, String>, needle: &str) -> Vec<PathBuf> {
    tree.iter()
        .filter(|(p, v)| p.to_string_lossy().contains(needle) || v.contains(needle))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Node `n`'s forced command, wrapped so that every byte the primary sends its agent is also
/// appended to a file (the agent account's own, 0600, inside the bed): the record of what node
/// `n` was asked. The wrapper runs the same agent with the same config.
fn record_requests(bed: &Bed, n: usize) -> PathBuf {
    let dir = bed.node_dir(n);
    let log = dir.join("agent-requests.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    bed.chown_to_agent(&log).unwrap();
    let agent = format!(
        "{} agent --config {}",
        bed.certherd_bin().display(),
        bed.config_path(n).display()
    );
    let wrapper = dir.join("record-agent.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\ntee -a {} | {agent}\n", log.display()),
    )
    .unwrap();
    let keys = dir.join("sshd").join("authorized_keys");
    let line = std::fs::read_to_string(&keys).unwrap();
    let forced = format!("command=\"{agent}\"");
    assert!(line.contains(&forced), "{forced} not in {line}");
    std::fs::write(
        &keys,
        line.replace(
            &forced,
            &format!("command=\"/bin/sh {}\"", wrapper.display()),
        ),
    )
    .unwrap();
    log
}

/// Runs `certherd watch` on node 1 while certbot renews `lineage`, until node 2 serves the new
/// certificate (bounded); stops watch by its PID and returns what it printed (stdout, then
/// stderr).
fn watch_renewal(bed: &Bed, lineage: &str) -> String {
    use std::time::Duration;
    let (mut watch, out, err) = start_watch(bed, "1s");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    bed.node(1)
        .certbot_renew(["--cert-name", lineage])
        .expect_status(0)
        .run();
    let want = current_serial(bed, lineage);
    let version_2 = format!("{lineage} version 2");
    // watch either deploys version 2 itself (its table, on stdout) or finds that certbot's deploy
    // hook already did (one renewal, one deploy: a line on stderr); both name the version.
    let said = || format!("{}{}", read(&out), read(&err));
    let served = wait_until(Duration::from_secs(30), || {
        served_serial(bed, 2, lineage) == want && said().contains(&version_2)
    });
    stop_on_sigterm(&mut watch, Duration::from_secs(10));
    assert!(
        served,
        "node 2 never served the renewal; watch said:\n{}{}",
        read(&out),
        read(&err)
    );
    said()
}

/// `certherd ARGS` on node 1, which must succeed.
fn run(bed: &Bed, args: &[&str]) -> Ran {
    bed.node(1).certherd(args).expect_status(0).run()
}

/// The deploy table's node names (first column of rows that name a node).
fn table_nodes(ran: &Ran) -> Vec<String> {
    ran.stdout()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("node"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_lineage_not_on_a_peers_list_never_reaches_it() {
    let bed = bed(3, true);
    // Node 2 takes both through a glob; node 3 only SHARED (a `?` glob, and a pattern that
    // matches nothing). Node 3 is also a standby, so the renewal config is filtered too.
    edit_config(
        &bed,
        1,
        "name = \"node2\"\n",
        "name = \"node2\"\nlineages = [\"*.test\"]\n",
    );
    edit_config(
        &bed,
        1,
        "name = \"node3\"\n",
        "name = \"node3\"\nlineages = [\"shared.te?t\", \"nothing.*\"]\nstandby = true\n",
    );
    edit_config(
        &bed,
        3,
        "name = \"node3\"\n",
        &format!(
            "name = \"node3\"\nstandby = true\nacme_servers = [\"{}\"]\n",
            bed.pebble_url()
        ),
    );
    let requests = record_requests(&bed, 3);

    // SHARED: DNS at nodes 2 and 3, served by every node.
    bed.dns(SHARED, &[2, 3]).unwrap();
    enable_tls(&bed, SHARED);
    bed.node(1)
        .certbot_certonly_with_deploy(&[SHARED])
        .expect_status(0)
        .run();
    for n in 1..=3 {
        assert_eq!(
            served_serial(&bed, n, SHARED),
            current_serial(&bed, SHARED),
            "node {n} serves {SHARED}"
        );
    }
    assert!(
        bed.letsencrypt_dir(3)
            .join(format!("renewal/{SHARED}.conf"))
            .exists(),
        "the standby got {SHARED}'s renewal config"
    );
    let node3_before = tree(&bed.letsencrypt_dir(3));

    // PRIVATE: DNS at node 3 first (pebble validates against the first address), so issuance
    // works only because tokens still reach node 3 and it answers; but only nodes 1 and 2 have
    // a vhost for it and receive its certificate.
    bed.dns(PRIVATE, &[3, 2]).unwrap();
    for n in 1..=2 {
        bed.add_tls_vhost(n, PRIVATE, PRIVATE).unwrap();
    }
    bed.node(1)
        .certbot_certonly_with_deploy(&[PRIVATE])
        .expect_status(0)
        .run();
    for n in 1..=2 {
        assert_eq!(
            served_serial(&bed, n, PRIVATE),
            current_serial(&bed, PRIVATE),
            "node {n} serves {PRIVATE}"
        );
    }

    // Every way a lineage travels, PRIVATE named explicitly and not.
    let deploy = run(&bed, &["deploy", "--lineage", PRIVATE]);
    deploy.ensure(
        table_nodes(&deploy) == ["node1", "node2"],
        "the deploy's table names node1 and node2, nothing else",
    );
    let sync = run(&bed, &["sync", PRIVATE]);
    sync.ensure(
        table_nodes(&sync) == ["node1", "node2"],
        "sync's table names node1 and node2, nothing else",
    );
    let sync_all = run(&bed, &["sync", "--format", "json"]);
    let json: serde_json::Value = sync_all.json();
    for l in json["lineages"].as_array().unwrap() {
        let nodes: Vec<&str> = l["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["node"].as_str().unwrap())
            .collect();
        let want: &[&str] = if l["lineage"] == PRIVATE {
            &["node1", "node2"]
        } else {
            &["node1", "node2", "node3"]
        };
        sync_all.ensure(
            nodes == want,
            format!("{} went to {want:?}, not {nodes:?}", l["lineage"]),
        );
    }

    // watch: a renewal of PRIVATE (its stored deploy hook runs too) reaches node 2, not node 3.
    let watched = watch_renewal(&bed, PRIVATE);
    assert!(
        watched.contains(&format!("{PRIVATE} version 2")),
        "watch did not deploy the renewal:\n{watched}"
    );
    assert!(
        !watched.lines().any(|l| l.starts_with("node3")),
        "watch deployed to node 3:\n{watched}"
    );

    // Node 3: its letsencrypt dir byte for byte as before PRIVATE existed, nothing anywhere in
    // it names PRIVATE, and nothing it was asked over SSH did either.
    let node3_after = tree(&bed.letsencrypt_dir(3));
    assert_eq!(naming(&node3_after, PRIVATE), Vec::<PathBuf>::new());
    assert!(
        node3_before == node3_after,
        "node 3's letsencrypt dir changed:\nbefore {:#?}\nafter {:#?}",
        node3_before.keys().collect::<Vec<_>>(),
        node3_after.keys().collect::<Vec<_>>()
    );
    let asked = std::fs::read_to_string(&requests).unwrap();
    assert!(
        asked.contains(SHARED),
        "the request record works: node 3 was asked about {SHARED}"
    );
    // On failure, only the start of each offending line: the op and the lineage, never the
    // private key further on.
    assert!(
        !asked.contains(PRIVATE),
        "node 3's agent was sent {PRIVATE}:\n{}",
        asked
            .lines()
            .filter(|l| l.contains(PRIVATE))
            .map(|l| l.chars().take(80).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let sshd_log = std::fs::read_to_string(bed.sshd_log(3)).unwrap_or_default();
    assert!(!sshd_log.contains(PRIVATE), "{sshd_log}");

    // status: OK, exit 0; node 3 has a row for SHARED and none for PRIVATE.
    let ran = bed
        .node(1)
        .certherd(["status", "--format", "json"])
        .expect_status(0)
        .run();
    let report: StatusReport = ran.json();
    let rows: Vec<(String, String)> = report
        .rows
        .iter()
        .map(|r| (r.node.clone(), r.lineage.clone()))
        .collect();
    let want: Vec<(String, String)> = [
        ("node1", PRIVATE),
        ("node1", SHARED),
        ("node2", PRIVATE),
        ("node2", SHARED),
        ("node3", SHARED),
    ]
    .iter()
    .map(|(n, l)| (n.to_string(), l.to_string()))
    .collect();
    let mut got = rows.clone();
    got.sort();
    ran.ensure(
        got == want,
        format!("status rows {got:?}, expected {want:?}"),
    );
}

/// A pattern that is not a lineage glob (a path, upper case, a character class) is a config
/// error before anything is sent: one line naming `peers[N].lineages[M]` and the value, exit 2
/// (`status`, a monitoring plugin: 3), nothing changed on any node.
#[test]
fn a_bad_lineage_pattern_is_a_config_error_naming_key_and_value() {
    let bed = bed(3, false);
    edit_config(
        &bed,
        1,
        "name = \"node3\"\n",
        "name = \"node3\"\nlineages = [\"shared.test\", \"../etc/*\"]\n",
    );
    let before = snapshot(&bed);
    for (args, code) in [(&["sync"][..], 2), (&["status"][..], 3)] {
        let ran = bed
            .node(1)
            .certherd(args)
            .expect_status(code)
            .stderr_has(["peers[1].lineages[1]", "\"../etc/*\""])
            .run();
        ran.ensure(
            ran.stderr().trim_end().lines().count() == 1,
            format!("{args:?}: one line on stderr"),
        );
    }
    assert!(snapshot(&bed) == before, "a node changed");
}
