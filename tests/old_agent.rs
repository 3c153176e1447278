//! A peer still on an agent from before the batch ops (issue 19): `sync` gives it one `install`
//! per lineage over the same session while the other peers get the staged batch, and every node
//! ends on the new version. The old agent is the real one behind a filter in its forced command
//! that does what an agent of that age did: `hello` announces no `stage`, `commit` or `discard`,
//! and a request for one of them is refused as an unknown op, with the words the agent uses.
//! Node 2 is the old one; node 3 is current.
//!
//! Proves guarantee 3 of docs/GUARANTEES.md (every node gets every lineage) across agent
//! versions.

mod common;
use common::agent_filter::filter_agent;
use common::cluster::{renew_all, serving_bed};
use common::reloads::{count_tests_and_reloads, counts};
use common::sync_report::{row, sync};
use common::*;

const LINEAGES: [&str; 3] = ["o0.test", "o1.test", "o2.test"];

#[test]
fn an_agent_without_the_batch_ops_gets_one_install_per_lineage() {
    let (bed, _) = serving_bed(3, &LINEAGES);
    // The batch ops unknown, and what came with them or after them unsaid.
    filter_agent(
        &bed,
        2,
        &["stage", "commit", "discard"],
        &["max_staged", "commit_progress"],
    );

    let want = renew_all(&bed, &LINEAGES, 2);
    count_tests_and_reloads(&bed, 3);
    let before: Vec<(usize, usize)> = (1..=3).map(|n| counts(&bed, n)).collect();
    let (code, json, err) = sync(&bed, &[]);
    assert_eq!(
        code,
        Some(0),
        "sync with an old agent on node2: {err}\n{json:#}"
    );
    for l in LINEAGES {
        for node in ["node2", "node3"] {
            let r = row(&json, l, node);
            assert_eq!(r["install"], "ok", "{l} on {node}: {r:#}");
            assert_eq!(r["served"], "new", "{l} on {node}: {r:#}");
        }
    }
    for n in 1..=3 {
        for (l, serial) in LINEAGES.iter().zip(&want) {
            assert_eq!(
                &settled_serial(&bed, n, l, serial),
                serial,
                "{l} on node {n}"
            );
        }
    }
    // The old agent installed lineage by lineage (a test and a reload each); the current one
    // took the batch with one of each.
    let during = |n: usize| {
        let ((t0, r0), (t1, r1)) = (before[n - 1], counts(&bed, n));
        (t1 - t0, r1 - r0)
    };
    assert_eq!(
        during(2),
        (3, 3),
        "node2 (old agent): (config tests, reloads)"
    );
    assert_eq!(
        during(3),
        (1, 1),
        "node3 (current agent): (config tests, reloads)"
    );
}
