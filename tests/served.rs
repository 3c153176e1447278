//! Issue 13: the served check asks each node for a name the certificate covers (wildcards
//! included, obtained through DNS-01 with certherd only as the deploy hook), tells `new` from
//! `OLD` from `unused`, and fails at once on what waiting cannot fix.

mod common;
use common::influx::Webhook;
use common::*;
use std::time::{Duration, Instant};

/// certbot through DNS-01 (the bed's TXT hook) with certherd as the deploy hook.
fn dns01_certonly(bed: &Bed, domains: &[&str]) -> Ran {
    let mut args = bed.dns01_certonly_args().unwrap();
    for d in domains {
        args.push("-d".into());
        args.push(d.to_string());
    }
    bed.node(1).certbot(args).run()
}

/// certbot's forced renewal of `lineage` (its deploy hook deploys), asserted to succeed.
fn renew(bed: &Bed, lineage: &str) -> Ran {
    bed.node(1).certbot_renew(["--cert-name", lineage]).run()
}

/// The deploy table's row of `node`: [NODE, BEFORE, AFTER, INSTALL, SERVED, TIME, CHECKED].
fn row(output: &str, node: usize) -> Vec<String> {
    let name = format!("node{node}");
    output
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .rfind(|w| w.len() == 7 && w[0] == name)
        .unwrap_or_else(|| panic!("no table row for {name} in:\n{output}"))
}

/// Node 1's config with the webhook as its alert.
fn with_webhook(bed: &Bed) -> Webhook {
    let hook = Webhook::start("127.0.0.1");
    bed.write_config(
        1,
        &[PeerSpec::new(2), PeerSpec::new(3)],
        &format!("[alert]\nwebhook = [\"{}\"]\n", hook.url),
    )
    .unwrap();
    hook
}

/// A wildcard + apex certificate from DNS-01 while no vhost uses it: every node serves its
/// default certificate, so the deploy says `unused` and warns, exits 0, and sends no failure.
/// With the `*.wild.test` vhost added, a renewal through the deploy hook is `new` everywhere
/// for `wild.test` (a name the certificate covers, not `*.wild.test`), and `status` is OK.
#[test]
fn wildcard_from_dns01_is_unused_until_a_vhost_uses_it_then_new() {
    let bed = bed(3, true);
    let hook = with_webhook(&bed);
    default_tls_everywhere(&bed);

    let out = dns01_certonly(&bed, &["*.wild.test", "wild.test"]);
    let all = out.both();
    assert!(!all.contains("reported error code"), "{all}");
    for n in 1..=3 {
        let r = row(&all, n);
        assert_eq!(
            (r[4].as_str(), r[6].as_str()),
            ("unused", "wild.test"),
            "{all}"
        );
    }
    assert!(all.contains("not in use for wild.test"), "{all}");
    // No failure alert (success alerts are off by default).
    assert!(hook.bodies().is_empty(), "{:?}", hook.bodies());
    // status: a warning that names the lineage not in use, with the name it checked.
    let status = bed.node(1).certherd(["status"]).expect_status(1).run();
    let table = status.both();
    eprintln!("{table}");
    status.ensure(
        table.contains("warning: wild.test is not in use") && table.contains(" unused "),
        "a warning naming wild.test not in use, and an unused row",
    );

    for n in 1..=3 {
        bed.add_tls_vhost(n, "*.wild.test wild.test", "wild.test")
            .unwrap();
        reload_nginx(&bed, n);
    }
    let out = renew(&bed, "wild.test");
    let all = out.both();
    assert!(!all.contains("reported error code"), "{all}");
    let serial = current_serial(&bed, "wild.test");
    for n in 1..=3 {
        let r = row(&all, n);
        assert_eq!(
            (r[4].as_str(), r[6].as_str()),
            ("new", "wild.test"),
            "{all}"
        );
        // Independently of certherd: a name only the wildcard covers gets the new certificate.
        assert_eq!(served_serial(&bed, n, "a.wild.test"), serial, "node {n}");
    }
    assert!(hook.bodies().is_empty(), "{:?}", hook.bodies());

    let json: serde_json::Value = bed
        .node(1)
        .certherd(["status", "--format", "json"])
        .expect_status(0)
        .run()
        .json();
    assert_eq!(json["state"], "ok", "{json:#}");
    for r in json["rows"].as_array().unwrap() {
        assert_eq!(r["served"], "new", "{r}");
        assert_eq!(r["served_name"], "wild.test", "{r}");
    }
    let status = bed
        .node(1)
        .certherd(["status"])
        .any_status()
        .stdout_lacks(["unused"])
        .stderr_lacks(["unused"])
        .run();
    eprintln!("{status}");
    status.ensure(status.both().contains("OK"), "the table says OK");
}

/// A wildcard-only certificate is checked with `certherd-check.<zone>`, which its vhost
/// answers.
#[test]
fn wildcard_only_certificate_is_checked_with_the_fixed_label() {
    let bed = bed(3, true);
    for n in 1..=3 {
        bed.default_tls_server(n, false).unwrap();
        reload_nginx(&bed, n);
        // Written now, loaded by the deploy's own reload once the files are there.
        bed.add_tls_vhost(n, "*.only.test", "only.test").unwrap();
    }
    let out = dns01_certonly(&bed, &["*.only.test"]);
    let all = out.both();
    assert!(!all.contains("reported error code"), "{all}");
    let serial = current_serial(&bed, "only.test");
    for n in 1..=3 {
        let r = row(&all, n);
        assert_eq!(
            (r[4].as_str(), r[6].as_str()),
            ("new", "certherd-check.only.test"),
            "{all}"
        );
        assert_eq!(served_serial(&bed, n, "x.only.test"), serial, "node {n}");
    }
}

/// Node 3's reload does not take (its reload command does nothing): it keeps serving the
/// previous version, which is `OLD`, a failure with an alert. Node 2 refuses the name with the
/// TLS alert `unrecognized_name`: `NONE`, a failure. Neither can change by waiting, so the
/// deploy ends within a couple of seconds, not after the 10 s deadline.
#[test]
fn reload_that_does_not_take_is_old_and_fails_fast() {
    let bed = bed(3, true);
    enable_tls(&bed, "old.test");
    dns01_certonly(&bed, &["old.test"]);
    for n in 1..=3 {
        assert_eq!(
            served_serial(&bed, n, "old.test"),
            current_serial(&bed, "old.test")
        );
    }
    let hook = with_webhook(&bed);
    // The reload's program (`sudo`) becomes /bin/true: it succeeds and reloads nothing.
    bed.config(3)
        .update("reload.reload[0]", |v| {
            match v.as_ref().and_then(|v| v.as_str()) {
                Some("sudo") => {
                    *v = Some("/bin/true".into());
                    Ok(())
                }
                other => Err(format!("expected the README's sudo, found {other:?}")),
            }
        })
        .unwrap();
    bed.default_tls_server(2, true).unwrap();
    reload_nginx(&bed, 2);

    let first = current_serial(&bed, "old.test");
    let out = renew(&bed, "old.test");
    let all = out.both();
    assert!(all.contains("reported error code 1"), "{all}");
    assert_ne!(current_serial(&bed, "old.test"), first);
    assert_eq!(row(&all, 1)[4], "new", "{all}");
    assert_eq!(row(&all, 2)[4], "NONE", "{all}");
    assert!(all.contains("unrecognized_name"), "{all}");
    assert_eq!(row(&all, 3)[4], "OLD", "{all}");
    assert!(all.contains("the reload did not take"), "{all}");
    assert_eq!(served_serial(&bed, 3, "old.test"), first);
    let bodies = hook.bodies();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("\"ok\":false") && b.contains("node3")),
        "{bodies:?}"
    );

    // Again by hand, timed: the install is a no-op now, the check alone decides.
    let began = Instant::now();
    let again = bed
        .node(1)
        .certherd(["deploy", "--lineage", "old.test"])
        .expect_status(1)
        .run();
    let took = began.elapsed();
    let all = again.both();
    eprintln!("took {took:?}:\n{all}");
    assert_eq!(row(&all, 3)[4], "OLD", "{all}");
    assert_eq!(row(&all, 2)[4], "NONE", "{all}");
    assert!(took < Duration::from_secs(5), "took {took:?}:\n{all}");
}
