//! Guarantee 5: hostile input is refused with a clear one-line error and changes nothing.
//!
//! Proves Guarantees 5 and 7 of docs/GUARANTEES.md (the list there names each test).

mod common;
use common::*;

/// Hostile certbot environments: exit 2, one line naming the value and what was expected, and
/// not a byte changed on any node.
#[test]
fn hostile_hook_input_is_refused_and_changes_nothing() {
    let bed = bed(3, false);
    let before = snapshot(&bed);
    let long = "A".repeat(10_000);
    let cases: Vec<(&str, &str, String)> = vec![
        ("site.test", "../../etc/passwd", "../../etc/passwd".into()),
        ("site.test", "a/b", "a/b".into()),
        ("site.test", "x;rm -rf /", "x;rm -rf /".into()),
        ("site.test", "", String::new()),
        ("site.test", &long, "AAAA".into()),
        ("site test", "tok", "site test".into()),
        ("site.test;reboot", "tok", "site.test;reboot".into()),
        (
            "$(touch /tmp/pwned).test",
            "tok",
            "$(touch /tmp/pwned).test".into(),
        ),
    ];
    for (domain, token, named) in &cases {
        // Must name the value and what was expected.
        let ran = bed
            .node(1)
            .auth(domain, token, &format!("{token}.thumb"))
            .expect_status(2)
            .stderr_has([named.as_str(), "expected"])
            .run();
        let err = ran.stderr();
        ran.ensure(err.trim_end().lines().count() == 1, "one line expected");
        ran.ensure(
            err.len() < 300,
            format!("hostile value echoed whole: {} bytes", err.len()),
        );
    }
    bed.node(1)
        .auth("site.test", "tok", "other.thumb")
        .expect_status(2)
        .run();
    assert_eq!(
        snapshot(&bed),
        before,
        "hostile input changed files on a node"
    );
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

/// Guarantee 5: a hostile `$RENEWED_LINEAGE` (what certbot hands the deploy hook) is refused
/// before anything is read or sent: `../../etc`, a path outside the letsencrypt dir, shell
/// metacharacters, a path with `..` that lands on a real lineage, a planted symlink under live/
/// pointing at a real lineage elsewhere. Each exits 2 with one line saying what was expected,
/// prints no result table (nothing was deployed), changes no file on any node, and runs none of
/// the metacharacters.
#[test]
fn hostile_renewed_lineage_is_refused_and_changes_nothing() {
    let bed = bed(3, false);
    let le = bed.letsencrypt_dir(1);
    // A real lineage for the tricks to point at, in certbot's layout.
    let real = le.join("live/real.test");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("cert.pem"), "not a certificate").unwrap();
    let elsewhere = bed.root().join("elsewhere/live/site.test");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, le.join("live/planted.test")).unwrap();
    let marker = bed.root().join("pwned");
    let live = le.join("live").display().to_string();
    let cases = [
        "../../etc".to_owned(),
        format!("{live}/../../../etc"),
        "/etc".to_owned(),
        elsewhere.display().to_string(),
        format!("{live}/$(touch {})", marker.display()),
        format!("{live}/x;touch {}", marker.display()),
        format!("{live}/real.test/../real.test"),
        format!("{live}/planted.test"),
        format!("{live}/"),
        String::new(),
    ];
    let before = snapshot(&bed);
    for value in &cases {
        // Must name the variable and what was expected, and print nothing on stdout.
        let ran = bed
            .node(1)
            .certherd(["deploy"])
            .env("RENEWED_LINEAGE", value)
            .env("RENEWED_DOMAINS", "site.test")
            .expect_status(2)
            .stderr_has(["RENEWED_LINEAGE", "expected"])
            .stdout_is("")
            .run();
        ran.ensure(
            ran.stderr().trim_end().lines().count() == 1,
            format!("{value:?}: one line expected"),
        );
    }
    assert_eq!(
        snapshot(&bed),
        before,
        "a hostile RENEWED_LINEAGE changed files"
    );
    assert!(!marker.exists(), "shell metacharacters ran");
}

/// Sends raw lines to a node's agent through its real sshd and forced command.
fn agent_session(bed: &Bed, node: usize, input: &[u8]) -> Vec<serde_json::Value> {
    agent_exchange(bed, node, input).0
}

/// Straight to the agent: unknown ops, path tricks and a 10 MB line are refused, nothing changes.
#[test]
fn agent_refuses_hostile_requests() {
    let bed = bed(2, false);
    let before = snapshot(&bed);
    let answers = agent_session(
        &bed,
        2,
        concat!(
            "{\"op\":\"hello\",\"protocol\":1}\n",
            "{\"op\":\"exec\",\"cmd\":\"id\"}\n",
            "{\"op\":\"put_token\",\"token\":\"../../etc/passwd\",\"key_authorization\":\"x.y\"}\n",
            "{\"op\":\"put_token\",\"token\":\"abc\",\"key_authorization\":\"abc.y\",\"path\":\"/etc\"}\n",
            "garbage\n",
        )
        .as_bytes(),
    );
    assert_eq!(answers.len(), 5, "{answers:?}");
    assert_eq!(answers[0]["result"], "hello");
    assert_eq!(answers[0]["node"], "node2");
    assert_eq!(answers[1]["kind"], "unknown_op", "{}", answers[1]);
    assert!(answers[1]["message"].as_str().unwrap().contains("exec"));
    assert_eq!(answers[2]["kind"], "invalid", "{}", answers[2]);
    assert_eq!(answers[3]["kind"], "invalid", "{}", answers[3]);
    assert_eq!(answers[4]["kind"], "malformed", "{}", answers[4]);

    let mut huge = vec![b'{'; 10 * 1024 * 1024];
    huge.push(b'\n');
    let answers = agent_session(&bed, 2, &huge);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["kind"], "too_large", "{}", answers[0]);
    assert_eq!(snapshot(&bed), before, "a refused request changed files");
}

/// A peer whose host key is not in known_hosts is refused before anything is sent to it; the
/// other nodes still get the token and the failure names the peer.
#[test]
fn unknown_host_key_is_refused_before_anything_is_sent() {
    let bed = bed(3, false);
    let known = std::fs::read_to_string(bed.known_hosts()).unwrap();
    let without3: String = known
        .lines()
        .filter(|l| !l.starts_with(&format!("{} ", bed.ip(3))))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(known, without3, "node 3's key was in known_hosts");
    let partial = bed.root().join("ssh/known_hosts.partial");
    std::fs::write(&partial, without3).unwrap();
    let config = std::fs::read_to_string(bed.config_path(1)).unwrap();
    let config = config.replace(
        &bed.known_hosts().display().to_string(),
        &partial.display().to_string(),
    );
    std::fs::write(bed.config_path(1), config).unwrap();

    let ran = bed
        .node(1)
        .auth("site.test", "tokhk", "tokhk.thumb")
        .expect_status(1)
        .stderr_has(["node3"])
        .run();
    ran.ensure(
        ran.stderr().to_lowercase().contains("host key"),
        "stderr names the host key",
    );
    assert!(
        has_token(&bed, 1, "tokhk", "tokhk.thumb") && has_token(&bed, 2, "tokhk", "tokhk.thumb")
    );
    assert!(
        !has_token(&bed, 3, "tokhk", "tokhk.thumb"),
        "token reached a peer with an unknown host key"
    );
}
