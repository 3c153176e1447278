//! One renewal, one deploy (issue 19, item 3; "not a guarantee, but tested" in docs/GUARANTEES.md): with `watch` running on the primary
//! and certbot's stored deploy hook, both see every renewal; whichever comes first deploys it,
//! under the lineage's lock, and the other finds it recorded and does nothing. Counted by the
//! webhook's events (`on_success`): one per renewal. Before, each renewal was deployed twice
//! (two alerts; the primary tested and reloaded twice).

mod common;
use common::influx::Webhook;
use common::*;

use std::time::Duration;

#[test]
fn a_renewal_seen_by_the_deploy_hook_and_by_watch_is_deployed_once() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    let hook = Webhook::start("127.0.0.1");
    bed.write_config(
        1,
        &[PeerSpec::new(2), PeerSpec::new(3)],
        &format!("[alert]\nwebhook = [\"{}\"]\non_success = true\n", hook.url),
    )
    .unwrap();
    enable_tls(&bed, "site.test");
    // Issued as `certherd issue` does it: certbot stores the deploy hook for its renewals.
    bed.node(1)
        .certbot_certonly_with_deploy(&["site.test"])
        .run();
    reload_nginx(&bed, 1);

    let (mut watch, _, err) = start_watch(&bed, "1s");

    let before = hook.bodies().len();
    for round in 1..=3 {
        bed.node(1)
            .certbot(["renew", "--force-renewal", "--no-random-sleep-on-renew"])
            .run();
        let want = current_serial(&bed, "site.test");
        assert!(
            wait_served(&bed, 1..=3, "site.test", &want, Duration::from_secs(20)),
            "renewal {round} did not reach every node"
        );
        // One event, and none more once watch's settle window (1 s) has long passed.
        assert!(
            wait_until(Duration::from_secs(20), || hook.bodies().len()
                >= before + round),
            "no deploy event for renewal {round}"
        );
        std::thread::sleep(Duration::from_secs(3));
        let events = hook.bodies().len() - before;
        assert_eq!(
            events,
            round,
            "renewal {round}: {events} deploy events in all; watch said:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }
    assert!(stop_on_sigterm(&mut watch, Duration::from_secs(10)));
}
