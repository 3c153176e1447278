//! IP-address identifiers (issue 21): certbot 5.3+ issues for IP addresses (Let's Encrypt's
//! `shortlived` profile) and names the identifier `CERTBOT_IDENTIFIER`; the served check of a
//! certificate for IP addresses only connects with no SNI (an IP address is never an SNI).
//!
//! Proves guarantee 1 of docs/GUARANTEES.md for an IP-address identity (every node serves the
//! token, the self-check passes) and guarantee 9 for an IP-only certificate (status judges what
//! every node serves instead of failing on a name it cannot send).

mod common;
use common::cluster::make_version_for;
use common::status::State;
use common::*;

use std::time::{SystemTime, UNIX_EPOCH};

#[test]
fn an_ip_identifier_reaches_every_node_through_the_manual_hooks() {
    let bed = bed(3, false);
    let ip = bed.ip(2).to_string();
    let (token, validation) = ("ipTokenFromCertbot53", "ipTokenFromCertbot53.thumb");
    // certbot 5.3+ as it calls the hook for an IP identifier (CERTBOT_DOMAIN equal to it there;
    // here left out, to show CERTBOT_IDENTIFIER is what is read).
    bed.node(1)
        .certherd(["auth"])
        .env("CERTBOT_IDENTIFIER", &ip)
        .env("CERTBOT_TOKEN", token)
        .env("CERTBOT_VALIDATION", validation)
        .env_remove("CERTBOT_DOMAIN")
        .run();
    for n in 1..=3 {
        assert!(
            has_token(&bed, n, token, validation),
            "node {n} lacks the token"
        );
    }
    // The self-check asked every node with the address as Host, as the CA does (RFC 8738).
    // nginx writes the access log line after the response has gone out: on a loaded machine
    // the line may land just after `auth` returned, so it is waited for (bounded).
    for n in 1..=3 {
        let log = || std::fs::read_to_string(bed.access_log(n)).unwrap_or_default();
        let asked = wait_until(std::time::Duration::from_secs(5), || {
            log()
                .lines()
                .any(|l| l.contains(&format!("/.well-known/acme-challenge/{token}")))
        });
        assert!(asked, "node {n} was never asked for the token:\n{}", log());
    }
    bed.node(1)
        .certherd(["cleanup"])
        .env("CERTBOT_IDENTIFIER", &ip)
        .env("CERTBOT_TOKEN", token)
        .run();
    for n in 1..=3 {
        assert!(
            !has_token(&bed, n, token, validation),
            "node {n} kept the token"
        );
    }
}

#[test]
fn a_certificate_for_an_ip_address_only_is_checked_without_sni() {
    let bed = bed(3, false);
    let lineage = "ip-only.test";
    let ip = bed.ip(1).to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A 160-hour certificate for the address only, as the shortlived profile issues it.
    make_version_for(&bed, lineage, &ip, 1, Some((now - 3600, now + 159 * 3600)));
    enable_tls(&bed, lineage);
    bed.node(1).certherd(["sync"]).run();

    let ran = bed.node(1).certherd(["status", "--format", "json"]).run();
    let report: StatusReport = ran.json();
    for r in &report.rows {
        ran.ensure(
            r.served_name.as_deref() == Some(ip.as_str()),
            format!("checked as {ip}: {r:?}"),
        );
        ran.ensure(r.served.as_deref() == Some("new"), format!("new: {r:?}"));
        ran.ensure(r.state == State::Ok, format!("ok: {r:?}"));
    }
}
