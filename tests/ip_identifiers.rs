//! IP-address identifiers (issue 21): certbot 5.3+ issues for IP addresses (Let's Encrypt's
//! `shortlived` profile) and names the identifier `CERTBOT_IDENTIFIER`; the served check of a
//! certificate for IP addresses only connects with no SNI (an IP address is never an SNI).
//!
//! Proves guarantee 1 of docs/GUARANTEES.md for an IP-address identity (every node serves the
//! token, the self-check passes) and guarantee 9 for an IP-only certificate (status judges what
//! every node serves instead of failing on a name it cannot send).

mod common;
use common::cluster::make_version_for;
use common::*;

use std::time::{SystemTime, UNIX_EPOCH};

#[test]
fn an_ip_identifier_reaches_every_node_through_the_manual_hooks() {
    let bed = bed(3, false);
    let ip = bed.ip(2).to_string();
    let (token, validation) = ("ipTokenFromCertbot53", "ipTokenFromCertbot53.thumb");
    // certbot 5.3+ as it calls the hook for an IP identifier (CERTBOT_DOMAIN equal to it there;
    // here left out, to show CERTBOT_IDENTIFIER is what is read).
    let out = bed
        .certherd(1, &["auth"])
        .env("CERTBOT_IDENTIFIER", &ip)
        .env("CERTBOT_TOKEN", token)
        .env("CERTBOT_VALIDATION", validation)
        .env_remove("CERTBOT_DOMAIN")
        .output()
        .unwrap();
    assert!(out.status.success(), "auth for {ip}:\n{}", text(&out));
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
    let out = bed
        .certherd(1, &["cleanup"])
        .env("CERTBOT_IDENTIFIER", &ip)
        .env("CERTBOT_TOKEN", token)
        .output()
        .unwrap();
    assert!(out.status.success(), "cleanup:\n{}", text(&out));
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
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(out.status.success(), "sync:\n{}", text(&out));

    let (code, json) = status_json(&bed);
    assert_eq!(code, Some(0), "{json:#}");
    for r in json["rows"].as_array().unwrap() {
        assert_eq!(r["served_name"], ip.as_str(), "{r}");
        assert_eq!(r["served"], "new", "{r}");
        assert_eq!(r["state"], "ok", "{r}");
    }
}
