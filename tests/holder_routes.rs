//! Route proofs through the warm holder (issue 25, docs/HOLDER.md): `auth` does not fetch its
//! own token again from a node whose route the holder proved for the domain with its probe, but
//! a node whose route is broken for that domain still fails `auth`, named, as without a holder
//! (guarantee 1's self-check: every node that can be picked must serve the token). The probe
//! leaves with the run's cleanup and with the holder. A request to the holder is hostile input
//! (guarantee 5).

mod common;
use common::fault::alive;
use common::*;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// One plain HTTP/1.0 GET to node `n`'s :80 with `host` as `Host`; the whole answer, or "" when
/// the node did not answer (bounded by the socket timeouts).
fn get(bed: &Bed, n: usize, host: &str, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect((bed.ip(n), 80)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .is_err()
    {
        return String::new();
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// Node `n`'s nginx sends `domain`'s challenge requests elsewhere: a vhost of its own on :80
/// that answers 404 "misrouted" for everything (a vhost whose root is not the webroot). Returns
/// once the reloaded nginx answers that way (bounded: the old workers go on for a while after
/// a reload, so one look is not enough).
fn misroute(bed: &Bed, n: usize, domain: &str) {
    let conf = bed.nginx_tls_conf(n);
    let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
    text.push_str(&format!(
        "server {{\n  listen {ip}:80;\n  server_name {domain};\n  location / {{ return 404 \"misrouted\\n\"; }}\n}}\n",
        ip = bed.ip(n)
    ));
    std::fs::write(&conf, text).unwrap();
    reload_nginx(bed, n);
    let path = "/.well-known/acme-challenge/anything";
    assert!(
        wait_until(Duration::from_secs(20), || get(bed, n, domain, path)
            .contains("misrouted")),
        "node{n}'s nginx never took the misrouted vhost for {domain}"
    );
}

/// `certherd -v auth` on node 1 with certbot's environment.
fn auth_v<'a>(bed: &'a Bed, domain: &str, token: &str) -> Exec<'a> {
    bed.node(1)
        .certherd(["-v", "auth"])
        .env("CERTBOT_DOMAIN", domain)
        .env("CERTBOT_TOKEN", token)
        .env("CERTBOT_VALIDATION", format!("{token}.thumb"))
}

/// `certherd warm` on node 1: succeeds and says nothing.
fn warm(bed: &Bed) {
    bed.node(1)
        .certherd(["warm"])
        .expect_status(0)
        .stderr_is("")
        .run();
}

/// The nodes whose route `auth` took from the holder's probe for `domain` (its `-v` lines).
fn proven(err: &str, domain: &str) -> Vec<String> {
    let mark = format!(": route for {domain} proven by the holder's probe");
    let mut nodes: Vec<String> = err
        .lines()
        .filter_map(|l| l.split_once(&mark).map(|(node, _)| node.to_owned()))
        .map(|node| node.rsplit(' ').next().unwrap_or(&node).to_owned())
        .collect();
    nodes.sort();
    nodes
}

/// The holder's directory under the bed's control dir.
fn holder_dir(bed: &Bed) -> PathBuf {
    std::fs::read_dir(bed.root().join("ssh/cm"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("holder-")
        })
        .expect("a holder directory")
}

fn holder_pid(bed: &Bed) -> i32 {
    let dir = holder_dir(bed);
    std::fs::read_to_string(dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Each node's challenge directory listing (file names only).
fn challenge_files(bed: &Bed, n: usize) -> Vec<String> {
    let dir = bed.webroot(n).join(".well-known/acme-challenge");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Node 3 sends `broken.test`'s challenges to another root. Through the holder, `auth` for
/// `ok.test` takes every node's route from the probe; `auth` for `broken.test` takes node 1's
/// and node 2's, but node 3's probe answer is a 404, so node 3 gets the full self-check of the
/// real token, which fails it by name: exit 1, as without a holder.
#[test]
fn a_misrouted_node_still_fails_auth_through_the_holder_by_name() {
    let bed = bed(3, false);
    misroute(&bed, 3, "broken.test");
    warm(&bed);

    let ran = auth_v(&bed, "ok.test", "tokok")
        .expect_status(0)
        .stderr_has(["through the warm holder"])
        .run();
    ran.ensure(
        proven(&ran.stderr(), "ok.test") == ["node1", "node2", "node3"],
        "every node's route proven by the probe",
    );

    let ran = auth_v(&bed, "broken.test", "tokbroken")
        .expect_status(1)
        .stderr_has(["through the warm holder"])
        // node 3 named with what it answered
        .stderr_has(["node3: self-check for broken.test failed: HTTP 404"])
        .stderr_has(["node3: no route proof for broken.test"])
        .run();
    ran.ensure(
        proven(&ran.stderr(), "broken.test") == ["node1", "node2"],
        "node 1's and node 2's routes proven by the probe, not node 3's",
    );
    // The write itself reached node 3: the route is what is broken there.
    assert!(has_token(&bed, 3, "tokbroken", "tokbroken.thumb"));
}

/// The probe is on every node while the holder waits for the run's first auth; the cleanup
/// takes it away with the run's token (no file left once certbot's cleanup is done), the next
/// auth puts it back and proves every route again, and a holder that stops removes it.
#[test]
fn the_probe_leaves_with_the_cleanup_and_with_the_holder() {
    let bed = bed(3, false);
    warm(&bed);
    let probe = challenge_files(&bed, 1);
    assert_eq!(probe.len(), 1, "one probe on node 1: {probe:?}");
    assert_eq!(probe[0].len(), 43, "shaped like an ACME token: {probe:?}");
    for n in [2, 3] {
        assert_eq!(challenge_files(&bed, n), probe, "the same probe on node{n}");
    }

    for (domain, token) in [("a.test", "toka"), ("b.test", "tokb")] {
        let ran = auth_v(&bed, domain, token).expect_status(0).run();
        ran.ensure(
            proven(&ran.stderr(), domain) == ["node1", "node2", "node3"],
            "every node's route proven by the probe",
        );
        bed.node(1).cleanup(domain, token).expect_status(0).run();
        assert!(
            token_files(&bed).is_empty(),
            "the cleanup left files: {:?}",
            token_files(&bed)
        );
    }

    // Back on every node with the next auth; a holder told to stop takes it away.
    auth_v(&bed, "c.test", "tokc").expect_status(0).run();
    let pid = holder_pid(&bed);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !alive(pid)),
        "holder {pid} did not stop on SIGTERM"
    );
    for n in 1..=3 {
        assert_eq!(
            challenge_files(&bed, n),
            ["tokc"],
            "only auth's own token is left on node{n}"
        );
    }
}

/// Sends one line to the holder's socket as the agent's account (the holder's own uid) and
/// returns the run, whose stdout is the reply.
fn ask_holder(bed: &Bed, line: &str) -> Ran {
    const CLIENT: &str = "import socket,sys\n\
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b'\\n')\n\
print(s.makefile().readline(), end='')";
    let dir = holder_dir(bed);
    let mut client = bed.agent_command_on(1, "/usr/bin/python3");
    client.args(["-c", CLIENT]).arg(dir.join("sock")).arg(line);
    bed.node(1).command(client).expect_status(0).run()
}

/// A publish request is hostile input like any other: only token writes, at most 100 names,
/// each a valid domain; anything else is refused and writes nothing.
#[test]
fn the_holder_refuses_a_publish_that_is_not_token_writes() {
    let bed = bed(3, false);
    warm(&bed);
    let before = challenge_files(&bed, 2);
    let removal =
        r#"{"publish":{"requests":[{"op":"remove_token","token":"tokr"}],"domains":["a.test"]}}"#;
    let reply = ask_holder(&bed, removal);
    reply.ensure(reply.stdout().contains("refused"), "a removal is refused");
    let many: Vec<String> = (0..101).map(|i| format!("\"n{i}.test\"")).collect();
    let too_many = format!(
        r#"{{"publish":{{"requests":[{{"op":"put_token","token":"tokm","key_authorization":"tokm.x"}}],"domains":[{}]}}}}"#,
        many.join(",")
    );
    let reply = ask_holder(&bed, &too_many);
    reply.ensure(
        reply.stdout().contains("refused") && reply.stdout().contains("100"),
        "101 names are refused, naming the bound 100",
    );
    let bad_name = r#"{"publish":{"requests":[{"op":"put_token","token":"tokn","key_authorization":"tokn.x"}],"domains":["a.test/../x"]}}"#;
    let reply = ask_holder(&bed, bad_name);
    reply.ensure(reply.stdout().contains("refused"), "a bad name is refused");
    assert_eq!(
        challenge_files(&bed, 2),
        before,
        "nothing was written on node2"
    );
    // A good one is answered, with a proof per node.
    let good = r#"{"publish":{"requests":[{"op":"put_token","token":"tokg","key_authorization":"tokg.x"}],"domains":["a.test"]}}"#;
    let reply = ask_holder(&bed, good);
    reply.ensure(
        reply.stdout().contains("published"),
        "a good one is published",
    );
    reply.ensure(
        reply.stdout().matches("\"domain\":\"a.test\"").count() == 3,
        "one proof per node (3)",
    );
}
