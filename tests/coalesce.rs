//! One certbot run, one reload per node (issue 19, item 2): `certherd renew` renewing several
//! lineages makes certbot call the deploy hook once per lineage; under the run each hook only
//! queues its lineage, and when certbot ends the run pushes them all at once — every node tests
//! its config once and reloads once, and the webhook gets one event for the run. `watch`, running
//! beside it, waits for the run instead of deploying what certbot writes (one deploy per
//! renewal). Counted on the real bed: certbot and pebble, agents as their account, nginx through
//! sudo, the tests through a wrapper of each node's `[reload] test`, the reloads from each
//! nginx's own error log.
//!
//! Then the rule for a queue nobody flushed: certbot run by hand with `deploy --defer` and no
//! `--post-hook` leaves the lineage queued (the peers keep the old certificate); the next
//! `deploy --flush` (or `renew`, `watch`, `sync`) pushes it; a hook that finds the variable set
//! but no run in progress deploys at once.

mod common;
use common::influx::Webhook;
use common::reloads::{count_tests_and_reloads, counts};
use common::*;

use std::time::Duration;

const LINEAGES: [&str; 3] = ["c0.test", "c1.test", "c2.test"];
const NODES: usize = 3;

/// A bed whose node 1 runs certbot through `certherd renew` (`[renew] certbot`) and alerts the
/// webhook on every deploy; DNS names nodes 2 and 3 for every lineage; every node has a default
/// TLS server (a vhost per lineage comes once it is issued).
fn bed_with_hook() -> (Bed, Webhook) {
    let bed = bed(NODES, true);
    let hook = Webhook::start("127.0.0.1");
    bed.write_config(
        1,
        &[PeerSpec::new(2), PeerSpec::new(3)],
        &format!(
            "[alert]\nwebhook = [\"{}\"]\non_success = true\n\n[renew]\nprimary = \"node1\"\ncertbot = {:?}\n",
            hook.url,
            bed.renew_certbot_argv(1)
        ),
    )
    .unwrap();
    default_tls_everywhere(&bed);
    for l in LINEAGES {
        bed.dns(l, &[2, 3]).unwrap();
    }
    (bed, hook)
}

/// Issues `lineage` through `certherd issue`, then gives every node a vhost for it: every node
/// serves it from then on. Returns the issue run.
fn issue_and_serve(bed: &Bed, lineage: &str) -> Ran {
    let ran = issue(bed, lineage).expect_status(0).run();
    for n in 1..=NODES {
        bed.add_tls_vhost(n, lineage, lineage).unwrap();
        reload_nginx(bed, n);
    }
    assert_everywhere(bed, lineage, "after issue");
    ran
}

/// `certherd issue -d LINEAGE` on node 1 (certbot stores certherd's hooks for its renewals).
fn issue<'a>(bed: &'a Bed, lineage: &str) -> Exec<'a> {
    bed.node(1).certherd_issue(&[lineage])
}

/// Every node serves `lineage`'s current certificate (settled past nginx's reload overlap).
fn assert_everywhere(bed: &Bed, lineage: &str, context: &str) {
    let want = current_serial(bed, lineage);
    for n in 1..=NODES {
        assert_eq!(
            settled_serial(bed, n, lineage, &want),
            want,
            "{context}: node {n} does not serve {lineage}'s current certificate"
        );
    }
}

#[test]
fn a_renewal_run_of_several_lineages_tests_and_reloads_each_node_once() {
    let (bed, hook) = bed_with_hook();
    for l in LINEAGES {
        let ran = issue_and_serve(&bed, l);
        ran.ensure(
            ran.both().contains(&format!("{l}: queued")),
            "under issue the deploy hook queues",
        );
    }

    count_tests_and_reloads(&bed, NODES);
    let before: Vec<_> = (1..=NODES).map(|n| counts(&bed, n)).collect();
    let events = hook.bodies().len();
    let old: Vec<String> = LINEAGES.iter().map(|l| current_serial(&bed, l)).collect();

    // watch runs beside it, with a settle window far shorter than the run: it would deploy
    // each renewed lineage on its own if it did not wait for the run.
    let (mut watch, _, watch_err) = start_watch(&bed, "300ms");

    let ran = bed
        .node(1)
        .certherd(["renew", "--", "--force-renewal"])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .expect_status(0)
        .run();
    let queued = LINEAGES
        .iter()
        .filter(|l| ran.both().contains(&format!("{l}: queued")))
        .count();
    ran.ensure(
        queued == LINEAGES.len(),
        format!("each hook queued: {queued} of {}", LINEAGES.len()),
    );

    for (l, old) in LINEAGES.iter().zip(&old) {
        assert_ne!(&current_serial(&bed, l), old, "{l} was renewed");
        assert_everywhere(&bed, l, "after renew");
    }
    // Let watch see the run's end and scan again: it must find every version deployed.
    std::thread::sleep(Duration::from_secs(2));
    assert!(stop_on_sigterm(&mut watch, Duration::from_secs(10)));
    let watch_said = std::fs::read_to_string(&watch_err).unwrap_or_default();

    for n in 1..=NODES {
        let (t0, r0) = before[n - 1];
        // The reload's log line is written by the master as it takes the signal: wait
        // (bounded) for it, then the count must be exactly one.
        wait_until(Duration::from_secs(10), || counts(&bed, n).1 > r0);
        let (t, r) = counts(&bed, n);
        assert_eq!(
            (t - t0, r - r0),
            (1, 1),
            "node {n}: (config tests, reloads) for one run of {} renewals; watch said:\n{watch_said}",
            LINEAGES.len()
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || hook.bodies().len() > events),
        "no deploy event"
    );
    std::thread::sleep(Duration::from_secs(1));
    let bodies = hook.bodies();
    assert_eq!(
        bodies.len() - events,
        1,
        "one event for the run: {:?}",
        &bodies[events..]
    );
    assert!(
        !bodies[events..]
            .iter()
            .any(|b| b.contains("\"event\":\"watch\"")),
        "watch deployed too: {watch_said}"
    );
}

#[test]
fn a_queue_nobody_flushed_is_pushed_by_the_next_flush() {
    let (bed, _hook) = bed_with_hook();
    let lineage = LINEAGES[0];
    issue_and_serve(&bed, lineage);
    let old = current_serial(&bed, lineage);

    // certbot run by hand with `deploy --defer` and no --post-hook: queued, not pushed.
    let defer = bed.hook_command("deploy --defer");
    bed.node(1)
        .certbot_renew(["--deploy-hook", &defer])
        .expect_status(0)
        .run();
    let new = current_serial(&bed, lineage);
    assert_ne!(new, old);
    assert_eq!(
        settled_serial(&bed, 2, lineage, &old),
        old,
        "a deferred deploy pushes nothing until the flush"
    );
    let queue = bed.letsencrypt_dir(1).join(".certherd/deferred");
    assert_eq!(
        std::fs::read_to_string(&queue).unwrap_or_default().trim(),
        lineage,
        "the lineage is queued"
    );

    let ran = bed
        .node(1)
        .certherd(["deploy", "--flush", "--format", "json"])
        .expect_status(0)
        .run();
    let json: serde_json::Value = ran.json();
    ran.ensure(json["ok"] == true, "the flush's JSON says ok");
    ran.ensure(
        json["lineages"][0]["lineage"] == lineage,
        format!("the flush's first lineage is {lineage}"),
    );
    assert_everywhere(&bed, lineage, "after the flush");
    assert!(!queue.exists(), "the flush emptied the queue");

    // Nothing queued: a flush is a no-op success.
    bed.node(1)
        .certherd(["deploy", "--flush"])
        .expect_status(0)
        .run();

    // The variable set but no run in progress (the run was killed): the hook deploys at once,
    // with a warning; nothing is queued. (certbot renews with a hook that does nothing, and the
    // hook is then run by hand as certbot would.)
    bed.node(1)
        .certbot_renew(["--deploy-hook", "/bin/true"])
        .expect_status(0)
        .run();
    let live = bed.letsencrypt_dir(1).join("live").join(lineage);
    bed.node(1)
        .certherd(["deploy"])
        .env("RENEWED_LINEAGE", &live)
        .env("CERTHERD_DEFER_DEPLOY", "1")
        .expect_status(0)
        .stderr_has(["no certherd renew/issue run is in progress: deploying now"])
        .run();
    assert!(!queue.exists(), "nothing queued");
    assert_everywhere(&bed, lineage, "after the hook without a run");
}
