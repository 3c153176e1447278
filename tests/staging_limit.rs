//! 1,000 lineages, one reload (issue 19): a push goes to every node in rounds as large as every
//! agent at the gate holds staged, and each agent says how many in `hello` (`max_staged`, from
//! its file limit: 1,024 where the limit can be raised). Here 300 lineages, more than the 256 a
//! session held before agents announced a limit: with every agent current they go in ONE round
//! (one config test and one reload per node, counted from each node's own logs); once node 2
//! says nothing of its limit, as an agent of the release before did, the whole push keeps to the
//! 256 that agent holds (two rounds on every node, so the fleet-wide gate still decides each
//! lineage for all of them at once), and every lineage still reaches every node.
//!
//! Proves guarantee 3 of docs/GUARANTEES.md (every node gets every lineage) at fleet size.

mod common;
use common::agent_filter::filter_agent;
use common::cluster::make_version;
use common::reloads::{count_tests_and_reloads, counts};
use common::sync_report::{row, sync};
use common::*;

const LINEAGES: usize = 300;

/// Version `v` of every lineage made on the primary, synced: every row of both peers installed
/// `v`. Returns each node's (config tests, reloads) during the sync.
fn sync_version(bed: &Bed, names: &[String], v: u32) -> Vec<(usize, usize)> {
    for l in names {
        make_version(bed, l, v);
    }
    let before: Vec<(usize, usize)> = (1..=3).map(|n| counts(bed, n)).collect();
    let (code, json, err) = sync(bed, &[]);
    assert_eq!(code, Some(0), "sync of version {v}: {err}\n{json:#}");
    for l in names {
        for node in ["node2", "node3"] {
            let r = row(&json, l, node);
            assert_eq!(r["install"], "ok", "{l} on {node}: {r:#}");
            assert_eq!(r["after"], v, "{l} on {node}: {r:#}");
        }
    }
    (1..=3)
        .map(|n| {
            let ((t0, r0), (t1, r1)) = (before[n - 1], counts(bed, n));
            (t1 - t0, r1 - r0)
        })
        .collect()
}

/// Every peer (node 2 on) ran `want` (config tests, reloads) during the sync `during` counts.
fn peers_ran(during: &[(usize, usize)], want: (usize, usize), context: &str) {
    for (n, d) in during.iter().enumerate().skip(1) {
        assert_eq!(*d, want, "node{} {context}: (config tests, reloads)", n + 1);
    }
}

#[test]
fn a_push_goes_in_rounds_of_the_smallest_staging_limit_at_the_gate() {
    let bed = bed(3, false);
    default_tls_everywhere(&bed);
    count_tests_and_reloads(&bed, 3);
    let names: Vec<String> = (0..LINEAGES).map(|i| format!("r{i:03}.test")).collect();

    let during = sync_version(&bed, &names, 1);
    peers_ran(
        &during,
        (1, 1),
        &format!("(current agent, {LINEAGES} lineages)"),
    );

    // As the release before: no `max_staged` in `hello`, nor `commit_progress`, which came
    // after it.
    filter_agent(&bed, 2, &[], &["max_staged", "commit_progress"]);
    let during = sync_version(&bed, &names, 2);
    peers_ran(&during, (2, 2), "beside an agent that announces no limit");
}
