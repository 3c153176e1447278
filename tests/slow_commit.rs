//! A commit that outlasts the request timeout is not a hung agent (issue 19): when a node's
//! config test fails for one lineage of a batch, the agent finds it by halving, one config test
//! after another, and on a node with thousands of vhosts each `nginx -t` takes seconds. Here
//! node 2's test takes 1 s more and the primary's `[ssh] request_timeout` is 2 s, so the search
//! outlasts it several times over. The agent says `working` every second while it commits; the
//! primary waits for the answer (within its bound) instead of giving the node up after 2 s and
//! reporting every lineage as failed. The rows name the one lineage the node refused, the
//! others are installed and served there.
//!
//! Proves guarantee 3 of docs/GUARANTEES.md (every node gets every lineage; a failure names the
//! node and the lineage).

mod common;
use common::cluster::{pin_current_key, renew_all, serving_bed};
use common::reloads::{count_tests_and_reloads, counts, slow_tests};
use common::sync_report::{row, sync};
use common::*;

const LINEAGES: [&str; 8] = [
    "w0.test", "w1.test", "w2.test", "w3.test", "w4.test", "w5.test", "w6.test", "w7.test",
];

#[test]
fn a_commit_searching_longer_than_the_request_timeout_is_waited_for() {
    let (bed, _) = serving_bed(2, &LINEAGES);
    // On node 2 a vhost pins w5.test's certificate to its current key (a copy): w5's new pair
    // makes node 2's config test fail, and only the halving search finds which lineage it is.
    let bad = "w5.test";
    pin_current_key(&bed, 2, bad);
    count_tests_and_reloads(&bed, 2);
    slow_tests(&bed, 2, 1);
    set_request_timeout(&bed, 1, "2s");

    let want = renew_all(&bed, &LINEAGES, 2);
    let before = counts(&bed, 2);
    let started = std::time::Instant::now();
    let (code, json, err) = sync(&bed, &[]);
    let took = started.elapsed();
    assert_eq!(
        code,
        Some(1),
        "one lineage refused on node2: {err}\n{json:#}"
    );
    let r = row(&json, bad, "node2");
    assert_eq!(r["install"], "test_failed", "{bad} on node2: {r:#}");
    for l in LINEAGES.iter().filter(|l| **l != bad) {
        let r = row(&json, l, "node2");
        assert_eq!(r["install"], "ok", "{l} on node2: {r:#}");
        assert_eq!(r["after"], 2, "{l} on node2: {r:#}");
    }
    let (tests, reloads) = (counts(&bed, 2).0 - before.0, counts(&bed, 2).1 - before.1);
    // The search really outlasted the timeout: at least the failing test, the one without the
    // batch, three halvings and the test of those that passed, a second each.
    assert!(
        tests >= 5,
        "node2 ran {tests} config tests in {took:?}: the search was not long"
    );
    assert_eq!(
        reloads, 1,
        "node2 reloads once for the lineages that passed"
    );
    for (l, serial) in LINEAGES.iter().zip(&want) {
        if *l != bad {
            assert_eq!(&settled_serial(&bed, 2, l, serial), serial, "{l} on node2");
        }
    }
}
