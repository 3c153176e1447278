//! The redirect fallback and redirect rings (issue 23 item 3), on a namespaced bed so that the
//! redirects name hosts as in production: pebble resolves them through its DNS
//! (pebble-challtestsrv), certherd's self-check and doctor through the system's resolver, which
//! in node 1's namespace reads the bed's `/etc/netns/<ns>/hosts` ([`Bed::hosts_on`]).
//!
//! - `contrib/nginx/acme-challenge-fallback.conf` on a node whose agent is down: the CA, sent
//!   there by DNS, follows its redirect to the primary, which has the token. Without the snippet
//!   the same issuance fails (the negative control).
//! - A ring (node 2 → node 3 → node 2): `doctor -d NAME` exits non-zero naming both hops.
//! - A `check_only` peer that only redirects the ACME path to the primary passes `auth`'s
//!   self-check; without the redirect it fails it.

mod common;
use common::*;

use std::path::PathBuf;

/// The primary's host name the fallback redirects to (`$certherd_primary`).
const PRIMARY: &str = "primary.test";

fn netns_bed() -> Bed {
    Bed::start(BedOptions {
        nodes: 3,
        ca: true,
        certherd: certherd_bin().into(),
        netns: true,
    })
    .unwrap_or_else(|e| panic!("namespaced test bed did not start: {e}"))
}

/// The file the node's nginx includes in its :80 server for the ACME path.
fn acme_conf(bed: &Bed, n: usize) -> PathBuf {
    bed.nginx_conf(n).with_file_name("acme.conf")
}

fn contrib(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(rel)
}

/// Node `n`'s :80 server answers the ACME path with `acme` (the rest: 404); `http` goes to its
/// http level (a `map`); reloaded.
fn serve_acme_with(bed: &Bed, n: usize, acme: &str, http: &str) {
    std::fs::write(
        acme_conf(bed, n),
        format!("{acme}\nlocation / {{ return 404; }}\n"),
    )
    .unwrap();
    std::fs::write(bed.nginx_tls_conf(n), http).unwrap();
    reload_nginx(bed, n);
}

/// The shipped fallback snippet, redirecting to `primary`.
fn fallback(bed: &Bed, n: usize, primary: &str) {
    serve_acme_with(
        bed,
        n,
        &format!(
            "include {};",
            contrib("nginx/acme-challenge-fallback.conf").display()
        ),
        &format!("map $host $certherd_primary {{ default {primary}; }}\n"),
    );
}

/// The shipped plain snippet (the bed's default).
fn plain(bed: &Bed, n: usize) {
    serve_acme_with(
        bed,
        n,
        &format!(
            "include {};",
            contrib("nginx/acme-challenge.conf").display()
        ),
        "",
    );
}

/// A server that only redirects the ACME path (a leftover of a redirect set-up).
fn redirect_only(bed: &Bed, n: usize, to: &str) {
    serve_acme_with(
        bed,
        n,
        &format!(
            "location ^~ /.well-known/acme-challenge/ {{ return 302 http://{to}$request_uri; }}"
        ),
        "",
    );
}

/// Lines of node `n`'s nginx access log for the ACME path with this status.
fn acme_answers(bed: &Bed, n: usize, status: u16) -> usize {
    std::fs::read_to_string(bed.access_log(n))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("/.well-known/acme-challenge/") && l.contains(&format!("\" {status} "))
        })
        .count()
}

#[test]
fn a_node_without_the_token_redirects_the_ca_to_the_primary() {
    let bed = netns_bed();
    let mut three = PeerSpec::new(3);
    three.optional = true;
    bed.write_config(1, &[PeerSpec::new(2), three], "").unwrap();
    bed.dns(PRIMARY, &[1]).unwrap();
    bed.hosts_on(1, &[(PRIMARY, 1)]).unwrap();
    // node 3's agent is down: it never gets the token
    bed.stop_sshd(3);

    // Negative control: the plain snippet on node 3, DNS only at node 3: the CA gets a 404.
    bed.dns("plain.test", &[3]).unwrap();
    let ran = bed
        .node(1)
        .certbot_certonly(&["plain.test"])
        .any_status()
        .run();
    ran.ensure(
        !ran.output.status.success(),
        "issued through node 3 although it never had the token",
    );
    assert!(
        acme_answers(&bed, 3, 404) >= 1,
        "node 3 answered the CA no 404"
    );

    // The fallback snippet: node 3 redirects what it does not have to the primary.
    fallback(&bed, 3, PRIMARY);
    bed.dns("fallback.test", &[3]).unwrap();
    let before = acme_answers(&bed, 1, 200);
    // Issuance through the fallback.
    bed.node(1).certbot_certonly(&["fallback.test"]).run();
    assert!(acme_answers(&bed, 3, 302) >= 1, "node 3 redirected nothing");
    assert!(
        acme_answers(&bed, 1, 200) > before,
        "the primary served no token after the redirect"
    );
    assert!(
        cert_text(&bed, "fallback.test").is_some(),
        "no certificate on the primary"
    );
}

#[test]
fn doctor_names_every_hop_of_a_redirect_ring() {
    let bed = netns_bed();
    bed.hosts_on(1, &[("n2.test", 2), ("n3.test", 3)]).unwrap();
    redirect_only(&bed, 2, "n3.test");
    redirect_only(&bed, 3, "n2.test");
    let ran = bed
        .node(1)
        .certherd(["doctor", "-d", "ring.test"])
        .any_status()
        .run();
    ran.ensure(ran.code() != Some(0), "doctor passed a redirect ring");
    let report = ran.both();
    for n in [2, 3] {
        let line = report
            .lines()
            .find(|l| {
                l.starts_with("FAIL")
                    && l.contains(&format!("node{n}"))
                    && l.contains("redirect loop")
            })
            .unwrap_or_else(|| ran.fail(&format!("no redirect-loop FAIL for node{n}")));
        ran.ensure(
            line.contains("n2.test") && line.contains("n3.test"),
            format!("node{n}'s loop names both nodes of the ring: {line}"),
        );
    }

    // The ring broken (node 3 serves the tokens itself): no loop left.
    plain(&bed, 3);
    bed.node(1)
        .certherd(["doctor", "-d", "ring.test"])
        .any_status()
        .stdout_lacks(["redirect loop"])
        .stderr_lacks(["redirect loop"])
        .run();
}

#[test]
fn a_check_only_peer_that_redirects_to_the_primary_passes_the_self_check() {
    let bed = netns_bed();
    let mut three = PeerSpec::new(3);
    three.check_only = true;
    bed.write_config(1, &[PeerSpec::new(2), three], "").unwrap();
    bed.hosts_on(1, &[(PRIMARY, 1)]).unwrap();

    // Negative control: node 3 (not managed, never gets the token) serves the plain snippet.
    let ran = bed
        .node(1)
        .auth("checkonly.test", "tokco1", "tokco1.thumbprint")
        .any_status()
        .run();
    ran.ensure(
        !ran.output.status.success(),
        "auth passed node 3 without the token",
    );
    ran.ensure(ran.both().contains("node3"), "auth's failure names node3");
    bed.node(1)
        .cleanup("checkonly.test", "tokco1")
        .any_status()
        .run();

    redirect_only(&bed, 3, PRIMARY);
    // auth with node 3 redirecting to the primary.
    bed.node(1)
        .auth("checkonly.test", "tokco2", "tokco2.thumbprint")
        .run();
    assert!(acme_answers(&bed, 3, 302) >= 1, "node 3 was not asked");
    bed.node(1)
        .cleanup("checkonly.test", "tokco2")
        .any_status()
        .run();
}
